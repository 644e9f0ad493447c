/*
 * Readiness of the node as the directors should see it: mailplex-smtpd and mailplex-proxy
 * answer on their control sockets, the spool has its free space, and which map version is
 * installed. Asking a control socket blocks for at most AGENT_READY_TIMEOUT_MS: the agent
 * has nothing else to serve meanwhile, and a late heartbeat only delays the next one.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent.h"
#include "control.h"
#include "log.h"
#include "map.h"
#include "util.h"

/* 1 when the daemon behind path answers "status" with "ok". */
static int
agent_ready_ask(const char *path, char *why, size_t whylen)
{
	const char *message, *body;
	char err[CONTROL_ERR_MAX], *reply = NULL;
	size_t replylen, messagelen;
	int ok = 0;

	if (control_client_request(path, "status", AGENT_READY_TIMEOUT_MS, &reply, &replylen, err,
	                           sizeof(err)) == -1) {
		err_set(why, whylen, "%s: %s", path, err);
		return 0;
	}
	if (control_reply_parse(reply, &ok, &message, &messagelen, &body) == -1)
		ok = 0;
	if (!ok)
		err_set(why, whylen, "%s: answered with an error", path);
	free(reply);
	return ok;
}

void
agent_ready_probe(struct agent *a)
{
	const struct mailplex_conf_relay_agent *rc = &a->conf.relay;
	char why[CONTROL_ERR_MAX + 64] = "", path[128], err[256];
	uint8_t ready = 0, was = a->ready;
	struct statvfs sv;
	struct map *map;

	if (rc->smtpd_control == NULL || agent_ready_ask(rc->smtpd_control, why, sizeof(why)))
		ready |= CLUSTER_READY_SMTPD;
	/* Every proxy worker serves <control>.<index>; worker 0 always exists. */
	if (rc->proxy_control == NULL)
		ready |= CLUSTER_READY_PROXY;
	else if (str_format(path, sizeof(path), "%s.0", rc->proxy_control) == 0 &&
	         agent_ready_ask(path, why, sizeof(why)))
		ready |= CLUSTER_READY_PROXY;
	a->spool_free = 0;
	if (rc->spool == NULL) {
		ready |= CLUSTER_READY_SPOOL;
	} else if (statvfs(rc->spool, &sv) == -1) {
		err_set(why, sizeof(why), "spool %s: cannot stat", rc->spool);
	} else {
		a->spool_free = (uint64_t)sv.f_bavail * sv.f_frsize;
		if (a->spool_free >= rc->spool_min_free)
			ready |= CLUSTER_READY_SPOOL;
		else
			err_set(why, sizeof(why), "spool %s: %llu bytes free, below %llu",
			        rc->spool, (unsigned long long)a->spool_free,
			        (unsigned long long)rc->spool_min_free);
	}
	/* No map yet is version 0: the directors see the node runs none. */
	a->map_version = 0;
	if ((map = map_open(a->conf.map.db, err, sizeof(err))) != NULL) {
		a->map_version = map_version(map);
		map_close(map);
	}
	/* Routing by an old map for too long: out of the pool until the fetch succeeds. */
	if ((ready & (CLUSTER_READY_SMTPD | CLUSTER_READY_PROXY | CLUSTER_READY_SPOOL)) ==
	        (CLUSTER_READY_SMTPD | CLUSTER_READY_PROXY | CLUSTER_READY_SPOOL) &&
	    !agent_map_lagging(a, why, sizeof(why)))
		ready |= CLUSTER_READY_NODE;
	a->ready = ready;
	if (!a->probed) {
		a->probed = 1;
		was = ready & CLUSTER_READY_NODE ? 0 : CLUSTER_READY_NODE;
	}
	if ((was & CLUSTER_READY_NODE) && !(ready & CLUSTER_READY_NODE))
		log_warnx("readiness: not ready: %s", why);
	else if (!(was & CLUSTER_READY_NODE) && (ready & CLUSTER_READY_NODE))
		log_info("readiness: ready (map version %llu)", (unsigned long long)a->map_version);
}
