/*
 * The parsers of mailplex-smtpd's network input, kept apart from all I/O: one SMTP command
 * line (RFC 5321 with the ESMTP parameters we announce) and the DATA/BDAT byte stream
 * (dot-unstuffing, end of data, and refusal of a bare CR or LF, the "SMTP smuggling" class
 * of CVE-2023-51764). Every result is bounded by RFC 5321 4.5.3.1.
 */
#ifndef MAILPLEX_SMTP_CMD_H
#define MAILPLEX_SMTP_CMD_H

#include <stddef.h>
#include <stdint.h>

#include "map.h"

#define SMTP_CMD_LINE_MAX 512 /* RFC 5321 4.5.3.1.4, CRLF included; +extensions below */
#define SMTP_CMD_LINE_EXT 512 /* RFC 1869: each MAIL/RCPT parameter may add this much */
#define SMTP_PATH_MAX     256 /* RFC 5321 4.5.3.1.3, brackets included */
#define SMTP_DOMAIN_MAX   255
#define SMTP_ARG_MAX      255 /* EHLO/HELO argument, VRFY argument */

enum smtp_verb {
	SMTP_NONE,
	SMTP_EHLO,
	SMTP_HELO,
	SMTP_MAIL,
	SMTP_RCPT,
	SMTP_DATA,
	SMTP_BDAT,
	SMTP_RSET,
	SMTP_NOOP,
	SMTP_QUIT,
	SMTP_VRFY,
	SMTP_STARTTLS,
};

enum smtp_cmd_status {
	SMTP_CMD_OK,
	SMTP_CMD_ERR, /* reply holds the complete reply line (code, enhanced code, text) */
};

enum smtp_body {
	SMTP_BODY_NONE, /* no BODY= */
	SMTP_BODY_7BIT,
	SMTP_BODY_8BITMIME,
	SMTP_BODY_BINARYMIME,
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *reply;          /* SMTP_CMD_ERR: a static reply line without CRLF */
	char arg[SMTP_ARG_MAX + 1]; /* EHLO/HELO domain, VRFY argument */
	/* MAIL and RCPT */
	char addr[MAP_ADDR_MAX + 1]; /* the path without brackets; "" for <> */
	int utf8;                    /* addr has bytes >= 0x80 */
	int relay_trick;             /* RCPT: '%', '!' or a quoted local part */
	uint64_t size;               /* MAIL SIZE=, 0 if absent */
	int has_size;
	enum smtp_body body;
	int smtputf8;
	/* BDAT */
	uint64_t chunk;
	int last;
};

/*
 * Parses one command line (without its CRLF; len bytes, need not be terminated). Only
 * SMTP_CMD_OK fills the fields of the verb. A source route ("<@a,@b:u@d>") is refused
 * for RCPT (RFC 5321 3.6.1 lets us; it is a relay trick) and stripped for MAIL.
 */
enum smtp_cmd_status smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd);

/* ---- DATA and BDAT bodies ---- */

enum smtp_data_mode {
	SMTP_DATA_DOT,  /* DATA: dot-stuffed, ends with CRLF.CRLF */
	SMTP_DATA_BDAT, /* BDAT: raw octets, the chunk sizes delimit */
};

enum smtp_data_state {
	SMTP_DS_BOL, /* at the start of a line */
	SMTP_DS_MID,
	SMTP_DS_CR,    /* after a CR */
	SMTP_DS_DOT,   /* DATA: a '.' at the start of a line */
	SMTP_DS_DOTCR, /* DATA: ".\r" at the start of a line */
	SMTP_DS_END,   /* DATA: CRLF.CRLF seen */
	SMTP_DS_BARE,  /* a bare CR or LF: the message is refused */
};

struct smtp_data {
	enum smtp_data_mode mode;
	enum smtp_data_state state;
	uint64_t bytes; /* unstuffed bytes produced so far */
};

void smtp_data_init(struct smtp_data *d, enum smtp_data_mode mode);
/*
 * Feeds len input bytes; unstuffed body bytes go to out, which must have room for len + 1 bytes (a
 * CR held from the previous call comes out with its LF). Returns the number of input bytes
 * consumed: all of them, or fewer when the end of DATA (state END) or a bare CR/LF (state BARE) was
 * reached. *produced: bytes written to out.
 */
size_t smtp_data_feed(struct smtp_data *d, const uint8_t *in, size_t len, uint8_t *out,
                      size_t *produced);
/* BDAT LAST: a message may not end inside a CR LF pair. 0 fine, -1 bare CR at the end. */
int smtp_data_finish(struct smtp_data *d);

#endif
