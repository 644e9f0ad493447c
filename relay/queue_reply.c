/*
 * Parses LMTP/SMTP replies for the queue runner, one line at a time (RFC 5321 4.2, the
 * enhanced codes of RFC 2034/3463, RFC 2033 for LMTP which replies the same way). Keeps
 * a bounded, printable copy of the text; never reads a socket.
 */
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "queue_reply.h"

void
queue_reply_init(struct queue_reply *r)
{
	memset(r, 0, sizeof(*r));
}

int
queue_reply_class(const struct queue_reply *r)
{
	return r->code / 100;
}

static enum queue_reply_status
reply_bad(struct queue_reply *r, const char *why)
{
	r->error = why;
	return QUEUE_REPLY_BAD;
}

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Appends len bytes to the kept text, bytes outside printable ASCII shown as '?'. */
static void
reply_text_append(struct queue_reply *r, const char *s, size_t len)
{
	size_t n = strlen(r->text), i;

	for (i = 0; i < len && n + 1 < sizeof(r->text); i++, n++) {
		unsigned char c = (unsigned char)s[i];

		r->text[n] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	r->text[n] = '\0';
}

/*
 * RFC 3463: class "." subject "." detail, subject and detail 1-3 digits; the class must
 * match the reply code's (RFC 2034 section 4) or the "code" is just text.
 */
static void
reply_parse_enhanced(struct queue_reply *r, const char *s, size_t len)
{
	size_t i = 0, part, digits;

	if (len < 5 || s[0] - '0' != r->code / 100 || s[1] != '.')
		return;
	i = 2;
	for (part = 0; part < 2; part++) {
		for (digits = 0; i < len && is_digit(s[i]) && digits < 4; i++)
			digits++;
		if (digits == 0 || digits > 3)
			return;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return;
	memcpy(r->enhanced, s, i);
	r->enhanced[i] = '\0';
}

static void
reply_parse_keyword(struct queue_reply *r, const char *s, size_t len)
{
	static const struct {
		const char *name;
		unsigned int bit;
	} kw[] = {
	    {"STARTTLS", QUEUE_EXT_STARTTLS},
	    {"8BITMIME", QUEUE_EXT_8BITMIME},
	    {"SMTPUTF8", QUEUE_EXT_SMTPUTF8},
	};
	size_t i, n;

	for (n = 0; n < len && s[n] != ' '; n++)
		;
	for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
		if (strlen(kw[i].name) == n && strncasecmp(s, kw[i].name, n) == 0)
			r->ext |= kw[i].bit;
}

enum queue_reply_status
queue_reply_feed(struct queue_reply *r, const char *line, size_t len)
{
	int code;
	int last;

	if (r->error != NULL)
		return QUEUE_REPLY_BAD;
	if (len > QUEUE_REPLY_LINE_MAX)
		return reply_bad(r, "reply line too long");
	if (r->nlines >= QUEUE_REPLY_LINES_MAX)
		return reply_bad(r, "too many reply lines");
	if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
		return reply_bad(r, "reply does not start with a code");
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (code < 200 || code > 599 || (line[0] == '3' && code != 354 && code != 334))
		return reply_bad(r, "reply code out of range");
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return reply_bad(r, "reply code not followed by a blank or '-'");
	if (r->nlines > 0 && code != r->code)
		return reply_bad(r, "continuation line with another code");
	last = len == 3 || line[3] == ' ';
	if (r->nlines == 0) {
		r->code = code;
		reply_text_append(r, line, 3);
		if (len > 4)
			reply_parse_enhanced(r, line + 4, len - 4);
	} else if (len > 4) {
		reply_parse_keyword(r, line + 4, len - 4);
	}
	if (len > 4) {
		reply_text_append(r, " ", 1);
		reply_text_append(r, line + 4, len - 4);
	}
	r->nlines++;
	return last ? QUEUE_REPLY_DONE : QUEUE_REPLY_MORE;
}
