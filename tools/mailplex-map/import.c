/*
 * Importers of the three legacy sources into mailplex.map text: Perdition popmaps
 * ("user:server[:port]"), Sendmail/Postfix aliases ("name: a, b" with continuation lines)
 * and user_map files ("user user@host"). All-or-nothing: on any error nothing is printed
 * but the file:line messages. Never writes a database.
 */
#include <ctype.h>
#include <stdarg.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "map.h"
#include "sock.h"
#include "util.h"

#define IMPORT_LINE_MAX     4096
#define IMPORT_BACKENDS_MAX 10000

struct ibackend {
	char name[MAP_NAME_MAX + 1];
	char host[SOCK_HOST_MAX];
	uint16_t port; /* 0: none given */
};

struct importer {
	const char *name;
	FILE *err;
	FILE *body; /* memstream, copied to out only on success */
	char *bodybuf;
	size_t bodylen;
	struct ibackend *backends;
	size_t nbackends;
	unsigned int line;
	int errors;
	void *users; /* tsearch(3) tree of the user names seen, for duplicates */
};

static void imp_msg(struct importer *im, int warning, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
imp_msg(struct importer *im, int warning, const char *fmt, ...)
{
	va_list ap;

	fprintf(im->err, "%s:%u: %s", im->name, im->line, warning ? "warning: " : "");
	va_start(ap, fmt);
	vfprintf(im->err, fmt, ap);
	va_end(ap);
	fputc('\n', im->err);
	if (!warning)
		im->errors++;
}

/* Backend names from host names: map's name alphabet, 63 bytes. */
static void
sanitize(const char *host, uint16_t port, int with_port, char *out, size_t outlen)
{
	size_t i, o = 0;

	for (i = 0; host[i] != '\0' && o + 1 < outlen && o < MAP_NAME_MAX; i++)
		out[o++] = isalnum((unsigned char)host[i]) || host[i] == '.' || host[i] == '-' ||
		                   host[i] == '_'
		               ? host[i]
		               : '-';
	out[o] = '\0';
	if (with_port) {
		char suffix[8];

		(void)str_format(suffix, sizeof(suffix), "-%u", port);
		if (o + strlen(suffix) > MAP_NAME_MAX)
			o = MAP_NAME_MAX - strlen(suffix);
		out[o] = '\0';
		(void)str_copy(out + o, outlen - o, suffix);
	}
}

/* The back end for host[:port], added on first sight. NULL after an error. */
static const struct ibackend *
backend_get(struct importer *im, const char *host, uint16_t port)
{
	struct ibackend *b, *nb;
	char name[MAP_NAME_MAX + 1];
	size_t i;

	for (i = 0; i < im->nbackends; i++)
		if (strcmp(im->backends[i].host, host) == 0 && im->backends[i].port == port)
			return &im->backends[i];
	if (im->nbackends >= IMPORT_BACKENDS_MAX) {
		imp_msg(im, 0, "more than %d distinct servers", IMPORT_BACKENDS_MAX);
		return NULL;
	}
	sanitize(host, port, 0, name, sizeof(name));
	for (i = 0; i < im->nbackends; i++)
		if (strcmp(im->backends[i].name, name) == 0)
			break;
	if (i < im->nbackends) /* same host, another port */
		sanitize(host, port, 1, name, sizeof(name));
	for (i = 0; i < im->nbackends; i++) {
		if (strcmp(im->backends[i].name, name) == 0) {
			imp_msg(im, 0, "server '%s' gives a backend name already taken", host);
			return NULL;
		}
	}
	if ((nb = reallocarray(im->backends, im->nbackends + 1, sizeof(*nb))) == NULL) {
		imp_msg(im, 0, "out of memory");
		return NULL;
	}
	im->backends = nb;
	b = &im->backends[im->nbackends++];
	(void)str_copy(b->name, sizeof(b->name), name);
	(void)str_copy(b->host, sizeof(b->host), host);
	b->port = port;
	return b;
}

static int
host_check(struct importer *im, const char *host, uint16_t port)
{
	char buf[SOCK_ADDR_STRLEN + 8], h[SOCK_HOST_MAX], err[256];
	uint16_t p;

	if (str_format(buf, sizeof(buf), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
	               port ? port : 1) == -1 ||
	    sock_addr_split(buf, h, sizeof(h), &p, err, sizeof(err)) == -1 || strcmp(h, "*") == 0) {
		imp_msg(im, 0, "bad server '%s'", host);
		return -1;
	}
	return 0;
}

static int
user_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* 1 if seen before, 0 if new (now remembered), -1 out of memory. O(log n) per user. */
static int
user_seen(struct importer *im, const char *user)
{
	char *copy, **slot;

	if (tfind(user, &im->users, user_cmp) != NULL)
		return 1;
	if ((copy = strdup(user)) == NULL)
		return -1;
	if ((slot = tsearch(copy, &im->users, user_cmp)) == NULL) {
		free(copy);
		return -1;
	}
	return 0;
}

static int
user_ok(struct importer *im, const char *user)
{
	size_t i;
	int seen;

	if (user[0] == '\0' || strlen(user) > MAP_ADDR_MAX) {
		imp_msg(im, 0, "bad user name '%s'", user);
		return 0;
	}
	for (i = 0; user[i] != '\0'; i++) {
		if ((unsigned char)user[i] <= ' ' || strchr("\"#,:;<>()[]\\", user[i]) != NULL) {
			imp_msg(im, 0, "bad user name '%s'", user);
			return 0;
		}
	}
	if ((seen = user_seen(im, user)) == -1) {
		imp_msg(im, 0, "out of memory");
		return 0;
	}
	if (seen) {
		imp_msg(im, 1, "user '%s' given again; the first line wins, this one is a comment",
		        user);
		fprintf(im->body, "# duplicate, line %u: user %s\n", im->line, user);
		return 0;
	}
	return 1;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* popmap: "user:server[:port]"; the port is the POP3/IMAP port of the server. */
static void
popmap_line(struct importer *im, char *s)
{
	const struct ibackend *b;
	char *server, *port;
	uint64_t v = 0;

	if ((server = strchr(s, ':')) == NULL) {
		imp_msg(im, 0, "expected user:server[:port]");
		return;
	}
	*server++ = '\0';
	s = trim(s);
	server = trim(server);
	if ((port = strchr(server, ':')) != NULL) {
		*port++ = '\0';
		if (parse_u64(port, 1, 65535, &v) == -1) {
			imp_msg(im, 0, "bad port '%s'", port);
			return;
		}
	}
	if (server[0] == '\0') {
		imp_msg(im, 0, "expected user:server[:port]");
		return;
	}
	if (host_check(im, server, (uint16_t)v) == -1 || !user_ok(im, s))
		return;
	if ((b = backend_get(im, server, (uint16_t)v)) == NULL)
		return;
	fprintf(im->body, "user %s %s\n", s, b->name);
}

/* user_map: "user user@host": the host is the back end holding the mailbox. */
static void
usermap_line(struct importer *im, char *s)
{
	const struct ibackend *b;
	char *rhs, *at, *extra;

	rhs = s + strcspn(s, " \t");
	if (*rhs == '\0') {
		imp_msg(im, 0, "expected: user user@host");
		return;
	}
	*rhs++ = '\0';
	rhs = trim(rhs);
	extra = rhs + strcspn(rhs, " \t");
	if (*extra != '\0') {
		imp_msg(im, 0, "unexpected '%s' after user@host", trim(extra));
		return;
	}
	if ((at = strrchr(rhs, '@')) == NULL || at[1] == '\0') {
		imp_msg(im, 0, "expected user@host, got '%s'", rhs);
		return;
	}
	*at = '\0';
	if (host_check(im, at + 1, 0) == -1 || !user_ok(im, s))
		return;
	if (strcmp(rhs, s) != 0)
		imp_msg(im, 1,
		        "'%s' logs in as '%s' on %s: mailplex routes by user, the back "
		        "end must know '%s'",
		        s, rhs, at + 1, s);
	if ((b = backend_get(im, at + 1, 0)) == NULL)
		return;
	fprintf(im->body, "user %s %s\n", s, b->name);
}

/* aliases: one logical entry (continuations already joined). */
static void
aliases_entry(struct importer *im, char *s, unsigned int line)
{
	char *name, *colon, *t, *next, *lbuf = NULL;
	size_t n = 0, lbuflen = 0;
	FILE *lf;

	im->line = line;
	if ((colon = strchr(s, ':')) == NULL || colon == s) {
		imp_msg(im, 0, "expected name: target, target...");
		return;
	}
	*colon = '\0';
	name = trim(s);
	if (name[0] == '"' || strpbrk(name, " \t\"@") != NULL || name[0] == '\0') {
		imp_msg(im, 0, "bad alias name '%s'", name);
		return;
	}
	/* The alias line is built apart so that comments for dropped targets precede it. */
	if ((lf = open_memstream(&lbuf, &lbuflen)) == NULL) {
		imp_msg(im, 0, "out of memory");
		return;
	}
	for (t = colon + 1; t != NULL; t = next) {
		if ((next = strchr(t, ',')) != NULL)
			*next++ = '\0';
		t = trim(t);
		if (t[0] == '"' && strlen(t) >= 2 && t[strlen(t) - 1] == '"') {
			t[strlen(t) - 1] = '\0';
			t++;
		}
		if (t[0] == '\\') /* Sendmail: "do not expand further" */
			t++;
		if (t[0] == '\0')
			continue;
		if (t[0] == '|' || t[0] == '/' || strncasecmp(t, ":include:", 9) == 0) {
			imp_msg(im, 1,
			        "alias '%s': target '%s' is a command, file or include; "
			        "mailplex only delivers to back ends: left as a comment",
			        name, t);
			fprintf(im->body, "# line %u: alias %s: %s\n", line, name, t);
			continue;
		}
		if (strpbrk(t, " \t\"") != NULL) {
			imp_msg(im, 0, "alias '%s': bad target '%s'", name, t);
			break;
		}
		if (++n > MAP_ALIAS_TARGETS_MAX) {
			imp_msg(im, 0, "alias '%s' has more than %d targets", name,
			        MAP_ALIAS_TARGETS_MAX);
			break;
		}
		fprintf(lf, "%s%s", n == 1 ? "" : ", ", t);
	}
	if (fclose(lf) == EOF) {
		imp_msg(im, 0, "out of memory");
	} else if (n > 0) {
		fprintf(im->body, "alias %s: %s\n", name, lbuf);
	}
	free(lbuf);
}

/*
 * The next line from *pos: 1 with line and len set (no newline), 0 at the end. Overlong
 * lines and lines with NUL bytes are reported and skipped.
 */
static int
next_line(struct importer *im, const char **pos, const char *end, const char **line, size_t *len)
{
	const char *nl;

	while (*pos < end) {
		im->line++;
		*line = *pos;
		if ((nl = memchr(*pos, '\n', (size_t)(end - *pos))) == NULL)
			nl = end;
		*len = (size_t)(nl - *pos);
		*pos = nl + 1;
		if (*len > IMPORT_LINE_MAX)
			imp_msg(im, 0, "line longer than %d bytes", IMPORT_LINE_MAX);
		else if (memchr(*line, '\0', *len) != NULL)
			imp_msg(im, 0, "NUL byte in line");
		else
			return 1;
	}
	return 0;
}

static void
import_aliases(struct importer *im, const char *buf, size_t len)
{
	const char *pos = buf, *end = buf + len, *p;
	char *entry = NULL, *ne;
	size_t elen = 0, llen;
	unsigned int eline = 0, cur;

	while (next_line(im, &pos, end, &p, &llen)) {
		if (llen > 0 && (p[0] == ' ' || p[0] == '\t') && entry != NULL) {
			/* Continuation: joined to the entry with a space. */
			if (elen + llen + 2 > 16 * IMPORT_LINE_MAX) {
				imp_msg(im, 0, "alias entry longer than %d bytes",
				        16 * IMPORT_LINE_MAX);
				continue;
			}
			if ((ne = realloc(entry, elen + llen + 2)) == NULL) {
				imp_msg(im, 0, "out of memory");
				break;
			}
			entry = ne;
			entry[elen++] = ' ';
			memcpy(entry + elen, p, llen);
			elen += llen;
			entry[elen] = '\0';
			continue;
		}
		if (entry != NULL) {
			cur = im->line;
			aliases_entry(im, entry, eline);
			im->line = cur;
			free(entry);
			entry = NULL;
		}
		if (llen == 0 || p[0] == '#' || strspn(p, " \t\r") >= llen)
			continue;
		if ((entry = strndup(p, llen)) == NULL) {
			imp_msg(im, 0, "out of memory");
			break;
		}
		elen = llen;
		eline = im->line;
	}
	if (entry != NULL) {
		aliases_entry(im, entry, eline);
		free(entry);
	}
}

static void
import_lines(struct importer *im, const char *buf, size_t len,
             void (*fn)(struct importer *, char *))
{
	const char *pos = buf, *end = buf + len, *p;
	char line[IMPORT_LINE_MAX + 1], *s;
	size_t llen;

	while (next_line(im, &pos, end, &p, &llen)) {
		memcpy(line, p, llen);
		line[llen] = '\0';
		s = trim(line);
		if (s[0] == '\0' || s[0] == '#')
			continue;
		fn(im, s);
	}
}

static void
print_endpoint(FILE *out, const char *proto, const char *host, uint16_t port)
{
	fprintf(out, strchr(host, ':') ? " %s=[%s]:%u" : " %s=%s:%u", proto, host, port);
}

int
import_run(const char *kind, const char *name, const char *buf, size_t len, const char *domain,
           FILE *out, FILE *err)
{
	struct importer im;
	const struct ibackend *b;
	size_t i;
	int rc = -1;

	memset(&im, 0, sizeof(im));
	im.name = name;
	im.err = err;
	if ((im.body = open_memstream(&im.bodybuf, &im.bodylen)) == NULL) {
		fprintf(err, "%s: out of memory\n", name);
		return -1;
	}
	if (strcmp(kind, "popmap") == 0)
		import_lines(&im, buf, len, popmap_line);
	else if (strcmp(kind, "usermap") == 0)
		import_lines(&im, buf, len, usermap_line);
	else
		import_aliases(&im, buf, len);
	if (fclose(im.body) == EOF) {
		fprintf(err, "%s: out of memory\n", name);
		goto out;
	}
	if (im.errors > 0)
		goto out;
	fprintf(out, "# mailplex.map imported from %s %s by mailplex-map import.\n", kind, name);
	fprintf(out, "# Review before compiling: add lmtp= or smtp= to each backend so that mail\n"
	             "# can be delivered, and a domain line (mailplex.map(5)).\n");
	for (i = 0; i < im.nbackends; i++) {
		b = &im.backends[i];
		fprintf(out, "backend %s", b->name);
		/* No port: both login services on their standard ports; a port given is the
		 * one Perdition proxied to, POP3 or IMAP by its well-known number. */
		if (b->port == 0 || b->port == 143 || b->port == 993 ||
		    (b->port != 110 && b->port != 995))
			print_endpoint(out, "imap", b->host, b->port ? b->port : 143);
		if (b->port == 0 || b->port == 110 || b->port == 995 ||
		    (b->port != 143 && b->port != 993))
			print_endpoint(out, "pop3", b->host, b->port ? b->port : 110);
		fprintf(out, " tls=%s\n", b->port == 993 || b->port == 995 ? "implicit" : "off");
	}
	if (domain != NULL)
		fprintf(out, "domain %s\n", domain);
	if (im.bodylen > 0 && fwrite(im.bodybuf, 1, im.bodylen, out) != im.bodylen)
		goto out;
	rc = 0;
out:
	free(im.bodybuf);
	free(im.backends);
	tdestroy(im.users, free);
	return rc;
}
