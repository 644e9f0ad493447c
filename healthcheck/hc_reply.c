/*
 * SMTP multi-line and prefix-line reply parsers for the health checks. Owns the reply
 * grammar and its limits; it must never read a socket, never keep a pointer into the
 * caller's line after returning, and never accept a reply whose lines disagree.
 */
#include <string.h>
#include <strings.h>

#include "hc_reply.h"

void
hc_text_sanitize(char *dst, size_t dstlen, const char *src, size_t len)
{
	size_t i;

	if (dstlen == 0)
		return;
	if (len > dstlen - 1)
		len = dstlen - 1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];

		/* The text ends up in a one-line status and in syslog: no control bytes. */
		dst[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	dst[len] = '\0';
}

void
hc_smtp_reply_init(struct hc_smtp_reply *r, int expect)
{
	memset(r, 0, sizeof(*r));
	r->expect = expect;
}

static int
hc_smtp_code(const char *line, size_t len)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' ||
	    line[2] < '0' || line[2] > '9')
		return -1;
	return (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
}

/* An EHLO line "250-STARTTLS" (keyword, then end or parameters). */
static int
hc_smtp_is_starttls(const char *line, size_t len)
{
	static const char kw[] = "STARTTLS";
	size_t kwlen = sizeof(kw) - 1;

	if (len < 4 + kwlen || strncasecmp(line + 4, kw, kwlen) != 0)
		return 0;
	return len == 4 + kwlen || line[4 + kwlen] == ' ';
}

enum hc_reply_status
hc_smtp_reply_feed(struct hc_smtp_reply *r, const char *line, size_t len)
{
	int code, last;

	if (r->error != NULL) /* fed after a verdict: the caller's bug, stay bad */
		return HC_REPLY_BAD;
	if ((code = hc_smtp_code(line, len)) == -1 ||
	    (len > 3 && line[3] != ' ' && line[3] != '-')) {
		r->error = "malformed reply";
		hc_text_sanitize(r->text, sizeof(r->text), line, len);
		return HC_REPLY_BAD;
	}
	if (r->nlines == 0) {
		r->code = code;
		hc_text_sanitize(r->text, sizeof(r->text), line, len);
		if (len > 3 && sizeof(r->text) > 4)
			r->text[3] = ' ';
	} else if (code != r->code) {
		/* RFC 5321 4.2.1: every line of a multi-line reply has the same code. */
		r->error = "reply code changed within a multi-line reply";
		return HC_REPLY_BAD;
	}
	if (++r->nlines > HC_REPLY_MAX_LINES) {
		r->error = "too many reply lines";
		return HC_REPLY_BAD;
	}
	if (r->nlines > 1 && hc_smtp_is_starttls(line, len))
		r->starttls = 1;
	last = len == 3 || line[3] == ' ';
	if (!last)
		return HC_REPLY_MORE;
	return code == r->expect ? HC_REPLY_OK : HC_REPLY_FAIL;
}

void
hc_line_reply_init(struct hc_line_reply *r, const char *want, const char *skip)
{
	memset(r, 0, sizeof(*r));
	r->want = want;
	r->skip = skip;
}

/* prefix at the start of line, followed by a space or the end: "+OK" but not "+OKAY". */
static int
hc_line_has_word(const char *line, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	if (len < n || strncasecmp(line, prefix, n) != 0)
		return 0;
	return len == n || line[n] == ' ';
}

enum hc_reply_status
hc_line_reply_feed(struct hc_line_reply *r, const char *line, size_t len)
{
	size_t skiplen;

	if (r->error != NULL)
		return HC_REPLY_BAD;
	if (++r->nlines > HC_REPLY_MAX_LINES) {
		r->error = "too many reply lines";
		return HC_REPLY_BAD;
	}
	hc_text_sanitize(r->text, sizeof(r->text), line, len);
	if (hc_line_has_word(line, len, r->want))
		return HC_REPLY_OK;
	if (r->skip != NULL) {
		skiplen = strlen(r->skip);
		if (len >= skiplen && strncmp(line, r->skip, skiplen) == 0)
			return HC_REPLY_MORE;
	}
	return HC_REPLY_FAIL;
}
