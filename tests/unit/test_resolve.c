/*
 * Unit tests for relay/resolve: a name from /etc/hosts ("localhost") resolved through
 * getaddrinfo_a with the answer arriving in the event loop, then served from the cache
 * until its TTL; IP literals answered without a query; names under .invalid refused
 * without a query (RFC 6761), so nothing here depends on a DNS server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <netinet/in.h>

#include "event.h"
#include "../../relay/resolve.h"

#define GUARD_MS 10000 /* a lookup in /etc/hosts takes microseconds; this only stops a hang */

struct done_rec {
	int calls;
	char host[RESOLVE_HOST_MAX];
};

static void
on_done(void *arg, const char *host)
{
	struct done_rec *d = arg;

	d->calls++;
	snprintf(d->host, sizeof(d->host), "%s", host);
}

static void
guard(struct ev_loop *loop, void *arg)
{
	ev_stop(loop);
}

static void
stop_when_done(struct ev_loop *loop, void *arg)
{
	struct done_rec *d = arg;

	if (d->calls > 0)
		ev_stop(loop);
}

/* Runs the loop until done() was called (or the guard fires). */
static void
run_until_done(struct ev_loop *loop, struct done_rec *d)
{
	struct ev_timer t;

	ev_timer_init(&t);
	assert_int_equal(ev_timer_start(loop, &t, GUARD_MS, guard, NULL), 0);
	assert_int_equal(ev_before_sleep(loop, stop_when_done, d), 0);
	assert_int_equal(ev_run(loop), 0);
	ev_timer_stop(loop, &t);
}

static int
has_loopback_v4(const struct resolve_addrs *a)
{
	size_t i;

	for (i = 0; i < a->n; i++)
		if (a->ss[i].ss_family == AF_INET &&
		    ((const struct sockaddr_in *)&a->ss[i])->sin_addr.s_addr == htonl(0x7f000001))
			return 1;
	return 0;
}

static void
test_localhost_resolves_in_the_loop_and_is_cached(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct done_rec d = {0};
	const struct resolve_addrs *a;
	struct resolver *r;
	char err[256];

	assert_non_null(loop);
	r = resolver_new(loop, 60000, 5000, on_done, &d, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(resolver_lookup(r, "localhost", &a, err, sizeof(err)), RESOLVE_PENDING);
	assert_null(a);
	assert_null(resolver_cached(r, "localhost"));
	run_until_done(loop, &d);
	assert_int_equal(d.calls, 1);
	assert_string_equal(d.host, "localhost");
	assert_int_equal(resolver_lookup(r, "LOCALHOST", &a, err, sizeof(err)), RESOLVE_OK);
	assert_non_null(a);
	assert_true(has_loopback_v4(a));
	assert_ptr_equal(resolver_cached(r, "localhost"), a);
	assert_int_equal(d.calls, 1); /* the cache answered: no second lookup */
	resolver_free(r);
	ev_loop_free(loop);
}

static void
test_an_expired_answer_is_looked_up_again(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct done_rec d = {0};
	const struct resolve_addrs *a;
	struct resolver *r;
	char err[256];

	r = resolver_new(loop, 0, 0, on_done, &d, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(resolver_lookup(r, "localhost", &a, err, sizeof(err)), RESOLVE_PENDING);
	run_until_done(loop, &d);
	/* TTL 0: stale at once, so the next lookup queries again, keeping the old answer. */
	assert_int_equal(resolver_lookup(r, "localhost", &a, err, sizeof(err)), RESOLVE_PENDING);
	assert_non_null(resolver_cached(r, "localhost"));
	d.calls = 0;
	run_until_done(loop, &d);
	assert_int_equal(d.calls, 1);
	resolver_free(r);
	ev_loop_free(loop);
}

static void
test_literals_and_invalid_names_need_no_query(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct done_rec d = {0};
	const struct resolve_addrs *a;
	struct resolver *r;
	char err[256];

	r = resolver_new(loop, 60000, 5000, on_done, &d, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(resolver_lookup(r, "127.0.0.1", &a, err, sizeof(err)), RESOLVE_OK);
	assert_true(has_loopback_v4(a));
	assert_int_equal(resolver_lookup(r, "::1", &a, err, sizeof(err)), RESOLVE_OK);
	assert_int_equal(a->n, 1);
	assert_int_equal(a->ss[0].ss_family, AF_INET6);
	assert_int_equal(resolver_lookup(r, "nx.mailplex.invalid", &a, err, sizeof(err)),
	                 RESOLVE_FAILED);
	assert_null(a);
	assert_non_null(strstr(err, "RFC 6761"));
	assert_int_equal(resolver_lookup(r, "INVALID.", &a, err, sizeof(err)), RESOLVE_FAILED);
	assert_int_equal(d.calls, 0);
	resolver_free(r);
	ev_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_localhost_resolves_in_the_loop_and_is_cached),
	    cmocka_unit_test(test_an_expired_answer_is_looked_up_again),
	    cmocka_unit_test(test_literals_and_invalid_names_need_no_query),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
