/*
 * Unit tests for the health-check reply parsers (healthcheck/hc_reply.c): SMTP multi-line
 * replies and their limits, EHLO's STARTTLS keyword, prefix lines with IMAP untagged
 * lines passed over, and the sanitising of reply text for status lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "hc_reply.h"

static enum hc_reply_status
smtp_feed(struct hc_smtp_reply *r, const char *line)
{
	return hc_smtp_reply_feed(r, line, strlen(line));
}

static enum hc_reply_status
line_feed(struct hc_line_reply *r, const char *line)
{
	return hc_line_reply_feed(r, line, strlen(line));
}

static void
test_smtp_single_line_with_expected_code_is_ok(void **state)
{
	struct hc_smtp_reply r;

	hc_smtp_reply_init(&r, 220);
	assert_int_equal(smtp_feed(&r, "220 mx.example ESMTP"), HC_REPLY_OK);
	assert_int_equal(r.code, 220);
	assert_string_equal(r.text, "220 mx.example ESMTP");
}

static void
test_smtp_multi_line_banner_is_accepted_and_reads_as_one(void **state)
{
	struct hc_smtp_reply r;

	hc_smtp_reply_init(&r, 220);
	assert_int_equal(smtp_feed(&r, "220-mx.example ESMTP"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "220-no UCE"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "220 ready"), HC_REPLY_OK);
	assert_int_equal(r.nlines, 3);
	/* The status line shows the first line as "220 ...", never "220-...". */
	assert_string_equal(r.text, "220 mx.example ESMTP");
}

static void
test_smtp_ehlo_reply_reports_starttls_keyword(void **state)
{
	struct hc_smtp_reply r;

	hc_smtp_reply_init(&r, 250);
	assert_int_equal(smtp_feed(&r, "250-mx.example"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "250-PIPELINING"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "250-starttls"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "250 8BITMIME"), HC_REPLY_OK);
	assert_true(r.starttls);

	hc_smtp_reply_init(&r, 250);
	assert_int_equal(smtp_feed(&r, "250-mx.example"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "250-STARTTLSX"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "250 XSTARTTLS"), HC_REPLY_OK);
	assert_false(r.starttls);
}

static void
test_smtp_starttls_in_greeting_line_is_not_a_keyword(void **state)
{
	struct hc_smtp_reply r;

	/* The first EHLO line is the server's name, not a keyword (RFC 5321 4.1.1.1). */
	hc_smtp_reply_init(&r, 250);
	assert_int_equal(smtp_feed(&r, "250 STARTTLS"), HC_REPLY_OK);
	assert_false(r.starttls);
}

static void
test_smtp_other_code_is_a_failure_with_its_text(void **state)
{
	struct hc_smtp_reply r;

	hc_smtp_reply_init(&r, 220);
	assert_int_equal(smtp_feed(&r, "554 5.3.2 service closed"), HC_REPLY_FAIL);
	assert_int_equal(r.code, 554);
	assert_string_equal(r.text, "554 5.3.2 service closed");
}

static void
test_smtp_bare_code_ends_the_reply(void **state)
{
	struct hc_smtp_reply r;

	hc_smtp_reply_init(&r, 221);
	assert_int_equal(smtp_feed(&r, "221"), HC_REPLY_OK);
}

static void
test_smtp_code_change_within_reply_is_rejected(void **state)
{
	struct hc_smtp_reply r;

	hc_smtp_reply_init(&r, 220);
	assert_int_equal(smtp_feed(&r, "220-first"), HC_REPLY_MORE);
	assert_int_equal(smtp_feed(&r, "250 second"), HC_REPLY_BAD);
	assert_string_equal(r.error, "reply code changed within a multi-line reply");
	/* Anything fed after a verdict of BAD stays BAD. */
	assert_int_equal(smtp_feed(&r, "220 late"), HC_REPLY_BAD);
}

static void
test_smtp_malformed_lines_are_rejected(void **state)
{
	static const char *bad[] = {
	    "", "22", "HELLO", "2200 x", "220x", "120 too low", "620 too high", "2a0 x", "220\t",
	};
	struct hc_smtp_reply r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hc_smtp_reply_init(&r, 220);
		assert_int_equal(smtp_feed(&r, bad[i]), HC_REPLY_BAD);
		assert_string_equal(r.error, "malformed reply");
	}
}

static void
test_smtp_endless_reply_is_cut_at_the_line_limit(void **state)
{
	struct hc_smtp_reply r;
	enum hc_reply_status st = HC_REPLY_MORE;
	unsigned i;

	hc_smtp_reply_init(&r, 250);
	for (i = 0; i < HC_REPLY_MAX_LINES + 5 && st == HC_REPLY_MORE; i++)
		st = smtp_feed(&r, "250-more");
	assert_int_equal(st, HC_REPLY_BAD);
	assert_int_equal(i, HC_REPLY_MAX_LINES + 1);
	assert_string_equal(r.error, "too many reply lines");
}

static void
test_line_prefix_must_be_a_whole_word(void **state)
{
	struct hc_line_reply r;

	hc_line_reply_init(&r, "+OK", NULL);
	assert_int_equal(line_feed(&r, "+OK Dovecot ready."), HC_REPLY_OK);
	hc_line_reply_init(&r, "+OK", NULL);
	assert_int_equal(line_feed(&r, "+OK"), HC_REPLY_OK);
	hc_line_reply_init(&r, "+OK", NULL);
	assert_int_equal(line_feed(&r, "+OKAY"), HC_REPLY_FAIL);
	hc_line_reply_init(&r, "+OK", NULL);
	assert_int_equal(line_feed(&r, "-ERR go away"), HC_REPLY_FAIL);
	assert_string_equal(r.text, "-ERR go away");
}

static void
test_imap_greeting_preauth_and_bye_fail(void **state)
{
	struct hc_line_reply r;

	hc_line_reply_init(&r, "* OK", NULL);
	assert_int_equal(line_feed(&r, "* OK [CAPABILITY IMAP4rev1] ready"), HC_REPLY_OK);
	hc_line_reply_init(&r, "* OK", NULL);
	assert_int_equal(line_feed(&r, "* PREAUTH welcome back"), HC_REPLY_FAIL);
	hc_line_reply_init(&r, "* OK", NULL);
	assert_int_equal(line_feed(&r, "* BYE too busy"), HC_REPLY_FAIL);
	assert_string_equal(r.text, "* BYE too busy");
	/* RFC 3501 9: "OK" is an atom, compared without regard to case. */
	hc_line_reply_init(&r, "* OK", NULL);
	assert_int_equal(line_feed(&r, "* ok fine"), HC_REPLY_OK);
}

static void
test_imap_tagged_reply_passes_over_untagged_lines(void **state)
{
	struct hc_line_reply r;

	hc_line_reply_init(&r, "a1 OK", "* ");
	assert_int_equal(line_feed(&r, "* BYE Logging out"), HC_REPLY_MORE);
	assert_int_equal(line_feed(&r, "* CAPABILITY IMAP4rev1"), HC_REPLY_MORE);
	assert_int_equal(line_feed(&r, "a1 OK Logout completed."), HC_REPLY_OK);

	hc_line_reply_init(&r, "a1 OK", "* ");
	assert_int_equal(line_feed(&r, "a1 BAD unknown command"), HC_REPLY_FAIL);
	hc_line_reply_init(&r, "a1 OK", "* ");
	assert_int_equal(line_feed(&r, "a2 OK other tag"), HC_REPLY_FAIL);
}

static void
test_untagged_flood_is_cut_at_the_line_limit(void **state)
{
	struct hc_line_reply r;
	enum hc_reply_status st = HC_REPLY_MORE;
	unsigned i;

	hc_line_reply_init(&r, "a1 OK", "* ");
	for (i = 0; i < HC_REPLY_MAX_LINES + 5 && st == HC_REPLY_MORE; i++)
		st = line_feed(&r, "* FLOOD");
	assert_int_equal(st, HC_REPLY_BAD);
	assert_string_equal(r.error, "too many reply lines");
}

static void
test_reply_text_is_sanitised_and_bounded(void **state)
{
	struct hc_line_reply r;
	char longline[HC_TEXT_MAX * 2];
	char out[8];

	hc_line_reply_init(&r, "+OK", NULL);
	assert_int_equal(hc_line_reply_feed(&r, "-ERR a\033[2Jb\x01\xff", 13), HC_REPLY_FAIL);
	assert_string_equal(r.text, "-ERR a?[2Jb??");

	memset(longline, 'x', sizeof(longline));
	hc_line_reply_init(&r, "+OK", NULL);
	assert_int_equal(hc_line_reply_feed(&r, longline, sizeof(longline)), HC_REPLY_FAIL);
	assert_int_equal(strlen(r.text), HC_TEXT_MAX - 1);

	hc_text_sanitize(out, sizeof(out), "abc\0def", 7);
	assert_string_equal(out, "abc?def");
	hc_text_sanitize(out, sizeof(out), "abcdefghij", 10);
	assert_string_equal(out, "abcdefg");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_smtp_single_line_with_expected_code_is_ok),
	    cmocka_unit_test(test_smtp_multi_line_banner_is_accepted_and_reads_as_one),
	    cmocka_unit_test(test_smtp_ehlo_reply_reports_starttls_keyword),
	    cmocka_unit_test(test_smtp_starttls_in_greeting_line_is_not_a_keyword),
	    cmocka_unit_test(test_smtp_other_code_is_a_failure_with_its_text),
	    cmocka_unit_test(test_smtp_bare_code_ends_the_reply),
	    cmocka_unit_test(test_smtp_code_change_within_reply_is_rejected),
	    cmocka_unit_test(test_smtp_malformed_lines_are_rejected),
	    cmocka_unit_test(test_smtp_endless_reply_is_cut_at_the_line_limit),
	    cmocka_unit_test(test_line_prefix_must_be_a_whole_word),
	    cmocka_unit_test(test_imap_greeting_preauth_and_bye_fail),
	    cmocka_unit_test(test_imap_tagged_reply_passes_over_untagged_lines),
	    cmocka_unit_test(test_untagged_flood_is_cut_at_the_line_limit),
	    cmocka_unit_test(test_reply_text_is_sanitised_and_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
