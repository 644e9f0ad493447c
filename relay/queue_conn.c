/*
 * The queue runner's LMTP/SMTP client: one connection per struct queue_conn, an explicit
 * state machine (connect, greeting, LHLO/EHLO, optional STARTTLS, then transactions:
 * RSET if the last one may be open, MAIL, RCPT..., DATA, the dot-stuffed body, one reply
 * per accepted recipient for LMTP (RFC 2033 4.2) or one for SMTP), connection reuse and
 * the per-back-end limit.
 * Every wait has a timer; nothing blocks except reading the queue file from local disk.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "log.h"
#include "queue_runner.h"
#include "resolve.h"
#include "tls.h"
#include "util.h"

#define CONN_LINE_MAX (QUEUE_REPLY_LINE_MAX + 2)

static const char *const conn_state_names[] = {
    [QC_CONNECTING] = "connect", [QC_GREETING] = "greeting", [QC_HELO] = "lhlo/ehlo",
    [QC_STARTTLS] = "starttls",  [QC_TLS_HANDSHAKE] = "tls", [QC_HELO_TLS] = "ehlo-after-tls",
    [QC_IDLE] = "idle",          [QC_RSET] = "rset",         [QC_MAIL] = "mail",
    [QC_RCPT] = "rcpt",          [QC_DATA] = "data",         [QC_BODY] = "body",
    [QC_DOT] = "end-of-data",    [QC_QUIT] = "quit",         [QC_DEAD] = "closed",
};

static void conn_io(struct ev_loop *loop, int fd, int events, void *arg);
static void conn_ready(struct queue_ctx *ctx, struct queue_conn *c);
static void backend_dispatch(struct queue_ctx *ctx, struct queue_backend *be);
static int conn_connect_next(struct queue_conn *c);

static void
conn_update_io(struct queue_conn *c)
{
	int ev = EV_READ;

	/* In BODY the body itself is waiting: writability is what lets the next piece go. */
	if (c->state == QC_CONNECTING || c->state == QC_BODY || c->want_write ||
	    c->out_off < c->out_len)
		ev |= EV_WRITE;
	if (ev == c->io_events)
		return;
	if (ev_io_set(c->be->ctx->loop, c->fd, ev, conn_io, c) == -1) {
		log_warn("backend %s (%s): epoll", c->be->name, c->addr);
		return;
	}
	c->io_events = ev;
}

static void conn_timeout(struct ev_loop *loop, void *arg);

static void
conn_wait(struct queue_conn *c, uint64_t ms)
{
	if (ev_timer_start(c->be->ctx->loop, &c->timer, ms, conn_timeout, c) == -1)
		log_warnx("backend %s: cannot arm a timer", c->be->name);
}

/* Moves to state; the timer of every state but IDLE is the delivery timeout. */
static void
conn_set_state(struct queue_conn *c, enum queue_conn_state st)
{
	log_debug("backend %s (%s): %s -> %s", c->be->name, c->addr, conn_state_names[c->state],
	          conn_state_names[st]);
	c->state = st;
	if (st == QC_IDLE)
		conn_wait(c, QUEUE_CONN_IDLE_MS);
	else if (st != QC_DEAD)
		conn_wait(c, c->be->ctx->conf->smtpd.delivery_timeout_ms);
}

/* Every recipient of the job without a decision gets reply, still pending (retried). */
static void
job_defer_rest(struct queue_job *job, const char *reply)
{
	size_t i;

	for (i = 0; i < job->n; i++)
		if (job->reply[i][0] == '\0') {
			job->result[i] = QUEUE_RCPT_PENDING;
			str_copy(job->reply[i], sizeof(job->reply[i]), reply);
		}
}

/* One decision from a reply: 2xx delivered, 5xx failed, anything else pending. */
static void
job_decide(struct queue_job *job, size_t i, const struct queue_reply *r)
{
	int cls = queue_reply_class(r);

	job->result[i] = cls == 2   ? QUEUE_RCPT_DELIVERED
	                 : cls == 5 ? QUEUE_RCPT_FAILED
	                            : QUEUE_RCPT_PENDING;
	str_copy(job->reply[i], sizeof(job->reply[i]), r->text);
	if (job->reply[i][0] == '\0')
		str_copy(job->reply[i], sizeof(job->reply[i]), "(empty reply)");
}

static void
conn_free_out(struct queue_conn *c)
{
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
}

/* Teardown, one place: the job (if any) is deferred with why, the slot is freed. */
static void
conn_close(struct queue_conn *c, const char *why)
{
	struct queue_ctx *ctx = c->be->ctx;
	struct queue_backend *be = c->be;
	struct queue_conn **pp;
	struct queue_job *job = c->job;
	char reply[QUEUE_REPLY_TEXT_MAX];
	int ready;

	if (c->state == QC_DEAD)
		return;
	ready = c->state > QC_HELO_TLS;
	if (why != NULL)
		log_info("backend %s (%s): connection closed in %s: %s", be->name, c->addr,
		         conn_state_names[c->state], why);
	c->state = QC_DEAD;
	ev_timer_stop(ctx->loop, &c->timer);
	if (c->fd >= 0) {
		ev_io_del(ctx->loop, c->fd);
		if (c->ssl != NULL) {
			tls_close_notify(c->ssl);
			tls_free(c->ssl);
			c->ssl = NULL;
		}
		close(c->fd);
		c->fd = -1;
	}
	linebuf_free(&c->in);
	conn_free_out(c);
	for (pp = &be->conns; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	be->nconns--;
	c->next = ctx->dead;
	ctx->dead = c;
	c->job = NULL;
	(void)str_format(reply, sizeof(reply), "451 4.4.2 %s (%s): %s", be->name, c->addr,
	                 why != NULL ? why : "connection closed");
	if (job != NULL) {
		job_defer_rest(job, reply);
		queue_job_done(ctx, job);
	}
	/*
	 * A back end that could not even greet us would fail the waiting jobs the same way:
	 * defer them now instead of trying one connection after another.
	 */
	if (!ready) {
		while ((job = be->wait_head) != NULL) {
			be->wait_head = job->next;
			job->next = NULL;
			job_defer_rest(job, reply);
			queue_job_done(ctx, job);
		}
		be->wait_tail = NULL;
	}
	backend_dispatch(ctx, be);
}

static int
conn_put(struct queue_conn *c, const char *data, size_t len)
{
	char *p;

	if (c->out_off > 0 && c->out_off == c->out_len)
		c->out_len = c->out_off = 0;
	if (c->out_len + len > QUEUE_CONN_OUT_MAX * 3) {
		errno = ENOBUFS;
		return -1;
	}
	if ((p = realloc(c->out, c->out_len + len)) == NULL)
		return -1;
	c->out = p;
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return 0;
}

static int conn_send(struct queue_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Queues one command line (CRLF added). 0, or -1 with the connection closed. */
static int
conn_send(struct queue_conn *c, const char *fmt, ...)
{
	char line[MAP_ADDR_MAX + 128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2) {
		conn_close(c, "command too long");
		return -1;
	}
	memcpy(line + n, "\r\n", 2);
	if (conn_put(c, line, (size_t)n + 2) == -1) {
		conn_close(c, "out of memory");
		return -1;
	}
	return 0;
}

/* Writes what is queued. 0 (maybe with bytes left), -1 with the connection closed. */
static int
conn_flush(struct queue_conn *c)
{
	char err[TLS_ERR_MAX];
	ssize_t n;

	c->want_write = 0;
	while (c->out_off < c->out_len) {
		if (c->ssl != NULL) {
			n = tls_write(c->ssl, c->out + c->out_off, c->out_len - c->out_off, err,
			              sizeof(err));
			if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
				c->want_write = n == TLS_WANT_WRITE;
				return 0;
			}
			if (n < 0) {
				conn_close(c, err);
				return -1;
			}
		} else {
			n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return 0;
			if (n < 0) {
				(void)str_format(err, sizeof(err), "write: %s", strerror(errno));
				conn_close(c, err);
				return -1;
			}
		}
		c->out_off += (size_t)n;
		/* The timeout bounds a stall, not the transfer: progress re-arms it. */
		if (c->state == QC_BODY)
			conn_wait(c, c->be->ctx->conf->smtpd.delivery_timeout_ms);
	}
	conn_free_out(c);
	return 0;
}

/*
 * Copies the next piece of the body into the output, dot-stuffed (RFC 5321 4.5.2) and
 * with bare LF made CRLF; at the end the terminating ".". Bytes are not otherwise
 * changed. -1 with the connection closed.
 */
static int
conn_body_fill(struct queue_conn *c)
{
	struct queue_msg *m = c->job->msg;
	char in[QUEUE_BODY_CHUNK], out[2 * QUEUE_BODY_CHUNK];
	size_t o;
	ssize_t n;
	char err[128];

	while (c->state == QC_BODY && c->out_len - c->out_off < QUEUE_CONN_OUT_MAX) {
		if ((uint64_t)c->body_pos >= m->size) {
			o = queue_body_end(&c->body, out);
			if (conn_put(c, out, o) == -1) {
				conn_close(c, "out of memory");
				return -1;
			}
			conn_set_state(c, QC_DOT);
			c->dot_pos = 0;
			return 0;
		}
		/* A local file read: short, and no reply can be sent before the body is. */
		n = pread(m->fd, in, sizeof(in), c->body_pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			(void)str_format(err, sizeof(err), "queue file %s: %s", m->qid,
			                 n < 0 ? strerror(errno) : "shorter than it was");
			log_warnx("%s", err);
			conn_close(c, err);
			return -1;
		}
		c->body_pos += n;
		o = queue_body_encode(&c->body, in, (size_t)n, out);
		if (conn_put(c, out, o) == -1) {
			conn_close(c, "out of memory");
			return -1;
		}
	}
	return 0;
}

/*
 * tx_open: the transaction may still be open on the back end (recipients refused, DATA
 * refused), so the next one starts with RSET. After the reply(ies) to the final dot it is
 * complete (RFC 5321 4.1.1.4, RFC 2033 4.2) and the next MAIL follows at once: one round
 * trip less per message on a reused connection.
 */
static void
job_finish(struct queue_ctx *ctx, struct queue_conn *c, int tx_open)
{
	struct queue_job *job = c->job;

	c->job = NULL;
	c->used = tx_open;
	queue_job_done(ctx, job);
	conn_ready(ctx, c);
}

static void
conn_send_mail(struct queue_conn *c)
{
	const struct spool_envelope *env = &c->job->msg->env;
	int body8 = env->body_type != SPOOL_BODY_7BIT && (c->ext & QUEUE_EXT_8BITMIME);
	int utf8 = env->smtputf8 && (c->ext & QUEUE_EXT_SMTPUTF8);

	if (conn_send(c, "MAIL FROM:<%s>%s%s", env->sender, body8 ? " BODY=8BITMIME" : "",
	              utf8 ? " SMTPUTF8" : "") == 0)
		conn_set_state(c, QC_MAIL);
}

static void
conn_send_rcpt(struct queue_conn *c)
{
	const struct queue_job *job = c->job;

	if (conn_send(c, "RCPT TO:<%s>", job->msg->env.rcpt[job->idx[c->rcpt_pos]].addr) == 0)
		conn_set_state(c, QC_RCPT);
}

static void
job_begin(struct queue_ctx *ctx, struct queue_conn *c)
{
	(void)ctx;
	c->rcpt_pos = 0;
	c->naccepted = 0;
	c->body_pos = c->job->msg->body_off;
	queue_body_init(&c->body);
	/* A reused connection starts from a clean transaction whatever the last one left. */
	if (c->used) {
		if (conn_send(c, "RSET") == 0)
			conn_set_state(c, QC_RSET);
	} else {
		conn_send_mail(c);
	}
}

/* The connection can take a transaction: its own job, a waiting one, or it idles. */
static void
conn_ready(struct queue_ctx *ctx, struct queue_conn *c)
{
	struct queue_backend *be = c->be;

	if (c->state == QC_DEAD)
		return;
	if (c->job == NULL && be->wait_head != NULL) {
		c->job = be->wait_head;
		be->wait_head = c->job->next;
		if (be->wait_head == NULL)
			be->wait_tail = NULL;
		c->job->next = NULL;
	}
	if (c->job == NULL) {
		conn_set_state(c, QC_IDLE);
		return;
	}
	job_begin(ctx, c);
	/* The first command goes now: writability is asked for only if the socket is full. */
	if (c->state != QC_DEAD && conn_flush(c) == 0)
		conn_update_io(c);
}

static int
conn_tls_start(struct queue_conn *c)
{
	char err[TLS_ERR_MAX];

	if (c->be->ctx->tls_client == NULL) {
		conn_close(c, "no TLS client context");
		return -1;
	}
	linebuf_clear(&c->in); /* nothing sent before TLS may be read as if after it */
	c->ssl = tls_client_new(c->be->ctx->tls_client, c->fd, c->be->host, err, sizeof(err));
	if (c->ssl == NULL) {
		conn_close(c, err);
		return -1;
	}
	conn_set_state(c, QC_TLS_HANDSHAKE);
	return 0;
}

static void
conn_handshake(struct queue_conn *c)
{
	char err[TLS_ERR_MAX];
	int r = tls_handshake(c->ssl, err, sizeof(err));

	c->want_write = 0;
	if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
		c->want_write = r == TLS_WANT_WRITE;
		conn_update_io(c);
		return;
	}
	if (r != 0) {
		conn_close(c, err);
		return;
	}
	log_debug("backend %s (%s): %s %s", c->be->name, c->addr, tls_version_name(c->ssl),
	          tls_cipher_name(c->ssl));
	if (c->be->tls == MAP_TLS_IMPLICIT) {
		conn_set_state(c, QC_GREETING);
	} else if (conn_send(c, "%s %s", c->be->proto == MAP_PROTO_LMTP ? "LHLO" : "EHLO",
	                     c->be->ctx->hostname) == 0) {
		conn_set_state(c, QC_HELO_TLS);
	}
	if (c->state != QC_DEAD)
		conn_update_io(c);
}

/* A whole reply arrived in the current state. */
static void
conn_on_reply(struct queue_ctx *ctx, struct queue_conn *c)
{
	const struct queue_reply *r = &c->reply;
	struct queue_job *job = c->job;
	int cls = queue_reply_class(r);
	char why[QUEUE_REPLY_TEXT_MAX + 32];
	size_t i;

	switch (c->state) {
	case QC_GREETING:
		if (cls != 2)
			break;
		if (conn_send(c, "%s %s", c->be->proto == MAP_PROTO_LMTP ? "LHLO" : "EHLO",
		              ctx->hostname) == 0)
			conn_set_state(c, QC_HELO);
		return;
	case QC_HELO:
	case QC_HELO_TLS:
		if (cls != 2)
			break;
		c->ext = r->ext;
		if (c->state == QC_HELO && c->be->tls == MAP_TLS_ON) {
			if (!(c->ext & QUEUE_EXT_STARTTLS)) {
				conn_close(c, "STARTTLS required by the map, not offered");
				return;
			}
			if (conn_send(c, "STARTTLS") == 0)
				conn_set_state(c, QC_STARTTLS);
			return;
		}
		conn_ready(ctx, c);
		return;
	case QC_STARTTLS:
		if (r->code != 220)
			break;
		conn_tls_start(c);
		return;
	case QC_RSET:
		if (cls != 2)
			break;
		conn_send_mail(c);
		return;
	case QC_MAIL:
		if (cls == 2) {
			conn_send_rcpt(c);
			return;
		}
		for (i = 0; i < job->n; i++)
			job_decide(job, i, r);
		job_finish(ctx, c, 1);
		return;
	case QC_RCPT:
		if (cls == 2) {
			job->accepted[c->rcpt_pos] = 1;
			c->naccepted++;
		} else {
			job_decide(job, c->rcpt_pos, r);
		}
		if (++c->rcpt_pos < job->n) {
			conn_send_rcpt(c);
		} else if (c->naccepted == 0) {
			job_finish(ctx, c, 1);
		} else if (conn_send(c, "DATA") == 0) {
			conn_set_state(c, QC_DATA);
		}
		return;
	case QC_DATA:
		if (r->code == 354) {
			conn_set_state(c, QC_BODY);
			conn_body_fill(c);
			return;
		}
		for (i = 0; i < job->n; i++)
			if (job->accepted[i])
				job_decide(job, i, r);
		job_finish(ctx, c, 1);
		return;
	case QC_DOT:
		if (c->be->proto == MAP_PROTO_LMTP) {
			/* RFC 2033 4.2: one reply per accepted RCPT, in RCPT order. */
			for (i = 0; i < job->n; i++)
				if (job->accepted[i] && job->reply[i][0] == '\0')
					break;
			if (i < job->n)
				job_decide(job, i, r);
			if (++c->dot_pos < c->naccepted)
				return;
		} else {
			for (i = 0; i < job->n; i++)
				if (job->accepted[i])
					job_decide(job, i, r);
		}
		job_finish(ctx, c, 0);
		return;
	case QC_IDLE:
	case QC_QUIT:
		conn_close(c, NULL); /* 421 on an idle connection, or QUIT's answer */
		return;
	default:
		break;
	}
	(void)str_format(why, sizeof(why), "unexpected reply: %s", r->text);
	conn_close(c, why);
}

static void
conn_read(struct queue_ctx *ctx, struct queue_conn *c)
{
	char buf[4096], err[TLS_ERR_MAX];
	struct linebuf_line l;
	enum linebuf_result lr;
	enum queue_reply_status st;
	ssize_t n;
	size_t want = 0;
	SSL *ssl;

	for (;;) {
		ssl = c->ssl;
		if (ssl != NULL) {
			n = tls_read(ssl, buf, sizeof(buf), err, sizeof(err));
			if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
				c->want_write = c->want_write || n == TLS_WANT_WRITE;
				return;
			}
			if (n < 0) {
				conn_close(c, err);
				return;
			}
			if (n > 0 && linebuf_append(&c->in, buf, (size_t)n) < (size_t)n) {
				conn_close(c, "reply buffer full");
				return;
			}
		} else {
			want = linebuf_space(&c->in) < sizeof(buf) ? linebuf_space(&c->in)
			                                           : sizeof(buf);
			n = linebuf_read(&c->in, c->fd, sizeof(buf));
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			if (n < 0) {
				(void)str_format(err, sizeof(err), "read: %s", strerror(errno));
				conn_close(c, err);
				return;
			}
		}
		if (n == 0) {
			conn_close(c, c->state == QC_IDLE || c->state == QC_QUIT
			                  ? NULL
			                  : "connection closed by the back end");
			return;
		}
		while ((lr = linebuf_next_line(&c->in, &l)) != LINEBUF_NEED_MORE) {
			if (lr == LINEBUF_TOO_LONG) {
				conn_close(c, "reply line too long");
				return;
			}
			st = queue_reply_feed(&c->reply, l.data, l.len);
			if (st == QUEUE_REPLY_MORE)
				continue;
			if (st == QUEUE_REPLY_BAD) {
				conn_close(c, c->reply.error);
				return;
			}
			conn_on_reply(ctx, c);
			queue_reply_init(&c->reply);
			if (c->state == QC_DEAD)
				return;
			/* STARTTLS: the next bytes are TLS; stop reading lines in plain text. */
			if (c->state == QC_TLS_HANDSHAKE) {
				conn_handshake(c);
				return;
			}
			if (c->state == QC_BODY && conn_flush(c) == -1)
				return;
		}
		/* A short plain read emptied the socket: no read just for its EAGAIN. */
		if (ssl == NULL && n > 0 && (size_t)n < want)
			return;
	}
}

static void
conn_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct queue_conn *c = arg;
	struct queue_ctx *ctx = c->be->ctx;
	char err[128];

	(void)loop;
	(void)fd;
	if (c->state == QC_DEAD)
		return;
	if (c->state == QC_CONNECTING) {
		if (!(events & EV_WRITE))
			return;
		if (sock_connect_result(c->fd) == -1) {
			(void)str_format(err, sizeof(err), "connect: %s", strerror(errno));
			log_info("backend %s (%s): %s", c->be->name, c->addr, err);
			if (conn_connect_next(c) == 0)
				return;
			conn_close(c, err);
			return;
		}
		if (c->be->tls == MAP_TLS_IMPLICIT) {
			if (conn_tls_start(c) == 0)
				conn_handshake(c);
			return;
		}
		conn_set_state(c, QC_GREETING);
		conn_update_io(c);
		return;
	}
	if (c->state == QC_TLS_HANDSHAKE) {
		conn_handshake(c);
		return;
	}
	if (conn_flush(c) == -1)
		return;
	while (c->state == QC_BODY && c->out_off == c->out_len) {
		if (conn_body_fill(c) == -1 || conn_flush(c) == -1)
			return;
		if (c->out_off < c->out_len)
			break;
	}
	conn_read(ctx, c);
	if (c->state != QC_DEAD && c->state != QC_TLS_HANDSHAKE) {
		if (c->state == QC_BODY && c->out_off == c->out_len && conn_body_fill(c) == -1)
			return;
		if (conn_flush(c) == -1)
			return;
		conn_update_io(c);
	}
}

static void
conn_timeout(struct ev_loop *loop, void *arg)
{
	struct queue_conn *c = arg;
	char why[64];

	(void)loop;
	if (c->state == QC_IDLE) {
		/* Closing politely: the back end should not log a lost connection. */
		if (conn_send(c, "QUIT") == 0) {
			c->state = QC_QUIT;
			conn_wait(c, 5000);
			if (conn_flush(c) == 0)
				conn_update_io(c);
		}
		return;
	}
	if (c->state == QC_QUIT) {
		conn_close(c, NULL);
		return;
	}
	(void)str_format(why, sizeof(why), "timeout in %s", conn_state_names[c->state]);
	conn_close(c, why);
}

/* "host:port" with brackets for IPv6 literals. */
static int
backend_addr(const struct queue_backend *be, char *buf, size_t len)
{
	if (strchr(be->host, ':') != NULL)
		return str_format(buf, len, "[%s]:%u", be->host, be->port);
	return str_format(buf, len, "%s:%u", be->host, be->port);
}

/* A lookup is back: the jobs of every back end with that host name go on. */
static void
queue_resolved(void *arg, const char *host)
{
	struct queue_ctx *ctx = arg;
	struct queue_backend *be;

	for (be = ctx->backends; be != NULL; be = be->next) {
		if (!be->resolving || strcasecmp(be->host, host) != 0)
			continue;
		be->resolving = 0;
		backend_dispatch(ctx, be);
	}
}

/*
 * Starts c's connect to the host's address number `first` or a later one (an IP literal is
 * its own one address). 0 when a connect is under way, -1 with err when none could start.
 */
static int
conn_connect(struct queue_conn *c, unsigned first, char *err, size_t errlen)
{
	struct queue_backend *be = c->be;
	const struct resolve_addrs *a = resolver_cached(be->ctx->resolver, be->host);
	struct sockaddr_storage ss;
	socklen_t sslen;
	unsigned i;

	err_set(err, errlen, "%s: no address", be->host);
	for (i = first; a != NULL && i < a->n; i++) {
		sslen = resolve_addr_port(a, i, be->port, &ss);
		if (sock_addr_format((const struct sockaddr *)&ss, c->addr, sizeof(c->addr)) == -1)
			str_copy(c->addr, sizeof(c->addr), be->host);
		if ((c->fd = sock_connect_start(&ss, sslen, err, errlen)) != -1) {
			c->addr_try = i;
			c->io_events = 0;
			return 0;
		}
	}
	return -1;
}

/*
 * A connect that failed goes on to the host's next address (a name with an IPv6 and an
 * IPv4 address where only one answers). 0: the next connect is under way.
 */
static int
conn_connect_next(struct queue_conn *c)
{
	char err[256];

	ev_io_del(c->be->ctx->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	if (conn_connect(c, c->addr_try + 1, err, sizeof(err)) == -1)
		return -1;
	conn_update_io(c);
	return 0;
}

/* A new connection that takes job once it is ready (once the host name is resolved). */
static void
conn_open(struct queue_ctx *ctx, struct queue_backend *be, struct queue_job *job)
{
	const struct resolve_addrs *addrs;
	struct queue_conn *c;
	char err[256], reply[QUEUE_REPLY_TEXT_MAX];

	if (ctx->resolver == NULL &&
	    (ctx->resolver = resolver_new(ctx->loop, QUEUE_DNS_TTL_MS, QUEUE_DNS_NEG_TTL_MS,
	                                  queue_resolved, ctx, err, sizeof(err))) == NULL) {
		(void)str_format(reply, sizeof(reply), "451 4.3.0 %s: resolver: %s", be->name, err);
		job_defer_rest(job, reply);
		queue_job_done(ctx, job);
		return;
	}
	switch (resolver_lookup(ctx->resolver, be->host, &addrs, err, sizeof(err))) {
	case RESOLVE_PENDING: /* back at the head of the line until queue_resolved */
		job->next = be->wait_head;
		be->wait_head = job;
		if (be->wait_tail == NULL)
			be->wait_tail = job;
		be->resolving = 1;
		return;
	case RESOLVE_FAILED:
		log_warnx("backend %s: %s", be->name, err);
		(void)str_format(reply, sizeof(reply), "451 4.4.3 %s: cannot resolve: %s", be->name,
		                 err);
		job_defer_rest(job, reply);
		queue_job_done(ctx, job);
		return;
	case RESOLVE_OK:
		break;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		job_defer_rest(job, "451 4.3.0 out of memory");
		queue_job_done(ctx, job);
		return;
	}
	c->be = be;
	c->fd = -1;
	c->job = job;
	ev_timer_init(&c->timer);
	linebuf_init(&c->in, 512, CONN_LINE_MAX);
	queue_reply_init(&c->reply);
	c->next = be->conns;
	be->conns = c;
	be->nconns++;
	c->state = QC_CONNECTING;
	if (conn_connect(c, 0, err, sizeof(err)) == -1) {
		if (c->addr[0] == '\0' && backend_addr(be, c->addr, sizeof(c->addr)) == -1)
			str_copy(c->addr, sizeof(c->addr), be->host);
		(void)str_format(reply, sizeof(reply), "cannot connect: %s", err);
		conn_close(c, reply);
		return;
	}
	conn_wait(c, ctx->conf->smtpd.delivery_timeout_ms);
	conn_update_io(c);
}

/* Hands waiting jobs to idle connections, then to new ones up to the limit. */
static void
backend_dispatch(struct queue_ctx *ctx, struct queue_backend *be)
{
	struct queue_conn *c;
	struct queue_job *job;
	uint64_t limit = ctx->conf->smtpd.backend_concurrency > 0
	                     ? (uint64_t)ctx->conf->smtpd.backend_concurrency
	                     : 1;

	while (be->wait_head != NULL && !be->resolving) {
		for (c = be->conns; c != NULL; c = c->next)
			if (c->state == QC_IDLE && c->job == NULL)
				break;
		if (c != NULL) {
			conn_ready(ctx, c);
			continue;
		}
		if (be->nconns >= limit)
			return;
		job = be->wait_head;
		be->wait_head = job->next;
		if (be->wait_head == NULL)
			be->wait_tail = NULL;
		job->next = NULL;
		conn_open(ctx, be, job);
	}
}

void
queue_backend_submit(struct queue_ctx *ctx, struct queue_job *job)
{
	struct queue_backend *be = job->be;

	job->next = NULL;
	if (be->wait_tail != NULL)
		be->wait_tail->next = job;
	else
		be->wait_head = job;
	be->wait_tail = job;
	backend_dispatch(ctx, be);
}

void
queue_backend_close_all(struct queue_ctx *ctx)
{
	struct queue_backend *be;
	struct queue_job *job;

	for (be = ctx->backends; be != NULL; be = be->next) {
		/* Waiting jobs first: closing a connection would hand them a new one. */
		while ((job = be->wait_head) != NULL) {
			be->wait_head = job->next;
			job->next = NULL;
			job_defer_rest(job, "451 4.3.2 queue runner stopping");
			queue_job_done(ctx, job);
		}
		be->wait_tail = NULL;
		while (be->conns != NULL)
			conn_close(be->conns,
			           be->conns->job != NULL ? "queue runner stopping" : NULL);
	}
}

/* Frees the connections closed during this loop iteration (before_sleep hook). */
void queue_conn_reap(struct queue_ctx *ctx);

void
queue_conn_reap(struct queue_ctx *ctx)
{
	struct queue_conn *c;

	while ((c = ctx->dead) != NULL) {
		ctx->dead = c->next;
		free(c);
	}
}
