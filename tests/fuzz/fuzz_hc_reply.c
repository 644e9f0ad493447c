/*
 * Fuzz target for the health-check reply parsers (healthcheck/hc_reply.c). The first byte
 * picks the parser (SMTP with an expected code, IMAP greeting, IMAP tagged reply, POP3);
 * the rest is cut into lines by the same bounded linebuf the engine uses. Checks that
 * verdicts are final, limits hold and the kept text is short and printable.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hc_reply.h"
#include "linebuf.h"

#define FUZZ_LINE_MAX 2048 /* HC_LINE_MAX_BYTES */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_text(const char *text)
{
	size_t n = strnlen(text, HC_TEXT_MAX);
	size_t i;

	if (n >= HC_TEXT_MAX)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int codes[] = {220, 250, 221, 554};
	struct hc_smtp_reply smtp;
	struct hc_line_reply line;
	struct linebuf lb;
	struct linebuf_line l;
	enum linebuf_result lr;
	enum hc_reply_status st = HC_REPLY_MORE, again;
	unsigned mode;
	size_t off = 1, chunk, took;

	if (size < 1)
		return 0;
	mode = data[0] % 4;
	hc_smtp_reply_init(&smtp, codes[(data[0] >> 2) % 4]);
	if (mode == 1)
		hc_line_reply_init(&line, "* OK", NULL);
	else if (mode == 2)
		hc_line_reply_init(&line, "a1 OK", "* ");
	else
		hc_line_reply_init(&line, "+OK", NULL);
	linebuf_init(&lb, 64, FUZZ_LINE_MAX);
	while (off < size && st == HC_REPLY_MORE) {
		chunk = 1 + (data[off] % 97);
		if (chunk > size - off)
			chunk = size - off;
		took = linebuf_append(&lb, data + off, chunk);
		off += took;
		while (st == HC_REPLY_MORE &&
		       (lr = linebuf_next_line(&lb, &l)) != LINEBUF_NEED_MORE) {
			if (lr == LINEBUF_TOO_LONG)
				continue;
			if (l.len >= FUZZ_LINE_MAX)
				abort();
			if (mode == 0)
				st = hc_smtp_reply_feed(&smtp, l.data, l.len);
			else
				st = hc_line_reply_feed(&line, l.data, l.len);
		}
		if (took == 0 && st == HC_REPLY_MORE && linebuf_len(&lb) == 0)
			break; /* out of memory: nothing more can be learnt */
	}
	if (mode == 0) {
		check_text(smtp.text);
		if (smtp.nlines > HC_REPLY_MAX_LINES + 1)
			abort();
		if (smtp.code != 0 && (smtp.code < 200 || smtp.code > 599))
			abort();
		/* OK and FAIL differ only in whether the code is the one expected. */
		if ((st == HC_REPLY_OK && smtp.code != smtp.expect) ||
		    (st == HC_REPLY_FAIL && smtp.code == smtp.expect))
			abort();
		if ((st == HC_REPLY_BAD) != (smtp.error != NULL))
			abort();
		/* A BAD verdict is final. */
		if (st == HC_REPLY_BAD &&
		    (again = hc_smtp_reply_feed(&smtp, "220 x", 5)) != HC_REPLY_BAD)
			abort();
	} else {
		check_text(line.text);
		if (line.nlines > HC_REPLY_MAX_LINES + 1)
			abort();
		if ((st == HC_REPLY_BAD) != (line.error != NULL))
			abort();
		if (st == HC_REPLY_OK && strncasecmp(line.text, line.want, strlen(line.want)) != 0)
			abort();
	}
	linebuf_free(&lb);
	return 0;
}
