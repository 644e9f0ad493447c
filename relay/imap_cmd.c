/*
 * IMAP4 pre-login command parser (RFC 9051 9 grammar, RFC 3501 compatible subset).
 * Owns the command state between lines and literals: which argument comes next, where
 * literal bytes go, and how much of a refused command is still to be skipped. It must
 * never read a socket, never look past len, and never copy a password into a reason.
 */
#include <string.h>
#include <strings.h>

#include "imap_cmd.h"
#include "util.h"

enum imap_state {
	IMAP_ST_COMMAND,         /* the next line starts a command */
	IMAP_ST_ARGS,            /* the next line continues the arguments after a literal */
	IMAP_ST_LITERAL,         /* literal bytes go into c->slot */
	IMAP_ST_SASL,            /* the next line is an AUTHENTICATE response */
	IMAP_ST_DISCARD_LITERAL, /* literal bytes of a refused command */
	IMAP_ST_DISCARD_LINE,    /* the rest of a refused command's line */
	IMAP_ST_FINAL,           /* DONE or REJECT was returned */
};

/* Where argument parsing resumes; each step consumes its own leading SP. */
enum imap_step {
	IMAP_STEP_EOL,
	IMAP_STEP_LOGIN_USER,
	IMAP_STEP_LOGIN_PASS,
	IMAP_STEP_ID_OPEN,
	IMAP_STEP_ID_FIRST,
	IMAP_STEP_ID_VALUE,
	IMAP_STEP_ID_NEXT,
	IMAP_STEP_AUTH_MECH,
	IMAP_STEP_AUTH_IR,
};

enum imap_slot {
	IMAP_SLOT_USER,
	IMAP_SLOT_PASS,
	IMAP_SLOT_ID_FIELD,
	IMAP_SLOT_ID_VALUE,
};

#define IMAP_STR_ASTRING 0x01 /* an atom is allowed too (astring) */
#define IMAP_STR_NIL     0x02 /* NIL is allowed (nstring) */

struct imap_cur {
	const char *line;
	size_t len;
	size_t pos;
};

static const struct imap_cmd_entry {
	const char *name;
	enum imap_cmd_name id;
	enum imap_step first;
} imap_cmd_table[] = {
    {"CAPABILITY", IMAP_CAPABILITY, IMAP_STEP_EOL},
    {"NOOP", IMAP_NOOP, IMAP_STEP_EOL},
    {"LOGOUT", IMAP_LOGOUT, IMAP_STEP_EOL},
    {"STARTTLS", IMAP_STARTTLS, IMAP_STEP_EOL},
    {"ID", IMAP_ID, IMAP_STEP_ID_OPEN},
    {"LOGIN", IMAP_LOGIN, IMAP_STEP_LOGIN_USER},
    {"AUTHENTICATE", IMAP_AUTHENTICATE, IMAP_STEP_AUTH_MECH},
};

/* RFC 9051 9: ATOM-CHAR is any CHAR except atom-specials (CTL, SP, 8-bit excluded). */
static int
imap_atom_char(unsigned char ch)
{
	if (ch <= 0x20 || ch >= 0x7f)
		return 0;
	return strchr("(){%*\"\\]", ch) == NULL;
}

/* RFC 9051 9: ASTRING-CHAR = ATOM-CHAR / resp-specials. */
static int
imap_astring_char(unsigned char ch)
{
	return ch == ']' || imap_atom_char(ch);
}

/* RFC 9051 9: tag = 1*<any ASTRING-CHAR except "+">. */
static int
imap_tag_char(unsigned char ch)
{
	return ch != '+' && imap_astring_char(ch);
}

static enum imap_cmd_status
imap_final(struct imap_cmd *c, enum imap_cmd_status st)
{
	c->state = IMAP_ST_FINAL;
	return st;
}

/* A caller that breaks the protocol of this API: nothing more can be trusted. */
static enum imap_cmd_status
imap_misuse(struct imap_cmd *c, const char *reason)
{
	c->reply = IMAP_REPLY_BAD;
	c->resp_code = NULL;
	c->reason = reason;
	c->close = 1;
	return imap_final(c, IMAP_CMD_REJECT);
}

/*
 * Does the line end in a literal announcement "{N}" or "{N+}"? 1 with *n, *sync and
 * *brace (offset of the '{') set,
 * 0 if not, -1 if it does but N is beyond number64 (RFC 9051 9), so the bytes that follow
 * cannot be counted.
 */
static int
imap_literal_tail(const char *line, size_t len, uint64_t *n, int *sync, size_t *brace)
{
	size_t end, start, i;
	uint64_t v = 0;

	if (len < 3 || line[len - 1] != '}')
		return 0;
	end = len - 1;
	*sync = 1;
	if (line[end - 1] == '+') {
		*sync = 0;
		end--;
	}
	start = end;
	while (start > 0 && line[start - 1] >= '0' && line[start - 1] <= '9')
		start--;
	if (start == end || start == 0 || line[start - 1] != '{')
		return 0;
	for (i = start; i < end; i++) {
		unsigned d = (unsigned)(line[i] - '0');

		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*n = v;
	*brace = start - 1;
	return 1;
}

/*
 * The command is refused. If its line announces a literal, the client may be sending it
 * regardless: a non-synchronising one (RFC 7888 4) is on its way and must be skipped
 * before the next command, or its bytes would be read as commands. A synchronising one
 * is never sent: the client waits for "+" and gets the refusal (RFC 9051 7.5).
 */
static enum imap_cmd_status
imap_discard_tail(struct imap_cmd *c, const char *line, size_t len)
{
	uint64_t n;
	size_t brace;
	int sync, r;

	if (line == NULL || (r = imap_literal_tail(line, len, &n, &sync, &brace)) == 0)
		return imap_final(c, IMAP_CMD_REJECT);
	if (r == -1 || ++c->nliterals > IMAP_CMD_LITERALS_MAX) {
		c->close = 1;
		return imap_final(c, IMAP_CMD_REJECT);
	}
	if (sync)
		return imap_final(c, IMAP_CMD_REJECT);
	c->literal_left = n;
	c->literal_sync = 0;
	if (n == 0) {
		c->state = IMAP_ST_DISCARD_LINE;
		return IMAP_CMD_NEED_LINE;
	}
	c->state = IMAP_ST_DISCARD_LITERAL;
	return IMAP_CMD_DISCARD;
}

/* line: the command line being parsed (NULL for a SASL response line). */
static enum imap_cmd_status
imap_reject(struct imap_cmd *c, const char *line, size_t len, enum imap_cmd_reply reply,
            const char *code, const char *reason)
{
	c->reply = reply;
	c->resp_code = code;
	c->reason = reason;
	return imap_discard_tail(c, line, len);
}

static enum imap_cmd_status
imap_bad(struct imap_cmd *c, const struct imap_cur *cur, const char *reason)
{
	return imap_reject(c, cur->line, cur->len, IMAP_REPLY_BAD, NULL, reason);
}

static int
imap_sp(struct imap_cur *cur)
{
	if (cur->pos < cur->len && cur->line[cur->pos] == ' ') {
		cur->pos++;
		return 1;
	}
	return 0;
}

static int
imap_is_nil(const struct imap_cur *cur)
{
	size_t p = cur->pos;

	return cur->len - p >= 3 && strncasecmp(cur->line + p, "NIL", 3) == 0 &&
	       (p + 3 == cur->len || !imap_atom_char((unsigned char)cur->line[p + 3]));
}

/* ---- slots: where a string argument's bytes are stored ---- */

static size_t
imap_slot_cap(const struct imap_cmd *c, enum imap_slot slot)
{
	size_t left;

	switch (slot) {
	case IMAP_SLOT_USER:
		return SASL_USER_MAX;
	case IMAP_SLOT_PASS:
		return SASL_PASS_MAX;
	case IMAP_SLOT_ID_FIELD:
		return IMAP_ID_FIELD_MAX;
	case IMAP_SLOT_ID_VALUE:
		/* One byte of the arena is kept for each value's terminating NUL. */
		left = c->id_used < IMAP_ID_BYTES_MAX ? IMAP_ID_BYTES_MAX - c->id_used - 1 : 0;
		return left < IMAP_ID_VALUE_MAX ? left : IMAP_ID_VALUE_MAX;
	}
	return 0;
}

static const char *
imap_slot_too_long(enum imap_slot slot)
{
	switch (slot) {
	case IMAP_SLOT_USER:
		return "user name too long";
	case IMAP_SLOT_PASS:
		return "password too long";
	case IMAP_SLOT_ID_FIELD:
		return "ID field longer than 30 octets (RFC 2971 3.3)";
	case IMAP_SLOT_ID_VALUE:
		return "ID value too long (RFC 2971 3.3)";
	}
	return "argument too long";
}

static char *
imap_slot_buf(struct imap_cmd *c, enum imap_slot slot, size_t **lenp)
{
	struct imap_id_pair *pair = &c->id[c->id_npairs];

	switch (slot) {
	case IMAP_SLOT_USER:
		*lenp = &c->creds.user_len;
		return c->creds.user;
	case IMAP_SLOT_PASS:
		*lenp = &c->creds.pass_len;
		return c->creds.pass;
	case IMAP_SLOT_ID_FIELD:
		*lenp = &pair->field_len;
		return pair->field;
	case IMAP_SLOT_ID_VALUE:
		break;
	}
	*lenp = &pair->value_len;
	return c->id_values + pair->value_off;
}

static void
imap_slot_begin(struct imap_cmd *c, enum imap_slot slot)
{
	size_t *lenp;

	c->slot = slot;
	if (slot == IMAP_SLOT_ID_VALUE) {
		c->id[c->id_npairs].value_off = c->id_used;
		c->id[c->id_npairs].value_nil = 0;
	}
	(void)imap_slot_buf(c, slot, &lenp);
	*lenp = 0;
}

/* 0, or -1 with *reason: over the slot's bound or a byte the slot refuses. */
static int
imap_slot_append(struct imap_cmd *c, const unsigned char *p, size_t n, const char **reason)
{
	enum imap_slot slot = (enum imap_slot)c->slot;
	size_t *lenp, i;
	char *buf = imap_slot_buf(c, slot, &lenp);

	if (n > imap_slot_cap(c, slot) - *lenp) {
		*reason = imap_slot_too_long(slot);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (slot == IMAP_SLOT_USER && !sasl_user_byte_ok(p[i])) {
			*reason = "user name contains control characters";
			return -1;
		}
		/* A CR or LF in a value could end a line when it is logged or forwarded. */
		if (slot != IMAP_SLOT_USER && !sasl_pass_byte_ok(p[i])) {
			*reason = slot == IMAP_SLOT_PASS ? "password contains NUL, CR or LF"
			                                 : "ID string contains NUL, CR or LF";
			return -1;
		}
	}
	memcpy(buf + *lenp, p, n);
	*lenp += n;
	return 0;
}

static void
imap_slot_end(struct imap_cmd *c)
{
	size_t *lenp;
	char *buf = imap_slot_buf(c, (enum imap_slot)c->slot, &lenp);

	buf[*lenp] = '\0';
	if (c->slot == IMAP_SLOT_ID_VALUE) {
		c->id_used += *lenp + 1;
		c->id_npairs++;
	}
}

/* ---- string arguments: atom, quoted, literal, NIL ---- */

static int
imap_quoted(struct imap_cmd *c, struct imap_cur *cur, const char **reason)
{
	unsigned char ch;

	cur->pos++; /* DQUOTE */
	for (;;) {
		if (cur->pos >= cur->len) {
			*reason = "unterminated quoted string";
			return -1;
		}
		ch = (unsigned char)cur->line[cur->pos++];
		if (ch == '"')
			return 0;
		if (ch == '\0') {
			*reason = "NUL in quoted string";
			return -1;
		}
		if (ch == '\\') {
			/* RFC 9051 9: only quoted-specials may follow the backslash. */
			if (cur->pos >= cur->len ||
			    (cur->line[cur->pos] != '"' && cur->line[cur->pos] != '\\')) {
				*reason = "invalid escape in quoted string";
				return -1;
			}
			ch = (unsigned char)cur->line[cur->pos++];
		}
		if (imap_slot_append(c, &ch, 1, reason) == -1)
			return -1;
	}
}

/*
 * A literal announcement "{N}" or "{N+}" (RFC 9051 4.3, RFC 7888) at cur; it must end
 * the line. Returns 1 with *st set (NEED_LITERAL, NEED_LINE or a refusal).
 */
static int
imap_literal_open(struct imap_cmd *c, struct imap_cur *cur, enum imap_slot slot,
                  enum imap_step next, enum imap_cmd_status *st)
{
	uint64_t n;
	size_t brace;
	int sync;

	if (imap_literal_tail(cur->line, cur->len, &n, &sync, &brace) != 1 || brace != cur->pos) {
		*st = imap_bad(c, cur, "invalid literal or literal not at the end of the line");
		return 1;
	}
	if (c->nliterals >= IMAP_CMD_LITERALS_MAX) {
		c->close = 1;
		*st = imap_bad(c, cur, "too many literals in one command");
		return 1;
	}
	if (n > c->literal_max) {
		/* RFC 9051 7.1 TOOBIG; RFC 7888 4: a LITERAL- server refuses with BAD. */
		*st = imap_reject(c, cur->line, cur->len, IMAP_REPLY_BAD, "TOOBIG",
		                  "literal too big before login");
		return 1;
	}
	if (n > imap_slot_cap(c, slot)) {
		*st = imap_bad(c, cur, imap_slot_too_long(slot));
		return 1;
	}
	c->nliterals++;
	imap_slot_begin(c, slot);
	c->step = next;
	c->literal_left = n;
	c->literal_sync = sync;
	if (n == 0 && !sync) {
		imap_slot_end(c);
		c->state = IMAP_ST_ARGS;
		*st = IMAP_CMD_NEED_LINE;
		return 1;
	}
	c->state = IMAP_ST_LITERAL;
	*st = IMAP_CMD_NEED_LITERAL;
	return 1;
}

/*
 * One string argument into slot. Returns 0 when it was read from this line (c->step is
 * next), 1 when the caller must return *st (a literal is wanted, or a refusal).
 */
static int
imap_string(struct imap_cmd *c, struct imap_cur *cur, enum imap_slot slot, int flags,
            enum imap_step next, enum imap_cmd_status *st)
{
	const char *reason = NULL;
	unsigned char ch;
	size_t start;

	if (cur->pos >= cur->len) {
		*st = imap_bad(c, cur, "missing argument");
		return 1;
	}
	ch = (unsigned char)cur->line[cur->pos];
	if (ch == '{')
		return imap_literal_open(c, cur, slot, next, st);
	if ((flags & IMAP_STR_NIL) && imap_is_nil(cur)) {
		struct imap_id_pair *pair = &c->id[c->id_npairs];

		cur->pos += 3;
		pair->value_nil = 1;
		pair->value_off = c->id_used;
		pair->value_len = 0;
		c->id_npairs++;
		c->step = next;
		return 0;
	}
	imap_slot_begin(c, slot);
	if (ch == '"') {
		if (imap_quoted(c, cur, &reason) == -1) {
			*st = imap_bad(c, cur, reason);
			return 1;
		}
	} else if ((flags & IMAP_STR_ASTRING) && imap_astring_char(ch)) {
		start = cur->pos;
		while (cur->pos < cur->len && imap_astring_char((unsigned char)cur->line[cur->pos]))
			cur->pos++;
		if (imap_slot_append(c, (const unsigned char *)cur->line + start, cur->pos - start,
		                     &reason) == -1) {
			*st = imap_bad(c, cur, reason);
			return 1;
		}
	} else {
		*st = imap_bad(c, cur, "expected a string");
		return 1;
	}
	imap_slot_end(c);
	c->step = next;
	return 0;
}

/* ---- commands ---- */

static enum imap_cmd_status
imap_sasl_response(struct imap_cmd *c, const char *b64, size_t len, const char *cmdline,
                   size_t cmdlen)
{
	const char *reason;

	switch (sasl_plain_decode(b64, len, &c->creds, &reason)) {
	case SASL_PLAIN_OK:
		return imap_final(c, IMAP_CMD_DONE);
	case SASL_PLAIN_BAD_BASE64:
		/* RFC 9051 6.2.2: an invalid base64 string is refused with a tagged BAD. */
		return imap_reject(c, cmdline, cmdlen, IMAP_REPLY_BAD, NULL, reason);
	case SASL_PLAIN_AUTHZ_DENIED:
		/* RFC 5530 3: the authzid was refused, not the credentials. */
		return imap_reject(c, cmdline, cmdlen, IMAP_REPLY_NO, "AUTHORIZATIONFAILED",
		                   reason);
	case SASL_PLAIN_BAD_MESSAGE:
		break;
	}
	/* RFC 9051 6.2.2: NO for an authentication failure. */
	return imap_reject(c, cmdline, cmdlen, IMAP_REPLY_NO, "AUTHENTICATIONFAILED", reason);
}

static enum imap_cmd_status
imap_auth_ir(struct imap_cmd *c, struct imap_cur *cur)
{
	const char *ir = cur->line + cur->pos;
	size_t len = cur->len - cur->pos;

	if (len == 0) {
		/* RFC 9051 6.2.2: no initial response, so the server sends "+ " first. */
		c->state = IMAP_ST_SASL;
		return IMAP_CMD_NEED_RESPONSE;
	}
	if (!imap_sp(cur) || cur->pos == cur->len)
		return imap_bad(c, cur, "malformed initial response");
	ir = cur->line + cur->pos;
	len = cur->len - cur->pos;
	/* RFC 4959 3: "=" is an initial response of zero length. */
	if (len == 1 && ir[0] == '=')
		len = 0;
	return imap_sasl_response(c, ir, len, cur->line, cur->len);
}

static enum imap_cmd_status
imap_args(struct imap_cmd *c, struct imap_cur *cur)
{
	enum imap_cmd_status st;
	size_t start;

	for (;;) {
		switch ((enum imap_step)c->step) {
		case IMAP_STEP_EOL:
			if (cur->pos != cur->len)
				return imap_bad(c, cur, "unexpected characters after the command");
			return imap_final(c, IMAP_CMD_DONE);
		case IMAP_STEP_LOGIN_USER:
		case IMAP_STEP_LOGIN_PASS:
			/* RFC 9051 6.2.3: LOGIN SP userid SP password, both astring. */
			if (!imap_sp(cur))
				return imap_bad(c, cur, "LOGIN needs a user name and a password");
			if (c->step == IMAP_STEP_LOGIN_USER) {
				if (imap_string(c, cur, IMAP_SLOT_USER, IMAP_STR_ASTRING,
				                IMAP_STEP_LOGIN_PASS, &st))
					return st;
			} else if (imap_string(c, cur, IMAP_SLOT_PASS, IMAP_STR_ASTRING,
			                       IMAP_STEP_EOL, &st)) {
				return st;
			}
			break;
		case IMAP_STEP_ID_OPEN:
			/* RFC 2971 4: "ID" SP ( "(" pairs ")" / NIL ). */
			if (!imap_sp(cur))
				return imap_bad(c, cur, "ID needs a parameter list or NIL");
			if (imap_is_nil(cur)) {
				cur->pos += 3;
				c->id_nil = 1;
				c->step = IMAP_STEP_EOL;
			} else if (cur->pos < cur->len && cur->line[cur->pos] == '(') {
				cur->pos++;
				c->step = IMAP_STEP_ID_FIRST;
			} else {
				return imap_bad(c, cur, "ID needs a parameter list or NIL");
			}
			break;
		case IMAP_STEP_ID_FIRST:
		case IMAP_STEP_ID_NEXT:
			if (cur->pos < cur->len && cur->line[cur->pos] == ')') {
				cur->pos++;
				c->step = IMAP_STEP_EOL;
				break;
			}
			if (c->step == IMAP_STEP_ID_NEXT && !imap_sp(cur))
				return imap_bad(c, cur, "malformed ID parameter list");
			if (c->id_npairs >= IMAP_ID_PAIRS_MAX)
				return imap_bad(c, cur, "more than 30 ID pairs (RFC 2971 3.3)");
			if (imap_string(c, cur, IMAP_SLOT_ID_FIELD, 0, IMAP_STEP_ID_VALUE, &st))
				return st;
			break;
		case IMAP_STEP_ID_VALUE:
			if (!imap_sp(cur))
				return imap_bad(c, cur, "ID field without a value");
			if (imap_string(c, cur, IMAP_SLOT_ID_VALUE, IMAP_STR_NIL, IMAP_STEP_ID_NEXT,
			                &st))
				return st;
			break;
		case IMAP_STEP_AUTH_MECH:
			/* RFC 9051 6.2.2: AUTHENTICATE SP auth-type [SP initial-resp]. */
			if (!imap_sp(cur))
				return imap_bad(c, cur, "AUTHENTICATE needs a mechanism");
			start = cur->pos;
			while (cur->pos < cur->len &&
			       imap_atom_char((unsigned char)cur->line[cur->pos]))
				cur->pos++;
			if (cur->pos == start)
				return imap_bad(c, cur, "AUTHENTICATE needs a mechanism");
			if (cur->pos - start != 5 ||
			    strncasecmp(cur->line + start, "PLAIN", 5) != 0)
				return imap_reject(c, cur->line, cur->len, IMAP_REPLY_NO, NULL,
				                   "unsupported authentication mechanism");
			c->step = IMAP_STEP_AUTH_IR;
			break;
		case IMAP_STEP_AUTH_IR:
			return imap_auth_ir(c, cur);
		}
	}
}

static enum imap_cmd_status
imap_command(struct imap_cmd *c, const char *line, size_t len)
{
	struct imap_cur cur = {line, len, 0};
	const struct imap_cmd_entry *e;
	size_t i, start;

	while (cur.pos < len && imap_tag_char((unsigned char)line[cur.pos]))
		cur.pos++;
	if (cur.pos == 0 || cur.pos > IMAP_TAG_MAX || (cur.pos < len && line[cur.pos] != ' '))
		return imap_bad(c, &cur, "missing or invalid tag");
	if (str_copy_n(c->tag, sizeof(c->tag), line, cur.pos) == -1)
		return imap_bad(c, &cur, "missing or invalid tag");
	if (!imap_sp(&cur))
		return imap_bad(c, &cur, "missing command");
	start = cur.pos;
	while (cur.pos < len && imap_atom_char((unsigned char)line[cur.pos]))
		cur.pos++;
	if (cur.pos == start)
		return imap_bad(c, &cur, "missing command");
	for (i = 0; i < ARRAY_LEN(imap_cmd_table); i++) {
		e = &imap_cmd_table[i];
		/* RFC 9051 9: command names are case-insensitive. */
		if (strlen(e->name) == cur.pos - start &&
		    strncasecmp(e->name, line + start, cur.pos - start) == 0) {
			c->name = e->id;
			c->step = e->first;
			return imap_args(c, &cur);
		}
	}
	return imap_bad(c, &cur, "unknown command before login");
}

/* ---- public face ---- */

void
imap_cmd_reset(struct imap_cmd *c)
{
	uint64_t literal_max = c->literal_max;

	explicit_bzero(c, sizeof(*c));
	c->literal_max = literal_max;
	c->state = IMAP_ST_COMMAND;
	c->tag[0] = '*';
	c->tag[1] = '\0';
}

void
imap_cmd_init(struct imap_cmd *c, uint64_t literal_max)
{
	c->literal_max = literal_max != 0 ? literal_max : IMAP_LITERAL_MAX_DEFAULT;
	imap_cmd_reset(c);
}

enum imap_cmd_status
imap_cmd_line(struct imap_cmd *c, const char *line, size_t len)
{
	struct imap_cur cur = {line, len, 0};

	switch ((enum imap_state)c->state) {
	case IMAP_ST_FINAL:
		imap_cmd_reset(c);
		return imap_command(c, line, len);
	case IMAP_ST_COMMAND:
		return imap_command(c, line, len);
	case IMAP_ST_ARGS:
		return imap_args(c, &cur);
	case IMAP_ST_SASL:
		/* RFC 9051 6.2.2: a line of a single "*" cancels; the answer is BAD. */
		if (len == 1 && line[0] == '*')
			return imap_reject(c, NULL, 0, IMAP_REPLY_BAD, NULL,
			                   "authentication cancelled");
		return imap_sasl_response(c, line, len, NULL, 0);
	case IMAP_ST_DISCARD_LINE:
		return imap_discard_tail(c, line, len);
	case IMAP_ST_LITERAL:
	case IMAP_ST_DISCARD_LITERAL:
		break;
	}
	return imap_misuse(c, "line given while literal bytes were expected");
}

enum imap_cmd_status
imap_cmd_literal(struct imap_cmd *c, const void *data, size_t len)
{
	const char *reason = NULL;

	if (c->state != IMAP_ST_LITERAL && c->state != IMAP_ST_DISCARD_LITERAL)
		return imap_misuse(c, "literal bytes given while a line was expected");
	if (len > c->literal_left)
		return imap_misuse(c, "more literal bytes given than announced");
	c->literal_left -= len;
	if (c->state == IMAP_ST_LITERAL && len > 0 &&
	    imap_slot_append(c, data, len, &reason) == -1) {
		/* The rest of this literal is on its way regardless: skip it. */
		c->reply = IMAP_REPLY_BAD;
		c->resp_code = NULL;
		c->reason = reason;
		c->state = IMAP_ST_DISCARD_LITERAL;
	}
	if (c->literal_left > 0)
		return c->state == IMAP_ST_LITERAL ? IMAP_CMD_NEED_LITERAL : IMAP_CMD_DISCARD;
	if (c->state == IMAP_ST_DISCARD_LITERAL) {
		c->state = IMAP_ST_DISCARD_LINE;
		return IMAP_CMD_NEED_LINE;
	}
	imap_slot_end(c);
	c->state = IMAP_ST_ARGS;
	return IMAP_CMD_NEED_LINE;
}

const char *
imap_cmd_id_value(const struct imap_cmd *c, unsigned i, size_t *len)
{
	if (i >= c->id_npairs || c->id[i].value_nil)
		return NULL;
	if (len != NULL)
		*len = c->id[i].value_len;
	return c->id_values + c->id[i].value_off;
}
