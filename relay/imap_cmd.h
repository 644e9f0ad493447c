/*
 * IMAP4 pre-login command parser for mailplex-proxy (RFC 9051, RFC 3501 subset): tag,
 * CAPABILITY, NOOP, LOGOUT, STARTTLS, ID (RFC 2971), LOGIN with quoted strings and
 * synchronising or non-synchronising literals (RFC 7888), AUTHENTICATE PLAIN with or
 * without SASL-IR (RFC 4959). A state machine fed lines and literal bytes by the session;
 * it never touches a socket, never logs, and never puts a credential in a reason string.
 */
#ifndef MAILPLEX_IMAP_CMD_H
#define MAILPLEX_IMAP_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "sasl_plain.h"

#define IMAP_TAG_MAX             64   /* longer tags are refused; clients use a few bytes */
#define IMAP_NAME_MAX            32   /* longest command name we look at */
#define IMAP_LITERAL_MAX_DEFAULT 4096 /* RFC 7888 4: the LITERAL- bound before login */
#define IMAP_CMD_LITERALS_MAX    64   /* literals in one command, discarded ones included */
#define IMAP_ID_PAIRS_MAX        30   /* RFC 2971 3.3 */
#define IMAP_ID_FIELD_MAX        30   /* RFC 2971 3.3 */
#define IMAP_ID_VALUE_MAX        1024 /* RFC 2971 3.3 */
#define IMAP_ID_BYTES_MAX        4096 /* all ID values of one command together */

enum imap_cmd_name {
	IMAP_NONE,
	IMAP_CAPABILITY,
	IMAP_NOOP,
	IMAP_LOGOUT,
	IMAP_STARTTLS,
	IMAP_ID,
	IMAP_LOGIN,
	IMAP_AUTHENTICATE, /* always PLAIN: other mechanisms are refused */
};

enum imap_cmd_status {
	IMAP_CMD_NEED_LINE,     /* feed the next line (part of the same command); send nothing */
	IMAP_CMD_NEED_LITERAL,  /* if literal_sync send "+ ...", then feed literal_left bytes */
	IMAP_CMD_NEED_RESPONSE, /* AUTHENTICATE: send "+ " and feed the client's next line */
	IMAP_CMD_DISCARD,       /* command already refused; feed (or drop) literal_left bytes */
	IMAP_CMD_DONE,          /* a whole command: name, tag, creds, id pairs */
	IMAP_CMD_REJECT,        /* answer "tag BAD|NO [code] reason"; close if close is set */
};

enum imap_cmd_reply {
	IMAP_REPLY_BAD, /* RFC 9051 7.1.5: syntax, unknown command, cancelled exchange */
	IMAP_REPLY_NO,  /* RFC 9051 7.1.2: well-formed but refused (mechanism, credentials) */
};

struct imap_id_pair {
	char field[IMAP_ID_FIELD_MAX + 1];
	size_t field_len;
	size_t value_off; /* into imap_cmd.id_values; see imap_cmd_id_value */
	size_t value_len;
	int value_nil;
};

struct imap_cmd {
	/* Configuration (imap_cmd_init). */
	uint64_t literal_max;

	/* Parser state: private to imap_cmd.c. */
	int state;
	int step;
	int slot;
	unsigned nliterals;
	size_t id_used;

	/* Result. */
	char tag[IMAP_TAG_MAX + 1]; /* "*" when the line had no valid tag: reply untagged */
	enum imap_cmd_name name;
	struct sasl_creds creds; /* LOGIN, AUTHENTICATE: wipe with imap_cmd_reset after use */
	int id_nil;              /* ID NIL */
	unsigned id_npairs;
	struct imap_id_pair id[IMAP_ID_PAIRS_MAX];
	char id_values[IMAP_ID_BYTES_MAX];

	/* NEED_LITERAL and DISCARD: bytes still to come; whether "+" must be sent first. */
	uint64_t literal_left;
	int literal_sync;

	/* REJECT (already set during DISCARD): the answer. */
	enum imap_cmd_reply reply;
	const char *resp_code; /* "TOOBIG", "AUTHENTICATIONFAILED", ... or NULL */
	const char *reason;    /* never contains a credential */
	int close;             /* the byte stream cannot be followed any more: close after */
};

/*
 * literal_max: largest literal accepted before login (0 means IMAP_LITERAL_MAX_DEFAULT).
 * The struct is large (about 8 KiB): allocate it while the session is pre-login only.
 */
void imap_cmd_init(struct imap_cmd *c, uint64_t literal_max);
/* Wipes credentials and results and waits for a new command; keeps literal_max. */
void imap_cmd_reset(struct imap_cmd *c);

/*
 * One line without its CRLF. After DONE or REJECT the next call starts a new command
 * (the previous one's credentials are wiped first).
 */
enum imap_cmd_status imap_cmd_line(struct imap_cmd *c, const char *line, size_t len);
/*
 * Literal bytes, at most literal_left per call (more is a caller error: REJECT, close).
 * A zero-length literal ({0}) completes with a call of len 0. Returns NEED_LITERAL or
 * DISCARD while bytes remain, then NEED_LINE for the rest of the command line.
 */
enum imap_cmd_status imap_cmd_literal(struct imap_cmd *c, const void *data, size_t len);

/* ID value i (NUL-terminated), or NULL for NIL or i out of range; *len set if not NULL. */
const char *imap_cmd_id_value(const struct imap_cmd *c, unsigned i, size_t *len);

#endif
