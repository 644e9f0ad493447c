/*
 * The event loop: one per process, epoll for descriptors, a min-heap of timers, signals
 * through signalfd, and hooks run before each sleep. Callbacks run on the loop's thread
 * and must not block. The loop owns no descriptor it was given: closing is the caller's.
 */
#ifndef MAILPLEX_EVENT_H
#define MAILPLEX_EVENT_H

#include <stddef.h>
#include <stdint.h>

#define EV_READ  0x01
#define EV_WRITE 0x02

struct ev_loop;

/* events: EV_READ and/or EV_WRITE; an error or hangup is reported as both. */
typedef void ev_io_fn(struct ev_loop *loop, int fd, int events, void *arg);
typedef void ev_timer_fn(struct ev_loop *loop, void *arg);
typedef void ev_signal_fn(struct ev_loop *loop, int signo, void *arg);
typedef void ev_hook_fn(struct ev_loop *loop, void *arg);

/*
 * Embedded in the owner's struct: starting a timer allocates nothing. Zero it (or
 * ev_timer_init) before first use. Fields are the loop's.
 */
struct ev_timer {
	uint64_t when_ms;
	uint64_t seq; /* orders timers with the same deadline: first started, first run */
	size_t heap_idx;
	ev_timer_fn *cb;
	void *arg;
};

struct ev_loop *ev_loop_new(void);
/* Unblocks the signals it blocked; closes only its own epoll and signal descriptors. */
void ev_loop_free(struct ev_loop *loop);
/* Runs until ev_stop. 0 after ev_stop, -1 (errno) if epoll_wait failed. */
int ev_run(struct ev_loop *loop);
void ev_stop(struct ev_loop *loop);
/* Monotonic milliseconds, read once per iteration (cheap: callbacks use this). */
uint64_t ev_now_ms(const struct ev_loop *loop);
/*
 * Re-reads the clock. For a callback that starts a timed operation late in a busy
 * iteration: a timer armed from the stale time would fire early by that much.
 */
void ev_now_update(struct ev_loop *loop);

/* Add, change or (events == 0) remove the watcher of fd. 0, or -1 with errno. */
int ev_io_set(struct ev_loop *loop, int fd, int events, ev_io_fn *cb, void *arg);
/* Remove before close(): a pending event of this batch for fd will not be delivered. */
int ev_io_del(struct ev_loop *loop, int fd);
/*
 * Forgets fd's watcher and closes fd, without EPOLL_CTL_DEL: closing the last reference
 * takes a descriptor out of the epoll set (nginx's NGX_CLOSE_EVENT). Only for a descriptor
 * this process alone holds: never dup'ed, inherited by a fork, or passed on. Returns close's.
 */
int ev_io_close(struct ev_loop *loop, int fd);

void ev_timer_init(struct ev_timer *t);
/* Arms t to fire once, delay_ms after ev_now_ms; re-arms if it was running. */
int ev_timer_start(struct ev_loop *loop, struct ev_timer *t, uint64_t delay_ms, ev_timer_fn *cb,
                   void *arg);
/* Disarms t; harmless if it is not running. */
void ev_timer_stop(struct ev_loop *loop, struct ev_timer *t);
int ev_timer_active(const struct ev_timer *t);

/*
 * Blocks signo and delivers it through signalfd. Signals coalesce: one callback may
 * stand for several deliveries (SIGCHLD: reap with waitpid(WNOHANG) in a loop).
 */
int ev_signal_add(struct ev_loop *loop, int signo, ev_signal_fn *cb, void *arg);
int ev_signal_del(struct ev_loop *loop, int signo);

/* cb runs every iteration before the loop sleeps (group commit: fsync, then reply). */
int ev_before_sleep(struct ev_loop *loop, ev_hook_fn *cb, void *arg);

#endif
