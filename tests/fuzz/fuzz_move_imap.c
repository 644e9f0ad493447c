/*
 * Fuzz target for the IMAP responses mailplexctl move reads from a back end
 * (tools/mailplexctl/move_imap.c): the input is framed response after response exactly as
 * the client does, each framed response parsed. Checks that a frame stays inside the input
 * and the bound, and that every parsed field is terminated and in range; then quotes each
 * folder name back the way STATUS sends it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/mailplexctl/move_imap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct move_imap_resp r;
	char q[2 * MOVE_IMAP_NAME_MAX + 3];
	size_t left = size;

	for (int i = 0; i < 10000 && left > 0; i++) {
		ssize_t f = move_imap_frame(p, left);

		if (f <= 0)
			break;
		if ((size_t)f > left || f > MOVE_IMAP_RESP_MAX)
			abort();
		if (move_imap_parse(p, (size_t)f, &r) == 0) {
			if (strnlen(r.tag, sizeof(r.tag)) >= sizeof(r.tag) ||
			    strnlen(r.cond, sizeof(r.cond)) >= sizeof(r.cond) ||
			    strnlen(r.text, sizeof(r.text)) >= sizeof(r.text) ||
			    r.namelen > MOVE_IMAP_NAME_MAX || r.name[r.namelen] != '\0')
				abort();
			if ((r.data == MOVE_IMAP_LIST || r.data == MOVE_IMAP_STATUS) &&
			    move_imap_quote(r.name, r.namelen, q, sizeof(q)) == 0 &&
			    (q[0] != '"' || strlen(q) < 2 || q[strlen(q) - 1] != '"'))
				abort();
		}
		p += f;
		left -= (size_t)f;
	}
	return 0;
}
