/*
 * One check shared by the proxy parsers' fuzz targets: credentials handed to the session
 * are within their bounds, terminated, and free of the bytes relay/sasl_plain refuses.
 * Header-only (static inline) so each target stays a single translation unit.
 */
#ifndef MAILPLEX_FUZZ_CREDS_H
#define MAILPLEX_FUZZ_CREDS_H

#include <stdlib.h>
#include <string.h>

#include "../../relay/sasl_plain.h"

static inline void
fuzz_check_creds(const struct sasl_creds *c)
{
	size_t i;

	if (c->authzid_len > SASL_USER_MAX || c->user_len > SASL_USER_MAX ||
	    c->pass_len > SASL_PASS_MAX || strlen(c->user) != c->user_len ||
	    strlen(c->authzid) != c->authzid_len || c->pass[c->pass_len] != '\0')
		abort();
	for (i = 0; i < c->user_len; i++)
		if (!sasl_user_byte_ok((unsigned char)c->user[i]))
			abort();
	for (i = 0; i < c->pass_len; i++)
		if (!sasl_pass_byte_ok((unsigned char)c->pass[i]))
			abort();
	if (c->authzid_len != 0 &&
	    (c->authzid_len != c->user_len || memcmp(c->authzid, c->user, c->user_len) != 0))
		abort();
}

#endif
