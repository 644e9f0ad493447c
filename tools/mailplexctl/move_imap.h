/*
 * The IMAP responses a move's check reads from a back end (RFC 3501 section 7): framing
 * of one response with its literals, and the parse of tagged results, LIST and STATUS.
 * Bytes in, a result out: no I/O, bounded everywhere, fuzzed (tests/fuzz/fuzz_move_imap.c).
 */
#ifndef MAILPLEX_MOVE_IMAP_H
#define MAILPLEX_MOVE_IMAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MOVE_IMAP_RESP_MAX    16384 /* one response, its literals included */
#define MOVE_IMAP_LITERAL_MAX 4096  /* a literal inside a response (a folder name) */
#define MOVE_IMAP_NAME_MAX    1024  /* a folder name */
#define MOVE_IMAP_TAG_MAX     16

enum move_imap_kind {
	MOVE_IMAP_TAGGED,
	MOVE_IMAP_UNTAGGED,
	MOVE_IMAP_CONTINUE, /* "+ ..." */
};

enum move_imap_data {
	MOVE_IMAP_OTHER,  /* anything this client does not need */
	MOVE_IMAP_COND,   /* OK, NO, BAD, BYE, PREAUTH (tagged or untagged) */
	MOVE_IMAP_LIST,   /* "* LIST (flags) delim name" */
	MOVE_IMAP_STATUS, /* "* STATUS name (MESSAGES n ...)" */
};

struct move_imap_resp {
	enum move_imap_kind kind;
	enum move_imap_data data;
	char tag[MOVE_IMAP_TAG_MAX + 1];
	char cond[8];                      /* "OK", "NO", "BAD", "BYE", "PREAUTH" */
	char text[256];                    /* the condition's text, cut, controls replaced */
	char name[MOVE_IMAP_NAME_MAX + 1]; /* LIST, STATUS: the folder */
	size_t namelen;                    /* may hold a NUL from a literal: then refused */
	int noselect;                      /* LIST: \Noselect or \NonExistent */
	int has_messages;                  /* STATUS: MESSAGES was given */
	uint64_t messages;
};

/*
 * How many bytes at the start of buf make one whole response (its CRLF included, every
 * literal it announces included): > 0, 0 when more bytes are needed, -1 when it would be
 * longer than MOVE_IMAP_RESP_MAX or announces a literal larger than MOVE_IMAP_LITERAL_MAX.
 */
ssize_t move_imap_frame(const char *buf, size_t len);

/* Parses one framed response. 0, or -1 when it is not IMAP. */
int move_imap_parse(const char *resp, size_t len, struct move_imap_resp *out);

/* Writes name as an IMAP quoted string into buf. -1 if it cannot be (controls, too long). */
int move_imap_quote(const char *name, size_t namelen, char *buf, size_t buflen);

#endif
