/*
 * OpenSSL 3 glue. Owns the mapping from SSL_get_error() to the loop's WANT_READ /
 * WANT_WRITE / error / bytes, and the wording of TLS errors. It must never block, never
 * close the caller's descriptor, and never keep state of its own outside the SSL objects.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"
#include "util.h"

void
tls_error_string(char *err, size_t errlen, const char *what)
{
	char one[256];
	const char *reason;
	unsigned long e;
	size_t used;
	int first = 1;

	if (err == NULL || errlen == 0) {
		ERR_clear_error();
		return;
	}
	(void)str_copy(err, errlen, what);
	while ((e = ERR_get_error()) != 0) {
		/* The reason alone reads well in a one-line status; the code is for the rest. */
		if ((reason = ERR_reason_error_string(e)) != NULL)
			(void)str_copy(one, sizeof(one), reason);
		else
			ERR_error_string_n(e, one, sizeof(one));
		used = strlen(err);
		if (used + 3 >= errlen)
			continue;
		(void)str_format(err + used, errlen - used, "%s%s", first ? ": " : ", ", one);
		first = 0;
	}
}

/* Settings of both sides: no renegotiation or compression, partial writes allowed. */
static void
tls_ctx_common(SSL_CTX *ctx)
{
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
	                             /*
	                              * Mail protocols are line-framed: a missing close_notify
	                              * cannot truncate a reply into a different valid one, and
	                              * many servers just close. Treat it as an ordinary EOF.
	                              */
	                             SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

SSL_CTX *
tls_client_ctx_new(const struct tls_client_opts *opts, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_error_string(err, errlen, "tls: client context");
		return NULL;
	}
	tls_ctx_common(ctx);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		tls_error_string(err, errlen, "tls: minimum version");
		goto fail;
	}
	if (opts->ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, opts->ca_file, NULL) != 1) {
			char what[300];

			(void)str_format(what, sizeof(what), "tls: CA file %s", opts->ca_file);
			tls_error_string(err, errlen, what);
			goto fail;
		}
	} else if (opts->verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
		tls_error_string(err, errlen, "tls: default CA paths");
		goto fail;
	}
	SSL_CTX_set_verify(ctx, opts->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *
tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	char what[300];
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_error_string(err, errlen, "tls: server context");
		return NULL;
	}
	tls_ctx_common(ctx);
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		tls_error_string(err, errlen, "tls: minimum version");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		(void)str_format(what, sizeof(what), "tls: certificate %s", cert_file);
		tls_error_string(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		(void)str_format(what, sizeof(what), "tls: key %s", key_file);
		tls_error_string(err, errlen, what);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		(void)str_format(what, sizeof(what), "tls: key %s does not match certificate %s",
		                 key_file, cert_file);
		tls_error_string(err, errlen, what);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void
tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

static SSL *
tls_new(SSL_CTX *ctx, int fd, char *err, size_t errlen)
{
	SSL *ssl;

	ERR_clear_error();
	if ((ssl = SSL_new(ctx)) == NULL) {
		tls_error_string(err, errlen, "tls: session");
		return NULL;
	}
	if (SSL_set_fd(ssl, fd) != 1) {
		tls_error_string(err, errlen, "tls: set fd");
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static int
tls_is_ip_literal(const char *name)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

SSL *
tls_client_new(SSL_CTX *ctx, int fd, const char *servername, char *err, size_t errlen)
{
	SSL *ssl;

	if ((ssl = tls_new(ctx, fd, err, errlen)) == NULL)
		return NULL;
	SSL_set_connect_state(ssl);
	if (servername == NULL || *servername == '\0')
		return ssl;
	if (tls_is_ip_literal(servername)) {
		/* RFC 6066 3: SNI carries host names only; an address is matched by IP SAN. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), servername) != 1) {
			tls_error_string(err, errlen, "tls: peer address");
			goto fail;
		}
		return ssl;
	}
	if (SSL_set_tlsext_host_name(ssl, servername) != 1) {
		tls_error_string(err, errlen, "tls: SNI");
		goto fail;
	}
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (SSL_set1_host(ssl, servername) != 1) {
		tls_error_string(err, errlen, "tls: host name");
		goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

SSL *
tls_server_new(SSL_CTX *ctx, int fd, char *err, size_t errlen)
{
	SSL *ssl;

	if ((ssl = tls_new(ctx, fd, err, errlen)) == NULL)
		return NULL;
	SSL_set_accept_state(ssl);
	return ssl;
}

void
tls_free(SSL *ssl)
{
	SSL_free(ssl);
}

/*
 * One place turns an SSL_* return into ours. ERR_clear_error() before every call keeps
 * an old queue entry from turning a WANT into an error (SSL_get_error reads the queue).
 */
static int
tls_result(SSL *ssl, int ret, const char *what, char *err, size_t errlen)
{
	char buf[128];
	long vr;
	int saved = errno;

	switch (SSL_get_error(ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0) {
			if (saved == 0 || ret == 0)
				(void)str_format(err, errlen, "%s: connection closed by peer",
				                 what);
			else
				(void)str_format(err, errlen, "%s: %s", what, strerror(saved));
			return TLS_ERROR;
		}
		break;
	default:
		break;
	}
	/* Only a verifying session fails for its verify result; otherwise it is advice. */
	vr = SSL_get_verify_result(ssl);
	if (!SSL_is_init_finished(ssl) && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE &&
	    vr != X509_V_OK) {
		ERR_clear_error();
		(void)str_format(err, errlen, "%s: certificate verify failed: %s", what,
		                 X509_verify_cert_error_string(vr));
		return TLS_ERROR;
	}
	(void)str_copy(buf, sizeof(buf), what);
	tls_error_string(err, errlen, buf);
	return TLS_ERROR;
}

int
tls_handshake(SSL *ssl, char *err, size_t errlen)
{
	int ret, r;

	ERR_clear_error();
	errno = 0;
	if ((ret = SSL_do_handshake(ssl)) == 1)
		return 0;
	r = tls_result(ssl, ret, "tls", err, errlen);
	/* A clean close during the handshake is still a failed handshake. */
	if (r == 0) {
		(void)str_copy(err, errlen, "tls: connection closed by peer");
		return TLS_ERROR;
	}
	return r;
}

ssize_t
tls_read(SSL *ssl, void *buf, size_t len, char *err, size_t errlen)
{
	size_t n = 0;
	int ret;

	ERR_clear_error();
	errno = 0;
	if ((ret = SSL_read_ex(ssl, buf, len, &n)) == 1)
		return (ssize_t)n;
	return tls_result(ssl, ret, "tls read", err, errlen);
}

ssize_t
tls_write(SSL *ssl, const void *buf, size_t len, char *err, size_t errlen)
{
	size_t n = 0;
	int ret, r;

	ERR_clear_error();
	errno = 0;
	if ((ret = SSL_write_ex(ssl, buf, len, &n)) == 1)
		return (ssize_t)n;
	r = tls_result(ssl, ret, "tls write", err, errlen);
	if (r == 0) {
		(void)str_copy(err, errlen, "tls write: connection closed by peer");
		return TLS_ERROR;
	}
	return r;
}

size_t
tls_pending(const SSL *ssl)
{
	int n = SSL_pending(ssl);

	return n > 0 ? (size_t)n : 0;
}

void
tls_close_notify(SSL *ssl)
{
	ERR_clear_error();
	if (SSL_is_init_finished(ssl))
		(void)SSL_shutdown(ssl);
	ERR_clear_error();
}

int
tls_cert_days_left(SSL *ssl, int *days, char *err, size_t errlen)
{
	X509 *cert;
	int day = 0, sec = 0;

	if ((cert = SSL_get0_peer_certificate(ssl)) == NULL) {
		(void)str_copy(err, errlen, "tls: no peer certificate");
		return -1;
	}
	ERR_clear_error();
	if (ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(cert)) != 1) {
		tls_error_string(err, errlen, "tls: certificate notAfter");
		return -1;
	}
	/* day and sec share a sign: hours past notAfter are already "expired". */
	*days = (day == 0 && sec < 0) ? -1 : day;
	return 0;
}

const char *
tls_version_name(const SSL *ssl)
{
	return SSL_get_version(ssl);
}

const char *
tls_cipher_name(const SSL *ssl)
{
	return SSL_get_cipher_name(ssl);
}
