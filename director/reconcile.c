/*
 * Reconciliation passes: dump the kernel's IPVS table, plan against the desired state,
 * apply the plan as one pipelined batch and log one line per operation with its result.
 * Level-triggered: a pass looks at the two states only, so a lost change is repaired by
 * the next pass. It never flushes, and nothing the kernel answers ends the process.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "director.h"
#include "log.h"
#include "util.h"

void
reconcile_kernel_free(struct director *d)
{
	for (size_t i = 0; i < d->nkernel; i++)
		free(d->kernel[i].dests);
	free(d->kernel);
	d->kernel = NULL;
	d->nkernel = 0;
}

/* Only services at our VIPs get their destinations dumped: the rest is not ours. */
static int
reconcile_managed(const struct director *d, const struct ipvs_service *svc)
{
	const struct director_state *st = &d->state;
	size_t alen = svc->af == AF_INET6 ? sizeof(struct in6_addr) : sizeof(struct in_addr);

	for (size_t s = 0; s < st->nservices; s++) {
		struct ipvs_service want;

		state_service_ipvs(&((const struct mailplex_conf_service *)st->conf->services.v)[s],
		                   &want);
		if (want.af == svc->af && memcmp(&want.addr, &svc->addr, alen) == 0)
			return 1;
	}
	return 0;
}

int
reconcile_dump(struct director *d)
{
	struct ipvs_service *svcs = NULL;
	struct plan_kernel_service *ks;
	struct ipvs_error err;
	size_t n = 0, nk = 0;

	if (ipvs_services_dump(d->ipvs, &svcs, &n, &err) == -1) {
		(void)str_copy(d->last_error, sizeof(d->last_error), err.msg);
		return -1;
	}
	if ((ks = calloc(n + 1, sizeof(*ks))) == NULL) {
		free(svcs);
		(void)str_copy(d->last_error, sizeof(d->last_error), "dump: out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if (!reconcile_managed(d, &svcs[i]))
			continue;
		ks[nk].svc = svcs[i];
		if (ipvs_dests_dump(d->ipvs, &svcs[i], &ks[nk].dests, &ks[nk].ndests, &err) == -1) {
			for (size_t j = 0; j < nk; j++)
				free(ks[j].dests);
			free(ks);
			free(svcs);
			(void)str_copy(d->last_error, sizeof(d->last_error), err.msg);
			return -1;
		}
		nk++;
	}
	free(svcs);
	reconcile_kernel_free(d);
	d->kernel = ks;
	d->nkernel = nk;
	state_note_kernel(&d->state, d->kernel, d->nkernel);
	if (ipvs_timeouts_get(d->ipvs, &d->timeouts, &err) == 0)
		d->timeouts_known = 1;
	return 0;
}

static int
reconcile_queue(struct ipvs_batch *b, const struct plan_op *op, struct ipvs_error *err)
{
	switch (op->op) {
	case IPVS_OP_SERVICE_ADD:
		return ipvs_batch_service_add(b, &op->svc, err);
	case IPVS_OP_SERVICE_EDIT:
		return ipvs_batch_service_edit(b, &op->svc, err);
	case IPVS_OP_SERVICE_DEL:
		return ipvs_batch_service_del(b, &op->svc, err);
	case IPVS_OP_DEST_ADD:
		return ipvs_batch_dest_add(b, &op->svc, &op->dest, err);
	case IPVS_OP_DEST_EDIT:
		return ipvs_batch_dest_edit(b, &op->svc, &op->dest, err);
	case IPVS_OP_DEST_DEL:
		return ipvs_batch_dest_del(b, &op->svc, &op->dest, err);
	default:
		ipvs_error_set(err, op->op, EINVAL);
		return -1;
	}
}

/* An add that finds the entry there, a delete that finds it gone: the goal is met. */
static int
reconcile_benign(enum ipvs_op op, int code)
{
	if (code == EEXIST)
		return op == IPVS_OP_SERVICE_ADD || op == IPVS_OP_DEST_ADD;
	if (code == ENOENT || code == ESRCH)
		return op == IPVS_OP_SERVICE_DEL || op == IPVS_OP_DEST_DEL;
	return 0;
}

static void
reconcile_log_op(const struct plan_op *op, const struct ipvs_error *res)
{
	char svc[96], dest[64], what[200];

	if (ipvs_service_format(&op->svc, svc, sizeof(svc)) == -1)
		(void)str_copy(svc, sizeof(svc), "?");
	if (op->op == IPVS_OP_DEST_ADD || op->op == IPVS_OP_DEST_EDIT ||
	    op->op == IPVS_OP_DEST_DEL) {
		if (ipvs_addr_format(op->dest.af, &op->dest.addr, op->dest.port, dest,
		                     sizeof(dest)) == -1)
			(void)str_copy(dest, sizeof(dest), "?");
		(void)str_format(what, sizeof(what), "%s %s -> %s %s weight %d",
		                 ipvs_op_name(op->op), svc, dest, ipvs_fwd_name(op->dest.fwd),
		                 op->dest.weight);
	} else {
		(void)str_format(what, sizeof(what), "%s %s %s persistence %us",
		                 ipvs_op_name(op->op), svc, op->svc.sched, op->svc.persistence_s);
	}
	if (res == NULL || res->code == 0)
		log_info("ipvs: %s (%s): ok", what, op->why);
	else if (reconcile_benign(op->op, res->code))
		log_info("ipvs: %s (%s): ok, %s already", what, op->why,
		         op->op == IPVS_OP_SERVICE_ADD || op->op == IPVS_OP_DEST_ADD ? "present"
		                                                                     : "gone");
	else
		log_warnx("ipvs: %s (%s): failed: %s", what, op->why, res->msg);
}

/* Applies p; returns the number of failed ops, or -1 if nothing could be sent. */
static int
reconcile_apply(struct director *d, const struct plan *p)
{
	struct ipvs_batch *b;
	struct ipvs_error err;
	size_t *idx;
	int failed = 0;

	if ((b = ipvs_batch_begin(d->ipvs)) == NULL) {
		(void)str_copy(d->last_error, sizeof(d->last_error), "batch: out of memory");
		return -1;
	}
	if ((idx = calloc(p->nops + 1, sizeof(*idx))) == NULL) {
		ipvs_batch_free(b);
		(void)str_copy(d->last_error, sizeof(d->last_error), "batch: out of memory");
		return -1;
	}
	for (size_t i = 0; i < p->nops; i++) {
		int q = reconcile_queue(b, &p->ops[i], &err);

		if (q == -1) {
			reconcile_log_op(&p->ops[i], &err);
			idx[i] = SIZE_MAX;
			failed++;
			continue;
		}
		idx[i] = (size_t)q;
	}
	if (ipvs_batch_commit(b, &err) == -1)
		log_warnx("ipvs: batch of %zu ops: %s", p->nops, err.msg);
	for (size_t i = 0; i < p->nops; i++) {
		const struct ipvs_error *res;

		if (idx[i] == SIZE_MAX)
			continue;
		res = ipvs_batch_result(b, idx[i]);
		reconcile_log_op(&p->ops[i], res);
		if (res != NULL && res->code != 0 && !reconcile_benign(p->ops[i].op, res->code))
			failed++;
	}
	free(idx);
	ipvs_batch_free(b);
	return failed;
}

static void
reconcile_periodic(struct ev_loop *loop, void *arg)
{
	(void)reconcile_run(arg);
}

static void
reconcile_soon_fire(struct ev_loop *loop, void *arg)
{
	(void)reconcile_run(arg);
}

void
reconcile_soon(struct director *d)
{
	if (!ev_timer_active(&d->soon) &&
	    ev_timer_start(d->loop, &d->soon, 0, reconcile_soon_fire, d) == -1)
		log_warn("reconcile: timer");
}

int
director_healthy(const struct director *d)
{
	return d->last_pass_ms != 0 && d->last_error[0] == '\0';
}

/* The two daemons the config asks for: [0] master, [1] backup. */
static void
reconcile_sync_want(const struct mailplex_conf_sync *c, struct ipvs_daemon want[2])
{
	memset(want, 0, 2 * sizeof(*want));
	want[0].state = IPVS_DAEMON_MASTER;
	want[0].syncid = (uint32_t)c->syncid;
	want[1].state = IPVS_DAEMON_BACKUP;
	want[1].syncid = (uint32_t)c->peer_syncid;
	for (int i = 0; i < 2; i++)
		(void)str_copy(want[i].mcast_ifname, sizeof(want[i].mcast_ifname), c->interface);
}

void
reconcile_sync(struct director *d)
{
	const struct mailplex_conf_sync *c = &d->conf.director.sync;
	struct ipvs_daemon want[2], *have = NULL;
	struct ipvs_error err;
	size_t n = 0;

	d->sync_error[0] = '\0';
	if (ipvs_daemon_dump(d->ipvs, &have, &n, &err) == -1) {
		(void)str_copy(d->sync_error, sizeof(d->sync_error), err.msg);
		log_warnx("sync: cannot read the sync daemons: %s", err.msg);
		return;
	}
	if (c->interface != NULL) {
		reconcile_sync_want(c, want);
		for (int i = 0; i < 2; i++) {
			const struct ipvs_daemon *k = NULL;
			const char *role = i == 0 ? "master" : "backup";

			for (size_t j = 0; j < n && k == NULL; j++)
				if (have[j].state == want[i].state)
					k = &have[j];
			if (k != NULL && k->syncid == want[i].syncid &&
			    strcmp(k->mcast_ifname, want[i].mcast_ifname) == 0)
				continue;
			/* A daemon with other settings is replaced: the config says what runs. */
			if (k != NULL && ipvs_daemon_del(d->ipvs, &want[i], &err) == -1) {
				log_warnx("sync: stop %s daemon (syncid %u on %s): %s", role, k->syncid,
				          k->mcast_ifname, err.msg);
				(void)str_copy(d->sync_error, sizeof(d->sync_error), err.msg);
				continue;
			}
			if (ipvs_daemon_add(d->ipvs, &want[i], &err) == -1) {
				log_warnx("sync: start %s daemon (syncid %u on %s): failed: %s", role,
				          want[i].syncid, want[i].mcast_ifname, err.msg);
				(void)str_copy(d->sync_error, sizeof(d->sync_error), err.msg);
			} else {
				log_info("sync: start %s daemon (syncid %u on %s): ok", role,
				         want[i].syncid, want[i].mcast_ifname);
			}
		}
		free(have);
		have = NULL;
		n = 0;
		if (ipvs_daemon_dump(d->ipvs, &have, &n, &err) == -1) {
			(void)str_copy(d->sync_error, sizeof(d->sync_error), err.msg);
			return;
		}
	}
	d->nsync = 0;
	for (size_t j = 0; j < n && d->nsync < ARRAY_LEN(d->sync); j++)
		d->sync[d->nsync++] = have[j];
	free(have);
}

int
reconcile_run(struct director *d)
{
	struct plan p;
	struct plan_kernel_service *grace = NULL;
	size_t ngrace = 0;
	int failed, rc = 0, hidden;

	ev_timer_stop(d->loop, &d->soon);
	if (ev_timer_start(d->loop, &d->periodic, d->conf.director.reconcile_ms, reconcile_periodic,
	                   d) == -1)
		log_warn("reconcile: timer");
	d->last_pass_ms = ev_now_ms(d->loop);
	if (reconcile_dump(d) == -1) {
		log_warnx("reconcile: cannot read the IPVS table: %s", d->last_error);
		return -1;
	}
	reconcile_sync(d);
	state_build(&d->state, ev_now_ms(d->loop));
	memset(&p, 0, sizeof(p));
	/* After a restart, joined relays' entries wait for their owners to re-announce. */
	if ((hidden = members_grace_filter(d, &grace, &ngrace)) > 0)
		log_debug("reconcile: rejoin grace: %d unclaimed entries left as they are", hidden);
	if (hidden == -1 ||
	    plan_build(&p, d->state.want, d->state.nservices, hidden > 0 ? grace : d->kernel,
	               hidden > 0 ? ngrace : d->nkernel, d->state.vips, d->state.nvips,
	               ev_now_ms(d->loop)) == -1) {
		members_grace_free(grace, ngrace);
		plan_free(&p);
		(void)str_copy(d->last_error, sizeof(d->last_error), "plan: out of memory");
		log_warnx("reconcile: %s", d->last_error);
		return -1;
	}
	members_grace_free(grace, ngrace);
	d->last_ops = p.nops;
	d->last_failed = 0;
	d->last_error[0] = '\0';
	if (p.nops > 0) {
		if ((failed = reconcile_apply(d, &p)) == -1) {
			log_warnx("reconcile: %s", d->last_error);
			rc = -1;
		} else {
			d->last_failed = (size_t)failed;
		}
		/* Status shows the table as it is now, not as it was before the changes. */
		if (reconcile_dump(d) == -1)
			log_warnx("reconcile: cannot re-read the IPVS table: %s", d->last_error);
	}
	plan_free(&p);
	return rc;
}
