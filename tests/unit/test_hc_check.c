/*
 * Unit tests for the health-check scheduler (healthcheck/hc_check.c): rise/fall counting,
 * UNKNOWN leaving the state alone, the ±10% jitter, and many checks running together in
 * one loop against a loopback listener that comes and goes, including a check freed from
 * inside its own callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "hc.h"
#include "event.h"
#include "log.h"
#include "sock.h"
#include "util.h"

#define NCHECKS   24
#define SAFETY_MS 10000

static void
test_rise_brings_a_down_check_up(void **state)
{
	struct hc_health h = {0, 0, 0};

	assert_int_equal(hc_health_update(&h, HC_OK, 3, 2), 0);
	assert_int_equal(hc_health_update(&h, HC_OK, 3, 2), 0);
	assert_false(h.up);
	assert_int_equal(h.nok, 2);
	/* A failure in between starts the count again. */
	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 3, 2), 0);
	assert_int_equal(h.nok, 0);
	assert_int_equal(hc_health_update(&h, HC_OK, 3, 2), 0);
	assert_int_equal(hc_health_update(&h, HC_WARNING, 3, 2), 0);
	assert_int_equal(hc_health_update(&h, HC_OK, 3, 2), 1);
	assert_true(h.up);
	assert_int_equal(hc_health_update(&h, HC_OK, 3, 2), 0);
}

static void
test_fall_takes_an_up_check_down(void **state)
{
	struct hc_health h = {1, 0, 0};

	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 2, 3), 0);
	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 2, 3), 0);
	assert_int_equal(h.nfail, 2);
	/* A warning (certificate expiring) passes: it resets the failures. */
	assert_int_equal(hc_health_update(&h, HC_WARNING, 2, 3), 0);
	assert_int_equal(h.nfail, 0);
	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 2, 3), 0);
	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 2, 3), 0);
	assert_true(h.up);
	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 2, 3), 1);
	assert_false(h.up);
	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 2, 3), 0);
}

static void
test_unknown_changes_nothing(void **state)
{
	struct hc_health h = {1, 0, 1};
	int i;

	for (i = 0; i < 10; i++)
		assert_int_equal(hc_health_update(&h, HC_UNKNOWN, 2, 2), 0);
	assert_true(h.up);
	assert_int_equal(h.nfail, 1);
	h.up = 0;
	h.nok = 1;
	h.nfail = 0;
	for (i = 0; i < 10; i++)
		assert_int_equal(hc_health_update(&h, HC_UNKNOWN, 2, 2), 0);
	assert_false(h.up);
	assert_int_equal(h.nok, 1);
}

static void
test_rise_and_fall_of_one_flip_at_once(void **state)
{
	struct hc_health h = {0, 0, 0};

	assert_int_equal(hc_health_update(&h, HC_OK, 1, 1), 1);
	assert_int_equal(hc_health_update(&h, HC_CRITICAL, 1, 1), 1);
	/* 0 is taken as 1: a zero never means "never". */
	assert_int_equal(hc_health_update(&h, HC_OK, 0, 0), 1);
}

static void
test_jitter_stays_within_ten_percent_and_spreads(void **state)
{
	uint64_t lo = UINT64_MAX, hi = 0, j;
	uint32_t rnd = 2463534242u;
	int i;

	for (i = 0; i < 100000; i++) {
		rnd ^= rnd << 13;
		rnd ^= rnd >> 17;
		rnd ^= rnd << 5;
		j = hc_jitter_ms(2000, rnd);
		assert_in_range(j, 1800, 2200);
		if (j < lo)
			lo = j;
		if (j > hi)
			hi = j;
	}
	/* The whole band is used, not one point in it. */
	assert_true(lo <= 1805);
	assert_true(hi >= 2195);
	assert_int_equal(hc_jitter_ms(2000, 0), 1800);
	assert_int_equal(hc_jitter_ms(2000, 400), 2200);
	assert_int_equal(hc_jitter_ms(3, 12345), 3);
}

/* ---- many checks in one loop ---- */

struct pool {
	struct ev_loop *loop;
	int lfd;
	struct hc_check *checks[NCHECKS];
	int ups, downs, runs;
	int free_on_change; /* free each check in its callback when it goes down */
	int stopped;
};

static void
pool_accept(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[128];
	int cfd;

	for (;;) {
		sslen = sizeof(ss);
		if ((cfd = sock_accept(fd, &ss, &sslen, err, sizeof(err))) == -1)
			return;
		close(cfd);
	}
}

static void
pool_cb(struct hc_check *c, const struct hc_result *r, int changed, void *arg)
{
	struct pool *p = arg;
	size_t i;

	p->runs++;
	if (!changed)
		return;
	if (hc_check_is_up(c)) {
		assert_int_equal(r->status, HC_OK);
		if (++p->ups == NCHECKS)
			ev_stop(p->loop);
		return;
	}
	assert_int_equal(r->status, HC_CRITICAL);
	assert_string_equal(r->reason, "connect: Connection refused");
	if (p->free_on_change) {
		for (i = 0; i < NCHECKS; i++)
			if (p->checks[i] == c)
				p->checks[i] = NULL;
		hc_check_free(c);
	}
	if (++p->downs == NCHECKS)
		ev_stop(p->loop);
}

static void
pool_safety(struct ev_loop *loop, void *arg)
{
	struct pool *p = arg;

	p->stopped = 1;
	ev_stop(loop);
}

static void
test_many_checks_rise_then_fall_in_one_loop(void **state)
{
	struct hc_params params = {30, 2, 3, 0};
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct ev_timer safety;
	struct hc_spec spec;
	struct pool p;
	char err[128], buf[64];
	size_t i;

	memset(&p, 0, sizeof(p));
	assert_non_null(p.loop = ev_loop_new());
	assert_int_equal(sock_addr_parse("127.0.0.1:0", &ss, &sslen, err, sizeof(err)), 0);
	p.lfd = sock_listen(&ss, sslen, 128, 0, err, sizeof(err));
	assert_true(p.lfd >= 0);
	assert_int_equal(ev_io_set(p.loop, p.lfd, EV_READ, pool_accept, &p), 0);

	memset(&spec, 0, sizeof(spec));
	spec.type = HC_TCP;
	spec.timeout_ms = 1000;
	spec.addrlen = sizeof(spec.addr);
	assert_int_equal(getsockname(p.lfd, (struct sockaddr *)&spec.addr, &spec.addrlen), 0);
	assert_int_equal(
	    sock_addr_format((struct sockaddr *)&spec.addr, spec.addr_str, sizeof(spec.addr_str)),
	    0);
	for (i = 0; i < NCHECKS; i++) {
		p.checks[i] = hc_check_new(p.loop, &spec, &params, pool_cb, &p, err, sizeof(err));
		assert_non_null(p.checks[i]);
		assert_false(hc_check_is_up(p.checks[i]));
		assert_int_equal(hc_check_start(p.checks[i]), 0);
	}
	ev_timer_init(&safety);
	assert_int_equal(ev_timer_start(p.loop, &safety, SAFETY_MS, pool_safety, &p), 0);
	assert_int_equal(ev_run(p.loop), 0);
	assert_false(p.stopped);
	assert_int_equal(p.ups, NCHECKS);
	assert_true(p.runs >= 2 * NCHECKS);
	for (i = 0; i < NCHECKS; i++) {
		assert_true(hc_check_is_up(p.checks[i]));
		assert_true(p.checks[i]->nruns >= 2);
	}

	/* The service goes away: every check falls after three refusals, and is freed. */
	(void)ev_io_del(p.loop, p.lfd);
	close(p.lfd);
	p.free_on_change = 1;
	hc_check_state_string(p.checks[0], buf, sizeof(buf));
	assert_string_equal(buf, "UP");
	assert_int_equal(ev_run(p.loop), 0);
	assert_false(p.stopped);
	assert_int_equal(p.downs, NCHECKS);
	for (i = 0; i < NCHECKS; i++)
		assert_null(p.checks[i]);
	ev_timer_stop(p.loop, &safety);
	ev_loop_free(p.loop);
}

static void
test_state_string_shows_the_counters(void **state)
{
	struct hc_params params = {1000, 2, 3, 1};
	struct ev_loop *loop = ev_loop_new();
	struct hc_check *c;
	struct hc_spec spec;
	char err[128], buf[64];

	memset(&spec, 0, sizeof(spec));
	spec.type = HC_TCP;
	spec.timeout_ms = 1000;
	assert_int_equal(
	    sock_addr_parse("127.0.0.1:9", &spec.addr, &spec.addrlen, err, sizeof(err)), 0);
	assert_non_null(c = hc_check_new(loop, &spec, &params, NULL, NULL, err, sizeof(err)));
	assert_true(hc_check_is_up(c)); /* initially_up: a restart keeps what is running */
	assert_int_equal(hc_health_update(&c->health, HC_CRITICAL, 2, 3), 0);
	hc_check_state_string(c, buf, sizeof(buf));
	assert_string_equal(buf, "UP 1/3 failed");
	c->health.up = 0;
	c->health.nok = 1;
	hc_check_state_string(c, buf, sizeof(buf));
	assert_string_equal(buf, "DOWN 1/2 passed");
	hc_check_free(c);

	params.interval_ms = 0;
	assert_null(hc_check_new(loop, &spec, &params, NULL, NULL, err, sizeof(err)));
	assert_string_equal(err, "check interval is 0");
	ev_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rise_brings_a_down_check_up),
	    cmocka_unit_test(test_fall_takes_an_up_check_down),
	    cmocka_unit_test(test_unknown_changes_nothing),
	    cmocka_unit_test(test_rise_and_fall_of_one_flip_at_once),
	    cmocka_unit_test(test_jitter_stays_within_ten_percent_and_spreads),
	    cmocka_unit_test(test_many_checks_rise_then_fall_in_one_loop),
	    cmocka_unit_test(test_state_string_shows_the_counters),
	};

	log_init("test_hc_check", 1, LOG_LEVEL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
