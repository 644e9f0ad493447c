/*
 * Unit tests of mailplexctl move's parsers: IMAP framing with literals and its bounds,
 * LIST and STATUS as Dovecot sends them, the tagged results; the map version a daemon
 * reports in force, the director's map-status barrier rule (who is waited for); the state
 * file round trip and its refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../tools/mailplexctl/move.h"
#include "../../tools/mailplexctl/move_imap.h"

static void
test_frame_waits_for_the_whole_literal(void **state)
{
	const char *s = "* LIST () \".\" {5}\r\nab\"cd\r\nm1 OK done\r\n";

	(void)state;
	assert_int_equal(move_imap_frame(s, 10), 0);
	assert_int_equal(move_imap_frame(s, 22), 0); /* the literal is not whole yet */
	assert_int_equal(move_imap_frame(s, strlen(s)),
	                 strlen("* LIST () \".\" {5}\r\nab\"cd\r\n"));
}

static void
test_frame_refuses_overlong_lines_and_literals(void **state)
{
	char *big = malloc(MOVE_IMAP_RESP_MAX + 10);

	(void)state;
	assert_non_null(big);
	memset(big, 'a', MOVE_IMAP_RESP_MAX + 10);
	assert_int_equal(move_imap_frame(big, MOVE_IMAP_RESP_MAX + 10), -1);
	free(big);
	assert_int_equal(move_imap_frame("* LIST () \".\" {99999}\r\n", 23), -1);
}

static void
test_list_with_flags_quoted_and_literal_names(void **state)
{
	struct move_imap_resp r;
	const char *l1 = "* LIST (\\HasNoChildren) \".\" \"Lists.Dev\"\r\n";
	const char *l2 = "* LIST (\\HasChildren \\Noselect) \"/\" Lists\r\n";
	const char *l3 = "* LIST () NIL {7}\r\nA \"b\" c\r\n";

	(void)state;
	assert_int_equal(move_imap_parse(l1, strlen(l1), &r), 0);
	assert_int_equal(r.data, MOVE_IMAP_LIST);
	assert_string_equal(r.name, "Lists.Dev");
	assert_false(r.noselect);
	assert_int_equal(move_imap_parse(l2, strlen(l2), &r), 0);
	assert_true(r.noselect);
	assert_string_equal(r.name, "Lists");
	assert_int_equal(move_imap_parse(l3, strlen(l3), &r), 0);
	assert_string_equal(r.name, "A \"b\" c");
}

static void
test_status_messages_and_results(void **state)
{
	struct move_imap_resp r;
	const char *s = "* STATUS \"Lists.Dev\" (UIDNEXT 9 MESSAGES 4)\r\n";
	const char *t = "m7 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n";
	const char *bad = "* STATUS INBOX (MESSAGES x)\r\n";

	(void)state;
	assert_int_equal(move_imap_parse(s, strlen(s), &r), 0);
	assert_int_equal(r.data, MOVE_IMAP_STATUS);
	assert_string_equal(r.name, "Lists.Dev");
	assert_true(r.has_messages);
	assert_int_equal(r.messages, 4);
	assert_int_equal(move_imap_parse(t, strlen(t), &r), 0);
	assert_int_equal(r.kind, MOVE_IMAP_TAGGED);
	assert_string_equal(r.tag, "m7");
	assert_string_equal(r.cond, "NO");
	assert_string_equal(r.text, "[AUTHENTICATIONFAILED] Authentication failed.");
	assert_int_equal(move_imap_parse(bad, strlen(bad), &r), -1);
}

static void
test_quote_escapes_and_refuses_controls(void **state)
{
	char q[32];

	(void)state;
	assert_int_equal(move_imap_quote("a\"b\\c", 5, q, sizeof(q)), 0);
	assert_string_equal(q, "\"a\\\"b\\\\c\"");
	assert_int_equal(move_imap_quote("a\rb", 3, q, sizeof(q)), -1);
}

static void
test_in_force_line_is_found_among_others(void **state)
{
	uint64_t v = 0;

	(void)state;
	assert_int_equal(
	    move_parse_in_force("worker 0 pid 3: 2 sessions\nmap_version_in_force 17\n", &v), 0);
	assert_int_equal(v, 17);
	assert_int_equal(move_parse_in_force("map_version 18\n", &v), -1);
}

static void
test_map_status_waits_for_every_relay_but_left_and_static(void **state)
{
	char lag[256];
	const char *s = "published 20\n"
	                "relay r1 map_installed 20 map_in_force 20 state admitted\n"
	                "relay r2 map_installed 20 map_in_force 19 state draining\n"
	                "relay r3 map_installed 0 map_in_force 0 state static\n";
	const char *ok = "published 20\n"
	                 "relay r1 map_installed 20 map_in_force 21 state admitted\n"
	                 "relay r4 map_installed 3 map_in_force 3 state left\n";

	(void)state;
	assert_int_equal(move_parse_map_status(s, 20, lag, sizeof(lag)), 0);
	assert_non_null(strstr(lag, "r2 (state draining, map in force 19)"));
	assert_int_equal(move_parse_map_status(ok, 20, lag, sizeof(lag)), 1);
	assert_int_equal(move_parse_map_status("relay r1 x\n", 20, lag, sizeof(lag)), -1);
	assert_int_equal(
	    move_parse_map_status("published 3\nrelay r1 map_installed 3\n", 3, lag, sizeof(lag)),
	    -1);
}

static void
test_state_file_round_trip_and_refusals(void **state)
{
	struct move_state st;
	const char *text = "user=carl@mail.test\nold=d1\nnew=d2\nvia=user\nstep=copied\n"
	                   "status=failed\nfailed_step=verified\nversion=42\nstarted=1\n"
	                   "updated=2\norig=user carl d1 # x=y\nerror=failed at step \"verify\"\n"
	                   "future_key=ignored\n";

	(void)state;
	assert_int_equal(move_state_parse(text, strlen(text), &st), 0);
	assert_string_equal(st.user, "carl@mail.test");
	assert_int_equal(st.step, MOVE_STEP_COPIED);
	assert_int_equal(st.status, MOVE_FAILED);
	assert_int_equal(st.failed_step, MOVE_STEP_VERIFIED);
	assert_int_equal(st.version, 42);
	assert_true(st.via_user);
	assert_string_equal(st.orig, "user carl d1 # x=y");
	assert_string_equal(move_step_action(st.failed_step), "verify");
	assert_int_equal(move_state_parse("user=a\nold=b\n", 14, &st), -1);
	assert_int_equal(move_state_parse("user=a\nold=b\nnew=c\nstep=nowhere\n", 32, &st), -1);
	assert_int_equal(move_state_parse("no equals sign\n", 15, &st), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_frame_waits_for_the_whole_literal),
	    cmocka_unit_test(test_frame_refuses_overlong_lines_and_literals),
	    cmocka_unit_test(test_list_with_flags_quoted_and_literal_names),
	    cmocka_unit_test(test_status_messages_and_results),
	    cmocka_unit_test(test_quote_escapes_and_refuses_controls),
	    cmocka_unit_test(test_in_force_line_is_found_among_others),
	    cmocka_unit_test(test_map_status_waits_for_every_relay_but_left_and_static),
	    cmocka_unit_test(test_state_file_round_trip_and_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
