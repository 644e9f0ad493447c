/*
 * The queue runner's control commands on lib/control's socket (smtpd.queue_control):
 * status (counts, the map version in force), list (filtered by back end or address), show
 * (envelope, per-recipient state, the first header lines — never the body), flush, hold,
 * release, delete. Runs on the loop; the only disk access is show's bounded read of the
 * headers and the fsynced state records.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "queue_runner.h"
#include "util.h"

static uint64_t
ctl_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* "3d4h", "5m12s", "40s": a short age or wait. */
static void
fmt_span(char *buf, size_t len, uint64_t s)
{
	if (s >= 86400)
		(void)str_format(buf, len, "%" PRIu64 "d%" PRIu64 "h", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		(void)str_format(buf, len, "%" PRIu64 "h%" PRIu64 "m", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		(void)str_format(buf, len, "%" PRIu64 "m%" PRIu64 "s", s / 60, s % 60);
	else
		(void)str_format(buf, len, "%" PRIu64 "s", s);
}

/* addr is want, or want's mailbox with a +detail ("bob+lists@x" matches "bob@x"). */
static int
rcpt_matches(const char *addr, const char *want)
{
	const char *plus = strchr(addr, '+'), *at = strrchr(addr, '@');
	size_t l;

	if (strcasecmp(addr, want) == 0)
		return 1;
	if (plus == NULL || at == NULL || plus > at)
		return 0;
	l = (size_t)(plus - addr);
	return strlen(want) == l + strlen(at) && strncasecmp(addr, want, l) == 0 &&
	       strcasecmp(want + l, at) == 0;
}

static const char *
msg_status(const struct queue_msg *m)
{
	if (m->deleted)
		return "deleting";
	if (m->active)
		return "active";
	if (m->st.held)
		return "held";
	return m->st.attempts > 0 ? "deferred" : "new";
}

static void
print_msg(struct control_reply *r, const struct queue_msg *m, uint64_t now, const char *be,
          const char *rcpt)
{
	char age[32], next[32];
	uint64_t arr = m->env.arrival * 1000u;
	size_t i;

	fmt_span(age, sizeof(age), now > arr ? (now - arr) / 1000 : 0);
	if (m->active || m->st.held)
		str_copy(next, sizeof(next), "-");
	else if (m->st.next_try <= now)
		str_copy(next, sizeof(next), "now");
	else
		fmt_span(next, sizeof(next), (m->st.next_try - now + 999) / 1000);
	control_reply_printf(
	    r, "%s %s age=%s size=%" PRIu64 " from=<%s> attempts=%" PRIu64 " next=%s\n", m->qid,
	    msg_status(m), age, m->size, m->env.sender, m->st.attempts, next);
	for (i = 0; i < m->env.nrcpt; i++) {
		/* Filtered: only what is still to be done there (mailplexctl(8)). */
		if ((be != NULL || rcpt != NULL) && (m->st.rcpt[i].state == QUEUE_RCPT_DELIVERED ||
		                                     m->st.rcpt[i].state == QUEUE_RCPT_BOUNCED))
			continue;
		if (be != NULL && strcmp(m->route[i].backend, be) != 0)
			continue;
		if (rcpt != NULL && !rcpt_matches(m->env.rcpt[i].addr, rcpt))
			continue;
		control_reply_printf(r, "  to=<%s> %s backend=%s%s%s%s\n", m->env.rcpt[i].addr,
		                     queue_rcpt_state_name(m->st.rcpt[i].state),
		                     m->route[i].backend, m->st.rcpt[i].reply[0] ? " reply=\"" : "",
		                     m->st.rcpt[i].reply, m->st.rcpt[i].reply[0] ? "\"" : "");
	}
}

/* Does a recipient not final yet match the filters? */
static int
msg_matches(const struct queue_msg *m, const char *be, const char *rcpt)
{
	size_t i;

	if (be == NULL && rcpt == NULL)
		return 1;
	for (i = 0; i < m->env.nrcpt; i++) {
		if (m->st.rcpt[i].state == QUEUE_RCPT_DELIVERED ||
		    m->st.rcpt[i].state == QUEUE_RCPT_BOUNCED)
			continue;
		if (be != NULL && strcmp(m->route[i].backend, be) != 0)
			continue;
		if (rcpt != NULL && !rcpt_matches(m->env.rcpt[i].addr, rcpt))
			continue;
		return 1;
	}
	return 0;
}

static void
ctl_list(struct queue_ctx *ctx, const struct control_request *req, struct control_reply *r)
{
	const char *be = NULL, *rcpt = NULL;
	const struct queue_msg *m;
	uint64_t now = ctl_now_ms();
	unsigned int n = 0, total = 0;
	int i;

	for (i = 1; i < req->argc; i += 2) {
		if (i + 1 >= req->argc) {
			control_reply_error(r, "usage: list [backend NAME] [rcpt ADDRESS]");
			return;
		}
		if (strcmp(req->argv[i], "backend") == 0)
			be = req->argv[i + 1];
		else if (strcmp(req->argv[i], "rcpt") == 0)
			rcpt = req->argv[i + 1];
		else {
			control_reply_error(r, "usage: list [backend NAME] [rcpt ADDRESS]");
			return;
		}
	}
	for (m = ctx->msgs; m != NULL; m = m->next) {
		if (m->removed)
			continue;
		total++;
		if (!msg_matches(m, be, rcpt))
			continue;
		n++;
		print_msg(r, m, now, be, rcpt);
	}
	control_reply_printf(r, "%u message(s) shown, %u in the queue\n", n, total);
}

static struct queue_msg *
ctl_msg(struct queue_ctx *ctx, const struct control_request *req, struct control_reply *r)
{
	struct queue_msg *m;

	if (req->argc != 2) {
		control_reply_error(r, "usage: %s QID", req->argv[0]);
		return NULL;
	}
	if ((m = queue_msg_find(ctx, req->argv[1])) == NULL)
		control_reply_error(r, "%s: no such message in the queue", req->argv[1]);
	return m;
}

/* The first header lines, printable bytes only; the body is never shown. */
static void
ctl_show_headers(struct queue_ctx *ctx, const struct queue_msg *m, struct control_reply *r)
{
	char path[4200], buf[QUEUE_SHOW_HEADER_MAX + 1];
	ssize_t n;
	size_t i, start;
	int fd;

	if (str_format(path, sizeof(path), "%s/%s", ctx->queue_dir, m->qid) == -1 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		control_reply_printf(r, "headers: cannot open the queue file\n");
		return;
	}
	n = pread(fd, buf, QUEUE_SHOW_HEADER_MAX, m->body_off);
	close(fd);
	if (n < 0) {
		control_reply_printf(r, "headers: read error\n");
		return;
	}
	control_reply_printf(r, "headers:\n");
	for (i = 0, start = 0; i < (size_t)n; i++) {
		if (buf[i] != '\n')
			continue;
		if (i == start || (i == start + 1 && buf[start] == '\r'))
			return; /* the end of the header block: the body starts here */
		buf[i] = '\0';
		for (size_t k = start; k < i; k++)
			if ((unsigned char)buf[k] < 0x20 || (unsigned char)buf[k] >= 0x7f)
				buf[k] = (buf[k] == '\t') ? ' ' : (buf[k] == '\r' ? '\0' : '?');
		control_reply_printf(r, "  %s\n", buf + start);
		start = i + 1;
	}
	control_reply_printf(r, "  (header block longer than %d bytes: cut)\n",
	                     QUEUE_SHOW_HEADER_MAX);
}

static void
ctl_show(struct queue_ctx *ctx, const struct control_request *req, struct control_reply *r)
{
	struct queue_msg *m = ctl_msg(ctx, req, r);
	char when[64];
	time_t t;
	struct tm tm;

	if (m == NULL)
		return;
	print_msg(r, m, ctl_now_ms(), NULL, NULL);
	t = (time_t)m->env.arrival;
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		str_copy(when, sizeof(when), "?");
	control_reply_printf(r, "arrival: %s\nclient: %s helo=%s\nbody: %s%s\n", when,
	                     m->env.client_addr[0] ? m->env.client_addr : "local", m->env.helo,
	                     m->env.body_type == SPOOL_BODY_7BIT       ? "7bit"
	                     : m->env.body_type == SPOOL_BODY_8BITMIME ? "8bitmime"
	                                                               : "binarymime",
	                     m->env.smtputf8 ? " smtputf8" : "");
	for (size_t i = 0; i < m->env.nrcpt; i++)
		control_reply_printf(r, "rcpt %zu: <%s> (given as <%s>, accepted for %s)\n", i,
		                     m->env.rcpt[i].addr, m->env.rcpt[i].orig,
		                     m->env.rcpt[i].backend[0] ? m->env.rcpt[i].backend : "-");
	ctl_show_headers(ctx, m, r);
}

static void
ctl_hold(struct queue_ctx *ctx, const struct control_request *req, struct control_reply *r,
         int hold)
{
	struct queue_msg *m = ctl_msg(ctx, req, r);
	char rec[QUEUE_STATE_RECORD_MAX];
	int n;

	if (m == NULL)
		return;
	if (m->st.held == hold) {
		control_reply_printf(r, "%s: already %s\n", m->qid, hold ? "held" : "released");
		return;
	}
	if ((n = queue_state_fmt_hold(rec, sizeof(rec), hold)) < 0 ||
	    queue_msg_record(ctx, m, rec, (size_t)n) == -1) {
		control_reply_error(r, "%s: cannot write the state log", m->qid);
		return;
	}
	m->st.held = hold;
	if (!hold) {
		m->st.next_try = 0;
		queue_kick(ctx);
	}
	log_info("%s: %s by the operator", m->qid, hold ? "held" : "released");
	control_reply_printf(r, "%s: %s\n", m->qid, hold ? "held" : "released");
}

static void
ctl_flush(struct queue_ctx *ctx, const struct control_request *req, struct control_reply *r)
{
	struct queue_msg *m;
	unsigned int n = 0;

	if (req->argc > 2) {
		control_reply_error(r, "usage: flush [QID]");
		return;
	}
	if (req->argc == 2) {
		if ((m = ctl_msg(ctx, req, r)) == NULL)
			return;
		m->st.next_try = 0;
		n = 1;
	} else {
		for (m = ctx->msgs; m != NULL; m = m->next)
			if (!m->removed) {
				m->st.next_try = 0;
				n++;
			}
	}
	queue_kick(ctx);
	log_info("queue: flush of %u message(s) by the operator", n);
	control_reply_printf(r, "%u message(s) to be tried now (held ones stay held)\n", n);
}

static void
ctl_delete(struct queue_ctx *ctx, const struct control_request *req, struct control_reply *r)
{
	struct queue_msg *m = ctl_msg(ctx, req, r);
	char qid[SPOOL_QID_MAX + 1];

	if (m == NULL)
		return;
	str_copy(qid, sizeof(qid), m->qid);
	queue_msg_delete(ctx, m, "deleted by the operator");
	control_reply_printf(r, "%s: deleted%s\n", qid,
	                     queue_msg_find(ctx, qid) != NULL ? " once its running attempt ends"
	                                                      : "");
}

/* Counts for operators and the barrier of a mailbox move; one "key value" per line. */
static void
ctl_status(struct queue_ctx *ctx, const struct control_request *req, struct control_reply *r)
{
	const struct queue_msg *m;
	const struct queue_backend *be;
	unsigned int queued = 0, active = 0, deferred = 0, held = 0, conns = 0;
	uint64_t inflight = 0, waiting = 0;
	size_t i;

	if (req->argc != 1) {
		control_reply_error(r, "usage: status");
		return;
	}
	for (m = ctx->msgs; m != NULL; m = m->next) {
		if (m->removed)
			continue;
		queued++;
		if (m->active)
			active++;
		else if (m->st.held)
			held++;
		else if (m->st.attempts > 0)
			deferred++;
		for (i = 0; i < m->env.nrcpt; i++) {
			if (m->route[i].in_job)
				inflight++;
			else if (m->st.rcpt[i].state == QUEUE_RCPT_PENDING)
				waiting++;
		}
	}
	for (be = ctx->backends; be != NULL; be = be->next)
		conns += be->nconns;
	control_reply_printf(r,
	                     "messages_queued %u\nmessages_active %u\nmessages_deferred %u\n"
	                     "messages_held %u\nrecipients_in_flight %" PRIu64 "\n"
	                     "recipients_waiting %" PRIu64 "\nbackend_connections %u\n",
	                     queued, active, deferred, held, inflight, waiting, conns);
	/* Exactly these lines: mailplex-relay and mailplexctl move read them. */
	control_reply_printf(r, "map_version %" PRIu64 "\nmap_version_in_force %" PRIu64 "\n",
	                     ctx->map != NULL ? map_version(ctx->map) : 0, queue_map_in_force(ctx));
}

void
queue_control_handle(const struct control_request *req, struct control_reply *reply, void *arg)
{
	struct queue_ctx *ctx = arg;
	const char *cmd = req->argv[0];

	if (strcmp(cmd, "status") == 0)
		ctl_status(ctx, req, reply);
	else if (strcmp(cmd, "list") == 0)
		ctl_list(ctx, req, reply);
	else if (strcmp(cmd, "show") == 0)
		ctl_show(ctx, req, reply);
	else if (strcmp(cmd, "flush") == 0)
		ctl_flush(ctx, req, reply);
	else if (strcmp(cmd, "hold") == 0)
		ctl_hold(ctx, req, reply, 1);
	else if (strcmp(cmd, "release") == 0)
		ctl_hold(ctx, req, reply, 0);
	else if (strcmp(cmd, "delete") == 0)
		ctl_delete(ctx, req, reply);
	else
		control_reply_error(reply, "unknown command %s", cmd);
}
