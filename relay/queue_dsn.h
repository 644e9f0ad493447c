/*
 * RFC 3464 delivery status notifications (bounces) for the queue runner: a
 * multipart/report with a human-readable part, the message/delivery-status part and the
 * original message's headers (never its body). Pure: composes bytes into a buffer, the
 * runner puts them into the spool.
 */
#ifndef MAILPLEX_QUEUE_DSN_H
#define MAILPLEX_QUEUE_DSN_H

#include <stddef.h>
#include <stdint.h>

#define QUEUE_DSN_HEADERS_MAX (64 * 1024) /* original headers quoted at most */
#define QUEUE_DSN_MAX         (1024 * 1024 + QUEUE_DSN_HEADERS_MAX)

struct queue_dsn_rcpt {
	const char *final;  /* the address we tried to deliver to */
	const char *orig;   /* as given in RCPT TO ("" when it was the same) */
	const char *status; /* "5.1.1"; "" derives it from reply */
	const char *reply;  /* "550 5.1.1 <x@y>: unknown user" */
	const char *remote; /* back end that answered; "" if none did */
};

struct queue_dsn {
	const char *hostname; /* Reporting-MTA, MAILER-DAEMON@hostname */
	const char *qid;      /* of the original message */
	const char *sender;   /* original sender: the bounce's To: */
	uint64_t arrival;     /* unix seconds */
	uint64_t now;         /* unix seconds: Date: */
	const struct queue_dsn_rcpt *rcpt;
	size_t nrcpt;
	const char *headers; /* the original header block (may be cut); not terminated */
	size_t headers_len;
};

/*
 * Composes the bounce (CRLF lines). On 0, *out is malloc'ed (caller frees) and *outlen
 * its length. -1 (ENOMEM) otherwise.
 */
int queue_dsn_compose(const struct queue_dsn *d, char **out, size_t *outlen);

/* The header block's length in a message start: up to and including the empty line. */
size_t queue_dsn_header_len(const char *msg, size_t len);

#endif
