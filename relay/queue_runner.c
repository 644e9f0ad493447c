/*
 * The queue runner (queue.h): finds committed messages (a scan at start and every
 * minute, inotify in between), routes each pending recipient through the map at every
 * attempt, groups them into one job per back end, records every result in state/QID
 * before going on, retries with back-off, bounces what failed for good and removes a
 * message once every recipient is final. It never modifies queue/QID.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "queue.h"
#include "queue_dsn.h"
#include "queue_runner.h"
#include "resolve.h"
#include "tls.h"
#include "util.h"

void queue_conn_reap(struct queue_ctx *ctx); /* queue_conn.c */

static void msg_attempt_end(struct queue_ctx *ctx, struct queue_msg *m);
static void queue_reload(struct queue_ctx *ctx);

static uint64_t
time_unix_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *
queue_rcpt_state_name(enum queue_rcpt_state s)
{
	switch (s) {
	case QUEUE_RCPT_PENDING:
		return "pending";
	case QUEUE_RCPT_DELIVERED:
		return "delivered";
	case QUEUE_RCPT_FAILED:
		return "failed";
	case QUEUE_RCPT_BOUNCED:
		return "bounced";
	}
	return "?";
}

/* A qid names a file in our directories: only what spool.c makes, [0-9A-F]. */
static int
qid_valid(const char *q)
{
	size_t i;

	for (i = 0; q[i] != '\0'; i++)
		if (i >= SPOOL_QID_MAX ||
		    !((q[i] >= '0' && q[i] <= '9') || (q[i] >= 'A' && q[i] <= 'F')))
			return 0;
	return i > 0;
}

struct queue_msg *
queue_msg_find(struct queue_ctx *ctx, const char *qid)
{
	struct queue_msg *m;

	for (m = ctx->msgs; m != NULL; m = m->next)
		if (!m->removed && strcmp(m->qid, qid) == 0)
			return m;
	return NULL;
}

static void
msg_free(struct queue_msg *m)
{
	if (m->fd >= 0)
		close(m->fd);
	spool_envelope_free(&m->env);
	queue_state_free(&m->st);
	free(m->route);
	free(m);
}

/* Blocking on purpose: a removal must be durable before the state log goes (below). */
static int
fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (fd == -1)
		return -1;
	r = fsync(fd);
	close(fd);
	return r;
}

static int
queue_qids_add(struct queue_qids *q, const char *qid)
{
	char(*nv)[SPOOL_QID_MAX + 1];
	size_t ncap;

	if (q->n == q->cap) {
		ncap = q->cap == 0 ? 16 : q->cap * 2;
		if ((nv = realloc(q->v, ncap * sizeof(*nv))) == NULL)
			return -1;
		q->v = nv;
		q->cap = ncap;
	}
	str_copy(q->v[q->n++], sizeof(q->v[0]), qid);
	return 0;
}

/*
 * queue/QID goes first (into the spool's pool of files for reuse, or unlinked) and
 * durably: if a crash left the state log without the message, nothing is lost; the other
 * way round, the message would be delivered again. The fsync
 * of queue/ is shared by every removal made before it starts (queue_removals_sync, before
 * the loop sleeps): with many deliveries finishing together one fsync covers them all.
 */
static void
msg_remove_files(struct queue_ctx *ctx, struct queue_msg *m)
{
	if (spool_remove(ctx->spool, m->qid, m->size) == -1 && errno != ENOENT)
		log_warn("%s: remove %s/%s", m->qid, ctx->queue_dir, m->qid);
	/* Should this fail, the log stays: queue_scan removes it at the next start. */
	if (m->has_log && queue_qids_add(&ctx->rm_wait, m->qid) == -1)
		log_warnx("%s: out of memory: state log left until the next start", m->qid);
	ctx->removals++;
}

/* The fsync of queue/ is back: the state logs of the removals it covered can go. */
static void
queue_removals_synced(struct queue_ctx *ctx)
{
	char path[4200];
	size_t i;

	ctx->rm_syncing = 0;
	if (ctx->rm_job.error != 0) {
		errno = ctx->rm_job.error;
		log_warn("queue: fsync %s", ctx->queue_dir);
	}
	/* Without the fsync the logs stay: queue_scan removes them at the next start. */
	for (i = 0; ctx->rm_job.error == 0 && i < ctx->rm_sync.n; i++) {
		const char *qid = ctx->rm_sync.v[i];

		if (str_format(path, sizeof(path), "%s/%s", ctx->state_dir, qid) == 0 &&
		    unlink(path) == -1 && errno != ENOENT)
			log_warn("%s: unlink %s", qid, path);
	}
	ctx->rm_sync.n = 0;
}

/* before_sleep: one fsync of queue/ for the removals so far, unless one is out already. */
static void
queue_removals_sync(struct queue_ctx *ctx)
{
	struct queue_qids t;

	if (ctx->removals == 0 || ctx->rm_syncing)
		return; /* the next starts once the one out is back */
	ctx->removals = 0;
	t = ctx->rm_sync; /* empty: its buffer is reused */
	ctx->rm_sync = ctx->rm_wait;
	ctx->rm_wait = t;
	ctx->rm_syncing = 1;
	ctx->rm_job.fd = spool_queue_fd(ctx->spool);
	ctx->rm_job.arg = ctx;
	if (ctx->fsync == NULL || spool_fsync_submit(ctx->fsync, &ctx->rm_job) == -1) {
		/* Blocking on the loop: only without the thread (it could not start). */
		ctx->rm_job.error = fsync(ctx->rm_job.fd) == -1 ? errno : 0;
		queue_removals_synced(ctx);
	}
}

static void
queue_fsync_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct queue_ctx *ctx = arg;

	(void)loop;
	(void)fd;
	(void)events;
	/* rm_job is the only job: the removals made meanwhile start the next before sleep. */
	if (spool_fsync_done(ctx->fsync) != NULL)
		queue_removals_synced(ctx);
}

/* Shutdown: the fsync out comes back, and the removals since get theirs on the loop. */
static void
queue_removals_stop(struct queue_ctx *ctx)
{
	if (ctx->fsync != NULL) {
		if (ctx->rm_syncing) {
			spool_fsync_wait(ctx->fsync);
			(void)spool_fsync_done(ctx->fsync);
			queue_removals_synced(ctx);
		}
		(void)ev_io_del(ctx->loop, spool_fsync_eventfd(ctx->fsync));
		spool_fsync_free(ctx->fsync);
		ctx->fsync = NULL;
	}
	queue_removals_sync(ctx);
	free(ctx->rm_wait.v);
	free(ctx->rm_sync.v);
	memset(&ctx->rm_wait, 0, sizeof(ctx->rm_wait));
	memset(&ctx->rm_sync, 0, sizeof(ctx->rm_sync));
}

void
queue_msg_delete(struct queue_ctx *ctx, struct queue_msg *m, const char *why)
{
	if (m->active) {
		m->deleted = 1; /* the running attempt's jobs still point at it */
		return;
	}
	log_info("%s: removed (%s)", m->qid, why);
	msg_remove_files(ctx, m);
	m->removed = 1;
}

/* Frees the messages removed during this loop iteration (before_sleep hook). */
static void
msgs_reap(struct queue_ctx *ctx)
{
	struct queue_msg **pp = &ctx->msgs, *m;

	while ((m = *pp) != NULL) {
		if (m->removed) {
			*pp = m->next;
			msg_free(m);
		} else {
			pp = &m->next;
		}
	}
}

int
queue_msg_record(struct queue_ctx *ctx, struct queue_msg *m, const char *recs, size_t len)
{
	char path[4200], err[256];
	int fd, r;

	if (str_format(path, sizeof(path), "%s/%s", ctx->state_dir, m->qid) == -1)
		return -1;
	/* The log is made by its first record: a message delivered at once never needs one. */
	if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		log_warn("%s: open %s", m->qid, path);
		return -1;
	}
	r = queue_state_append(fd, recs, len, err, sizeof(err));
	if (r == -1)
		log_warnx("%s: %s", m->qid, err);
	if (close(fd) == -1 && r == 0) {
		log_warn("%s: close %s", m->qid, path);
		r = -1;
	}
	/* A new log's name must survive a crash with its first record. */
	if (r == 0 && !m->has_log) {
		if (fsync_dir(ctx->state_dir) == -1) {
			log_warn("%s: fsync %s", m->qid, ctx->state_dir);
			r = -1;
		}
	}
	m->has_log = 1;
	return r;
}

/* Reads queue/QID's envelope and replays state/QID. NULL (logged) if unusable now. */
static struct queue_msg *
msg_load(struct queue_ctx *ctx, const char *qid)
{
	struct queue_msg *m;
	char path[4200], err[512];
	struct stat sb;
	int fd, sfd;

	if (str_format(path, sizeof(path), "%s/%s", ctx->queue_dir, qid) == -1)
		return NULL;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno != ENOENT)
			log_warn("%s: open %s", qid, path);
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL) {
		log_warnx("%s: out of memory", qid);
		close(fd);
		return NULL;
	}
	m->fd = -1;
	str_copy(m->qid, sizeof(m->qid), qid);
	if (fstat(fd, &sb) == -1) {
		log_warn("%s: fstat %s", qid, path);
		close(fd);
		free(m);
		return NULL;
	}
	if (spool_envelope_read(fd, &m->env, &m->body_off, err, sizeof(err)) == -1) {
		log_warnx("%s: unreadable queue file, left alone: %s", qid, err);
		close(fd);
		free(m);
		return NULL;
	}
	close(fd);
	m->size = (uint64_t)sb.st_size;
	if (queue_state_init(&m->st, m->env.nrcpt) == -1 ||
	    (m->route = calloc(m->env.nrcpt ? m->env.nrcpt : 1, sizeof(*m->route))) == NULL) {
		log_warnx("%s: out of memory", qid);
		msg_free(m);
		return NULL;
	}
	/* No state/QID: no attempt recorded yet (the log is made by the first record). */
	if (str_format(path, sizeof(path), "%s/%s", ctx->state_dir, qid) == -1)
		path[0] = '\0';
	if (path[0] == '\0' || stat(path, &sb) == 0 || errno != ENOENT) {
		if ((sfd = queue_state_open(ctx->state_dir, qid, &m->st, err, sizeof(err))) ==
		    -1) {
			log_warnx("%s: %s", qid, err);
			msg_free(m);
			return NULL;
		}
		close(sfd);
		m->has_log = 1;
	}
	if (m->st.torn)
		log_warnx("%s: state log had a torn last record (crash while writing); ignored",
		          qid);
	for (size_t i = 0; i < m->env.nrcpt; i++)
		str_copy(m->route[i].backend, sizeof(m->route[i].backend), m->env.rcpt[i].backend);
	m->next = ctx->msgs;
	ctx->msgs = m;
	log_debug("%s: queued, %zu recipient(s), %" PRIu64 " attempt(s) so far", qid, m->env.nrcpt,
	          m->st.attempts);
	return m;
}

/* ---- routing and jobs ---- */

static struct queue_backend *
backend_get(struct queue_ctx *ctx, const char *name, enum map_deliver_proto proto, const char *host,
            uint16_t port, enum map_tls tls)
{
	struct queue_backend *be;

	/* A back end whose endpoint changed in the map gets a fresh entry (new connections). */
	for (be = ctx->backends; be != NULL; be = be->next)
		if (strcmp(be->name, name) == 0 && be->proto == proto &&
		    strcmp(be->host, host) == 0 && be->port == port && be->tls == tls)
			return be;
	if ((be = calloc(1, sizeof(*be))) == NULL)
		return NULL;
	be->ctx = ctx;
	str_copy(be->name, sizeof(be->name), name);
	be->proto = proto;
	str_copy(be->host, sizeof(be->host), host);
	be->port = port;
	be->tls = tls;
	be->next = ctx->backends;
	ctx->backends = be;
	return be;
}

void
queue_job_free(struct queue_job *job)
{
	free(job->idx);
	free(job->accepted);
	free(job->reply);
	free(job->result);
	free(job);
}

static struct queue_job *
job_new(struct queue_msg *m, struct queue_backend *be, size_t cap)
{
	struct queue_job *job = calloc(1, sizeof(*job));

	if (job == NULL)
		return NULL;
	job->msg = m;
	job->be = be;
	job->idx = calloc(cap, sizeof(*job->idx));
	job->accepted = calloc(cap, sizeof(*job->accepted));
	job->reply = calloc(cap, sizeof(*job->reply));
	job->result = calloc(cap, sizeof(*job->result));
	if (job->idx == NULL || job->accepted == NULL || job->reply == NULL ||
	    job->result == NULL) {
		queue_job_free(job);
		return NULL;
	}
	return job;
}

/* The one log line per delivery attempt of a recipient. */
static void
log_attempt(struct queue_ctx *ctx, const struct queue_msg *m, size_t i, const char *backend,
            const char *result, const char *reply)
{
	uint64_t now = time_unix_ms(), arr = m->env.arrival * 1000u;
	uint64_t delay = now > arr ? now - arr : 0;

	(void)ctx;
	log_info("%s: client=%s from=<%s> to=<%s> backend=%s result=%s delay=%" PRIu64 ".%03" PRIu64
	         "s attempt=%" PRIu64 " reply=\"%s\"",
	         m->qid, m->env.client_addr[0] ? m->env.client_addr : "local", m->env.sender,
	         m->env.rcpt[i].addr, backend, result, delay / 1000, delay % 1000,
	         m->st.attempts + 1, reply);
}

/* Records one decision taken without a back end (map verdict, expiry). */
static size_t
rec_add(char *recs, size_t off, size_t cap, size_t idx, enum queue_rcpt_state s, const char *reply)
{
	int n;

	if (cap - off < QUEUE_STATE_RECORD_MAX)
		return off;
	n = queue_state_fmt_rcpt(recs + off, cap - off, idx, s, reply);
	return n > 0 ? off + (size_t)n : off;
}

/* The last job of the attempt delivered all its recipients and every other one is final. */
static int
job_finishes_msg(const struct queue_job *job)
{
	const struct queue_msg *m = job->msg;
	size_t i;

	if (m->jobs != 1 || m->deleted)
		return 0;
	for (i = 0; i < job->n; i++)
		if (job->result[i] != QUEUE_RCPT_DELIVERED)
			return 0;
	for (i = 0; i < m->env.nrcpt; i++)
		if (!m->route[i].in_job && (m->st.rcpt[i].state == QUEUE_RCPT_PENDING ||
		                            m->st.rcpt[i].state == QUEUE_RCPT_FAILED))
			return 0;
	return 1;
}

void
queue_job_done(struct queue_ctx *ctx, struct queue_job *job)
{
	struct queue_msg *m = job->msg;
	char *recs;
	size_t off = 0, cap = job->n * QUEUE_STATE_RECORD_MAX, i, r;
	char be[MAP_NAME_MAX + SOCK_ADDR_STRLEN + 16];

	(void)str_format(be, sizeof(be), "%s(%s:%u %s)", job->be->name, job->be->host,
	                 job->be->port, map_proto_name(job->be->proto));
	if (job_finishes_msg(job)) {
		/*
		 * Every recipient is delivered and this was the attempt's last job: the message
		 * is removed next (msg_attempt_end), and that removal, fsynced, is the durable
		 * record. A crash before it delivers again, as a crash before the log's fdatasync
		 * would: the window between the back end's reply and our record stays one fsync.
		 */
	} else if ((recs = malloc(cap)) != NULL) {
		for (i = 0; i < job->n; i++)
			off = rec_add(recs, off, cap, job->idx[i], job->result[i], job->reply[i]);
		/*
		 * If the log cannot be written the results are kept in memory only: a delivered
		 * recipient stays delivered for this process; a restart might repeat it.
		 */
		(void)queue_msg_record(ctx, m, recs, off);
		free(recs);
	}
	for (i = 0; i < job->n; i++) {
		r = job->idx[i];
		m->route[r].in_job = 0;
		if (m->st.rcpt[r].state != QUEUE_RCPT_DELIVERED)
			m->st.rcpt[r].state = job->result[i];
		str_copy(m->st.rcpt[r].reply, sizeof(m->st.rcpt[r].reply), job->reply[i]);
		log_attempt(ctx, m, r, be,
		            job->result[i] == QUEUE_RCPT_DELIVERED ? "delivered"
		            : job->result[i] == QUEUE_RCPT_FAILED  ? "failed"
		                                                   : "deferred",
		            job->reply[i]);
	}
	queue_job_free(job);
	if (--m->jobs == 0)
		msg_attempt_end(ctx, m);
}

enum route_verdict {
	ROUTE_BACKEND, /* *be set */
	ROUTE_DEFER,   /* reply set, 4xx */
	ROUTE_FAIL,    /* reply set, 5xx */
	ROUTE_DROP,    /* a bounce with nowhere to go: final, no bounce of its own */
};

static enum route_verdict
msg_route(struct queue_ctx *ctx, const struct queue_msg *m, size_t i, struct queue_backend **be,
          char *backend_name, char *reply, size_t replylen)
{
	const char *addr = m->env.rcpt[i].addr;
	const struct map_recipient *mr = NULL;
	const struct map_backend *mb;
	struct map_result res;
	enum route_verdict v = ROUTE_DEFER;
	size_t k;

	map_lookup(ctx->map, addr, &res);
	for (k = 0; k < res.nrcpt; k++)
		if (res.rcpt[k].status == res.status) {
			mr = &res.rcpt[k];
			break;
		}
	switch (res.status) {
	case MAP_DELIVER:
		mb = mr != NULL ? mr->backend : NULL;
		if (mb == NULL || mb->deliver_proto == MAP_PROTO_NONE ||
		    mb->deliver.host[0] == '\0') {
			(void)str_format(reply, replylen,
			                 "451 4.3.5 back end %s has no delivery endpoint",
			                 mb != NULL ? mb->name : "?");
			break;
		}
		str_copy(backend_name, MAP_NAME_MAX + 1, mb->name);
		*be = backend_get(ctx, mb->name, mb->deliver_proto, mb->deliver.host,
		                  mb->deliver.port, mb->tls);
		if (*be == NULL) {
			(void)str_format(reply, replylen, "451 4.3.0 out of memory");
			break;
		}
		v = ROUTE_BACKEND;
		break;
	case MAP_MIGRATING:
		/*
		 * The mailbox is being moved: deliver once the move is done, to the new home.
		 * Listed under the new back end: nothing goes to the old one any more, which
		 * is what a migration waits for ("queue list backend OLD").
		 */
		(void)str_format(reply, replylen, "451 4.2.1 <%s>: mailbox is being migrated",
		                 addr);
		if (mr != NULL && mr->backend != NULL)
			str_copy(backend_name, MAP_NAME_MAX + 1, mr->backend->name);
		break;
	case MAP_REJECT:
		if (mr != NULL && mr->text[0] == '5')
			(void)str_format(reply, replylen, "%s", mr->text);
		else
			(void)str_format(reply, replylen, "550 5.1.1 <%s>: %s", addr,
			                 mr != NULL && mr->text[0] ? mr->text : "rejected");
		v = ROUTE_FAIL;
		break;
	case MAP_UNKNOWN_USER:
		(void)str_format(reply, replylen, "550 5.1.1 <%s>: unknown user", addr);
		v = ROUTE_FAIL;
		break;
	case MAP_NOT_OURS:
		if (m->env.sender[0] == '\0' && ctx->have_bounce_relay) {
			str_copy(backend_name, MAP_NAME_MAX + 1, QUEUE_BOUNCE_RELAY);
			*be = backend_get(ctx, QUEUE_BOUNCE_RELAY, MAP_PROTO_SMTP,
			                  ctx->bounce_relay_host, ctx->bounce_relay_port,
			                  MAP_TLS_OFF);
			v = *be != NULL ? ROUTE_BACKEND : ROUTE_DEFER;
			if (*be == NULL)
				(void)str_format(reply, replylen, "451 4.3.0 out of memory");
			break;
		}
		if (m->env.sender[0] == '\0') {
			(void)str_format(reply, replylen,
			                 "550 5.4.4 <%s>: bounce to a foreign domain dropped: no "
			                 "smtpd.bounce_relay",
			                 addr);
			v = ROUTE_DROP;
			break;
		}
		(void)str_format(reply, replylen, "550 5.1.2 <%s>: domain not served here", addr);
		v = ROUTE_FAIL;
		break;
	default:
		(void)str_format(reply, replylen, "451 4.3.0 map lookup failed: %s", res.error);
		break;
	}
	map_result_free(&res);
	return v;
}

static void
msg_attempt_start(struct queue_ctx *ctx, struct queue_msg *m, uint64_t now)
{
	const struct mailplex_conf_smtpd *sc = &ctx->conf->smtpd;
	struct queue_job **jobs = NULL;
	size_t njobs = 0, i, j, off = 0, cap = m->env.nrcpt * QUEUE_STATE_RECORD_MAX;
	char reply[QUEUE_REPLY_TEXT_MAX], name[MAP_NAME_MAX + 1], path[4200], *recs;
	struct queue_backend *be;
	enum route_verdict v;
	enum queue_rcpt_state s;
	int expired = now >= m->env.arrival * 1000u + sc->queue_lifetime_ms;

	if (str_format(path, sizeof(path), "%s/%s", ctx->queue_dir, m->qid) == -1 ||
	    (m->fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT) { /* removed behind our back (an operator): forget it */
			log_info("%s: queue file gone", m->qid);
			m->removed = 1;
		} else {
			log_warn("%s: open %s", m->qid, path);
		}
		return;
	}
	if ((recs = malloc(cap ? cap : 1)) == NULL ||
	    (jobs = calloc(m->env.nrcpt ? m->env.nrcpt : 1, sizeof(*jobs))) == NULL) {
		free(recs);
		close(m->fd);
		m->fd = -1;
		return;
	}
	m->active = 1;
	ctx->nactive++;
	m->attempt_start_ms = ev_now_ms(ctx->loop);
	m->attempt_map_version = map_version(ctx->map);
	m->jobs = 1; /* held until every job is submitted: one may finish at once */
	for (i = 0; i < m->env.nrcpt; i++) {
		if (m->st.rcpt[i].state != QUEUE_RCPT_PENDING)
			continue;
		be = NULL;
		name[0] = '\0';
		if (expired) {
			(void)str_format(
			    reply, sizeof(reply),
			    "554 5.4.7 delivery time expired (queue lifetime); last: %s",
			    m->st.rcpt[i].reply[0] ? m->st.rcpt[i].reply : "none");
			v = m->env.sender[0] == '\0' ? ROUTE_DROP : ROUTE_FAIL;
		} else {
			v = msg_route(ctx, m, i, &be, name, reply, sizeof(reply));
		}
		if (name[0] != '\0')
			str_copy(m->route[i].backend, sizeof(m->route[i].backend), name);
		if (v != ROUTE_BACKEND) {
			s = v == ROUTE_DEFER  ? QUEUE_RCPT_PENDING
			    : v == ROUTE_FAIL ? QUEUE_RCPT_FAILED
			                      : QUEUE_RCPT_BOUNCED;
			off = rec_add(recs, off, cap, i, s, reply);
			m->st.rcpt[i].state = s;
			str_copy(m->st.rcpt[i].reply, sizeof(m->st.rcpt[i].reply), reply);
			log_attempt(ctx, m, i, "none",
			            v == ROUTE_DEFER  ? "deferred"
			            : v == ROUTE_FAIL ? "failed"
			                              : "dropped",
			            reply);
			continue;
		}
		for (j = 0; j < njobs && jobs[j]->be != be; j++)
			;
		if (j == njobs) {
			if ((jobs[j] = job_new(m, be, m->env.nrcpt)) == NULL)
				continue; /* stays pending: tried again at the next attempt */
			njobs++;
		}
		jobs[j]->idx[jobs[j]->n++] = i;
		m->route[i].in_job = 1;
	}
	if (off > 0)
		(void)queue_msg_record(ctx, m, recs, off);
	free(recs);
	m->jobs += (unsigned)njobs;
	for (j = 0; j < njobs; j++)
		queue_backend_submit(ctx, jobs[j]);
	free(jobs);
	if (--m->jobs == 0)
		msg_attempt_end(ctx, m);
}

uint64_t
queue_map_in_force(const struct queue_ctx *ctx)
{
	const struct queue_msg *m;
	uint64_t v = ctx->map != NULL ? map_version(ctx->map) : 0;

	for (m = ctx->msgs; m != NULL; m = m->next)
		if (m->active && !m->removed && m->attempt_map_version < v)
			v = m->attempt_map_version;
	return v;
}

/* ---- bounces ---- */

/* Writes a bounce for the failed recipients into the spool. 0, or -1 (logged). */
static int
msg_bounce(struct queue_ctx *ctx, struct queue_msg *m, const size_t *failed, size_t nfailed)
{
	struct queue_dsn_rcpt *dr = NULL;
	struct queue_dsn d;
	struct spool_envelope env;
	struct spool_rcpt rcpt;
	struct spool_writer *w;
	char hdr[QUEUE_DSN_HEADERS_MAX], err[256], *text = NULL;
	size_t textlen, i, hlen = 0;
	ssize_t n;
	int tempfail = 0, r = -1;

	while (hlen < sizeof(hdr)) {
		n = pread(m->fd, hdr + hlen, sizeof(hdr) - hlen, m->body_off + (off_t)hlen);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		hlen += (size_t)n;
	}
	if ((dr = calloc(nfailed, sizeof(*dr))) == NULL)
		goto out;
	for (i = 0; i < nfailed; i++) {
		dr[i].final = m->env.rcpt[failed[i]].addr;
		dr[i].orig = strcmp(m->env.rcpt[failed[i]].orig, m->env.rcpt[failed[i]].addr) != 0
		                 ? m->env.rcpt[failed[i]].orig
		                 : "";
		dr[i].status = "";
		dr[i].reply = m->st.rcpt[failed[i]].reply;
		dr[i].remote = "";
	}
	memset(&d, 0, sizeof(d));
	d.hostname = ctx->hostname;
	d.qid = m->qid;
	d.sender = m->env.sender;
	d.arrival = m->env.arrival;
	d.now = time_unix_ms() / 1000u;
	d.rcpt = dr;
	d.nrcpt = nfailed;
	d.headers = hdr;
	d.headers_len = queue_dsn_header_len(hdr, hlen);
	if (queue_dsn_compose(&d, &text, &textlen) == -1) {
		log_warnx("%s: bounce: out of memory", m->qid);
		goto out;
	}
	memset(&env, 0, sizeof(env));
	memset(&rcpt, 0, sizeof(rcpt));
	str_copy(rcpt.addr, sizeof(rcpt.addr), m->env.sender);
	str_copy(rcpt.orig, sizeof(rcpt.orig), m->env.sender);
	env.sender[0] = '\0'; /* RFC 5321 4.5.5: a bounce has the null reverse-path */
	str_copy(env.client_addr, sizeof(env.client_addr), "");
	str_copy(env.helo, sizeof(env.helo), ctx->hostname);
	env.arrival = d.now;
	env.body_type = SPOOL_BODY_8BITMIME; /* the quoted headers may hold 8-bit bytes */
	env.nrcpt = 1;
	env.rcpt = &rcpt;
	w = spool_writer_new(ctx->spool, &env, &tempfail, err, sizeof(err));
	if (w != NULL && spool_writer_body(w, text, textlen, &tempfail, err, sizeof(err)) == -1) {
		spool_writer_abort(w);
		w = NULL;
	}
	/* commit disposes of the writer whatever it returns (spool.c). */
	if (w == NULL || spool_writer_commit(w, &tempfail, err, sizeof(err)) == -1) {
		log_warnx("%s: bounce to <%s> not written (tried again later): %s", m->qid,
		          m->env.sender, err);
		goto out;
	}
	log_info("%s: bounce %s to <%s> for %zu recipient(s)", m->qid, env.qid, m->env.sender,
	         nfailed);
	r = 0;
out:
	free(text);
	free(dr);
	return r;
}

/* The attempt's last job is done: back-off, bounces, removal. */
static void
msg_attempt_end(struct queue_ctx *ctx, struct queue_msg *m)
{
	const struct mailplex_conf_smtpd *sc = &ctx->conf->smtpd;
	size_t i, npending = 0, nfailed = 0, nfinal = 0, off = 0;
	size_t *failed = NULL, cap = (m->env.nrcpt + 1) * QUEUE_STATE_RECORD_MAX;
	uint64_t now = time_unix_ms(), next, expiry;
	char *recs = malloc(cap);
	int n;

	failed = calloc(m->env.nrcpt ? m->env.nrcpt : 1, sizeof(*failed));
	for (i = 0; i < m->env.nrcpt; i++) {
		switch (m->st.rcpt[i].state) {
		case QUEUE_RCPT_PENDING:
			npending++;
			break;
		case QUEUE_RCPT_FAILED:
			if (failed != NULL)
				failed[nfailed] = i;
			nfailed++;
			break;
		default:
			nfinal++;
			break;
		}
	}
	if (!m->deleted && nfailed > 0 && failed != NULL && recs != NULL) {
		if (m->env.sender[0] == '\0') {
			/* RFC 5321 6.1: never a bounce for a message with the null sender. */
			log_info("%s: %zu recipient(s) failed; no bounce for a null sender", m->qid,
			         nfailed);
		}
		if (m->env.sender[0] == '\0' || msg_bounce(ctx, m, failed, nfailed) == 0) {
			for (i = 0; i < nfailed; i++) {
				off = rec_add(recs, off, cap, failed[i], QUEUE_RCPT_BOUNCED,
				              m->st.rcpt[failed[i]].reply);
				m->st.rcpt[failed[i]].state = QUEUE_RCPT_BOUNCED;
			}
			nfinal += nfailed;
			nfailed = 0;
		}
	}
	if (npending > 0 || nfailed > 0) {
		m->st.attempts++;
		next = now + queue_backoff_ms(m->st.attempts, sc->queue_min_backoff_ms,
		                              sc->queue_max_backoff_ms);
		expiry = m->env.arrival * 1000u + sc->queue_lifetime_ms;
		if (npending > 0 && next > expiry)
			next =
			    expiry > now ? expiry : now; /* the bounce is due on time, not later */
		m->st.next_try = next;
		if (recs != NULL && cap - off >= QUEUE_STATE_RECORD_MAX &&
		    (n = queue_state_fmt_attempt(recs + off, cap - off, m->st.attempts, next)) > 0)
			off += (size_t)n;
	}
	if (off > 0)
		(void)queue_msg_record(ctx, m, recs, off);
	free(recs);
	free(failed);
	close(m->fd);
	m->fd = -1;
	m->active = 0;
	ctx->nactive--;
	/* A tick stopped at QUEUE_ACTIVE_MAX: waiting due messages take this slot at once. */
	if (ctx->starved) {
		ctx->starved = 0;
		queue_kick(ctx);
	}
	if (m->deleted) {
		queue_msg_delete(ctx, m, "deleted by the operator");
	} else if (nfinal == m->env.nrcpt) {
		queue_msg_delete(ctx, m, "every recipient final");
	} else if (npending > 0) {
		log_debug("%s: %zu recipient(s) deferred, next try in %" PRIu64 "s", m->qid,
		          npending, (m->st.next_try - now) / 1000);
	}
}

/* ---- finding work ---- */

/*
 * After the map changed: where each waiting recipient would go now, so that queue list
 * shows the route of the next attempt (a user moved away from a back end no longer
 * counts as queued towards it). Lookups only; nothing is delivered or recorded here.
 */
static void
queue_reroute(struct queue_ctx *ctx)
{
	struct queue_msg *m;
	struct queue_backend *be;
	char name[MAP_NAME_MAX + 1], reply[QUEUE_REPLY_TEXT_MAX];
	size_t i;

	for (m = ctx->msgs; m != NULL; m = m->next) {
		if (m->removed || m->active)
			continue;
		for (i = 0; i < m->env.nrcpt; i++) {
			if (m->st.rcpt[i].state != QUEUE_RCPT_PENDING)
				continue;
			name[0] = '\0';
			be = NULL;
			(void)msg_route(ctx, m, i, &be, name, reply, sizeof(reply));
			if (name[0] != '\0')
				str_copy(m->route[i].backend, sizeof(m->route[i].backend), name);
		}
	}
}

static void
queue_tick(struct ev_loop *loop, void *arg)
{
	struct queue_ctx *ctx = arg;
	struct queue_msg *m, *next;
	uint64_t now = time_unix_ms();

	if (map_reopen_if_changed(ctx->map, 0) == 1)
		queue_reroute(ctx);

	ctx->starved = 0;
	for (m = ctx->msgs; m != NULL; m = next) {
		next = m->next; /* an attempt may end, and free m, before returning */
		if (m->removed || m->active || m->st.held || m->st.next_try > now)
			continue;
		if (ctx->nactive >= QUEUE_ACTIVE_MAX) {
			ctx->starved = 1;
			break;
		}
		msg_attempt_start(ctx, m, now);
	}
	if (ev_timer_start(loop, &ctx->tick, QUEUE_TICK_MS, queue_tick, ctx) == -1)
		log_warnx("queue: cannot arm the tick timer");
}

void
queue_kick(struct queue_ctx *ctx)
{
	if (ev_timer_start(ctx->loop, &ctx->tick, 0, queue_tick, ctx) == -1)
		log_warnx("queue: cannot arm the tick timer");
}

/* Adds every queue file not known yet; drops state logs without a message (start-up). */
static void
queue_scan(struct queue_ctx *ctx, int clean_state)
{
	struct dirent *de;
	DIR *d;
	char path[4200];
	struct stat sb;
	unsigned int added = 0;

	if ((d = opendir(ctx->queue_dir)) == NULL) {
		log_warn("queue: opendir %s", ctx->queue_dir);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (!qid_valid(de->d_name) || queue_msg_find(ctx, de->d_name) != NULL)
			continue;
		if (msg_load(ctx, de->d_name) != NULL)
			added++;
	}
	closedir(d);
	if (added > 0)
		log_info("queue: %u message(s) found in %s", added, ctx->queue_dir);
	if (!clean_state || (d = opendir(ctx->state_dir)) == NULL)
		return;
	/* A crash between removing queue/QID and state/QID leaves the log alone. */
	while ((de = readdir(d)) != NULL) {
		if (!qid_valid(de->d_name) ||
		    str_format(path, sizeof(path), "%s/%s", ctx->queue_dir, de->d_name) == -1 ||
		    stat(path, &sb) == 0 || errno != ENOENT)
			continue;
		if (str_format(path, sizeof(path), "%s/%s", ctx->state_dir, de->d_name) == 0 &&
		    unlink(path) == 0)
			log_info("%s: stale state log removed", de->d_name);
	}
	closedir(d);
}

static void
queue_scan_timer(struct ev_loop *loop, void *arg)
{
	struct queue_ctx *ctx = arg;

	queue_scan(ctx, 0);
	if (ev_timer_start(loop, &ctx->scan, QUEUE_SCAN_MS, queue_scan_timer, ctx) == -1)
		log_warnx("queue: cannot arm the scan timer");
}

static void
queue_inotify_read(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct queue_ctx *ctx = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	ssize_t n;
	size_t off;
	int found = 0;

	(void)loop;
	(void)events;
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (off = 0; off + sizeof(*ev) <= (size_t)n; off += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)(buf + off);
			if (ev->mask & IN_Q_OVERFLOW) {
				queue_scan(ctx, 0); /* events were lost: look at everything */
				found = 1;
				continue;
			}
			if (ev->len == 0 || off + sizeof(*ev) + ev->len > (size_t)n)
				continue;
			if (qid_valid(ev->name) && queue_msg_find(ctx, ev->name) == NULL &&
			    msg_load(ctx, ev->name) != NULL)
				found = 1;
		}
	}
	if (found)
		queue_kick(ctx);
}

static void
queue_before_sleep(struct ev_loop *loop, void *arg)
{
	(void)loop;
	queue_conn_reap(arg);
	queue_removals_sync(arg);
	msgs_reap(arg);
}

static void
queue_on_signal(struct ev_loop *loop, int signo, void *arg)
{
	if (signo == SIGHUP) {
		queue_reload(arg);
		return;
	}
	log_info("queue: signal %d, stopping", signo);
	ev_stop(loop);
}

/* smtpd.bounce_relay into ctx; -1 with err if it is not "host:port". */
static int
queue_set_bounce_relay(struct queue_ctx *ctx, const char *relay, char *err, size_t errlen)
{
	char host[SOCK_HOST_MAX];
	uint16_t port;

	ctx->have_bounce_relay = 0;
	if (relay == NULL)
		return 0;
	if (sock_addr_split(relay, host, sizeof(host), &port, err, errlen) == -1)
		return -1;
	str_copy(ctx->bounce_relay_host, sizeof(ctx->bounce_relay_host), host);
	ctx->bounce_relay_port = port;
	ctx->have_bounce_relay = 1;
	return 0;
}

/*
 * SIGHUP (the master passes it on after checking the file): a fresh configuration is
 * loaded whole and only then swapped in; back-off, lifetime, limits, timeouts, host name
 * and bounce relay take effect at once, the map is looked at again. The spool and the
 * control socket stay as they are until a restart.
 */
static void
queue_reload(struct queue_ctx *ctx)
{
	struct mailplex_conf *nc = calloc(1, sizeof(*nc));
	struct map *nm = NULL;
	char err[512], host[SOCK_HOST_MAX];
	uint16_t port;

	if (nc == NULL || mailplex_conf_load(ctx->conf_path, nc, err, sizeof(err)) == -1) {
		log_warnx("queue: reload refused, configuration kept: %s",
		          nc == NULL ? "out of memory" : err);
		free(nc);
		return;
	}
	if (nc->smtpd.bounce_relay != NULL &&
	    sock_addr_split(nc->smtpd.bounce_relay, host, sizeof(host), &port, err, sizeof(err)) ==
	        -1) {
		log_warnx("queue: reload refused, configuration kept: smtpd.bounce_relay: %s", err);
		mailplex_conf_free(nc);
		free(nc);
		return;
	}
	if (strcmp(nc->map.db, ctx->conf->map.db) != 0) {
		if ((nm = map_open(nc->map.db, err, sizeof(err))) == NULL) {
			log_warnx("queue: reload refused, configuration kept: map %s: %s",
			          nc->map.db, err);
			mailplex_conf_free(nc);
			free(nc);
			return;
		}
		map_close(ctx->map);
		ctx->map = nm;
	}
	if (strcmp(nc->smtpd.spool, ctx->conf->smtpd.spool) != 0 ||
	    strcmp(nc->smtpd.queue_control, ctx->conf->smtpd.queue_control) != 0)
		log_warnx("queue: smtpd.spool and smtpd.queue_control change at the next restart");
	(void)queue_set_bounce_relay(ctx, nc->smtpd.bounce_relay, err, sizeof(err));
	if (nc->smtpd.hostname != NULL)
		str_copy(ctx->hostname, sizeof(ctx->hostname), nc->smtpd.hostname);
	map_set_check_interval(ctx->map, nc->map.reload_check_ms);
	if (map_reopen_if_changed(ctx->map, 1) == 1)
		queue_reroute(ctx);
	if (ctx->own_conf != NULL) {
		mailplex_conf_free(ctx->own_conf);
		free(ctx->own_conf);
	}
	ctx->own_conf = nc;
	ctx->conf = nc;
	log_info("queue: configuration reloaded");
}

static int
queue_setup(struct queue_ctx *ctx)
{
	const struct mailplex_conf_smtpd *sc = &ctx->conf->smtpd;
	struct tls_client_opts topts = {.verify = sc->backend_tls_verify,
	                                .ca_file = sc->backend_ca_file};
	char err[512];
	int wd;

	if (sc->hostname != NULL)
		str_copy(ctx->hostname, sizeof(ctx->hostname), sc->hostname);
	else if (gethostname(ctx->hostname, sizeof(ctx->hostname) - 1) == -1)
		str_copy(ctx->hostname, sizeof(ctx->hostname), "localhost");
	if (queue_set_bounce_relay(ctx, sc->bounce_relay, err, sizeof(err)) == -1) {
		log_warnx("queue: smtpd.bounce_relay: %s", err);
		return -1;
	}
	if ((ctx->spool = spool_open(sc->spool, err, sizeof(err))) == NULL) {
		log_warnx("queue: spool %s: %s", sc->spool, err);
		return -1;
	}
	if (str_format(ctx->queue_dir, sizeof(ctx->queue_dir), "%s/queue", sc->spool) == -1 ||
	    str_format(ctx->state_dir, sizeof(ctx->state_dir), "%s/state", sc->spool) == -1) {
		log_warnx("queue: spool path too long");
		return -1;
	}
	if ((ctx->map = map_open(ctx->conf->map.db, err, sizeof(err))) == NULL) {
		log_warnx("queue: map %s: %s", ctx->conf->map.db, err);
		return -1;
	}
	map_set_check_interval(ctx->map, ctx->conf->map.reload_check_ms);
	/* A reload keeps this context: verification changes need a restart. */
	if ((ctx->tls_client = tls_client_ctx_new(&topts, err, sizeof(err))) == NULL)
		log_warnx("queue: no TLS to back ends: %s", err);
	if ((ctx->loop = ev_loop_new()) == NULL) {
		log_warnx("queue: event loop: out of memory");
		return -1;
	}
	ctx->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (ctx->inotify_fd == -1 ||
	    (wd = inotify_add_watch(ctx->inotify_fd, ctx->queue_dir, IN_MOVED_TO)) == -1 ||
	    ev_io_set(ctx->loop, ctx->inotify_fd, EV_READ, queue_inotify_read, ctx) == -1) {
		/* The scan still finds every message, a minute later at worst. */
		log_warn("queue: inotify on %s", ctx->queue_dir);
	}
	(void)wd;
	ctx->control = control_server_new(ctx->loop, sc->queue_control, queue_control_handle, ctx,
	                                  err, sizeof(err));
	if (ctx->control == NULL) {
		log_warnx("queue: control socket %s: %s", sc->queue_control, err);
		return -1;
	}
	/* Threads only after the fork (the master forks the runner): one for queue/'s fsync. */
	if ((ctx->fsync = spool_fsync_new(1, err, sizeof(err))) == NULL ||
	    ev_io_set(ctx->loop, spool_fsync_eventfd(ctx->fsync), EV_READ, queue_fsync_io, ctx) ==
	        -1) {
		log_warnx("queue: fsync thread: %s: removals are fsynced on the loop",
		          ctx->fsync == NULL ? err : strerror(errno));
		spool_fsync_free(ctx->fsync);
		ctx->fsync = NULL;
	}
	if (ev_signal_add(ctx->loop, SIGTERM, queue_on_signal, ctx) == -1 ||
	    ev_signal_add(ctx->loop, SIGINT, queue_on_signal, ctx) == -1 ||
	    ev_signal_add(ctx->loop, SIGHUP, queue_on_signal, ctx) == -1 ||
	    ev_before_sleep(ctx->loop, queue_before_sleep, ctx) == -1) {
		log_warnx("queue: cannot set up signals");
		return -1;
	}
	return 0;
}

int
queue_runner_main(const struct mailplex_conf *conf, const char *conf_path)
{
	struct queue_ctx ctx;
	struct queue_msg *m;
	struct queue_backend *be;
	unsigned int nmsgs = 0;
	int rc = 1;

	memset(&ctx, 0, sizeof(ctx));
	ctx.conf = conf;
	ctx.conf_path = conf_path;
	ctx.inotify_fd = -1;
	ev_timer_init(&ctx.tick);
	ev_timer_init(&ctx.scan);
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		log_warn("queue: SIGPIPE");
	if (queue_setup(&ctx) == 0) {
		queue_scan(&ctx, 1);
		for (m = ctx.msgs; m != NULL; m = m->next)
			nmsgs++;
		log_info("queue: runner started: spool %s, %u message(s), control %s",
		         conf->smtpd.spool, nmsgs, conf->smtpd.queue_control);
		queue_kick(&ctx);
		if (ev_timer_start(ctx.loop, &ctx.scan, QUEUE_SCAN_MS, queue_scan_timer, &ctx) ==
		    -1)
			log_warnx("queue: cannot arm the scan timer");
		rc = ev_run(ctx.loop) == 0 ? 0 : 1;
		queue_backend_close_all(&ctx);
		queue_conn_reap(&ctx);
		if (ctx.resolver != NULL)
			resolver_free(ctx.resolver);
		queue_removals_stop(&ctx);
		log_info("queue: runner stopped");
	}
	if (ctx.control != NULL)
		control_server_free(ctx.control);
	spool_fsync_free(ctx.fsync); /* set up, but the loop never ran */
	free(ctx.rm_wait.v);
	free(ctx.rm_sync.v);
	while ((m = ctx.msgs) != NULL) {
		ctx.msgs = m->next;
		msg_free(m);
	}
	while ((be = ctx.backends) != NULL) {
		ctx.backends = be->next;
		free(be);
	}
	if (ctx.inotify_fd != -1) {
		if (ctx.loop != NULL)
			ev_io_del(ctx.loop, ctx.inotify_fd);
		close(ctx.inotify_fd);
	}
	if (ctx.loop != NULL) {
		ev_timer_stop(ctx.loop, &ctx.tick);
		ev_timer_stop(ctx.loop, &ctx.scan);
		ev_loop_free(ctx.loop);
	}
	if (ctx.tls_client != NULL)
		tls_ctx_free(ctx.tls_client);
	if (ctx.map != NULL)
		map_close(ctx.map);
	if (ctx.own_conf != NULL) {
		mailplex_conf_free(ctx.own_conf);
		free(ctx.own_conf);
	}
	if (ctx.spool != NULL)
		spool_close(ctx.spool);
	return rc;
}
