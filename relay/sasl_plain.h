/*
 * SASL PLAIN (RFC 4616) for the proxy's IMAP and POP3 front ends: a strict base64
 * decoder and the `[authzid] NUL authcid NUL passwd` message split into bounded fields.
 * Owns the credential buffers' bounds; it never logs, never keeps a copy of a password
 * after returning, and never accepts an authorization identity other than the user's own.
 */
#ifndef MAILPLEX_SASL_PLAIN_H
#define MAILPLEX_SASL_PLAIN_H

#include <stddef.h>

/* RFC 4616 2: a server MUST accept up to 255 octets of authzid and of authcid. */
#define SASL_USER_MAX 255
/* Passwords are longer than 255 in practice (application passwords, tokens). */
#define SASL_PASS_MAX 1024
/* authzid NUL authcid NUL passwd, each at its maximum. */
#define SASL_PLAIN_MSG_MAX (2 * SASL_USER_MAX + SASL_PASS_MAX + 2)
/* Its padded base64 form (RFC 4648 4): 4 characters per 3 octets, rounded up. */
#define SASL_PLAIN_B64_MAX (((SASL_PLAIN_MSG_MAX + 2) / 3) * 4)

/*
 * Credentials read before login, by any of IMAP LOGIN, AUTHENTICATE PLAIN, POP3
 * USER/PASS, AUTH PLAIN. Strings are NUL-terminated and carry their length. The owner
 * wipes them with sasl_creds_wipe (explicit_bzero) as soon as the login is done.
 */
struct sasl_creds {
	char authzid[SASL_USER_MAX + 1]; /* empty, or equal to user */
	size_t authzid_len;
	char user[SASL_USER_MAX + 1];
	size_t user_len;
	char pass[SASL_PASS_MAX + 1];
	size_t pass_len;
};

enum sasl_plain_result {
	SASL_PLAIN_OK,
	SASL_PLAIN_BAD_BASE64,   /* not canonical padded base64: the protocol's syntax error */
	SASL_PLAIN_BAD_MESSAGE,  /* base64 fine, PLAIN message malformed or over a bound */
	SASL_PLAIN_AUTHZ_DENIED, /* authzid names someone else: we never act on behalf */
};

/*
 * Strict RFC 4648 4 decoding: only the base64 alphabet, length a multiple of 4, '='
 * only as final padding, pad bits zero (RFC 4648 3.5). Writes at most outcap bytes.
 * Returns 0 with *outlen set, or -1 (bad input or output too small).
 */
int sasl_base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
                       size_t *outlen);
/* Padded base64 of len bytes into out (terminated). Returns 0, or -1 if out is too small. */
int sasl_base64_encode(const void *in, size_t len, char *out, size_t outcap);

/*
 * Decodes a base64 PLAIN response (without CRLF) into creds (wiped first and on error).
 * *reason (never NULL on error) says why, without any credential in it.
 */
enum sasl_plain_result sasl_plain_decode(const char *b64, size_t len, struct sasl_creds *creds,
                                         const char **reason);
/* The base64 PLAIN message for creds (authzid, user, pass), for logging in to a back end. */
int sasl_plain_encode(const struct sasl_creds *creds, char *out, size_t outcap);

/*
 * Field rules shared by every front end. A user name holds no control bytes (it is
 * logged and looked up); a password holds no NUL, CR or LF (it may be forwarded inside
 * a back-end command line). Return 1 if acceptable.
 */
int sasl_user_byte_ok(unsigned char c);
int sasl_pass_byte_ok(unsigned char c);

void sasl_creds_wipe(struct sasl_creds *creds);

#endif
