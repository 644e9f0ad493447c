/*
 * mailplex-proxy's byte moving: queued output toward one side, reads and writes over plain
 * sockets or TLS, and the transparent copy after login (splice() through a pipe when both
 * sides are plain, a bounded buffer per direction otherwise). It never parses what it
 * copies, never blocks, and never reads a side while the other side's queue is full.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "tls.h"

static void pipe_release(struct proxy_conn *c);

/*
 * STYLE.md: an idle session holds no page-sized buffer. OpenSSL otherwise keeps a read and
 * a write buffer of about 17 kB each for the life of the connection; released, they come
 * back from malloc for the next record.
 */
void
proxy_conn_tls_lean(SSL *ssl)
{
	SSL_set_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
}

void
proxy_conn_init(struct proxy_conn *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->pipefd[0] = c->pipefd[1] = -1;
}

void
proxy_conn_close(struct proxy_ctx *ctx, struct proxy_conn *c)
{
	if (c->ssl != NULL) {
		tls_close_notify(c->ssl);
		tls_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd != -1) {
		/* A session's sockets are this worker's alone: close() leaves the epoll set. */
		(void)ev_io_close(ctx->loop, c->fd);
		c->fd = -1;
	}
	pipe_release(c);
	c->events = 0;
	c->ready = 0;
	c->eof = 0;
	c->rd_want = c->wr_want = 0;
	proxy_obuf_free(&c->out);
}

void
proxy_obuf_free(struct proxy_obuf *b)
{
	if (b->data != NULL) {
		/* Login commands carry passwords. */
		explicit_bzero(b->data, b->cap);
		free(b->data);
	}
	memset(b, 0, sizeof(*b));
}

int
proxy_obuf_add(struct proxy_obuf *b, const void *data, size_t len)
{
	size_t need, cap;
	char *n;

	if (b->off > 0 && b->off == b->len)
		b->off = b->len = 0;
	need = b->len + len;
	if (need > b->cap) {
		if (b->off > 0) {
			memmove(b->data, b->data + b->off, b->len - b->off);
			b->len -= b->off;
			b->off = 0;
			need = b->len + len;
		}
		if (need > b->cap) {
			cap = b->cap ? b->cap : 512;
			while (cap < need)
				cap *= 2;
			if ((n = malloc(cap)) == NULL)
				return -1;
			if (b->data != NULL) {
				memcpy(n, b->data, b->len);
				explicit_bzero(b->data, b->cap);
				free(b->data);
			}
			b->data = n;
			b->cap = cap;
		}
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

int
proxy_obuf_vprintf(struct proxy_obuf *b, const char *fmt, va_list ap)
{
	char buf[1024];
	int n;

	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return -1;
	return proxy_obuf_add(b, buf, (size_t)n);
}

int
proxy_obuf_printf(struct proxy_obuf *b, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = proxy_obuf_vprintf(b, fmt, ap);
	va_end(ap);
	return r;
}

static size_t
obuf_pending(const struct proxy_obuf *b)
{
	return b->len - b->off;
}

int
proxy_conn_flush(struct proxy_conn *c)
{
	char err[TLS_ERR_MAX];
	ssize_t n;
	int progress = 0;

	c->wr_want = 0;
	while (obuf_pending(&c->out) > 0) {
		if (c->ssl != NULL) {
			n = tls_write(c->ssl, c->out.data + c->out.off, obuf_pending(&c->out), err,
			              sizeof(err));
			if (n == TLS_WANT_READ) {
				c->wr_want = EV_READ;
				return progress;
			}
			if (n == TLS_WANT_WRITE)
				return progress;
			if (n < 0) {
				log_debug("tls write: %s", err);
				return -1;
			}
		} else {
			n = write(c->fd, c->out.data + c->out.off, obuf_pending(&c->out));
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					return progress;
				return -1;
			}
		}
		c->out.off += (size_t)n;
		c->bytes += (uint64_t)n;
		progress = 1;
	}
	/* Idle sessions hold no buffer (STYLE.md: memory per idle session). */
	proxy_obuf_free(&c->out);
	return progress;
}

ssize_t
proxy_conn_read(struct proxy_conn *c, void *buf, size_t len)
{
	char err[TLS_ERR_MAX];
	ssize_t n;

	c->rd_want = 0;
	if (c->ssl != NULL) {
		n = tls_read(c->ssl, buf, len, err, sizeof(err));
		if (n == TLS_WANT_READ)
			return -2;
		if (n == TLS_WANT_WRITE) {
			c->rd_want = EV_WRITE;
			return -2;
		}
		if (n == TLS_ERROR) {
			log_debug("tls read: %s", err);
			return -1;
		}
		return n;
	}
	if (!(c->ready & EV_READ))
		return -2; /* no EAGAIN probe: epoll reports it (level-triggered) */
	for (;;) {
		n = read(c->fd, buf, len);
		if (n > 0 && (size_t)n < len)
			c->ready &= ~EV_READ; /* drained, most likely */
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			c->ready &= ~EV_READ;
			return -2;
		}
		return -1;
	}
}

int
proxy_conn_handshake(struct proxy_conn *c, char *err, size_t errlen)
{
	int r = tls_handshake(c->ssl, err, errlen);

	c->rd_want = c->wr_want = 0;
	if (r == 0)
		return 0;
	if (r == TLS_WANT_READ) {
		c->wr_want = EV_READ;
		return 1;
	}
	if (r == TLS_WANT_WRITE) {
		c->rd_want = EV_WRITE;
		return 1;
	}
	return -1;
}

/*
 * Plain to plain. Small exchanges (the commands and answers of an IMAP or POP3 session) go
 * through the worker's scratch buffer with read() and write(): what is written out at once
 * needs no buffer of the session's own, only the rest of a partial write is queued. A read
 * that fills the scratch buffer is a bulk transfer: it continues through a kernel pipe made
 * then, with splice(), and the bytes never enter user space. The pipe is closed again once
 * it has been empty for PROXY_PIPE_IDLE_MS, so that an idle session holds two descriptors.
 *
 * Readiness is tracked per side (ready): a side is read or written only while epoll said it
 * may be and no EAGAIN or short transfer said otherwise since, so neither a login nor a bulk
 * copy pays for probes that return EAGAIN. The loop is level-triggered: a side that was
 * given up on too early is reported again.
 *
 * Order is kept by never holding bytes in both the queue (out) and the pipe toward a side:
 * the pipe is filled only while the queue is empty, the queue only while the pipe is empty.
 */
static char *
scratch_get(struct proxy_ctx *ctx)
{
	if (ctx->scratch == NULL)
		ctx->scratch = malloc(PROXY_SCRATCH_BYTES);
	return ctx->scratch;
}

static void
pipe_release(struct proxy_conn *c)
{
	if (c->pipefd[0] != -1) {
		close(c->pipefd[0]);
		close(c->pipefd[1]);
	}
	c->pipefd[0] = c->pipefd[1] = -1;
	c->inpipe = 0;
	c->pipecap = 0;
	c->pipe_full = 0;
}

/* 0, or -1 when no pipe could be made (the copy then stays in user space). */
static int
pipe_open(struct proxy_conn *c, uint64_t now)
{
	int sz;

	if (pipe2(c->pipefd, O_NONBLOCK | O_CLOEXEC) == -1) {
		c->pipefd[0] = c->pipefd[1] = -1;
		return -1;
	}
	/*
	 * Refused past /proc/sys/fs/pipe-max-size or the user's pipe-user-pages-soft (the
	 * kernel then hands out pipes of two pages): whatever it gave still works.
	 */
	if ((sz = fcntl(c->pipefd[1], F_SETPIPE_SZ, PROXY_PIPE_BYTES)) <= 0)
		sz = fcntl(c->pipefd[1], F_GETPIPE_SZ);
	c->pipecap = sz > 0 ? (size_t)sz : PROXY_SPLICE_BYTES;
	c->inpipe = 0;
	c->pipe_full = 0;
	c->pipe_ms = now;
	return 0;
}

/* Writes the queue toward to: 1 progress, 0 none, -1 error. Clears to's write readiness. */
static int
plain_flush(struct proxy_conn *to)
{
	int r;

	if ((r = proxy_conn_flush(to)) == -1)
		return -1;
	if (obuf_pending(&to->out) > 0)
		to->ready &= ~EV_WRITE;
	return r;
}

/* Pipe toward socket: 1 progress, 0 none, -1 error. */
static int
plain_splice_out(struct proxy_conn *to)
{
	ssize_t n;

	do
		n = splice(to->pipefd[0], NULL, to->fd, NULL, to->inpipe,
		           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	while (n == -1 && errno == EINTR);
	if (n == -1 && errno == EAGAIN) {
		to->ready &= ~EV_WRITE;
		return 0;
	}
	if (n <= 0)
		return -1;
	if ((size_t)n < to->inpipe)
		to->ready &= ~EV_WRITE; /* the socket buffer is full */
	to->inpipe -= (size_t)n;
	to->bytes += (uint64_t)n;
	to->pipe_full = 0;
	return 1;
}

/* Socket into the pipe toward to: 1 progress, 0 none, -1 error (reason set). */
static int
plain_splice_in(struct proxy_conn *from, struct proxy_conn *to, uint64_t now,
                const char **reason)
{
	size_t room = to->pipecap > to->inpipe ? to->pipecap - to->inpipe : 0;
	ssize_t n;

	if (room == 0) {
		to->pipe_full = 1;
		return 0;
	}
	do
		n = splice(from->fd, NULL, to->pipefd[1], NULL, room,
		           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
	while (n == -1 && errno == EINTR);
	if (n == -1 && errno == EAGAIN) {
		/*
		 * Into an empty pipe EAGAIN can only mean "nothing to read". Into a pipe that
		 * holds bytes it may also mean "no free slot" (a pipe counts buffers, not bytes):
		 * the socket is not read again before the pipe drained some, or a readable socket
		 * would spin the level-triggered loop.
		 */
		if (to->inpipe > 0)
			to->pipe_full = 1;
		from->ready &= ~EV_READ;
		return 0;
	}
	if (n == -1) {
		*reason = "read error";
		return -1;
	}
	if (n == 0) {
		from->eof = 1;
		return 1;
	}
	/*
	 * Short of the room: the socket is drained, most likely (as with read()). Otherwise a
	 * splice per wake-up would only come back with EAGAIN; if bytes did remain (the pipe
	 * ran out of slots), the level-triggered loop reports the socket again.
	 */
	if ((size_t)n < room)
		from->ready &= ~EV_READ;
	to->inpipe += (size_t)n;
	to->pipe_ms = now;
	return 1;
}

/* Socket through the scratch buffer: 1 progress, 0 none, -1 error (reason set). */
static int
plain_copy(struct proxy_ctx *ctx, struct proxy_conn *from, struct proxy_conn *to,
           const char **reason)
{
	char *buf = scratch_get(ctx);
	ssize_t n, w = 0;

	if (buf == NULL) {
		*reason = "out of memory";
		return -1;
	}
	do
		n = read(from->fd, buf, PROXY_SCRATCH_BYTES);
	while (n == -1 && errno == EINTR);
	if (n == -1 && errno == EAGAIN) {
		from->ready &= ~EV_READ;
		return 0;
	}
	if (n == -1) {
		*reason = "read error";
		return -1;
	}
	if (n == 0) {
		from->eof = 1;
		return 1;
	}
	if ((size_t)n < PROXY_SCRATCH_BYTES)
		from->ready &= ~EV_READ; /* drained, most likely: epoll says when it is not */
	else if (to->pipefd[0] == -1)
		(void)pipe_open(to, ev_now_ms(ctx->loop)); /* a bulk transfer begins */
	if (to->ready & EV_WRITE) {
		do
			w = write(to->fd, buf, (size_t)n);
		while (w == -1 && errno == EINTR);
		if (w == -1 && errno != EAGAIN) {
			*reason = "write error";
			return -1;
		}
		if (w == -1)
			w = 0;
		to->bytes += (uint64_t)w;
	}
	if (w < n) {
		to->ready &= ~EV_WRITE;
		if (proxy_obuf_add(&to->out, buf + w, (size_t)(n - w)) == -1) {
			*reason = "out of memory";
			return -1;
		}
	}
	return 1;
}

static int
pipe_plain(struct proxy_ctx *ctx, struct proxy_conn *from, struct proxy_conn *to,
           const char **reason)
{
	uint64_t now = ev_now_ms(ctx->loop);
	int progress = 0, moved, r;

	do {
		moved = 0;
		if (obuf_pending(&to->out) > 0) {
			if ((to->ready & EV_WRITE) && (r = plain_flush(to)) != 0) {
				if (r == -1) {
					*reason = "write error";
					return -1;
				}
				moved = 1;
			}
		} else if (to->inpipe > 0 && (to->ready & EV_WRITE)) {
			if ((r = plain_splice_out(to)) == -1) {
				*reason = "write error";
				return -1;
			}
			moved |= r;
		}
		if (from->eof || !(from->ready & EV_READ) || obuf_pending(&to->out) > 0 ||
		    to->pipe_full) {
			progress |= moved;
			continue;
		}
		if (to->pipefd[0] != -1 && to->inpipe == 0 && now - to->pipe_ms > PROXY_PIPE_IDLE_MS)
			pipe_release(to); /* the bulk transfer is over */
		if (to->pipefd[0] != -1)
			r = plain_splice_in(from, to, now, reason);
		else
			r = plain_copy(ctx, from, to, reason);
		if (r == -1)
			return -1;
		moved |= r;
		progress |= moved;
	} while (moved);
	return progress;
}

/* Through user space: TLS on either side, or bytes queued during the login. */
static int
pipe_copy(struct proxy_conn *from, struct proxy_conn *to, const char **reason)
{
	char buf[PROXY_PIPE_BUF_BYTES];
	size_t room;
	ssize_t n;
	int progress = 0, r;

	for (;;) {
		if ((r = proxy_conn_flush(to)) == -1) {
			*reason = "write error";
			return -1;
		}
		progress |= r;
		if (from->eof)
			return progress;
		room = PROXY_PIPE_BUF_BYTES - (to->out.len - to->out.off);
		if (to->out.len - to->out.off >= PROXY_PIPE_BUF_BYTES / 2)
			return progress; /* back-pressure: the other side is slow */
		n = proxy_conn_read(from, buf, room);
		if (n == -2)
			return progress;
		if (n == -1) {
			*reason = "read error";
			return -1;
		}
		if (n == 0) {
			from->eof = 1;
			return 1;
		}
		if (proxy_obuf_add(&to->out, buf, (size_t)n) == -1) {
			*reason = "out of memory";
			return -1;
		}
		progress = 1;
	}
}

static int
pipe_dir(struct proxy_ctx *ctx, struct proxy_conn *from, struct proxy_conn *to,
         const char **reason)
{
	/* Both sides are plain or not for the whole copy: STARTTLS is over at login. */
	if (from->ssl == NULL && to->ssl == NULL)
		return pipe_plain(ctx, from, to, reason);
	return pipe_copy(from, to, reason);
}

/*
 * Entering the copy: both sides are assumed writable. Bytes already waiting in a socket are
 * reported by the level-triggered loop as soon as EV_READ is registered, so no read probes.
 */
void
proxy_pipe_start(struct proxy_session *s)
{
	s->client.ready = s->be.ready = EV_WRITE;
}

int
proxy_pipe_step(struct proxy_session *s, const char **reason)
{
	int a, b;

	if ((a = pipe_dir(s->ctx, &s->client, &s->be, reason)) == -1)
		return -1;
	if ((b = pipe_dir(s->ctx, &s->be, &s->client, reason)) == -1)
		return -1;
	/* IMAP and POP3 have no half-close: either side leaving ends the session. */
	if (s->client.eof) {
		*reason = "client closed";
		return -1;
	}
	if (s->be.eof && obuf_pending(&s->client.out) == 0 && s->client.inpipe == 0) {
		*reason = "back end closed";
		return -1;
	}
	return a | b;
}

/* Whether from may be read: the queue or the pipe toward the other side has room. */
static int
pipe_dir_readable(const struct proxy_conn *from, const struct proxy_conn *to)
{
	if (from->eof)
		return 0;
	if (from->ssl == NULL && to->ssl == NULL)
		return obuf_pending(&to->out) == 0 && !to->pipe_full &&
		       (to->pipefd[0] == -1 || to->inpipe < to->pipecap);
	return to->inpipe == 0 && obuf_pending(&to->out) < PROXY_PIPE_BUF_BYTES / 2;
}

void
proxy_pipe_events(struct proxy_session *s, int *cev, int *bev)
{
	int c = 0, b = 0;

	if (pipe_dir_readable(&s->client, &s->be))
		c |= EV_READ;
	if (pipe_dir_readable(&s->be, &s->client))
		b |= EV_READ;
	if (obuf_pending(&s->client.out) > 0 || s->client.inpipe > 0)
		c |= EV_WRITE;
	if (obuf_pending(&s->be.out) > 0 || s->be.inpipe > 0)
		b |= EV_WRITE;
	*cev = c | s->client.rd_want | s->client.wr_want;
	*bev = b | s->be.rd_want | s->be.wr_want;
}
