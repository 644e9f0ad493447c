/*
 * The control-socket protocol every mailplex daemon serves and mailplexctl speaks: a unix
 * stream socket, one bounded request line per connection, a reply whose first line is
 * "ok" or "error: message" followed by text, then the server closes. The server runs on
 * the event loop and never blocks; only the client helper (for command-line tools) waits,
 * and never longer than its timeout.
 */
#ifndef MAILPLEX_CONTROL_H
#define MAILPLEX_CONTROL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "event.h"

#define CONTROL_REQUEST_MAX_BYTES 512 /* the longest request line, LF included */
#define CONTROL_ARGS_MAX          8   /* words in a request, the command included */
#define CONTROL_REPLY_MAX_BYTES   (1024 * 1024)
#define CONTROL_ERR_MAX           256
#define CONTROL_SOCKET_MODE       0660 /* root and the mailplex group may drive the daemon */
#define CONTROL_CONN_MAX          16   /* simultaneous clients; more are closed at once */
#define CONTROL_IO_TIMEOUT_MS     5000 /* a client that neither sends nor reads is dropped */

/* A parsed request: words split on blanks, pointing into buf. */
struct control_request {
	char buf[CONTROL_REQUEST_MAX_BYTES];
	char *argv[CONTROL_ARGS_MAX + 1]; /* argv[argc] is NULL */
	int argc;
};

/*
 * Splits one line (without its LF; a trailing CR is dropped) into words. Only printable
 * ASCII is accepted: a request names relays and services, never free text. 0, or -1 with
 * err ("empty request", "request too long", "too many words", "bad byte 0x07").
 */
int control_request_parse(struct control_request *req, const char *line, size_t len, char *err,
                          size_t errlen);

/* The reply a handler fills: text after the status line; error set makes it "error: ...". */
struct control_reply {
	char *text;
	size_t len;
	size_t cap;
	int truncated; /* text reached CONTROL_REPLY_MAX_BYTES; a note ends the reply */
	int failed;
	char error[CONTROL_ERR_MAX];
};

/* Appends formatted text; grows up to CONTROL_REPLY_MAX_BYTES, then marks truncated. */
void control_reply_printf(struct control_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Makes the reply "error: message" (the text gathered so far is dropped). */
void control_reply_error(struct control_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void control_reply_free(struct control_reply *r);

/* Runs on the loop for each request; fills reply. Must not block. */
typedef void control_handler_fn(const struct control_request *req, struct control_reply *reply,
                                void *arg);

struct control_server;

/*
 * Listens on path (mode CONTROL_SOCKET_MODE). A stale socket left by a dead process is
 * replaced; one a live process still answers is not (err says so). NULL with err set.
 */
struct control_server *control_server_new(struct ev_loop *loop, const char *path,
                                          control_handler_fn *handler, void *arg, char *err,
                                          size_t errlen);
/*
 * Moves the socket file to path with rename(2) and remembers the new name for
 * control_server_free. The listening socket is bound to the file's inode, so clients
 * that connect by the new name reach the same server and there is no moment without a
 * socket; the old name is free at once for another server (a proxy worker retiring after
 * a reload hands its name to its successor this way). 0, or -1 with err (nothing moved).
 */
int control_server_rename(struct control_server *srv, const char *path, char *err, size_t errlen);
/* Per-connection inactivity bound (tests shorten it). */
void control_server_set_timeout(struct control_server *srv, uint64_t timeout_ms);
/* Closes every connection and the listener and removes the socket file. */
void control_server_free(struct control_server *srv);

/*
 * Client: connects to path, sends line, reads the whole reply, all within timeout_ms.
 * On 0, *reply is a malloc'd, terminated copy of everything the server sent (the caller
 * frees it). -1 with err on any connection or protocol trouble.
 */
int control_client_request(const char *path, const char *line, uint64_t timeout_ms, char **reply,
                           size_t *replylen, char *err, size_t errlen);

/*
 * Splits a reply: *ok is 1 for "ok", 0 for "error: ..." (*message then points at the
 * message, up to its line end); *body is the text after the first line. -1 if the first
 * line is neither (a server speaking something else).
 */
int control_reply_parse(const char *reply, int *ok, const char **message, size_t *messagelen,
                        const char **body);

#endif
