/*
 * A move's map changes leave here: the user's entry is edited in the source under the map
 * lock, then published (cluster: the director compiles and serves it; local: compiled
 * into map.db here), and the barrier waits until every daemon that could deliver to or
 * hold a session on the old back end runs a map at least that new. Never copies mail.
 */
#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "map_compile.h"
#include "map_edit.h"
#include "move.h"
#include "util.h"

#define PUBLISH_TIMEOUT_MS 120000 /* the director compiles: about 3 s per million users */
#define ASK_TIMEOUT_MS     10000
#define POLL_FIRST_MS      200
#define POLL_MAX_MS        5000
#define WORKER_SOCKETS_MAX 1024

/* One request; the reply's body (malloc'd) when the daemon said ok. */
static char *
ask(const char *sock, const char *line, uint64_t timeout_ms, char *err, size_t errlen)
{
	const char *message, *body;
	char cerr[CONTROL_ERR_MAX], *reply, *out;
	size_t replylen, messagelen;
	int ok;

	if (control_client_request(sock, line, timeout_ms, &reply, &replylen, cerr, sizeof(cerr)) ==
	    -1) {
		err_set(err, errlen, "%s: %s", sock, cerr);
		return NULL;
	}
	if (control_reply_parse(reply, &ok, &message, &messagelen, &body) == -1) {
		err_set(err, errlen, "%s: not a control reply", sock);
		free(reply);
		return NULL;
	}
	if (!ok) {
		err_set(err, errlen, "%s: %s: %.*s", sock, line, (int)messagelen, message);
		free(reply);
		return NULL;
	}
	out = strdup(body);
	free(reply);
	if (out == NULL)
		err_set(err, errlen, "out of memory");
	return out;
}

int
move_parse_in_force(const char *body, uint64_t *version)
{
	const char *p = body;

	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t l = nl != NULL ? (size_t)(nl - p) : strlen(p);
		char num[24];

		if (l > 21 && memcmp(p, "map_version_in_force ", 21) == 0 && l - 21 < sizeof(num)) {
			memcpy(num, p + 21, l - 21);
			num[l - 21] = '\0';
			return parse_u64(num, 0, UINT64_MAX, version);
		}
		p = nl != NULL ? nl + 1 : NULL;
	}
	return -1;
}

/*
 * "published N" then "relay NAME map_installed N map_in_force N state STATE" per member.
 * A member that has left the pool (its agent asked to be drained, the drain ended and its
 * daemons stop) holds no session and delivers nothing: it is not waited for. Every other
 * member is, draining, not-ready and silent ones included: a draining relay still finishes
 * its sessions and its queue runner still delivers what it holds, and a silent one may
 * come back with both, so the move waits (and fails at the barrier timeout, or goes on
 * once the director forgets the relay) rather than let it deliver to the old back end
 * after the copy. Relays listed statically run no agent and report no map: keeping their
 * map current is the operator's (INSTALL says so).
 */
int
move_parse_map_status(const char *body, uint64_t version, char *lagging, size_t laglen)
{
	char name[128], state[64];
	unsigned long long inst, inforce, published;
	const char *p = body;
	int first = 1, n;

	lagging[0] = '\0';
	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t l = nl != NULL ? (size_t)(nl - p) : strlen(p);
		char line[512];

		if (l >= sizeof(line))
			return -1;
		memcpy(line, p, l);
		line[l] = '\0';
		p = nl != NULL ? nl + 1 : NULL;
		if (first) {
			if (sscanf(line, "published %llu%n", &published, &n) != 1 ||
			    line[n] != '\0')
				return -1;
			first = 0;
			continue;
		}
		if (line[0] == '\0')
			continue;
		if (sscanf(line, "relay %127s map_installed %llu map_in_force %llu state %63s%n",
		           name, &inst, &inforce, state, &n) != 4 ||
		    line[n] != '\0')
			return -1;
		if (strcmp(state, "left") == 0 || strcmp(state, "gone") == 0 ||
		    strcmp(state, "static") == 0)
			continue;
		if (inforce < version && lagging[0] == '\0')
			(void)str_format(lagging, laglen, "%s (state %s, map in force %llu)", name,
			                 state, inforce);
	}
	if (first)
		return -1;
	return lagging[0] == '\0' ? 1 : 0;
}

/* Cluster mode: the director compiles map.source and serves it. */
static int
publish_director(const struct mailplex_conf *conf, uint64_t *version, char *err, size_t errlen)
{
	unsigned long long v;
	const char *at;
	char *body;

	if ((body = ask(conf->director.control, "map-publish", PUBLISH_TIMEOUT_MS, err, errlen)) ==
	    NULL)
		return -1;
	if ((at = strstr(body, "map version ")) == NULL ||
	    sscanf(at, "map version %llu", &v) != 1) {
		err_set(err, errlen, "the director's map-publish reply names no version");
		free(body);
		return -1;
	}
	free(body);
	*version = v;
	return 0;
}

int
move_publish(const struct mailplex_conf *conf, const char *user, const char *state, int whole,
             uint64_t *version, char *err, size_t errlen)
{
	struct map_compile_stats cs;
	struct map_source *src = NULL;
	char lerr[MOVE_ERR_MAX];
	int lock, rc = -1;

	/* One edit and publish at a time: moves of a batch run in parallel. */
	if ((lock = move_lock(conf, "map", 1, err, errlen)) == -1)
		return -1;
	if ((whole ? map_edit_user_line : map_edit_user)(
	        conf->map.source, user, state, conf->move.mode == MAILPLEX_MOVE_LOCAL ? &src : NULL,
	        lerr, sizeof(lerr)) == -1) {
		err_set(err, errlen, "editing the map source: %s", lerr);
		goto out;
	}
	if (conf->move.mode == MAILPLEX_MOVE_CLUSTER) {
		rc = publish_director(conf, version, err, errlen);
		goto out;
	}
	if (map_compile(src, conf->map.source, conf->map.db, &cs, lerr, sizeof(lerr)) == -1) {
		err_set(err, errlen, "compiling %s: %s", conf->map.db, lerr);
		goto out;
	}
	*version = cs.version;
	rc = 0;
out:
	map_source_free(src);
	(void)close(lock);
	return rc;
}

/*
 * Every socket of a daemon with workers (<base>.N, <base>.N.old-PID after a reload), or
 * base itself. 0 with none found: the daemon does not run on this host.
 */
static int
worker_sockets(const char *base, glob_t *g)
{
	char pattern[CONTROL_REQUEST_MAX_BYTES + 8];
	int gr;

	memset(g, 0, sizeof(*g));
	if (str_format(pattern, sizeof(pattern), "%s.[0-9]*", base) == -1)
		return -1;
	gr = glob(pattern, GLOB_NOESCAPE, NULL, g);
	if (gr != 0 && gr != GLOB_NOMATCH)
		return -1;
	if (g->gl_pathc == 0 && access(base, F_OK) == 0) {
		globfree(g);
		memset(g, 0, sizeof(*g));
		if (glob(base, GLOB_NOESCAPE, NULL, g) != 0)
			return -1;
	}
	return g->gl_pathc > WORKER_SOCKETS_MAX ? -1 : (int)g->gl_pathc;
}

/*
 * Local mode: 1 when every socket of base answers cmd with map_version_in_force >= version
 * (the proxy's map-version is one line; the queue runner's status is short).
 */
static int
local_in_force(const char *what, const char *base, const char *cmd, const char *user,
               uint64_t version, char *why, size_t whylen)
{
	char line[CONTROL_REQUEST_MAX_BYTES], aerr[CONTROL_ERR_MAX + 128], *body;
	uint64_t v;
	glob_t g;
	int n, done = 1;

	if ((n = worker_sockets(base, &g)) < 0) {
		err_set(why, whylen, "%s: cannot list its control sockets (%s.N)", what, base);
		globfree(&g);
		return 0;
	}
	for (int i = 0; i < n && done; i++) {
		/* Belt and braces: the proxy closes them itself once the new map is in force. */
		if (user != NULL && str_format(line, sizeof(line), "kick %s", user) == 0 &&
		    (body = ask(g.gl_pathv[i], line, ASK_TIMEOUT_MS, aerr, sizeof(aerr))) != NULL)
			free(body);
		if ((body = ask(g.gl_pathv[i], cmd, ASK_TIMEOUT_MS, aerr, sizeof(aerr))) == NULL) {
			err_set(why, whylen, "%s", aerr);
			done = 0;
			break;
		}
		if (move_parse_in_force(body, &v) == -1) {
			err_set(why, whylen, "%s: its status reports no map_version_in_force",
			        g.gl_pathv[i]);
			done = 0;
		} else if (v < version) {
			err_set(why, whylen, "%s: map version %llu in force, waiting for %llu",
			        g.gl_pathv[i], (unsigned long long)v, (unsigned long long)version);
			done = 0;
		}
		free(body);
	}
	globfree(&g);
	return done;
}

int
move_barrier(const struct mailplex_conf *conf, const char *user, uint64_t version,
             int *reached_step, char *err, size_t errlen)
{
	uint64_t deadline = time_mono_ms() + conf->move.barrier_timeout_ms, delay = POLL_FIRST_MS;
	uint64_t max_polls = conf->move.barrier_timeout_ms / POLL_FIRST_MS + 2;
	char why[MOVE_ERR_MAX] = "not asked yet";
	int proxies = 0, queue = 0;

	for (uint64_t i = 0; i < max_polls; i++) {
		if (conf->move.mode == MAILPLEX_MOVE_LOCAL) {
			if (!proxies)
				proxies =
				    local_in_force("mailplex-proxy", conf->proxy.control,
				                   "map-version", user, version, why, sizeof(why));
			if (proxies && *reached_step < MOVE_STEP_SESSIONS_CLOSED)
				*reached_step = MOVE_STEP_SESSIONS_CLOSED;
			if (proxies && !queue)
				queue =
				    local_in_force("the queue runner", conf->smtpd.queue_control,
				                   "status", NULL, version, why, sizeof(why));
			if (proxies && queue) {
				*reached_step = MOVE_STEP_QUEUE_DRAINED;
				return 0;
			}
		} else {
			char *body, lag[256];
			int r;

			if ((body = ask(conf->director.control, "map-status", ASK_TIMEOUT_MS, why,
			                sizeof(why))) != NULL) {
				r = move_parse_map_status(body, version, lag, sizeof(lag));
				free(body);
				if (r == 1) {
					*reached_step = MOVE_STEP_QUEUE_DRAINED;
					return 0;
				}
				if (r == -1)
					err_set(why, sizeof(why),
					        "the director's map-status reply is "
					        "not understood");
				else
					err_set(why, sizeof(why), "relay %s", lag);
			}
		}
		if (time_mono_ms() + delay > deadline)
			break;
		(void)usleep((useconds_t)(delay * 1000));
		delay = delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2;
	}
	err_set(err, errlen, "map version %llu not in force after %llu s: %s",
	        (unsigned long long)version,
	        (unsigned long long)(conf->move.barrier_timeout_ms / 1000), why);
	return -1;
}

void
move_queue_flush(const struct mailplex_conf *conf)
{
	char err[CONTROL_ERR_MAX + 128], *body;

	if (conf->move.mode != MAILPLEX_MOVE_LOCAL)
		return;
	if ((body = ask(conf->smtpd.queue_control, "flush", ASK_TIMEOUT_MS, err, sizeof(err))) !=
	    NULL)
		free(body);
}
