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

/* The byte-at-a-time reader smtp_data_feed replaced: the reference for the one below. */
static size_t
ref_feed(struct smtp_data *d, const uint8_t *in, size_t len, uint8_t *out, size_t *produced)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		uint8_t c = in[i];

		switch (d->state) {
		case SMTP_DS_BOL:
			if (c == '.' && d->mode == SMTP_DATA_DOT) {
				d->state = SMTP_DS_DOT;
				break;
			}
			/* fall through */
		case SMTP_DS_MID:
			if (c == '\r')
				d->state = SMTP_DS_CR;
			else if (c == '\n')
				d->state = SMTP_DS_BARE;
			else {
				out[o++] = c;
				d->state = SMTP_DS_MID;
			}
			break;
		case SMTP_DS_CR:
			if (c != '\n') {
				d->state = SMTP_DS_BARE;
				break;
			}
			out[o++] = '\r';
			out[o++] = '\n';
			d->state = SMTP_DS_BOL;
			break;
		case SMTP_DS_DOT:
			if (c == '\r')
				d->state = SMTP_DS_DOTCR;
			else if (c == '\n')
				d->state = SMTP_DS_BARE;
			else {
				out[o++] = c;
				d->state = SMTP_DS_MID;
			}
			break;
		case SMTP_DS_DOTCR:
			d->state = c == '\n' ? SMTP_DS_END : SMTP_DS_BARE;
			break;
		case SMTP_DS_END:
		case SMTP_DS_BARE:
			*produced = o;
			d->bytes += o;
			return i;
		}
		if (d->state == SMTP_DS_END || d->state == SMTP_DS_BARE) {
			i++;
			break;
		}
	}
	*produced = o;
	d->bytes += o;
	return i;
}

/*
 * The line-at-a-time copy reads exactly as the byte-wise machine: random bodies over the
 * bytes that matter (dot, CR, LF, others), random chunk sizes, both modes; same output,
 * same bytes consumed, same state after every chunk.
 */
static void
test_data_feed_reads_like_the_bytewise_machine(void **state)
{
	static const uint8_t alphabet[] = {'a', 'b', '.', '\r', '\n', 'a', 'a', 'a', 'a', 'a'};
	uint8_t in[600], out1[700], out2[700];
	struct smtp_data d1, d2;
	uint32_t x = 2463534242u; /* xorshift32: the same cases every run */
	size_t len, off, n, u1, u2, p1, p2, i;
	int round;

	for (round = 0; round < 20000; round++) {
		x ^= x << 13, x ^= x >> 17, x ^= x << 5;
		len = x % sizeof(in);
		for (i = 0; i < len; i++) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			/* mostly CRLF pairs, so that many cases get past the first line */
			in[i] = (x % 4 == 0 && i + 1 < len) ? '\r' : alphabet[x % sizeof(alphabet)];
			if (in[i] == '\r' && x % 8 != 1 && i + 1 < len)
				in[++i] = '\n';
		}
		smtp_data_init(&d1, round % 3 == 0 ? SMTP_DATA_BDAT : SMTP_DATA_DOT);
		smtp_data_init(&d2, d1.mode);
		for (off = 0; off < len;) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			n = 1 + x % 97;
			if (n > len - off)
				n = len - off;
			u1 = smtp_data_feed(&d1, in + off, n, out1, &p1);
			u2 = ref_feed(&d2, in + off, n, out2, &p2);
			assert_int_equal(u1, u2);
			assert_int_equal(p1, p2);
			assert_memory_equal(out1, out2, p1);
			assert_int_equal(d1.state, d2.state);
			if (d1.state == SMTP_DS_END || d1.state == SMTP_DS_BARE)
				break;
			off += u1;
		}
		assert_int_equal(d1.bytes, d2.bytes);
	}
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
	    cmocka_unit_test(test_data_feed_reads_like_the_bytewise_machine),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
