/*
 * Fuzz target for the queue runner's LMTP/SMTP reply parser (relay/queue_reply.c): the
 * input is cut into lines by the same bounded linebuf the delivery client uses and fed
 * reply after reply. Checks the verdicts are final, the code is in range and the kept
 * text and enhanced code are short and printable.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/queue_reply.h"
#include "linebuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_printable(const char *s, size_t max)
{
	size_t n = strnlen(s, max), i;

	if (n >= max)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			abort();
}

static void
check_reply(const struct queue_reply *r, enum queue_reply_status st)
{
	check_printable(r->text, sizeof(r->text));
	check_printable(r->enhanced, sizeof(r->enhanced));
	if (r->nlines > QUEUE_REPLY_LINES_MAX)
		abort();
	if (st == QUEUE_REPLY_DONE && (r->code < 200 || r->code > 599))
		abort();
	if ((st == QUEUE_REPLY_BAD) != (r->error != NULL))
		abort();
	if (r->enhanced[0] != '\0' && r->enhanced[0] - '0' != r->code / 100)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_reply r;
	struct linebuf lb;
	struct linebuf_line l;
	enum linebuf_result lr;
	enum queue_reply_status st = QUEUE_REPLY_MORE;
	size_t off = 0, took;

	queue_reply_init(&r);
	linebuf_init(&lb, 64, QUEUE_REPLY_LINE_MAX + 2);
	while (off < size) {
		took = linebuf_append(&lb, data + off, size - off);
		off += took;
		while ((lr = linebuf_next_line(&lb, &l)) != LINEBUF_NEED_MORE) {
			if (lr == LINEBUF_TOO_LONG)
				continue;
			st = queue_reply_feed(&r, l.data, l.len);
			check_reply(&r, st);
			if (st == QUEUE_REPLY_BAD) {
				if (queue_reply_feed(&r, "250 ok", 6) != QUEUE_REPLY_BAD)
					abort();
				goto out;
			}
			if (st == QUEUE_REPLY_DONE)
				queue_reply_init(&r); /* the next reply */
		}
		if (took == 0)
			break;
	}
out:
	linebuf_free(&lb);
	return 0;
}
