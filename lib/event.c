/*
 * The event loop (Redis ae.c's shape, with a min-heap of timers). Owns the epoll set,
 * the descriptor table, the timer heap and the signalfd; EINTR from epoll_wait is handled
 * here and nowhere else. It must never deliver an event to a watcher that was removed,
 * even when the removal happened earlier in the same epoll batch.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "event.h"
#include "util.h"

#define EV_BATCH      256
#define EV_NO_HEAP    SIZE_MAX
#define EV_MAX_SIGNAL 65

struct ev_io_slot {
	int events;
	/*
	 * Bumped on every removal and carried in the epoll data: an event already fetched
	 * for a descriptor that was removed (and perhaps reused) no longer matches.
	 */
	uint32_t gen;
	ev_io_fn *cb;
	void *arg;
};

struct ev_signal_slot {
	ev_signal_fn *cb;
	void *arg;
};

struct ev_hook {
	ev_hook_fn *cb;
	void *arg;
};

struct ev_loop {
	int epfd;
	int sigfd;
	int stop;
	uint64_t now_ms;
	struct ev_io_slot *io;
	size_t nio;
	struct ev_timer **heap;
	size_t nheap;
	size_t heapcap;
	uint64_t timer_seq;
	sigset_t sigmask;
	struct ev_signal_slot sig[EV_MAX_SIGNAL];
	struct ev_hook *hooks;
	size_t nhooks;
	struct epoll_event events[EV_BATCH];
};

struct ev_loop *
ev_loop_new(void)
{
	struct ev_loop *loop;

	if ((loop = calloc(1, sizeof(*loop))) == NULL)
		return NULL;
	if ((loop->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
		free(loop);
		return NULL;
	}
	loop->sigfd = -1;
	sigemptyset(&loop->sigmask);
	loop->now_ms = time_mono_ms();
	return loop;
}

void
ev_loop_free(struct ev_loop *loop)
{
	if (loop == NULL)
		return;
	if (loop->sigfd != -1) {
		(void)sigprocmask(SIG_UNBLOCK, &loop->sigmask, NULL);
		close(loop->sigfd);
	}
	close(loop->epfd);
	free(loop->io);
	free(loop->heap);
	free(loop->hooks);
	free(loop);
}

void
ev_stop(struct ev_loop *loop)
{
	loop->stop = 1;
}

uint64_t
ev_now_ms(const struct ev_loop *loop)
{
	return loop->now_ms;
}

void
ev_now_update(struct ev_loop *loop)
{
	loop->now_ms = time_mono_ms();
}

/* ---- descriptors ---- */

static int
ev_io_grow(struct ev_loop *loop, int fd)
{
	size_t n = loop->nio == 0 ? 64 : loop->nio;
	struct ev_io_slot *p;

	if ((size_t)fd < loop->nio)
		return 0;
	while (n <= (size_t)fd)
		n *= 2;
	if ((p = reallocarray(loop->io, n, sizeof(*p))) == NULL)
		return -1;
	memset(p + loop->nio, 0, (n - loop->nio) * sizeof(*p));
	loop->io = p;
	loop->nio = n;
	return 0;
}

int
ev_io_set(struct ev_loop *loop, int fd, int events, ev_io_fn *cb, void *arg)
{
	struct epoll_event ee;
	struct ev_io_slot *s;
	int op;

	if (fd < 0) {
		errno = EBADF;
		return -1;
	}
	if ((events & (EV_READ | EV_WRITE)) == 0)
		return ev_io_del(loop, fd);
	if (ev_io_grow(loop, fd) == -1)
		return -1;
	s = &loop->io[fd];
	op = s->events != 0 ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	for (;;) {
		memset(&ee, 0, sizeof(ee));
		ee.events =
		    ((events & EV_READ) ? EPOLLIN : 0) | ((events & EV_WRITE) ? EPOLLOUT : 0);
		ee.data.u64 = (uint64_t)(uint32_t)fd | ((uint64_t)s->gen << 32);
		if (epoll_ctl(loop->epfd, op, fd, &ee) == 0)
			break;
		if (op == EPOLL_CTL_MOD && errno == ENOENT) {
			/* Closed without ev_io_del and reused: a new watcher, a new generation. */
			s->gen++;
			op = EPOLL_CTL_ADD;
		} else if (op == EPOLL_CTL_ADD && errno == EEXIST) {
			op = EPOLL_CTL_MOD;
		} else {
			return -1;
		}
	}
	s->events = events & (EV_READ | EV_WRITE);
	s->cb = cb;
	s->arg = arg;
	return 0;
}

int
ev_io_del(struct ev_loop *loop, int fd)
{
	struct ev_io_slot *s;

	if (fd < 0 || (size_t)fd >= loop->nio || loop->io[fd].events == 0)
		return 0;
	s = &loop->io[fd];
	/* Already closed by the caller: the kernel dropped it from the set by itself. */
	if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL) == -1 && errno != EBADF &&
	    errno != ENOENT)
		return -1;
	s->events = 0;
	s->gen++;
	s->cb = NULL;
	s->arg = NULL;
	return 0;
}

int
ev_io_close(struct ev_loop *loop, int fd)
{
	struct ev_io_slot *s;

	if (fd >= 0 && (size_t)fd < loop->nio && loop->io[fd].events != 0) {
		s = &loop->io[fd];
		s->events = 0;
		s->gen++;
		s->cb = NULL;
		s->arg = NULL;
	}
	return close(fd);
}

static void
ev_io_dispatch(struct ev_loop *loop, int n)
{
	struct ev_io_slot *s;
	uint32_t ev, gen;
	int i, fd, events;

	for (i = 0; i < n; i++) {
		fd = (int)(uint32_t)loop->events[i].data.u64;
		gen = (uint32_t)(loop->events[i].data.u64 >> 32);
		ev = loop->events[i].events;
		if ((size_t)fd >= loop->nio)
			continue;
		s = &loop->io[fd];
		if (s->gen != gen || s->events == 0)
			continue;
		events = 0;
		if (ev & EPOLLIN)
			events |= EV_READ;
		if (ev & EPOLLOUT)
			events |= EV_WRITE;
		/* Let the callback's own read or write meet the error (ae_epoll). */
		if (ev & (EPOLLERR | EPOLLHUP))
			events |= EV_READ | EV_WRITE;
		events &= s->events;
		if (events != 0)
			s->cb(loop, fd, events, s->arg);
	}
}

/* ---- timers: binary min-heap on (when_ms, seq) ---- */

static int
ev_timer_before(const struct ev_timer *a, const struct ev_timer *b)
{
	if (a->when_ms != b->when_ms)
		return a->when_ms < b->when_ms;
	return a->seq < b->seq;
}

static void
ev_heap_place(struct ev_loop *loop, size_t i, struct ev_timer *t)
{
	loop->heap[i] = t;
	t->heap_idx = i;
}

static void
ev_heap_up(struct ev_loop *loop, size_t i)
{
	struct ev_timer *t = loop->heap[i];
	size_t parent;

	while (i > 0) {
		parent = (i - 1) / 2;
		if (!ev_timer_before(t, loop->heap[parent]))
			break;
		ev_heap_place(loop, i, loop->heap[parent]);
		i = parent;
	}
	ev_heap_place(loop, i, t);
}

static void
ev_heap_down(struct ev_loop *loop, size_t i)
{
	struct ev_timer *t = loop->heap[i];
	size_t child;

	for (;;) {
		child = 2 * i + 1;
		if (child >= loop->nheap)
			break;
		if (child + 1 < loop->nheap &&
		    ev_timer_before(loop->heap[child + 1], loop->heap[child]))
			child++;
		if (!ev_timer_before(loop->heap[child], t))
			break;
		ev_heap_place(loop, i, loop->heap[child]);
		i = child;
	}
	ev_heap_place(loop, i, t);
}

void
ev_timer_init(struct ev_timer *t)
{
	memset(t, 0, sizeof(*t));
	t->heap_idx = EV_NO_HEAP;
}

int
ev_timer_active(const struct ev_timer *t)
{
	return t->heap_idx != EV_NO_HEAP;
}

void
ev_timer_stop(struct ev_loop *loop, struct ev_timer *t)
{
	size_t i = t->heap_idx;
	struct ev_timer *last;

	if (i == EV_NO_HEAP || i >= loop->nheap || loop->heap[i] != t)
		return;
	t->heap_idx = EV_NO_HEAP;
	last = loop->heap[--loop->nheap];
	if (i == loop->nheap)
		return;
	ev_heap_place(loop, i, last);
	ev_heap_up(loop, i);
	ev_heap_down(loop, last->heap_idx);
}

int
ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_ms, ev_timer_fn *cb,
               void *arg)
{
	struct ev_timer **p;
	size_t n;

	/* A zeroed struct has heap_idx 0: trust the index only if the heap agrees. */
	if (t->heap_idx < loop->nheap && loop->heap[t->heap_idx] == t)
		ev_timer_stop(loop, t);
	else
		t->heap_idx = EV_NO_HEAP;
	if (loop->nheap == loop->heapcap) {
		n = loop->heapcap == 0 ? 64 : loop->heapcap * 2;
		if ((p = reallocarray(loop->heap, n, sizeof(*p))) == NULL)
			return -1;
		loop->heap = p;
		loop->heapcap = n;
	}
	t->when_ms = delay_ms > UINT64_MAX - loop->now_ms ? UINT64_MAX : loop->now_ms + delay_ms;
	t->seq = ++loop->timer_seq;
	t->cb = cb;
	t->arg = arg;
	ev_heap_place(loop, loop->nheap++, t);
	ev_heap_up(loop, t->heap_idx);
	return 0;
}

static void
ev_timer_run(struct ev_loop *loop)
{
	/* Timers (re)started by a callback wait for the next pass: no starvation loop. */
	uint64_t last_seq = loop->timer_seq;
	struct ev_timer *t;

	while (loop->nheap > 0) {
		t = loop->heap[0];
		if (t->when_ms > loop->now_ms || t->seq > last_seq)
			break;
		ev_timer_stop(loop, t);
		t->cb(loop, t->arg);
	}
}

static int
ev_timeout_ms(struct ev_loop *loop)
{
	uint64_t now, when;

	if (loop->nheap == 0)
		return -1;
	when = loop->heap[0]->when_ms;
	now = time_mono_ms();
	if (when <= now)
		return 0;
	return when - now > INT_MAX ? INT_MAX : (int)(when - now);
}

/* ---- signals ---- */

static void
ev_signal_read(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct signalfd_siginfo si;
	struct ev_signal_slot *s;
	ssize_t n;

	while ((n = read(fd, &si, sizeof(si))) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo >= EV_MAX_SIGNAL)
			continue;
		s = &loop->sig[si.ssi_signo];
		if (s->cb != NULL)
			s->cb(loop, (int)si.ssi_signo, s->arg);
	}
}

static int
ev_signal_update(struct ev_loop *loop)
{
	int fd;

	fd = signalfd(loop->sigfd, &loop->sigmask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd == -1)
		return -1;
	if (loop->sigfd == -1) {
		loop->sigfd = fd;
		if (ev_io_set(loop, fd, EV_READ, ev_signal_read, NULL) == -1)
			return -1;
	}
	return 0;
}

int
ev_signal_add(struct ev_loop *loop, int signo, ev_signal_fn *cb, void *arg)
{
	sigset_t one;

	if (signo <= 0 || signo >= EV_MAX_SIGNAL || signo == SIGKILL || signo == SIGSTOP) {
		errno = EINVAL;
		return -1;
	}
	/* Blocked first, or the default action would run instead of the signalfd. */
	sigemptyset(&one);
	sigaddset(&one, signo);
	if (sigprocmask(SIG_BLOCK, &one, NULL) == -1)
		return -1;
	sigaddset(&loop->sigmask, signo);
	if (ev_signal_update(loop) == -1) {
		sigdelset(&loop->sigmask, signo);
		(void)sigprocmask(SIG_UNBLOCK, &one, NULL);
		return -1;
	}
	loop->sig[signo].cb = cb;
	loop->sig[signo].arg = arg;
	return 0;
}

int
ev_signal_del(struct ev_loop *loop, int signo)
{
	sigset_t one;

	if (signo <= 0 || signo >= EV_MAX_SIGNAL || !sigismember(&loop->sigmask, signo))
		return 0;
	sigdelset(&loop->sigmask, signo);
	loop->sig[signo].cb = NULL;
	loop->sig[signo].arg = NULL;
	if (ev_signal_update(loop) == -1)
		return -1;
	sigemptyset(&one);
	sigaddset(&one, signo);
	return sigprocmask(SIG_UNBLOCK, &one, NULL);
}

/* ---- hooks and the loop ---- */

int
ev_before_sleep(struct ev_loop *loop, ev_hook_fn *cb, void *arg)
{
	struct ev_hook *p;

	if ((p = reallocarray(loop->hooks, loop->nhooks + 1, sizeof(*p))) == NULL)
		return -1;
	loop->hooks = p;
	loop->hooks[loop->nhooks].cb = cb;
	loop->hooks[loop->nhooks].arg = arg;
	loop->nhooks++;
	return 0;
}

int
ev_run(struct ev_loop *loop)
{
	size_t i;
	int n;

	loop->stop = 0;
	while (!loop->stop) {
		for (i = 0; i < loop->nhooks; i++)
			loop->hooks[i].cb(loop, loop->hooks[i].arg);
		if (loop->stop)
			break;
		n = epoll_wait(loop->epfd, loop->events, EV_BATCH, ev_timeout_ms(loop));
		if (n == -1) {
			if (errno != EINTR)
				return -1;
			n = 0;
		}
		loop->now_ms = time_mono_ms();
		ev_io_dispatch(loop, n);
		ev_timer_run(loop);
	}
	return 0;
}
