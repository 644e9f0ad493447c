/*
 * Unit tests for the health-check engine (healthcheck/hc_engine.c) and lib/tls against
 * scripted peers that live in the same event loop on 127.0.0.1: multi-line and dribbled
 * replies, garbage, early close, silence, overlong lines, STARTTLS with a real handshake,
 * plaintext injected after STARTTLS, certificate expiry and verification, and TLS bytes
 * left inside OpenSSL that epoll never reports.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "hc.h"
#include "event.h"
#include "sock.h"
#include "tls.h"
#include "util.h"

#define SAFETY_MS 5000 /* a hung run fails the test instead of hanging it */

enum peer_act {
	P_SEND,    /* data as it is */
	P_DRIBBLE, /* data one byte per millisecond */
	P_LINE,    /* read one line from the client into lines[] */
	P_TLS,     /* server-side TLS handshake */
	P_CLOSE,
	P_SILENT, /* keep the connection open, say nothing */
};

struct peer_step {
	enum peer_act act;
	const char *data;
};

struct peer {
	struct ev_loop *loop;
	int lfd;
	int cfd;
	SSL_CTX *ctx;
	SSL *ssl;
	const struct peer_step *script;
	size_t n, i, off;
	struct ev_timer tick;
	char in[8192];
	size_t inlen;
	char lines[8][128];
	size_t nlines;
	char tls_err[TLS_ERR_MAX];
};

struct run {
	struct hc_result result;
	int done;
	int in_start; /* done must never be called from inside hc_session_start */
	int called_in_start;
};

struct fixture {
	char dir[64];
	char cert[128], key[128];           /* valid 365 days */
	char soon_cert[128], soon_key[128]; /* expires in 5.5 days */
	char old_cert[128], old_key[128];   /* expired 2 days ago */
};

static struct fixture fx;

/* ---- certificates made here: P-256, self-signed, CN and SAN localhost/127.0.0.1 ---- */

static int
make_cert(const char *cert, const char *key, long from_s, long until_s)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	X509_EXTENSION *ext;
	X509V3_CTX v3;
	FILE *f;
	int ok = 0;

	if (pk == NULL || x == NULL)
		goto out;
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), from_s);
	X509_gmtime_adj(X509_getm_notAfter(x), until_s);
	X509_set_version(x, 2);
	X509_set_pubkey(x, pk);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1,
	                           -1, 0);
	X509_set_issuer_name(x, name);
	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
	if (ext == NULL || X509_add_ext(x, ext, -1) != 1)
		goto out;
	X509_EXTENSION_free(ext);
	if (X509_sign(x, pk, EVP_sha256()) == 0)
		goto out;
	if ((f = fopen(cert, "w")) == NULL)
		goto out;
	ok = PEM_write_X509(f, x) == 1;
	fclose(f);
	if ((f = fopen(key, "w")) == NULL) {
		ok = 0;
		goto out;
	}
	ok = ok && PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) == 1;
	fclose(f);
out:
	X509_free(x);
	EVP_PKEY_free(pk);
	return ok ? 0 : -1;
}

static int
setup_certs(void **state)
{
	(void)str_copy(fx.dir, sizeof(fx.dir), "/tmp/test_hc_engine.XXXXXX");
	if (mkdtemp(fx.dir) == NULL)
		return -1;
	(void)str_format(fx.cert, sizeof(fx.cert), "%s/cert.pem", fx.dir);
	(void)str_format(fx.key, sizeof(fx.key), "%s/key.pem", fx.dir);
	(void)str_format(fx.soon_cert, sizeof(fx.soon_cert), "%s/soon.pem", fx.dir);
	(void)str_format(fx.soon_key, sizeof(fx.soon_key), "%s/soon-key.pem", fx.dir);
	(void)str_format(fx.old_cert, sizeof(fx.old_cert), "%s/old.pem", fx.dir);
	(void)str_format(fx.old_key, sizeof(fx.old_key), "%s/old-key.pem", fx.dir);
	if (make_cert(fx.cert, fx.key, -3600, 365L * 86400) == -1 ||
	    make_cert(fx.soon_cert, fx.soon_key, -3600, 5L * 86400 + 43200) == -1 ||
	    make_cert(fx.old_cert, fx.old_key, -10L * 86400, -2L * 86400) == -1)
		return -1;
	return 0;
}

static int
teardown_certs(void **state)
{
	const char *files[] = {fx.cert, fx.key, fx.soon_cert, fx.soon_key, fx.old_cert, fx.old_key};
	size_t i;

	for (i = 0; i < ARRAY_LEN(files); i++)
		(void)unlink(files[i]);
	(void)rmdir(fx.dir);
	return 0;
}

/* ---- the scripted peer ---- */

static void peer_run(struct peer *p);

static void
peer_close(struct peer *p)
{
	if (p->cfd == -1)
		return;
	(void)ev_io_del(p->loop, p->cfd);
	ev_timer_stop(p->loop, &p->tick);
	tls_free(p->ssl);
	p->ssl = NULL;
	close(p->cfd);
	p->cfd = -1;
}

static void
peer_on_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	peer_run(arg);
}

static void
peer_on_tick(struct ev_loop *loop, void *arg)
{
	peer_run(arg);
}

static void
peer_write(struct peer *p, const char *data, size_t len)
{
	char err[TLS_ERR_MAX];
	ssize_t r;

	while (len > 0) {
		if (p->ssl != NULL)
			r = tls_write(p->ssl, data, len, err, sizeof(err));
		else
			r = send(p->cfd, data, len, MSG_NOSIGNAL);
		/* Small replies on loopback always fit the socket buffer. */
		assert_true(r > 0);
		data += r;
		len -= (size_t)r;
	}
}

/* Reads what is there; returns 1 if a whole line was taken into lines[]. */
static int
peer_take_line(struct peer *p)
{
	char err[TLS_ERR_MAX], *lf;
	size_t linelen;
	ssize_t r;

	for (;;) {
		if ((lf = memchr(p->in, '\n', p->inlen)) != NULL) {
			linelen = (size_t)(lf - p->in) + 1;
			if (p->nlines < ARRAY_LEN(p->lines))
				(void)str_copy_n(p->lines[p->nlines++], sizeof(p->lines[0]), p->in,
				                 linelen > 2 ? linelen - 2 : 0);
			memmove(p->in, p->in + linelen, p->inlen - linelen);
			p->inlen -= linelen;
			return 1;
		}
		if (p->inlen == sizeof(p->in))
			return 0;
		if (p->ssl != NULL)
			r = tls_read(p->ssl, p->in + p->inlen, sizeof(p->in) - p->inlen, err,
			             sizeof(err));
		else
			r = read(p->cfd, p->in + p->inlen, sizeof(p->in) - p->inlen);
		if (r <= 0)
			return 0;
		p->inlen += (size_t)r;
	}
}

static void
peer_run(struct peer *p)
{
	const struct peer_step *st;
	int r;

	while (p->cfd != -1 && p->i < p->n) {
		st = &p->script[p->i];
		switch (st->act) {
		case P_SEND:
			peer_write(p, st->data, strlen(st->data));
			break;
		case P_DRIBBLE:
			peer_write(p, st->data + p->off, 1);
			if (st->data[++p->off] != '\0') {
				assert_int_equal(
				    ev_timer_start(p->loop, &p->tick, 1, peer_on_tick, p), 0);
				return;
			}
			p->off = 0;
			break;
		case P_LINE:
			if (!peer_take_line(p)) {
				assert_int_equal(ev_io_set(p->loop, p->cfd, EV_READ, peer_on_io, p),
				                 0);
				return;
			}
			break;
		case P_TLS:
			if (p->ssl == NULL) {
				p->ssl =
				    tls_server_new(p->ctx, p->cfd, p->tls_err, sizeof(p->tls_err));
				assert_non_null(p->ssl);
			}
			r = tls_handshake(p->ssl, p->tls_err, sizeof(p->tls_err));
			if (r == TLS_WANT_READ || r == TLS_WANT_WRITE) {
				assert_int_equal(ev_io_set(p->loop, p->cfd,
				                           r == TLS_WANT_READ ? EV_READ : EV_WRITE,
				                           peer_on_io, p),
				                 0);
				return;
			}
			if (r != 0) { /* the client refused us (verification): stop here */
				peer_close(p);
				return;
			}
			break;
		case P_CLOSE:
			peer_close(p);
			return;
		case P_SILENT:
			(void)ev_io_del(p->loop, p->cfd);
			return;
		}
		p->i++;
	}
}

static void
peer_on_accept(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct peer *p = arg;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char err[128];
	int cfd;

	if ((cfd = sock_accept(fd, &ss, &sslen, err, sizeof(err))) == -1)
		return;
	assert_int_equal(p->cfd, -1);
	p->cfd = cfd;
	peer_run(p);
}

static void
peer_start(struct peer *p, struct ev_loop *loop, const struct peer_step *script, size_t n,
           const char *cert, const char *key, struct hc_spec *spec)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[TLS_ERR_MAX];

	memset(p, 0, sizeof(*p));
	p->loop = loop;
	p->cfd = -1;
	p->script = script;
	p->n = n;
	ev_timer_init(&p->tick);
	if (cert != NULL) {
		p->ctx = tls_server_ctx_new(cert, key, err, sizeof(err));
		assert_non_null(p->ctx);
	}
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &ss, &sslen, err, sizeof(err)), 0);
	p->lfd = sock_listen(&ss, sslen, 8, 0, err, sizeof(err));
	assert_true(p->lfd >= 0);
	spec->addrlen = sizeof(spec->addr);
	assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&spec->addr, &spec->addrlen), 0);
	assert_int_equal(sock_addr_format((struct sockaddr *)&spec->addr, spec->addr_str,
	                                  sizeof(spec->addr_str)),
	                 0);
	assert_int_equal(ev_io_set(loop, p->lfd, EV_READ, peer_on_accept, p), 0);
}

static void
peer_stop(struct peer *p)
{
	peer_close(p);
	(void)ev_io_del(p->loop, p->lfd);
	close(p->lfd);
	tls_ctx_free(p->ctx);
}

/* ---- running one check ---- */

static void
run_done(struct hc_session *s, const struct hc_result *r, void *arg)
{
	struct run *run = arg;

	if (run->in_start)
		run->called_in_start = 1;
	run->result = *r;
	run->done = 1;
	ev_stop(s->loop);
}

static void
safety_stop(struct ev_loop *loop, void *arg)
{
	ev_stop(loop);
}

static void
spec_init(struct hc_spec *spec, enum hc_type type, int starttls)
{
	memset(spec, 0, sizeof(*spec));
	spec->type = type;
	spec->starttls = starttls;
	spec->timeout_ms = 2000;
	(void)str_copy(spec->helo, sizeof(spec->helo), "check.test");
}

/* Runs spec against script; the peer serves with cert/key if given. */
static void
run_check(struct run *run, struct peer *p, struct hc_spec *spec, const struct peer_step *script,
          size_t n, const char *cert, const char *key)
{
	struct ev_loop *loop = ev_loop_new();
	struct hc_session s;
	struct ev_timer safety;

	assert_non_null(loop);
	memset(run, 0, sizeof(*run));
	if (script != NULL)
		peer_start(p, loop, script, n, cert, key, spec);
	hc_session_init(&s);
	ev_timer_init(&safety);
	assert_int_equal(ev_timer_start(loop, &safety, SAFETY_MS, safety_stop, NULL), 0);
	run->in_start = 1;
	assert_int_equal(hc_session_start(&s, loop, spec, run_done, run), 0);
	run->in_start = 0;
	assert_int_equal(ev_run(loop), 0);
	assert_true(run->done);
	assert_false(run->called_in_start);
	assert_false(hc_session_running(&s));
	ev_timer_stop(loop, &safety);
	if (script != NULL)
		peer_stop(p);
	ev_loop_free(loop);
}

static SSL_CTX *
client_ctx(int verify, const char *ca_file)
{
	struct tls_client_opts o = {verify, ca_file};
	char err[TLS_ERR_MAX];
	SSL_CTX *ctx = tls_client_ctx_new(&o, err, sizeof(err));

	assert_non_null(ctx);
	return ctx;
}

/* ---- the tests ---- */

static const struct peer_step smtp_good[] = {
    {P_SEND, "220-mx.test ESMTP\r\n220 no UCE\r\n"},
    {P_LINE, NULL},
    {P_SEND, "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"},
    {P_LINE, NULL},
    {P_SEND, "221 2.0.0 bye\r\n"},
    {P_CLOSE, NULL},
};

static void
test_smtp_multi_line_banner_and_ehlo_pass(void **state)
{
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 0);
	run_check(&run, &p, &spec, smtp_good, ARRAY_LEN(smtp_good), NULL, NULL);
	assert_int_equal(run.result.status, HC_OK);
	assert_string_equal(run.result.reason, "");
	assert_string_equal(run.result.greeting, "220 mx.test ESMTP");
	assert_int_equal(run.result.code, 221);
	assert_false(run.result.tls);
	assert_int_equal(p.nlines, 2);
	assert_string_equal(p.lines[0], "EHLO check.test");
	assert_string_equal(p.lines[1], "QUIT");
}

static void
test_smtp_reply_dribbled_byte_by_byte_passes(void **state)
{
	static const struct peer_step script[] = {
	    {P_DRIBBLE, "220-mx.test\r\n220 ready\r\n"},
	    {P_LINE, NULL},
	    {P_DRIBBLE, "250-mx.test\r\n250 SIZE\r\n"},
	    {P_LINE, NULL},
	    {P_DRIBBLE, "221 bye\r\n"},
	    {P_CLOSE, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 0);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	assert_int_equal(run.result.status, HC_OK);
	assert_string_equal(run.result.greeting, "220 mx.test");
}

static void
test_smtp_554_banner_is_critical_with_its_text(void **state)
{
	static const struct peer_step script[] = {
	    {P_SEND, "554 5.3.2 service closed\r\n"},
	    {P_CLOSE, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 0);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "smtp: expected 220, got 554 5.3.2 service closed");
	assert_int_equal(run.result.code, 554);
	assert_string_equal(run.result.phase, "banner");
}

static void
test_smtp_wrong_ehlo_code_names_the_command(void **state)
{
	static const struct peer_step script[] = {
	    {P_SEND, "220 mx\r\n"},
	    {P_LINE, NULL},
	    {P_SEND, "502 5.5.1 no EHLO here\r\n"},
	    {P_SILENT, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 0);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason,
	                    "smtp: expected 250 after EHLO, got 502 5.5.1 no EHLO here");
}

static void
test_garbage_greeting_is_critical(void **state)
{
	static const struct peer_step script[] = {
	    {P_SEND, "SSH-2.0-OpenSSH_9.2\r\n"},
	    {P_SILENT, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 0);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason,
	                    "smtp: malformed reply in banner: SSH-2.0-OpenSSH_9.2");
}

static void
test_close_after_banner_is_critical_in_ehlo(void **state)
{
	static const struct peer_step script[] = {
	    {P_SEND, "220 mx\r\n"},
	    {P_LINE, NULL},
	    {P_CLOSE, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 0);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "smtp: connection closed by peer in EHLO");
}

static void
test_silent_peer_times_out_in_the_banner(void **state)
{
	static const struct peer_step script[] = {{P_SILENT, NULL}};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 0);
	spec.timeout_ms = 200;
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "timeout after 200 ms in banner");
	assert_true(run.result.latency_ms >= 200);
}

static void
test_overlong_reply_line_is_critical(void **state)
{
	static char big[HC_LINE_MAX_BYTES + 100];
	static struct peer_step script[] = {{P_SEND, big}, {P_SILENT, NULL}};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	memset(big, 'x', sizeof(big) - 1);
	memcpy(big, "220-", 4);
	spec_init(&spec, HC_SMTP, 0);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_non_null(strstr(run.result.reason, "reply line longer than 2048 bytes in banner"));
}

static void
test_refused_connect_is_reported_from_the_loop(void **state)
{
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	struct hc_spec spec;
	char err[128];
	struct run run;
	int fd;

	/* A port that was just free: bound, named, closed. */
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &ss, &sslen, err, sizeof(err)), 0);
	fd = sock_listen(&ss, sslen, 1, 0, err, sizeof(err));
	assert_true(fd >= 0);
	spec_init(&spec, HC_TCP, 0);
	spec.addrlen = sizeof(spec.addr);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&spec.addr, &spec.addrlen), 0);
	close(fd);
	run_check(&run, NULL, &spec, NULL, 0, NULL, NULL);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "connect: Connection refused");
	assert_string_equal(run.result.phase, "connect");
}

static void
test_starttls_not_offered_is_critical(void **state)
{
	static const struct peer_step script[] = {
	    {P_SEND, "220 mx\r\n"},
	    {P_LINE, NULL},
	    {P_SEND, "250-mx\r\n250 PIPELINING\r\n"},
	    {P_SILENT, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 1);
	spec.ssl_ctx = client_ctx(0, NULL);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "smtp: STARTTLS not offered in the EHLO reply");
}

static void
test_plaintext_after_starttls_reply_is_refused(void **state)
{
	static const struct peer_step script[] = {
	    {P_SEND, "220 mx\r\n"},
	    {P_LINE, NULL},
	    {P_SEND, "250-mx\r\n250 STARTTLS\r\n"},
	    {P_LINE, NULL},
	    /* One segment: the injected reply arrives with the 220. */
	    {P_SEND, "220 go ahead\r\n250 injected\r\n"},
	    {P_SILENT, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 1);
	spec.ssl_ctx = client_ctx(0, NULL);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), NULL, NULL);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "smtp: plaintext after the STARTTLS reply");
	assert_false(run.result.tls);
}

static const struct peer_step smtp_starttls[] = {
    {P_SEND, "220 mx.test ESMTP\r\n"},
    {P_LINE, NULL},
    {P_SEND, "250-mx.test\r\n250-STARTTLS\r\n250 SIZE\r\n"},
    {P_LINE, NULL},
    {P_SEND, "220 2.0.0 ready to start TLS\r\n"},
    {P_TLS, NULL},
    {P_LINE, NULL},
    {P_SEND, "250-mx.test\r\n250 SIZE\r\n"},
    {P_LINE, NULL},
    {P_SEND, "221 bye\r\n"},
    {P_CLOSE, NULL},
};

static void
test_smtp_starttls_does_a_real_handshake_and_ehlo_again(void **state)
{
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 1);
	spec.ssl_ctx = client_ctx(1, fx.cert);
	(void)str_copy(spec.servername, sizeof(spec.servername), "localhost");
	spec.cert_warn_days = 30;
	run_check(&run, &p, &spec, smtp_starttls, ARRAY_LEN(smtp_starttls), fx.cert, fx.key);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_OK);
	assert_true(run.result.tls);
	assert_true(run.result.starttls);
	assert_in_range(run.result.cert_days, 363, 365);
	assert_int_equal(p.nlines, 4);
	assert_string_equal(p.lines[1], "STARTTLS");
	assert_string_equal(p.lines[2], "EHLO check.test");
	assert_string_equal(p.lines[3], "QUIT");
}

static void
test_certificate_expiring_soon_is_a_warning(void **state)
{
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_SMTP, 1);
	spec.ssl_ctx = client_ctx(0, NULL);
	spec.cert_warn_days = 30;
	run_check(&run, &p, &spec, smtp_starttls, ARRAY_LEN(smtp_starttls), fx.soon_cert,
	          fx.soon_key);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_WARNING);
	assert_string_equal(run.result.reason, "certificate expires in 5 days");
	assert_int_equal(run.result.cert_days, 5);
	/* The run still went to the end: a warning is not a failure. */
	assert_int_equal(run.result.code, 221);
}

static void
test_expired_certificate_is_critical(void **state)
{
	static const struct peer_step script[] = {
	    {P_TLS, NULL},
	    {P_SEND, "+OK ready\r\n"},
	    {P_SILENT, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_POP3S, 0);
	spec.ssl_ctx = client_ctx(0, NULL);
	spec.cert_warn_days = 10;
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), fx.old_cert, fx.old_key);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "tls: certificate expired 2 days ago");
}

static void
test_verify_rejects_self_signed_and_wrong_name(void **state)
{
	static const struct peer_step script[] = {
	    {P_TLS, NULL},
	    {P_SEND, "* OK ready\r\n"},
	    {P_SILENT, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_IMAPS, 0);
	spec.ssl_ctx = client_ctx(1, NULL);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), fx.cert, fx.key);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason,
	                    "tls: certificate verify failed: self-signed certificate");
	assert_string_equal(run.result.phase, "TLS handshake");

	spec_init(&spec, HC_IMAPS, 0);
	spec.ssl_ctx = client_ctx(1, fx.cert);
	(void)str_copy(spec.servername, sizeof(spec.servername), "mail.other.test");
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), fx.cert, fx.key);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_CRITICAL);
	assert_string_equal(run.result.reason, "tls: certificate verify failed: hostname mismatch");
}

static void
test_tls_bytes_buffered_in_openssl_are_drained(void **state)
{
	/*
	 * 120 untagged lines and the tagged OK in one TLS record: the engine reads 2048 bytes
	 * at a time, so most of the reply waits inside OpenSSL where epoll never sees it.
	 */
	static char flood[120 * 64 + 64];
	static struct peer_step script[] = {
	    {P_TLS, NULL},   {P_SEND, "* OK ready\r\n"}, {P_LINE, NULL},
	    {P_SEND, flood}, {P_SILENT, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;
	size_t i, off = 0;

	for (i = 0; i < 120; i++) {
		(void)str_format(flood + off, sizeof(flood) - off, "* %-59s\r\n", "NOISE");
		off += strlen(flood + off);
	}
	(void)str_format(flood + off, sizeof(flood) - off, "a1 OK bye\r\n");
	spec_init(&spec, HC_IMAPS, 0);
	spec.ssl_ctx = client_ctx(0, NULL);
	run_check(&run, &p, &spec, script, ARRAY_LEN(script), fx.cert, fx.key);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_OK);
	assert_string_equal(p.lines[0], "a1 LOGOUT");
}

static void
test_imap_starttls_and_pop3_stls_pass(void **state)
{
	static const struct peer_step imap[] = {
	    {P_SEND, "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"},
	    {P_LINE, NULL},
	    {P_SEND, "a1 OK Begin TLS negotiation now\r\n"},
	    {P_TLS, NULL},
	    {P_LINE, NULL},
	    {P_SEND, "* BYE logging out\r\na2 OK Logout completed\r\n"},
	    {P_CLOSE, NULL},
	};
	static const struct peer_step pop3[] = {
	    {P_SEND, "+OK ready\r\n"},
	    {P_LINE, NULL},
	    {P_SEND, "+OK begin TLS\r\n"},
	    {P_TLS, NULL},
	    {P_LINE, NULL},
	    {P_SEND, "+OK bye\r\n"},
	    {P_CLOSE, NULL},
	};
	struct hc_spec spec;
	struct peer p;
	struct run run;

	spec_init(&spec, HC_IMAP, 1);
	spec.ssl_ctx = client_ctx(0, NULL);
	run_check(&run, &p, &spec, imap, ARRAY_LEN(imap), fx.cert, fx.key);
	assert_int_equal(run.result.status, HC_OK);
	assert_true(run.result.starttls);
	assert_string_equal(p.lines[0], "a1 STARTTLS");
	assert_string_equal(p.lines[1], "a2 LOGOUT");

	spec.type = HC_POP3;
	run_check(&run, &p, &spec, pop3, ARRAY_LEN(pop3), fx.cert, fx.key);
	tls_ctx_free(spec.ssl_ctx);
	assert_int_equal(run.result.status, HC_OK);
	assert_true(run.result.starttls);
	assert_string_equal(p.lines[0], "STLS");
	assert_string_equal(p.lines[1], "QUIT");
}

static void
test_spec_without_tls_context_or_with_bad_starttls_is_refused(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct hc_session s;
	struct hc_spec spec;
	struct run run;
	char err[128];

	spec_init(&spec, HC_IMAPS, 0);
	assert_int_equal(
	    sock_addr_parse("127.0.0.1:1", &spec.addr, &spec.addrlen, err, sizeof(err)), 0);
	hc_session_init(&s);
	assert_int_equal(hc_session_start(&s, loop, &spec, run_done, &run), -1);
	assert_int_equal(hc_spec_check(&spec, err, sizeof(err)), -1);
	assert_string_equal(err, "TLS check without a TLS context");
	spec_init(&spec, HC_TCP, 1);
	spec.addrlen = sizeof(struct sockaddr_in);
	assert_int_equal(hc_spec_check(&spec, err, sizeof(err)), -1);
	assert_string_equal(err, "tcp has no STARTTLS");
	ev_loop_free(loop);
}

static void
test_tls_server_context_reports_missing_and_mismatched_files(void **state)
{
	char err[TLS_ERR_MAX];
	SSL_CTX *ctx;

	assert_null(tls_server_ctx_new("/nonexistent/cert.pem", fx.key, err, sizeof(err)));
	assert_non_null(strstr(err, "tls: certificate /nonexistent/cert.pem"));
	assert_null(tls_server_ctx_new(fx.cert, "/nonexistent/key.pem", err, sizeof(err)));
	assert_non_null(strstr(err, "tls: key /nonexistent/key.pem"));
	/* Both files load, but the key is another certificate's: refuse before serving. */
	assert_null(tls_server_ctx_new(fx.cert, fx.soon_key, err, sizeof(err)));
	assert_true(strstr(err, "does not match") != NULL || strstr(err, "mismatch") != NULL);
	assert_non_null(ctx = tls_server_ctx_new(fx.cert, fx.key, err, sizeof(err)));
	tls_ctx_free(ctx);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smtp_multi_line_banner_and_ehlo_pass),
	    cmocka_unit_test(test_smtp_reply_dribbled_byte_by_byte_passes),
	    cmocka_unit_test(test_smtp_554_banner_is_critical_with_its_text),
	    cmocka_unit_test(test_smtp_wrong_ehlo_code_names_the_command),
	    cmocka_unit_test(test_garbage_greeting_is_critical),
	    cmocka_unit_test(test_close_after_banner_is_critical_in_ehlo),
	    cmocka_unit_test(test_silent_peer_times_out_in_the_banner),
	    cmocka_unit_test(test_overlong_reply_line_is_critical),
	    cmocka_unit_test(test_refused_connect_is_reported_from_the_loop),
	    cmocka_unit_test(test_starttls_not_offered_is_critical),
	    cmocka_unit_test(test_plaintext_after_starttls_reply_is_refused),
	    cmocka_unit_test(test_smtp_starttls_does_a_real_handshake_and_ehlo_again),
	    cmocka_unit_test(test_certificate_expiring_soon_is_a_warning),
	    cmocka_unit_test(test_expired_certificate_is_critical),
	    cmocka_unit_test(test_verify_rejects_self_signed_and_wrong_name),
	    cmocka_unit_test(test_tls_bytes_buffered_in_openssl_are_drained),
	    cmocka_unit_test(test_imap_starttls_and_pop3_stls_pass),
	    cmocka_unit_test(test_spec_without_tls_context_or_with_bad_starttls_is_refused),
	    cmocka_unit_test(test_tls_server_context_reports_missing_and_mismatched_files),
	};

	return cmocka_run_group_tests(tests, setup_certs, teardown_certs);
}
