/*
 * Host-name resolution for event-loop daemons: glibc's getaddrinfo_a() runs the lookup on
 * its own threads and an eventfd brings the completion back into the loop, so nothing
 * blocks it. A small cache per process keeps answers for a TTL (failures for less). It
 * owns its cache and eventfd; it never calls back from another thread.
 */
#ifndef MAILPLEX_RESOLVE_H
#define MAILPLEX_RESOLVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "event.h"

#define RESOLVE_ADDRS_MAX   8   /* addresses kept per name, in getaddrinfo's order */
#define RESOLVE_ENTRIES_MAX 256 /* names cached per process (back ends, not clients) */
#define RESOLVE_HOST_MAX    256

struct resolver;

/* The addresses of one name; ports are 0 (the caller sets its own). */
struct resolve_addrs {
	size_t n;
	struct sockaddr_storage ss[RESOLVE_ADDRS_MAX];
	socklen_t len[RESOLVE_ADDRS_MAX];
};

enum resolve_status {
	RESOLVE_OK,      /* *addrs is valid until the next call into the resolver */
	RESOLVE_PENDING, /* done(arg, host) runs from the loop when the answer is in */
	RESOLVE_FAILED,  /* err says why (no such name, resolver trouble, cache full) */
};

/* Called from the loop, once per finished lookup, whatever its outcome. */
typedef void resolve_done_fn(void *arg, const char *host);

/* NULL with err set if the eventfd cannot be made. */
struct resolver *resolver_new(struct ev_loop *loop, uint64_t ttl_ok_ms, uint64_t ttl_fail_ms,
                              resolve_done_fn *done, void *arg, char *err, size_t errlen);
/*
 * Cancels what it can. A lookup glibc cannot cancel keeps its memory and the eventfd
 * (its thread will still write there): freeing is meant for process exit and tests.
 */
void resolver_free(struct resolver *r);

/*
 * host: a name (an IP literal works too, without a query). Names under ".invalid" fail
 * at once without a query (RFC 6761 6.4: resolver APIs should answer them negatively).
 */
enum resolve_status resolver_lookup(struct resolver *r, const char *host,
                                    const struct resolve_addrs **addrs, char *err, size_t errlen);
/* The cached addresses of host even if expired, or NULL: trying the next address. */
const struct resolve_addrs *resolver_cached(struct resolver *r, const char *host);

/* Address i of a (i < a->n) with port set, ready for connect(); returns its length. */
socklen_t resolve_addr_port(const struct resolve_addrs *a, size_t i, uint16_t port,
                            struct sockaddr_storage *ss);

#endif
