/*
 * Unit tests for lib/ipcount: counts per address (not per port), the cap, IPv4 and IPv6
 * kept apart, and entries dropped when their count returns to zero.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "ipcount.h"

static struct sockaddr_storage
v4(const char *a, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	assert_int_equal(inet_pton(AF_INET, a, &sin->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage
v6(const char *a, uint16_t port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(port);
	assert_int_equal(inet_pton(AF_INET6, a, &sin6->sin6_addr), 1);
	return ss;
}

static void
test_cap_counts_addresses_not_ports(void **state)
{
	struct ipcount t;
	struct sockaddr_storage a1 = v4("192.0.2.1", 1000), a2 = v4("192.0.2.1", 2000);
	struct sockaddr_storage b = v4("192.0.2.2", 1000);

	memset(&t, 0, sizeof(t));
	assert_int_equal(ipcount_add(&t, &a1, 2), 0);
	assert_int_equal(ipcount_add(&t, &a2, 2), 0);
	assert_int_equal(ipcount_add(&t, &a1, 2), -1); /* third from the same address */
	assert_int_equal(ipcount_get(&t, &a2), 2);
	assert_int_equal(ipcount_add(&t, &b, 2), 0);
	ipcount_del(&t, &a1);
	assert_int_equal(ipcount_add(&t, &a1, 2), 0);
	ipcount_free(&t);
	assert_int_equal(ipcount_get(&t, &a1), 0);
}

static void
test_families_are_separate_and_zero_counts_vanish(void **state)
{
	struct ipcount t;
	struct sockaddr_storage a = v6("2001:db8::1", 25), b = v6("2001:db8::2", 25);
	struct sockaddr_storage c = v4("0.0.0.0", 25), d = v6("::", 25);

	memset(&t, 0, sizeof(t));
	assert_int_equal(ipcount_add(&t, &a, 1), 0);
	assert_int_equal(ipcount_add(&t, &b, 1), 0);
	assert_int_equal(ipcount_add(&t, &a, 1), -1);
	assert_int_equal(ipcount_add(&t, &c, 1), 0);
	assert_int_equal(ipcount_add(&t, &d, 1), 0);
	ipcount_del(&t, &a);
	ipcount_del(&t, &a); /* one too many: harmless */
	assert_int_equal(ipcount_get(&t, &a), 0);
	assert_int_equal(ipcount_add(&t, &a, 0), -1); /* a cap of 0 admits nobody */
	ipcount_free(&t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cap_counts_addresses_not_ports),
	    cmocka_unit_test(test_families_are_separate_and_zero_counts_vanish),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
