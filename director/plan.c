/*
 * Builds the list of IPVS operations that turns the kernel's table into the desired one
 * (level-triggered: it looks only at the two states, never at what happened before).
 * Unchanged entries produce no operation; unmanaged addresses are never touched.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "plan.h"

static size_t
addr_len(int af)
{
	return af == AF_INET6 ? sizeof(struct in6_addr) : sizeof(struct in_addr);
}

int
plan_service_same(const struct ipvs_service *a, const struct ipvs_service *b)
{
	if (a->af != b->af || a->fwmark != b->fwmark)
		return 0;
	if (a->fwmark != 0)
		return 1;
	return a->protocol == b->protocol && a->port == b->port &&
	       memcmp(&a->addr, &b->addr, addr_len(a->af)) == 0;
}

int
plan_dest_same(const struct ipvs_dest *a, const struct ipvs_dest *b)
{
	return a->af == b->af && a->port == b->port &&
	       memcmp(&a->addr, &b->addr, addr_len(a->af)) == 0;
}

static int
plan_vip_managed(const struct ipvs_service *svc, const struct plan_vip *vips, size_t nvips)
{
	for (size_t i = 0; i < nvips; i++)
		if (vips[i].af == svc->af &&
		    memcmp(&vips[i].addr, &svc->addr, addr_len(svc->af)) == 0)
			return 1;
	return 0;
}

/* The kernel reports a whole-address persistence mask as its length; we may say 0. */
static unsigned int
netmask_bits(const struct ipvs_service *svc)
{
	if (svc->netmask_len == 0)
		return svc->af == AF_INET6 ? 128 : 32;
	return svc->netmask_len;
}

static int
plan_service_differs(const struct ipvs_service *want, const struct ipvs_service *have)
{
	if (strncmp(want->sched, have->sched, sizeof(want->sched)) != 0 ||
	    want->flags != have->flags || want->persistence_s != have->persistence_s)
		return 1;
	return want->persistence_s != 0 && netmask_bits(want) != netmask_bits(have);
}

static int
plan_push(struct plan *p, enum ipvs_op op, const struct ipvs_service *svc,
          const struct ipvs_dest *dest, const char *why)
{
	struct plan_op *o;

	if (p->nops == p->cap) {
		size_t cap = p->cap == 0 ? 16 : p->cap * 2;

		if ((o = reallocarray(p->ops, cap, sizeof(*o))) == NULL) {
			errno = ENOMEM;
			return -1;
		}
		p->ops = o;
		p->cap = cap;
	}
	o = &p->ops[p->nops++];
	memset(o, 0, sizeof(*o));
	o->op = op;
	o->svc = *svc;
	if (dest != NULL)
		o->dest = *dest;
	o->why = why;
	return 0;
}

/* Order of destinations by identity, for the sorted indexes below. */
static int
dest_order(const struct ipvs_dest *a, const struct ipvs_dest *b)
{
	int c;

	if (a->af != b->af)
		return a->af < b->af ? -1 : 1;
	if ((c = memcmp(&a->addr, &b->addr, addr_len(a->af))) != 0)
		return c;
	return (a->port > b->port) - (a->port < b->port);
}

static int
have_order(const void *a, const void *b)
{
	return dest_order(*(const struct ipvs_dest *const *)a, *(const struct ipvs_dest *const *)b);
}

static int
want_order(const void *a, const void *b)
{
	return dest_order(&(*(const struct plan_dest *const *)a)->dest,
	                  &(*(const struct plan_dest *const *)b)->dest);
}

/*
 * Sorted views of one service's destinations: a service may carry thousands of them,
 * and matching each wanted one by a linear scan made a no-op pass quadratic.
 */
struct plan_index {
	const struct ipvs_dest **have;
	size_t nhave;
	const struct plan_dest **want;
	size_t nwant;
};

static int
plan_index_build(struct plan_index *ix, const struct plan_service *ws,
                 const struct plan_kernel_service *hs)
{
	memset(ix, 0, sizeof(*ix));
	ix->nhave = hs != NULL ? hs->ndests : 0;
	ix->nwant = ws != NULL ? ws->ndests : 0;
	if ((ix->nhave > 0 && (ix->have = calloc(ix->nhave, sizeof(*ix->have))) == NULL) ||
	    (ix->nwant > 0 && (ix->want = calloc(ix->nwant, sizeof(*ix->want))) == NULL)) {
		free(ix->have);
		errno = ENOMEM;
		return -1;
	}
	for (size_t i = 0; i < ix->nhave; i++)
		ix->have[i] = &hs->dests[i];
	for (size_t i = 0; i < ix->nwant; i++)
		ix->want[i] = &ws->dests[i];
	if (ix->nhave > 1)
		qsort(ix->have, ix->nhave, sizeof(*ix->have), have_order);
	if (ix->nwant > 1)
		qsort(ix->want, ix->nwant, sizeof(*ix->want), want_order);
	return 0;
}

static void
plan_index_free(struct plan_index *ix)
{
	free(ix->have);
	free(ix->want);
}

static const struct plan_dest *
find_want_dest(const struct plan_index *ix, const struct ipvs_dest *d)
{
	struct plan_dest key;
	const struct plan_dest *kp = &key, *const * hit;

	if (ix->nwant == 0)
		return NULL;
	key.dest = *d;
	hit = bsearch(&kp, ix->want, ix->nwant, sizeof(*ix->want), want_order);
	return hit != NULL ? *hit : NULL;
}

static const struct ipvs_dest *
find_have_dest(const struct plan_index *ix, const struct ipvs_dest *d)
{
	const struct ipvs_dest *const *hit;

	if (ix->nhave == 0)
		return NULL;
	hit = bsearch(&d, ix->have, ix->nhave, sizeof(*ix->have), have_order);
	return hit != NULL ? *hit : NULL;
}

/* A destination in the kernel that should be on its way out. */
static int
plan_drain(struct plan *p, const struct ipvs_service *svc, const struct ipvs_dest *have,
           int deadline_passed)
{
	struct ipvs_dest d = *have;

	if (have->active_conns + have->inactive_conns == 0)
		return plan_push(p, IPVS_OP_DEST_DEL, svc, have, "drained: no connections left");
	if (deadline_passed)
		return plan_push(p, IPVS_OP_DEST_DEL, svc, have, "drain timeout passed");
	if (have->weight == 0)
		return 0;
	d.weight = 0;
	return plan_push(p, IPVS_OP_DEST_EDIT, svc, &d, "draining: weight to 0");
}

static int plan_service_dests(struct plan *p, const struct plan_service *ws,
                              const struct plan_kernel_service *hs, const struct plan_index *ix,
                              uint64_t now_ms);

static int
plan_service(struct plan *p, const struct plan_service *ws, const struct plan_kernel_service *hs,
             uint64_t now_ms)
{
	const struct ipvs_service *svc = &ws->svc;
	struct plan_index ix;
	int rc;

	if (hs == NULL) {
		if (plan_push(p, IPVS_OP_SERVICE_ADD, svc, NULL, "missing") == -1)
			return -1;
	} else if (plan_service_differs(svc, &hs->svc)) {
		if (plan_push(p, IPVS_OP_SERVICE_EDIT, svc, NULL,
		              "scheduler or persistence differ") == -1)
			return -1;
	}

	if (plan_index_build(&ix, ws, hs) == -1)
		return -1;
	rc = plan_service_dests(p, ws, hs, &ix, now_ms);
	plan_index_free(&ix);
	return rc;
}

static int
plan_service_dests(struct plan *p, const struct plan_service *ws,
                   const struct plan_kernel_service *hs, const struct plan_index *ix,
                   uint64_t now_ms)
{
	const struct ipvs_service *svc = &ws->svc;

	for (size_t i = 0; i < ws->ndests; i++) {
		const struct plan_dest *wd = &ws->dests[i];
		const struct ipvs_dest *hd = hs != NULL ? find_have_dest(ix, &wd->dest) : NULL;
		struct ipvs_dest d = wd->dest;

		if (wd->want == PLAN_WANT_DRAIN) {
			/* Nothing to drain when it is not in the table. */
			if (hd != NULL &&
			    plan_drain(p, svc, hd, now_ms >= wd->drain_deadline_ms) == -1)
				return -1;
			continue;
		}
		if (hd == NULL) {
			if (plan_push(p, IPVS_OP_DEST_ADD, svc, &d, "missing") == -1)
				return -1;
		} else if (hd->weight != d.weight || hd->fwd != d.fwd ||
		           hd->u_threshold != d.u_threshold || hd->l_threshold != d.l_threshold) {
			if (plan_push(p, IPVS_OP_DEST_EDIT, svc, &d,
			              "weight or forwarding differ") == -1)
				return -1;
		}
	}

	/* Nobody wants these: removed from the configuration, or added by hand. */
	for (size_t i = 0; hs != NULL && i < hs->ndests; i++)
		if (find_want_dest(ix, &hs->dests[i]) == NULL &&
		    plan_drain(p, svc, &hs->dests[i], 0) == -1)
			return -1;
	return 0;
}

/* A managed service nobody wants: drain its destinations, delete it when it has none. */
static int
plan_unwanted_service(struct plan *p, const struct plan_kernel_service *hs)
{
	if (hs->ndests == 0)
		return plan_push(p, IPVS_OP_SERVICE_DEL, &hs->svc, NULL, "not configured");
	for (size_t i = 0; i < hs->ndests; i++)
		if (plan_drain(p, &hs->svc, &hs->dests[i], 0) == -1)
			return -1;
	return 0;
}

int
plan_build(struct plan *p, const struct plan_service *want, size_t nwant,
           const struct plan_kernel_service *have, size_t nhave, const struct plan_vip *vips,
           size_t nvips, uint64_t now_ms)
{
	for (size_t i = 0; i < nwant; i++) {
		const struct plan_kernel_service *hs = NULL;

		for (size_t j = 0; j < nhave && hs == NULL; j++)
			if (plan_service_same(&want[i].svc, &have[j].svc))
				hs = &have[j];
		if (plan_service(p, &want[i], hs, now_ms) == -1)
			return -1;
	}
	for (size_t j = 0; j < nhave; j++) {
		int wanted = 0;

		if (!plan_vip_managed(&have[j].svc, vips, nvips))
			continue;
		for (size_t i = 0; i < nwant && !wanted; i++)
			wanted = plan_service_same(&want[i].svc, &have[j].svc);
		if (!wanted && plan_unwanted_service(p, &have[j]) == -1)
			return -1;
	}
	return 0;
}

void
plan_free(struct plan *p)
{
	free(p->ops);
	memset(p, 0, sizeof(*p));
}
