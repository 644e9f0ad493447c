/*
 * Fuzz target for relay/sasl_plain. Any accepted base64 must be canonical (encoding the
 * bytes gives the input back) and agree with OpenSSL's decoder; any accepted PLAIN
 * message must respect every field bound and byte rule and survive an encode round trip.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../../relay/sasl_plain.h"
#include "fuzz_creds.h"

#define FUZZ_IN_MAX (2 * SASL_PLAIN_B64_MAX)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char out[FUZZ_IN_MAX], ossl[FUZZ_IN_MAX + 3];
	static char again[FUZZ_IN_MAX + 8];
	struct sasl_creds creds, back;
	const char *in = (const char *)data, *reason;
	enum sasl_plain_result r;
	size_t n;
	int on;

	if (size > FUZZ_IN_MAX)
		return 0;
	if (sasl_base64_decode(in, size, out, sizeof(out), &n) == 0) {
		if (n > size / 4 * 3)
			abort();
		if (sasl_base64_encode(out, n, again, sizeof(again)) != 0 ||
		    strlen(again) != size || memcmp(again, in, size) != 0)
			abort();
		/* OpenSSL keeps the pad positions as zero bytes: compare the real ones. */
		if ((on = EVP_DecodeBlock(ossl, data, (int)size)) < 0 || (size_t)on < n ||
		    memcmp(ossl, out, n) != 0)
			abort();
	}

	r = sasl_plain_decode(in, size, &creds, &reason);
	if ((r == SASL_PLAIN_OK) != (reason == NULL))
		abort();
	if (r != SASL_PLAIN_OK) {
		if (creds.user_len != 0 || creds.pass_len != 0 || creds.pass[0] != '\0')
			abort();
		return 0;
	}
	fuzz_check_creds(&creds);
	if (creds.user_len == 0 || creds.pass_len == 0)
		abort();
	if (sasl_plain_encode(&creds, again, sizeof(again)) != 0 || strlen(again) != size ||
	    memcmp(again, in, size) != 0)
		abort();
	if (sasl_plain_decode(again, size, &back, &reason) != SASL_PLAIN_OK ||
	    back.user_len != creds.user_len || back.pass_len != creds.pass_len ||
	    back.authzid_len != creds.authzid_len ||
	    memcmp(back.user, creds.user, creds.user_len) != 0 ||
	    memcmp(back.pass, creds.pass, creds.pass_len) != 0)
		abort();
	sasl_creds_wipe(&creds);
	sasl_creds_wipe(&back);
	return 0;
}
