/*
 * The body encoder of the queue runner's LMTP/SMTP client: dot-stuffing (RFC 5321 4.5.2),
 * bare LF sent as CRLF, and the terminating "." line. Pure: bytes in, bytes out, the line
 * state carried between chunks; it never reads a file or writes a socket.
 */
#ifndef MAILPLEX_QUEUE_BODY_H
#define MAILPLEX_QUEUE_BODY_H

#include <stddef.h>

#define QUEUE_BODY_END_MAX 5 /* "\r\n.\r\n" */

struct queue_body_enc {
	int bol; /* the next byte starts a line */
	int cr;  /* the last byte was CR */
};

void queue_body_init(struct queue_body_enc *e);
/* Encodes len bytes of in into out (room for 2 * len bytes). Returns the bytes written. */
size_t queue_body_encode(struct queue_body_enc *e, const char *in, size_t len, char *out);
/* The end of data: CRLF if the body did not end a line, then ".\r\n". Returns the length. */
size_t queue_body_end(const struct queue_body_enc *e, char out[QUEUE_BODY_END_MAX]);

#endif
