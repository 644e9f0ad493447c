/*
 * Unit tests for the queue runner's LMTP/SMTP reply parser (relay/queue_reply.c):
 * single and multi-line replies, enhanced status codes, EHLO keywords, and the limits
 * that keep a broken back end from making the runner keep unbounded text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "../../relay/queue_reply.h"

static enum queue_reply_status
feed(struct queue_reply *r, const char *line)
{
	return queue_reply_feed(r, line, strlen(line));
}

static void
test_single_line_reply_with_enhanced_code(void **state)
{
	struct queue_reply r;

	(void)state;
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "550 5.1.1 <x@example.org> User doesn't exist"),
	                 QUEUE_REPLY_DONE);
	assert_int_equal(r.code, 550);
	assert_int_equal(queue_reply_class(&r), 5);
	assert_string_equal(r.enhanced, "5.1.1");
	assert_string_equal(r.text, "550 5.1.1 <x@example.org> User doesn't exist");
}

static void
test_enhanced_code_of_another_class_is_text(void **state)
{
	struct queue_reply r;

	(void)state;
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "250 5.1.1 odd"), QUEUE_REPLY_DONE);
	assert_string_equal(r.enhanced, "");
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "451 4.3.1234 too many digits"), QUEUE_REPLY_DONE);
	assert_string_equal(r.enhanced, "");
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "452 4.2.2"), QUEUE_REPLY_DONE);
	assert_string_equal(r.enhanced, "4.2.2");
}

static void
test_multi_line_ehlo_reply_reports_keywords(void **state)
{
	struct queue_reply r;

	(void)state;
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "250-mx.example"), QUEUE_REPLY_MORE);
	assert_int_equal(feed(&r, "250-PIPELINING"), QUEUE_REPLY_MORE);
	assert_int_equal(feed(&r, "250-starttls"), QUEUE_REPLY_MORE);
	assert_int_equal(feed(&r, "250 8BITMIME"), QUEUE_REPLY_DONE);
	assert_int_equal(r.nlines, 4);
	assert_true(r.ext & QUEUE_EXT_STARTTLS);
	assert_true(r.ext & QUEUE_EXT_8BITMIME);
	assert_false(r.ext & QUEUE_EXT_SMTPUTF8);
}

static void
test_greeting_domain_is_not_a_keyword(void **state)
{
	struct queue_reply r;

	(void)state;
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "250 STARTTLS"), QUEUE_REPLY_DONE);
	assert_false(r.ext & QUEUE_EXT_STARTTLS);
}

static void
test_bare_code_is_a_complete_reply(void **state)
{
	struct queue_reply r;

	(void)state;
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "354"), QUEUE_REPLY_DONE);
	assert_int_equal(r.code, 354);
	assert_string_equal(r.text, "354");
}

static void
test_malformed_replies_are_bad_and_stay_bad(void **state)
{
	static const char *bad[] = {"",      "25",   "abc hello", "199 x",
	                            "600 x", "250x", "300 x",     "2501 x"};
	struct queue_reply r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		queue_reply_init(&r);
		assert_int_equal(feed(&r, bad[i]), QUEUE_REPLY_BAD);
		assert_non_null(r.error);
		assert_int_equal(feed(&r, "250 ok"), QUEUE_REPLY_BAD);
	}
}

static void
test_continuation_with_another_code_is_bad(void **state)
{
	struct queue_reply r;

	(void)state;
	queue_reply_init(&r);
	assert_int_equal(feed(&r, "250-a"), QUEUE_REPLY_MORE);
	assert_int_equal(feed(&r, "550 b"), QUEUE_REPLY_BAD);
}

static void
test_line_and_line_count_limits(void **state)
{
	char line[QUEUE_REPLY_LINE_MAX + 10];
	struct queue_reply r;
	unsigned int i;

	(void)state;
	memset(line, 'a', sizeof(line));
	memcpy(line, "250 ", 4);
	queue_reply_init(&r);
	assert_int_equal(queue_reply_feed(&r, line, QUEUE_REPLY_LINE_MAX + 1), QUEUE_REPLY_BAD);
	queue_reply_init(&r);
	assert_int_equal(queue_reply_feed(&r, line, QUEUE_REPLY_LINE_MAX), QUEUE_REPLY_DONE);
	assert_int_equal(strlen(r.text), QUEUE_REPLY_TEXT_MAX - 1);
	queue_reply_init(&r);
	for (i = 0; i < QUEUE_REPLY_LINES_MAX; i++)
		assert_int_equal(feed(&r, "250-x"), QUEUE_REPLY_MORE);
	assert_int_equal(feed(&r, "250 x"), QUEUE_REPLY_BAD);
}

static void
test_control_bytes_are_not_kept(void **state)
{
	struct queue_reply r;

	(void)state;
	queue_reply_init(&r);
	assert_int_equal(queue_reply_feed(&r, "550 a\x1b[0m\xff", 10), QUEUE_REPLY_DONE);
	assert_string_equal(r.text, "550 a?[0m?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_single_line_reply_with_enhanced_code),
	    cmocka_unit_test(test_enhanced_code_of_another_class_is_text),
	    cmocka_unit_test(test_multi_line_ehlo_reply_reports_keywords),
	    cmocka_unit_test(test_greeting_domain_is_not_a_keyword),
	    cmocka_unit_test(test_bare_code_is_a_complete_reply),
	    cmocka_unit_test(test_malformed_replies_are_bad_and_stay_bad),
	    cmocka_unit_test(test_continuation_with_another_code_is_bad),
	    cmocka_unit_test(test_line_and_line_count_limits),
	    cmocka_unit_test(test_control_bytes_are_not_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
