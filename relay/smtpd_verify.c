/*
 * RCPT-time recipient verification for mailplex-smtpd's receivers: asks the recipient's
 * back end (LMTP LHLO or SMTP EHLO, MAIL FROM:<>, RCPT TO, QUIT) on the worker's event
 * loop, and keeps positive and negative answers for their configured times. It never
 * blocks and never refuses on doubt: no answer, a 4xx or a timeout leaves the decision to
 * the queue runner (the recipient is accepted).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "queue_reply.h"
#include "smtpd.h"
#include "util.h"

#define VERIFY_BUCKETS   4096
#define VERIFY_CACHE_MAX 100000 /* entries; past this the cache starts over */
#define VERIFY_LINE_MAX  QUEUE_REPLY_LINE_MAX

struct smtpd_verify_entry {
	struct smtpd_verify_entry *next;
	uint64_t expires_ms;
	int ok;
	char key[MAP_NAME_MAX + 1 + MAP_ADDR_MAX + 1]; /* "backend addr" */
	char text[QUEUE_REPLY_TEXT_MAX];
};

struct smtpd_verify_cache {
	struct smtpd_verify_entry *b[VERIFY_BUCKETS];
	size_t n;
};

enum verify_state {
	VS_CONNECT,
	VS_GREETING,
	VS_HELO,
	VS_MAIL,
	VS_RCPT,
};

struct smtpd_verify {
	struct smtpd_ctx *ctx;
	struct smtpd_session *s;
	enum verify_state state;
	int fd;
	int lmtp;
	struct ev_timer timer;
	struct linebuf in;
	struct queue_reply reply;
	char key[MAP_NAME_MAX + 1 + MAP_ADDR_MAX + 1];
	char rcpt[MAP_ADDR_MAX + 1];
	char addr[SOCK_ADDR_STRLEN];
};

static unsigned
verify_hash(const char *key)
{
	unsigned h = 2166136261u;

	for (; *key != '\0'; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h % VERIFY_BUCKETS;
}

static void
verify_key(char *key, size_t len, const char *backend, const char *addr)
{
	(void)str_format(key, len, "%s %s", backend, addr);
}

void
smtpd_verify_cache_free(struct smtpd_ctx *ctx)
{
	struct smtpd_verify_entry *e, *next;
	size_t i;

	if (ctx->verify_cache == NULL)
		return;
	for (i = 0; i < VERIFY_BUCKETS; i++)
		for (e = ctx->verify_cache->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(ctx->verify_cache);
	ctx->verify_cache = NULL;
}

int
smtpd_verify_cached(struct smtpd_ctx *ctx, const char *backend, const char *addr, char *text,
                    size_t textlen)
{
	struct smtpd_verify_entry *e, **pp;
	char key[MAP_NAME_MAX + 1 + MAP_ADDR_MAX + 1];
	uint64_t now = ev_now_ms(ctx->loop);

	if (ctx->verify_cache == NULL)
		return -1;
	verify_key(key, sizeof(key), backend, addr);
	for (pp = &ctx->verify_cache->b[verify_hash(key)]; (e = *pp) != NULL; pp = &e->next) {
		if (strcmp(e->key, key) != 0)
			continue;
		if (e->expires_ms <= now) {
			*pp = e->next;
			free(e);
			ctx->verify_cache->n--;
			return -1;
		}
		str_copy(text, textlen, e->text);
		return e->ok ? SMTPD_VERIFY_OK : SMTPD_VERIFY_UNKNOWN;
	}
	return -1;
}

static void
verify_cache_put(struct smtpd_ctx *ctx, const char *key, int ok, const char *text)
{
	const struct mailplex_conf_smtpd *c = &ctx->conf->smtpd;
	uint64_t ttl = ok ? c->verify_cache_positive_ms : c->verify_cache_negative_ms;
	struct smtpd_verify_entry *e;
	unsigned h;

	if (ttl == 0)
		return;
	if (ctx->verify_cache != NULL && ctx->verify_cache->n >= VERIFY_CACHE_MAX)
		smtpd_verify_cache_free(ctx); /* bounded memory; answers are cheap to ask again */
	if (ctx->verify_cache == NULL &&
	    (ctx->verify_cache = calloc(1, sizeof(*ctx->verify_cache))) == NULL)
		return;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return;
	str_copy(e->key, sizeof(e->key), key);
	str_copy(e->text, sizeof(e->text), text);
	e->ok = ok;
	e->expires_ms = ev_now_ms(ctx->loop) + ttl;
	h = verify_hash(key);
	e->next = ctx->verify_cache->b[h];
	ctx->verify_cache->b[h] = e;
	ctx->verify_cache->n++;
}

static void
verify_free(struct smtpd_verify *v)
{
	ev_timer_stop(v->ctx->loop, &v->timer);
	if (v->fd != -1) {
		(void)ev_io_del(v->ctx->loop, v->fd);
		close(v->fd);
	}
	linebuf_free(&v->in);
	free(v);
}

void
smtpd_verify_cancel(struct smtpd_verify *v)
{
	if (v != NULL)
		verify_free(v);
}

/* Ends the check: caches a 2xx or 5xx answer, then hands the result to the session. */
static void
verify_end(struct smtpd_verify *v, enum smtpd_verify_result r, const char *text)
{
	struct smtpd_session *s = v->s;
	char copy[QUEUE_REPLY_TEXT_MAX];

	if (r != SMTPD_VERIFY_TEMP)
		verify_cache_put(v->ctx, v->key, r == SMTPD_VERIFY_OK, text);
	else
		log_info("verify %s at %s: no answer (%s): recipient accepted", v->rcpt, v->addr,
		         text);
	str_copy(copy, sizeof(copy), text);
	s->verify = NULL;
	verify_free(v);
	smtpd_verify_finished(s, r, copy);
}

/* One command line; a short one on a fresh connection: the socket buffer takes it whole. */
static int
verify_send(struct smtpd_verify *v, const char *verb, const char *arg)
{
	char line[VERIFY_LINE_MAX];
	ssize_t n;

	if (str_format(line, sizeof(line), "%s%s\r\n", verb, arg) == -1)
		return -1;
	n = write(v->fd, line, strlen(line));
	return n == (ssize_t)strlen(line) ? 0 : -1;
}

/* A whole reply arrived: the next step of the dialogue. 1 going on, 0 ended (v is freed). */
static int
verify_step(struct smtpd_verify *v)
{
	int cls = queue_reply_class(&v->reply);
	const char *text = v->reply.text;
	char line[MAP_ADDR_MAX + 3];

	switch (v->state) {
	case VS_GREETING:
		if (cls != 2)
			break;
		v->state = VS_HELO;
		if (verify_send(v, v->lmtp ? "LHLO " : "EHLO ", v->ctx->hostname) == -1)
			break;
		return 1;
	case VS_HELO:
		if (cls != 2)
			break;
		v->state = VS_MAIL;
		if (verify_send(v, "MAIL FROM:<>", "") == -1)
			break;
		return 1;
	case VS_MAIL:
		if (cls != 2)
			break;
		v->state = VS_RCPT;
		if (str_format(line, sizeof(line), "<%s>", v->rcpt) == -1 ||
		    verify_send(v, "RCPT TO:", line) == -1)
			break;
		return 1;
	case VS_RCPT:
		(void)verify_send(v, "QUIT", "");
		if (cls == 2)
			verify_end(v, SMTPD_VERIFY_OK, text);
		else if (cls == 5)
			verify_end(v, SMTPD_VERIFY_UNKNOWN, text);
		else
			verify_end(v, SMTPD_VERIFY_TEMP, text);
		return 0;
	case VS_CONNECT:
		break;
	}
	verify_end(v, SMTPD_VERIFY_TEMP, text[0] ? text : "protocol error");
	return 0;
}

static void
verify_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct smtpd_verify *v = arg;
	struct linebuf_line l;
	enum linebuf_result lr;
	enum queue_reply_status st;
	ssize_t n;

	if (v->state == VS_CONNECT) {
		if (sock_connect_result(v->fd) == -1) {
			verify_end(v, SMTPD_VERIFY_TEMP, strerror(errno));
			return;
		}
		v->state = VS_GREETING;
		if (ev_io_set(loop, v->fd, EV_READ, verify_io, v) == -1)
			verify_end(v, SMTPD_VERIFY_TEMP, "epoll");
		return;
	}
	n = linebuf_read(&v->in, v->fd, VERIFY_LINE_MAX);
	if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR)) {
		verify_end(v, SMTPD_VERIFY_TEMP, n == 0 ? "connection closed" : strerror(errno));
		return;
	}
	for (;;) {
		lr = linebuf_next_line(&v->in, &l);
		if (lr == LINEBUF_NEED_MORE)
			return;
		if (lr == LINEBUF_TOO_LONG) {
			verify_end(v, SMTPD_VERIFY_TEMP, "reply line too long");
			return;
		}
		st = queue_reply_feed(&v->reply, l.data, l.len);
		if (st == QUEUE_REPLY_BAD) {
			verify_end(v, SMTPD_VERIFY_TEMP, v->reply.error);
			return;
		}
		if (st == QUEUE_REPLY_DONE) {
			if (!verify_step(v))
				return;
			queue_reply_init(&v->reply);
		}
	}
}

static void
verify_timeout(struct ev_loop *loop, void *arg)
{
	verify_end(arg, SMTPD_VERIFY_TEMP, "timeout");
}

struct smtpd_verify *
smtpd_verify_start(struct smtpd_session *s, const struct map_backend *be, const char *rcpt)
{
	struct smtpd_ctx *ctx = s->ctx;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct smtpd_verify *v;
	char err[256] = "cannot start";

	if ((v = calloc(1, sizeof(*v))) == NULL)
		return NULL;
	v->ctx = ctx;
	v->s = s;
	v->fd = -1;
	v->lmtp = be->deliver_proto == MAP_PROTO_LMTP;
	ev_timer_init(&v->timer);
	linebuf_init(&v->in, 512, VERIFY_LINE_MAX);
	queue_reply_init(&v->reply);
	verify_key(v->key, sizeof(v->key), be->name, rcpt);
	str_copy(v->rcpt, sizeof(v->rcpt), rcpt);
	(void)str_format(v->addr, sizeof(v->addr),
	                 strchr(be->deliver.host, ':') ? "[%s]:%u" : "%s:%u", be->deliver.host,
	                 (unsigned)be->deliver.port);
	if (sock_addr_parse(v->addr, &ss, &sslen, err, sizeof(err)) == -1 ||
	    (v->fd = sock_connect_start(&ss, sslen, err, sizeof(err))) == -1 ||
	    ev_io_set(ctx->loop, v->fd, EV_WRITE, verify_io, v) == -1 ||
	    ev_timer_start(ctx->loop, &v->timer, ctx->conf->smtpd.verify_timeout_ms, verify_timeout,
	                   v) == -1) {
		log_info("verify %s at %s: %s: recipient accepted", rcpt, v->addr, err);
		verify_free(v);
		return NULL;
	}
	return v;
}
