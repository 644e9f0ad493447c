/*
 * Control socket: request-line parsing, reply building, the non-blocking server on the
 * event loop and the bounded blocking client. The server reads one line, runs the
 * handler, writes the reply and closes; a client that stalls is dropped at its timeout.
 * Nothing a client sends can make this code exit or grow beyond its bounds.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "linebuf.h"
#include "log.h"
#include "sock.h"
#include "util.h"

int
control_request_parse(struct control_request *req, const char *line, size_t len, char *err,
                      size_t errlen)
{
	char *p;

	memset(req, 0, sizeof(*req));
	if (len > 0 && line[len - 1] == '\r')
		len--;
	if (len >= sizeof(req->buf)) {
		(void)str_copy(err, errlen, "request too long");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c != '\t' && (c < 0x20 || c > 0x7e)) {
			(void)str_format(err, errlen, "bad byte 0x%02x in request", c);
			return -1;
		}
	}
	memcpy(req->buf, line, len);
	req->buf[len] = '\0';
	p = req->buf;
	for (;;) {
		while (*p == ' ' || *p == '\t')
			*p++ = '\0';
		if (*p == '\0')
			break;
		if (req->argc == CONTROL_ARGS_MAX) {
			(void)str_format(err, errlen, "too many words (at most %d)",
			                 CONTROL_ARGS_MAX);
			memset(req, 0, sizeof(*req));
			return -1;
		}
		req->argv[req->argc++] = p;
		while (*p != '\0' && *p != ' ' && *p != '\t')
			p++;
	}
	if (req->argc == 0) {
		(void)str_copy(err, errlen, "empty request");
		return -1;
	}
	return 0;
}

/* ---- replies ---- */

static void __attribute__((format(printf, 2, 0)))
control_reply_vappend(struct control_reply *r, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	if (r->truncated)
		return;
	for (;;) {
		size_t room = r->cap - r->len;

		va_copy(cp, ap);
		n = vsnprintf(r->text != NULL ? r->text + r->len : NULL, room, fmt, cp);
		va_end(cp);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			r->len += (size_t)n;
			return;
		}
		if (r->len + (size_t)n + 1 > CONTROL_REPLY_MAX_BYTES) {
			r->truncated = 1;
			if (r->text != NULL)
				r->text[r->len] = '\0';
			return;
		}
		{
			size_t cap = r->cap == 0 ? 4096 : r->cap;
			char *t;

			while (cap < r->len + (size_t)n + 1)
				cap *= 2;
			if (cap > CONTROL_REPLY_MAX_BYTES)
				cap = CONTROL_REPLY_MAX_BYTES;
			if ((t = realloc(r->text, cap)) == NULL) {
				r->truncated = 1;
				return;
			}
			r->text = t;
			r->cap = cap;
		}
	}
}

void
control_reply_printf(struct control_reply *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	control_reply_vappend(r, fmt, ap);
	va_end(ap);
}

void
control_reply_error(struct control_reply *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	/* One line: the client reads the message up to its line end. */
	for (char *p = r->error; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	r->failed = 1;
	r->len = 0;
	r->truncated = 0;
}

void
control_reply_free(struct control_reply *r)
{
	free(r->text);
	memset(r, 0, sizeof(*r));
}

int
control_reply_parse(const char *reply, int *ok, const char **message, size_t *messagelen,
                    const char **body)
{
	const char *eol = strchr(reply, '\n');
	size_t first = eol != NULL ? (size_t)(eol - reply) : strlen(reply);

	*body = eol != NULL ? eol + 1 : reply + first;
	*message = reply + first;
	*messagelen = 0;
	if (first == 2 && strncmp(reply, "ok", 2) == 0) {
		*ok = 1;
		return 0;
	}
	if (first >= 7 && strncmp(reply, "error: ", 7) == 0) {
		*ok = 0;
		*message = reply + 7;
		*messagelen = first - 7;
		return 0;
	}
	return -1;
}

/* ---- server ---- */

#define CONTROL_DISCARD_MAX_BYTES (64 * 1024)

struct control_conn {
	struct control_server *srv;
	int fd;
	struct linebuf in;
	char *out;
	size_t outlen;
	size_t outoff;
	struct ev_timer timer;
};

struct control_server {
	struct ev_loop *loop;
	int fd;
	char path[sizeof(((struct sockaddr_un *)NULL)->sun_path)];
	control_handler_fn *handler;
	void *arg;
	uint64_t timeout_ms;
	struct control_conn *conns[CONTROL_CONN_MAX];
};

static void
control_conn_free(struct control_conn *c, const char *why)
{
	struct control_server *srv = c->srv;

	if (why != NULL)
		log_debug("control: client closed: %s", why);
	for (size_t i = 0; i < CONTROL_CONN_MAX; i++)
		if (srv->conns[i] == c)
			srv->conns[i] = NULL;
	ev_timer_stop(srv->loop, &c->timer);
	(void)ev_io_del(srv->loop, c->fd);
	/*
	 * Closing a unix socket with unread input makes the peer's next read fail with
	 * ECONNRESET, which can hide the reply: take what is queued (bounded) first.
	 */
	for (size_t taken = 0; taken < CONTROL_DISCARD_MAX_BYTES;) {
		char sink[512];
		ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);

		if (n <= 0)
			break;
		taken += (size_t)n;
	}
	close(c->fd);
	linebuf_free(&c->in);
	free(c->out);
	free(c);
}

static void
control_conn_timeout(struct ev_loop *loop, void *arg)
{
	control_conn_free(arg, "timeout");
}

static void
control_conn_write(struct control_conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			control_conn_free(c, "write failed");
			return;
		}
		c->outoff += (size_t)n;
	}
	control_conn_free(c, NULL);
}

/* Turns a reply into the bytes on the wire: status line, text, truncation note. */
static int
control_conn_set_reply(struct control_conn *c, const struct control_reply *r)
{
	static const char note[] = "\n(reply truncated)\n";
	char status[CONTROL_ERR_MAX + 16];
	size_t slen, tlen = r->failed ? 0 : r->len;

	if (r->failed)
		(void)str_format(status, sizeof(status), "error: %s\n", r->error);
	else
		(void)str_copy(status, sizeof(status), "ok\n");
	slen = strlen(status);
	if ((c->out = malloc(slen + tlen + sizeof(note))) == NULL)
		return -1;
	memcpy(c->out, status, slen);
	if (tlen > 0)
		memcpy(c->out + slen, r->text, tlen);
	c->outlen = slen + tlen;
	if (!r->failed && r->truncated) {
		memcpy(c->out + c->outlen, note, sizeof(note) - 1);
		c->outlen += sizeof(note) - 1;
	}
	return 0;
}

static void control_conn_io(struct ev_loop *loop, int fd, int events, void *arg);

static void
control_conn_answer(struct control_conn *c, const char *line, size_t len, const char *error)
{
	struct control_request req;
	struct control_reply reply;
	char err[CONTROL_ERR_MAX];

	memset(&reply, 0, sizeof(reply));
	if (error != NULL)
		control_reply_error(&reply, "%s", error);
	else if (control_request_parse(&req, line, len, err, sizeof(err)) == -1)
		control_reply_error(&reply, "%s", err);
	else
		c->srv->handler(&req, &reply, c->srv->arg);
	if (control_conn_set_reply(c, &reply) == -1) {
		control_reply_free(&reply);
		control_conn_free(c, "out of memory");
		return;
	}
	control_reply_free(&reply);
	/* One request per connection: whatever else the client sends is not read. */
	if (ev_io_set(c->srv->loop, c->fd, EV_WRITE, control_conn_io, c) == -1) {
		control_conn_free(c, "watcher");
		return;
	}
	control_conn_write(c);
}

static void
control_conn_read(struct control_conn *c)
{
	struct linebuf_line line;

	for (;;) {
		ssize_t n = linebuf_read(&c->in, c->fd, CONTROL_REQUEST_MAX_BYTES);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n == 0) {
			control_conn_free(c, "closed before a whole request line");
			return;
		}
		if (n == -1 && errno != ENOBUFS) {
			control_conn_free(c, "read failed");
			return;
		}
		switch (linebuf_next_line(&c->in, &line)) {
		case LINEBUF_LINE:
			control_conn_answer(c, line.data, line.len, NULL);
			return;
		case LINEBUF_TOO_LONG:
			control_conn_answer(c, NULL, 0, "request too long");
			return;
		case LINEBUF_NEED_MORE:
			break;
		}
	}
}

static void
control_conn_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct control_conn *c = arg;

	if (c->out != NULL)
		control_conn_write(c);
	else
		control_conn_read(c);
}

static void
control_server_accept(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct control_server *srv = arg;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char err[CONTROL_ERR_MAX];
	struct control_conn *c;
	size_t slot;
	int cfd;

	for (;;) {
		if ((cfd = sock_accept(srv->fd, &peer, &peerlen, err, sizeof(err))) == -1) {
			if (errno != EAGAIN)
				log_warnx("control %s: %s", srv->path, err);
			return;
		}
		for (slot = 0; slot < CONTROL_CONN_MAX && srv->conns[slot] != NULL; slot++)
			;
		if (slot == CONTROL_CONN_MAX) {
			log_warnx("control %s: %d clients already, one refused", srv->path,
			          CONTROL_CONN_MAX);
			close(cfd);
			continue;
		}
		if ((c = calloc(1, sizeof(*c))) == NULL) {
			log_warn("control %s: client", srv->path);
			close(cfd);
			continue;
		}
		c->srv = srv;
		c->fd = cfd;
		linebuf_init(&c->in, 128, CONTROL_REQUEST_MAX_BYTES);
		ev_timer_init(&c->timer);
		srv->conns[slot] = c;
		if (ev_io_set(loop, cfd, EV_READ, control_conn_io, c) == -1 ||
		    ev_timer_start(loop, &c->timer, srv->timeout_ms, control_conn_timeout, c) ==
		        -1) {
			log_warn("control %s: client watcher", srv->path);
			control_conn_free(c, NULL);
		}
	}
}

static int
control_sockaddr(const char *path, struct sockaddr_un *sun, char *err, size_t errlen)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (str_copy(sun->sun_path, sizeof(sun->sun_path), path) == -1 || path[0] == '\0') {
		(void)str_format(err, errlen, "control socket path '%s' is empty or too long",
		                 path);
		return -1;
	}
	return 0;
}

/* A socket file at path: 0 if it is stale (removed), -1 if live or not ours to remove. */
static int
control_remove_stale(const char *path, const struct sockaddr_un *sun, char *err, size_t errlen)
{
	struct stat st;
	int fd, r;

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return 0;
		(void)str_format(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		(void)str_format(err, errlen, "%s exists and is not a socket", path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		(void)str_format(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (r == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		(void)str_format(err, errlen, "%s is in use by a running process", path);
		return -1;
	}
	if (errno != ECONNREFUSED) {
		(void)str_format(err, errlen, "probe %s: %s", path, strerror(errno));
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		(void)str_format(err, errlen, "remove stale %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

struct control_server *
control_server_new(struct ev_loop *loop, const char *path, control_handler_fn *handler, void *arg,
                   char *err, size_t errlen)
{
	struct control_server *srv;
	struct sockaddr_un sun;
	mode_t old;
	int r;

	if (control_sockaddr(path, &sun, err, errlen) == -1)
		return NULL;
	if (control_remove_stale(path, &sun, err, errlen) == -1)
		return NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		(void)str_format(err, errlen, "control: %s", strerror(errno));
		return NULL;
	}
	srv->loop = loop;
	srv->handler = handler;
	srv->arg = arg;
	srv->timeout_ms = CONTROL_IO_TIMEOUT_MS;
	(void)str_copy(srv->path, sizeof(srv->path), path);
	if ((srv->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		(void)str_format(err, errlen, "socket: %s", strerror(errno));
		free(srv);
		return NULL;
	}
	/* The mode is right from the first moment: no window where anyone may connect. */
	old = umask(0777 & ~CONTROL_SOCKET_MODE);
	r = bind(srv->fd, (const struct sockaddr *)&sun, sizeof(sun));
	(void)umask(old);
	if (r == -1) {
		(void)str_format(err, errlen, "bind %s: %s", path, strerror(errno));
		goto fail;
	}
	if (chmod(path, CONTROL_SOCKET_MODE) == -1 || listen(srv->fd, CONTROL_CONN_MAX) == -1) {
		(void)str_format(err, errlen, "listen %s: %s", path, strerror(errno));
		(void)unlink(path);
		goto fail;
	}
	if (ev_io_set(loop, srv->fd, EV_READ, control_server_accept, srv) == -1) {
		(void)str_format(err, errlen, "watch %s: %s", path, strerror(errno));
		(void)unlink(path);
		goto fail;
	}
	return srv;
fail:
	close(srv->fd);
	free(srv);
	return NULL;
}

int
control_server_rename(struct control_server *srv, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;

	if (control_sockaddr(path, &sun, err, errlen) == -1)
		return -1;
	if (rename(srv->path, path) == -1) {
		(void)str_format(err, errlen, "rename %s to %s: %s", srv->path, path,
		                 strerror(errno));
		return -1;
	}
	(void)str_copy(srv->path, sizeof(srv->path), path);
	return 0;
}

void
control_server_set_timeout(struct control_server *srv, uint64_t timeout_ms)
{
	srv->timeout_ms = timeout_ms;
}

void
control_server_free(struct control_server *srv)
{
	if (srv == NULL)
		return;
	for (size_t i = 0; i < CONTROL_CONN_MAX; i++)
		if (srv->conns[i] != NULL)
			control_conn_free(srv->conns[i], NULL);
	(void)ev_io_del(srv->loop, srv->fd);
	close(srv->fd);
	if (unlink(srv->path) == -1 && errno != ENOENT)
		log_warn("control: remove %s", srv->path);
	free(srv);
}

/* ---- client ---- */

/* Waits for events on fd until deadline; 0 ready, -1 with err on timeout or error. */
static int
control_wait(int fd, short events, uint64_t deadline_ms, char *err, size_t errlen)
{
	for (;;) {
		uint64_t now = time_mono_ms();
		struct pollfd pfd = {.fd = fd, .events = events};
		int r;

		if (now >= deadline_ms) {
			(void)str_copy(err, errlen, "timed out waiting for the daemon");
			return -1;
		}
		r = poll(&pfd, 1, (int)(deadline_ms - now > 60000 ? 60000 : deadline_ms - now));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			(void)str_format(err, errlen, "poll: %s", strerror(errno));
			return -1;
		}
		if (r > 0)
			return 0;
	}
}

static int
control_client_send(int fd, const char *line, uint64_t deadline_ms, char *err, size_t errlen)
{
	char buf[CONTROL_REQUEST_MAX_BYTES + 1];
	size_t len, off = 0;

	if (str_format(buf, sizeof(buf), "%s\n", line) == -1 || strchr(line, '\n') != NULL) {
		(void)str_copy(err, errlen, "request too long or has a line break");
		return -1;
	}
	len = strlen(buf);
	while (off < len) {
		ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);

		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (control_wait(fd, POLLOUT, deadline_ms, err, errlen) == -1)
				return -1;
			continue;
		}
		if (n <= 0) {
			(void)str_format(err, errlen, "send: %s", strerror(errno));
			return -1;
		}
		off += (size_t)n;
	}
	return 0;
}

static int
control_client_recv(int fd, uint64_t deadline_ms, char **reply, size_t *replylen, char *err,
                    size_t errlen)
{
	/* Room for the status line and the truncation note around the largest text. */
	const size_t max = CONTROL_REPLY_MAX_BYTES + CONTROL_ERR_MAX + 64;
	size_t len = 0, cap = 4096;
	char *buf, *t;

	if ((buf = malloc(cap)) == NULL) {
		(void)str_format(err, errlen, "reply: %s", strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n;

		if (len + 1 == cap) {
			if (cap >= max) {
				(void)str_copy(err, errlen,
				               "reply longer than the protocol allows");
				goto fail;
			}
			if ((t = realloc(buf, cap * 2)) == NULL) {
				(void)str_format(err, errlen, "reply: %s", strerror(errno));
				goto fail;
			}
			buf = t;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
			if (control_wait(fd, POLLIN, deadline_ms, err, errlen) == -1)
				goto fail;
			continue;
		}
		if (n == -1) {
			(void)str_format(err, errlen, "receive: %s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	if (len == 0) {
		(void)str_copy(err, errlen, "the daemon closed without a reply");
		goto fail;
	}
	*reply = buf;
	*replylen = len;
	return 0;
fail:
	free(buf);
	return -1;
}

int
control_client_request(const char *path, const char *line, uint64_t timeout_ms, char **reply,
                       size_t *replylen, char *err, size_t errlen)
{
	uint64_t deadline_ms = time_mono_ms() + timeout_ms;
	struct sockaddr_un sun;
	int fd, r;

	if (control_sockaddr(path, &sun, err, errlen) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		(void)str_format(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (const struct sockaddr *)&sun, sizeof(sun)) == -1) {
		/* A unix socket's backlog full is EAGAIN: wait for room like a TCP connect. */
		if (errno != EAGAIN && errno != EINPROGRESS) {
			(void)str_format(err, errlen, "connect %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (control_wait(fd, POLLOUT, deadline_ms, err, errlen) == -1) {
			close(fd);
			return -1;
		}
		if (connect(fd, (const struct sockaddr *)&sun, sizeof(sun)) == -1) {
			(void)str_format(err, errlen, "connect %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
	}
	r = control_client_send(fd, line, deadline_ms, err, errlen);
	if (r == 0)
		r = control_client_recv(fd, deadline_ms, reply, replylen, err, errlen);
	close(fd);
	return r;
}
