/*
 * Fuzz target for relay/backend_proto: back-end reply lines cut by lib/linebuf and fed to
 * the IMAP, POP3 and CAPA classifiers (the first byte picks one and the tag), plus the
 * client-address encoders on addresses made of input bytes. Checks that a tagged class
 * really starts with our tag, that LITERAL+ and auth_failure are only claimed where the
 * line says so, and that no CR, LF or quote appears inside an encoded address.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "../../relay/backend_proto.h"
#include "linebuf.h"

#define FUZZ_LINE_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const tags[] = {"a1", "mpx0", "mpx1", "*", NULL};

static int
has_ci(const char *p, size_t n, const char *w)
{
	size_t l = strlen(w), i, j;

	for (i = 0; i + l <= n; i++) {
		for (j = 0; j < l; j++)
			if ((p[i + j] | 0x20) != (w[j] | 0x20))
				break;
		if (j == l)
			return 1;
	}
	return 0;
}

static void
check_imap(const char *line, size_t len, const char *tag)
{
	struct be_imap_reply r;
	size_t tl = tag != NULL ? strlen(tag) : 0;

	be_imap_reply_parse(line, len, tag, &r);
	if ((unsigned)r.kind > BE_IMAP_OTHER_TAG)
		abort();
	if ((r.kind == BE_IMAP_TAGGED_OK || r.kind == BE_IMAP_TAGGED_NO ||
	     r.kind == BE_IMAP_TAGGED_BAD) &&
	    (tl == 0 || len <= tl || memcmp(line, tag, tl) != 0 || line[tl] != ' '))
		abort();
	if (r.literal_plus && !has_ci(line, len, "LITERAL+"))
		abort();
	if (r.auth_failure && r.kind != BE_IMAP_TAGGED_NO)
		abort();
	if (r.kind == BE_IMAP_CONTINUE && (len == 0 || line[0] != '+'))
		abort();
}

static void
check_pop3(const char *line, size_t len)
{
	struct be_pop3_reply r;

	be_pop3_reply_parse(line, len, &r);
	if (r.kind == BE_POP3_OK && (len < 3 || line[0] != '+'))
		abort();
	if (r.kind == BE_POP3_ERR && (len < 4 || line[0] != '-'))
		abort();
	if (r.auth_failure && r.kind != BE_POP3_ERR)
		abort();
	if (r.xclient && (r.kind != BE_POP3_OK || !has_ci(line, len, "[XCLIENT")))
		abort();
	if (be_pop3_capa_line(line, len) == BE_CAPA_END && len != 1)
		abort();
}

/* Nothing but one CR LF at the end, and (ID) quotes only around fixed strings. */
static void
check_cmd(const char *buf, int n)
{
	int i, quotes = 0;

	if (n < 2 || buf[n - 2] != '\r' || buf[n - 1] != '\n' || (size_t)n != strlen(buf))
		abort();
	for (i = 0; i < n - 2; i++) {
		if (buf[i] == '\r' || buf[i] == '\n' || buf[i] == '\\')
			abort();
		quotes += buf[i] == '"';
	}
	if (quotes != 0 && quotes != 16)
		abort();
}

static void
make_addr(const uint8_t *d, struct sockaddr_storage *ss)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (d[0] & 1) {
		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, d + 1, 16);
		memcpy(&sin6->sin6_port, d + 17, 2);
	} else {
		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, d + 1, 4);
		memcpy(&sin->sin_port, d + 17, 2);
	}
}

static void
check_encoders(const uint8_t *data, size_t size)
{
	struct sockaddr_storage src, dst;
	unsigned char hdr[BE_PROXY_V2_MAX];
	char buf[BE_ADDR_CMD_MAX];
	int n;

	if (size < 38)
		return;
	make_addr(data, &src);
	make_addr(data + 19, &dst);
	n = be_proxy_v2_header((struct sockaddr *)&src, (struct sockaddr *)&dst, hdr, sizeof(hdr));
	if (n != 28 && n != 52)
		abort();
	if (hdr[12] != 0x21 || (size_t)((hdr[14] << 8) | hdr[15]) != (size_t)n - 16)
		abort();
	n = be_imap_id_command("mpx1", (struct sockaddr *)&src, (struct sockaddr *)&dst, buf,
	                       sizeof(buf));
	if (n == -1)
		abort();
	check_cmd(buf, n);
	n = be_pop3_xclient_command((struct sockaddr *)&src, buf, sizeof(buf));
	if (n == -1)
		abort();
	check_cmd(buf, n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct linebuf lb;
	struct linebuf_line l;
	enum linebuf_result lr;
	const char *tag;
	size_t off = 1, took;
	int mode;

	if (size < 1)
		return 0;
	mode = data[0] & 3;
	tag = tags[(data[0] >> 2) % 5];
	if (mode == 3) {
		check_encoders(data + 1, size - 1);
		return 0;
	}
	linebuf_init(&lb, 64, FUZZ_LINE_MAX);
	while (off < size) {
		took = linebuf_append(&lb, data + off, size - off);
		off += took;
		while ((lr = linebuf_next_line(&lb, &l)) != LINEBUF_NEED_MORE) {
			if (lr == LINEBUF_TOO_LONG)
				continue;
			if (mode == 0 || mode == 2)
				check_imap(l.data, l.len, tag);
			if (mode == 1 || mode == 2)
				check_pop3(l.data, l.len);
		}
		if (took == 0)
			break;
	}
	linebuf_free(&lb);
	return 0;
}
