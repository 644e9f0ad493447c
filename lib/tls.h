/*
 * TLS helpers over OpenSSL 3 for every program: client and server contexts, non-blocking
 * handshake/read/write that speak the event loop's language, SNI and host-name checks,
 * certificate expiry, OpenSSL error strings into a caller buffer. No global state besides
 * OpenSSL's own initialisation; never blocks, never owns the descriptor.
 * Writes go through write(2): callers ignore SIGPIPE.
 */
#ifndef MAILPLEX_TLS_H
#define MAILPLEX_TLS_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/*
 * Results of tls_handshake/tls_read/tls_write besides bytes. WANT_* name the readiness to
 * wait for before calling the same function again; a write may want READ (renegotiation,
 * post-handshake messages) and a read may want WRITE.
 */
#define TLS_ERROR      (-1)
#define TLS_WANT_READ  (-2)
#define TLS_WANT_WRITE (-3)

#define TLS_ERR_MAX 256 /* enough for every message made here */

struct tls_client_opts {
	int verify;          /* verify the peer's chain (and host name if given) */
	const char *ca_file; /* trust anchors; NULL: the system's default paths */
};

/* Client context: TLS 1.2 minimum; verification as asked. NULL with err set. */
SSL_CTX *tls_client_ctx_new(const struct tls_client_opts *opts, char *err, size_t errlen);
/* Server context from PEM certificate chain and key files; checks they match. */
SSL_CTX *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
void tls_ctx_free(SSL_CTX *ctx);

/*
 * Client session on a connected non-blocking fd. servername: SNI (not sent for IP
 * literals) and, if the context verifies, the name (or IP address) the certificate must
 * carry; NULL for neither.
 */
SSL *tls_client_new(SSL_CTX *ctx, int fd, const char *servername, char *err, size_t errlen);
SSL *tls_server_new(SSL_CTX *ctx, int fd, char *err, size_t errlen);
/* Frees the session without touching the descriptor (the caller closes it). */
void tls_free(SSL *ssl);

/* 0 when complete, TLS_WANT_READ/WRITE, or TLS_ERROR with err ("certificate verify ..."). */
int tls_handshake(SSL *ssl, char *err, size_t errlen);
/*
 * > 0 bytes, 0 at end of stream (close_notify or TCP EOF), TLS_WANT_READ/WRITE, TLS_ERROR.
 * After a read, call again while tls_pending() > 0: those bytes never wake epoll.
 */
ssize_t tls_read(SSL *ssl, void *buf, size_t len, char *err, size_t errlen);
/* > 0 bytes written, TLS_WANT_READ/WRITE, TLS_ERROR. Retry with the same buffer. */
ssize_t tls_write(SSL *ssl, const void *buf, size_t len, char *err, size_t errlen);
/* Decrypted bytes buffered inside OpenSSL. */
size_t tls_pending(const SSL *ssl);
/* Sends close_notify once without waiting for the peer's (best effort). */
void tls_close_notify(SSL *ssl);

/*
 * Whole days until the peer certificate's notAfter (negative once expired, 0 within the
 * last day). 0 on success, -1 with err if there is no peer certificate.
 */
int tls_cert_days_left(SSL *ssl, int *days, char *err, size_t errlen);
/* "TLSv1.3", "TLS_AES_256_GCM_SHA384" of an established session. */
const char *tls_version_name(const SSL *ssl);
const char *tls_cipher_name(const SSL *ssl);

/* "what: " plus every OpenSSL queue entry (the queue is emptied) into err. */
void tls_error_string(char *err, size_t errlen, const char *what);

#endif
