/*
 * POP3 AUTHORIZATION-state command parser for mailplex-proxy (RFC 1939, RFC 2449 CAPA,
 * RFC 2595 STLS, RFC 5034 AUTH PLAIN). Fed one line at a time by the session; keeps the
 * USER name until PASS and the AUTH exchange between lines. It never touches a socket,
 * never logs, and never puts a credential in a reason string.
 */
#ifndef MAILPLEX_POP3_CMD_H
#define MAILPLEX_POP3_CMD_H

#include <stddef.h>

#include "sasl_plain.h"

/*
 * RFC 2449 4: a command line is at most 255 octets with its CRLF. We default to twice
 * that (clients put long addresses in USER), bounded by POP3_LINE_MAX_CEILING.
 */
#define POP3_LINE_MAX_DEFAULT 512
#define POP3_LINE_MAX_CEILING 4096

enum pop3_cmd_name {
	POP3_NONE,
	POP3_CAPA,
	POP3_STLS,
	POP3_QUIT,
	POP3_USER,      /* creds.user set: answer +OK and wait for PASS */
	POP3_PASS,      /* creds.user and creds.pass set: log in */
	POP3_AUTH_LIST, /* AUTH without a mechanism: list the mechanisms */
	POP3_AUTH,      /* AUTH PLAIN done: creds set, log in */
};

enum pop3_cmd_status {
	POP3_CMD_DONE,          /* a whole command: see name */
	POP3_CMD_NEED_RESPONSE, /* AUTH PLAIN without initial response: send "+ ", feed a line */
	POP3_CMD_ERR,           /* answer "-ERR reason" */
};

struct pop3_cmd {
	size_t line_max; /* longest command line accepted, CRLF included */
	int state;       /* private to pop3_cmd.c */
	int have_user;   /* USER was accepted and PASS may follow */

	enum pop3_cmd_name name;
	struct sasl_creds creds; /* wipe with pop3_cmd_reset after the login attempt */
	const char *reason;      /* POP3_CMD_ERR: never contains a credential */
};

/* line_max: 0 means POP3_LINE_MAX_DEFAULT; clamped to [255, POP3_LINE_MAX_CEILING]. */
void pop3_cmd_init(struct pop3_cmd *c, size_t line_max);
/* Back to the start of the AUTHORIZATION state (RFC 1939 4); wipes the credentials. */
void pop3_cmd_reset(struct pop3_cmd *c);
/* One line without its CRLF (an AUTH response line while NEED_RESPONSE is pending). */
enum pop3_cmd_status pop3_cmd_line(struct pop3_cmd *c, const char *line, size_t len);

#endif
