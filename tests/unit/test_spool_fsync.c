/*
 * Unit tests for relay/spool_fsync: every job lent to the pool comes back exactly once,
 * with its own fsync result (0 for a file, the errno for a descriptor that cannot be
 * fsynced), announced by the eventfd; wait-then-done returns everything (the shutdown
 * path); the bound on lent jobs is kept; a bad thread count is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../relay/spool_fsync.h"
#include "util.h"

#define NJOBS       96
#define POLL_ROUNDS 600 /* a hang guard, not a timing assertion: 600 x 100 ms */

struct tjob {
	struct spool_fsync_job job;
	int back; /* times it came back from done */
	int want; /* the fsync result expected */
};

/* Collects finished jobs until n are back, waking on the eventfd; returns how many came. */
static int
collect(struct spool_fsync *p, int n)
{
	struct pollfd pfd = {.fd = spool_fsync_eventfd(p), .events = POLLIN};
	struct spool_fsync_job *j;
	int got = 0, round;

	for (round = 0; round < POLL_ROUNDS && got < n; round++) {
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		for (j = spool_fsync_done(p); j != NULL; j = j->next) {
			((struct tjob *)j->arg)->back++;
			got++;
		}
	}
	return got;
}

static void
test_every_job_comes_back_once_with_its_own_result(void **state)
{
	char path[] = "/tmp/test_spool_fsync.XXXXXX", err[256];
	struct tjob *t = calloc(NJOBS, sizeof(*t));
	struct spool_fsync *p;
	int fd, pfd[2], i;

	assert_non_null(t);
	assert_true((fd = mkstemp(path)) >= 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(write(fd, "x", 1), 1);
	assert_int_equal(pipe(pfd), 0);
	assert_non_null(p = spool_fsync_new(4, err, sizeof(err)));
	for (i = 0; i < NJOBS; i++) {
		/* a file syncs; a pipe cannot be fsynced: EINVAL must come back with that job */
		t[i].job.fd = i % 3 == 0 ? pfd[0] : fd;
		t[i].want = i % 3 == 0 ? EINVAL : 0;
		t[i].job.arg = &t[i];
		assert_int_equal(spool_fsync_submit(p, &t[i].job), 0);
	}
	assert_int_equal(collect(p, NJOBS), NJOBS);
	for (i = 0; i < NJOBS; i++) {
		assert_int_equal(t[i].back, 1);
		assert_int_equal(t[i].job.error, t[i].want);
	}
	assert_int_equal(spool_fsync_pending(p), 0);
	assert_null(spool_fsync_done(p));
	spool_fsync_free(p);
	close(fd);
	close(pfd[0]);
	close(pfd[1]);
	free(t);
}

/* The shutdown path: wait blocks until all are done; one done call then returns them all. */
static void
test_wait_then_done_returns_every_job(void **state)
{
	char err[256];
	struct tjob t[NJOBS];
	struct spool_fsync *p;
	struct spool_fsync_job *j;
	int fd, i, got = 0;

	memset(t, 0, sizeof(t));
	assert_true((fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) >= 0);
	assert_non_null(p = spool_fsync_new(2, err, sizeof(err)));
	for (i = 0; i < NJOBS; i++) {
		t[i].job.fd = fd;
		t[i].job.arg = &t[i];
		assert_int_equal(spool_fsync_submit(p, &t[i].job), 0);
	}
	assert_int_equal(spool_fsync_pending(p), NJOBS);
	spool_fsync_wait(p);
	for (j = spool_fsync_done(p); j != NULL; j = j->next) {
		((struct tjob *)j->arg)->back++;
		got++;
	}
	assert_int_equal(got, NJOBS);
	for (i = 0; i < NJOBS; i++)
		assert_int_equal(t[i].back, 1);
	assert_int_equal(spool_fsync_pending(p), 0);
	spool_fsync_free(p);
	close(fd);
}

/* No more than SPOOL_FSYNC_QUEUE_MAX jobs out: the next is refused until some come back. */
static void
test_submit_refuses_past_the_bound_until_jobs_are_collected(void **state)
{
	char err[256];
	struct tjob *t = calloc(SPOOL_FSYNC_QUEUE_MAX + 1, sizeof(*t));
	struct spool_fsync *p;
	int fd, i;

	assert_non_null(t);
	assert_true((fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) >= 0);
	assert_non_null(p = spool_fsync_new(1, err, sizeof(err)));
	for (i = 0; i < SPOOL_FSYNC_QUEUE_MAX; i++) {
		t[i].job.fd = fd;
		t[i].job.arg = &t[i];
		assert_int_equal(spool_fsync_submit(p, &t[i].job), 0);
	}
	t[i].job.fd = fd;
	t[i].job.arg = &t[i];
	errno = 0;
	assert_int_equal(spool_fsync_submit(p, &t[i].job), -1);
	assert_int_equal(errno, EAGAIN);
	assert_int_equal(collect(p, SPOOL_FSYNC_QUEUE_MAX), SPOOL_FSYNC_QUEUE_MAX);
	assert_int_equal(spool_fsync_submit(p, &t[i].job), 0);
	assert_int_equal(collect(p, 1), 1);
	for (i = 0; i <= SPOOL_FSYNC_QUEUE_MAX; i++)
		assert_int_equal(t[i].back, 1);
	spool_fsync_free(p);
	close(fd);
	free(t);
}

/* Freeing a pool with jobs queued finishes them first: no thread is left on a lent job. */
static void
test_free_finishes_queued_jobs(void **state)
{
	char err[256];
	struct tjob t[8];
	struct spool_fsync *p;
	int fd, i;

	memset(t, 0, sizeof(t));
	assert_true((fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) >= 0);
	assert_non_null(p = spool_fsync_new(1, err, sizeof(err)));
	for (i = 0; i < 8; i++) {
		t[i].job.fd = fd;
		t[i].job.error = -1;
		assert_int_equal(spool_fsync_submit(p, &t[i].job), 0);
	}
	spool_fsync_free(p);
	for (i = 0; i < 8; i++)
		assert_int_equal(t[i].job.error, EINVAL); /* /dev/null: fsync ran, and failed */
	close(fd);
}

static void
test_bad_thread_count_is_refused(void **state)
{
	char err[256];

	err[0] = '\0';
	assert_null(spool_fsync_new(0, err, sizeof(err)));
	assert_non_null(strstr(err, "fsync threads"));
	assert_null(spool_fsync_new(SPOOL_FSYNC_THREADS_MAX + 1, err, sizeof(err)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_job_comes_back_once_with_its_own_result),
	    cmocka_unit_test(test_wait_then_done_returns_every_job),
	    cmocka_unit_test(test_submit_refuses_past_the_bound_until_jobs_are_collected),
	    cmocka_unit_test(test_free_finishes_queued_jobs),
	    cmocka_unit_test(test_bad_thread_count_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
