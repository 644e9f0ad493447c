/*
 * mailplex-proxy's back-end side of a login: connect with a timeout, the client's address
 * (PROXY v2 header, IMAP ID or POP3 XCLIENT), TLS (implicit or STARTTLS/STLS, discarding
 * anything sent ahead of the STARTTLS answer), the greeting (PREAUTH refused), and the
 * login with the client's credentials — IMAP LOGIN under the client's own tag with both
 * credentials as literals, POP3 USER/PASS — plus the down-marking of back ends that fail
 * to connect. Reply lines are classified by backend_proto.c. Never logs a credential.
 */
#include <errno.h>
#include <stdlib.h>

#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backend_proto.h"
#include "log.h"
#include "proxy.h"
#include "resolve.h"
#include "tls.h"
#include "util.h"

#define BE_TAG    "mpx0" /* our own tag for STARTTLS */
#define BE_ID_TAG "mpx1" /* ... and for ID; the login goes under the client's tag */

enum be_login_step {
	BE_IMAP_USER_CONT, /* synchronising literals: waiting for "+" before the user */
	BE_IMAP_PASS_CONT, /* ... before the password */
	BE_IMAP_TAGGED,    /* waiting for "TAG OK|NO|BAD" */
	BE_POP3_USER,      /* waiting for USER's answer */
	BE_POP3_PASS,      /* waiting for PASS's answer */
};

enum be_addr_step {
	BE_ADDR_IMAP_ID,      /* waiting for "mpx1 OK|NO|BAD" (after "* ID ...") */
	BE_ADDR_POP3_CAPA,    /* waiting for CAPA's +OK or -ERR */
	BE_ADDR_POP3_CAPA_LN, /* reading the capability list up to "." */
	BE_ADDR_POP3_XCLIENT, /* waiting for XCLIENT's answer */
};

static void be_connect_next(struct proxy_session *s, unsigned first);
static int be_speaks_first(const struct proxy_session *s);
static void be_connected(struct proxy_session *s);

static struct proxy_be_health *
health_get(struct proxy_ctx *ctx, const char *name, int create)
{
	struct proxy_be_health *h;

	for (h = ctx->health; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0)
			return h;
	if (!create || (h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	str_copy(h->name, sizeof(h->name), name);
	h->next = ctx->health;
	ctx->health = h;
	return h;
}

int
proxy_backend_is_down(struct proxy_ctx *ctx, const char *name)
{
	struct proxy_be_health *h = health_get(ctx, name, 0);

	return h != NULL && ev_now_ms(ctx->loop) < h->down_until_ms;
}

static void
health_fail(struct proxy_session *s)
{
	const struct mailplex_conf_proxy *pc = &s->ctx->conf->proxy;
	struct proxy_be_health *h = health_get(s->ctx, s->be_name, 1);
	uint64_t down;

	if (h == NULL)
		return;
	h->fails++;
	down = pc->backend_down_ms << (h->fails - 1 < 16 ? h->fails - 1 : 16);
	if (down > pc->backend_down_max_ms)
		down = pc->backend_down_max_ms;
	h->down_until_ms = ev_now_ms(s->ctx->loop) + down;
	if (down > 0)
		log_warnx("backend %s (%s): marked down for %llums after %u failed connect(s)",
		          s->be_name, s->be_addr, (unsigned long long)down, h->fails);
}

static void
health_ok(struct proxy_session *s)
{
	struct proxy_be_health *h = health_get(s->ctx, s->be_name, 0);

	if (h != NULL && h->fails > 0) {
		log_info("backend %s (%s): reachable again", s->be_name, s->be_addr);
		h->fails = 0;
		h->down_until_ms = 0;
	}
}

static void
backend_resolved(void *arg, const char *host)
{
	struct proxy_ctx *ctx = arg;
	struct proxy_session *s, *next;

	/* Every login waiting for this name goes on (rare: once per name and TTL). */
	for (s = ctx->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state != PS_BE_RESOLVE || strcasecmp(s->be_host, host) != 0)
			continue;
		be_connect_next(s, 0);
		proxy_session_run(s);
	}
}

/* Connects to the name's address number `first` or a later one; fails the login if none. */
static void
be_connect_next(struct proxy_session *s, unsigned first)
{
	const struct resolve_addrs *a;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[256];
	unsigned i;
	int fd;

	switch (resolver_lookup(s->ctx->resolver, s->be_host, &a, err, sizeof(err))) {
	case RESOLVE_PENDING:
		if (first == 0) {
			proxy_session_set_state(s, PS_BE_RESOLVE);
			return;
		}
		/* A refresh started meanwhile: the addresses we were trying are still here. */
		a = resolver_cached(s->ctx->resolver, s->be_host);
		break;
	case RESOLVE_FAILED:
		log_warnx("backend %s: %s", s->be_name, err);
		proxy_session_temp_fail(s, "backend-unresolvable");
		return;
	case RESOLVE_OK:
		break;
	}
	for (i = first; a != NULL && i < a->n; i++) {
		sslen = resolve_addr_port(a, i, s->be_port, &ss);
		if (sock_addr_format((const struct sockaddr *)&ss, s->be_addr, sizeof(s->be_addr)) ==
		    -1)
			str_copy(s->be_addr, sizeof(s->be_addr), "?");
		if ((fd = sock_connect_start(&ss, sslen, err, sizeof(err))) == -1) {
			log_warnx("backend %s (%s): %s", s->be_name, s->be_addr, err);
			continue;
		}
		s->be_try = i;
		s->be.fd = fd;
		linebuf_init(&s->be_lb, 512, PROXY_BE_LINE_MAX);
		proxy_session_set_state(s, PS_BE_CONNECT);
		return;
	}
	health_fail(s);
	proxy_session_temp_fail(s, "connect-failed");
}

void
proxy_backend_start(struct proxy_session *s, const struct map_endpoint *ep, const char *name,
                    enum map_tls tls)
{
	char err[256];

	s->be_tls = tls;
	s->be_literal_plus = 0;
	s->be_xclient = 0;
	s->be_port = ep->port;
	str_copy(s->be_host, sizeof(s->be_host), ep->host);
	if (str_format(s->be_addr, sizeof(s->be_addr),
	               strchr(ep->host, ':') != NULL ? "[%s]:%u" : "%s:%u", ep->host,
	               ep->port) == -1)
		str_copy(s->be_addr, sizeof(s->be_addr), "?");
	if (s->ctx->resolver == NULL) {
		s->ctx->resolver = resolver_new(s->ctx->loop, PROXY_DNS_TTL_MS, PROXY_DNS_NEG_TTL_MS,
		                                backend_resolved, s->ctx, err, sizeof(err));
		if (s->ctx->resolver == NULL) {
			log_warnx("backend %s: %s", name, err);
			proxy_session_temp_fail(s, "backend-unresolvable");
			return;
		}
	}
	be_connect_next(s, 0);
}

/* Whether the TCP connection is up (a connect timed out only in our eyes). */
static int
be_tcp_connected(const struct proxy_session *s)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	return getpeername(s->be.fd, (struct sockaddr *)&ss, &len) == 0;
}

/*
 * The greeting of a back end that connected but stayed silent through the connect timeout
 * gets the rest of the login timeout, as if it had been armed when the connect completed.
 */
static uint64_t
be_greeting_left_ms(const struct proxy_session *s)
{
	const struct mailplex_conf_proxy *pc = &s->ctx->conf->proxy;

	if (pc->backend_login_timeout_ms <= pc->backend_connect_timeout_ms)
		return 0;
	return pc->backend_login_timeout_ms - pc->backend_connect_timeout_ms;
}

void
proxy_backend_timeout(struct proxy_session *s)
{
	if (s->state == PS_BE_RESOLVE) {
		/* The lookup goes on; its answer serves the next login. */
		log_warnx("backend %s: %s: no answer from the resolver in time", s->be_name,
		          s->be_host);
		proxy_session_temp_fail(s, "resolve-timeout");
	} else if (s->state == PS_BE_CONNECT) {
		if (be_speaks_first(s) && be_tcp_connected(s)) {
			/* Connected but silent: the greeting keeps what is left of its timeout. */
			be_connected(s);
			s->be_unconfirmed = 0;
			health_ok(s);
			if (s->state == PS_BE_GREETING)
				proxy_session_rearm(s, be_greeting_left_ms(s));
			return;
		}
		log_warnx("backend %s (%s): connect timed out", s->be_name, s->be_addr);
		proxy_conn_close(s->ctx, &s->be);
		linebuf_free(&s->be_lb);
		be_connect_next(s, s->be_try + 1);
	} else {
		proxy_session_temp_fail(s, "login-timeout");
	}
}

static int
be_queue(struct proxy_session *s, const void *data, size_t len)
{
	if (proxy_obuf_add(&s->be.out, data, len) == -1) {
		proxy_session_temp_fail(s, "out-of-memory");
		return -1;
	}
	return 0;
}

static void
be_login_send(struct proxy_session *s)
{
	const struct sasl_creds *c = s->creds;
	int r;

	if (c == NULL) {
		proxy_session_temp_fail(s, "no-credentials");
		return;
	}
	if (s->proto == PROXY_POP3) {
		if (proxy_obuf_printf(&s->be.out, "USER %s\r\n", c->user) == -1) {
			proxy_session_temp_fail(s, "out-of-memory");
			return;
		}
		s->be_step = BE_POP3_USER;
	} else if (s->be_literal_plus) {
		/* RFC 7888: one write, no round trips; literals carry any byte a password has. */
		r = proxy_obuf_printf(&s->be.out, "%s LOGIN {%zu+}\r\n", s->tag, c->user_len);
		if (r == -1 || be_queue(s, c->user, c->user_len) == -1 ||
		    proxy_obuf_printf(&s->be.out, " {%zu+}\r\n", c->pass_len) == -1 ||
		    be_queue(s, c->pass, c->pass_len) == -1 || be_queue(s, "\r\n", 2) == -1) {
			proxy_session_temp_fail(s, "out-of-memory");
			return;
		}
		s->be_step = BE_IMAP_TAGGED;
	} else {
		if (proxy_obuf_printf(&s->be.out, "%s LOGIN {%zu}\r\n", s->tag, c->user_len) ==
		    -1) {
			proxy_session_temp_fail(s, "out-of-memory");
			return;
		}
		s->be_step = BE_IMAP_USER_CONT;
	}
	proxy_session_set_state(s, PS_BE_LOGIN);
}

static int
client_addrs(struct proxy_session *s, struct sockaddr_storage *local)
{
	socklen_t len = sizeof(*local);

	/* From the kernel, never from client bytes: the address the client connected to. */
	if (getsockname(s->client.fd, (struct sockaddr *)local, &len) == -1) {
		log_warn("session %llu: getsockname", (unsigned long long)s->id);
		return -1;
	}
	return 0;
}

/* 0 queued; -1 the session has failed. */
static int
be_xclient_send(struct proxy_session *s)
{
	char cmd[BE_ADDR_CMD_MAX];
	int n;

	n = be_pop3_xclient_command((const struct sockaddr *)&s->peer_ss, cmd, sizeof(cmd));
	if (n == -1) {
		proxy_session_temp_fail(s, "client-address");
		return -1;
	}
	if (be_queue(s, cmd, (size_t)n) == -1)
		return -1;
	s->be_step = BE_ADDR_POP3_XCLIENT;
	return 0;
}

/* Greeting (and TLS) done: tell the back end who the client is, or log in at once. */
static void
be_ready(struct proxy_session *s)
{
	struct sockaddr_storage local;
	char cmd[BE_ADDR_CMD_MAX];
	int n;

	if (s->ctx->conf->proxy.backend_client_address != MAILPLEX_CLIENT_ADDR_ID) {
		be_login_send(s);
		return;
	}
	if (s->proto == PROXY_POP3) {
		/*
		 * XCLIENT only where it is offered: Dovecot says so in its greeting's code
		 * ("+OK [XCLIENT]", only to its login_trusted_networks); others may list it
		 * in CAPA. Sending it elsewhere would cost a -ERR and a bad-command count.
		 */
		if (s->be_xclient) {
			if (be_xclient_send(s) == 0)
				proxy_session_set_state(s, PS_BE_ADDR);
			return;
		}
		if (be_queue(s, "CAPA\r\n", 6) == 0) {
			s->be_step = BE_ADDR_POP3_CAPA;
			proxy_session_set_state(s, PS_BE_ADDR);
		}
		return;
	}
	if (client_addrs(s, &local) == -1 ||
	    (n = be_imap_id_command(BE_ID_TAG, (const struct sockaddr *)&s->peer_ss,
	                            (const struct sockaddr *)&local, cmd, sizeof(cmd))) == -1) {
		proxy_session_temp_fail(s, "client-address");
		return;
	}
	if (be_queue(s, cmd, (size_t)n) == 0) {
		s->be_step = BE_ADDR_IMAP_ID;
		proxy_session_set_state(s, PS_BE_ADDR);
	}
}

/* PROXY v2 goes first on the wire, ahead of TLS and the greeting. */
static int
be_proxy_v2_send(struct proxy_session *s)
{
	struct sockaddr_storage local;
	unsigned char hdr[BE_PROXY_V2_MAX];
	ssize_t w;
	int n;

	if (client_addrs(s, &local) == -1 ||
	    (n = be_proxy_v2_header((const struct sockaddr *)&s->peer_ss,
	                            (const struct sockaddr *)&local, hdr, sizeof(hdr))) == -1) {
		proxy_session_temp_fail(s, "client-address");
		return -1;
	}
	/*
	 * Written directly, not queued: with implicit TLS the queue goes through OpenSSL. A
	 * just-connected socket's send buffer always takes 52 bytes; a short write would be a
	 * kernel oddity and fails the login rather than corrupt the stream.
	 */
	do
		w = write(s->be.fd, hdr, (size_t)n);
	while (w == -1 && errno == EINTR);
	if (w != n) {
		log_warnx("backend %s (%s): PROXY header not written whole", s->be_name, s->be_addr);
		proxy_session_temp_fail(s, "backend-write-error");
		return -1;
	}
	return 0;
}

static int
be_tls_start(struct proxy_session *s)
{
	char err[TLS_ERR_MAX];

	if (s->ctx->tls_client == NULL) {
		proxy_session_temp_fail(s, "backend-tls-unavailable");
		return -1;
	}
	s->be.ssl = tls_client_new(s->ctx->tls_client, s->be.fd, s->be_host, err, sizeof(err));
	if (s->be.ssl == NULL) {
		log_warnx("backend %s: %s", s->be_name, err);
		proxy_session_temp_fail(s, "backend-tls-failed");
		return -1;
	}
	proxy_conn_tls_lean(s->be.ssl);
	proxy_session_set_state(s, PS_BE_TLS);
	return 0;
}

static void
imap_addr_line(struct proxy_session *s, const struct be_imap_reply *r)
{
	switch (r->kind) {
	case BE_IMAP_TAGGED_OK:
		be_login_send(s);
		return;
	case BE_IMAP_TAGGED_NO:
	case BE_IMAP_TAGGED_BAD:
		/* Not fatal: the login still works, the back end just sees our address. */
		log_warnx("backend %s (%s): ID refused: it will not see the client's address",
		          s->be_name, s->be_addr);
		be_login_send(s);
		return;
	case BE_IMAP_OK:
	case BE_IMAP_UNTAGGED:
		return; /* "* ID (...)": the back end's own identity, of no use here */
	default:
		proxy_session_temp_fail(s, "backend-protocol-error");
		return;
	}
}

static void
imap_line(struct proxy_session *s, const char *line, size_t len)
{
	struct be_imap_reply r;

	be_imap_reply_parse(line, len,
	                    s->state == PS_BE_STARTTLS ? BE_TAG
	                    : s->state == PS_BE_ADDR   ? BE_ID_TAG
	                                               : s->tag,
	                    &r);
	switch (s->state) {
	case PS_BE_GREETING:
		if (r.kind == BE_IMAP_OK) {
			s->be_literal_plus = r.literal_plus;
			if (s->be_tls == MAP_TLS_ON) {
				if (be_queue(s, BE_TAG " STARTTLS\r\n",
				             sizeof(BE_TAG " STARTTLS\r\n") - 1) == 0)
					proxy_session_set_state(s, PS_BE_STARTTLS);
			} else {
				be_ready(s);
			}
		} else if (r.kind == BE_IMAP_PREAUTH) {
			log_warnx("backend %s (%s): PREAUTH greeting refused", s->be_name,
			          s->be_addr);
			proxy_session_temp_fail(s, "backend-preauth");
		} else {
			proxy_session_temp_fail(s, "backend-greeting");
		}
		return;
	case PS_BE_STARTTLS:
		if (r.kind == BE_IMAP_TAGGED_OK) {
			/* Anything the back end sent after its answer is not trusted (injection). */
			linebuf_clear(&s->be_lb);
			s->be_literal_plus = 0; /* capabilities before TLS no longer count */
			be_tls_start(s);
		} else if (r.kind == BE_IMAP_TAGGED_NO || r.kind == BE_IMAP_TAGGED_BAD ||
		           r.kind == BE_IMAP_OTHER_TAG || r.kind == BE_IMAP_BYE) {
			proxy_session_temp_fail(s, "backend-starttls-refused");
		}
		/* Untagged lines before the answer are dropped. */
		return;
	case PS_BE_ADDR:
		imap_addr_line(s, &r);
		return;
	case PS_BE_LOGIN:
		if (r.kind == BE_IMAP_TAGGED_OK) {
			proxy_session_login_result(s, 1, 0, line, len);
			return;
		}
		if (r.kind == BE_IMAP_TAGGED_NO || r.kind == BE_IMAP_TAGGED_BAD) {
			proxy_session_login_result(s, 0, r.auth_failure, line, len);
			return;
		}
		if (r.kind == BE_IMAP_CONTINUE && s->be_step == BE_IMAP_USER_CONT) {
			if (be_queue(s, s->creds->user, s->creds->user_len) == 0 &&
			    proxy_obuf_printf(&s->be.out, " {%zu}\r\n", s->creds->pass_len) == 0)
				s->be_step = BE_IMAP_PASS_CONT;
			return;
		}
		if (r.kind == BE_IMAP_CONTINUE && s->be_step == BE_IMAP_PASS_CONT) {
			if (be_queue(s, s->creds->pass, s->creds->pass_len) == 0 &&
			    be_queue(s, "\r\n", 2) == 0)
				s->be_step = BE_IMAP_TAGGED;
			return;
		}
		if (r.kind == BE_IMAP_BYE)
			return; /* the tagged answer that follows decides; the client keeps going */
		if (r.kind == BE_IMAP_OK || r.kind == BE_IMAP_UNTAGGED) {
			/* Untagged data of the login's answer goes to the client as it is. */
			if (proxy_obuf_add(&s->client.out, line, len) == -1 ||
			    proxy_obuf_add(&s->client.out, "\r\n", 2) == -1)
				proxy_session_close(s, "out of memory");
			return;
		}
		proxy_session_temp_fail(s, "backend-protocol-error");
		return;
	default:
		return;
	}
}

static void
pop3_addr_line(struct proxy_session *s, const char *line, size_t len,
               const struct be_pop3_reply *r)
{
	switch (s->be_step) {
	case BE_ADDR_POP3_CAPA:
		if (r->kind == BE_POP3_OK)
			s->be_step = BE_ADDR_POP3_CAPA_LN;
		else if (r->kind == BE_POP3_ERR)
			be_login_send(s); /* no CAPA (RFC 1939 server): no XCLIENT either */
		else
			proxy_session_temp_fail(s, "backend-protocol-error");
		return;
	case BE_ADDR_POP3_CAPA_LN:
		switch (be_pop3_capa_line(line, len)) {
		case BE_CAPA_XCLIENT:
			s->be_xclient = 1;
			return;
		case BE_CAPA_OTHER:
			return;
		case BE_CAPA_END:
			if (s->be_xclient) {
				be_xclient_send(s);
			} else {
				log_debug("backend %s (%s): no XCLIENT in CAPA: client address not "
				          "passed",
				          s->be_name, s->be_addr);
				be_login_send(s);
			}
			return;
		}
		return;
	case BE_ADDR_POP3_XCLIENT:
		if (r->kind == BE_POP3_ERR)
			log_warnx("backend %s (%s): XCLIENT refused: it will not see the client's "
			          "address",
			          s->be_name, s->be_addr);
		if (r->kind == BE_POP3_GARBAGE)
			proxy_session_temp_fail(s, "backend-protocol-error");
		else
			be_login_send(s);
		return;
	default:
		proxy_session_temp_fail(s, "backend-protocol-error");
		return;
	}
}

static void
pop3_line(struct proxy_session *s, const char *line, size_t len)
{
	struct be_pop3_reply r;

	be_pop3_reply_parse(line, len, &r);
	switch (s->state) {
	case PS_BE_GREETING:
		s->be_xclient = r.xclient;
		if (r.kind != BE_POP3_OK) {
			proxy_session_temp_fail(s, "backend-greeting");
		} else if (s->be_tls == MAP_TLS_ON) {
			if (be_queue(s, "STLS\r\n", 6) == 0)
				proxy_session_set_state(s, PS_BE_STARTTLS);
		} else {
			be_ready(s);
		}
		return;
	case PS_BE_STARTTLS:
		if (r.kind == BE_POP3_OK) {
			linebuf_clear(&s->be_lb);
			be_tls_start(s);
		} else {
			proxy_session_temp_fail(s, "backend-stls-refused");
		}
		return;
	case PS_BE_ADDR:
		pop3_addr_line(s, line, len, &r);
		return;
	case PS_BE_LOGIN:
		if (r.kind != BE_POP3_OK) {
			proxy_session_login_result(s, 0, r.kind == BE_POP3_ERR && r.auth_failure,
			                           line, len);
		} else if (s->be_step == BE_POP3_USER) {
			if (proxy_obuf_printf(&s->be.out, "PASS %s\r\n", s->creds->pass) == -1)
				proxy_session_temp_fail(s, "out-of-memory");
			s->be_step = BE_POP3_PASS;
		} else {
			proxy_session_login_result(s, 1, 0, line, len);
		}
		return;
	default:
		return;
	}
}

/*
 * Whether the back end speaks first (its greeting; not implicit TLS, not after our PROXY
 * header). Then the connect is waited for with EV_READ alone and the greeting's arrival is
 * its success: one wake-up fewer, and no SO_ERROR query or EPOLLOUT-to-EPOLLIN switch per
 * login. A failed connect is reported as EPOLLERR (delivered as EV_READ) and the first
 * read() returns its error.
 */
static int
be_speaks_first(const struct proxy_session *s)
{
	return s->be_tls != MAP_TLS_IMPLICIT &&
	       s->ctx->conf->proxy.backend_client_address != MAILPLEX_CLIENT_ADDR_PROXY_V2;
}

int
proxy_backend_connect_events(const struct proxy_session *s)
{
	return be_speaks_first(s) ? EV_READ : EV_WRITE;
}

static void
be_connect_failed(struct proxy_session *s, int err)
{
	log_warnx("backend %s (%s): connect: %s", s->be_name, s->be_addr, strerror(err));
	/* A name's other addresses are tried in order (localhost: ::1, then 127.0.0.1). */
	proxy_conn_close(s->ctx, &s->be);
	linebuf_free(&s->be_lb);
	be_connect_next(s, s->be_try + 1);
}

static void
be_connected(struct proxy_session *s)
{
	if (be_speaks_first(s)) {
		s->be_unconfirmed = 1;
	} else if (sock_connect_result(s->be.fd) == -1) {
		be_connect_failed(s, errno);
		return;
	} else {
		health_ok(s);
	}
	s->be_step = 0;
	s->be.ready |= EV_READ; /* the greeting is often there already: one read to see */
	if (s->ctx->conf->proxy.backend_client_address == MAILPLEX_CLIENT_ADDR_PROXY_V2 &&
	    be_proxy_v2_send(s) == -1)
		return;
	if (s->be_tls == MAP_TLS_IMPLICIT)
		be_tls_start(s);
	else
		proxy_session_set_state(s, PS_BE_GREETING);
}

void
proxy_backend_connect_done(struct proxy_session *s)
{
	if (s->state == PS_BE_CONNECT)
		be_connected(s);
}

static int
be_handshake(struct proxy_session *s)
{
	char err[TLS_ERR_MAX];
	int r = proxy_conn_handshake(&s->be, err, sizeof(err));

	if (r == 1)
		return 0;
	if (r == -1) {
		log_warnx("backend %s (%s): tls: %s", s->be_name, s->be_addr, err);
		proxy_session_temp_fail(s, "backend-tls-failed");
		return 1;
	}
	if (s->be_tls == MAP_TLS_IMPLICIT)
		proxy_session_set_state(s, PS_BE_GREETING);
	else
		be_ready(s);
	return 1;
}

int
proxy_backend_step(struct proxy_session *s)
{
	struct linebuf_line l;
	enum linebuf_result lr;
	enum proxy_state st;
	char buf[4096];
	size_t space;
	ssize_t n;
	int progress = 0;

	if (s->state == PS_BE_CONNECT)
		return 0; /* proxy_backend_connect_done, on the socket's readiness */
	if (s->state == PS_BE_TLS)
		return be_handshake(s);
	for (;;) {
		st = s->state;
		if (st != PS_BE_GREETING && st != PS_BE_STARTTLS && st != PS_BE_ADDR &&
		    st != PS_BE_LOGIN)
			return 1;
		lr = linebuf_next_line(&s->be_lb, &l);
		if (lr == LINEBUF_TOO_LONG) {
			proxy_session_temp_fail(s, "backend-line-too-long");
			return 1;
		}
		if (lr == LINEBUF_LINE) {
			if (s->proto == PROXY_IMAP)
				imap_line(s, l.data, l.len);
			else
				pop3_line(s, l.data, l.len);
			progress = 1;
			continue;
		}
		space = linebuf_space(&s->be_lb);
		n = proxy_conn_read(&s->be, buf, space < sizeof(buf) ? space : sizeof(buf));
		if (n == -2)
			return progress;
		if (n == -1 && s->be_unconfirmed) {
			be_connect_failed(s, errno);
			return 1;
		}
		if (s->be_unconfirmed) {
			s->be_unconfirmed = 0;
			health_ok(s);
		}
		if (n <= 0) {
			proxy_session_temp_fail(s, "backend-closed");
			return 1;
		}
		if (linebuf_append(&s->be_lb, buf, (size_t)n) < (size_t)n) {
			proxy_session_temp_fail(s, "out-of-memory");
			return 1;
		}
		progress = 1;
	}
}
