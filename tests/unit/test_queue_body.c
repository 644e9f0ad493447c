/*
 * Unit tests for the body encoder of the queue runner (relay/queue_body.c): dot-stuffing at
 * every line start including across chunk boundaries, bare LF made CRLF, CRLF and lone CR
 * left alone, and the end-of-data line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../relay/queue_body.h"

/* Encodes s in chunks of size chunk, then the end; returns the terminated result. */
static const char *
encode(const char *s, size_t chunk)
{
	static char out[4096];
	struct queue_body_enc e;
	size_t len = strlen(s), off = 0, o = 0, n;

	queue_body_init(&e);
	while (off < len) {
		n = len - off < chunk ? len - off : chunk;
		o += queue_body_encode(&e, s + off, n, out + o);
		off += n;
	}
	o += queue_body_end(&e, out + o);
	out[o] = '\0';
	return out;
}

static void
test_leading_dots_are_doubled_at_every_line_start(void **state)
{
	size_t chunk;

	(void)state;
	for (chunk = 1; chunk <= 8; chunk++) {
		assert_string_equal(encode(".a\r\nb.\r\n..c\r\n.\r\n", chunk),
		                    "..a\r\nb.\r\n...c\r\n..\r\n.\r\n");
	}
}

static void
test_bare_lf_becomes_crlf_and_crlf_stays(void **state)
{
	(void)state;
	assert_string_equal(encode("a\nb\r\nc\n", 2), "a\r\nb\r\nc\r\n.\r\n");
	assert_string_equal(encode("a\rb\r\n", 1), "a\rb\r\n.\r\n");
}

static void
test_body_without_final_line_end_gets_one(void **state)
{
	(void)state;
	assert_string_equal(encode("no end", 3), "no end\r\n.\r\n");
	assert_string_equal(encode("", 1), ".\r\n");
}

static void
test_output_never_exceeds_twice_the_input(void **state)
{
	struct queue_body_enc e;
	char out[16];

	(void)state;
	queue_body_init(&e);
	/* The worst case: a dot after every LF, each LF bare. */
	assert_int_equal(queue_body_encode(&e, ".\n.\n", 4, out), 8);
	assert_memory_equal(out, "..\r\n..\r\n", 8);
}

/* The byte-at-a-time encoder queue_body_encode replaced: the reference for the one below. */
static size_t
ref_encode(struct queue_body_enc *e, const char *in, size_t len, char *out)
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

/* The line-at-a-time copy encodes exactly as the byte-wise loop, however the body is cut. */
static void
test_encode_matches_the_bytewise_encoder_for_any_chunking(void **state)
{
	static const char alphabet[] = {'a', '.', '\r', '\n', 'b', 'a', 'a', 'a'};
	char in[500], out1[1000], out2[1000];
	struct queue_body_enc e1, e2;
	uint32_t x = 88172645u; /* xorshift32: the same cases every run */
	size_t len, off, n, o1, o2, i;
	int round;

	(void)state;
	for (round = 0; round < 20000; round++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		len = x % sizeof(in);
		for (i = 0; i < len; i++) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			in[i] = alphabet[x % sizeof(alphabet)];
		}
		queue_body_init(&e1);
		queue_body_init(&e2);
		for (off = 0; off < len; off += n) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			n = 1 + x % 61;
			if (n > len - off)
				n = len - off;
			o1 = queue_body_encode(&e1, in + off, n, out1);
			o2 = ref_encode(&e2, in + off, n, out2);
			assert_int_equal(o1, o2);
			assert_memory_equal(out1, out2, o1);
			assert_int_equal(e1.bol, e2.bol);
			assert_int_equal(e1.cr, e2.cr);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_leading_dots_are_doubled_at_every_line_start),
	    cmocka_unit_test(test_bare_lf_becomes_crlf_and_crlf_stays),
	    cmocka_unit_test(test_body_without_final_line_end_gets_one),
	    cmocka_unit_test(test_output_never_exceeds_twice_the_input),
	    cmocka_unit_test(test_encode_matches_the_bytewise_encoder_for_any_chunking),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
