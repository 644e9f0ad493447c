/*
 * mailplex-proxy's back-end reply classifier and client-address encoders (see
 * backend_proto.h). Pure functions over bytes and socket addresses: no I/O, no
 * allocation, no logging. A reply line may hold any byte; nothing here reads past len.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "backend_proto.h"

/* Does the line at p (n bytes left) start with word followed by SP or its end? */
static int
word_at(const char *p, size_t n, const char *word)
{
	size_t w = strlen(word);

	return n >= w && strncasecmp(p, word, w) == 0 && (n == w || p[w] == ' ');
}

/* Is tok one of the space-separated atoms of p[0..n) (stopping at ']')? */
static int
has_atom(const char *p, size_t n, const char *tok)
{
	size_t t = strlen(tok), i = 0, j;

	while (i < n && p[i] != ']') {
		while (i < n && p[i] == ' ')
			i++;
		j = i;
		while (j < n && p[j] != ' ' && p[j] != ']')
			j++;
		if (j - i == t && strncasecmp(p + i, tok, t) == 0)
			return 1;
		i = j;
	}
	return 0;
}

/* "[CAPABILITY a b c] text" at the start of a status reply's text. */
static int
code_caps_literal_plus(const char *p, size_t n)
{
	static const char code[] = "[CAPABILITY ";
	size_t c = sizeof(code) - 1;

	if (n < c || strncasecmp(p, code, c) != 0)
		return 0;
	return has_atom(p + c, n - c, "LITERAL+");
}

/* The response code's name, if the text starts with one: "[NAME" up to SP or ']'. */
static int
code_is(const char *p, size_t n, const char *name)
{
	size_t w = strlen(name);

	return n >= w + 2 && p[0] == '[' && strncasecmp(p + 1, name, w) == 0 &&
	       (p[w + 1] == ']' || p[w + 1] == ' ');
}

static int
imap_no_is_auth_failure(const char *text, size_t n)
{
	/* RFC 5530: a NO without a code is the classic wrong password. */
	if (n == 0 || text[0] != '[')
		return 1;
	return code_is(text, n, "AUTHENTICATIONFAILED") ||
	       code_is(text, n, "AUTHORIZATIONFAILED") || code_is(text, n, "EXPIRED");
}

/* Skips the status word and its SP: what follows is the text (maybe a code). */
static void
status_text(const char *line, size_t len, size_t at, const char **text, size_t *n)
{
	while (at < len && line[at] != ' ')
		at++;
	if (at < len)
		at++;
	*text = line + at;
	*n = len - at;
}

void
be_imap_reply_parse(const char *line, size_t len, const char *tag, struct be_imap_reply *r)
{
	size_t tl = tag != NULL ? strlen(tag) : 0, i;
	const char *text;
	size_t n;

	memset(r, 0, sizeof(*r));
	r->kind = BE_IMAP_GARBAGE;
	if (len >= 1 && line[0] == '+') {
		r->kind = BE_IMAP_CONTINUE;
		return;
	}
	if (len >= 2 && line[0] == '*' && line[1] == ' ') {
		if (word_at(line + 2, len - 2, "OK"))
			r->kind = BE_IMAP_OK;
		else if (word_at(line + 2, len - 2, "PREAUTH"))
			r->kind = BE_IMAP_PREAUTH;
		else if (word_at(line + 2, len - 2, "BYE"))
			r->kind = BE_IMAP_BYE;
		else
			r->kind = BE_IMAP_UNTAGGED;
		if (r->kind == BE_IMAP_UNTAGGED) {
			if (word_at(line + 2, len - 2, "CAPABILITY"))
				r->literal_plus = has_atom(line + 12, len - 12, "LITERAL+");
		} else {
			status_text(line, len, 2, &text, &n);
			r->literal_plus = code_caps_literal_plus(text, n);
		}
		return;
	}
	/* tag SP status: a tag is at least one character other than SP, '*', '+'. */
	for (i = 0; i < len && line[i] != ' '; i++)
		;
	if (i == 0 || i == len)
		return;
	if (word_at(line + i + 1, len - i - 1, "OK"))
		r->kind = BE_IMAP_TAGGED_OK;
	else if (word_at(line + i + 1, len - i - 1, "NO"))
		r->kind = BE_IMAP_TAGGED_NO;
	else if (word_at(line + i + 1, len - i - 1, "BAD"))
		r->kind = BE_IMAP_TAGGED_BAD;
	else
		return;
	if (tl == 0 || i != tl || memcmp(line, tag, tl) != 0) {
		r->kind = BE_IMAP_OTHER_TAG;
		return;
	}
	status_text(line, len, i + 1, &text, &n);
	if (r->kind == BE_IMAP_TAGGED_OK)
		r->literal_plus = code_caps_literal_plus(text, n);
	else if (r->kind == BE_IMAP_TAGGED_NO)
		r->auth_failure = imap_no_is_auth_failure(text, n);
}

void
be_pop3_reply_parse(const char *line, size_t len, struct be_pop3_reply *r)
{
	const char *text;
	size_t n;

	memset(r, 0, sizeof(*r));
	if (word_at(line, len, "+OK")) {
		r->kind = BE_POP3_OK;
		status_text(line, len, 0, &text, &n);
		r->xclient = code_is(text, n, "XCLIENT");
	} else if (word_at(line, len, "-ERR")) {
		r->kind = BE_POP3_ERR;
		status_text(line, len, 0, &text, &n);
		/* RFC 2449 8: [IN-USE], [SYS/...] are not a wrong password; RFC 3206 [AUTH] is. */
		r->auth_failure = n == 0 || text[0] != '[' || code_is(text, n, "AUTH");
	} else {
		r->kind = BE_POP3_GARBAGE;
	}
}

enum be_capa_line
be_pop3_capa_line(const char *line, size_t len)
{
	if (len == 1 && line[0] == '.')
		return BE_CAPA_END;
	if (word_at(line, len, "XCLIENT"))
		return BE_CAPA_XCLIENT;
	return BE_CAPA_OTHER;
}

/* ---- the client's address ---- */

struct be_ip {
	int v6;
	unsigned char addr[16]; /* 4 bytes used for IPv4 */
	uint16_t port;          /* host order */
};

static int
ip_of(const struct sockaddr *sa, struct be_ip *ip)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;

	memset(ip, 0, sizeof(*ip));
	if (sa->sa_family == AF_INET) {
		memcpy(&sin, sa, sizeof(sin));
		memcpy(ip->addr, &sin.sin_addr, 4);
		ip->port = ntohs(sin.sin_port);
		return 0;
	}
	if (sa->sa_family != AF_INET6)
		return -1;
	memcpy(&sin6, sa, sizeof(sin6));
	ip->port = ntohs(sin6.sin6_port);
	if (memcmp(&sin6.sin6_addr, mapped, sizeof(mapped)) == 0) {
		/* A dual-stack listener's IPv4 client: the back end should see IPv4. */
		memcpy(ip->addr, (const unsigned char *)&sin6.sin6_addr + 12, 4);
		return 0;
	}
	ip->v6 = 1;
	memcpy(ip->addr, &sin6.sin6_addr, 16);
	return 0;
}

/* Text form; only hex digits, '.' and ':' can come out (checked, not assumed). */
static int
ip_text(const struct be_ip *ip, char *buf, size_t len)
{
	size_t i;

	if (inet_ntop(ip->v6 ? AF_INET6 : AF_INET, ip->addr, buf, (socklen_t)len) == NULL)
		return -1;
	for (i = 0; buf[i] != '\0'; i++)
		if (strchr("0123456789abcdefABCDEF.:", buf[i]) == NULL)
			return -1;
	return 0;
}

int
be_proxy_v2_header(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *buf,
                   size_t len)
{
	static const unsigned char sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
	                                      0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
	struct be_ip s, d;
	unsigned char *p;
	size_t alen, total;

	if (ip_of(src, &s) == -1 || ip_of(dst, &d) == -1)
		return -1;
	if (s.v6 != d.v6) {
		/* One family on the wire: widen the IPv4 one to its v4-mapped form. */
		struct be_ip *v4 = s.v6 ? &d : &s;

		memmove(v4->addr + 12, v4->addr, 4);
		memset(v4->addr, 0, 10);
		v4->addr[10] = v4->addr[11] = 0xff;
		v4->v6 = 1;
	}
	alen = s.v6 ? 16 : 4;
	total = 16 + 2 * alen + 4;
	if (len < total)
		return -1;
	p = buf;
	memcpy(p, sig, sizeof(sig));
	p += sizeof(sig);
	*p++ = 0x21;               /* version 2, PROXY */
	*p++ = s.v6 ? 0x21 : 0x11; /* AF_INET6 or AF_INET, STREAM */
	*p++ = (unsigned char)((total - 16) >> 8);
	*p++ = (unsigned char)((total - 16) & 0xff);
	memcpy(p, s.addr, alen);
	p += alen;
	memcpy(p, d.addr, alen);
	p += alen;
	*p++ = (unsigned char)(s.port >> 8);
	*p++ = (unsigned char)(s.port & 0xff);
	*p++ = (unsigned char)(d.port >> 8);
	*p++ = (unsigned char)(d.port & 0xff);
	return (int)total;
}

/* An IMAP tag we send: atom characters only (RFC 3501 9), never a quote or CR/LF. */
static int
tag_ok(const char *tag)
{
	size_t i;

	if (tag == NULL || tag[0] == '\0')
		return 0;
	for (i = 0; tag[i] != '\0'; i++)
		if ((unsigned char)tag[i] <= ' ' || (unsigned char)tag[i] >= 0x7f ||
		    strchr("(){%*\"\\]", tag[i]) != NULL)
			return 0;
	return 1;
}

int
be_imap_id_command(const char *tag, const struct sockaddr *src, const struct sockaddr *dst,
                   char *buf, size_t len)
{
	struct be_ip s, d;
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
	int n;

	if (!tag_ok(tag) || ip_of(src, &s) == -1 || ip_of(dst, &d) == -1 ||
	    ip_text(&s, sa, sizeof(sa)) == -1 || ip_text(&d, da, sizeof(da)) == -1)
		return -1;
	n = snprintf(buf, len,
	             "%s ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
	             "\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\")\r\n",
	             tag, sa, (unsigned)s.port, da, (unsigned)d.port);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

int
be_pop3_xclient_command(const struct sockaddr *src, char *buf, size_t len)
{
	struct be_ip s;
	char sa[INET6_ADDRSTRLEN];
	int n;

	if (ip_of(src, &s) == -1 || ip_text(&s, sa, sizeof(sa)) == -1)
		return -1;
	n = snprintf(buf, len, "XCLIENT ADDR=%s PORT=%u\r\n", sa, (unsigned)s.port);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}
