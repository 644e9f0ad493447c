/*
 * One SMTP session of mailplex-smtpd: its I/O (plain or TLS), the state machine (one
 * transition function, smtpd_set_state), the command handlers, recipient routing through
 * the map, and the hand-off of each message to the spool. A 250 after DATA or BDAT LAST is
 * written only after the file, its rename and queue/ were fsynced: the message is on disk.
 * It never relays: a recipient outside the map's domains is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/statvfs.h>

#include "log.h"
#include "smtpd.h"
#include "tls.h"
#include "util.h"

#define SMTPD_LINGER_MS    2000 /* after the last reply: read and drop, then close */
#define SMTPD_MAP_RETRY_MS 1000 /* a map that failed to open is retried no faster */
#define SMTPD_LOG_RCPT_MAX 1200 /* recipients listed in the accept log line, in bytes */
#define SMTPD_TLS_ROUNDS   64   /* read/process rounds per event while OpenSSL holds bytes */

static const char *const smtpd_state_names[SS_NSTATES] = {
    [SS_CMD] = "command",   [SS_TLS] = "tls",         [SS_DATA] = "data",
    [SS_BDAT] = "bdat",     [SS_DELAY] = "delay",     [SS_VERIFY] = "verify",
    [SS_COMMIT] = "commit", [SS_CLOSING] = "closing", [SS_DEAD] = "dead",
};

const char *
smtpd_state_name(enum smtpd_state st)
{
	return st < SS_NSTATES ? smtpd_state_names[st] : "?";
}

static void smtpd_io(struct ev_loop *loop, int fd, int events, void *arg);
static void smtpd_timer(struct ev_loop *loop, void *arg);
static void smtpd_process(struct smtpd_session *s);
static void smtpd_run(struct smtpd_session *s, int events);
static void smtpd_commit_timer(struct ev_loop *loop, void *arg);

/* The only place a session changes state; each state owns its timeout. */
static void
smtpd_set_state(struct smtpd_session *s, enum smtpd_state st)
{
	const struct mailplex_conf_smtpd *c = &s->ctx->conf->smtpd;
	uint64_t ms = 0;

	if (s->state == SS_DEAD)
		return;
	log_debug("session %llu: %s -> %s", (unsigned long long)s->id, smtpd_state_name(s->state),
	          smtpd_state_name(st));
	s->state = st;
	switch (st) {
	case SS_CMD:
	case SS_TLS:
	case SS_VERIFY: /* the check has its own, shorter, verify_timeout */
	case SS_COMMIT:
		ms = s->helo_done ? c->command_timeout_ms : c->greeting_timeout_ms;
		break;
	case SS_DATA:
	case SS_BDAT:
		ms = c->data_timeout_ms;
		break;
	case SS_DELAY:
		ms = c->error_delay_ms;
		break;
	case SS_CLOSING:
		ms = SMTPD_LINGER_MS;
		break;
	case SS_DEAD:
	case SS_NSTATES:
		ev_timer_stop(s->ctx->loop, &s->timer);
		return;
	}
	ev_timer_start(s->ctx->loop, &s->timer, ms, smtpd_timer, s);
}

/* ---- output ---- */

static void
smtpd_out(struct smtpd_session *s, const char *p, size_t n)
{
	char *nb;
	size_t ncap;

	if (s->out_off > 0 && s->out_off == s->out_len)
		s->out_off = s->out_len = 0;
	if (s->out_len + n > s->out_cap) {
		ncap = s->out_cap == 0 ? 1024 : s->out_cap;
		while (ncap < s->out_len + n)
			ncap *= 2;
		if ((nb = realloc(s->out, ncap)) == NULL) {
			smtpd_session_close(s, "out of memory");
			return;
		}
		s->out = nb;
		s->out_cap = ncap;
	}
	memcpy(s->out + s->out_len, p, n);
	s->out_len += n;
}

static void __attribute__((format(printf, 2, 3)))
smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)sizeof(line) - 3; /* RFC 5321 4.5.3.1.5: a reply line stays short */
	line[n++] = '\r';
	line[n++] = '\n';
	smtpd_out(s, line, (size_t)n);
	/* 4xx and 5xx count as errors: they pace and finally end a misbehaving client. */
	if (line[0] == '4' || line[0] == '5')
		s->errors++;
}

/* Writes what it can; 0, or -1 when the session is dead. */
static int
smtpd_flush(struct smtpd_session *s)
{
	char err[TLS_ERR_MAX];
	ssize_t n;

	while (s->out_off < s->out_len) {
		if (s->ssl != NULL)
			n = tls_write(s->ssl, s->out + s->out_off, s->out_len - s->out_off, err,
			              sizeof(err));
		else
			n = write(s->fd, s->out + s->out_off, s->out_len - s->out_off);
		if (n > 0) {
			s->out_off += (size_t)n;
			continue;
		}
		if (s->ssl != NULL && (n == TLS_WANT_READ || n == TLS_WANT_WRITE))
			return 0;
		if (s->ssl == NULL && n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (errno == EINTR)
				continue;
			return 0;
		}
		smtpd_session_close(s, "write error");
		return -1;
	}
	s->out_off = s->out_len = 0;
	return 0;
}

/* ---- the transaction ---- */

static void
smtpd_tx_reset(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;

	if (tx->writer != NULL)
		spool_writer_abort(tx->writer);
	free(tx->rcpt);
	memset(tx, 0, sizeof(*tx));
}

static int
smtpd_tx_add_rcpt(struct smtpd_tx *tx, const char *addr, const char *orig, const char *backend)
{
	struct spool_rcpt *nr;
	size_t i, ncap;

	for (i = 0; i < tx->nrcpt; i++) /* an alias and its member named twice: one copy */
		if (strcmp(tx->rcpt[i].addr, addr) == 0)
			return 0;
	if (tx->nrcpt >= SPOOL_RCPT_MAX)
		return -1;
	if (tx->nrcpt == tx->rcpt_cap) {
		ncap = tx->rcpt_cap == 0 ? 4 : tx->rcpt_cap * 2;
		if ((nr = realloc(tx->rcpt, ncap * sizeof(*nr))) == NULL)
			return -1;
		tx->rcpt = nr;
		tx->rcpt_cap = ncap;
	}
	nr = &tx->rcpt[tx->nrcpt++];
	memset(nr, 0, sizeof(*nr));
	str_copy(nr->addr, sizeof(nr->addr), addr);
	str_copy(nr->orig, sizeof(nr->orig), orig);
	str_copy(nr->backend, sizeof(nr->backend), backend);
	return 0;
}

/* ---- commands ---- */

static void
smtpd_cmd_ehlo(struct smtpd_session *s, const struct smtp_cmd *cmd)
{
	const struct mailplex_conf_smtpd *c = &s->ctx->conf->smtpd;

	smtpd_tx_reset(s);
	str_copy(s->helo, sizeof(s->helo), cmd->arg);
	s->helo_done = 1;
	s->esmtp = cmd->verb == SMTP_EHLO;
	if (!s->esmtp) {
		smtpd_reply(s, "250 %s", s->ctx->hostname);
		return;
	}
	smtpd_reply(s, "250-%s", s->ctx->hostname);
	smtpd_reply(s, "250-PIPELINING");
	smtpd_reply(s, "250-SIZE %llu", (unsigned long long)c->max_message_size);
	smtpd_reply(s, "250-8BITMIME");
	smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
	smtpd_reply(s, "250-SMTPUTF8");
	if (s->ctx->tls != NULL && !s->tls)
		smtpd_reply(s, "250-STARTTLS");
	smtpd_reply(s, "250 CHUNKING");
}

static int
smtpd_spool_has_room(struct smtpd_session *s, uint64_t need)
{
	struct statvfs sv;

	if (statvfs(spool_dir(s->ctx->spool), &sv) == -1)
		return 1; /* the write itself will tell */
	return (uint64_t)sv.f_bavail * sv.f_frsize > need;
}

static void
smtpd_cmd_mail(struct smtpd_session *s, const struct smtp_cmd *cmd)
{
	const struct mailplex_conf_smtpd *c = &s->ctx->conf->smtpd;
	struct smtpd_tx *tx = &s->tx;

	if (!s->helo_done) {
		smtpd_reply(s, "503 5.5.1 Send EHLO or HELO first");
		return;
	}
	if (tx->active) {
		smtpd_reply(s, "503 5.5.1 Sender already given");
		return;
	}
	if (cmd->has_size && cmd->size > c->max_message_size) {
		smtpd_reply(s, "552 5.3.4 Message size exceeds the limit of %llu bytes",
		            (unsigned long long)c->max_message_size);
		return;
	}
	if (cmd->body == SMTP_BODY_BINARYMIME) {
		smtpd_reply(s, "555 5.5.4 BINARYMIME is not offered");
		return;
	}
	if (cmd->utf8 && !cmd->smtputf8) {
		smtpd_reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		return;
	}
	if (!smtpd_spool_has_room(s, cmd->has_size ? cmd->size * 2 : 0)) {
		smtpd_reply(s, "452 4.3.1 Insufficient system storage");
		return;
	}
	smtpd_tx_reset(s);
	tx->active = 1;
	str_copy(tx->sender, sizeof(tx->sender), cmd->addr);
	tx->smtputf8 = cmd->smtputf8;
	tx->body = cmd->body;
	smtpd_reply(s, "250 2.1.0 Ok");
}

/* The map's text may come from an operator's file: one line, printable, bounded. */
static void
smtpd_clean_text(char *dst, size_t len, const char *src)
{
	size_t i;

	for (i = 0; src[i] != '\0' && i + 1 < len; i++)
		dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? ' ' : src[i];
	dst[i] = '\0';
}

static struct map *
smtpd_map(struct smtpd_ctx *ctx)
{
	char err[256];
	uint64_t now = ev_now_ms(ctx->loop);

	if (ctx->map != NULL || now < ctx->map_retry_ms)
		return ctx->map;
	ctx->map_retry_ms = now + SMTPD_MAP_RETRY_MS;
	if ((ctx->map = map_open(ctx->conf->map.db, err, sizeof(err))) == NULL) {
		log_warnx("map %s: %s: recipients get 451", ctx->conf->map.db, err);
		return NULL;
	}
	map_set_check_interval(ctx->map, ctx->conf->map.reload_check_ms);
	log_info("map %s opened (version %llu)", ctx->conf->map.db,
	         (unsigned long long)map_version(ctx->map));
	return ctx->map;
}

/*
 * Verification asks about one mailbox: not an alias (its members were checked when the
 * operator wrote it) and not a back end that wants TLS (the check speaks plain text).
 */
static int
smtpd_verify_wanted(const struct map_recipient *r)
{
	return r->status == MAP_DELIVER && r->backend != NULL && r->backend->tls == MAP_TLS_OFF &&
	       r->backend->deliver_proto != MAP_PROTO_NONE &&
	       (r->nchain == 0 || r->chain[0].via != MAP_VIA_ALIAS);
}

/* The recipient was added tentatively at index before; the cache or the back end decides. */
static void
smtpd_rcpt_verify(struct smtpd_session *s, const struct map_backend *be, const char *addr,
                  size_t before)
{
	char text[256];
	int r = smtpd_verify_cached(s->ctx, be->name, addr, text, sizeof(text));

	if (r == SMTPD_VERIFY_UNKNOWN) {
		s->tx.nrcpt = before;
		log_info("session %llu: client=%s rcpt=<%s> refused: unknown to %s (cached: %s)",
		         (unsigned long long)s->id, s->peer, addr, be->name, text);
		smtpd_reply(s, "550 5.1.1 User unknown");
		return;
	}
	if (r == -1 && (s->verify = smtpd_verify_start(s, be, addr)) != NULL) {
		s->verify_before = before;
		str_copy(s->verify_addr, sizeof(s->verify_addr), addr);
		smtpd_set_state(s, SS_VERIFY); /* the reply waits for smtpd_verify_finished */
		return;
	}
	s->tx.rcpt_cmds++;
	smtpd_reply(s, "250 2.1.5 Ok");
}

static void
smtpd_cmd_rcpt(struct smtpd_session *s, const struct smtp_cmd *cmd)
{
	const struct mailplex_conf_smtpd *c = &s->ctx->conf->smtpd;
	struct smtpd_tx *tx = &s->tx;
	struct map_result res;
	struct map *map;
	char addr[MAP_ADDR_MAX + 1], text[MAP_TEXT_MAX + 1];
	size_t i, before = tx->nrcpt;
	int migrating = 0, added = 0;

	if (!tx->active) {
		smtpd_reply(s, "503 5.5.1 Need MAIL before RCPT");
		return;
	}
	if (tx->rcpt_cmds >= (size_t)c->max_recipients) {
		smtpd_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (cmd->utf8 && !tx->smtputf8) {
		smtpd_reply(s, "553 5.6.7 Non-ASCII address needs SMTPUTF8");
		return;
	}
	if (cmd->relay_trick) {
		log_info("session %llu: client=%s rcpt=<%s> refused: relay syntax",
		         (unsigned long long)s->id, s->peer, cmd->addr);
		smtpd_reply(s, "550 5.7.1 Relaying denied");
		return;
	}
	/* Fail closed: without a map nothing is known, so nothing is accepted. */
	if ((map = smtpd_map(s->ctx)) == NULL) {
		smtpd_reply(s, "451 4.3.0 Temporary recipient lookup failure");
		return;
	}
	map_lookup(map, cmd->addr, &res);
	switch (res.status) {
	case MAP_DELIVER:
		for (i = 0; i < res.nrcpt; i++) {
			const struct map_recipient *r = &res.rcpt[i];

			if (r->status == MAP_MIGRATING)
				migrating = 1;
			if (r->status != MAP_DELIVER || r->backend == NULL)
				continue;
			if (r->backend->deliver_proto == MAP_PROTO_NONE)
				continue;
			if (str_format(addr, sizeof(addr), "%s%s%s@%s", r->local,
			               r->detail[0] ? "+" : "", r->detail, r->domain) == -1)
				continue;
			if (smtpd_tx_add_rcpt(tx, addr, cmd->addr, r->backend->name) == -1) {
				tx->nrcpt = before;
				map_result_free(&res);
				smtpd_reply(s, "452 4.5.3 Too many recipients");
				return;
			}
			added = 1;
		}
		if (migrating) {
			/* A part of the alias is moving: the whole recipient waits (no half copy).
			 */
			tx->nrcpt = before;
			smtpd_reply(s, "450 4.2.1 Mailbox is being moved, try again later");
		} else if (!added) {
			smtpd_reply(s, "451 4.3.5 No delivery route for this recipient");
		} else if (c->verify_recipients && res.nrcpt == 1 &&
		           smtpd_verify_wanted(&res.rcpt[0])) {
			smtpd_rcpt_verify(s, res.rcpt[0].backend, addr, before);
		} else {
			tx->rcpt_cmds++;
			smtpd_reply(s, "250 2.1.5 Ok");
		}
		break;
	case MAP_REJECT:
		smtpd_clean_text(text, sizeof(text), res.nrcpt > 0 ? res.rcpt[0].text : "");
		smtpd_reply(s, "550 5.1.1 %s", text[0] ? text : "Mailbox unavailable");
		break;
	case MAP_MIGRATING:
		smtpd_reply(s, "450 4.2.1 Mailbox is being moved, try again later");
		break;
	case MAP_UNKNOWN_USER:
		smtpd_reply(s, "550 5.1.1 User unknown");
		break;
	case MAP_NOT_OURS:
		log_info("session %llu: client=%s rcpt=<%s> refused: relaying denied",
		         (unsigned long long)s->id, s->peer, cmd->addr);
		smtpd_reply(s, "550 5.7.1 Relaying denied");
		break;
	case MAP_ERROR:
	default:
		log_warnx("session %llu: rcpt=<%s>: map: %s", (unsigned long long)s->id, cmd->addr,
		          res.error);
		smtpd_reply(s, "451 4.3.0 Temporary recipient lookup failure");
		break;
	}
	map_result_free(&res);
}

/* The Received: header (RFC 5321 4.4) that starts every spooled body. */
static int
smtpd_received(struct smtpd_session *s, char *buf, size_t len)
{
	const struct smtpd_tx *tx = &s->tx;
	char date[64], forpart[MAP_ADDR_MAX + 16] = "";
	struct tm tm;
	time_t now = time(NULL);
	const char *with;

	if (localtime_r(&now, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm) == 0)
		return -1;
	/* RFC 3848 and RFC 6531 protocol names */
	with = tx->smtputf8 ? (s->tls ? "UTF8SMTPS" : "UTF8SMTP")
	       : s->esmtp   ? (s->tls ? "ESMTPS" : "ESMTP")
	                    : "SMTP";
	if (tx->nrcpt == 1)
		(void)str_format(forpart, sizeof(forpart), "\r\n\tfor <%s>", tx->rcpt[0].orig);
	return str_format(
	    buf, len, "Received: from %s ([%s])\r\n\tby %s (mailplex) with %s id %s%s;\r\n\t%s\r\n",
	    s->helo, s->peer, s->ctx->hostname, with, tx->qid, forpart, date);
}

/* Opens the spool file for DATA or the first BDAT; replies on failure. 0 or -1. */
static int
smtpd_tx_open(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;
	struct spool_envelope env;
	char err[512], rcv[1024];
	int tf;

	memset(&env, 0, sizeof(env));
	str_copy(env.sender, sizeof(env.sender), tx->sender);
	str_copy(env.client_addr, sizeof(env.client_addr), s->peer);
	str_copy(env.helo, sizeof(env.helo), s->helo);
	env.arrival = (uint64_t)time(NULL);
	env.body_type = tx->body == SMTP_BODY_8BITMIME ? SPOOL_BODY_8BITMIME : SPOOL_BODY_7BIT;
	env.smtputf8 = tx->smtputf8;
	env.nrcpt = tx->nrcpt;
	env.rcpt = tx->rcpt;
	tx->writer = spool_writer_new(s->ctx->spool, &env, &tf, err, sizeof(err));
	if (tx->writer == NULL) {
		log_warnx("session %llu: spool: %s", (unsigned long long)s->id, err);
		smtpd_reply(s, tf ? "452 4.3.1 Insufficient system storage"
		                  : "451 4.3.0 Local error in processing");
		return -1;
	}
	str_copy(tx->qid, sizeof(tx->qid), env.qid);
	if (smtpd_received(s, rcv, sizeof(rcv)) == -1 ||
	    spool_writer_body(tx->writer, rcv, strlen(rcv), &tf, err, sizeof(err)) == -1) {
		log_warnx("session %llu: spool: %s", (unsigned long long)s->id, err);
		spool_writer_abort(tx->writer);
		tx->writer = NULL;
		smtpd_reply(s, tf ? "452 4.3.1 Insufficient system storage"
		                  : "451 4.3.0 Local error in processing");
		return -1;
	}
	return 0;
}

/* Body bytes after unstuffing: size limit and spool write. */
static void
smtpd_tx_body(struct smtpd_session *s, const uint8_t *p, size_t n)
{
	struct smtpd_tx *tx = &s->tx;
	char err[512];
	int tf;

	tx->body_bytes += n;
	if (tx->body_bytes > s->ctx->conf->smtpd.max_message_size)
		tx->too_big = 1;
	if (tx->too_big || tx->failed || n == 0)
		return;
	if (spool_writer_body(tx->writer, p, n, &tf, err, sizeof(err)) == -1) {
		log_warnx("session %llu: qid=%s spool: %s", (unsigned long long)s->id, tx->qid,
		          err);
		tx->failed = 1;
		tx->tempfail = tf;
	}
}

static void
smtpd_log_accept(struct smtpd_session *s)
{
	const struct smtpd_tx *tx = &s->tx;
	char list[SMTPD_LOG_RCPT_MAX];
	size_t i, len = 0;

	list[0] = '\0';
	for (i = 0; i < tx->nrcpt; i++) {
		len = strlen(list);
		if (str_format(list + len, sizeof(list) - len, "%s<%s>", i ? "," : "",
		               tx->rcpt[i].addr) == -1) {
			list[len] = '\0';
			(void)str_format(list + len, sizeof(list) - len, ",...");
			break;
		}
	}
	log_info("%s: accepted client=%s helo=%s from=<%s> size=%llu nrcpt=%zu to=%s tls=%s",
	         tx->qid, s->peer, s->helo, tx->sender, (unsigned long long)tx->body_bytes,
	         tx->nrcpt, list, s->tls ? "yes" : "no");
}

/* ---- group commit ---- */

#define SMTPD_NAMES_WAIT   1 /* commit_list: renamed, waits for the next fsync of queue/ */
#define SMTPD_NAMES_SYNC   2 /* renamed before the fsync of queue/ that is out */
#define SMTPD_DRAIN_ROUNDS 16

/* A finished message's file while its fsync is out; the pool holds job until it is back. */
struct smtpd_commit {
	struct spool_fsync_job job;
	struct spool_writer *writer;
	struct smtpd_session *s; /* NULL once the session is gone: the file is then removed */
};

static void
smtpd_commit_fail(struct smtpd_session *s, int tempfail)
{
	smtpd_reply(s, tempfail ? "452 4.3.1 Insufficient system storage"
	                        : "451 4.3.0 Local error in processing");
}

/* Lends job to the pool; when the pool is full, fsyncs here and hands it back soon. */
static void
smtpd_commit_submit(struct smtpd_ctx *ctx, struct spool_fsync_job *job)
{
	if (spool_fsync_submit(ctx->fsync, job) == 0)
		return;
	/* Blocking on the loop, rarely: SPOOL_FSYNC_QUEUE_MAX fsyncs are out already. */
	job->error = fsync(job->fd) == -1 ? errno : 0;
	job->next = ctx->inline_done;
	ctx->inline_done = job;
	if (!ev_timer_active(&ctx->commit_timer) &&
	    ev_timer_start(ctx->loop, &ctx->commit_timer, 0, smtpd_commit_timer, ctx) == -1)
		log_warnx("commit: cannot arm the timer");
}

/* Every name renamed so far gets one fsync of queue/, unless one is out already. */
static void
smtpd_queue_sync_start(struct smtpd_ctx *ctx)
{
	struct smtpd_session *s;
	int fds[2], i, n;

	if (ctx->queue_syncing || ctx->names_wait == NULL)
		return;
	ctx->names_sync = ctx->names_wait;
	ctx->names_wait = NULL;
	for (s = ctx->names_sync; s != NULL; s = s->commit_next)
		s->commit_list = SMTPD_NAMES_SYNC;
	n = spool_source_fds(ctx->spool, fds);
	ctx->queue_syncing = 1 + n;
	ctx->queue_job.fd = spool_queue_fd(ctx->spool);
	ctx->queue_job.arg = NULL;
	smtpd_commit_submit(ctx, &ctx->queue_job);
	for (i = 0; i < n; i++) {
		ctx->src_job[i].fd = fds[i];
		ctx->src_job[i].arg = NULL;
		smtpd_commit_submit(ctx, &ctx->src_job[i]);
	}
}

/*
 * The end of DATA or BDAT LAST, with nothing refused. The bytes go to the file and its
 * fsync to the pool; the 250 waits in SS_COMMIT for that fsync, the rename and the fsync
 * of queue/ that follows it. 0, or -1 with the error answered (the caller resets tx).
 */
static int
smtpd_commit_start(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;
	struct smtpd_commit *c;
	char err[512];
	int tf = 0, fd;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_warnx("session %llu: qid=%s commit: out of memory", (unsigned long long)s->id,
		          tx->qid);
		smtpd_commit_fail(s, 0);
		return -1;
	}
	if ((fd = spool_writer_finish(tx->writer, &tf, err, sizeof(err))) == -1) {
		tx->writer = NULL; /* finish freed it */
		free(c);
		log_warnx("session %llu: qid=%s commit: %s", (unsigned long long)s->id, tx->qid,
		          err);
		smtpd_commit_fail(s, tf);
		return -1;
	}
	c->writer = tx->writer;
	tx->writer = NULL;
	c->s = s;
	c->job.fd = fd;
	c->job.arg = c;
	s->commit = c;
	smtpd_set_state(s, SS_COMMIT);
	smtpd_commit_submit(s->ctx, &c->job);
	return 0;
}

static void
smtpd_tx_finish(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;

	if (tx->too_big) {
		smtpd_reply(s, "552 5.3.4 Message size exceeds the limit of %llu bytes",
		            (unsigned long long)s->ctx->conf->smtpd.max_message_size);
	} else if (tx->failed) {
		smtpd_commit_fail(s, tx->tempfail);
	} else if (smtpd_commit_start(s) == 0) {
		return; /* the transaction stays for the log line */
	}
	smtpd_tx_reset(s);
}

/* The message is answered: the session reads its next command (maybe pipelined already). */
static void
smtpd_commit_answered(struct smtpd_session *s)
{
	smtpd_tx_reset(s);
	smtpd_set_state(s, SS_CMD);
	smtpd_run(s, EV_READ); /* may free s, may start another commit */
}

/* A file's fsync is back: rename it into queue/, where it waits for the fsync of queue/. */
static void
smtpd_commit_file_done(struct smtpd_ctx *ctx, struct smtpd_commit *c)
{
	struct smtpd_session *s = c->s;
	char err[512];
	int tf;

	if (s == NULL) { /* the session ended meanwhile: never renamed, never answered */
		spool_writer_abort(c->writer);
		free(c);
		return;
	}
	s->commit = NULL;
	if (spool_writer_synced(c->writer, c->job.error, &tf, err, sizeof(err)) == -1) {
		free(c); /* synced freed the writer */
		log_warnx("session %llu: qid=%s commit: %s", (unsigned long long)s->id, s->tx.qid,
		          err);
		smtpd_commit_fail(s, tf);
		smtpd_commit_answered(s);
		return;
	}
	free(c);
	s->commit_next = ctx->names_wait;
	s->commit_list = SMTPD_NAMES_WAIT;
	ctx->names_wait = s;
}

/* The fsyncs of queue/, tmp/ (and free/) are back: every name renamed before they started
 * is answered. */
static void
smtpd_commit_queue_done(struct smtpd_ctx *ctx)
{
	struct smtpd_session *s, *next;
	char err[512];
	int tf = 0, ok;

	/* tmp/'s and free/'s results are not looked at: best effort, as in spool_sync_queue */
	ok = spool_queue_synced(ctx->spool, ctx->queue_job.error, &tf, err, sizeof(err)) == 0;
	if (!ok)
		log_warnx("spool: %s: the messages waiting for it are not acknowledged", err);
	s = ctx->names_sync;
	ctx->names_sync = NULL;
	for (; s != NULL; s = next) {
		next = s->commit_next;
		s->commit_next = NULL;
		s->commit_list = 0;
		if (ok) {
			ctx->accepted++;
			smtpd_log_accept(s);
			smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->tx.qid);
		} else {
			smtpd_commit_fail(s, tf);
		}
		smtpd_commit_answered(s);
	}
}

/* Moves every finished job's message on, then starts the next fsync of queue/ if due. */
static void
smtpd_commit_run(struct smtpd_ctx *ctx, struct spool_fsync_job *list)
{
	struct spool_fsync_job *j, *next;
	int queue_done = 0;

	for (j = list; j != NULL; j = next) {
		next = j->next;
		if (j == &ctx->queue_job || j == &ctx->src_job[0] || j == &ctx->src_job[1])
			queue_done = --ctx->queue_syncing == 0;
		else
			smtpd_commit_file_done(ctx, j->arg);
	}
	/* After the files: a name renamed just now was not covered by it, and waits. */
	if (queue_done)
		smtpd_commit_queue_done(ctx);
	smtpd_queue_sync_start(ctx);
}

static void
smtpd_commit_timer(struct ev_loop *loop, void *arg)
{
	struct smtpd_ctx *ctx = arg;
	struct spool_fsync_job *list = ctx->inline_done;

	ctx->inline_done = NULL;
	smtpd_commit_run(ctx, list);
}

void
smtpd_commit_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct smtpd_ctx *ctx = arg;

	smtpd_commit_run(ctx, spool_fsync_done(ctx->fsync));
}

void
smtpd_commit_drain(struct smtpd_ctx *ctx)
{
	int round;

	for (round = 0; round < SMTPD_DRAIN_ROUNDS; round++) {
		if (spool_fsync_pending(ctx->fsync) == 0 && ctx->inline_done == NULL)
			break;
		spool_fsync_wait(ctx->fsync);
		smtpd_commit_timer(ctx->loop, ctx);
		smtpd_commit_run(ctx, spool_fsync_done(ctx->fsync));
	}
}

/* A session in SS_COMMIT ends: its file is removed later, or its queued name stays. */
static void
smtpd_commit_forget(struct smtpd_session *s)
{
	struct smtpd_ctx *ctx = s->ctx;
	struct smtpd_session **pp;

	if (s->commit != NULL) {
		s->commit->s = NULL; /* the pool still has its job */
		s->commit = NULL;
		return;
	}
	if (s->commit_list == 0)
		return;
	pp = s->commit_list == SMTPD_NAMES_WAIT ? &ctx->names_wait : &ctx->names_sync;
	for (; *pp != NULL; pp = &(*pp)->commit_next)
		if (*pp == s) {
			*pp = s->commit_next;
			break;
		}
	s->commit_next = NULL;
	s->commit_list = 0;
	/* Already in queue/: it will be delivered, though the client never saw a 250. */
	log_warnx("session %llu: qid=%s queued, but the session ended before its 250 (a retry "
	          "by the client would be a duplicate)",
	          (unsigned long long)s->id, s->tx.qid);
}

static void
smtpd_cmd_data(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;

	if (!tx->active) {
		smtpd_reply(s, "503 5.5.1 Need MAIL before DATA");
		return;
	}
	if (tx->nrcpt == 0) {
		smtpd_reply(s, "554 5.5.1 No valid recipients");
		return;
	}
	if (tx->writer != NULL) { /* inside a BDAT sequence */
		smtpd_reply(s, "503 5.5.1 DATA after BDAT");
		return;
	}
	if (smtpd_tx_open(s) == -1)
		return;
	smtp_data_init(&tx->data, SMTP_DATA_DOT);
	smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	smtpd_set_state(s, SS_DATA);
}

/* RFC 3030: the chunk is read whatever the answer will be. */
static void
smtpd_cmd_bdat(struct smtpd_session *s, const struct smtp_cmd *cmd)
{
	struct smtpd_tx *tx = &s->tx;

	s->bdat_left = cmd->chunk;
	s->bdat_last = cmd->last;
	if (!tx->active || tx->nrcpt == 0) {
		tx->bdat_failed = 1;
	} else if (tx->writer == NULL && !tx->bdat_failed) {
		if (smtpd_tx_open(s) == -1) {
			/* the reply is out already; the chunk is still read and dropped */
			tx->bdat_failed = 2;
		} else {
			smtp_data_init(&tx->data, SMTP_DATA_BDAT);
		}
	}
	smtpd_set_state(s, SS_BDAT);
}

static void
smtpd_bdat_done(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;

	if (tx->bdat_failed) {
		if (tx->bdat_failed == 1)
			smtpd_reply(s, tx->active ? "554 5.5.1 No valid recipients"
			                          : "503 5.5.1 Need MAIL before BDAT");
		if (tx->active)
			smtpd_tx_reset(s);
		smtpd_set_state(s, SS_CMD);
		return;
	}
	if (tx->data.state == SMTP_DS_BARE || (s->bdat_last && smtp_data_finish(&tx->data) == -1)) {
		smtpd_reply(s, "554 5.6.0 Bare CR or LF in message, refused (RFC 5321 2.3.8)");
		smtpd_tx_reset(s);
		smtpd_set_state(s, SS_CMD);
		return;
	}
	if (s->bdat_last) {
		smtpd_set_state(s, SS_CMD);
		smtpd_tx_finish(s);
		return;
	}
	if (tx->too_big) {
		smtpd_reply(s, "552 5.3.4 Message size exceeds the limit of %llu bytes",
		            (unsigned long long)s->ctx->conf->smtpd.max_message_size);
		smtpd_tx_reset(s);
	} else {
		smtpd_reply(s, "250 2.0.0 %llu octets received",
		            (unsigned long long)tx->body_bytes);
	}
	smtpd_set_state(s, SS_CMD);
}

static void
smtpd_cmd_starttls(struct smtpd_session *s)
{
	if (s->ctx->tls == NULL) {
		smtpd_reply(s, "502 5.5.1 STARTTLS not offered");
		return;
	}
	if (s->tls) {
		smtpd_reply(s, "503 5.5.1 TLS already active");
		return;
	}
	/* Whatever followed STARTTLS in plain text was sent before TLS: never act on it. */
	if (linebuf_len(&s->lb) > 0)
		log_info("session %llu: client=%s: %zu pipelined plain-text bytes after STARTTLS "
		         "discarded",
		         (unsigned long long)s->id, s->peer, linebuf_len(&s->lb));
	linebuf_clear(&s->lb);
	smtpd_reply(s, "220 2.0.0 Ready to start TLS");
	/* smtpd_run writes the 220 in plain text, then starts the handshake */
	smtpd_set_state(s, SS_TLS);
}

/* Table-free dispatch: validation (smtp_cmd_parse) has no side effects; this has them. */
static void
smtpd_command(struct smtpd_session *s, const char *line, size_t len)
{
	struct smtp_cmd cmd;

	if (smtp_cmd_parse(line, len, &cmd) != SMTP_CMD_OK) {
		smtpd_reply(s, "%s", cmd.reply);
		return;
	}
	switch (cmd.verb) {
	case SMTP_EHLO:
	case SMTP_HELO:
		smtpd_cmd_ehlo(s, &cmd);
		break;
	case SMTP_MAIL:
		smtpd_cmd_mail(s, &cmd);
		break;
	case SMTP_RCPT:
		smtpd_cmd_rcpt(s, &cmd);
		break;
	case SMTP_DATA:
		smtpd_cmd_data(s);
		break;
	case SMTP_BDAT:
		smtpd_cmd_bdat(s, &cmd);
		break;
	case SMTP_RSET:
		smtpd_tx_reset(s);
		smtpd_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_NOOP:
		smtpd_reply(s, "250 2.0.0 Ok");
		break;
	case SMTP_VRFY:
		smtpd_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message and attempt "
		               "delivery");
		break;
	case SMTP_QUIT:
		smtpd_reply(s, "221 2.0.0 Bye");
		s->close_reason = "quit";
		smtpd_set_state(s, SS_CLOSING);
		break;
	case SMTP_STARTTLS:
		smtpd_cmd_starttls(s);
		break;
	case SMTP_NONE:
		smtpd_reply(s, "500 5.5.2 Syntax error, command unrecognized");
		break;
	}
}

void
smtpd_verify_finished(struct smtpd_session *s, enum smtpd_verify_result r, const char *text)
{
	unsigned before = s->errors;

	if (s->state != SS_VERIFY)
		return;
	if (r == SMTPD_VERIFY_UNKNOWN) {
		s->tx.nrcpt = s->verify_before;
		log_info("session %llu: client=%s rcpt=<%s> refused by its back end: %s",
		         (unsigned long long)s->id, s->peer, s->verify_addr, text);
		smtpd_reply(s, "550 5.1.1 User unknown");
	} else {
		s->tx.rcpt_cmds++;
		smtpd_reply(s, "250 2.1.5 Ok");
	}
	smtpd_set_state(s, SS_CMD);
	if (s->errors > before && s->ctx->conf->smtpd.error_delay_ms > 0) {
		s->delayed_state = SS_CMD;
		smtpd_set_state(s, SS_DELAY);
	}
	smtpd_run(s, EV_READ);
}

/* ---- input ---- */

/* DATA: feeds buffered bytes to the unstuffer; 1 if it may continue, 0 to wait. */
static int
smtpd_data_step(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;
	uint8_t in[SMTPD_LINEBUF_BYTES];
	size_t n, used, produced;

	n = linebuf_take(&s->lb, in, sizeof(in));
	if (n == 0)
		return 0;
	used = smtp_data_feed(&tx->data, in, n, s->ctx->dbuf, &produced);
	smtpd_tx_body(s, s->ctx->dbuf, produced);
	if (used < n && tx->data.state == SMTP_DS_END) {
		/* pipelined commands after the dot: give them back */
		struct linebuf rest;

		linebuf_init(&rest, SMTPD_LINEBUF_BYTES, SMTPD_LINEBUF_BYTES);
		if (linebuf_append(&rest, in + used, n - used) != n - used ||
		    linebuf_append(&rest, s->lb.data + s->lb.off, linebuf_len(&s->lb)) !=
		        linebuf_len(&s->lb)) {
			linebuf_free(&rest);
			smtpd_session_close(s, "out of memory");
			return 0;
		}
		linebuf_free(&s->lb);
		s->lb = rest;
	}
	if (tx->data.state == SMTP_DS_BARE) {
		log_info("session %llu: client=%s qid=%s: bare CR or LF in DATA: refused, closing",
		         (unsigned long long)s->id, s->peer, tx->qid);
		smtpd_tx_reset(s);
		smtpd_reply(s, "554 5.6.0 Bare CR or LF in message, refused (RFC 5321 2.3.8)");
		s->close_reason = "bare CR or LF in DATA";
		smtpd_set_state(s, SS_CLOSING);
		return 0;
	}
	if (tx->data.state == SMTP_DS_END) {
		smtpd_set_state(s, SS_CMD);
		smtpd_tx_finish(s);
	}
	return 1;
}

static int
smtpd_bdat_step(struct smtpd_session *s)
{
	struct smtpd_tx *tx = &s->tx;
	uint8_t in[SMTPD_LINEBUF_BYTES];
	size_t n, produced;

	if (s->bdat_left > 0) {
		n = linebuf_take(&s->lb, in,
		                 s->bdat_left < sizeof(in) ? (size_t)s->bdat_left : sizeof(in));
		if (n == 0)
			return 0;
		s->bdat_left -= n;
		if (!tx->bdat_failed && tx->data.state != SMTP_DS_BARE) {
			(void)smtp_data_feed(&tx->data, in, n, s->ctx->dbuf, &produced);
			smtpd_tx_body(s, s->ctx->dbuf, produced);
		}
		if (s->bdat_left > 0)
			return 1;
	}
	smtpd_bdat_done(s);
	return 1;
}

static void
smtpd_process(struct smtpd_session *s)
{
	const struct mailplex_conf_smtpd *c = &s->ctx->conf->smtpd;
	struct linebuf_line l;
	enum linebuf_result r;
	unsigned before;

	for (;;) {
		if (s->out_len - s->out_off > SMTPD_OUT_MAX)
			return; /* a client that does not read its replies waits */
		switch (s->state) {
		case SS_CMD:
			r = linebuf_next_line(&s->lb, &l);
			if (r == LINEBUF_NEED_MORE)
				return;
			before = s->errors;
			if (r == LINEBUF_TOO_LONG)
				smtpd_reply(s, "500 5.5.2 Line too long");
			else
				smtpd_command(s, l.data, l.len);
			if (s->state == SS_DEAD)
				return;
			if (s->errors >= (unsigned)c->max_errors && s->state != SS_CLOSING) {
				smtpd_reply(s, "421 4.7.0 %s Too many errors, closing",
				            s->ctx->hostname);
				s->close_reason = "too many errors";
				smtpd_set_state(s, SS_CLOSING);
				return;
			}
			if (s->errors > before && c->error_delay_ms > 0 && s->state == SS_CMD) {
				s->delayed_state = s->state;
				smtpd_set_state(s, SS_DELAY);
				return;
			}
			break;
		case SS_DATA:
			if (!smtpd_data_step(s))
				return;
			break;
		case SS_BDAT:
			if (!smtpd_bdat_step(s))
				return;
			break;
		default:
			return;
		}
	}
}

/* Reads what the socket has, as far as the line buffer takes it. 0, or -1 when dead. */
static int
smtpd_read(struct smtpd_session *s)
{
	char err[TLS_ERR_MAX];
	ssize_t n;
	size_t room;

	for (;;) {
		if ((room = linebuf_space(&s->lb)) == 0)
			return 0;
		if (room > sizeof(s->ctx->rbuf))
			room = sizeof(s->ctx->rbuf);
		if (s->ssl != NULL)
			n = tls_read(s->ssl, s->ctx->rbuf, room, err, sizeof(err));
		else
			n = read(s->fd, s->ctx->rbuf, room);
		if (n > 0) {
			if (s->state == SS_CLOSING)
				continue; /* lingering: dropped */
			if (linebuf_append(&s->lb, s->ctx->rbuf, (size_t)n) != (size_t)n) {
				smtpd_session_close(s, "out of memory");
				return -1;
			}
			/* A short read emptied the socket: no read just for its EAGAIN (the
			 * loop is level-triggered, and says so when more arrives). */
			if (s->ssl == NULL && (size_t)n < room)
				return 0;
			continue;
		}
		if (n == 0) {
			smtpd_session_close(s, s->state == SS_CLOSING && s->close_reason != NULL
			                           ? s->close_reason
			                           : "client closed");
			return -1;
		}
		if (s->ssl != NULL && (n == TLS_WANT_READ || n == TLS_WANT_WRITE))
			return 0;
		if (s->ssl == NULL && (errno == EAGAIN || errno == EINTR)) {
			if (errno == EINTR)
				continue;
			return 0;
		}
		smtpd_session_close(s, "read error");
		return -1;
	}
}

static void
smtpd_update_io(struct smtpd_session *s)
{
	int ev = 0;

	if (s->state == SS_DEAD)
		return;
	if (s->state == SS_DELAY) {
		ev = 0; /* the held reply and the client's next bytes both wait */
	} else if (s->state == SS_TLS && s->out_off == s->out_len) {
		ev = s->tls_want_write ? EV_WRITE : EV_READ;
	} else {
		if (s->out_len - s->out_off <= SMTPD_OUT_MAX)
			ev |= EV_READ;
		if (s->out_off < s->out_len)
			ev |= EV_WRITE;
	}
	if (ev == s->io_events)
		return; /* one epoll_ctl less per command: the interest rarely changes */
	if (ev_io_set(s->ctx->loop, s->fd, ev, smtpd_io, s) == -1) {
		smtpd_session_close(s, "epoll");
		return;
	}
	s->io_events = ev;
}

static void
smtpd_handshake(struct smtpd_session *s)
{
	char err[TLS_ERR_MAX];
	int r;

	if (s->ssl == NULL &&
	    (s->ssl = tls_server_new(s->ctx->tls, s->fd, err, sizeof(err))) == NULL) {
		log_warnx("session %llu: %s", (unsigned long long)s->id, err);
		smtpd_session_close(s, "tls setup failed");
		return;
	}
	r = tls_handshake(s->ssl, err, sizeof(err));
	s->tls_want_write = r == TLS_WANT_WRITE;
	if (r == TLS_WANT_READ || r == TLS_WANT_WRITE)
		return;
	if (r != 0) {
		log_info("session %llu: client=%s: TLS handshake failed: %s",
		         (unsigned long long)s->id, s->peer, err);
		smtpd_session_close(s, "tls handshake failed");
		return;
	}
	s->tls = 1;
	/* RFC 3207 4.2: the client starts over with EHLO; nothing from before counts. */
	s->helo_done = 0;
	s->helo[0] = '\0';
	smtpd_tx_reset(s);
	log_info("session %llu: client=%s: %s %s", (unsigned long long)s->id, s->peer,
	         tls_version_name(s->ssl), tls_cipher_name(s->ssl));
	smtpd_set_state(s, SS_CMD);
}

/* Runs after every event: moves the session as far as it can, then frees it if dead. */
static void
smtpd_run(struct smtpd_session *s, int events)
{
	int rounds;

	if (s->state == SS_TLS && s->ssl == NULL)
		(void)smtpd_flush(s); /* the 220 goes out in plain text */
	if (s->state == SS_TLS && s->out_off == s->out_len)
		smtpd_handshake(s);
	/*
	 * Bytes OpenSSL decrypted but the line buffer had no room for never wake epoll: go on
	 * while it holds some and the buffer drains. OpenSSL holds at most one record, so
	 * this ends within a few rounds unless replies back up (then EV_WRITE brings us back)
	 * or an error delay starts (its timer does).
	 */
	for (rounds = 0; rounds < SMTPD_TLS_ROUNDS; rounds++) {
		if (s->state != SS_DEAD && s->state != SS_TLS &&
		    ((events & EV_READ) || (s->ssl != NULL && tls_pending(s->ssl) > 0)))
			(void)smtpd_read(s);
		if (s->state != SS_DEAD && s->state != SS_TLS)
			smtpd_process(s);
		if (s->ssl == NULL || s->state == SS_DEAD || s->state == SS_TLS ||
		    s->state == SS_DELAY || tls_pending(s->ssl) == 0 || linebuf_space(&s->lb) == 0)
			break;
	}
	if (s->state != SS_DEAD && s->state != SS_DELAY)
		(void)smtpd_flush(s);
	if (s->state == SS_CLOSING && s->out_off == s->out_len) {
		/* Lingering close: our FIN first, then drop what the client still sends, so that
		 * the last reply is not lost to a reset. */
		(void)shutdown(s->fd, SHUT_WR);
	}
	if (s->state == SS_DEAD) {
		smtpd_session_free(s);
		return;
	}
	smtpd_update_io(s);
	if (s->state == SS_DEAD)
		smtpd_session_free(s);
}

static void
smtpd_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	smtpd_run(arg, events);
}

static void
smtpd_timer(struct ev_loop *loop, void *arg)
{
	struct smtpd_session *s = arg;

	switch (s->state) {
	case SS_DELAY:
		smtpd_set_state(s, s->delayed_state);
		smtpd_run(s, EV_READ);
		return;
	case SS_CLOSING:
		smtpd_session_close(s, s->close_reason != NULL ? s->close_reason : "closing");
		break;
	default:
		/* RFC 5321 4.5.3.2: the server may close after its timeout, with a 421 */
		smtpd_reply(s, "421 4.4.2 %s Timeout, closing", s->ctx->hostname);
		(void)smtpd_flush(s);
		smtpd_session_close(s, "timeout");
		break;
	}
	smtpd_run(s, 0);
}

/* ---- life cycle ---- */

void
smtpd_session_new(struct smtpd_ctx *ctx, int fd, const struct sockaddr_storage *peer)
{
	struct smtpd_session *s;
	char addr[SOCK_ADDR_STRLEN], *p;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warnx("session: out of memory");
		close(fd);
		return;
	}
	s->ctx = ctx;
	s->fd = fd;
	s->id = ++ctx->next_id;
	s->peer_ss = *peer;
	s->start_ms = ev_now_ms(ctx->loop);
	ev_timer_init(&s->timer);
	linebuf_init(&s->lb, 1024, SMTPD_LINEBUF_BYTES);
	/* "[::1]:1234" / "127.0.0.1:1234" -> the bare address */
	if (sock_addr_format((const struct sockaddr *)peer, addr, sizeof(addr)) == -1)
		str_copy(addr, sizeof(addr), "unknown");
	p = addr[0] == '[' ? addr + 1 : addr;
	str_copy(s->peer, sizeof(s->peer), p);
	if ((p = strrchr(s->peer, addr[0] == '[' ? ']' : ':')) != NULL)
		*p = '\0';
	s->next = ctx->sessions;
	if (ctx->sessions != NULL)
		ctx->sessions->prev = s;
	ctx->sessions = s;
	ctx->nsessions++;
	s->state = SS_CMD;
	log_info("session %llu: connect from %s", (unsigned long long)s->id, s->peer);
	smtpd_reply(s, "220 %s ESMTP mailplex", ctx->hostname);
	smtpd_set_state(s, SS_CMD);
	smtpd_run(s, 0);
}

void
smtpd_session_close(struct smtpd_session *s, const char *reason)
{
	if (s->state == SS_DEAD)
		return;
	log_info("session %llu: client=%s closed: %s", (unsigned long long)s->id, s->peer, reason);
	smtpd_set_state(s, SS_DEAD);
}

void
smtpd_session_free(struct smtpd_session *s)
{
	struct smtpd_ctx *ctx = s->ctx;

	ev_timer_stop(ctx->loop, &s->timer);
	(void)ev_io_del(ctx->loop, s->fd);
	smtpd_verify_cancel(s->verify);
	s->verify = NULL;
	smtpd_commit_forget(s);
	smtpd_tx_reset(s);
	if (s->ssl != NULL) {
		tls_close_notify(s->ssl);
		tls_free(s->ssl);
	}
	close(s->fd);
	linebuf_free(&s->lb);
	free(s->out);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		ctx->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	ctx->nsessions--;
	ipcount_del(&ctx->ips, &s->peer_ss);
	free(s);
	smtpd_accept_resume(ctx);
}
