/*
 * Fuzz target for relay/pop3_cmd: bytes cut into lines by lib/linebuf as the session does,
 * with a line bound chosen by the first byte. Checks bounds and byte rules of every
 * credential handed out, that PASS never comes without a USER, and that ERR has a reason.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/pop3_cmd.h"
#include "fuzz_creds.h"
#include "linebuf.h"

#define FUZZ_LINE_MAX 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_result(const struct pop3_cmd *c, enum pop3_cmd_status st, size_t len)
{
	if (st == POP3_CMD_ERR) {
		if (c->reason == NULL)
			abort();
		return;
	}
	if (st == POP3_CMD_DONE && c->name == POP3_NONE)
		abort();
	fuzz_check_creds(&c->creds);
	if (st == POP3_CMD_DONE && (c->name == POP3_PASS || c->name == POP3_AUTH) &&
	    (c->creds.user_len == 0 || c->creds.pass_len == 0))
		abort();
	if (st == POP3_CMD_DONE && c->name != POP3_AUTH && len + 2 > c->line_max)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3_cmd c;
	struct linebuf lb;
	struct linebuf_line l;
	enum linebuf_result lr;
	enum pop3_cmd_status st;
	size_t off = 1, took;

	if (size < 1)
		return 0;
	pop3_cmd_init(&c, (size_t)data[0] * 16);
	linebuf_init(&lb, 64, FUZZ_LINE_MAX);
	while (off < size) {
		took = linebuf_append(&lb, data + off, size - off);
		off += took;
		while ((lr = linebuf_next_line(&lb, &l)) != LINEBUF_NEED_MORE) {
			if (lr == LINEBUF_TOO_LONG) {
				pop3_cmd_reset(&c);
				continue;
			}
			st = pop3_cmd_line(&c, l.data, l.len);
			check_result(&c, st, l.len);
			/* The session logs in after PASS or AUTH, then starts over. */
			if (st == POP3_CMD_DONE && (c.name == POP3_PASS || c.name == POP3_AUTH))
				pop3_cmd_reset(&c);
		}
		if (took == 0)
			break;
	}
	pop3_cmd_reset(&c);
	linebuf_free(&lb);
	return 0;
}
