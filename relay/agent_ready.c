/*
 * Readiness of the node as the directors should see it: mailplex-smtpd and mailplex-proxy
 * answer on their control sockets, the spool has its free space, which map version is
 * installed, and which one is in force (the oldest any proxy session or delivery in flight
 * still follows). Asking a control socket blocks for at most AGENT_READY_TIMEOUT_MS: the
 * agent has nothing else to serve meanwhile, and a late heartbeat only delays the next one.
 */
#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "agent.h"
#include "control.h"
#include "log.h"
#include "map.h"
#include "util.h"

#define IN_FORCE_KEY "map_version_in_force "

/* The value of the status line "map_version_in_force N"; 0 when there is none. */
static uint64_t
status_in_force(const char *body)
{
	const char *p = body;
	uint64_t v = 0;
	char num[24];
	size_t n;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, IN_FORCE_KEY, strlen(IN_FORCE_KEY)) == 0) {
			p += strlen(IN_FORCE_KEY);
			n = strcspn(p, "\n");
			if (n == 0 || n >= sizeof(num) ||
			    str_copy_n(num, sizeof(num), p, n) == -1 ||
			    parse_u64(num, 0, UINT64_MAX, &v) == -1)
				return 0;
			return v;
		}
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return 0;
}

/*
 * 1 when the daemon behind path answers cmd with "ok"; *in_force gets the answer's
 * map_version_in_force (0: none). *absent is set when nothing listens there (connect
 * refused, or no such socket): a process that is gone holds no session.
 */
static int
agent_ready_ask(const char *path, const char *cmd, char *why, size_t whylen, uint64_t *in_force,
                int *absent)
{
	const char *message, *body;
	char err[CONTROL_ERR_MAX], *reply = NULL;
	size_t replylen, messagelen;
	int ok = 0;

	*in_force = 0;
	*absent = 0;
	errno = 0;
	if (control_client_request(path, cmd, AGENT_READY_TIMEOUT_MS, &reply, &replylen, err,
	                           sizeof(err)) == -1) {
		*absent = errno == ECONNREFUSED || errno == ENOENT;
		err_set(why, whylen, "%s: %s", path, err);
		return 0;
	}
	if (control_reply_parse(reply, &ok, &message, &messagelen, &body) == -1)
		ok = 0;
	if (!ok)
		err_set(why, whylen, "%s: answered with an error", path);
	else
		*in_force = status_in_force(body);
	free(reply);
	return ok;
}

/*
 * The proxy: worker 0's status is its readiness; every worker's socket (those of workers
 * retired by a reload and finishing their sessions too) gives its map version in force
 * (map-version: one line, where status lists every session). A worker's socket nobody
 * listens on is skipped; any other failure makes it unknown (0).
 */
static int
agent_ready_proxy(const char *base, char *why, size_t whylen, uint64_t *in_force)
{
	char path[128], pattern[128];
	uint64_t v;
	int ok, absent;
	glob_t g;

	*in_force = 0;
	if (str_format(path, sizeof(path), "%s.0", base) == -1 ||
	    str_format(pattern, sizeof(pattern), "%s.[0-9]*", base) == -1) {
		err_set(why, whylen, "%s: path too long", base);
		return 0;
	}
	if (!(ok = agent_ready_ask(path, "status", why, whylen, &v, &absent)))
		return ok;
	*in_force = UINT64_MAX;
	memset(&g, 0, sizeof(g));
	/* Worker 0 answered: its socket is in the list unless it went away since. */
	if (glob(pattern, GLOB_NOESCAPE, NULL, &g) != 0 || g.gl_pathc == 0) {
		*in_force = 0;
		globfree(&g);
		return ok;
	}
	for (size_t i = 0; i < g.gl_pathc && *in_force != 0; i++) {
		char ignored[CONTROL_ERR_MAX + 64];

		if (agent_ready_ask(g.gl_pathv[i], "map-version", ignored, sizeof(ignored), &v,
		                    &absent)) {
			if (v < *in_force)
				*in_force = v;
		} else if (!absent || strcmp(g.gl_pathv[i], path) == 0) {
			log_debug("readiness: %s", ignored);
			*in_force = 0;
		}
	}
	globfree(&g);
	if (*in_force == UINT64_MAX)
		*in_force = 0;
	return ok;
}

void
agent_ready_probe(struct agent *a)
{
	const struct mailplex_conf_relay_agent *rc = &a->conf.relay;
	char why[CONTROL_ERR_MAX + 64] = "", err[256], qwhy[CONTROL_ERR_MAX + 64];
	uint8_t ready = 0, was = a->ready;
	uint64_t proxy_force = UINT64_MAX, queue_force = UINT64_MAX, unused, was_force;
	struct statvfs sv;
	struct map *map;
	int absent;

	if (rc->smtpd_control == NULL ||
	    agent_ready_ask(rc->smtpd_control, "status", why, sizeof(why), &unused, &absent))
		ready |= CLUSTER_READY_SMTPD;
	/* The deliveries in flight are the queue runner's (smtpd.queue_control). */
	if (rc->smtpd_control != NULL && a->conf.smtpd.queue_control == NULL)
		queue_force = 0;
	else if (rc->smtpd_control != NULL &&
	         !agent_ready_ask(a->conf.smtpd.queue_control, "status", qwhy, sizeof(qwhy),
	                          &queue_force, &absent))
		queue_force = 0;
	/* Every proxy worker serves <control>.<index>; worker 0 always exists. */
	if (rc->proxy_control == NULL)
		ready |= CLUSTER_READY_PROXY;
	else if (agent_ready_proxy(rc->proxy_control, why, sizeof(why), &proxy_force))
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
	/* Neither daemon here: nothing routes by any other map than the installed one. */
	was_force = a->map_in_force;
	a->map_in_force = proxy_force < queue_force ? proxy_force : queue_force;
	if (a->map_in_force == UINT64_MAX)
		a->map_in_force = a->map_version;
	if (a->map_in_force != was_force)
		log_info("map version in force: %llu (installed %llu)",
		         (unsigned long long)a->map_in_force, (unsigned long long)a->map_version);
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
