/*
 * Framing and parsing of the back ends' IMAP responses for the move's check: tagged
 * results, LIST and STATUS (RFC 3501 sections 7.1, 7.2.2, 7.2.4), astrings as atoms,
 * quoted strings or literals. Never reads a socket; every size is bounded.
 */
#include <ctype.h>
#include <string.h>

#include "move_imap.h"
#include "util.h"

/* "{123}" or "{123+}" at the very end of a line: the literal's size, else -1. */
static long
literal_at_end(const char *line, size_t len)
{
	size_t i;
	long n = 0;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	i = len - 1;
	if (i > 0 && line[i - 1] == '+')
		i--;
	if (i == 0 || !isdigit((unsigned char)line[i - 1]))
		return -1;
	while (i > 0 && isdigit((unsigned char)line[i - 1]))
		i--;
	if (i == 0 || line[i - 1] != '{')
		return -1;
	for (size_t j = i; isdigit((unsigned char)line[j]); j++) {
		n = n * 10 + (line[j] - '0');
		if (n > MOVE_IMAP_LITERAL_MAX)
			return MOVE_IMAP_LITERAL_MAX + 1;
	}
	return n;
}

ssize_t
move_imap_frame(const char *buf, size_t len)
{
	size_t pos = 0;

	for (int lits = 0; lits <= MOVE_IMAP_RESP_MAX; lits++) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end, l;
		long lit;

		if (nl == NULL)
			return len >= MOVE_IMAP_RESP_MAX ? -1 : 0;
		end = (size_t)(nl - buf) + 1;
		if (end > MOVE_IMAP_RESP_MAX)
			return -1;
		l = (size_t)(nl - buf) - pos;
		if (l > 0 && buf[pos + l - 1] == '\r')
			l--;
		if ((lit = literal_at_end(buf + pos, l)) < 0)
			return (ssize_t)end;
		if (lit > MOVE_IMAP_LITERAL_MAX || end + (size_t)lit > MOVE_IMAP_RESP_MAX)
			return -1;
		if (len - end < (size_t)lit)
			return 0;
		pos = end + (size_t)lit;
	}
	return -1;
}

struct cur {
	const char *p, *end;
};

static int
at_end(const struct cur *c)
{
	return c->p >= c->end || *c->p == '\r' || *c->p == '\n';
}

static int
sp(struct cur *c)
{
	if (c->p < c->end && *c->p == ' ') {
		c->p++;
		return 0;
	}
	return -1;
}

static int
atom_char(char ch)
{
	return (unsigned char)ch > 0x20 && (unsigned char)ch < 0x7f &&
	       strchr("(){ %*\"\\]", ch) == NULL;
}

/* An atom (']' allowed, as in flags and ASTRING-CHAR). */
static int
atom(struct cur *c, char *out, size_t outlen, size_t *olen)
{
	size_t n = 0;

	while (c->p < c->end && (atom_char(*c->p) || *c->p == ']' || *c->p == '%' || *c->p == '*' ||
	                         *c->p == '\\')) {
		if (n + 1 >= outlen)
			return -1;
		out[n++] = *c->p++;
	}
	if (n == 0)
		return -1;
	out[n] = '\0';
	*olen = n;
	return 0;
}

/* astring / nstring: atom, "quoted" or {n}CRLF literal. NIL comes back as the atom NIL. */
static int
astring(struct cur *c, char *out, size_t outlen, size_t *olen)
{
	size_t n = 0;

	if (c->p >= c->end)
		return -1;
	if (*c->p == '"') {
		for (c->p++;; c->p++) {
			if (c->p >= c->end || *c->p == '\r' || *c->p == '\n')
				return -1;
			if (*c->p == '"')
				break;
			if (*c->p == '\\') {
				if (c->p + 1 >= c->end || (c->p[1] != '\\' && c->p[1] != '"'))
					return -1;
				c->p++;
			}
			if (n + 1 >= outlen)
				return -1;
			out[n++] = *c->p;
		}
		c->p++;
		out[n] = '\0';
		*olen = n;
		return 0;
	}
	if (*c->p == '{') {
		size_t lit = 0;

		for (c->p++; c->p < c->end && isdigit((unsigned char)*c->p); c->p++) {
			lit = lit * 10 + (size_t)(*c->p - '0');
			if (lit > MOVE_IMAP_LITERAL_MAX)
				return -1;
		}
		if (c->p < c->end && *c->p == '+')
			c->p++;
		if (c->p >= c->end || *c->p++ != '}')
			return -1;
		if (c->p < c->end && *c->p == '\r')
			c->p++;
		if (c->p >= c->end || *c->p++ != '\n')
			return -1;
		if ((size_t)(c->end - c->p) < lit || lit + 1 > outlen)
			return -1;
		memcpy(out, c->p, lit);
		out[lit] = '\0';
		c->p += lit;
		*olen = lit;
		return 0;
	}
	return atom(c, out, outlen, olen);
}

static int
word_is(const char *w, const char *s)
{
	return strcasecmp(w, s) == 0;
}

static void
rest_text(struct cur *c, char *out, size_t outlen)
{
	size_t n = 0;

	while (!at_end(c) && n + 1 < outlen) {
		unsigned char ch = (unsigned char)*c->p++;

		out[n++] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
	}
	out[n] = '\0';
}

static int
parse_list(struct cur *c, struct move_imap_resp *out)
{
	char w[MOVE_IMAP_NAME_MAX + 1];
	size_t wl;

	if (sp(c) == -1 || c->p >= c->end || *c->p++ != '(')
		return -1;
	for (int i = 0; i < 64; i++) {
		if (c->p < c->end && *c->p == ')')
			break;
		if (i > 0 && sp(c) == -1)
			return -1;
		if (atom(c, w, sizeof(w), &wl) == -1)
			return -1;
		if (word_is(w, "\\Noselect") || word_is(w, "\\NonExistent"))
			out->noselect = 1;
	}
	if (c->p >= c->end || *c->p++ != ')' || sp(c) == -1)
		return -1;
	/* The delimiter: "x" or NIL. */
	if (astring(c, w, sizeof(w), &wl) == -1 || sp(c) == -1)
		return -1;
	if (astring(c, out->name, sizeof(out->name), &out->namelen) == -1)
		return -1;
	out->data = MOVE_IMAP_LIST;
	return 0;
}

static int
parse_status(struct cur *c, struct move_imap_resp *out)
{
	char w[64];
	size_t wl;

	if (sp(c) == -1 || astring(c, out->name, sizeof(out->name), &out->namelen) == -1 ||
	    sp(c) == -1 || c->p >= c->end || *c->p++ != '(')
		return -1;
	for (int i = 0; i < 16; i++) {
		uint64_t v = 0;
		int digits = 0;

		if (c->p < c->end && *c->p == ')')
			break;
		if (i > 0 && sp(c) == -1)
			return -1;
		if (atom(c, w, sizeof(w), &wl) == -1 || sp(c) == -1)
			return -1;
		for (; c->p < c->end && isdigit((unsigned char)*c->p) && digits < 20;
		     c->p++, digits++) {
			if (v > (UINT64_MAX - 9) / 10)
				return -1;
			v = v * 10 + (uint64_t)(*c->p - '0');
		}
		if (digits == 0)
			return -1;
		if (word_is(w, "MESSAGES")) {
			out->messages = v;
			out->has_messages = 1;
		}
	}
	if (c->p >= c->end || *c->p != ')')
		return -1;
	out->data = MOVE_IMAP_STATUS;
	return 0;
}

int
move_imap_parse(const char *resp, size_t len, struct move_imap_resp *out)
{
	struct cur c = {.p = resp, .end = resp + len};
	char w[64];
	size_t wl;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return -1;
	if (*c.p == '+') {
		out->kind = MOVE_IMAP_CONTINUE;
		c.p++;
		(void)sp(&c);
		rest_text(&c, out->text, sizeof(out->text));
		return 0;
	}
	if (*c.p == '*') {
		out->kind = MOVE_IMAP_UNTAGGED;
		c.p++;
	} else {
		out->kind = MOVE_IMAP_TAGGED;
		if (atom(&c, out->tag, sizeof(out->tag), &wl) == -1)
			return -1;
	}
	if (sp(&c) == -1 || atom(&c, w, sizeof(w), &wl) == -1)
		return -1;
	if (word_is(w, "OK") || word_is(w, "NO") || word_is(w, "BAD") || word_is(w, "BYE") ||
	    word_is(w, "PREAUTH")) {
		out->data = MOVE_IMAP_COND;
		for (size_t i = 0; i <= wl; i++)
			out->cond[i] = (char)toupper((unsigned char)w[i]);
		(void)sp(&c);
		rest_text(&c, out->text, sizeof(out->text));
		return 0;
	}
	if (out->kind == MOVE_IMAP_TAGGED)
		return -1;
	if (word_is(w, "LIST"))
		return parse_list(&c, out);
	if (word_is(w, "STATUS"))
		return parse_status(&c, out);
	out->data = MOVE_IMAP_OTHER;
	return 0;
}

int
move_imap_quote(const char *name, size_t namelen, char *buf, size_t buflen)
{
	size_t o = 0;

	if (buflen < 3)
		return -1;
	buf[o++] = '"';
	for (size_t i = 0; i < namelen; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (ch < 0x20 || ch == 0x7f)
			return -1;
		if (ch == '"' || ch == '\\') {
			if (o + 2 >= buflen)
				return -1;
			buf[o++] = '\\';
		}
		if (o + 2 >= buflen)
			return -1;
		buf[o++] = (char)ch;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return 0;
}
