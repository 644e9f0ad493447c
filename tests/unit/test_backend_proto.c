/*
 * Unit tests for relay/backend_proto: IMAP greeting/untagged/continuation/tagged reply
 * classes, LITERAL+ only from capability lists, RFC 5530 and RFC 2449 codes deciding
 * "wrong password" versus "server trouble", POP3 CAPA lines, and the client-address
 * encoders (PROXY v2 bytes, IMAP ID, XCLIENT) for IPv4, IPv6 and v4-mapped addresses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "../../relay/backend_proto.h"

static struct be_imap_reply
imap(const char *line, const char *tag)
{
	struct be_imap_reply r;

	be_imap_reply_parse(line, strlen(line), tag, &r);
	return r;
}

static struct be_pop3_reply
pop3(const char *line)
{
	struct be_pop3_reply r;

	be_pop3_reply_parse(line, strlen(line), &r);
	return r;
}

static struct sockaddr_storage
v4(const char *ip, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage
v6(const char *ip, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons((uint16_t)port);
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return ss;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void
test_imap_greeting_and_literal_plus_come_from_the_capability_code(void **state)
{
	struct be_imap_reply r;

	r = imap("* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ ID] Dovecot ready.", "a1");
	assert_int_equal(r.kind, BE_IMAP_OK);
	assert_int_equal(r.literal_plus, 1);
	/* In the text, not the capability list: does not count. */
	r = imap("* OK LITERAL+ is what we say but not what we do", "a1");
	assert_int_equal(r.kind, BE_IMAP_OK);
	assert_int_equal(r.literal_plus, 0);
	r = imap("* OK [CAPABILITY IMAP4rev1 LITERAL+X] x", "a1");
	assert_int_equal(r.literal_plus, 0);
	r = imap("* ok [capability imap4rev1 literal+]", NULL);
	assert_int_equal(r.kind, BE_IMAP_OK);
	assert_int_equal(r.literal_plus, 1);
	r = imap("* CAPABILITY IMAP4rev1 LITERAL+", "a1");
	assert_int_equal(r.kind, BE_IMAP_UNTAGGED);
	assert_int_equal(r.literal_plus, 1);
	assert_int_equal(imap("* PREAUTH welcome", "a1").kind, BE_IMAP_PREAUTH);
	assert_int_equal(imap("* BYE go away", "a1").kind, BE_IMAP_BYE);
	assert_int_equal(imap("* OKAY", "a1").kind, BE_IMAP_UNTAGGED);
	assert_int_equal(imap("* ID (\"name\" \"Dovecot\")", "a1").kind, BE_IMAP_UNTAGGED);
}

static void
test_imap_tagged_replies_match_only_our_tag(void **state)
{
	assert_int_equal(imap("a1 OK Logged in", "a1").kind, BE_IMAP_TAGGED_OK);
	assert_int_equal(imap("a1 OK", "a1").kind, BE_IMAP_TAGGED_OK);
	assert_int_equal(imap("a1 no [UNAVAILABLE] later", "a1").kind, BE_IMAP_TAGGED_NO);
	assert_int_equal(imap("a1 BAD syntax", "a1").kind, BE_IMAP_TAGGED_BAD);
	assert_int_equal(imap("a10 OK Logged in", "a1").kind, BE_IMAP_OTHER_TAG);
	assert_int_equal(imap("a OK Logged in", "a1").kind, BE_IMAP_OTHER_TAG);
	assert_int_equal(imap("a1 OK", NULL).kind, BE_IMAP_OTHER_TAG);
	assert_int_equal(imap("a1 OKAY", "a1").kind, BE_IMAP_GARBAGE);
	assert_int_equal(imap("a1", "a1").kind, BE_IMAP_GARBAGE);
	assert_int_equal(imap("", "a1").kind, BE_IMAP_GARBAGE);
	assert_int_equal(imap(" OK", "a1").kind, BE_IMAP_GARBAGE);
	assert_int_equal(imap("+ ", "a1").kind, BE_IMAP_CONTINUE);
	assert_int_equal(imap("+", "a1").kind, BE_IMAP_CONTINUE);
	assert_int_equal(imap("a1 OK [CAPABILITY IMAP4rev1 LITERAL+] in", "a1").literal_plus, 1);
}

static void
test_imap_no_codes_tell_a_wrong_password_from_server_trouble(void **state)
{
	assert_int_equal(imap("a NO Login failed", "a").auth_failure, 1);
	assert_int_equal(imap("a NO", "a").auth_failure, 1);
	assert_int_equal(
	    imap("a NO [AUTHENTICATIONFAILED] Authentication failed.", "a").auth_failure, 1);
	assert_int_equal(imap("a NO [AUTHORIZATIONFAILED] no", "a").auth_failure, 1);
	assert_int_equal(imap("a NO [EXPIRED] change it", "a").auth_failure, 1);
	assert_int_equal(imap("a NO [UNAVAILABLE] try later", "a").auth_failure, 0);
	assert_int_equal(imap("a NO [INUSE] busy", "a").auth_failure, 0);
	assert_int_equal(imap("a NO [AUTHENTICATIONFAILEDX] x", "a").auth_failure, 0);
	assert_int_equal(imap("a BAD [AUTHENTICATIONFAILED] x", "a").auth_failure, 0);
}

static void
test_pop3_replies_and_codes(void **state)
{
	struct be_pop3_reply r;

	assert_int_equal(pop3("+OK Dovecot ready.").kind, BE_POP3_OK);
	assert_int_equal(pop3("+OK Dovecot ready.").xclient, 0);
	/* Dovecot names XCLIENT in its greeting, not in CAPA, for a trusted peer. */
	r = pop3("+OK [XCLIENT] Dovecot (Debian) ready.");
	assert_int_equal(r.kind, BE_POP3_OK);
	assert_int_equal(r.xclient, 1);
	assert_int_equal(pop3("-ERR [XCLIENT] x").xclient, 0);
	assert_int_equal(pop3("+OK XCLIENT").xclient, 0);
	assert_int_equal(pop3("+OK").kind, BE_POP3_OK);
	assert_int_equal(pop3("+ok").kind, BE_POP3_OK);
	assert_int_equal(pop3("+OKAY").kind, BE_POP3_GARBAGE);
	assert_int_equal(pop3("").kind, BE_POP3_GARBAGE);
	assert_int_equal(pop3("+ ").kind, BE_POP3_GARBAGE);
	r = pop3("-ERR [AUTH] Authentication failed.");
	assert_int_equal(r.kind, BE_POP3_ERR);
	assert_int_equal(r.auth_failure, 1);
	assert_int_equal(pop3("-ERR Authentication failed.").auth_failure, 1);
	assert_int_equal(pop3("-ERR").auth_failure, 1);
	assert_int_equal(pop3("-ERR [IN-USE] locked").auth_failure, 0);
	assert_int_equal(pop3("-ERR [SYS/TEMP] later").auth_failure, 0);
	assert_int_equal(pop3("-ERR [AUTHX] x").auth_failure, 0);
}

static void
test_pop3_capa_lines(void **state)
{
	assert_int_equal(be_pop3_capa_line(".", 1), BE_CAPA_END);
	assert_int_equal(be_pop3_capa_line("XCLIENT", 7), BE_CAPA_XCLIENT);
	assert_int_equal(be_pop3_capa_line("xclient ADDR PORT", 17), BE_CAPA_XCLIENT);
	assert_int_equal(be_pop3_capa_line("XCLIENTS", 8), BE_CAPA_OTHER);
	assert_int_equal(be_pop3_capa_line("..", 2), BE_CAPA_OTHER);
	assert_int_equal(be_pop3_capa_line("", 0), BE_CAPA_OTHER);
}

static void
test_proxy_v2_header_for_ipv4(void **state)
{
	static const unsigned char want[] = {
	    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, /* signature */
	    0x21, 0x11, 0x00, 0x0c,                                                 /* v2 TCP4 12 */
	    192,  0,    2,    1,    127,  0,    0,    70,                           /* src dst */
	    0xc3, 0x50, 0x00, 0x8f,                                                 /* 50000 143 */
	};
	struct sockaddr_storage src = v4("192.0.2.1", 50000), dst = v4("127.0.0.70", 143);
	unsigned char buf[BE_PROXY_V2_MAX];

	assert_int_equal(be_proxy_v2_header(SA(src), SA(dst), buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	assert_int_equal(be_proxy_v2_header(SA(src), SA(dst), buf, sizeof(want) - 1), -1);
}

static void
test_proxy_v2_header_for_ipv6_and_v4_mapped(void **state)
{
	struct sockaddr_storage src = v6("2001:db8::1", 1), dst = v6("2001:db8::2", 993);
	struct sockaddr_storage m = v6("::ffff:192.0.2.9", 7), d4 = v6("::ffff:127.0.0.1", 110);
	struct sockaddr_storage unix_ss;
	unsigned char buf[BE_PROXY_V2_MAX];

	assert_int_equal(be_proxy_v2_header(SA(src), SA(dst), buf, sizeof(buf)), 52);
	assert_int_equal(buf[13], 0x21);
	assert_int_equal(buf[15], 36);
	assert_int_equal(buf[16], 0x20);
	assert_int_equal(buf[47], 0x02);
	assert_int_equal(buf[51], 993 & 0xff);
	/* A dual-stack listener's IPv4 client goes out as TCP over IPv4. */
	assert_int_equal(be_proxy_v2_header(SA(m), SA(d4), buf, sizeof(buf)), 28);
	assert_int_equal(buf[13], 0x11);
	assert_int_equal(buf[16], 192);
	assert_int_equal(buf[19], 9);
	/* Mixed families: the IPv4 one is widened to v4-mapped. */
	assert_int_equal(be_proxy_v2_header(SA(src), SA(d4), buf, sizeof(buf)), 52);
	assert_int_equal(buf[13], 0x21);
	assert_int_equal(buf[32 + 10], 0xff);
	assert_int_equal(buf[32 + 15], 1);
	memset(&unix_ss, 0, sizeof(unix_ss));
	unix_ss.ss_family = AF_UNIX;
	assert_int_equal(be_proxy_v2_header(SA(unix_ss), SA(dst), buf, sizeof(buf)), -1);
}

static void
test_imap_id_command_carries_addresses_and_ports(void **state)
{
	struct sockaddr_storage src = v4("127.0.0.77", 40001), dst = v4("127.0.0.70", 143);
	struct sockaddr_storage s6 = v6("2001:db8::77", 5), m = v6("::ffff:10.1.2.3", 9);
	char buf[BE_ADDR_CMD_MAX];
	int n;

	n = be_imap_id_command("mpx1", SA(src), SA(dst), buf, sizeof(buf));
	assert_string_equal(buf, "mpx1 ID (\"x-originating-ip\" \"127.0.0.77\" "
	                         "\"x-originating-port\" \"40001\" \"x-connected-ip\" "
	                         "\"127.0.0.70\" \"x-connected-port\" \"143\")\r\n");
	assert_int_equal(n, (int)strlen(buf));
	/* CR and LF only at the very end; no quote inside a value. */
	assert_ptr_equal(strchr(buf, '\r'), buf + n - 2);
	assert_int_equal(be_imap_id_command("mpx1", SA(s6), SA(m), buf, sizeof(buf)) > 0, 1);
	assert_non_null(strstr(buf, "\"x-originating-ip\" \"2001:db8::77\""));
	assert_non_null(strstr(buf, "\"x-connected-ip\" \"10.1.2.3\""));
	assert_int_equal(be_imap_id_command("mpx1", SA(src), SA(dst), buf, 20), -1);
	/* A tag that could break out of the command is refused, not sent. */
	assert_int_equal(be_imap_id_command("a\r\nb", SA(src), SA(dst), buf, sizeof(buf)), -1);
	assert_int_equal(be_imap_id_command("a\"", SA(src), SA(dst), buf, sizeof(buf)), -1);
	assert_int_equal(be_imap_id_command("", SA(src), SA(dst), buf, sizeof(buf)), -1);
}

static void
test_pop3_xclient_command(void **state)
{
	struct sockaddr_storage src = v4("127.0.0.77", 40001), s6 = v6("::1", 2);
	char buf[BE_ADDR_CMD_MAX];

	assert_int_equal(be_pop3_xclient_command(SA(src), buf, sizeof(buf)),
	                 (int)strlen("XCLIENT ADDR=127.0.0.77 PORT=40001\r\n"));
	assert_string_equal(buf, "XCLIENT ADDR=127.0.0.77 PORT=40001\r\n");
	assert_int_equal(be_pop3_xclient_command(SA(s6), buf, sizeof(buf)) > 0, 1);
	assert_string_equal(buf, "XCLIENT ADDR=::1 PORT=2\r\n");
	assert_int_equal(be_pop3_xclient_command(SA(src), buf, 10), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_imap_greeting_and_literal_plus_come_from_the_capability_code),
	    cmocka_unit_test(test_imap_tagged_replies_match_only_our_tag),
	    cmocka_unit_test(test_imap_no_codes_tell_a_wrong_password_from_server_trouble),
	    cmocka_unit_test(test_pop3_replies_and_codes),
	    cmocka_unit_test(test_pop3_capa_lines),
	    cmocka_unit_test(test_proxy_v2_header_for_ipv4),
	    cmocka_unit_test(test_proxy_v2_header_for_ipv6_and_v4_mapped),
	    cmocka_unit_test(test_imap_id_command_carries_addresses_and_ports),
	    cmocka_unit_test(test_pop3_xclient_command),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
