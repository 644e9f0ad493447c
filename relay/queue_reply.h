/*
 * The reply parser of the queue runner's LMTP/SMTP client: takes one reply line at a time
 * (already cut by a bounded linebuf) and builds the reply — code, enhanced status code
 * (RFC 3463), sanitised text, the EHLO/LHLO keywords the client uses. Pure: no I/O, bounded
 * in line count and kept text; never trusts a byte the back end sent.
 */
#ifndef MAILPLEX_QUEUE_REPLY_H
#define MAILPLEX_QUEUE_REPLY_H

#include <stddef.h>

#define QUEUE_REPLY_LINE_MAX  1000 /* RFC 5321 4.5.3.1.5 says 512; be lenient, still bounded */
#define QUEUE_REPLY_LINES_MAX 100  /* a reply of more lines is a broken or hostile peer */
#define QUEUE_REPLY_TEXT_MAX  256  /* what we keep: logs, state records, Diagnostic-Code */
#define QUEUE_REPLY_ENH_MAX   12   /* "5.123.123" */

enum queue_reply_status {
	QUEUE_REPLY_MORE, /* a continuation line ("250-"): feed the next line */
	QUEUE_REPLY_DONE, /* the last line came: code, text, keywords are final */
	QUEUE_REPLY_BAD,  /* not an SMTP reply (error says why); final */
};

#define QUEUE_EXT_STARTTLS 0x01
#define QUEUE_EXT_8BITMIME 0x02
#define QUEUE_EXT_SMTPUTF8 0x04

struct queue_reply {
	int code;                           /* 200..599 once the first line parsed, else 0 */
	char enhanced[QUEUE_REPLY_ENH_MAX]; /* "5.1.1", or "" when the reply has none */
	char text[QUEUE_REPLY_TEXT_MAX];    /* "550 5.1.1 no such user": lines joined by ' ' */
	unsigned int nlines;
	unsigned int ext;  /* QUEUE_EXT_*: keywords of an EHLO/LHLO reply */
	const char *error; /* QUEUE_REPLY_BAD: a static message */
};

void queue_reply_init(struct queue_reply *r);
/* line: without CR LF, not terminated. A BAD verdict stays BAD for every later line. */
enum queue_reply_status queue_reply_feed(struct queue_reply *r, const char *line, size_t len);
/* 2, 4, 5 (the class of the code), 0 before a code. */
int queue_reply_class(const struct queue_reply *r);

#endif
