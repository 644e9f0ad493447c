/*
 * The send/expect engine: runs one check's step table on one connection inside the event
 * loop. Owns the run's descriptor, TLS session, line buffer and timeout, and the wording
 * of every reason. It must never block, never call done twice or from inside
 * hc_session_start, and never touch the session after calling done.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hc.h"
#include "tls.h"
#include "util.h"

#define HC_READ_CHUNK 2048

enum hc_op_result {
	HC_STEP_DONE,
	HC_STEP_WAIT,   /* s->io_want says for what */
	HC_STEP_FAILED, /* result filled */
};

static void hc_advance(struct hc_session *s);

void
hc_session_init(struct hc_session *s)
{
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	ev_timer_init(&s->timer);
	linebuf_init(&s->in, 256, HC_LINE_MAX_BYTES);
}

int
hc_session_running(const struct hc_session *s)
{
	return s->running;
}

static const char *
hc_proto_label(const struct hc_session *s)
{
	switch (s->spec->type) {
	case HC_SMTP:
	case HC_SMTPS:
		return "smtp";
	case HC_IMAP:
	case HC_IMAPS:
		return "imap";
	case HC_POP3:
	case HC_POP3S:
		return "pop3";
	default:
		return "tcp";
	}
}

/* A failure replaces an earlier warning (certificate) and its reason. */
static void __attribute__((format(printf, 3, 4)))
hc_fail(struct hc_session *s, enum hc_status status, const char *fmt, ...)
{
	va_list ap;

	s->result.status = status;
	va_start(ap, fmt);
	(void)vsnprintf(s->result.reason, sizeof(s->result.reason), fmt, ap);
	va_end(ap);
}

static void
hc_teardown(struct hc_session *s, int polite)
{
	ev_timer_stop(s->loop, &s->timer);
	if (s->fd != -1) {
		(void)ev_io_del(s->loop, s->fd);
		if (s->ssl != NULL && polite)
			tls_close_notify(s->ssl);
		close(s->fd);
		s->fd = -1;
	}
	if (s->ssl != NULL) {
		tls_free(s->ssl);
		s->ssl = NULL;
	}
	s->io_events = 0;
	linebuf_free(&s->in);
	s->running = 0;
}

static void
hc_finish(struct hc_session *s)
{
	hc_done_fn *done = s->done;
	void *arg = s->arg;

	s->result.latency_ms = time_mono_ms() - s->start_ms;
	if (s->step < s->nsteps)
		s->result.phase = s->steps[s->step].phase;
	hc_teardown(s, s->result.status <= HC_WARNING);
	/* Last: the callback may start the session again or free its owner. */
	done(s, &s->result, arg);
}

void
hc_session_abort(struct hc_session *s)
{
	if (s->running)
		hc_teardown(s, 0);
}

static void
hc_on_timeout(struct ev_loop *loop, void *arg)
{
	struct hc_session *s = arg;

	hc_fail(s, HC_CRITICAL, "timeout after %llu ms in %s",
	        (unsigned long long)s->spec->timeout_ms,
	        s->step < s->nsteps ? s->steps[s->step].phase : "close");
	hc_finish(s);
}

/* A failure found while still inside hc_session_start is reported from the loop. */
static void
hc_on_deferred_finish(struct ev_loop *loop, void *arg)
{
	hc_finish(arg);
}

static void
hc_on_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	hc_advance(arg);
}

static int
hc_io_want(struct hc_session *s, int events)
{
	if (s->io_events == events)
		return 0;
	if (ev_io_set(s->loop, s->fd, events, hc_on_io, s) == -1) {
		hc_fail(s, HC_UNKNOWN, "event loop: %s", strerror(errno));
		return -1;
	}
	s->io_events = events;
	return 0;
}

/* ---- the operations: each returns DONE, WAIT (io_want set) or FAILED ---- */

static enum hc_op_result
hc_op_connect(struct hc_session *s)
{
	char err[128];
	int saved;

	if (s->fd == -1) {
		errno = 0;
		if ((s->fd = sock_connect_start(&s->spec->addr, s->spec->addrlen, err,
		                                sizeof(err))) == -1) {
			saved = errno;
			/* Our own shortage says nothing about the peer's health. */
			if (saved == EMFILE || saved == ENFILE || saved == ENOBUFS ||
			    saved == ENOMEM || saved == 0)
				hc_fail(s, HC_UNKNOWN, "%s", err);
			else
				hc_fail(s, HC_CRITICAL, "connect: %s", strerror(saved));
			return HC_STEP_FAILED;
		}
		return hc_io_want(s, EV_WRITE) == 0 ? HC_STEP_WAIT : HC_STEP_FAILED;
	}
	if (sock_connect_result(s->fd) == -1) {
		hc_fail(s, HC_CRITICAL, "connect: %s", strerror(errno));
		return HC_STEP_FAILED;
	}
	return HC_STEP_DONE;
}

static enum hc_op_result
hc_tls_want(struct hc_session *s, ssize_t r)
{
	return hc_io_want(s, r == TLS_WANT_WRITE ? EV_WRITE : EV_READ) == 0 ? HC_STEP_WAIT
	                                                                    : HC_STEP_FAILED;
}

static enum hc_op_result
hc_check_cert(struct hc_session *s)
{
	char err[TLS_ERR_MAX];
	int days, warn = s->spec->cert_warn_days;

	if (tls_cert_days_left(s->ssl, &days, err, sizeof(err)) == -1) {
		if (warn > 0) {
			hc_fail(s, HC_CRITICAL, "%s", err);
			return HC_STEP_FAILED;
		}
		return HC_STEP_DONE;
	}
	if (s->result.cert_days == HC_CERT_DAYS_NONE || days < s->result.cert_days)
		s->result.cert_days = days;
	if (warn <= 0)
		return HC_STEP_DONE;
	if (days < 0) {
		hc_fail(s, HC_CRITICAL, "tls: certificate expired %d days ago", -days);
		return HC_STEP_FAILED;
	}
	if (days < warn && s->result.status < HC_WARNING) {
		s->result.status = HC_WARNING;
		(void)str_format(s->result.reason, sizeof(s->result.reason),
		                 "certificate expires in %d days", days);
	}
	return HC_STEP_DONE;
}

static enum hc_op_result
hc_op_tls(struct hc_session *s, const struct hc_step *st)
{
	char err[TLS_ERR_MAX];
	const char *name = s->spec->servername[0] != '\0' ? s->spec->servername : NULL;
	int r;

	if (s->ssl == NULL) {
		/*
		 * Bytes after the STARTTLS reply arrived as plaintext and would be read as if
		 * they came through TLS (CVE-2011-0411 is the server-side twin): a failure.
		 */
		if ((st->flags & HC_STEP_AFTER_STARTTLS) && linebuf_len(&s->in) > 0) {
			hc_fail(s, HC_CRITICAL, "%s: plaintext after the STARTTLS reply",
			        hc_proto_label(s));
			return HC_STEP_FAILED;
		}
		if ((s->ssl = tls_client_new(s->spec->ssl_ctx, s->fd, name, err, sizeof(err))) ==
		    NULL) {
			hc_fail(s, HC_UNKNOWN, "%s", err);
			return HC_STEP_FAILED;
		}
	}
	r = tls_handshake(s->ssl, err, sizeof(err));
	if (r == TLS_WANT_READ || r == TLS_WANT_WRITE)
		return hc_tls_want(s, r);
	if (r != 0) {
		hc_fail(s, HC_CRITICAL, "%s", err);
		return HC_STEP_FAILED;
	}
	s->result.tls = 1;
	if (st->flags & HC_STEP_AFTER_STARTTLS)
		s->result.starttls = 1;
	return hc_check_cert(s);
}

static enum hc_op_result
hc_op_send(struct hc_session *s)
{
	char err[TLS_ERR_MAX];
	ssize_t r;

	while (s->outoff < s->outlen) {
		if (s->ssl != NULL) {
			r = tls_write(s->ssl, s->out + s->outoff, s->outlen - s->outoff, err,
			              sizeof(err));
			if (r == TLS_WANT_READ || r == TLS_WANT_WRITE)
				return hc_tls_want(s, r);
			if (r < 0) {
				hc_fail(s, HC_CRITICAL, "%s", err);
				return HC_STEP_FAILED;
			}
		} else {
			r = send(s->fd, s->out + s->outoff, s->outlen - s->outoff, MSG_NOSIGNAL);
			if (r == -1 && errno == EINTR)
				continue;
			if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return hc_io_want(s, EV_WRITE) == 0 ? HC_STEP_WAIT : HC_STEP_FAILED;
			if (r == -1) {
				hc_fail(s, HC_CRITICAL, "send: %s", strerror(errno));
				return HC_STEP_FAILED;
			}
		}
		s->outoff += (size_t)r;
	}
	return HC_STEP_DONE;
}

/*
 * Appends what the socket (or TLS) has now. > 0 bytes, 0 at end of stream, or a step
 * result (WAIT/FAILED) as a negative number. Called until it waits, so SSL_pending bytes
 * are always drained before the loop sleeps.
 */
static ssize_t
hc_fill(struct hc_session *s, enum hc_op_result *res)
{
	char buf[HC_READ_CHUNK], err[TLS_ERR_MAX];
	size_t room = linebuf_space(&s->in);
	ssize_t r;

	if (room > sizeof(buf))
		room = sizeof(buf);
	for (;;) {
		if (s->ssl != NULL) {
			r = tls_read(s->ssl, buf, room, err, sizeof(err));
			if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
				*res = hc_tls_want(s, r);
				return -1;
			}
			if (r < 0) {
				hc_fail(s, HC_CRITICAL, "%s", err);
				*res = HC_STEP_FAILED;
				return -1;
			}
		} else {
			r = read(s->fd, buf, room);
			if (r == -1 && errno == EINTR)
				continue;
			if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				*res = hc_io_want(s, EV_READ) == 0 ? HC_STEP_WAIT : HC_STEP_FAILED;
				return -1;
			}
			if (r == -1) {
				hc_fail(s, HC_CRITICAL, "read: %s", strerror(errno));
				*res = HC_STEP_FAILED;
				return -1;
			}
		}
		break;
	}
	if (r > 0 && linebuf_append(&s->in, buf, (size_t)r) != (size_t)r) {
		hc_fail(s, HC_UNKNOWN, "read: out of memory");
		*res = HC_STEP_FAILED;
		return -1;
	}
	return r;
}

static enum hc_reply_status
hc_feed(struct hc_session *s, const struct hc_step *st, const struct linebuf_line *line)
{
	enum hc_reply_status rs;

	if (st->op == HC_OP_EXPECT_SMTP) {
		rs = hc_smtp_reply_feed(&s->reply.smtp, line->data, line->len);
		if (s->reply.smtp.code != 0)
			s->result.code = s->reply.smtp.code;
	} else {
		rs = hc_line_reply_feed(&s->reply.line, line->data, line->len);
	}
	if ((st->flags & HC_STEP_GREETING) && s->result.greeting[0] == '\0') {
		if (st->op == HC_OP_EXPECT_SMTP) /* "220-" reads as "220 " in a status line */
			(void)str_copy(s->result.greeting, sizeof(s->result.greeting),
			               s->reply.smtp.text);
		else
			hc_text_sanitize(s->result.greeting, sizeof(s->result.greeting), line->data,
			                 line->len);
	}
	return rs;
}

/* "smtp: expected 250 after EHLO, got 502 5.5.1 ..."; greetings have no "after". */
static void
hc_fail_reply(struct hc_session *s, const struct hc_step *st)
{
	char want[32];
	const char *text, *after = (st->flags & HC_STEP_GREETING) ? NULL : st->phase;

	if (st->op == HC_OP_EXPECT_SMTP) {
		(void)str_format(want, sizeof(want), "%d", st->code);
		text = s->reply.smtp.text;
	} else {
		(void)str_copy(want, sizeof(want), st->text);
		text = s->reply.line.text;
	}
	hc_fail(s, HC_CRITICAL, "%s: expected %s%s%s, got %s", hc_proto_label(s), want,
	        after != NULL ? " after " : "", after != NULL ? after : "", text);
}

static enum hc_op_result
hc_op_expect(struct hc_session *s, const struct hc_step *st)
{
	struct linebuf_line line;
	enum linebuf_result lr;
	enum hc_reply_status rs;
	enum hc_op_result res;
	const char *error;
	ssize_t n;

	for (;;) {
		lr = linebuf_next_line(&s->in, &line);
		if (lr == LINEBUF_TOO_LONG) {
			hc_fail(s, HC_CRITICAL, "%s: reply line longer than %d bytes in %s",
			        hc_proto_label(s), HC_LINE_MAX_BYTES, st->phase);
			return HC_STEP_FAILED;
		}
		if (lr == LINEBUF_LINE) {
			rs = hc_feed(s, st, &line);
			if (rs == HC_REPLY_MORE)
				continue;
			if (rs == HC_REPLY_OK)
				break;
			if (rs == HC_REPLY_FAIL) {
				hc_fail_reply(s, st);
				return HC_STEP_FAILED;
			}
			error =
			    st->op == HC_OP_EXPECT_SMTP ? s->reply.smtp.error : s->reply.line.error;
			hc_fail(
			    s, HC_CRITICAL, "%s: %s in %s: %s", hc_proto_label(s), error, st->phase,
			    st->op == HC_OP_EXPECT_SMTP ? s->reply.smtp.text : s->reply.line.text);
			return HC_STEP_FAILED;
		}
		if ((n = hc_fill(s, &res)) < 0)
			return res;
		if (n == 0) {
			hc_fail(s, HC_CRITICAL, "%s: connection closed by peer in %s",
			        hc_proto_label(s), st->phase);
			return HC_STEP_FAILED;
		}
	}
	if ((st->flags & HC_STEP_NEED_STARTTLS) && !s->reply.smtp.starttls) {
		hc_fail(s, HC_CRITICAL, "smtp: STARTTLS not offered in the EHLO reply");
		return HC_STEP_FAILED;
	}
	return HC_STEP_DONE;
}

/* Per-step set-up, once when a step becomes current. */
static void
hc_step_enter(struct hc_session *s, const struct hc_step *st)
{
	s->entered = 1;
	switch (st->op) {
	case HC_OP_SEND:
		s->outoff = 0;
		if (st->flags & HC_STEP_HELO)
			(void)str_format(s->out, sizeof(s->out), "%s %s\r\n", st->text,
			                 s->spec->helo[0] != '\0' ? s->spec->helo : "localhost");
		else
			(void)str_format(s->out, sizeof(s->out), "%s\r\n", st->text);
		s->outlen = strlen(s->out);
		break;
	case HC_OP_EXPECT_SMTP:
		hc_smtp_reply_init(&s->reply.smtp, st->code);
		break;
	case HC_OP_EXPECT_LINE:
		hc_line_reply_init(&s->reply.line, st->text, st->skip);
		break;
	default:
		break;
	}
}

static void
hc_advance(struct hc_session *s)
{
	const struct hc_step *st;
	enum hc_op_result r;

	while (s->step < s->nsteps) {
		st = &s->steps[s->step];
		if (!s->entered)
			hc_step_enter(s, st);
		switch (st->op) {
		case HC_OP_CONNECT:
			r = hc_op_connect(s);
			break;
		case HC_OP_TLS:
			r = hc_op_tls(s, st);
			break;
		case HC_OP_SEND:
			r = hc_op_send(s);
			break;
		case HC_OP_EXPECT_SMTP:
		case HC_OP_EXPECT_LINE:
			r = hc_op_expect(s, st);
			break;
		case HC_OP_CLOSE:
		default:
			r = HC_STEP_DONE;
			break;
		}
		if (r == HC_STEP_WAIT)
			return;
		if (r == HC_STEP_FAILED) {
			hc_finish(s);
			return;
		}
		if (st->op == HC_OP_CLOSE)
			break;
		s->step++;
		s->entered = 0;
	}
	hc_finish(s);
}

int
hc_session_start(struct hc_session *s, struct ev_loop *loop, const struct hc_spec *spec,
                 hc_done_fn *done, void *arg)
{
	char err[128];

	if (s->running)
		hc_session_abort(s);
	if (hc_spec_check(spec, err, sizeof(err)) == -1) {
		errno = EINVAL;
		return -1;
	}
	s->loop = loop;
	s->spec = spec;
	s->steps = hc_proto_steps(spec->type, spec->starttls, &s->nsteps);
	s->step = 0;
	s->entered = 0;
	s->fd = -1;
	s->io_events = 0;
	s->done = done;
	s->arg = arg;
	memset(&s->result, 0, sizeof(s->result));
	s->result.cert_days = HC_CERT_DAYS_NONE;
	s->result.phase = s->steps[0].phase;
	/* The run's timeout and its latency count from the same, fresh instant. */
	ev_now_update(loop);
	s->start_ms = ev_now_ms(loop);
	s->running = 1;
	/* The connect step never finishes at once: at worst it fails before any wait. */
	hc_step_enter(s, &s->steps[0]);
	if (hc_op_connect(s) == HC_STEP_FAILED) {
		if (ev_timer_start(loop, &s->timer, 0, hc_on_deferred_finish, s) == -1) {
			hc_teardown(s, 0);
			return -1;
		}
		return 0;
	}
	if (ev_timer_start(loop, &s->timer, spec->timeout_ms, hc_on_timeout, s) == -1) {
		hc_teardown(s, 0);
		return -1;
	}
	return 0;
}
