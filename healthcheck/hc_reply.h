/*
 * Reply parsers of the health checks: one complete line in, a verdict out. They never
 * touch a socket (the engine feeds them lines from a bounded linebuf), so the unit tests
 * and the fuzzer drive them with bytes alone. Every reply is bounded in lines and bytes.
 */
#ifndef MAILPLEX_HC_REPLY_H
#define MAILPLEX_HC_REPLY_H

#include <stddef.h>

#define HC_REPLY_MAX_LINES 128 /* an EHLO reply has a dozen; more is a broken peer */
#define HC_TEXT_MAX        128 /* reply text kept for the status line, sanitised */

enum hc_reply_status {
	HC_REPLY_MORE, /* line taken, the reply goes on */
	HC_REPLY_OK,   /* the reply is complete and is the one expected */
	HC_REPLY_FAIL, /* complete and well-formed, but not what was expected: see text */
	HC_REPLY_BAD,  /* malformed or over a limit: see error */
};

/* RFC 5321 4.2: "250-first", ..., "250 last"; every line carries the same code. */
struct hc_smtp_reply {
	int expect;             /* code wanted */
	int code;               /* code of the reply, 0 before the first line */
	unsigned nlines;        /* lines taken */
	int starttls;           /* an EHLO keyword line was STARTTLS (RFC 3207 4) */
	const char *error;      /* HC_REPLY_BAD: why */
	char text[HC_TEXT_MAX]; /* first line, "554 5.3.2 service closed" */
};

void hc_smtp_reply_init(struct hc_smtp_reply *r, int expect);
enum hc_reply_status hc_smtp_reply_feed(struct hc_smtp_reply *r, const char *line, size_t len);

/*
 * One line that must begin with a prefix ("+OK", "* OK", "a1 OK") as a whole word,
 * compared without regard to case (IMAP atoms are case-insensitive, RFC 3501 9).
 * Lines beginning with skip (IMAP untagged "* ") before it are passed over, bounded.
 */
struct hc_line_reply {
	const char *want;
	const char *skip; /* NULL: the first line decides */
	unsigned nlines;
	const char *error;
	char text[HC_TEXT_MAX]; /* the deciding line */
};

void hc_line_reply_init(struct hc_line_reply *r, const char *want, const char *skip);
enum hc_reply_status hc_line_reply_feed(struct hc_line_reply *r, const char *line, size_t len);

/* Printable copy of at most len bytes (control and 8-bit bytes become '?'). */
void hc_text_sanitize(char *dst, size_t dstlen, const char *src, size_t len);

#endif
