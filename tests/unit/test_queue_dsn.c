/*
 * Unit tests for the bounce composer (relay/queue_dsn.c): the RFC 3464 parts and fields,
 * per-recipient status taken from the reply's enhanced code, the original headers quoted
 * without the body, and the header block's end found with CRLF or bare LF.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "../../relay/queue_dsn.h"

static const char original[] = "Received: from a by b\r\n"
                               "Subject: hello\r\n"
                               "Message-ID: <m1@example.org>\r\n"
                               "\r\n"
                               "SECRET BODY TEXT\r\n";

static char *
compose(const struct queue_dsn_rcpt *r, size_t n, size_t *len)
{
	struct queue_dsn d = {
	    .hostname = "relay1.bigisp.com",
	    .qid = "0123ABCD",
	    .sender = "alice@example.org",
	    .arrival = 1700000000,
	    .now = 1700003600,
	    .rcpt = r,
	    .nrcpt = n,
	    .headers = original,
	    .headers_len = queue_dsn_header_len(original, sizeof(original) - 1),
	};
	char *out = NULL;

	assert_int_equal(queue_dsn_compose(&d, &out, len), 0);
	assert_non_null(out);
	assert_int_equal(strlen(out), *len);
	return out;
}

static void
test_bounce_has_the_rfc3464_parts_and_fields(void **state)
{
	const struct queue_dsn_rcpt r[] = {
	    {"bob@bigisp.com", "Bob@bigisp.com", "", "550 5.1.1 <bob@bigisp.com> no such user",
	     "ingrid"},
	};
	size_t len;
	char *m;

	(void)state;
	m = compose(r, 1, &len);
	assert_non_null(
	    strstr(m, "From: Mail Delivery System <MAILER-DAEMON@relay1.bigisp.com>\r\n"));
	assert_non_null(strstr(m, "To: <alice@example.org>\r\n"));
	assert_non_null(strstr(m, "Content-Type: multipart/report; report-type=delivery-status;"));
	assert_non_null(strstr(m, "Content-Type: message/delivery-status\r\n"));
	assert_non_null(strstr(m, "Reporting-MTA: dns; relay1.bigisp.com\r\n"));
	assert_non_null(strstr(m, "Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"));
	assert_non_null(strstr(m, "Final-Recipient: rfc822; bob@bigisp.com\r\n"));
	assert_non_null(strstr(m, "Original-Recipient: rfc822; Bob@bigisp.com\r\n"));
	assert_non_null(strstr(m, "Action: failed\r\n"));
	assert_non_null(strstr(m, "Status: 5.1.1\r\n"));
	assert_non_null(
	    strstr(m, "Diagnostic-Code: smtp; 550 5.1.1 <bob@bigisp.com> no such user\r\n"));
	assert_non_null(strstr(m, "Content-Type: text/rfc822-headers\r\n"));
	assert_non_null(strstr(m, "Subject: hello\r\nMessage-ID: <m1@example.org>\r\n"));
	free(m);
}

static void
test_body_of_the_original_never_appears(void **state)
{
	const struct queue_dsn_rcpt r[] = {{"bob@bigisp.com", "", "", "550 no", ""}};
	size_t len;
	char *m;

	(void)state;
	m = compose(r, 1, &len);
	assert_null(strstr(m, "SECRET"));
	assert_null(strstr(m, "Original-Recipient"));
	assert_null(strstr(m, "Remote-MTA"));
	free(m);
}

static void
test_status_comes_from_given_code_or_reply_class(void **state)
{
	const struct queue_dsn_rcpt r[] = {
	    {"a@x", "", "4.4.7", "message expired", ""},
	    {"b@x", "", "", "554 transaction failed", ""},
	    {"c@x", "", "", "452 no space", ""},
	};
	size_t len;
	char *m, *a, *b, *c;

	(void)state;
	m = compose(r, 3, &len);
	a = strstr(m, "Final-Recipient: rfc822; a@x");
	b = strstr(m, "Final-Recipient: rfc822; b@x");
	c = strstr(m, "Final-Recipient: rfc822; c@x");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_true(strstr(a, "Status: 4.4.7") < b);
	assert_true(strstr(b, "Status: 5.0.0") < c);
	assert_non_null(strstr(c, "Status: 4.0.0"));
	free(m);
}

static void
test_header_block_end_with_crlf_or_lf(void **state)
{
	(void)state;
	assert_int_equal(queue_dsn_header_len("A: b\r\n\r\nbody", 13), 8);
	assert_int_equal(queue_dsn_header_len("A: b\n\nbody", 10), 6);
	assert_int_equal(queue_dsn_header_len("A: b\r\nC: d", 10), 10);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bounce_has_the_rfc3464_parts_and_fields),
	    cmocka_unit_test(test_body_of_the_original_never_appears),
	    cmocka_unit_test(test_status_comes_from_given_code_or_reply_class),
	    cmocka_unit_test(test_header_block_end_with_crlf_or_lf),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
