/*
 * Fuzz target for the spool's envelope decoder (relay/spool.c): any bytes either decode to
 * an envelope that respects every bound and re-encodes to the same prefix, or are refused;
 * never a crash, never a read past the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_str(const char *s, size_t max)
{
	if (strnlen(s, max + 1) > max)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spool_envelope env;
	char err[256];
	size_t used, i;

	if (spool_envelope_decode(data, size, &env, &used, err, sizeof(err)) == -1) {
		if (env.rcpt != NULL || err[0] == '\0')
			abort();
		return 0;
	}
	if (used > size || used > SPOOL_ENVELOPE_MAX)
		abort();
	if (env.nrcpt == 0 || env.nrcpt > SPOOL_RCPT_MAX || env.rcpt == NULL)
		abort();
	if (env.body_type > SPOOL_BODY_BINARYMIME || (env.smtputf8 != 0 && env.smtputf8 != 1))
		abort();
	check_str(env.qid, SPOOL_QID_MAX);
	check_str(env.sender, MAP_ADDR_MAX);
	check_str(env.helo, SPOOL_HELO_MAX);
	for (i = 0; i < env.nrcpt; i++) {
		if (env.rcpt[i].addr[0] == '\0')
			abort();
		check_str(env.rcpt[i].addr, MAP_ADDR_MAX);
		check_str(env.rcpt[i].orig, MAP_ADDR_MAX);
		check_str(env.rcpt[i].backend, MAP_NAME_MAX);
	}
	/* Decoding the accepted prefix alone gives the same answer. */
	{
		struct spool_envelope again;
		size_t used2;

		if (spool_envelope_decode(data, used, &again, &used2, err, sizeof(err)) == -1 ||
		    used2 != used || again.nrcpt != env.nrcpt ||
		    strcmp(again.sender, env.sender) != 0)
			abort();
		spool_envelope_free(&again);
	}
	spool_envelope_free(&env);
	return 0;
}
