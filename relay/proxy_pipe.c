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
		ev_io_del(ctx->loop, c->fd);
		close(c->fd);
		c->fd = -1;
	}
	if (c->pipefd[0] != -1) {
		close(c->pipefd[0]);
		close(c->pipefd[1]);
		c->pipefd[0] = c->pipefd[1] = -1;
	}
	c->events = 0;
	c->inpipe = 0;
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
	for (;;) {
		n = read(c->fd, buf, len);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return -2;
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

/* Plain to plain through a kernel pipe: the bytes never enter user space. */
static int
pipe_splice(struct proxy_conn *from, struct proxy_conn *to, const char **reason)
{
	ssize_t n;
	int progress = 0;

	if (to->pipefd[0] == -1 && pipe2(to->pipefd, O_NONBLOCK | O_CLOEXEC) == -1) {
		*reason = "pipe2 failed";
		return -1;
	}
	for (;;) {
		if (to->inpipe > 0) {
			n = splice(to->pipefd[0], NULL, to->fd, NULL, to->inpipe,
			           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && errno == EAGAIN)
				return progress;
			if (n <= 0) {
				*reason = "write error";
				return -1;
			}
			to->inpipe -= (size_t)n;
			to->bytes += (uint64_t)n;
			progress = 1;
			continue;
		}
		if (from->eof)
			return progress;
		/*
		 * Only an empty pipe is filled: EAGAIN then means "nothing to read", never "pipe
		 * full", so a level-triggered readable socket cannot spin.
		 */
		n = splice(from->fd, NULL, to->pipefd[1], NULL, PROXY_SPLICE_BYTES,
		           SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return progress;
		if (n == -1) {
			*reason = "read error";
			return -1;
		}
		if (n == 0) {
			from->eof = 1;
			return 1;
		}
		to->inpipe = (size_t)n;
		progress = 1;
	}
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
pipe_dir(struct proxy_conn *from, struct proxy_conn *to, const char **reason)
{
	if (from->ssl == NULL && to->ssl == NULL && obuf_pending(&to->out) == 0)
		return pipe_splice(from, to, reason);
	if (to->inpipe > 0) /* never happens: splice only runs while both are plain */
		return pipe_splice(from, to, reason);
	return pipe_copy(from, to, reason);
}

int
proxy_pipe_step(struct proxy_session *s, const char **reason)
{
	int a, b;

	if ((a = pipe_dir(&s->client, &s->be, reason)) == -1)
		return -1;
	if ((b = pipe_dir(&s->be, &s->client, reason)) == -1)
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

void
proxy_pipe_events(struct proxy_session *s, int *cev, int *bev)
{
	int c = 0, b = 0;

	/* Read a side when the queue toward the other has room. */
	if (!s->client.eof && s->be.inpipe == 0 &&
	    obuf_pending(&s->be.out) < PROXY_PIPE_BUF_BYTES / 2)
		c |= EV_READ;
	if (!s->be.eof && s->client.inpipe == 0 &&
	    obuf_pending(&s->client.out) < PROXY_PIPE_BUF_BYTES / 2)
		b |= EV_READ;
	if (obuf_pending(&s->client.out) > 0 || s->client.inpipe > 0)
		c |= EV_WRITE;
	if (obuf_pending(&s->be.out) > 0 || s->be.inpipe > 0)
		b |= EV_WRITE;
	*cev = c | s->client.rd_want | s->client.wr_want;
	*bev = b | s->be.rd_want | s->be.wr_want;
}
