/*
 * Reconciliation plan: compares the desired IPVS state with a dump of the kernel's table
 * and lists the operations that make the kernel match, and nothing else. Pure: no
 * socket, no clock (now is an argument), so every rule is unit-tested. It never touches
 * a service whose address the director does not manage and never flushes anything.
 */
#ifndef MAILPLEX_PLAN_H
#define MAILPLEX_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "ipvs.h"

/* What one relay should be for one service right now. */
enum plan_want {
	PLAN_WANT_ACTIVE, /* in the table with its weight */
	PLAN_WANT_DRAIN,  /* weight 0; deleted when idle or at the deadline */
};

struct plan_dest {
	struct ipvs_dest dest; /* address, port, forwarding, weight (ACTIVE) */
	enum plan_want want;
	uint64_t drain_deadline_ms; /* DRAIN: delete at this time even if busy */
};

struct plan_service {
	struct ipvs_service svc; /* identity, scheduler, persistence */
	struct plan_dest *dests;
	size_t ndests;
};

/* The kernel's view: a service and its destinations with their connection counts. */
struct plan_kernel_service {
	struct ipvs_service svc;
	struct ipvs_dest *dests;
	size_t ndests;
};

/* A VIP address the director owns: services there are its to add, change and remove. */
struct plan_vip {
	int af;
	union ipvs_addr addr;
};

struct plan_op {
	enum ipvs_op op; /* SERVICE_ADD/EDIT/DEL, DEST_ADD/EDIT/DEL */
	struct ipvs_service svc;
	struct ipvs_dest dest;
	const char *why; /* for the log line: "missing", "weight 100 -> 0 (drain)", ... */
};

struct plan {
	struct plan_op *ops;
	size_t nops;
	size_t cap;
};

/*
 * Fills p (initialised to zero by the caller) with the operations. Destinations in the
 * kernel that nobody wants (removed from the config, added by hand) are drained: weight
 * 0 first, deleted once they carry no connection. A managed service nobody wants loses
 * its destinations that way and is deleted when it has none left. 0, or -1 (ENOMEM).
 */
int plan_build(struct plan *p, const struct plan_service *want, size_t nwant,
               const struct plan_kernel_service *have, size_t nhave, const struct plan_vip *vips,
               size_t nvips, uint64_t now_ms);
void plan_free(struct plan *p);

/* Same identity: (af, protocol, address, port) or (af, fwmark). */
int plan_service_same(const struct ipvs_service *a, const struct ipvs_service *b);
int plan_dest_same(const struct ipvs_dest *a, const struct ipvs_dest *b);

#endif
