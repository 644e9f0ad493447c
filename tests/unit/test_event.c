/*
 * Unit tests for lib/event: timer order, stop and restart, 10,000 random timers, I/O
 * readiness, hangup reporting, removal or close inside a callback of the same batch,
 * signals via signalfd, and before-sleep hooks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "event.h"

struct rec {
	struct ev_timer t;
	int id;
	int *log;
	size_t *nlog;
};

static void
rec_fire(struct ev_loop *loop, void *arg)
{
	struct rec *r = arg;

	r->log[(*r->nlog)++] = r->id;
}

static void
stop_cb(struct ev_loop *loop, void *arg)
{
	ev_stop(loop);
}

static void
test_timers_fire_in_deadline_order(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct rec r[4];
	struct ev_timer done;
	int log[8];
	size_t nlog = 0, i;
	static const uint64_t delay[4] = {30, 10, 20, 10};
	uint64_t start;

	assert_non_null(loop);
	start = ev_now_ms(loop);
	for (i = 0; i < 4; i++) {
		ev_timer_init(&r[i].t);
		r[i].id = (int)i;
		r[i].log = log;
		r[i].nlog = &nlog;
		assert_int_equal(ev_timer_start(loop, &r[i].t, delay[i], rec_fire, &r[i]), 0);
	}
	ev_timer_init(&done);
	assert_int_equal(ev_timer_start(loop, &done, 40, stop_cb, NULL), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(nlog, 4);
	/* Equal deadlines run in the order they were started. */
	assert_int_equal(log[0], 1);
	assert_int_equal(log[1], 3);
	assert_int_equal(log[2], 2);
	assert_int_equal(log[3], 0);
	assert_true(ev_now_ms(loop) - start >= 40);
	for (i = 0; i < 4; i++)
		assert_false(ev_timer_active(&r[i].t));
	ev_loop_free(loop);
}

static void
test_stopped_timer_never_fires_and_restart_moves_it(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct rec a, b;
	struct ev_timer done;
	int log[8];
	size_t nlog = 0;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	a.id = 1;
	b.id = 2;
	a.log = b.log = log;
	a.nlog = b.nlog = &nlog;
	ev_timer_init(&a.t);
	ev_timer_init(&b.t);
	ev_timer_init(&done);
	assert_int_equal(ev_timer_start(loop, &a.t, 5, rec_fire, &a), 0);
	assert_int_equal(ev_timer_start(loop, &b.t, 1000, rec_fire, &b), 0);
	ev_timer_stop(loop, &a.t);
	ev_timer_stop(loop, &a.t);
	assert_false(ev_timer_active(&a.t));
	assert_int_equal(ev_timer_start(loop, &b.t, 5, rec_fire, &b), 0);
	assert_int_equal(ev_timer_start(loop, &done, 30, stop_cb, NULL), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(nlog, 1);
	assert_int_equal(log[0], 2);
	ev_loop_free(loop);
}

struct many {
	struct ev_timer t;
	uint64_t when;
	int stopped;
	int fired;
};

struct many_ctx {
	uint64_t last_when;
	size_t fired;
	int late;
	int out_of_order;
};

static struct many_ctx many_ctx;

static void
many_fire(struct ev_loop *loop, void *arg)
{
	struct many *m = arg;

	m->fired++;
	many_ctx.fired++;
	if (m->when < many_ctx.last_when)
		many_ctx.out_of_order = 1;
	if (ev_now_ms(loop) < m->when)
		many_ctx.late = 1;
	many_ctx.last_when = m->when;
}

static void
test_ten_thousand_random_timers_fire_in_order(void **state)
{
	enum { N = 10000 };
	struct ev_loop *loop = ev_loop_new();
	struct many *m = calloc(N, sizeof(*m));
	struct ev_timer done;
	size_t i, nstopped = 0;
	uint64_t now;

	assert_non_null(m);
	memset(&many_ctx, 0, sizeof(many_ctx));
	srandom(12345);
	now = ev_now_ms(loop);
	for (i = 0; i < N; i++) {
		ev_timer_init(&m[i].t);
		m[i].when = now + (uint64_t)(random() % 60);
		assert_int_equal(ev_timer_start(loop, &m[i].t, m[i].when - now, many_fire, &m[i]),
		                 0);
	}
	/* Stop a third at random positions in the heap, restart some others later. */
	for (i = 0; i < N; i += 3) {
		ev_timer_stop(loop, &m[i].t);
		m[i].stopped = 1;
		nstopped++;
	}
	for (i = 1; i < N; i += 7) {
		m[i].when = now + 60 + (uint64_t)(random() % 20);
		if (m[i].stopped)
			nstopped--;
		m[i].stopped = 0;
		assert_int_equal(ev_timer_start(loop, &m[i].t, m[i].when - now, many_fire, &m[i]),
		                 0);
	}
	ev_timer_init(&done);
	assert_int_equal(ev_timer_start(loop, &done, 100, stop_cb, NULL), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(many_ctx.fired, N - nstopped);
	assert_false(many_ctx.out_of_order);
	assert_false(many_ctx.late);
	for (i = 0; i < N; i++)
		assert_int_equal(m[i].fired, m[i].stopped ? 0 : 1);
	free(m);
	ev_loop_free(loop);
}

struct io_ctx {
	int calls;
	int events;
	int fd;
};

static void
io_record(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct io_ctx *c = arg;

	c->calls++;
	c->events |= events;
	c->fd = fd;
	assert_int_equal(ev_io_del(loop, fd), 0);
	ev_stop(loop);
}

static void
test_readable_socket_wakes_its_watcher(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct io_ctx c = {0};
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(ev_io_set(loop, sv[0], EV_READ, io_record, &c), 0);
	assert_int_equal(write(sv[1], "x", 1), 1);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(c.calls, 1);
	assert_int_equal(c.events, EV_READ);
	assert_int_equal(c.fd, sv[0]);
	/* Switching the same descriptor to write interest modifies the registration. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(ev_io_set(loop, sv[0], EV_READ, io_record, &c), 0);
	assert_int_equal(ev_io_set(loop, sv[0], EV_WRITE, io_record, &c), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(c.events, EV_WRITE);
	close(sv[0]);
	close(sv[1]);
	ev_loop_free(loop);
}

static void
test_hangup_is_reported_as_readable_and_writable(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct io_ctx c = {0};
	int p[2];

	assert_int_equal(pipe(p), 0);
	assert_int_equal(ev_io_set(loop, p[0], EV_READ | EV_WRITE, io_record, &c), 0);
	close(p[1]);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(c.events, EV_READ | EV_WRITE);
	close(p[0]);
	ev_loop_free(loop);
}

struct del_ctx {
	int fds[2];   /* read ends of two pipes, both readable in the same batch */
	int first;    /* calls of the watcher that ran */
	int fresh[2]; /* a new pipe made in the callback, reusing the closed number */
	int stale;    /* calls delivered to the new pipe's watcher: must stay 0 */
	struct ev_timer done;
};

static void
del_fresh(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct del_ctx *d = arg;

	d->stale++;
}

static void
del_first(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct del_ctx *d = arg;
	int other = fd == d->fds[0] ? d->fds[1] : d->fds[0];

	d->first++;
	assert_int_equal(ev_io_del(loop, fd), 0);
	assert_int_equal(ev_io_del(loop, other), 0);
	close(other);
	assert_int_equal(pipe(d->fresh), 0);
	/* The kernel hands out the lowest free number: the fresh pipe reuses "other". */
	assert_int_equal(d->fresh[0], other);
	assert_int_equal(ev_io_set(loop, d->fresh[0], EV_READ, del_fresh, d), 0);
	if (fd == d->fds[0])
		d->fds[1] = -1;
	else
		d->fds[0] = -1;
}

static void
test_watcher_removed_in_same_batch_gets_no_stale_event(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct del_ctx d;
	int a[2], b[2];

	memset(&d, 0, sizeof(d));
	assert_int_equal(pipe(a), 0);
	assert_int_equal(pipe(b), 0);
	assert_int_equal(write(a[1], "a", 1), 1);
	assert_int_equal(write(b[1], "b", 1), 1);
	d.fds[0] = a[0];
	d.fds[1] = b[0];
	assert_int_equal(ev_io_set(loop, a[0], EV_READ, del_first, &d), 0);
	assert_int_equal(ev_io_set(loop, b[0], EV_READ, del_first, &d), 0);
	ev_timer_init(&d.done);
	assert_int_equal(ev_timer_start(loop, &d.done, 30, stop_cb, NULL), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(d.first, 1);
	assert_int_equal(d.stale, 0);
	assert_int_equal(ev_io_del(loop, d.fresh[0]), 0);
	close(d.fresh[0]);
	close(d.fresh[1]);
	close(d.fds[0] != -1 ? d.fds[0] : d.fds[1]);
	close(a[1]);
	close(b[1]);
	ev_loop_free(loop);
}

struct close_ctx {
	int fds[2];   /* read ends of two pipes, both readable in the same batch */
	int first;    /* calls of the watcher that ran */
	int fresh[2]; /* a new pipe made in the callback, reusing the closed number */
	int fresh_calls, fresh_bytes;
	int iterations; /* before-sleep hook runs: a closed fd left in the set would spin */
	struct ev_timer later, done;
};

static void
close_fresh(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct close_ctx *d = arg;
	char c;

	/* A stale event of the closed pipe would arrive here too, with nothing to read. */
	d->fresh_calls++;
	if (read(fd, &c, 1) == 1)
		d->fresh_bytes++;
}

static void
close_write_fresh(struct ev_loop *loop, void *arg)
{
	struct close_ctx *d = arg;

	assert_int_equal(write(d->fresh[1], "f", 1), 1);
}

static void
close_first(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct close_ctx *d = arg;
	int other = fd == d->fds[0] ? d->fds[1] : d->fds[0];
	char c;

	d->first++;
	assert_int_equal(read(fd, &c, 1), 1);
	/* Still readable (its writer is open, a byte waits): only close() can quiet it. */
	assert_int_equal(ev_io_close(loop, other), 0);
	assert_int_equal(fcntl(other, F_GETFD), -1);
	assert_int_equal(pipe2(d->fresh, O_NONBLOCK), 0);
	assert_int_equal(d->fresh[0], other);
	assert_int_equal(ev_io_set(loop, d->fresh[0], EV_READ, close_fresh, d), 0);
	assert_int_equal(ev_timer_start(loop, &d->later, 10, close_write_fresh, d), 0);
	if (fd == d->fds[0])
		d->fds[1] = -1;
	else
		d->fds[0] = -1;
}

static void
close_count(struct ev_loop *loop, void *arg)
{
	struct close_ctx *d = arg;

	d->iterations++;
}

static void
test_closed_watcher_gets_no_stale_event_and_leaves_the_set(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct close_ctx d;
	int a[2], b[2];

	memset(&d, 0, sizeof(d));
	assert_int_equal(pipe(a), 0);
	assert_int_equal(pipe(b), 0);
	assert_int_equal(write(a[1], "a", 1), 1);
	assert_int_equal(write(b[1], "b", 1), 1);
	d.fds[0] = a[0];
	d.fds[1] = b[0];
	assert_int_equal(ev_io_set(loop, a[0], EV_READ, close_first, &d), 0);
	assert_int_equal(ev_io_set(loop, b[0], EV_READ, close_first, &d), 0);
	assert_int_equal(ev_before_sleep(loop, close_count, &d), 0);
	ev_timer_init(&d.later);
	ev_timer_init(&d.done);
	assert_int_equal(ev_timer_start(loop, &d.done, 30, stop_cb, NULL), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(d.first, 1);
	assert_int_equal(d.fresh_calls, 1);
	assert_int_equal(d.fresh_bytes, 1);
	/* A batch, two timers, the fresh pipe's byte: a handful, not a spin. */
	assert_in_range(d.iterations, 1, 50);
	assert_int_equal(ev_io_close(loop, d.fresh[0]), 0);
	close(d.fresh[1]);
	close(d.fds[0] != -1 ? d.fds[0] : d.fds[1]);
	close(a[1]);
	close(b[1]);
	ev_loop_free(loop);
}

struct spin_ctx {
	struct ev_timer t;
	int spins;
	int io_calls;
};

static void
spin_timer(struct ev_loop *loop, void *arg)
{
	struct spin_ctx *s = arg;

	s->spins++;
	assert_int_equal(ev_timer_start(loop, &s->t, 0, spin_timer, s), 0);
}

static void
spin_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct spin_ctx *s = arg;

	s->io_calls++;
	ev_stop(loop);
}

static void
test_zero_delay_timer_restarting_itself_does_not_starve_io(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct spin_ctx s;
	int p[2];

	memset(&s, 0, sizeof(s));
	ev_timer_init(&s.t);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(ev_timer_start(loop, &s.t, 0, spin_timer, &s), 0);
	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(ev_io_set(loop, p[0], EV_READ, spin_io, &s), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(s.io_calls, 1);
	assert_true(s.spins >= 1);
	ev_timer_stop(loop, &s.t);
	close(p[0]);
	close(p[1]);
	ev_loop_free(loop);
}

static int signal_seen;

static void
on_signal(struct ev_loop *loop, int signo, void *arg)
{
	signal_seen = signo;
	ev_stop(loop);
}

static void
test_signal_is_delivered_through_the_loop(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	sigset_t cur;

	signal_seen = 0;
	assert_int_equal(ev_signal_add(loop, SIGUSR1, on_signal, NULL), 0);
	assert_int_equal(raise(SIGUSR1), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_int_equal(signal_seen, SIGUSR1);
	assert_int_equal(ev_signal_add(loop, SIGKILL, on_signal, NULL), -1);
	ev_loop_free(loop);
	assert_int_equal(sigprocmask(SIG_BLOCK, NULL, &cur), 0);
	assert_false(sigismember(&cur, SIGUSR1));
}

struct hook_ctx {
	int hooks;
	int hooks_before_timer;
	struct ev_timer t;
};

static void
hook_count(struct ev_loop *loop, void *arg)
{
	struct hook_ctx *h = arg;

	h->hooks++;
}

static void
hook_timer(struct ev_loop *loop, void *arg)
{
	struct hook_ctx *h = arg;

	h->hooks_before_timer = h->hooks;
	ev_stop(loop);
}

static void
hook_stop(struct ev_loop *loop, void *arg)
{
	ev_stop(loop);
}

static void
test_before_sleep_hook_runs_each_iteration(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	struct hook_ctx h;

	memset(&h, 0, sizeof(h));
	ev_timer_init(&h.t);
	assert_int_equal(ev_before_sleep(loop, hook_count, &h), 0);
	assert_int_equal(ev_timer_start(loop, &h.t, 10, hook_timer, &h), 0);
	assert_int_equal(ev_run(loop), 0);
	assert_true(h.hooks_before_timer >= 1);
	ev_loop_free(loop);
}

static void
test_hook_can_stop_the_loop_before_it_sleeps(void **state)
{
	struct ev_loop *loop = ev_loop_new();

	/* No watcher, no timer: without the hook's stop, epoll_wait would block forever. */
	assert_int_equal(ev_before_sleep(loop, hook_stop, NULL), 0);
	assert_int_equal(ev_run(loop), 0);
	ev_loop_free(loop);
}

static void
test_now_update_refreshes_the_cached_clock(void **state)
{
	struct ev_loop *loop = ev_loop_new();
	uint64_t before;

	assert_non_null(loop);
	before = ev_now_ms(loop);
	usleep(20 * 1000);
	assert_int_equal(ev_now_ms(loop), before); /* cached until asked */
	ev_now_update(loop);
	assert_true(ev_now_ms(loop) >= before + 20);
	ev_loop_free(loop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timers_fire_in_deadline_order),
	    cmocka_unit_test(test_stopped_timer_never_fires_and_restart_moves_it),
	    cmocka_unit_test(test_ten_thousand_random_timers_fire_in_order),
	    cmocka_unit_test(test_readable_socket_wakes_its_watcher),
	    cmocka_unit_test(test_hangup_is_reported_as_readable_and_writable),
	    cmocka_unit_test(test_watcher_removed_in_same_batch_gets_no_stale_event),
	    cmocka_unit_test(test_closed_watcher_gets_no_stale_event_and_leaves_the_set),
	    cmocka_unit_test(test_zero_delay_timer_restarting_itself_does_not_starve_io),
	    cmocka_unit_test(test_signal_is_delivered_through_the_loop),
	    cmocka_unit_test(test_before_sleep_hook_runs_each_iteration),
	    cmocka_unit_test(test_hook_can_stop_the_loop_before_it_sleeps),
	    cmocka_unit_test(test_now_update_refreshes_the_cached_clock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
