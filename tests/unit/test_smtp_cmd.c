/*
 * Unit tests for relay/smtp_cmd: verbs and their arguments, RFC 5321 path syntax and
 * limits, relay tricks flagged (source routes, '%', '!', quoted local parts, address
 * literals), MAIL parameters, BDAT, and the DATA/BDAT byte machine: dot-unstuffing, end
 * of data, and every bare CR or LF refused, split at any byte boundary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "../../relay/smtp_cmd.h"

static enum smtp_cmd_status
parse(struct smtp_cmd *c, const char *s)
{
	return smtp_cmd_parse(s, strlen(s), c);
}

static void
expect_reply(const char *line, const char *prefix)
{
	struct smtp_cmd c;

	if (parse(&c, line) != SMTP_CMD_ERR)
		fail_msg("accepted: %s", line);
	if (strncmp(c.reply, prefix, strlen(prefix)) != 0)
		fail_msg("%s: reply '%s', want '%s'", line, c.reply, prefix);
}

static void
test_verbs_are_case_insensitive_and_checked_for_arguments(void **state)
{
	struct smtp_cmd c;

	assert_int_equal(parse(&c, "ehlo client.example"), SMTP_CMD_OK);
	assert_int_equal(c.verb, SMTP_EHLO);
	assert_string_equal(c.arg, "client.example");
	assert_int_equal(parse(&c, "HELO [192.0.2.1]"), SMTP_CMD_OK);
	assert_int_equal(parse(&c, "QUIT"), SMTP_CMD_OK);
	assert_int_equal(parse(&c, "StartTLS"), SMTP_CMD_OK);
	assert_int_equal(c.verb, SMTP_STARTTLS);
	assert_int_equal(parse(&c, "NOOP anything"), SMTP_CMD_OK);
	assert_int_equal(parse(&c, "VRFY alice"), SMTP_CMD_OK);
	expect_reply("EHLO", "501 5.5.4");
	expect_reply("EHLO two words", "501 5.5.4");
	expect_reply("DATA now", "501 5.5.4");
	expect_reply("RSET x", "501 5.5.4");
	expect_reply("XYZZY", "500 5.5.2");
	expect_reply("", "500 5.5.2");
	expect_reply("NOOP \x01", "500 5.5.2");
}

static void
test_mail_from_path_and_parameters(void **state)
{
	struct smtp_cmd c;

	assert_int_equal(parse(&c, "MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8"),
	                 SMTP_CMD_OK);
	assert_string_equal(c.addr, "a@b.example");
	assert_true(c.has_size);
	assert_int_equal(c.size, 1000);
	assert_int_equal(c.body, SMTP_BODY_8BITMIME);
	assert_true(c.smtputf8);
	assert_int_equal(parse(&c, "MAIL FROM:<>"), SMTP_CMD_OK);
	assert_string_equal(c.addr, "");
	assert_int_equal(parse(&c, "mail from: <a@b.example>"), SMTP_CMD_OK);
	/* a source route in MAIL is stripped (RFC 5321 C: must accept, may ignore) */
	assert_int_equal(parse(&c, "MAIL FROM:<@x.example,@y.example:a@b.example>"), SMTP_CMD_OK);
	assert_string_equal(c.addr, "a@b.example");
	assert_int_equal(parse(&c, "MAIL FROM:<jörg@example.org> SMTPUTF8"), SMTP_CMD_OK);
	assert_true(c.utf8);
	expect_reply("MAIL FROM:a@b.example", "501 5.5.4");
	expect_reply("MAIL TO:<a@b.example>", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.example> SIZE=x", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.example> SIZE=1 SIZE=2", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.example> RET=FULL", "555 5.5.4");
	expect_reply("MAIL FROM:<a@b.example", "553 5.1.3");
	expect_reply("MAIL FROM:<a..b@c.example>", "553 5.1.3");
	expect_reply("MAIL FROM:<a@b..example>", "553 5.1.3");
	expect_reply("MAIL FROM:<a@>", "553 5.1.3");
	expect_reply("MAIL FROM:<a b@c.example>", "553 5.1.3");
}

static void
test_rcpt_relay_tricks_are_flagged_or_refused(void **state)
{
	struct smtp_cmd c;

	assert_int_equal(parse(&c, "RCPT TO:<alice@mail.test>"), SMTP_CMD_OK);
	assert_false(c.relay_trick);
	assert_int_equal(parse(&c, "RCPT TO:<Postmaster>"), SMTP_CMD_OK);
	assert_string_equal(c.addr, "Postmaster");
	assert_int_equal(parse(&c, "RCPT TO:<u%other.example@mail.test>"), SMTP_CMD_OK);
	assert_true(c.relay_trick);
	assert_int_equal(parse(&c, "RCPT TO:<other!u@mail.test>"), SMTP_CMD_OK);
	assert_true(c.relay_trick);
	assert_int_equal(parse(&c, "RCPT TO:<\"u@other.example\"@mail.test>"), SMTP_CMD_OK);
	assert_true(c.relay_trick);
	assert_int_equal(parse(&c, "RCPT TO:<u@[192.0.2.1]>"), SMTP_CMD_OK);
	assert_true(c.relay_trick);
	expect_reply("RCPT TO:<@a.example,@b.example:u@mail.test>", "550 5.7.1");
	expect_reply("RCPT TO:<>", "553 5.1.3");
	expect_reply("RCPT TO:<alice>", "553 5.1.3");
	expect_reply("RCPT TO:<alice@mail.test> NOTIFY=NEVER", "555 5.5.4");
}

static void
test_path_limits_follow_rfc5321(void **state)
{
	char line[1200], local[80];
	struct smtp_cmd c;

	memset(local, 'a', 64);
	local[64] = '\0';
	snprintf(line, sizeof(line), "RCPT TO:<%s@mail.test>", local);
	assert_int_equal(parse(&c, line), SMTP_CMD_OK);
	local[64] = 'a';
	local[65] = '\0';
	snprintf(line, sizeof(line), "RCPT TO:<%s@mail.test>", local);
	expect_reply(line, "553 5.1.3");
	memset(line, 'x', sizeof(line));
	memcpy(line, "NOOP ", 5);
	line[sizeof(line) - 1] = '\0';
	expect_reply(line, "500 5.5.2 Line too long");
}

static void
test_bdat_size_and_last(void **state)
{
	struct smtp_cmd c;

	assert_int_equal(parse(&c, "BDAT 1000"), SMTP_CMD_OK);
	assert_int_equal(c.chunk, 1000);
	assert_false(c.last);
	assert_int_equal(parse(&c, "bdat 0 last"), SMTP_CMD_OK);
	assert_true(c.last);
	expect_reply("BDAT", "501 5.5.4");
	expect_reply("BDAT -1", "501 5.5.4");
	expect_reply("BDAT 10 FIRST", "501 5.5.4");
}

/* Feeds s split into pieces of step bytes; returns the final state, out the body. */
static enum smtp_data_state
feed(enum smtp_data_mode mode, const char *s, size_t step, char *out, size_t *outlen,
     size_t *consumed)
{
	struct smtp_data d;
	uint8_t buf[512];
	size_t len = strlen(s), off = 0, n, used, produced;

	smtp_data_init(&d, mode);
	*outlen = 0;
	while (off < len) {
		n = len - off < step ? len - off : step;
		used = smtp_data_feed(&d, (const uint8_t *)s + off, n, buf, &produced);
		memcpy(out + *outlen, buf, produced);
		*outlen += produced;
		off += used;
		if (d.state == SMTP_DS_END || d.state == SMTP_DS_BARE)
			break;
	}
	out[*outlen] = '\0';
	*consumed = off;
	return d.state;
}

static void
test_data_unstuffs_and_ends_at_crlf_dot_crlf_however_split(void **state)
{
	const char *in = "a\r\n..b\r\n.c\r\n\r\n.\r\nNOOP\r\n";
	char out[512];
	size_t outlen, used, step;

	for (step = 1; step <= strlen(in); step++) {
		assert_int_equal(feed(SMTP_DATA_DOT, in, step, out, &outlen, &used), SMTP_DS_END);
		assert_string_equal(out, "a\r\n.b\r\nc\r\n\r\n");
		assert_int_equal(used, strlen(in) - strlen("NOOP\r\n"));
	}
	assert_int_equal(feed(SMTP_DATA_DOT, ".\r\n", 1, out, &outlen, &used), SMTP_DS_END);
	assert_int_equal(outlen, 0);
}

static void
test_every_bare_cr_or_lf_is_refused(void **state)
{
	static const char *const smuggle[] = {
	    "a\n.\r\nMAIL FROM:<x@y>\r\n",
	    "a\r\n.\nMAIL FROM:<x@y>\r\n",
	    "a\r.\r\n",
	    "a\rb\r\n.\r\n",
	    "a\n",
	    "\n.\n",
	    "a\r\n.\rX\r\n.\r\n",
	};
	char out[512];
	size_t i, outlen, used, step;

	for (i = 0; i < sizeof(smuggle) / sizeof(smuggle[0]); i++)
		for (step = 1; step <= strlen(smuggle[i]); step++)
			if (feed(SMTP_DATA_DOT, smuggle[i], step, out, &outlen, &used) !=
			    SMTP_DS_BARE)
				fail_msg("not refused: case %zu split %zu", i, step);
}

static void
test_bdat_mode_keeps_dots_and_refuses_bare_line_ends(void **state)
{
	struct smtp_data d;
	char out[512];
	size_t outlen, used;

	assert_int_equal(feed(SMTP_DATA_BDAT, "a\r\n.\r\n..b\r\n", 3, out, &outlen, &used),
	                 SMTP_DS_BOL);
	assert_string_equal(out, "a\r\n.\r\n..b\r\n");
	assert_int_equal(feed(SMTP_DATA_BDAT, "a\nb", 3, out, &outlen, &used), SMTP_DS_BARE);
	smtp_data_init(&d, SMTP_DATA_BDAT);
	assert_int_equal(smtp_data_feed(&d, (const uint8_t *)"x\r", 2, (uint8_t *)out, &outlen), 2);
	assert_int_equal(smtp_data_finish(&d), -1); /* LAST may not end inside CR LF */
}

/* RFC 5321 4.5.3.1.6 is a limit for senders; the reader passes a longer line unchanged and
 * leaves it to the size limit (max_message_size) to bound the message. */
static void
test_data_passes_a_line_longer_than_1000_octets_unchanged(void **state)
{
	static char in[5200], out[5200];
	size_t outlen, used;

	memset(in, 'L', 5000);
	memcpy(in + 5000, "\r\n.\r\n", 6);
	in[5006] = '\0';
	assert_int_equal(feed(SMTP_DATA_DOT, in, 97, out, &outlen, &used), SMTP_DS_END);
	assert_int_equal(outlen, 5002);
	assert_memory_equal(out, in, 5002);
	assert_int_equal(used, 5005);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_verbs_are_case_insensitive_and_checked_for_arguments),
	    cmocka_unit_test(test_mail_from_path_and_parameters),
	    cmocka_unit_test(test_rcpt_relay_tricks_are_flagged_or_refused),
	    cmocka_unit_test(test_path_limits_follow_rfc5321),
	    cmocka_unit_test(test_bdat_size_and_last),
	    cmocka_unit_test(test_data_unstuffs_and_ends_at_crlf_dot_crlf_however_split),
	    cmocka_unit_test(test_every_bare_cr_or_lf_is_refused),
	    cmocka_unit_test(test_bdat_mode_keeps_dots_and_refuses_bare_line_ends),
	    cmocka_unit_test(test_data_passes_a_line_longer_than_1000_octets_unchanged),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
