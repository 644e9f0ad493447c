/*
 * Unit tests for lib/linebuf: line splitting, CRLF vs bare LF, the hard maximum,
 * resynchronisation after an overlong line, raw takes, and memory release when empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "linebuf.h"

static void
append_all(struct linebuf *lb, const char *s)
{
	size_t n = strlen(s);

	assert_int_equal(linebuf_append(lb, s, n), n);
}

static void
expect_line(struct linebuf *lb, const char *want, enum linebuf_eol eol)
{
	struct linebuf_line line;

	assert_int_equal(linebuf_next_line(lb, &line), LINEBUF_LINE);
	assert_int_equal(line.len, strlen(want));
	assert_memory_equal(line.data, want, line.len);
	assert_int_equal(line.eol, eol);
}

static void
expect_result(struct linebuf *lb, enum linebuf_result want)
{
	struct linebuf_line line;

	assert_int_equal(linebuf_next_line(lb, &line), want);
}

static void
test_lines_split_and_report_their_ending(void **state)
{
	struct linebuf lb;

	linebuf_init(&lb, 16, 512);
	append_all(&lb, "EHLO a\r\nMAIL FROM:<x>\nRCPT");
	expect_line(&lb, "EHLO a", LINEBUF_EOL_CRLF);
	expect_line(&lb, "MAIL FROM:<x>", LINEBUF_EOL_LF);
	expect_result(&lb, LINEBUF_NEED_MORE);
	assert_int_equal(linebuf_len(&lb), 4);
	append_all(&lb, " TO:<y>\r\n\r\n");
	expect_line(&lb, "RCPT TO:<y>", LINEBUF_EOL_CRLF);
	expect_line(&lb, "", LINEBUF_EOL_CRLF);
	expect_result(&lb, LINEBUF_NEED_MORE);
	linebuf_free(&lb);
}

static void
test_bare_cr_stays_inside_the_line(void **state)
{
	struct linebuf lb;

	linebuf_init(&lb, 8, 64);
	append_all(&lb, "a\rb\r\r\n");
	expect_line(&lb, "a\rb\r", LINEBUF_EOL_CRLF);
	linebuf_free(&lb);
}

static void
test_empty_buffer_holds_no_memory(void **state)
{
	struct linebuf lb;

	linebuf_init(&lb, 8, 64);
	assert_null(lb.data);
	append_all(&lb, "NOOP\r\n");
	assert_non_null(lb.data);
	expect_line(&lb, "NOOP", LINEBUF_EOL_CRLF);
	expect_result(&lb, LINEBUF_NEED_MORE);
	assert_null(lb.data);
	assert_int_equal(lb.cap, 0);
	linebuf_free(&lb);
}

static void
test_line_of_exactly_max_bytes_is_accepted(void **state)
{
	struct linebuf lb;
	char buf[16];

	linebuf_init(&lb, 4, 16);
	memset(buf, 'x', 14);
	buf[14] = '\r';
	buf[15] = '\n';
	assert_int_equal(linebuf_append(&lb, buf, 16), 16);
	assert_true(lb.cap <= 16);
	expect_line(&lb, "xxxxxxxxxxxxxx", LINEBUF_EOL_CRLF);
	linebuf_free(&lb);
}

static void
test_overlong_line_is_reported_once_and_skipped_to_its_lf(void **state)
{
	struct linebuf lb;
	char big[40];
	size_t taken;

	linebuf_init(&lb, 4, 16);
	memset(big, 'y', sizeof(big));
	taken = linebuf_append(&lb, big, sizeof(big));
	assert_int_equal(taken, 16);
	assert_int_equal(linebuf_space(&lb), 0);
	expect_result(&lb, LINEBUF_TOO_LONG);
	assert_int_equal(linebuf_len(&lb), 0);
	/* The rest of the same line is swallowed, the next command parses normally. */
	assert_int_equal(linebuf_append(&lb, big, sizeof(big) - taken), sizeof(big) - taken);
	expect_result(&lb, LINEBUF_NEED_MORE);
	append_all(&lb, "yyyy\r\nQUIT\r\n");
	expect_line(&lb, "QUIT", LINEBUF_EOL_CRLF);
	expect_result(&lb, LINEBUF_NEED_MORE);
	linebuf_free(&lb);
}

static void
test_lines_before_an_overlong_line_are_delivered_first(void **state)
{
	struct linebuf lb;

	linebuf_init(&lb, 4, 12);
	assert_int_equal(linebuf_append(&lb, "OK\r\n0123456789abcdef\r\nX\n", 24), 12);
	expect_line(&lb, "OK", LINEBUF_EOL_CRLF);
	expect_result(&lb, LINEBUF_NEED_MORE);
	/* Consuming a line made room again. */
	assert_int_equal(linebuf_append(&lb, "89ab", 4), 4);
	expect_result(&lb, LINEBUF_TOO_LONG);
	assert_int_equal(linebuf_append(&lb, "cdef\r\nX\n", 8), 8);
	expect_line(&lb, "X", LINEBUF_EOL_LF);
	linebuf_free(&lb);
}

static void
test_take_returns_raw_bytes_for_literals(void **state)
{
	struct linebuf lb;
	char out[16];

	linebuf_init(&lb, 8, 64);
	append_all(&lb, "a LOGIN {5}\r\nhel\nobob\r\n");
	expect_line(&lb, "a LOGIN {5}", LINEBUF_EOL_CRLF);
	assert_int_equal(linebuf_take(&lb, out, 5), 5);
	assert_memory_equal(out, "hel\no", 5);
	expect_line(&lb, "bob", LINEBUF_EOL_CRLF);
	assert_int_equal(linebuf_take(&lb, out, sizeof(out)), 0);
	linebuf_free(&lb);
}

static void
test_clear_discards_pipelined_plaintext(void **state)
{
	struct linebuf lb;

	linebuf_init(&lb, 8, 64);
	append_all(&lb, "STARTTLS\r\nMAIL FROM:<evil>\r\n");
	expect_line(&lb, "STARTTLS", LINEBUF_EOL_CRLF);
	assert_int_equal(linebuf_len(&lb), 18);
	linebuf_clear(&lb);
	assert_int_equal(linebuf_len(&lb), 0);
	expect_result(&lb, LINEBUF_NEED_MORE);
	linebuf_free(&lb);
}

static void
test_read_from_fd_respects_cap_and_resyncs(void **state)
{
	struct linebuf lb;
	int p[2];
	char big[32];

	assert_int_equal(pipe(p), 0);
	linebuf_init(&lb, 4, 8);
	assert_int_equal(write(p[1], "AB\r\nCD", 6), 6);
	assert_int_equal(linebuf_read(&lb, p[0], 3), 3);
	expect_result(&lb, LINEBUF_NEED_MORE);
	assert_int_equal(linebuf_read(&lb, p[0], 100), 3);
	expect_line(&lb, "AB", LINEBUF_EOL_CRLF);
	memset(big, 'z', sizeof(big));
	big[20] = '\n';
	assert_int_equal(write(p[1], big, 21), 21);
	assert_int_equal(write(p[1], "OK\n", 3), 3);
	assert_int_equal(linebuf_read(&lb, p[0], 100), 6);
	assert_int_equal(linebuf_space(&lb), 0);
	assert_int_equal(linebuf_read(&lb, p[0], 100), -1);
	assert_int_equal(errno, ENOBUFS);
	expect_result(&lb, LINEBUF_TOO_LONG);
	/* 15 bytes of the overlong line remain, then "OK\n": 8 + 8 + 2 bytes of reads. */
	assert_int_equal(linebuf_read(&lb, p[0], 100), 8);
	assert_int_equal(linebuf_len(&lb), 0);
	assert_int_equal(linebuf_read(&lb, p[0], 100), 8);
	assert_int_equal(linebuf_len(&lb), 1);
	assert_int_equal(linebuf_read(&lb, p[0], 100), 2);
	expect_line(&lb, "OK", LINEBUF_EOL_LF);
	close(p[1]);
	assert_int_equal(linebuf_read(&lb, p[0], 100), 0);
	close(p[0]);
	linebuf_free(&lb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lines_split_and_report_their_ending),
	    cmocka_unit_test(test_bare_cr_stays_inside_the_line),
	    cmocka_unit_test(test_empty_buffer_holds_no_memory),
	    cmocka_unit_test(test_line_of_exactly_max_bytes_is_accepted),
	    cmocka_unit_test(test_overlong_line_is_reported_once_and_skipped_to_its_lf),
	    cmocka_unit_test(test_lines_before_an_overlong_line_are_delivered_first),
	    cmocka_unit_test(test_take_returns_raw_bytes_for_literals),
	    cmocka_unit_test(test_clear_discards_pipelined_plaintext),
	    cmocka_unit_test(test_read_from_fd_respects_cap_and_resyncs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
