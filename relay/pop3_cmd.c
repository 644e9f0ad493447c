/*
 * POP3 AUTHORIZATION-state commands (RFC 1939 4 and 7, RFC 2449, RFC 2595, RFC 5034).
 * Owns the command table, the USER-then-PASS pairing and the AUTH PLAIN exchange.
 * It must never read a socket, never accept a line over its bound, and never let a
 * credential reach a reason string.
 */
#include <string.h>
#include <strings.h>

#include "pop3_cmd.h"
#include "util.h"

enum pop3_state {
	POP3_ST_COMMAND,
	POP3_ST_AUTH_RESPONSE, /* "+ " was sent; the next line is the client's response */
};

struct pop3_arg {
	const char *p; /* everything after the keyword's SP; NULL if there was none */
	size_t len;
};

static enum pop3_cmd_status pop3_do_noarg(struct pop3_cmd *, const struct pop3_arg *);
static enum pop3_cmd_status pop3_do_user(struct pop3_cmd *, const struct pop3_arg *);
static enum pop3_cmd_status pop3_do_pass(struct pop3_cmd *, const struct pop3_arg *);
static enum pop3_cmd_status pop3_do_auth(struct pop3_cmd *, const struct pop3_arg *);
static enum pop3_cmd_status pop3_do_wrong_state(struct pop3_cmd *, const struct pop3_arg *);
static enum pop3_cmd_status pop3_do_apop(struct pop3_cmd *, const struct pop3_arg *);

static const struct pop3_cmd_entry {
	const char *keyword;
	enum pop3_cmd_name name;
	enum pop3_cmd_status (*run)(struct pop3_cmd *, const struct pop3_arg *);
} pop3_cmd_table[] = {
    {"CAPA", POP3_CAPA, pop3_do_noarg}, /* RFC 2449 5 */
    {"STLS", POP3_STLS, pop3_do_noarg}, /* RFC 2595 4 */
    {"QUIT", POP3_QUIT, pop3_do_noarg}, /* RFC 1939 5 */
    {"USER", POP3_USER, pop3_do_user},  /* RFC 1939 7 */
    {"PASS", POP3_PASS, pop3_do_pass},  /* RFC 1939 7 */
    {"AUTH", POP3_AUTH, pop3_do_auth},  /* RFC 5034 4 */
    {"APOP", POP3_NONE, pop3_do_apop},
    /*
     * RFC 1939 5: these, NOOP included, "may only be given in the TRANSACTION state".
     * We answer -ERR rather than pretend: a client that sends NOOP before login to
     * keep the connection alive gets a clear reason and stays connected.
     */
    {"STAT", POP3_NONE, pop3_do_wrong_state},
    {"LIST", POP3_NONE, pop3_do_wrong_state},
    {"RETR", POP3_NONE, pop3_do_wrong_state},
    {"DELE", POP3_NONE, pop3_do_wrong_state},
    {"NOOP", POP3_NONE, pop3_do_wrong_state},
    {"RSET", POP3_NONE, pop3_do_wrong_state},
    {"TOP", POP3_NONE, pop3_do_wrong_state},
    {"UIDL", POP3_NONE, pop3_do_wrong_state},
};

static enum pop3_cmd_status
pop3_err(struct pop3_cmd *c, const char *reason)
{
	c->reason = reason;
	c->state = POP3_ST_COMMAND;
	return POP3_CMD_ERR;
}

static enum pop3_cmd_status
pop3_do_noarg(struct pop3_cmd *c, const struct pop3_arg *arg)
{
	if (arg->p != NULL)
		return pop3_err(c, "this command takes no argument");
	return POP3_CMD_DONE;
}

static enum pop3_cmd_status
pop3_do_wrong_state(struct pop3_cmd *c, const struct pop3_arg *arg)
{
	return pop3_err(c, "command not valid before login");
}

static enum pop3_cmd_status
pop3_do_apop(struct pop3_cmd *c, const struct pop3_arg *arg)
{
	/* RFC 1939 7: APOP needs a timestamp in the greeting; ours carries none. */
	return pop3_err(c, "APOP not supported");
}

static enum pop3_cmd_status
pop3_do_user(struct pop3_cmd *c, const struct pop3_arg *arg)
{
	size_t i;

	sasl_creds_wipe(&c->creds);
	if (arg->p == NULL || arg->len == 0)
		return pop3_err(c, "USER needs a name");
	if (arg->len > SASL_USER_MAX)
		return pop3_err(c, "user name too long");
	for (i = 0; i < arg->len; i++) {
		/* RFC 1939 7: USER takes one argument, so no space inside it. */
		if (arg->p[i] == ' ')
			return pop3_err(c, "USER takes one argument");
		if (!sasl_user_byte_ok((unsigned char)arg->p[i]))
			return pop3_err(c, "user name contains control characters");
	}
	memcpy(c->creds.user, arg->p, arg->len);
	c->creds.user[arg->len] = '\0';
	c->creds.user_len = arg->len;
	c->have_user = 1;
	return POP3_CMD_DONE;
}

static enum pop3_cmd_status
pop3_do_pass(struct pop3_cmd *c, const struct pop3_arg *arg)
{
	size_t i;

	/* RFC 1939 7: PASS only immediately after a successful USER. */
	if (!c->have_user)
		return pop3_err(c, "USER first");
	c->have_user = 0;
	/*
	 * RFC 1939 7: PASS has exactly one argument, so spaces in it are part of the
	 * password: the argument is the whole rest of the line.
	 */
	if (arg->p == NULL || arg->len == 0)
		return pop3_err(c, "PASS needs a password");
	if (arg->len > SASL_PASS_MAX)
		return pop3_err(c, "password too long");
	for (i = 0; i < arg->len; i++)
		if (!sasl_pass_byte_ok((unsigned char)arg->p[i]))
			return pop3_err(c, "password contains NUL, CR or LF");
	memcpy(c->creds.pass, arg->p, arg->len);
	c->creds.pass[arg->len] = '\0';
	c->creds.pass_len = arg->len;
	return POP3_CMD_DONE;
}

static enum pop3_cmd_status
pop3_plain_response(struct pop3_cmd *c, const char *b64, size_t len)
{
	const char *reason;

	c->name = POP3_AUTH;
	/* RFC 5034 4: a bad base64 string or a failed exchange is answered -ERR. */
	if (sasl_plain_decode(b64, len, &c->creds, &reason) != SASL_PLAIN_OK)
		return pop3_err(c, reason);
	c->state = POP3_ST_COMMAND;
	return POP3_CMD_DONE;
}

static enum pop3_cmd_status
pop3_do_auth(struct pop3_cmd *c, const struct pop3_arg *arg)
{
	const char *sp;
	size_t mlen;

	sasl_creds_wipe(&c->creds);
	if (arg->p == NULL) {
		/* AUTH alone lists the mechanisms (RFC 1734 practice; Outlook relies on it). */
		c->name = POP3_AUTH_LIST;
		return POP3_CMD_DONE;
	}
	sp = memchr(arg->p, ' ', arg->len);
	mlen = sp != NULL ? (size_t)(sp - arg->p) : arg->len;
	if (mlen != 5 || strncasecmp(arg->p, "PLAIN", 5) != 0)
		return pop3_err(c, "unsupported authentication mechanism");
	if (sp == NULL) {
		/* RFC 5034 4: no initial response, so the server sends an empty challenge. */
		c->state = POP3_ST_AUTH_RESPONSE;
		return POP3_CMD_NEED_RESPONSE;
	}
	if (arg->len == mlen + 1)
		return pop3_err(c, "malformed initial response");
	/* RFC 5034 4: "=" is an initial response of zero length. */
	if (arg->len == mlen + 2 && sp[1] == '=')
		return pop3_plain_response(c, sp + 1, 0);
	return pop3_plain_response(c, sp + 1, arg->len - mlen - 1);
}

static enum pop3_cmd_status
pop3_auth_line(struct pop3_cmd *c, const char *line, size_t len)
{
	c->name = POP3_AUTH;
	/* RFC 5034 4: "*" cancels the exchange, and the server answers -ERR. */
	if (len == 1 && line[0] == '*')
		return pop3_err(c, "authentication cancelled");
	if (len > SASL_PLAIN_B64_MAX)
		return pop3_err(c, "response too long");
	return pop3_plain_response(c, line, len);
}

void
pop3_cmd_reset(struct pop3_cmd *c)
{
	size_t line_max = c->line_max;

	explicit_bzero(c, sizeof(*c));
	c->line_max = line_max;
	c->state = POP3_ST_COMMAND;
}

void
pop3_cmd_init(struct pop3_cmd *c, size_t line_max)
{
	if (line_max == 0)
		line_max = POP3_LINE_MAX_DEFAULT;
	/* RFC 2449 4: never below what every client may send. */
	if (line_max < 255)
		line_max = 255;
	if (line_max > POP3_LINE_MAX_CEILING)
		line_max = POP3_LINE_MAX_CEILING;
	c->line_max = line_max;
	pop3_cmd_reset(c);
}

enum pop3_cmd_status
pop3_cmd_line(struct pop3_cmd *c, const char *line, size_t len)
{
	const struct pop3_cmd_entry *e;
	struct pop3_arg arg = {NULL, 0};
	size_t i, kwlen;
	int had_user = c->have_user;

	c->reason = NULL;
	c->name = POP3_NONE;
	c->have_user = 0;
	if (memchr(line, '\0', len) != NULL)
		return pop3_err(c, "NUL in command line");
	if (c->state == POP3_ST_AUTH_RESPONSE)
		return pop3_auth_line(c, line, len);
	/* RFC 2449 4: the bound counts the CRLF the session has stripped. */
	if (len > c->line_max - 2)
		return pop3_err(c, "command line too long");
	for (kwlen = 0; kwlen < len && line[kwlen] != ' '; kwlen++)
		;
	if (kwlen < len) {
		arg.p = line + kwlen + 1;
		arg.len = len - kwlen - 1;
	}
	for (i = 0; i < ARRAY_LEN(pop3_cmd_table); i++) {
		e = &pop3_cmd_table[i];
		/* RFC 1939 3: keywords are case-insensitive. */
		if (strlen(e->keyword) == kwlen && strncasecmp(e->keyword, line, kwlen) == 0) {
			c->name = e->name;
			c->have_user = had_user && e->name == POP3_PASS;
			return e->run(c, &arg);
		}
	}
	return pop3_err(c, kwlen == 0 ? "empty command" : "unknown command");
}
