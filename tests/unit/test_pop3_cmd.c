/*
 * Unit tests for relay/pop3_cmd: CAPA, STLS, QUIT, USER then PASS (spaces in the
 * password, order enforced), AUTH listing, AUTH PLAIN with and without an initial
 * response, "=" and "*", transaction-only commands, line bounds, NUL bytes, and wiping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../relay/pop3_cmd.h"

static enum pop3_cmd_status
line(struct pop3_cmd *c, const char *s)
{
	return pop3_cmd_line(c, s, strlen(s));
}

static void
expect_err(struct pop3_cmd *c, enum pop3_cmd_status st, const char *reason)
{
	assert_int_equal(st, POP3_CMD_ERR);
	assert_non_null(c->reason);
	if (reason != NULL)
		assert_string_equal(c->reason, reason);
}

static void
test_capa_stls_quit_are_recognised_without_regard_to_case(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	assert_int_equal(line(&c, "CAPA"), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_CAPA);
	assert_int_equal(line(&c, "stls"), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_STLS);
	assert_int_equal(line(&c, "QuIt"), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_QUIT);
	expect_err(&c, line(&c, "CAPA x"), "this command takes no argument");
	expect_err(&c, line(&c, "CAPA "), "this command takes no argument");
}

static void
test_user_then_pass_with_spaces_gives_credentials(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	assert_int_equal(line(&c, "USER bob@example.com"), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_USER);
	assert_string_equal(c.creds.user, "bob@example.com");
	assert_int_equal(line(&c, "pass  correct horse battery "), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_PASS);
	assert_string_equal(c.creds.user, "bob@example.com");
	/* RFC 1939 7: the whole rest of the line, leading and trailing spaces included. */
	assert_string_equal(c.creds.pass, " correct horse battery ");
	assert_int_equal(c.creds.pass_len, 23);
}

static void
test_pass_without_user_or_after_another_command_is_refused(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	expect_err(&c, line(&c, "PASS secret"), "USER first");
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	assert_int_equal(line(&c, "CAPA"), POP3_CMD_DONE);
	/* RFC 1939 7: PASS only immediately after USER. */
	expect_err(&c, line(&c, "PASS secret"), "USER first");
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	assert_int_equal(line(&c, "PASS secret"), POP3_CMD_DONE);
	/* One PASS per USER. */
	expect_err(&c, line(&c, "PASS again"), "USER first");
}

static void
test_user_and_pass_argument_errors(void **state)
{
	char longname[SASL_USER_MAX + 8];
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	expect_err(&c, line(&c, "USER"), "USER needs a name");
	expect_err(&c, line(&c, "USER "), "USER needs a name");
	expect_err(&c, line(&c, "USER bob smith"), "USER takes one argument");
	expect_err(&c, line(&c, "USER b\tb"), "user name contains control characters");
	memcpy(longname, "USER ", 5);
	memset(longname + 5, 'u', SASL_USER_MAX + 1);
	longname[5 + SASL_USER_MAX + 1] = '\0';
	expect_err(&c, line(&c, longname), "user name too long");
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	expect_err(&c, line(&c, "PASS"), "PASS needs a password");
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	expect_err(&c, line(&c, "PASS "), "PASS needs a password");
	assert_int_equal(c.creds.pass_len, 0);
}

static void
test_pass_bound_follows_the_configured_line_length(void **state)
{
	static char buf[POP3_LINE_MAX_CEILING];
	struct pop3_cmd c;

	pop3_cmd_init(&c, 2048);
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	memcpy(buf, "PASS ", 5);
	memset(buf + 5, 'p', SASL_PASS_MAX);
	assert_int_equal(pop3_cmd_line(&c, buf, 5 + SASL_PASS_MAX), POP3_CMD_DONE);
	assert_int_equal(c.creds.pass_len, SASL_PASS_MAX);
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	memset(buf + 5, 'p', SASL_PASS_MAX + 1);
	expect_err(&c, pop3_cmd_line(&c, buf, 5 + SASL_PASS_MAX + 1), "password too long");
}

static void
test_overlong_lines_are_refused_at_the_configured_bound(void **state)
{
	static char buf[POP3_LINE_MAX_CEILING + 8];
	struct pop3_cmd c;

	memcpy(buf, "USER ", 5);
	memset(buf + 5, 'u', sizeof(buf) - 5);
	pop3_cmd_init(&c, 0);
	assert_int_equal(c.line_max, POP3_LINE_MAX_DEFAULT);
	/* 510 octets + CRLF = 512: accepted as a line, the name is over its own bound. */
	expect_err(&c, pop3_cmd_line(&c, buf, POP3_LINE_MAX_DEFAULT - 2), "user name too long");
	expect_err(&c, pop3_cmd_line(&c, buf, POP3_LINE_MAX_DEFAULT - 1), "command line too long");
	pop3_cmd_init(&c, 10);
	assert_int_equal(c.line_max, 255); /* RFC 2449 4: never below 255 */
	assert_int_equal(pop3_cmd_line(&c, buf, 253), POP3_CMD_DONE);
	assert_int_equal(c.creds.user_len, 248);
	expect_err(&c, pop3_cmd_line(&c, buf, 254), "command line too long");
	pop3_cmd_init(&c, 1 << 20);
	assert_int_equal(c.line_max, POP3_LINE_MAX_CEILING);
}

static void
test_nul_bytes_are_refused_without_echoing_the_line(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	expect_err(&c, pop3_cmd_line(&c, "CA\0PA", 5), "NUL in command line");
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	expect_err(&c, pop3_cmd_line(&c, "PASS hun\0ter2", 13), "NUL in command line");
	assert_int_equal(c.creds.pass_len, 0);
}

static void
test_noop_and_transaction_commands_are_refused_before_login(void **state)
{
	static const char *cmds[] = {"NOOP", "STAT",    "LIST", "RETR 1", "DELE 1",
	                             "RSET", "TOP 1 0", "UIDL", "noop"};
	struct pop3_cmd c;
	size_t i;

	pop3_cmd_init(&c, 0);
	for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		expect_err(&c, line(&c, cmds[i]), "command not valid before login");
	expect_err(&c, line(&c, "APOP bob 0123456789abcdef"), "APOP not supported");
	expect_err(&c, line(&c, "XYZZY"), "unknown command");
	expect_err(&c, line(&c, "USERS bob"), "unknown command");
	expect_err(&c, line(&c, ""), "empty command");
	expect_err(&c, line(&c, " USER bob"), "empty command");
}

static void
test_auth_without_mechanism_lists_mechanisms(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	assert_int_equal(line(&c, "AUTH"), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_AUTH_LIST);
	expect_err(&c, line(&c, "AUTH CRAM-MD5"), "unsupported authentication mechanism");
	expect_err(&c, line(&c, "AUTH "), "unsupported authentication mechanism");
}

static void
test_auth_plain_with_initial_response(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	assert_int_equal(line(&c, "auth plain AGJvYgBzZWNyZXQ="), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_AUTH);
	assert_string_equal(c.creds.user, "bob");
	assert_string_equal(c.creds.pass, "secret");
	expect_err(&c, line(&c, "AUTH PLAIN ="), NULL);
	expect_err(&c, line(&c, "AUTH PLAIN "), "malformed initial response");
	expect_err(&c, line(&c, "AUTH PLAIN AGJvYgBzZWNyZXQ= x"), "invalid base64");
}

static void
test_auth_plain_with_continuation_and_cancel(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	assert_int_equal(line(&c, "AUTH PLAIN"), POP3_CMD_NEED_RESPONSE);
	assert_int_equal(line(&c, "AGJvYgBzZWNyZXQ="), POP3_CMD_DONE);
	assert_int_equal(c.name, POP3_AUTH);
	assert_string_equal(c.creds.user, "bob");

	assert_int_equal(line(&c, "AUTH PLAIN"), POP3_CMD_NEED_RESPONSE);
	expect_err(&c, line(&c, "*"), "authentication cancelled");
	assert_int_equal(c.creds.user_len, 0);
	/* Back in the command state: "*" was the end of the exchange. */
	assert_int_equal(line(&c, "CAPA"), POP3_CMD_DONE);

	assert_int_equal(line(&c, "AUTH PLAIN"), POP3_CMD_NEED_RESPONSE);
	expect_err(&c, line(&c, "not base64!"), "invalid base64");
	assert_int_equal(line(&c, "AUTH PLAIN"), POP3_CMD_NEED_RESPONSE);
	/* A response line is not a command: "QUIT" decodes, but is no PLAIN message. */
	expect_err(&c, line(&c, "QUIT"), "PLAIN message has no NUL separator");
	assert_int_equal(c.name, POP3_AUTH);
}

static void
test_auth_plain_authzid_of_someone_else_is_refused(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	expect_err(&c, line(&c, "AUTH PLAIN YWxpY2UAYm9iAHNlY3JldA=="),
	           "authorization identity differs from authentication identity");
	assert_int_equal(c.creds.pass_len, 0);
}

static void
test_auth_response_line_is_bounded(void **state)
{
	static char buf[SASL_PLAIN_B64_MAX + 8];
	struct pop3_cmd c;

	memset(buf, 'A', sizeof(buf));
	pop3_cmd_init(&c, 0);
	assert_int_equal(line(&c, "AUTH PLAIN"), POP3_CMD_NEED_RESPONSE);
	expect_err(&c, pop3_cmd_line(&c, buf, SASL_PLAIN_B64_MAX + 4), "response too long");
}

static void
test_reset_wipes_credentials_and_the_user_step(void **state)
{
	struct pop3_cmd c;

	pop3_cmd_init(&c, 0);
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	assert_int_equal(line(&c, "PASS hunter2"), POP3_CMD_DONE);
	pop3_cmd_reset(&c);
	assert_null(memmem(&c, sizeof(c), "hunter2", 7));
	assert_int_equal(c.line_max, POP3_LINE_MAX_DEFAULT);
	assert_int_equal(line(&c, "USER bob"), POP3_CMD_DONE);
	pop3_cmd_reset(&c);
	expect_err(&c, line(&c, "PASS x"), "USER first");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_capa_stls_quit_are_recognised_without_regard_to_case),
	    cmocka_unit_test(test_user_then_pass_with_spaces_gives_credentials),
	    cmocka_unit_test(test_pass_without_user_or_after_another_command_is_refused),
	    cmocka_unit_test(test_user_and_pass_argument_errors),
	    cmocka_unit_test(test_pass_bound_follows_the_configured_line_length),
	    cmocka_unit_test(test_overlong_lines_are_refused_at_the_configured_bound),
	    cmocka_unit_test(test_nul_bytes_are_refused_without_echoing_the_line),
	    cmocka_unit_test(test_noop_and_transaction_commands_are_refused_before_login),
	    cmocka_unit_test(test_auth_without_mechanism_lists_mechanisms),
	    cmocka_unit_test(test_auth_plain_with_initial_response),
	    cmocka_unit_test(test_auth_plain_with_continuation_and_cancel),
	    cmocka_unit_test(test_auth_plain_authzid_of_someone_else_is_refused),
	    cmocka_unit_test(test_auth_response_line_is_bounded),
	    cmocka_unit_test(test_reset_wipes_credentials_and_the_user_step),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
