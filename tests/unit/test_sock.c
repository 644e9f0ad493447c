/*
 * Unit tests for lib/sock over 127.0.0.1 and ::1: address syntax, formatting, listen,
 * accept, non-blocking connect and its result, descriptor flags. IPv6 cases are skipped
 * only when the kernel has no ::1.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sock.h"

static int
have_ipv6_loopback(void)
{
	char line[256];
	FILE *f;
	int found = 0;

	if ((f = fopen("/proc/net/if_inet6", "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "00000000000000000000000000000001", 32) == 0)
			found = 1;
	fclose(f);
	return found;
}

static void
test_addr_split_accepts_the_three_forms(void **state)
{
	char host[SOCK_HOST_MAX], err[128];
	uint16_t port;

	assert_int_equal(
	    sock_addr_split("192.0.2.1:25", host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_string_equal(host, "192.0.2.1");
	assert_int_equal(port, 25);
	assert_int_equal(
	    sock_addr_split("[2001:db8::1]:993", host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_string_equal(host, "2001:db8::1");
	assert_int_equal(port, 993);
	assert_int_equal(sock_addr_split("*:110", host, sizeof(host), &port, err, sizeof(err)), 0);
	assert_string_equal(host, "*");
	assert_int_equal(
	    sock_addr_split("ingrid.bigisp.com:24", host, sizeof(host), &port, err, sizeof(err)),
	    0);
	assert_string_equal(host, "ingrid.bigisp.com");
}

static void
test_addr_split_rejects_bad_syntax_with_a_reason(void **state)
{
	static const char *bad[] = {
	    "192.0.2.1",   "192.0.2.1:", "192.0.2.1:65536", "192.0.2.1:x", ":25",
	    "::1:25",      "[::1:25",    "[::1]25",         "[zz::1]:25",  "300.1.1.1:25",
	    "-bad.com:25", "a..b:25",    "bad_name:25",     "[]:25",       "1.2.3.4:-1",
	};
	char host[SOCK_HOST_MAX], err[128];
	uint16_t port;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (sock_addr_split(bad[i], host, sizeof(host), &port, err, sizeof(err)) != -1)
			fail_msg("accepted '%s'", bad[i]);
		assert_non_null(strstr(err, bad[i]));
	}
}

static void
test_addr_parse_refuses_names_and_round_trips_format(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[128], out[SOCK_ADDR_STRLEN];

	assert_int_equal(sock_addr_parse("mx.example:25", &ss, &len, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "numeric"));
	assert_int_equal(sock_addr_parse("192.0.2.1:25", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(sock_addr_format((struct sockaddr *)&ss, out, sizeof(out)), 0);
	assert_string_equal(out, "192.0.2.1:25");
	assert_int_equal(sock_addr_parse("[::1]:25", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(sock_addr_format((struct sockaddr *)&ss, out, sizeof(out)), 0);
	assert_string_equal(out, "[::1]:25");
	assert_int_equal(sock_addr_parse("*:587", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(sock_addr_format((struct sockaddr *)&ss, out, sizeof(out)), 0);
	assert_string_equal(out, "0.0.0.0:587");
	assert_int_equal(sock_addr_format((struct sockaddr *)&ss, out, 5), -1);
}

static void
test_resolve_accepts_numeric_without_lookup(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[128], out[SOCK_ADDR_STRLEN];

	assert_int_equal(sock_resolve("127.0.0.1:143", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(sock_addr_format((struct sockaddr *)&ss, out, sizeof(out)), 0);
	assert_string_equal(out, "127.0.0.1:143");
	assert_int_equal(sock_resolve("localhost:143", &ss, &len, err, sizeof(err)), 0);
	assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

static void
assert_nonblock_cloexec(int fd)
{
	assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static void
wait_fd(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};

	assert_int_equal(poll(&p, 1, 5000), 1);
}

/* Listens on addr (port 0), connects to it, accepts; checks flags and names. */
static void
connect_accept_over(const char *addr)
{
	struct sockaddr_storage ss, peer;
	socklen_t len, plen;
	char err[128], out[SOCK_ADDR_STRLEN];
	int lfd, cfd, afd;

	assert_int_equal(sock_addr_parse(addr, &ss, &len, err, sizeof(err)), 0);
	lfd = sock_listen(&ss, len, 16, 0, err, sizeof(err));
	assert_true(lfd >= 0);
	assert_nonblock_cloexec(lfd);
	assert_int_equal(sock_accept(lfd, &peer, &plen, err, sizeof(err)), -1);
	assert_int_equal(errno, EAGAIN);
	assert_string_equal(err, "");
	len = sizeof(ss);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &len), 0);
	cfd = sock_connect_start(&ss, len, err, sizeof(err));
	assert_true(cfd >= 0);
	assert_nonblock_cloexec(cfd);
	wait_fd(cfd, POLLOUT);
	assert_int_equal(sock_connect_result(cfd), 0);
	wait_fd(lfd, POLLIN);
	afd = sock_accept(lfd, &peer, &plen, err, sizeof(err));
	assert_true(afd >= 0);
	assert_nonblock_cloexec(afd);
	assert_int_equal(sock_addr_format((struct sockaddr *)&peer, out, sizeof(out)), 0);
	assert_true(strncmp(out, addr, 4) == 0);
	assert_int_equal(sock_set_keepalive(afd, 60, 10, 5, err, sizeof(err)), 0);
	assert_int_equal(write(cfd, "x", 1), 1);
	wait_fd(afd, POLLIN);
	assert_int_equal(read(afd, out, sizeof(out)), 1);
	close(afd);
	close(cfd);
	close(lfd);
}

static void
test_listen_connect_accept_over_ipv4(void **state)
{
	connect_accept_over("127.0.0.1:0");
}

static void
test_listen_connect_accept_over_ipv6(void **state)
{
	if (!have_ipv6_loopback())
		skip();
	connect_accept_over("[::1]:0");
}

static void
test_connect_to_closed_port_reports_refused(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[128];
	int lfd, cfd;

	/* Take a free port, then close the listener so nothing answers there. */
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &ss, &len, err, sizeof(err)), 0);
	lfd = sock_listen(&ss, len, 1, 0, err, sizeof(err));
	assert_true(lfd >= 0);
	len = sizeof(ss);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&ss, &len), 0);
	close(lfd);
	cfd = sock_connect_start(&ss, len, err, sizeof(err));
	if (cfd == -1) {
		assert_int_equal(errno, ECONNREFUSED);
		return;
	}
	wait_fd(cfd, POLLOUT);
	assert_int_equal(sock_connect_result(cfd), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(cfd);
}

/*
 * Binding the wildcards themselves would leave loopback, so check the option that lets
 * [::]:25 and *:25 coexist on a ::1 listener instead.
 */
static void
test_v6_listener_is_v6_only(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len, optlen = sizeof(int);
	char err[128];
	int fd, v6only = 0;

	if (!have_ipv6_loopback())
		skip();
	assert_int_equal(sock_addr_parse("[::1]:0", &ss, &len, err, sizeof(err)), 0);
	fd = sock_listen(&ss, len, 4, 0, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen), 0);
	assert_int_equal(v6only, 1);
	close(fd);
}

static void
test_reuseport_lets_two_listeners_bind(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[128];
	int a, b, c;

	assert_int_equal(sock_addr_parse("127.0.0.1:0", &ss, &len, err, sizeof(err)), 0);
	a = sock_listen(&ss, len, 4, SOCK_F_REUSEPORT, err, sizeof(err));
	assert_true(a >= 0);
	len = sizeof(ss);
	assert_int_equal(getsockname(a, (struct sockaddr *)&ss, &len), 0);
	b = sock_listen(&ss, len, 4, SOCK_F_REUSEPORT, err, sizeof(err));
	assert_true(b >= 0);
	c = sock_listen(&ss, len, 4, 0, err, sizeof(err));
	assert_int_equal(c, -1);
	assert_non_null(strstr(err, "bind 127.0.0.1:"));
	close(a);
	close(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_addr_split_accepts_the_three_forms),
	    cmocka_unit_test(test_addr_split_rejects_bad_syntax_with_a_reason),
	    cmocka_unit_test(test_addr_parse_refuses_names_and_round_trips_format),
	    cmocka_unit_test(test_resolve_accepts_numeric_without_lookup),
	    cmocka_unit_test(test_listen_connect_accept_over_ipv4),
	    cmocka_unit_test(test_listen_connect_accept_over_ipv6),
	    cmocka_unit_test(test_connect_to_closed_port_reports_refused),
	    cmocka_unit_test(test_v6_listener_is_v6_only),
	    cmocka_unit_test(test_reuseport_lets_two_listeners_bind),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
