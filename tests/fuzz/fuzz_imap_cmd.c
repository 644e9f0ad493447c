/*
 * Fuzz target for relay/imap_cmd, driven the way the proxy session drives it: bytes go
 * through a bounded lib/linebuf in chunks; lines go to imap_cmd_line, and while the parser
 * asks for literal bytes they are taken raw, at most literal_left at a time. Checks that
 * every result respects its bounds and byte rules and that the parser always progresses.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/imap_cmd.h"
#include "fuzz_creds.h"
#include "linebuf.h"

#define FUZZ_LINE_MAX 8192 /* what a session would allow before login */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_no_bytes(const char *s, size_t len, const char *refused)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (strchr(refused, s[i]) != NULL) /* also true for NUL */
			abort();
}

static void
check_tag(const char *tag)
{
	size_t n = strnlen(tag, IMAP_TAG_MAX + 1), i;

	if (n == 0 || n > IMAP_TAG_MAX)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)tag[i] <= 0x20 || (unsigned char)tag[i] >= 0x7f ||
		    tag[i] == '+' || tag[i] == '{')
			abort();
}

static void
check_result(const struct imap_cmd *c, enum imap_cmd_status st)
{
	unsigned i;
	size_t len;
	const char *v;

	check_tag(c->tag);
	if (st == IMAP_CMD_REJECT && c->reason == NULL)
		abort();
	if ((st == IMAP_CMD_NEED_LITERAL || st == IMAP_CMD_DISCARD) && c->close)
		abort();
	if (st == IMAP_CMD_NEED_LITERAL && c->literal_left > c->literal_max)
		abort();
	if (st != IMAP_CMD_DONE)
		return;
	if (strcmp(c->tag, "*") == 0 || c->name == IMAP_NONE)
		abort();
	fuzz_check_creds(&c->creds);
	if (c->name == IMAP_AUTHENTICATE && (c->creds.user_len == 0 || c->creds.pass_len == 0))
		abort();
	if (c->id_npairs > IMAP_ID_PAIRS_MAX || (c->id_nil && c->id_npairs != 0))
		abort();
	for (i = 0; i < c->id_npairs; i++) {
		if (c->id[i].field_len > IMAP_ID_FIELD_MAX)
			abort();
		check_no_bytes(c->id[i].field, c->id[i].field_len, "\r\n");
		if ((v = imap_cmd_id_value(c, i, &len)) == NULL)
			continue;
		if (len > IMAP_ID_VALUE_MAX || v + len >= c->id_values + IMAP_ID_BYTES_MAX ||
		    v[len] != '\0')
			abort();
		check_no_bytes(v, len, "\r\n");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct imap_cmd c;
	static char lit[FUZZ_LINE_MAX];
	struct linebuf lb;
	struct linebuf_line l;
	enum linebuf_result lr;
	enum imap_cmd_status st = IMAP_CMD_NEED_LINE;
	size_t off = 2, chunk, took, n;
	unsigned steps = 0;

	if (size < 2)
		return 0;
	/* Literal bound from 16 to 8192, so both sides of it are reachable. */
	imap_cmd_init(&c, 16u << (data[0] % 10));
	linebuf_init(&lb, 64, FUZZ_LINE_MAX);
	while (off < size || linebuf_len(&lb) > 0) {
		if (off < size) {
			chunk = 1 + ((data[1] + off) % 211);
			if (chunk > size - off)
				chunk = size - off;
			took = linebuf_append(&lb, data + off, chunk);
			off += took;
			if (took == 0 && linebuf_len(&lb) == 0)
				break; /* out of memory */
		}
		for (;;) {
			if (++steps > 100000)
				abort(); /* no progress */
			if (st == IMAP_CMD_NEED_LITERAL || st == IMAP_CMD_DISCARD) {
				n = c.literal_left < sizeof(lit) ? (size_t)c.literal_left
				                                 : sizeof(lit);
				n = linebuf_take(&lb, lit, n);
				if (n == 0 && c.literal_left > 0)
					break;
				st = imap_cmd_literal(&c, lit, n);
			} else {
				lr = linebuf_next_line(&lb, &l);
				if (lr == LINEBUF_NEED_MORE)
					break;
				if (lr == LINEBUF_TOO_LONG) {
					/* The session answers BAD and starts over. */
					imap_cmd_reset(&c);
					st = IMAP_CMD_NEED_LINE;
					continue;
				}
				st = imap_cmd_line(&c, l.data, l.len);
			}
			check_result(&c, st);
			if (st == IMAP_CMD_REJECT && c.close)
				goto out;
		}
		if (off >= size)
			break;
	}
out:
	imap_cmd_reset(&c);
	linebuf_free(&lb);
	return 0;
}
