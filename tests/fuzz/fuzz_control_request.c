/*
 * Fuzz target for lib/control's request-line parser: any bytes of any length either give
 * an error or words that are non-empty, blank-free, printable, inside the request buffer
 * and at most CONTROL_ARGS_MAX of them; the director's command parser then runs on them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "director.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_request req;
	struct director_cmd cmd;
	char err[CONTROL_ERR_MAX];

	if (control_request_parse(&req, (const char *)data, size, err, sizeof(err)) == -1) {
		if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
			abort();
		return 0;
	}
	if (req.argc < 1 || req.argc > CONTROL_ARGS_MAX || req.argv[req.argc] != NULL)
		abort();
	for (int i = 0; i < req.argc; i++) {
		const char *w = req.argv[i];
		size_t len;

		if (w < req.buf || w >= req.buf + sizeof(req.buf))
			abort();
		len = strlen(w);
		if (len == 0 || w + len >= req.buf + sizeof(req.buf))
			abort();
		for (size_t j = 0; j < len; j++)
			if (w[j] <= ' ' || w[j] > '~')
				abort();
	}
	/* Exactly the commands that name a relay (drain, undrain) carry one. */
	if (director_cmd_parse(&req, &cmd, err, sizeof(err)) == 0 &&
	    (cmd.type == DIRECTOR_CMD_DRAIN || cmd.type == DIRECTOR_CMD_UNDRAIN) !=
	        (cmd.relay != NULL))
		abort();
	return 0;
}
