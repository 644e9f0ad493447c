/*
 * Unit tests for relay/sasl_plain: RFC 4648 test vectors both ways, strict refusal of
 * non-canonical base64, the RFC 4616 message split, its bounds, authzid handling, and
 * that a failed decode leaves no credential behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../relay/sasl_plain.h"

static enum sasl_plain_result
decode(const char *b64, struct sasl_creds *creds, const char **reason)
{
	return sasl_plain_decode(b64, strlen(b64), creds, reason);
}

/* Builds "authzid NUL authcid NUL passwd" of the given sizes and encodes it. */
static void
encode_msg(const char *z, size_t zlen, const char *u, size_t ulen, const char *p, size_t plen,
           char *out, size_t outcap)
{
	static unsigned char msg[4 * SASL_PLAIN_MSG_MAX];
	size_t n = 0;

	memcpy(msg + n, z, zlen);
	n += zlen;
	msg[n++] = '\0';
	memcpy(msg + n, u, ulen);
	n += ulen;
	msg[n++] = '\0';
	memcpy(msg + n, p, plen);
	n += plen;
	assert_int_equal(sasl_base64_encode(msg, n, out, outcap), 0);
}

static void
test_base64_rfc4648_vectors_round_trip(void **state)
{
	static const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	unsigned char out[16];
	char b64[16];
	size_t i, n;

	for (i = 0; i < 7; i++) {
		assert_int_equal(sasl_base64_encode(plain[i], strlen(plain[i]), b64, sizeof(b64)),
		                 0);
		assert_string_equal(b64, enc[i]);
		assert_int_equal(sasl_base64_decode(enc[i], strlen(enc[i]), out, sizeof(out), &n),
		                 0);
		assert_int_equal(n, strlen(plain[i]));
		assert_memory_equal(out, plain[i], n);
	}
}

static void
test_base64_non_canonical_forms_are_refused(void **state)
{
	static const char *bad[] = {
	    "Zg",       /* padding missing */
	    "Zg=",      /* length not a multiple of 4 */
	    "Zh==",     /* pad bits not zero (RFC 4648 3.5) */
	    "Zm9=",     /* pad bits not zero */
	    "Zg==Zg==", /* padding in the middle */
	    "Z===",     /* three pad characters */
	    "====",     /* only padding */
	    "Zm9v\n",   /* white space */
	    "Zm 9v",    /* white space */
	    "Zm9-",     /* base64url alphabet */
	    "Zm9_",     /* base64url alphabet */
	};
	unsigned char out[16];
	size_t i, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sasl_base64_decode(bad[i], strlen(bad[i]), out, sizeof(out), &n),
		                 -1);
}

static void
test_base64_decode_never_writes_past_outcap(void **state)
{
	unsigned char out[8];
	size_t n;

	memset(out, 0xaa, sizeof(out));
	assert_int_equal(sasl_base64_decode("Zm9vYmFy", 8, out, 5, &n), -1);
	assert_int_equal(out[0], 0xaa);
	assert_int_equal(sasl_base64_decode("Zm9vYmE=", 8, out, 5, &n), 0);
	assert_int_equal(n, 5);
	assert_int_equal(out[5], 0xaa);
	/* The encoder needs room for its terminator too. */
	assert_int_equal(sasl_base64_encode("foo", 3, (char *)out, 4), -1);
}

static void
test_plain_without_authzid_gives_user_and_password(void **state)
{
	struct sasl_creds c;
	const char *reason;

	assert_int_equal(decode("AGJvYgBzZWNyZXQ=", &c, &reason), SASL_PLAIN_OK);
	assert_string_equal(c.user, "bob");
	assert_int_equal(c.user_len, 3);
	assert_string_equal(c.pass, "secret");
	assert_int_equal(c.pass_len, 6);
	assert_int_equal(c.authzid_len, 0);
	assert_null(reason);
}

static void
test_plain_authzid_equal_to_authcid_is_accepted(void **state)
{
	struct sasl_creds c;
	const char *reason;

	assert_int_equal(decode("Ym9iAGJvYgBzZWNyZXQ=", &c, &reason), SASL_PLAIN_OK);
	assert_string_equal(c.authzid, "bob");
	assert_string_equal(c.user, "bob");
}

static void
test_plain_authzid_of_someone_else_is_denied_and_wiped(void **state)
{
	struct sasl_creds c;
	const char *reason;

	assert_int_equal(decode("YWxpY2UAYm9iAHNlY3JldA==", &c, &reason), SASL_PLAIN_AUTHZ_DENIED);
	assert_non_null(reason);
	assert_int_equal(c.user_len, 0);
	assert_int_equal(c.pass_len, 0);
	assert_int_equal(c.pass[0], '\0');
}

static void
test_plain_password_with_space_and_address_user(void **state)
{
	struct sasl_creds c;
	const char *reason;

	assert_int_equal(decode("AGJvYgBwYXNzIHdvcmQ=", &c, &reason), SASL_PLAIN_OK);
	assert_string_equal(c.pass, "pass word");
	assert_int_equal(decode("AGJvYkBleGFtcGxlLmNvbQBw", &c, &reason), SASL_PLAIN_OK);
	assert_string_equal(c.user, "bob@example.com");
	assert_string_equal(c.pass, "p");
}

static void
test_plain_malformed_messages_are_refused_with_reasons(void **state)
{
	static const char *bad[] = {
	    "AABzZWNyZXQ=",     /* empty authcid */
	    "AGJvYgA=",         /* empty password */
	    "AGJvYgBzZQBjcmV0", /* a third NUL */
	    "Ym9iAHNlY3JldA==", /* one NUL only */
	    "Ym9i",             /* no NUL at all */
	    "",                 /* empty message ("=" in SASL-IR) */
	    "AGIBb2IAeA==",     /* control byte in the user name */
	    "AGJvYgBhDQpi",     /* CR LF in the password */
	};
	struct sasl_creds c;
	const char *reason;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		reason = NULL;
		assert_int_equal(decode(bad[i], &c, &reason), SASL_PLAIN_BAD_MESSAGE);
		assert_non_null(reason);
		assert_int_equal(c.user_len, 0);
		assert_int_equal(c.pass_len, 0);
	}
}

static void
test_plain_bad_base64_is_its_own_result(void **state)
{
	struct sasl_creds c;
	const char *reason;

	assert_int_equal(decode("AGJvYgBzZWNyZXQ", &c, &reason), SASL_PLAIN_BAD_BASE64);
	assert_string_equal(reason, "invalid base64");
	assert_int_equal(decode("AGJvYgBz*WNyZXQ=", &c, &reason), SASL_PLAIN_BAD_BASE64);
}

static void
test_plain_field_bounds_hold_at_the_limit_and_refuse_beyond(void **state)
{
	static char u[SASL_USER_MAX + 2], p[SASL_PASS_MAX + 2];
	static char b64[2 * SASL_PLAIN_B64_MAX];
	struct sasl_creds c;
	const char *reason;

	memset(u, 'u', sizeof(u));
	memset(p, 'p', sizeof(p));
	encode_msg(u, SASL_USER_MAX, u, SASL_USER_MAX, p, SASL_PASS_MAX, b64, sizeof(b64));
	assert_int_equal(strlen(b64), SASL_PLAIN_B64_MAX);
	assert_int_equal(decode(b64, &c, &reason), SASL_PLAIN_OK);
	assert_int_equal(c.user_len, SASL_USER_MAX);
	assert_int_equal(c.pass_len, SASL_PASS_MAX);

	encode_msg("", 0, u, SASL_USER_MAX + 1, p, 1, b64, sizeof(b64));
	assert_int_equal(decode(b64, &c, &reason), SASL_PLAIN_BAD_MESSAGE);
	assert_string_equal(reason, "PLAIN identity too long");
	encode_msg("", 0, u, 1, p, SASL_PASS_MAX + 1, b64, sizeof(b64));
	assert_int_equal(decode(b64, &c, &reason), SASL_PLAIN_BAD_MESSAGE);
	assert_string_equal(reason, "PLAIN password too long");
	/* Longer than any valid message: refused before decoding. */
	encode_msg(u, SASL_USER_MAX + 1, u, SASL_USER_MAX, p, SASL_PASS_MAX, b64, sizeof(b64));
	assert_int_equal(decode(b64, &c, &reason), SASL_PLAIN_BAD_MESSAGE);
	assert_string_equal(reason, "PLAIN response too long");
}

static void
test_plain_encode_decodes_back(void **state)
{
	struct sasl_creds in, out;
	char b64[SASL_PLAIN_B64_MAX + 1];
	const char *reason;

	memset(&in, 0, sizeof(in));
	memcpy(in.user, "carol", 6);
	in.user_len = 5;
	memcpy(in.pass, "s3cr\xc3\xa9t", 8); /* UTF-8 passes through untouched */
	in.pass_len = 7;
	assert_int_equal(sasl_plain_encode(&in, b64, sizeof(b64)), 0);
	assert_int_equal(decode(b64, &out, &reason), SASL_PLAIN_OK);
	assert_string_equal(out.user, "carol");
	assert_int_equal(out.pass_len, 7);
	assert_memory_equal(out.pass, in.pass, 8);
	assert_int_equal(sasl_plain_encode(&in, b64, 8), -1);
}

static void
test_creds_wipe_clears_every_byte(void **state)
{
	struct sasl_creds c;
	const unsigned char *p = (const unsigned char *)&c;
	size_t i;

	memset(&c, 'x', sizeof(c));
	sasl_creds_wipe(&c);
	for (i = 0; i < sizeof(c); i++)
		assert_int_equal(p[i], 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_base64_rfc4648_vectors_round_trip),
	    cmocka_unit_test(test_base64_non_canonical_forms_are_refused),
	    cmocka_unit_test(test_base64_decode_never_writes_past_outcap),
	    cmocka_unit_test(test_plain_without_authzid_gives_user_and_password),
	    cmocka_unit_test(test_plain_authzid_equal_to_authcid_is_accepted),
	    cmocka_unit_test(test_plain_authzid_of_someone_else_is_denied_and_wiped),
	    cmocka_unit_test(test_plain_password_with_space_and_address_user),
	    cmocka_unit_test(test_plain_malformed_messages_are_refused_with_reasons),
	    cmocka_unit_test(test_plain_bad_base64_is_its_own_result),
	    cmocka_unit_test(test_plain_field_bounds_hold_at_the_limit_and_refuse_beyond),
	    cmocka_unit_test(test_plain_encode_decodes_back),
	    cmocka_unit_test(test_creds_wipe_clears_every_byte),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
