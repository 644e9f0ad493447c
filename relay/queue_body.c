/*
 * Dot-stuffing and line ends for bodies sent in DATA (queue_body.h). A line that starts
 * with "." gets another one (RFC 5321 4.5.2); a bare LF becomes CRLF, since a back end
 * may refuse bare LF (the smuggling class of bugs); every other byte passes unchanged.
 */
#include <string.h>

#include "queue_body.h"

void
queue_body_init(struct queue_body_enc *e)
{
	e->bol = 1;
	e->cr = 0;
}

size_t
queue_body_encode(struct queue_body_enc *e, const char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		char b = in[i];

		if (e->bol && b == '.')
			out[o++] = '.';
		if (b == '\n' && !e->cr)
			out[o++] = '\r';
		out[o++] = b;
		e->cr = b == '\r';
		e->bol = b == '\n';
	}
	return o;
}

size_t
queue_body_end(const struct queue_body_enc *e, char out[QUEUE_BODY_END_MAX])
{
	size_t o = 0;

	if (!e->bol) {
		memcpy(out, "\r\n", 2);
		o = 2;
	}
	memcpy(out + o, ".\r\n", 3);
	return o + 3;
}
