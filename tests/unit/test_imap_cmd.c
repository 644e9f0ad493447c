/*
 * Unit tests for relay/imap_cmd: every pre-login command, tags, atoms, quoted strings,
 * synchronising and non-synchronising literals (split, several per command, too big,
 * skipped after a refusal), AUTHENTICATE PLAIN with and without SASL-IR, ID lists, NUL
 * and CR bytes, API misuse, and that no reason ever carries the password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/imap_cmd.h"

static enum imap_cmd_status
line(struct imap_cmd *c, const char *s)
{
	return imap_cmd_line(c, s, strlen(s));
}

static enum imap_cmd_status
lit(struct imap_cmd *c, const char *s)
{
	return imap_cmd_literal(c, s, strlen(s));
}

static struct imap_cmd *
new_cmd(uint64_t literal_max)
{
	struct imap_cmd *c = malloc(sizeof(*c));

	assert_non_null(c);
	imap_cmd_init(c, literal_max);
	return c;
}

static void
expect_reject(struct imap_cmd *c, enum imap_cmd_status st, enum imap_cmd_reply reply,
              const char *tag)
{
	assert_int_equal(st, IMAP_CMD_REJECT);
	assert_int_equal(c->reply, reply);
	assert_string_equal(c->tag, tag);
	assert_non_null(c->reason);
}

static void
test_simple_commands_are_recognised_without_regard_to_case(void **state)
{
	static const struct {
		const char *line;
		enum imap_cmd_name name;
	} t[] = {
	    {"a1 CAPABILITY", IMAP_CAPABILITY},
	    {"a2 capability", IMAP_CAPABILITY},
	    {"a3 NoOp", IMAP_NOOP},
	    {"a4 LOGOUT", IMAP_LOGOUT},
	    {"a5 starttls", IMAP_STARTTLS},
	};
	struct imap_cmd *c = new_cmd(0);
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(line(c, t[i].line), IMAP_CMD_DONE);
		assert_int_equal(c->name, t[i].name);
	}
	assert_string_equal(c->tag, "a5");
	free(c);
}

static void
test_arguments_after_a_simple_command_are_bad(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a NOOP now"), IMAP_REPLY_BAD, "a");
	expect_reject(c, line(c, "b CAPABILITY "), IMAP_REPLY_BAD, "b");
	free(c);
}

static void
test_unknown_command_before_login_is_bad_with_its_tag(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "x7 SELECT INBOX"), IMAP_REPLY_BAD, "x7");
	assert_string_equal(c->reason, "unknown command before login");
	assert_int_equal(c->close, 0);
	expect_reject(c, line(c, "x8 LOGINX bob pw"), IMAP_REPLY_BAD, "x8");
	free(c);
}

static void
test_tags_with_odd_but_legal_characters_are_kept(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a]b.1-#$&' NOOP"), IMAP_CMD_DONE);
	assert_string_equal(c->tag, "a]b.1-#$&'");
	free(c);
}

static void
test_invalid_tags_get_an_untagged_bad(void **state)
{
	static const char *bad[] = {"+a NOOP",  "a+ NOOP",  "a{b NOOP", "(x NOOP", "a\"b NOOP",
	                            "a*b NOOP", "a%b NOOP", "\\a NOOP", " NOOP",   ""};
	char longtag[IMAP_TAG_MAX + 8];
	struct imap_cmd *c = new_cmd(0);
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(c, line(c, bad[i]), IMAP_REPLY_BAD, "*");
	memset(longtag, 't', IMAP_TAG_MAX + 1);
	memcpy(longtag + IMAP_TAG_MAX + 1, " NOOP", 6);
	expect_reject(c, line(c, longtag), IMAP_REPLY_BAD, "*");
	longtag[IMAP_TAG_MAX] = ' ';
	memcpy(longtag + IMAP_TAG_MAX + 1, "NOOP", 5);
	assert_int_equal(line(c, longtag), IMAP_CMD_DONE);
	assert_int_equal(strlen(c->tag), IMAP_TAG_MAX);
	free(c);
}

static void
test_tag_without_command_is_a_tagged_bad(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a1"), IMAP_REPLY_BAD, "a1");
	expect_reject(c, line(c, "a1 "), IMAP_REPLY_BAD, "a1");
	expect_reject(c, line(c, "a1  NOOP"), IMAP_REPLY_BAD, "a1");
	free(c);
}

static void
test_login_with_atoms(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a login bob@example.com s3cret]"), IMAP_CMD_DONE);
	assert_int_equal(c->name, IMAP_LOGIN);
	assert_string_equal(c->creds.user, "bob@example.com");
	assert_string_equal(c->creds.pass, "s3cret]");
	assert_int_equal(c->creds.pass_len, 7);
	free(c);
}

static void
test_login_with_quoted_strings_and_escapes(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN \"b o\\\"b\" \"p\\\\w d\""), IMAP_CMD_DONE);
	assert_string_equal(c->creds.user, "b o\"b");
	assert_string_equal(c->creds.pass, "p\\w d");
	assert_int_equal(line(c, "b LOGIN \"caf\xc3\xa9\" x"), IMAP_CMD_DONE);
	assert_string_equal(c->creds.user, "caf\xc3\xa9");
	expect_reject(c, line(c, "c LOGIN \"bob\" \"p\\w\""), IMAP_REPLY_BAD, "c");
	assert_string_equal(c->reason, "invalid escape in quoted string");
	expect_reject(c, line(c, "d LOGIN \"bob pw"), IMAP_REPLY_BAD, "d");
	expect_reject(c, line(c, "e LOGIN \"bob\"pw"), IMAP_REPLY_BAD, "e");
	free(c);
}

static void
test_login_with_empty_password_is_well_formed(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN bob \"\""), IMAP_CMD_DONE);
	assert_string_equal(c->creds.user, "bob");
	assert_int_equal(c->creds.pass_len, 0);
	expect_reject(c, line(c, "b LOGIN bob"), IMAP_REPLY_BAD, "b");
	expect_reject(c, line(c, "c LOGIN bob "), IMAP_REPLY_BAD, "c");
	free(c);
}

static void
test_login_with_two_synchronising_literals(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN {3}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(c->literal_left, 3);
	assert_int_equal(c->literal_sync, 1);
	assert_int_equal(lit(c, "bob"), IMAP_CMD_NEED_LINE);
	assert_int_equal(line(c, " {5}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(c->literal_sync, 1);
	assert_int_equal(lit(c, "he"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(c->literal_left, 3);
	assert_int_equal(lit(c, "llo"), IMAP_CMD_NEED_LINE);
	assert_int_equal(line(c, ""), IMAP_CMD_DONE);
	assert_string_equal(c->tag, "a");
	assert_string_equal(c->creds.user, "bob");
	assert_string_equal(c->creds.pass, "hello");
	free(c);
}

static void
test_login_with_non_synchronising_literals_and_mixed_forms(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN {3+}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(c->literal_sync, 0);
	assert_int_equal(lit(c, "bob"), IMAP_CMD_NEED_LINE);
	assert_int_equal(line(c, " \"pw d\""), IMAP_CMD_DONE);
	assert_string_equal(c->creds.pass, "pw d");

	assert_int_equal(line(c, "b LOGIN bob {4+}"), IMAP_CMD_NEED_LITERAL);
	/* A literal may hold what a quoted string cannot: a quote, a backslash, a space. */
	assert_int_equal(lit(c, "\"\\ x"), IMAP_CMD_NEED_LINE);
	assert_int_equal(line(c, ""), IMAP_CMD_DONE);
	assert_string_equal(c->creds.pass, "\"\\ x");
	free(c);
}

static void
test_zero_length_literals(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN bob {0}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(c->literal_left, 0);
	assert_int_equal(imap_cmd_literal(c, NULL, 0), IMAP_CMD_NEED_LINE);
	assert_int_equal(line(c, ""), IMAP_CMD_DONE);
	assert_int_equal(c->creds.pass_len, 0);
	/* {0+}: nothing to wait for, the rest of the line follows at once. */
	assert_int_equal(line(c, "b LOGIN {0+}"), IMAP_CMD_NEED_LINE);
	assert_int_equal(line(c, " pw"), IMAP_CMD_DONE);
	assert_int_equal(c->creds.user_len, 0);
	free(c);
}

static void
test_synchronising_literal_too_big_is_refused_before_the_continuation(void **state)
{
	struct imap_cmd *c = new_cmd(4096);

	expect_reject(c, line(c, "a LOGIN {4097}"), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->resp_code, "TOOBIG");
	assert_int_equal(c->close, 0);
	/* The client sends nothing more for it: the next line is a new command. */
	assert_int_equal(line(c, "b NOOP"), IMAP_CMD_DONE);
	free(c);
}

static void
test_non_synchronising_literal_too_big_is_skipped_then_refused(void **state)
{
	static char junk[5000];
	struct imap_cmd *c = new_cmd(4096);

	memset(junk, 'A', sizeof(junk));
	assert_int_equal(line(c, "a LOGIN {5000+}"), IMAP_CMD_DISCARD);
	assert_int_equal(c->literal_left, 5000);
	assert_string_equal(c->resp_code, "TOOBIG");
	assert_int_equal(imap_cmd_literal(c, junk, 4000), IMAP_CMD_DISCARD);
	assert_int_equal(imap_cmd_literal(c, junk, 1000), IMAP_CMD_NEED_LINE);
	/* The rest of the refused command, with another literal, is skipped too. */
	assert_int_equal(line(c, " {3+}"), IMAP_CMD_DISCARD);
	assert_int_equal(lit(c, "a1 "), IMAP_CMD_NEED_LINE);
	expect_reject(c, line(c, ""), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->resp_code, "TOOBIG");
	assert_int_equal(line(c, "b NOOP"), IMAP_CMD_DONE);
	free(c);
}

static void
test_literal_over_a_field_bound_is_refused(void **state)
{
	struct imap_cmd *c = new_cmd(4096);

	expect_reject(c, line(c, "a LOGIN {256}"), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->reason, "user name too long");
	assert_null(c->resp_code);
	assert_int_equal(line(c, "b LOGIN bob {1025+}"), IMAP_CMD_DISCARD);
	assert_string_equal(c->reason, "password too long");
	free(c);
}

static void
test_literal_announced_by_an_unknown_command_is_not_read_as_commands(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	/* Without the skip, "b LOGOUT" inside the literal would run as a command. */
	assert_int_equal(line(c, "a APPEND INBOX {10+}"), IMAP_CMD_DISCARD);
	assert_int_equal(lit(c, "b LOGOUT\r\n"), IMAP_CMD_NEED_LINE);
	expect_reject(c, line(c, ""), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->reason, "unknown command before login");
	/* Synchronising: the client waits for "+" and gets the refusal instead. */
	expect_reject(c, line(c, "a APPEND INBOX {10}"), IMAP_REPLY_BAD, "a");
	free(c);
}

static void
test_literal_not_ending_the_line_or_unparseable_is_bad(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a LOGIN {3} bob"), IMAP_REPLY_BAD, "a");
	expect_reject(c, line(c, "a LOGIN {x}"), IMAP_REPLY_BAD, "a");
	expect_reject(c, line(c, "a LOGIN {}"), IMAP_REPLY_BAD, "a");
	expect_reject(c, line(c, "a LOGIN {-1}"), IMAP_REPLY_BAD, "a");
	/* A count we cannot follow: refuse and close, the stream is lost. */
	expect_reject(c, line(c, "a LOGIN {99999999999999999999+}"), IMAP_REPLY_BAD, "a");
	assert_int_equal(c->close, 1);
	free(c);
}

static void
test_cr_lf_or_nul_in_a_password_literal_is_refused_after_skipping_it(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN bob {6}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(lit(c, "hu\r\n"), IMAP_CMD_DISCARD);
	assert_int_equal(c->literal_left, 2);
	assert_int_equal(lit(c, "xy"), IMAP_CMD_NEED_LINE);
	expect_reject(c, line(c, ""), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->reason, "password contains NUL, CR or LF");
	assert_int_equal(line(c, "b LOGIN bob {3}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(imap_cmd_literal(c, "a\0b", 3), IMAP_CMD_NEED_LINE);
	expect_reject(c, line(c, ""), IMAP_REPLY_BAD, "b");
	assert_int_equal(line(c, "c LOGIN {3}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(lit(c, "b\tb"), IMAP_CMD_NEED_LINE);
	expect_reject(c, line(c, " pw"), IMAP_REPLY_BAD, "c");
	assert_string_equal(c->reason, "user name contains control characters");
	free(c);
}

static void
test_nul_bytes_in_command_lines_are_bad(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, imap_cmd_line(c, "a NO\0OP", 7), IMAP_REPLY_BAD, "a");
	expect_reject(c, imap_cmd_line(c, "a LOGIN bob \"p\0w\"", 17), IMAP_REPLY_BAD, "a");
	expect_reject(c, imap_cmd_line(c, "a LOGIN b\0b pw", 14), IMAP_REPLY_BAD, "a");
	expect_reject(c, imap_cmd_line(c, "\0 NOOP", 6), IMAP_REPLY_BAD, "*");
	free(c);
}

static void
test_trailing_characters_after_login_are_bad(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN {3}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(lit(c, "bob"), IMAP_CMD_NEED_LINE);
	expect_reject(c, line(c, " pw extra"), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->reason, "unexpected characters after the command");
	free(c);
}

static void
test_authenticate_plain_with_initial_response(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ="), IMAP_CMD_DONE);
	assert_int_equal(c->name, IMAP_AUTHENTICATE);
	assert_string_equal(c->creds.user, "bob");
	assert_string_equal(c->creds.pass, "secret");
	assert_int_equal(line(c, "b authenticate plain Ym9iAGJvYgBzZWNyZXQ="), IMAP_CMD_DONE);
	assert_string_equal(c->creds.authzid, "bob");
	free(c);
}

static void
test_authenticate_plain_without_initial_response_asks_for_it(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a AUTHENTICATE PLAIN"), IMAP_CMD_NEED_RESPONSE);
	assert_int_equal(line(c, "AGJvYgBzZWNyZXQ="), IMAP_CMD_DONE);
	assert_string_equal(c->tag, "a");
	assert_string_equal(c->creds.user, "bob");
	free(c);
}

static void
test_authenticate_empty_initial_response_fails_as_a_plain_message(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a AUTHENTICATE PLAIN ="), IMAP_REPLY_NO, "a");
	assert_string_equal(c->resp_code, "AUTHENTICATIONFAILED");
	expect_reject(c, line(c, "b AUTHENTICATE PLAIN "), IMAP_REPLY_BAD, "b");
	free(c);
}

static void
test_authenticate_cancelled_with_star_is_bad(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a AUTHENTICATE PLAIN"), IMAP_CMD_NEED_RESPONSE);
	expect_reject(c, line(c, "*"), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->reason, "authentication cancelled");
	assert_int_equal(c->creds.user_len, 0);
	assert_int_equal(line(c, "b NOOP"), IMAP_CMD_DONE);
	free(c);
}

static void
test_authenticate_bad_base64_is_bad_and_wrong_authzid_is_no(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a AUTHENTICATE PLAIN AGJvYgBzZWNyZXQ"), IMAP_REPLY_BAD, "a");
	assert_int_equal(line(c, "b AUTHENTICATE PLAIN"), IMAP_CMD_NEED_RESPONSE);
	expect_reject(c, line(c, "AGJvYgBz ZWNyZXQ="), IMAP_REPLY_BAD, "b");
	expect_reject(c, line(c, "c AUTHENTICATE PLAIN YWxpY2UAYm9iAHNlY3JldA=="), IMAP_REPLY_NO,
	              "c");
	assert_string_equal(c->resp_code, "AUTHORIZATIONFAILED");
	assert_int_equal(c->creds.pass_len, 0);
	free(c);
}

static void
test_authenticate_other_mechanisms_are_no(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a AUTHENTICATE CRAM-MD5"), IMAP_REPLY_NO, "a");
	assert_string_equal(c->reason, "unsupported authentication mechanism");
	expect_reject(c, line(c, "a AUTHENTICATE PLAINX AGJv"), IMAP_REPLY_NO, "a");
	expect_reject(c, line(c, "a AUTHENTICATE"), IMAP_REPLY_BAD, "a");
	free(c);
}

static void
test_id_nil_and_empty_list(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a ID NIL"), IMAP_CMD_DONE);
	assert_int_equal(c->name, IMAP_ID);
	assert_int_equal(c->id_nil, 1);
	assert_int_equal(c->id_npairs, 0);
	assert_int_equal(line(c, "b id nil"), IMAP_CMD_DONE);
	assert_int_equal(line(c, "c ID ()"), IMAP_CMD_DONE);
	assert_int_equal(c->id_nil, 0);
	assert_int_equal(c->id_npairs, 0);
	expect_reject(c, line(c, "d ID"), IMAP_REPLY_BAD, "d");
	expect_reject(c, line(c, "d ID NILS"), IMAP_REPLY_BAD, "d");
	expect_reject(c, line(c, "d ID NIL x"), IMAP_REPLY_BAD, "d");
	free(c);
}

static void
test_id_pairs_are_returned_with_nil_values_and_literals(void **state)
{
	struct imap_cmd *c = new_cmd(0);
	size_t len;

	assert_int_equal(line(c, "a ID (\"name\" \"Thunderbird\" \"version\" NIL \"os\" {5}"),
	                 IMAP_CMD_NEED_LITERAL);
	assert_int_equal(lit(c, "Linux"), IMAP_CMD_NEED_LINE);
	assert_int_equal(line(c, ")"), IMAP_CMD_DONE);
	assert_int_equal(c->id_npairs, 3);
	assert_string_equal(c->id[0].field, "name");
	assert_string_equal(imap_cmd_id_value(c, 0, &len), "Thunderbird");
	assert_int_equal(len, 11);
	assert_string_equal(c->id[1].field, "version");
	assert_null(imap_cmd_id_value(c, 1, NULL));
	assert_string_equal(imap_cmd_id_value(c, 2, NULL), "Linux");
	assert_null(imap_cmd_id_value(c, 3, NULL));
	free(c);
}

static void
test_id_malformed_lists_are_bad(void **state)
{
	static const char *bad[] = {
	    "a ID (\"name\")",     "a ID (\"name\" \"x\"", "a ID (name \"x\")",
	    "a ID (NIL \"x\")",    "a ID (\"n\" \"x\"  )", "a ID (\"n\" \"x\")x",
	    "a ID (\"n\"  \"x\")", "a ID ( \"n\" \"x\")",  "a ID (\"n\" \"x\" \"m\")",
	};
	struct imap_cmd *c = new_cmd(0);
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_reject(c, line(c, bad[i]), IMAP_REPLY_BAD, "a");
	free(c);
}

static void
test_id_with_more_than_thirty_pairs_is_bad(void **state)
{
	char buf[1024];
	size_t n;
	unsigned i;
	struct imap_cmd *c = new_cmd(0);

	n = (size_t)snprintf(buf, sizeof(buf), "a ID (");
	for (i = 0; i < IMAP_ID_PAIRS_MAX; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"f%u\" \"v\"", i ? " " : "", i);
	assert_true(n + 12 < sizeof(buf));
	memcpy(buf + n, ")", 2);
	assert_int_equal(line(c, buf), IMAP_CMD_DONE);
	assert_int_equal(c->id_npairs, IMAP_ID_PAIRS_MAX);
	memcpy(buf + n, " \"x\" \"y\")", 10);
	expect_reject(c, line(c, buf), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->reason, "more than 30 ID pairs (RFC 2971 3.3)");
	free(c);
}

static void
test_id_cr_in_a_value_is_refused(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a ID (\"name\" \"x\ry\")"), IMAP_REPLY_BAD, "a");
	assert_string_equal(c->reason, "ID string contains NUL, CR or LF");
	assert_int_equal(line(c, "b ID (\"name\" {3}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(lit(c, "a\nb"), IMAP_CMD_NEED_LINE);
	expect_reject(c, line(c, ")"), IMAP_REPLY_BAD, "b");
	free(c);
}

static void
test_id_field_and_value_bounds(void **state)
{
	char buf[1200];
	struct imap_cmd *c = new_cmd(0);

	expect_reject(c, line(c, "a ID (\"0123456789012345678901234567890\" NIL)"), IMAP_REPLY_BAD,
	              "a");
	assert_int_equal(line(c, "a ID (\"012345678901234567890123456789\" NIL)"), IMAP_CMD_DONE);
	assert_int_equal(c->id[0].field_len, IMAP_ID_FIELD_MAX);
	memcpy(buf, "a ID (\"n\" \"", 11);
	memset(buf + 11, 'v', IMAP_ID_VALUE_MAX + 1);
	memcpy(buf + 11 + IMAP_ID_VALUE_MAX + 1, "\")", 3);
	expect_reject(c, line(c, buf), IMAP_REPLY_BAD, "a");
	memcpy(buf + 11 + IMAP_ID_VALUE_MAX, "\")", 3);
	assert_int_equal(line(c, buf), IMAP_CMD_DONE);
	assert_int_equal(c->id[0].value_len, IMAP_ID_VALUE_MAX);
	free(c);
}

static void
test_next_command_wipes_the_previous_credentials(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(line(c, "a LOGIN bob hunter2"), IMAP_CMD_DONE);
	assert_int_equal(line(c, "b NOOP"), IMAP_CMD_DONE);
	assert_int_equal(c->creds.pass_len, 0);
	assert_null(memmem(c->creds.pass, sizeof(c->creds.pass), "hunter2", 7));
	assert_int_equal(line(c, "c LOGIN bob hunter2"), IMAP_CMD_DONE);
	imap_cmd_reset(c);
	assert_null(memmem(c, sizeof(*c), "hunter2", 7));
	assert_string_equal(c->tag, "*");
	free(c);
}

static void
test_reasons_never_carry_the_password(void **state)
{
	static const char *lines[] = {
	    "a LOGIN bob \"hunter2", "a LOGIN bob \"hunter2\\x\"",      "a LOGIN bob hunter2 x",
	    "a LOGIN bob hunter2{",  "a AUTHENTICATE PLAIN aHVudGVyMg", "a LOGIN bob (hunter2)",
	};
	struct imap_cmd *c = new_cmd(0);
	size_t i;

	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		assert_int_equal(line(c, lines[i]), IMAP_CMD_REJECT);
		assert_null(strstr(c->reason, "hunter2"));
	}
	free(c);
}

static void
test_api_misuse_is_refused_and_closes(void **state)
{
	struct imap_cmd *c = new_cmd(0);

	assert_int_equal(lit(c, "x"), IMAP_CMD_REJECT);
	assert_int_equal(c->close, 1);
	assert_int_equal(line(c, "a LOGIN {3}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(line(c, "bob"), IMAP_CMD_REJECT);
	assert_int_equal(c->close, 1);
	assert_int_equal(line(c, "a LOGIN {3}"), IMAP_CMD_NEED_LITERAL);
	assert_int_equal(lit(c, "bobby"), IMAP_CMD_REJECT);
	assert_int_equal(c->close, 1);
	free(c);
}

static void
test_too_many_literals_in_one_command_close_the_connection(void **state)
{
	struct imap_cmd *c = new_cmd(0);
	unsigned i;
	enum imap_cmd_status st;

	assert_int_equal(line(c, "a FOO {0+}"), IMAP_CMD_NEED_LINE);
	for (i = 1; i < IMAP_CMD_LITERALS_MAX; i++)
		assert_int_equal(line(c, " {0+}"), IMAP_CMD_NEED_LINE);
	st = line(c, " {0+}");
	expect_reject(c, st, IMAP_REPLY_BAD, "a");
	assert_int_equal(c->close, 1);
	free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_simple_commands_are_recognised_without_regard_to_case),
	    cmocka_unit_test(test_arguments_after_a_simple_command_are_bad),
	    cmocka_unit_test(test_unknown_command_before_login_is_bad_with_its_tag),
	    cmocka_unit_test(test_tags_with_odd_but_legal_characters_are_kept),
	    cmocka_unit_test(test_invalid_tags_get_an_untagged_bad),
	    cmocka_unit_test(test_tag_without_command_is_a_tagged_bad),
	    cmocka_unit_test(test_login_with_atoms),
	    cmocka_unit_test(test_login_with_quoted_strings_and_escapes),
	    cmocka_unit_test(test_login_with_empty_password_is_well_formed),
	    cmocka_unit_test(test_login_with_two_synchronising_literals),
	    cmocka_unit_test(test_login_with_non_synchronising_literals_and_mixed_forms),
	    cmocka_unit_test(test_zero_length_literals),
	    cmocka_unit_test(test_synchronising_literal_too_big_is_refused_before_the_continuation),
	    cmocka_unit_test(test_non_synchronising_literal_too_big_is_skipped_then_refused),
	    cmocka_unit_test(test_literal_over_a_field_bound_is_refused),
	    cmocka_unit_test(test_literal_announced_by_an_unknown_command_is_not_read_as_commands),
	    cmocka_unit_test(test_literal_not_ending_the_line_or_unparseable_is_bad),
	    cmocka_unit_test(test_cr_lf_or_nul_in_a_password_literal_is_refused_after_skipping_it),
	    cmocka_unit_test(test_nul_bytes_in_command_lines_are_bad),
	    cmocka_unit_test(test_trailing_characters_after_login_are_bad),
	    cmocka_unit_test(test_authenticate_plain_with_initial_response),
	    cmocka_unit_test(test_authenticate_plain_without_initial_response_asks_for_it),
	    cmocka_unit_test(test_authenticate_empty_initial_response_fails_as_a_plain_message),
	    cmocka_unit_test(test_authenticate_cancelled_with_star_is_bad),
	    cmocka_unit_test(test_authenticate_bad_base64_is_bad_and_wrong_authzid_is_no),
	    cmocka_unit_test(test_authenticate_other_mechanisms_are_no),
	    cmocka_unit_test(test_id_nil_and_empty_list),
	    cmocka_unit_test(test_id_pairs_are_returned_with_nil_values_and_literals),
	    cmocka_unit_test(test_id_malformed_lists_are_bad),
	    cmocka_unit_test(test_id_with_more_than_thirty_pairs_is_bad),
	    cmocka_unit_test(test_id_cr_in_a_value_is_refused),
	    cmocka_unit_test(test_id_field_and_value_bounds),
	    cmocka_unit_test(test_next_command_wipes_the_previous_credentials),
	    cmocka_unit_test(test_reasons_never_carry_the_password),
	    cmocka_unit_test(test_api_misuse_is_refused_and_closes),
	    cmocka_unit_test(test_too_many_literals_in_one_command_close_the_connection),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
