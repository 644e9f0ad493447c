/*
 * mailplex-proxy's client side: one session's state machine from accept to close, the
 * IMAP and POP3 pre-login dialogue (answered here, parsed by imap_cmd/pop3_cmd), the map
 * lookup, failed-login delays, and the switch to copying bytes once the back end said OK.
 * It never logs a password, never advertises what it does not implement, and never lets
 * a peer's behaviour take down more than its own session.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "proxy.h"
#include "tls.h"
#include "util.h"

static const char *const state_names[] = {
    [PS_CLIENT_TLS] = "client-tls",
    [PS_PRELOGIN] = "prelogin",
    [PS_CLIENT_STARTTLS] = "starttls",
    [PS_BE_RESOLVE] = "be-resolve",
    [PS_BE_CONNECT] = "be-connect",
    [PS_BE_TLS] = "be-tls",
    [PS_BE_GREETING] = "be-greeting",
    [PS_BE_STARTTLS] = "be-starttls",
    [PS_BE_ADDR] = "be-client-address",
    [PS_BE_LOGIN] = "be-login",
    [PS_FAIL_DELAY] = "fail-delay",
    [PS_PIPE] = "pipe",
    [PS_CLOSING] = "closing",
    [PS_DEAD] = "dead",
};

#define CLOSING_TIMEOUT_MS 10000

static void session_timeout(struct ev_loop *loop, void *arg);
static void session_io(struct ev_loop *loop, int fd, int events, void *arg);

const char *
proxy_state_name(enum proxy_state st)
{
	return (size_t)st < ARRAY_LEN(state_names) ? state_names[st] : "?";
}

static const struct mailplex_conf_proxy *
pconf(const struct proxy_session *s)
{
	return &s->ctx->conf->proxy;
}

void
proxy_session_set_state(struct proxy_session *s, enum proxy_state st)
{
	const struct mailplex_conf_proxy *pc = pconf(s);
	uint64_t ms = 0;

	log_debug("session %llu: %s -> %s", (unsigned long long)s->id, proxy_state_name(s->state),
	          proxy_state_name(st));
	s->state = st;
	switch (st) {
	case PS_CLIENT_TLS:
	case PS_PRELOGIN:
	case PS_CLIENT_STARTTLS:
		ms = pc->prelogin_timeout_ms;
		break;
	case PS_BE_RESOLVE:
	case PS_BE_CONNECT:
		ms = pc->backend_connect_timeout_ms;
		break;
	case PS_BE_TLS:
	case PS_BE_GREETING:
	case PS_BE_STARTTLS:
	case PS_BE_ADDR:
	case PS_BE_LOGIN:
		ms = pc->backend_login_timeout_ms;
		break;
	case PS_PIPE:
		ms = pc->idle_timeout_ms;
		break;
	case PS_CLOSING:
		ms = CLOSING_TIMEOUT_MS;
		break;
	case PS_FAIL_DELAY: /* the caller arms the delay */
	case PS_DEAD:
		return;
	}
	ev_timer_start(s->ctx->loop, &s->timer, ms, session_timeout, s);
}

void
proxy_session_rearm(struct proxy_session *s, uint64_t ms)
{
	ev_timer_start(s->ctx->loop, &s->timer, ms, session_timeout, s);
}

static int
login_allowed(const struct proxy_session *s)
{
	return s->client_tls || pconf(s)->allow_plaintext_login;
}

static int
starttls_offered(const struct proxy_session *s)
{
	return s->ctx->tls_server != NULL && !s->client_tls;
}

static void reply(struct proxy_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
reply(struct proxy_session *s, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = proxy_obuf_vprintf(&s->client.out, fmt, ap);
	va_end(ap);
	if (r == -1)
		proxy_session_close(s, "out of memory");
}

/* Closes after the queued answer has gone out (bounded by CLOSING_TIMEOUT_MS). */
static void
session_closing(struct proxy_session *s, const char *reason)
{
	s->close_reason = reason;
	if (s->be.fd != -1)
		proxy_conn_close(s->ctx, &s->be);
	proxy_session_set_state(s, PS_CLOSING);
}

/* Only what the proxy itself implements before login (issue 4, item 5). */
static void
imap_caps(const struct proxy_session *s, char *buf, size_t len)
{
	str_format(buf, len, "IMAP4rev1 LITERAL+ SASL-IR ID%s%s",
	           starttls_offered(s) ? " STARTTLS" : "",
	           login_allowed(s) ? " AUTH=PLAIN" : " LOGINDISABLED");
}

static void
greet(struct proxy_session *s)
{
	char caps[256];

	if (s->proto == PROXY_IMAP) {
		imap_caps(s, caps, sizeof(caps));
		reply(s, "* OK [CAPABILITY %s] mailplex ready.\r\n", caps);
	} else {
		reply(s, "+OK mailplex ready.\r\n");
	}
}

static void
creds_drop(struct proxy_session *s)
{
	if (s->creds != NULL) {
		sasl_creds_wipe(s->creds);
		free(s->creds);
		s->creds = NULL;
	}
}

static void
parser_reset(struct proxy_session *s)
{
	if (s->imap != NULL)
		imap_cmd_reset(s->imap);
	if (s->pop3 != NULL)
		pop3_cmd_reset(s->pop3);
	s->imap_st = IMAP_CMD_NEED_LINE;
}

/* ---- login ---- */

static void
login_log(struct proxy_session *s, const char *result)
{
	log_info("session %llu: login client=%s user=%s backend=%s%s%s result=%s",
	         (unsigned long long)s->id, s->peer, s->user, s->be_name[0] ? s->be_name : "-",
	         s->be_addr[0] ? "@" : "", s->be_addr, result);
}

void
proxy_session_temp_fail(struct proxy_session *s, const char *why)
{
	login_log(s, why);
	creds_drop(s);
	proxy_conn_close(s->ctx, &s->be);
	linebuf_free(&s->be_lb);
	parser_reset(s);
	if (s->proto == PROXY_IMAP)
		reply(s,
		      "%s NO [UNAVAILABLE] Service temporarily unavailable, try again later.\r\n",
		      s->tag);
	else
		reply(s, "-ERR [SYS/TEMP] Service temporarily unavailable, try again later.\r\n");
	if (s->state != PS_DEAD && s->state != PS_CLOSING)
		proxy_session_set_state(s, PS_PRELOGIN);
}

/* Appends whatever the reader holds unparsed to a queue (pipelined bytes). */
static int
linebuf_move(struct linebuf *lb, struct proxy_obuf *to)
{
	char buf[4096];
	size_t n;

	while ((n = linebuf_take(lb, buf, sizeof(buf))) > 0)
		if (proxy_obuf_add(to, buf, n) == -1)
			return -1;
	return 0;
}

static void
fail_delay_done(struct proxy_session *s)
{
	char *r = s->held_reply;

	s->held_reply = NULL;
	if (r != NULL) {
		if (proxy_obuf_add(&s->client.out, r, strlen(r)) == -1) {
			free(r);
			proxy_session_close(s, "out of memory");
			return;
		}
		free(r);
	}
	if (s->held_close) {
		if (s->proto == PROXY_IMAP)
			reply(s, "* BYE Too many failed logins.\r\n");
		session_closing(s, "too many failed logins");
	} else {
		proxy_session_set_state(s, PS_PRELOGIN);
	}
}

void
proxy_session_login_result(struct proxy_session *s, int ok, int auth_failure, const char *line,
                           size_t len)
{
	const struct mailplex_conf_proxy *pc = pconf(s);
	char generic[256];
	uint64_t delay;
	char *held;
	int r;

	creds_drop(s);
	if (ok) {
		login_log(s, "ok");
		if (proxy_obuf_add(&s->client.out, line, len) == -1 ||
		    proxy_obuf_add(&s->client.out, "\r\n", 2) == -1 ||
		    linebuf_move(&s->be_lb, &s->client.out) == -1 ||
		    linebuf_move(&s->lb, &s->be.out) == -1) {
			proxy_session_close(s, "out of memory");
			return;
		}
		linebuf_free(&s->be_lb);
		linebuf_free(&s->lb);
		if (s->imap != NULL) {
			imap_cmd_reset(s->imap);
			free(s->imap);
			s->imap = NULL;
		}
		if (s->pop3 != NULL) {
			pop3_cmd_reset(s->pop3);
			free(s->pop3);
			s->pop3 = NULL;
		}
		s->client.bytes = s->be.bytes = 0;
		proxy_pipe_start(s);
		proxy_session_set_state(s, PS_PIPE);
		return;
	}

	if (line == NULL) {
		if (s->proto == PROXY_IMAP)
			str_format(generic, sizeof(generic),
			           "%s NO [AUTHENTICATIONFAILED] Authentication failed.", s->tag);
		else
			str_format(generic, sizeof(generic), "-ERR [AUTH] Authentication failed.");
		line = generic;
		len = strlen(generic);
	}
	/* line may point into be_lb: copy it before the back end goes. */
	if ((held = malloc(len + 3)) == NULL) {
		proxy_session_close(s, "out of memory");
		return;
	}
	memcpy(held, line, len);
	memcpy(held + len, "\r\n", 3);
	proxy_conn_close(s->ctx, &s->be);
	linebuf_free(&s->be_lb);
	parser_reset(s);
	if (!auth_failure) {
		/* The back end's own error (in use, temporary): shown as it is, not delayed. */
		login_log(s, "backend-error");
		r = proxy_obuf_add(&s->client.out, held, len + 2);
		free(held);
		if (r == -1) {
			proxy_session_close(s, "out of memory");
			return;
		}
		proxy_session_set_state(s, PS_PRELOGIN);
		return;
	}
	login_log(s, "failed");
	s->failures++;
	free(s->held_reply);
	s->held_reply = held;
	s->held_close = s->failures >= (unsigned)pc->login_failures_max;
	delay = pc->login_failure_delay_ms;
	if (s->failures > 1)
		delay <<= (s->failures - 1 < 10 ? s->failures - 1 : 10);
	if (delay > PROXY_FAIL_DELAY_MAX_MS)
		delay = PROXY_FAIL_DELAY_MAX_MS;
	proxy_session_set_state(s, PS_FAIL_DELAY);
	if (delay == 0)
		fail_delay_done(s);
	else
		ev_timer_start(s->ctx->loop, &s->timer, delay, session_timeout, s);
}

/* Credentials in hand: find the back end and start logging in there. */
static void
login_start(struct proxy_session *s, const struct sasl_creds *creds)
{
	struct map_result res;
	const struct map_backend *b;
	const struct map_endpoint *ep;

	if ((s->creds = malloc(sizeof(*s->creds))) == NULL) {
		proxy_session_close(s, "out of memory");
		return;
	}
	memcpy(s->creds, creds, sizeof(*s->creds));
	str_copy(s->user, sizeof(s->user), creds->user);
	s->be_name[0] = s->be_addr[0] = '\0';
	map_reopen_if_changed(s->ctx->map, 0);
	map_lookup(s->ctx->map, s->user, &res);
	if (res.local[0] == '\0' || res.domain[0] == '\0' ||
	    str_format(s->mailbox, sizeof(s->mailbox), "%s@%s", res.local, res.domain) == -1)
		s->mailbox[0] = '\0';
	switch (res.status) {
	case MAP_DELIVER:
		if (res.nrcpt != 1 || res.rcpt[0].status != MAP_DELIVER ||
		    (b = res.rcpt[0].backend) == NULL) {
			/* An alias is not a mailbox one can log in to. */
			proxy_session_login_result(s, 0, 1, NULL, 0);
			break;
		}
		str_copy(s->be_name, sizeof(s->be_name), b->name);
		ep = s->proto == PROXY_IMAP ? &b->imap : &b->pop3;
		if (ep->host[0] == '\0')
			proxy_session_temp_fail(s, "no-endpoint");
		else if (proxy_backend_is_down(s->ctx, b->name))
			proxy_session_temp_fail(s, "backend-down");
		else
			proxy_backend_start(s, ep, b->name, b->tls);
		break;
	case MAP_MIGRATING:
		proxy_session_temp_fail(s, "migrating");
		break;
	case MAP_REJECT:
	case MAP_UNKNOWN_USER:
	case MAP_NOT_OURS:
		proxy_session_login_result(s, 0, 1, NULL, 0);
		break;
	case MAP_ERROR:
		log_warnx("session %llu: map lookup: %s", (unsigned long long)s->id, res.error);
		proxy_session_temp_fail(s, "map-error");
		break;
	}
	map_result_free(&res);
}

static void
starttls_begin(struct proxy_session *s)
{
	/* Anything pipelined after STARTTLS in plain text is dropped (CVE-2011-0411). */
	linebuf_clear(&s->lb);
	parser_reset(s);
	proxy_session_set_state(s, PS_CLIENT_STARTTLS);
}

/* ---- IMAP ---- */

static void
imap_done(struct proxy_session *s)
{
	struct imap_cmd *c = s->imap;
	char caps[256];

	str_copy(s->tag, sizeof(s->tag), c->tag);
	switch (c->name) {
	case IMAP_CAPABILITY:
		imap_caps(s, caps, sizeof(caps));
		reply(s, "* CAPABILITY %s\r\n%s OK Capability completed.\r\n", caps, c->tag);
		break;
	case IMAP_NOOP:
		reply(s, "%s OK NOOP completed.\r\n", c->tag);
		break;
	case IMAP_LOGOUT:
		reply(s, "* BYE Logging out.\r\n%s OK Logout completed.\r\n", c->tag);
		session_closing(s, "logout");
		break;
	case IMAP_ID:
		reply(s, "* ID NIL\r\n%s OK ID completed.\r\n", c->tag);
		break;
	case IMAP_STARTTLS:
		if (!starttls_offered(s)) {
			reply(s, "%s BAD STARTTLS not available.\r\n", c->tag);
			break;
		}
		reply(s, "%s OK Begin TLS negotiation now.\r\n", c->tag);
		starttls_begin(s);
		return;
	case IMAP_LOGIN:
	case IMAP_AUTHENTICATE:
		if (!login_allowed(s)) {
			reply(s,
			      "%s NO [PRIVACYREQUIRED] Plain-text logins are disabled; use "
			      "STARTTLS first.\r\n",
			      c->tag);
			break;
		}
		login_start(s, &c->creds);
		break;
	case IMAP_NONE:
		reply(s, "%s BAD Unknown command.\r\n", c->tag);
		break;
	}
	if (s->imap != NULL)
		imap_cmd_reset(s->imap);
}

/* One step on buffered input: 1 consumed something, 0 needs more bytes. */
static int
imap_input(struct proxy_session *s)
{
	struct imap_cmd *c = s->imap;
	struct linebuf_line l;
	enum linebuf_result lr;
	enum imap_cmd_status st;
	char lit[4096];
	size_t n;
	int from_line = 0;

	if (s->imap_st == IMAP_CMD_NEED_LITERAL || s->imap_st == IMAP_CMD_DISCARD) {
		n = c->literal_left < sizeof(lit) ? (size_t)c->literal_left : sizeof(lit);
		n = linebuf_take(&s->lb, lit, n);
		if (n == 0 && c->literal_left > 0)
			return 0;
		st = imap_cmd_literal(c, lit, n);
		explicit_bzero(lit, n);
	} else {
		lr = linebuf_next_line(&s->lb, &l);
		if (lr == LINEBUF_NEED_MORE)
			return 0;
		if (lr == LINEBUF_TOO_LONG) {
			imap_cmd_reset(c);
			s->imap_st = IMAP_CMD_NEED_LINE;
			reply(s, "* BAD [TOOBIG] Command line too long.\r\n");
			return 1;
		}
		st = imap_cmd_line(c, l.data, l.len);
		from_line = 1;
	}
	s->imap_st = (int)st;
	switch (st) {
	case IMAP_CMD_NEED_LINE:
	case IMAP_CMD_DISCARD:
		break;
	case IMAP_CMD_NEED_LITERAL:
		if (from_line && c->literal_sync)
			reply(s, "+ Ready for literal data.\r\n");
		break;
	case IMAP_CMD_NEED_RESPONSE:
		reply(s, "+ \r\n");
		break;
	case IMAP_CMD_REJECT:
		reply(s, "%s %s %s%s%s%s\r\n", c->tag, c->reply == IMAP_REPLY_BAD ? "BAD" : "NO",
		      c->resp_code ? "[" : "", c->resp_code ? c->resp_code : "",
		      c->resp_code ? "] " : "", c->reason);
		if (c->close)
			session_closing(s, "protocol error");
		s->imap_st = IMAP_CMD_NEED_LINE;
		break;
	case IMAP_CMD_DONE:
		s->imap_st = IMAP_CMD_NEED_LINE;
		imap_done(s);
		break;
	}
	return 1;
}

/* ---- POP3 ---- */

static void
pop3_done(struct proxy_session *s)
{
	struct pop3_cmd *p = s->pop3;

	switch (p->name) {
	case POP3_CAPA:
		reply(s, "+OK Capability list follows.\r\n%s%s%s.\r\n",
		      login_allowed(s) ? "USER\r\nSASL PLAIN\r\n" : "",
		      starttls_offered(s) ? "STLS\r\n" : "", "IMPLEMENTATION mailplex\r\n");
		break;
	case POP3_STLS:
		if (!starttls_offered(s)) {
			reply(s, "-ERR STLS not available.\r\n");
			break;
		}
		reply(s, "+OK Begin TLS negotiation now.\r\n");
		starttls_begin(s);
		break;
	case POP3_QUIT:
		reply(s, "+OK Bye.\r\n");
		session_closing(s, "quit");
		break;
	case POP3_USER:
		if (!login_allowed(s)) {
			pop3_cmd_reset(p);
			reply(s, "-ERR [AUTH] Plain-text logins are disabled; use STLS first.\r\n");
			break;
		}
		reply(s, "+OK\r\n");
		break;
	case POP3_AUTH_LIST:
		reply(s, "+OK\r\n%s.\r\n", login_allowed(s) ? "PLAIN\r\n" : "");
		break;
	case POP3_PASS:
	case POP3_AUTH:
		if (!login_allowed(s)) {
			pop3_cmd_reset(p);
			reply(s, "-ERR [AUTH] Plain-text logins are disabled; use STLS first.\r\n");
			break;
		}
		s->tag[0] = '\0';
		login_start(s, &p->creds);
		if (s->pop3 != NULL)
			sasl_creds_wipe(&s->pop3->creds);
		break;
	case POP3_NONE:
		reply(s, "-ERR Unknown command.\r\n");
		break;
	}
}

static int
pop3_input(struct proxy_session *s)
{
	struct linebuf_line l;
	enum linebuf_result lr;

	lr = linebuf_next_line(&s->lb, &l);
	if (lr == LINEBUF_NEED_MORE)
		return 0;
	if (lr == LINEBUF_TOO_LONG) {
		reply(s, "-ERR Line too long.\r\n");
		return 1;
	}
	switch (pop3_cmd_line(s->pop3, l.data, l.len)) {
	case POP3_CMD_ERR:
		reply(s, "-ERR %s\r\n", s->pop3->reason);
		break;
	case POP3_CMD_NEED_RESPONSE:
		reply(s, "+ \r\n");
		break;
	case POP3_CMD_DONE:
		pop3_done(s);
		break;
	}
	return 1;
}

/* ---- the client's input before login ---- */

static int
client_prelogin(struct proxy_session *s)
{
	char buf[4096];
	size_t space, took;
	ssize_t n;
	int progress = 0, r;

	while (s->state == PS_PRELOGIN) {
		if (s->client.out.len - s->client.out.off > PROXY_CLIENT_OUT_MAX)
			break; /* a client that sends but never reads */
		r = s->proto == PROXY_IMAP ? imap_input(s) : pop3_input(s);
		if (r == 1) {
			progress = 1;
			continue;
		}
		space = linebuf_space(&s->lb);
		if (space == 0)
			break;
		n = proxy_conn_read(&s->client, buf, space < sizeof(buf) ? space : sizeof(buf));
		if (n == -2)
			break;
		if (n == -1) {
			proxy_session_close(s, "client read error");
			return 0;
		}
		if (n == 0) {
			proxy_session_close(s, "client closed");
			return 0;
		}
		took = linebuf_append(&s->lb, buf, (size_t)n);
		explicit_bzero(buf, (size_t)n);
		if (took < (size_t)n) {
			proxy_session_close(s, "out of memory");
			return 0;
		}
		progress = 1;
	}
	return progress;
}

static int
client_handshake(struct proxy_session *s)
{
	char err[TLS_ERR_MAX];
	int r;

	if (s->client.out.len - s->client.out.off > 0)
		return 0; /* the STARTTLS answer goes out in plain text first */
	if (s->client.ssl == NULL) {
		s->client.ssl = tls_server_new(s->ctx->tls_server, s->client.fd, err, sizeof(err));
		if (s->client.ssl == NULL) {
			log_warnx("session %llu: %s", (unsigned long long)s->id, err);
			proxy_session_close(s, "tls setup failed");
			return 0;
		}
		proxy_conn_tls_lean(s->client.ssl);
	}
	r = proxy_conn_handshake(&s->client, err, sizeof(err));
	if (r == 1)
		return 0;
	if (r == -1) {
		log_info("session %llu: client=%s tls handshake failed: %s",
		         (unsigned long long)s->id, s->peer, err);
		proxy_session_close(s, "tls handshake failed");
		return 0;
	}
	s->client_tls = 1;
	log_debug("session %llu: tls %s %s", (unsigned long long)s->id,
	          tls_version_name(s->client.ssl), tls_cipher_name(s->client.ssl));
	if (s->state == PS_CLIENT_TLS)
		greet(s);
	proxy_session_set_state(s, PS_PRELOGIN);
	return 1;
}

/* ---- events ---- */

static void
conn_events(struct proxy_session *s, struct proxy_conn *c, int ev)
{
	if (c->fd == -1 || ev == c->events)
		return;
	if (ev_io_set(s->ctx->loop, c->fd, ev, session_io, s) == -1) {
		log_warn("session %llu: ev_io_set", (unsigned long long)s->id);
		return;
	}
	c->events = ev;
}

/*
 * While the back end is being logged in to, the client waits for the answer: its EV_READ
 * stays registered as long as it is quiet, so a login costs no epoll_ctl to drop and
 * re-add it. Once it does send (pipelining, or closing), EV_READ goes until the login
 * ends, or the level-triggered loop would spin on bytes nobody reads yet.
 */
static int
client_quiet_events(const struct proxy_session *s)
{
	return (s->client.events & EV_READ) && !(s->client.ready & EV_READ) ? EV_READ : 0;
}

static void
session_events(struct proxy_session *s)
{
	int cev = 0, bev = 0;
	size_t cout = s->client.out.len - s->client.out.off;

	switch (s->state) {
	case PS_PIPE:
		proxy_pipe_events(s, &cev, &bev);
		break;
	case PS_PRELOGIN:
		if (cout <= PROXY_CLIENT_OUT_MAX)
			cev |= EV_READ;
		break;
	case PS_CLIENT_TLS:
	case PS_CLIENT_STARTTLS:
		if (s->client.ssl != NULL && s->client.rd_want == 0 && s->client.wr_want == 0)
			cev |= EV_READ;
		break;
	case PS_BE_RESOLVE:
	case PS_FAIL_DELAY:
		cev = client_quiet_events(s);
		break;
	case PS_BE_CONNECT:
		cev = client_quiet_events(s);
		bev = proxy_backend_connect_events(s);
		break;
	case PS_BE_TLS:
		cev = client_quiet_events(s);
		if (s->be.rd_want == 0 && s->be.wr_want == 0)
			bev |= EV_READ;
		break;
	case PS_BE_GREETING:
	case PS_BE_STARTTLS:
	case PS_BE_ADDR:
	case PS_BE_LOGIN:
		cev = client_quiet_events(s);
		bev |= EV_READ;
		break;
	default:
		break;
	}
	if (s->state != PS_PIPE) {
		if (cout > 0)
			cev |= EV_WRITE;
		if (s->be.out.len - s->be.out.off > 0)
			bev |= EV_WRITE;
		cev |= s->client.rd_want | s->client.wr_want;
		bev |= s->be.rd_want | s->be.wr_want;
	}
	conn_events(s, &s->client, cev);
	conn_events(s, &s->be, bev);
}

static void
session_free(struct proxy_session *s)
{
	struct proxy_ctx *ctx = s->ctx;

	ev_timer_stop(ctx->loop, &s->timer);
	proxy_conn_close(ctx, &s->client);
	proxy_conn_close(ctx, &s->be);
	linebuf_free(&s->lb);
	linebuf_free(&s->be_lb);
	if (s->imap != NULL) {
		imap_cmd_reset(s->imap);
		free(s->imap);
	}
	if (s->pop3 != NULL) {
		pop3_cmd_reset(s->pop3);
		free(s->pop3);
	}
	creds_drop(s);
	free(s->held_reply);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		ctx->sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	ipcount_del(&ctx->ips, &s->peer_ss);
	ctx->nsessions--;
	free(s);
	proxy_accept_resume(ctx);
}

/* The one teardown: logs the reason and the byte counts; freed when the run unwinds. */
void
proxy_session_close(struct proxy_session *s, const char *reason)
{
	if (s->state == PS_DEAD)
		return;
	log_info("session %llu: close client=%s user=%s backend=%s state=%s reason=%s "
	         "to_client=%llu to_backend=%llu duration=%llums",
	         (unsigned long long)s->id, s->peer, s->user[0] ? s->user : "-",
	         s->be_name[0] ? s->be_name : "-", proxy_state_name(s->state), reason,
	         (unsigned long long)s->client.bytes, (unsigned long long)s->be.bytes,
	         (unsigned long long)(ev_now_ms(s->ctx->loop) - s->start_ms));
	proxy_session_set_state(s, PS_DEAD);
	ev_timer_stop(s->ctx->loop, &s->timer);
	proxy_conn_close(s->ctx, &s->client);
	proxy_conn_close(s->ctx, &s->be);
}

void
proxy_session_run(struct proxy_session *s)
{
	const char *reason = NULL;
	int progress, r;

	do {
		progress = 0;
		if (s->state == PS_DEAD)
			break;
		if (s->state == PS_PIPE) {
			r = proxy_pipe_step(s, &reason);
			if (r == -1) {
				proxy_session_close(s, reason);
				break;
			}
			if (r == 1)
				ev_timer_start(s->ctx->loop, &s->timer, pconf(s)->idle_timeout_ms,
				               session_timeout, s);
			progress = r;
			continue;
		}
		if ((r = proxy_conn_flush(&s->client)) == -1) {
			proxy_session_close(s, "client write error");
			break;
		}
		progress |= r;
		if (s->be.fd != -1 && s->state != PS_BE_CONNECT) {
			if ((r = proxy_conn_flush(&s->be)) == -1) {
				proxy_session_temp_fail(s, "backend-write-error");
				continue;
			}
			progress |= r;
		}
		switch (s->state) {
		case PS_CLOSING:
			if (s->client.out.len - s->client.out.off == 0)
				proxy_session_close(s, s->close_reason);
			break;
		case PS_CLIENT_TLS:
		case PS_CLIENT_STARTTLS:
			progress |= client_handshake(s);
			break;
		case PS_PRELOGIN:
			progress |= client_prelogin(s);
			break;
		case PS_BE_TLS:
		case PS_BE_GREETING:
		case PS_BE_STARTTLS:
		case PS_BE_ADDR:
		case PS_BE_LOGIN:
			progress |= proxy_backend_step(s);
			break;
		default:
			break;
		}
	} while (progress);
	if (s->state == PS_DEAD) {
		session_free(s);
		return;
	}
	session_events(s);
}

static void
session_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct proxy_session *s = arg;

	if (fd == s->client.fd)
		s->client.ready |= events;
	else if (fd == s->be.fd)
		s->be.ready |= events;
	if (s->state == PS_BE_CONNECT && fd == s->be.fd)
		proxy_backend_connect_done(s);
	proxy_session_run(s);
}

static void
session_timeout(struct ev_loop *loop, void *arg)
{
	struct proxy_session *s = arg;

	switch (s->state) {
	case PS_CLIENT_TLS:
	case PS_CLIENT_STARTTLS:
		proxy_session_close(s, "pre-login timeout");
		break;
	case PS_PRELOGIN:
		if (s->proto == PROXY_IMAP)
			reply(s, "* BYE Disconnected for inactivity.\r\n");
		else
			reply(s, "-ERR Disconnected for inactivity.\r\n");
		session_closing(s, "pre-login timeout");
		break;
	case PS_BE_RESOLVE:
	case PS_BE_CONNECT:
	case PS_BE_TLS:
	case PS_BE_GREETING:
	case PS_BE_STARTTLS:
	case PS_BE_ADDR:
	case PS_BE_LOGIN:
		proxy_backend_timeout(s);
		break;
	case PS_FAIL_DELAY:
		fail_delay_done(s);
		break;
	case PS_PIPE:
		proxy_session_close(s, "idle timeout");
		break;
	case PS_CLOSING:
		proxy_session_close(s, s->close_reason);
		break;
	case PS_DEAD:
		break;
	}
	proxy_session_run(s);
}

void
proxy_session_new(struct proxy_ctx *ctx, int fd, const struct proxy_listener *l,
                  const struct sockaddr_storage *peer)
{
	const struct mailplex_conf_proxy *pc = &ctx->conf->proxy;
	struct proxy_session *s;
	char err[TLS_ERR_MAX];
	size_t line_max;

	if ((s = calloc(1, sizeof(*s))) == NULL) {
		log_warnx("accept on %s: out of memory", l->addr);
		close(fd);
		ipcount_del(&ctx->ips, peer);
		return;
	}
	s->ctx = ctx;
	s->id = ++ctx->next_id;
	s->proto = l->proto;
	s->listener = l;
	s->peer_ss = *peer;
	s->start_ms = ev_now_ms(ctx->loop);
	s->state = PS_PRELOGIN;
	s->imap_st = IMAP_CMD_NEED_LINE;
	ev_timer_init(&s->timer);
	if (sock_addr_format((const struct sockaddr *)peer, s->peer, sizeof(s->peer)) == -1)
		str_copy(s->peer, sizeof(s->peer), "?");
	proxy_conn_init(&s->client);
	proxy_conn_init(&s->be);
	s->client.fd = fd;
	s->next = ctx->sessions;
	if (ctx->sessions != NULL)
		ctx->sessions->prev = s;
	ctx->sessions = s;
	ctx->nsessions++;

	line_max = (size_t)pc->line_max;
	if (s->proto == PROXY_IMAP) {
		s->imap = malloc(sizeof(*s->imap));
		if (s->imap != NULL)
			imap_cmd_init(s->imap, pc->literal_max);
	} else {
		if (line_max > POP3_LINE_MAX_CEILING)
			line_max = POP3_LINE_MAX_CEILING;
		s->pop3 = malloc(sizeof(*s->pop3));
		if (s->pop3 != NULL)
			pop3_cmd_init(s->pop3, line_max);
	}
	linebuf_init(&s->lb, 256, line_max);
	log_debug("session %llu: accepted client=%s on %s", (unsigned long long)s->id, s->peer,
	          l->addr);
	if (s->imap == NULL && s->pop3 == NULL) {
		proxy_session_close(s, "out of memory");
	} else if (l->implicit_tls) {
		s->client.ssl = tls_server_new(ctx->tls_server, fd, err, sizeof(err));
		if (s->client.ssl == NULL) {
			log_warnx("session %llu: %s", (unsigned long long)s->id, err);
			proxy_session_close(s, "tls setup failed");
		} else {
			proxy_conn_tls_lean(s->client.ssl);
			proxy_session_set_state(s, PS_CLIENT_TLS);
		}
	} else {
		greet(s);
		proxy_session_set_state(s, PS_PRELOGIN);
	}
	proxy_session_run(s);
}
