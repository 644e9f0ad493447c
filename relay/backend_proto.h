/*
 * The bytes of mailplex-proxy's dialogue with a back end, without any I/O: classifying
 * the back end's reply lines (IMAP greeting, untagged, continuation and tagged replies;
 * POP3 +OK/-ERR with RFC 2449 response codes, CAPA lines) and encoding the client's
 * address (PROXY protocol v2 header, IMAP ID x-originating-*, POP3 XCLIENT). Encoders
 * take socket addresses only, never client bytes, and never emit CR, LF or a quote.
 */
#ifndef MAILPLEX_BACKEND_PROTO_H
#define MAILPLEX_BACKEND_PROTO_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest PROXY v2 header we build: 16 fixed bytes plus two IPv6 addresses and ports. */
#define BE_PROXY_V2_MAX 52
/* Longest ID or XCLIENT command we build, tag included. */
#define BE_ADDR_CMD_MAX 512

enum be_imap_kind {
	BE_IMAP_GARBAGE,   /* none of the below: a protocol error */
	BE_IMAP_OK,        /* "* OK ..." (the greeting, or untagged status) */
	BE_IMAP_PREAUTH,   /* "* PREAUTH ..." */
	BE_IMAP_BYE,       /* "* BYE ..." */
	BE_IMAP_UNTAGGED,  /* any other "* ..." */
	BE_IMAP_CONTINUE,  /* "+ ..." */
	BE_IMAP_TAGGED_OK, /* "<tag> OK ..." */
	BE_IMAP_TAGGED_NO,
	BE_IMAP_TAGGED_BAD,
	BE_IMAP_OTHER_TAG, /* a tagged reply to a tag we did not send */
};

struct be_imap_reply {
	enum be_imap_kind kind;
	int literal_plus; /* a [CAPABILITY ...] code or CAPABILITY data names LITERAL+ */
	int auth_failure; /* NO: about the credentials, not the server (RFC 5530) */
};

/* One line without CR LF; tag is the tag we are waiting for (may be NULL or ""). */
void be_imap_reply_parse(const char *line, size_t len, const char *tag, struct be_imap_reply *r);

enum be_pop3_kind {
	BE_POP3_GARBAGE,
	BE_POP3_OK,  /* "+OK" */
	BE_POP3_ERR, /* "-ERR" */
};

struct be_pop3_reply {
	enum be_pop3_kind kind;
	int auth_failure; /* -ERR without a code, or [AUTH] (RFC 2449 8, RFC 3206) */
	int xclient;      /* +OK [XCLIENT]: Dovecot's greeting to a trusted peer */
};

void be_pop3_reply_parse(const char *line, size_t len, struct be_pop3_reply *r);

enum be_capa_line {
	BE_CAPA_END,     /* "." ends the list (RFC 2449 5) */
	BE_CAPA_XCLIENT, /* an XCLIENT capability line (servers other than Dovecot) */
	BE_CAPA_OTHER,
};

enum be_capa_line be_pop3_capa_line(const char *line, size_t len);

/*
 * PROXY protocol v2 (haproxy's proxy-protocol.txt 2.2): PROXY command, TCP over IPv4
 * when both addresses are IPv4 (v4-mapped IPv6 counts as IPv4), otherwise TCP over IPv6.
 * src: the client; dst: the address it connected to. Returns the length, or -1 if an
 * address family is not IP or buf is too small.
 */
int be_proxy_v2_header(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *buf,
                       size_t len);
/*
 * `TAG ID ("x-originating-ip" "..." "x-originating-port" "..." "x-connected-ip" "..."
 * "x-connected-port" "...")` CR LF. Returns the length, or -1 (not IP, too small).
 */
int be_imap_id_command(const char *tag, const struct sockaddr *src, const struct sockaddr *dst,
                       char *buf, size_t len);
/* `XCLIENT ADDR=... PORT=...` CR LF (Dovecot's POP3 login). Length or -1. */
int be_pop3_xclient_command(const struct sockaddr *src, char *buf, size_t len);

#endif
