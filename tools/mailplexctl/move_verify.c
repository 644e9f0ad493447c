/*
 * The check after the copy: log in to OLD and NEW as the user through the master user
 * (AUTHENTICATE PLAIN, authzid = user, RFC 4616), LIST every folder, STATUS (MESSAGES)
 * each, compare. Both mailboxes are frozen while the user is migrating, so the counts must
 * be equal. Blocking client with one deadline per read and write; parsing is move_imap.c's.
 */
#include <sys/socket.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "move.h"
#include "move_imap.h"
#include "sock.h"
#include "tls.h"
#include "util.h"

#define VERIFY_FOLDERS_MAX   10000
#define VERIFY_RESPONSES_MAX 100000 /* untagged responses to one command */

struct folder {
	char name[MOVE_IMAP_NAME_MAX + 1];
	uint64_t messages;
};

struct imap_conn {
	const char *what; /* "OLD alf" */
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
	uint64_t timeout_ms;
	char buf[2 * MOVE_IMAP_RESP_MAX];
	size_t len;
	unsigned tagno;
};

static int
conn_wait(struct imap_conn *c, short events, char *err, size_t errlen)
{
	struct pollfd p = {.fd = c->fd, .events = events};
	int r;

	do
		r = poll(&p, 1, (int)c->timeout_ms);
	while (r == -1 && errno == EINTR);
	if (r == 1)
		return 0;
	err_set(err, errlen, "%s: %s", c->what, r == 0 ? "timed out" : strerror(errno));
	return -1;
}

static int
conn_handshake(struct imap_conn *c, const char *host, const struct mailplex_conf *conf, char *err,
               size_t errlen)
{
	struct tls_client_opts o = {.verify = conf->proxy.backend_tls_verify,
	                            .ca_file = conf->proxy.backend_ca_file};
	char terr[TLS_ERR_MAX];
	int r;

	if ((c->ctx = tls_client_ctx_new(&o, terr, sizeof(terr))) == NULL ||
	    (c->ssl = tls_client_new(c->ctx, c->fd, host, terr, sizeof(terr))) == NULL) {
		err_set(err, errlen, "%s: %s", c->what, terr);
		return -1;
	}
	for (int i = 0; i < 1000; i++) {
		if ((r = tls_handshake(c->ssl, terr, sizeof(terr))) == 0)
			return 0;
		if (r == TLS_ERROR) {
			err_set(err, errlen, "%s: TLS: %s", c->what, terr);
			return -1;
		}
		if (conn_wait(c, r == TLS_WANT_READ ? POLLIN : POLLOUT, err, errlen) == -1)
			return -1;
	}
	err_set(err, errlen, "%s: TLS handshake does not end", c->what);
	return -1;
}

static int
conn_write(struct imap_conn *c, const char *p, size_t len, char *err, size_t errlen)
{
	char terr[TLS_ERR_MAX];
	size_t o = 0;

	for (int i = 0; o < len && i < 100000; i++) {
		ssize_t n;

		if (c->ssl != NULL) {
			n = tls_write(c->ssl, p + o, len - o, terr, sizeof(terr));
			if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
				if (conn_wait(c, n == TLS_WANT_READ ? POLLIN : POLLOUT, err,
				              errlen) == -1)
					return -1;
				continue;
			}
			if (n < 0) {
				err_set(err, errlen, "%s: %s", c->what, terr);
				return -1;
			}
		} else {
			n = send(c->fd, p + o, len - o, MSG_NOSIGNAL);
			if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
				if (conn_wait(c, POLLOUT, err, errlen) == -1)
					return -1;
				continue;
			}
			if (n == -1) {
				err_set(err, errlen, "%s: %s", c->what, strerror(errno));
				return -1;
			}
		}
		o += (size_t)n;
	}
	return o == len ? 0 : -1;
}

/* Reads until buf holds one whole response; fills r and drops it from buf. */
static int
conn_response(struct imap_conn *c, struct move_imap_resp *r, char *err, size_t errlen)
{
	char terr[TLS_ERR_MAX];
	ssize_t f, n;

	for (int i = 0; i < 100000; i++) {
		if ((f = move_imap_frame(c->buf, c->len)) < 0) {
			err_set(err, errlen, "%s: a response longer than %d bytes", c->what,
			        MOVE_IMAP_RESP_MAX);
			return -1;
		}
		if (f > 0) {
			if (move_imap_parse(c->buf, (size_t)f, r) == -1) {
				err_set(err, errlen, "%s: not an IMAP response: %.*s", c->what,
				        (int)(f > 80 ? 80 : f), c->buf);
				return -1;
			}
			memmove(c->buf, c->buf + f, c->len - (size_t)f);
			c->len -= (size_t)f;
			return 0;
		}
		if (c->ssl != NULL) {
			n = tls_read(c->ssl, c->buf + c->len, sizeof(c->buf) - c->len, terr,
			             sizeof(terr));
			if (n == TLS_WANT_READ || n == TLS_WANT_WRITE) {
				if (conn_wait(c, n == TLS_WANT_READ ? POLLIN : POLLOUT, err,
				              errlen) == -1)
					return -1;
				continue;
			}
			if (n == TLS_ERROR) {
				err_set(err, errlen, "%s: %s", c->what, terr);
				return -1;
			}
		} else {
			n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
			if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
				if (conn_wait(c, POLLIN, err, errlen) == -1)
					return -1;
				continue;
			}
			if (n == -1) {
				err_set(err, errlen, "%s: %s", c->what, strerror(errno));
				return -1;
			}
		}
		if (n == 0) {
			err_set(err, errlen, "%s: the server closed the connection", c->what);
			return -1;
		}
		c->len += (size_t)n;
	}
	err_set(err, errlen, "%s: no whole response", c->what);
	return -1;
}

/*
 * Sends "TAG line" and reads until the tagged answer; each untagged LIST or STATUS goes to
 * fn. A NO or BAD is an error that quotes the server's text.
 */
static int
conn_command(struct imap_conn *c, const char *line, int secret,
             int (*fn)(void *arg, const struct move_imap_resp *r), void *arg, char *err,
             size_t errlen)
{
	struct move_imap_resp r;
	char out[MOVE_IMAP_NAME_MAX * 2 + 64], tag[16];

	(void)str_format(tag, sizeof(tag), "m%u", ++c->tagno);
	if (str_format(out, sizeof(out), "%s %s\r\n", tag, line) == -1) {
		err_set(err, errlen, "%s: command too long", c->what);
		return -1;
	}
	if (conn_write(c, out, strlen(out), err, errlen) == -1)
		return -1;
	for (int i = 0; i < VERIFY_RESPONSES_MAX; i++) {
		if (conn_response(c, &r, err, errlen) == -1)
			return -1;
		if (r.kind == MOVE_IMAP_UNTAGGED && r.data == MOVE_IMAP_COND &&
		    strcmp(r.cond, "BYE") == 0) {
			err_set(err, errlen, "%s: BYE %s", c->what, r.text);
			return -1;
		}
		if (r.kind == MOVE_IMAP_UNTAGGED) {
			if (fn != NULL && fn(arg, &r) == -1) {
				err_set(err, errlen, "%s: too many folders", c->what);
				return -1;
			}
			continue;
		}
		if (r.kind == MOVE_IMAP_CONTINUE) {
			err_set(err, errlen, "%s: unexpected continuation", c->what);
			return -1;
		}
		if (strcmp(r.tag, tag) != 0)
			continue;
		if (strcmp(r.cond, "OK") == 0)
			return 0;
		/* A login's NO is the one answer that may not show the command. */
		err_set(err, errlen, "%s: %s: %s %s", c->what, secret ? "login" : line, r.cond,
		        r.text);
		return -1;
	}
	err_set(err, errlen, "%s: too many responses", c->what);
	return -1;
}

static void
conn_close(struct imap_conn *c)
{
	if (c->ssl != NULL) {
		tls_close_notify(c->ssl);
		tls_free(c->ssl);
	}
	if (c->ctx != NULL)
		tls_ctx_free(c->ctx);
	if (c->fd != -1)
		(void)close(c->fd);
	c->fd = -1;
	c->ssl = NULL;
	c->ctx = NULL;
}

/* Connects (TLS as the map says), logs in as user through the master user. */
static int
conn_open(struct imap_conn *c, const struct move_ctx *ctx, const struct map_backend *b,
          const char *user, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct move_imap_resp r;
	char addr[MAP_HOST_MAX + 16], serr[256], plain[3 * 256 + 8], b64[4 * 256 + 16],
	    line[4 * 256 + 64];
	size_t ulen = strlen(user), mlen, plen;
	int n;

	c->fd = -1;
	if (b->imap.host[0] == '\0') {
		err_set(err, errlen, "%s: no imap= endpoint in the map", c->what);
		return -1;
	}
	if (str_format(addr, sizeof(addr), strchr(b->imap.host, ':') ? "[%s]:%u" : "%s:%u",
	               b->imap.host, (unsigned)b->imap.port) == -1 ||
	    sock_resolve(addr, &ss, &sslen, serr, sizeof(serr)) == -1) {
		err_set(err, errlen, "%s: %s", c->what, serr);
		return -1;
	}
	if ((c->fd = sock_connect_start(&ss, sslen, serr, sizeof(serr))) == -1) {
		err_set(err, errlen, "%s: %s", c->what, serr);
		return -1;
	}
	if (conn_wait(c, POLLOUT, err, errlen) == -1)
		return -1;
	if (sock_connect_result(c->fd) == -1) {
		err_set(err, errlen, "%s: connect to %s: %s", c->what, addr, strerror(errno));
		return -1;
	}
	if (b->tls == MAP_TLS_IMPLICIT &&
	    conn_handshake(c, b->imap.host, ctx->conf, err, errlen) == -1)
		return -1;
	if (conn_response(c, &r, err, errlen) == -1)
		return -1;
	if (r.kind != MOVE_IMAP_UNTAGGED || r.data != MOVE_IMAP_COND || strcmp(r.cond, "OK") != 0) {
		err_set(err, errlen, "%s: greeting is not OK: %s %s", c->what, r.cond, r.text);
		return -1;
	}
	if (b->tls == MAP_TLS_ON) {
		if (conn_command(c, "STARTTLS", 0, NULL, NULL, err, errlen) == -1 ||
		    conn_handshake(c, b->imap.host, ctx->conf, err, errlen) == -1)
			return -1;
		/* RFC 3501 6.2.1: what came before the handshake is discarded. */
		c->len = 0;
	}
	if (!ctx->have_password || ctx->conf->move.master_user == NULL) {
		err_set(err, errlen, "move.master_user and its password file are needed to check");
		return -1;
	}
	mlen = strlen(ctx->conf->move.master_user);
	plen = strlen(ctx->password);
	if (ulen + mlen + plen + 2 > sizeof(plain)) {
		err_set(err, errlen, "%s: user, master user or password too long", c->what);
		return -1;
	}
	/* RFC 4616: authzid NUL authcid NUL password; authzid is the user we act as. */
	memcpy(plain, user, ulen);
	plain[ulen] = '\0';
	memcpy(plain + ulen + 1, ctx->conf->move.master_user, mlen);
	plain[ulen + 1 + mlen] = '\0';
	memcpy(plain + ulen + mlen + 2, ctx->password, plen);
	n = EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)plain,
	                    (int)(ulen + mlen + plen + 2));
	explicit_bzero(plain, sizeof(plain));
	if (n <= 0 || str_format(line, sizeof(line), "AUTHENTICATE PLAIN %s", b64) == -1) {
		explicit_bzero(b64, sizeof(b64));
		err_set(err, errlen, "%s: cannot encode the credentials", c->what);
		return -1;
	}
	explicit_bzero(b64, sizeof(b64));
	/* SASL-IR (RFC 4959): Dovecot and Cyrus both take the initial response inline. */
	n = conn_command(c, line, 1, NULL, NULL, err, errlen);
	explicit_bzero(line, sizeof(line));
	return n;
}

struct folders {
	struct folder *v;
	size_t n, cap;
	int bad_name;
};

static int
on_list(void *arg, const struct move_imap_resp *r)
{
	struct folders *f = arg;
	struct folder *nv;

	if (r->data != MOVE_IMAP_LIST || r->noselect)
		return 0;
	if (r->namelen != strlen(r->name)) {
		f->bad_name = 1;
		return 0;
	}
	if (f->n >= VERIFY_FOLDERS_MAX)
		return -1;
	if (f->n == f->cap) {
		f->cap = f->cap ? f->cap * 2 : 32;
		if ((nv = reallocarray(f->v, f->cap, sizeof(*nv))) == NULL)
			return -1;
		f->v = nv;
	}
	(void)str_copy(f->v[f->n].name, sizeof(f->v[f->n].name), r->name);
	f->v[f->n].messages = 0;
	f->n++;
	return 0;
}

struct status_arg {
	const char *name;
	uint64_t messages;
	int seen;
};

static int
on_status(void *arg, const struct move_imap_resp *r)
{
	struct status_arg *s = arg;

	if (r->data == MOVE_IMAP_STATUS && r->has_messages && strcmp(r->name, s->name) == 0) {
		s->messages = r->messages;
		s->seen = 1;
	}
	return 0;
}

/* Every selectable folder with its message count. */
static int
mailbox_counts(struct imap_conn *c, struct folders *f, char *err, size_t errlen)
{
	char q[MOVE_IMAP_NAME_MAX * 2 + 3], line[sizeof(q) + 32];

	if (conn_command(c, "LIST \"\" \"*\"", 0, on_list, f, err, errlen) == -1)
		return -1;
	if (f->bad_name) {
		err_set(err, errlen, "%s: a folder name with a NUL byte", c->what);
		return -1;
	}
	for (size_t i = 0; i < f->n; i++) {
		struct status_arg s = {.name = f->v[i].name};

		if (move_imap_quote(f->v[i].name, strlen(f->v[i].name), q, sizeof(q)) == -1) {
			err_set(err, errlen, "%s: folder name cannot be quoted", c->what);
			return -1;
		}
		(void)str_format(line, sizeof(line), "STATUS %s (MESSAGES)", q);
		if (conn_command(c, line, 0, on_status, &s, err, errlen) == -1)
			return -1;
		if (!s.seen) {
			err_set(err, errlen, "%s: no STATUS MESSAGES for %s", c->what, q);
			return -1;
		}
		f->v[i].messages = s.messages;
	}
	{
		char scratch[MOVE_ERR_MAX]; /* the BYE that answers LOGOUT is no error */

		(void)conn_command(c, "LOGOUT", 0, NULL, NULL, scratch, sizeof(scratch));
	}
	return 0;
}

static const struct folder *
folder_find(const struct folders *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->v[i].name, name) == 0 ||
		    (strcasecmp(name, "INBOX") == 0 && strcasecmp(f->v[i].name, "INBOX") == 0))
			return &f->v[i];
	return NULL;
}

static int
side(const struct move_ctx *ctx, const char *user, const struct map_backend *b, const char *label,
     struct folders *f, char *err, size_t errlen)
{
	struct imap_conn *c;
	char what[MAP_NAME_MAX + 16];
	int rc;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	(void)str_format(what, sizeof(what), "%s %s", label, b->name);
	c->what = what;
	c->timeout_ms = ctx->conf->move.imap_timeout_ms;
	rc = conn_open(c, ctx, b, user, err, errlen);
	if (rc == 0)
		rc = mailbox_counts(c, f, err, errlen);
	conn_close(c);
	free(c);
	return rc;
}

int
move_verify(const struct move_ctx *ctx, const char *user, const struct map_backend *oldb,
            const struct map_backend *newb, char *summary, size_t sumlen, char *err, size_t errlen)
{
	struct folders o = {0}, n = {0};
	uint64_t total = 0;
	int rc = -1;

	if (side(ctx, user, oldb, "OLD", &o, err, errlen) == -1 ||
	    side(ctx, user, newb, "NEW", &n, err, errlen) == -1)
		goto out;
	for (size_t i = 0; i < o.n; i++) {
		const struct folder *nf = folder_find(&n, o.v[i].name);

		if (nf == NULL) {
			err_set(err, errlen, "folder %s (%llu messages on %s) is missing on %s",
			        o.v[i].name, (unsigned long long)o.v[i].messages, oldb->name,
			        newb->name);
			goto out;
		}
		if (nf->messages != o.v[i].messages) {
			err_set(err, errlen, "folder %s: %llu messages on %s, %llu on %s",
			        o.v[i].name, (unsigned long long)o.v[i].messages, oldb->name,
			        (unsigned long long)nf->messages, newb->name);
			goto out;
		}
		total += o.v[i].messages;
	}
	/* A folder only NEW has: fine when empty (autocreated), else mail that was not OLD's. */
	for (size_t i = 0; i < n.n; i++) {
		if (folder_find(&o, n.v[i].name) == NULL && n.v[i].messages > 0) {
			err_set(err, errlen, "folder %s exists only on %s and holds %llu messages",
			        n.v[i].name, newb->name, (unsigned long long)n.v[i].messages);
			goto out;
		}
	}
	(void)str_format(summary, sumlen, "%zu folders, %llu messages, equal on %s and %s", o.n,
	                 (unsigned long long)total, oldb->name, newb->name);
	rc = 0;
out:
	free(o.v);
	free(n.v);
	return rc;
}
