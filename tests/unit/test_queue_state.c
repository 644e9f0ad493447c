/*
 * Unit tests for the queue runner's delivery log and back-off (relay/queue_state.c):
 * records replay to the same state, a torn or corrupt tail is ignored and cut off on
 * open, a delivered recipient never becomes pending again, and the back-off doubles up
 * to its ceiling.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../relay/queue_state.h"

static size_t
put_rcpt(char *buf, size_t off, size_t idx, enum queue_rcpt_state s, const char *reply)
{
	int n = queue_state_fmt_rcpt(buf + off, QUEUE_STATE_RECORD_MAX, idx, s, reply);

	assert_true(n > 0);
	return off + (size_t)n;
}

static void
test_records_replay_to_the_same_state(void **state)
{
	char buf[4096];
	struct queue_state st;
	size_t off = 0;
	int n;

	(void)state;
	off = put_rcpt(buf, off, 0, QUEUE_RCPT_DELIVERED, "250 2.0.0 <a@x> Saved");
	off = put_rcpt(buf, off, 2, QUEUE_RCPT_FAILED, "550 5.1.1 no such user");
	n = queue_state_fmt_attempt(buf + off, sizeof(buf) - off, 3, 1700000000);
	assert_true(n > 0);
	off += (size_t)n;
	n = queue_state_fmt_hold(buf + off, sizeof(buf) - off, 1);
	assert_true(n > 0);
	off += (size_t)n;
	assert_int_equal(queue_state_init(&st, 3), 0);
	queue_state_replay(&st, buf, off);
	assert_int_equal(st.torn, 0);
	assert_int_equal(st.valid_len, off);
	assert_int_equal(st.rcpt[0].state, QUEUE_RCPT_DELIVERED);
	assert_string_equal(st.rcpt[0].reply, "250 2.0.0 <a@x> Saved");
	assert_int_equal(st.rcpt[1].state, QUEUE_RCPT_PENDING);
	assert_int_equal(st.rcpt[2].state, QUEUE_RCPT_FAILED);
	assert_int_equal(st.attempts, 3);
	assert_int_equal(st.next_try, 1700000000);
	assert_int_equal(st.held, 1);
	queue_state_free(&st);
}

static void
test_torn_last_record_is_ignored(void **state)
{
	char buf[4096];
	struct queue_state st;
	size_t off = 0, whole, cut;

	(void)state;
	off = put_rcpt(buf, off, 0, QUEUE_RCPT_DELIVERED, "250 ok");
	whole = off;
	off = put_rcpt(buf, off, 1, QUEUE_RCPT_DELIVERED, "250 ok");
	/* Every cut inside the second record leaves only the first. */
	for (cut = whole; cut < off; cut++) {
		assert_int_equal(queue_state_init(&st, 2), 0);
		queue_state_replay(&st, buf, cut);
		assert_int_equal(st.valid_len, whole);
		assert_int_equal(st.torn, cut > whole);
		assert_int_equal(st.rcpt[0].state, QUEUE_RCPT_DELIVERED);
		assert_int_equal(st.rcpt[1].state, QUEUE_RCPT_PENDING);
		queue_state_free(&st);
	}
}

static void
test_corrupt_record_and_everything_after_it_are_ignored(void **state)
{
	char buf[4096];
	struct queue_state st;
	size_t off = 0, first;

	(void)state;
	off = put_rcpt(buf, off, 0, QUEUE_RCPT_FAILED, "550 no");
	first = off;
	off = put_rcpt(buf, off, 1, QUEUE_RCPT_DELIVERED, "250 ok");
	buf[first + 2] = '0'; /* "R 1" -> "R 0": the checksum no longer matches */
	off = put_rcpt(buf, off, 1, QUEUE_RCPT_DELIVERED, "250 ok");
	assert_int_equal(queue_state_init(&st, 2), 0);
	queue_state_replay(&st, buf, off);
	assert_int_equal(st.valid_len, first);
	assert_int_equal(st.torn, 1);
	assert_int_equal(st.rcpt[0].state, QUEUE_RCPT_FAILED);
	assert_int_equal(st.rcpt[1].state, QUEUE_RCPT_PENDING);
	queue_state_free(&st);
}

static void
test_recipient_out_of_range_is_corrupt(void **state)
{
	char buf[512];
	struct queue_state st;
	size_t off;

	(void)state;
	off = put_rcpt(buf, 0, 5, QUEUE_RCPT_DELIVERED, "250 ok");
	assert_int_equal(queue_state_init(&st, 2), 0);
	queue_state_replay(&st, buf, off);
	assert_int_equal(st.valid_len, 0);
	assert_int_equal(st.torn, 1);
	queue_state_free(&st);
}

static void
test_delivered_is_never_undone(void **state)
{
	char buf[1024];
	struct queue_state st;
	size_t off = 0;

	(void)state;
	off = put_rcpt(buf, off, 0, QUEUE_RCPT_DELIVERED, "250 ok");
	off = put_rcpt(buf, off, 0, QUEUE_RCPT_PENDING, "451 later");
	off = put_rcpt(buf, off, 0, QUEUE_RCPT_FAILED, "550 no");
	assert_int_equal(queue_state_init(&st, 1), 0);
	queue_state_replay(&st, buf, off);
	assert_int_equal(st.rcpt[0].state, QUEUE_RCPT_DELIVERED);
	queue_state_free(&st);
}

static void
test_reply_text_cannot_forge_a_record(void **state)
{
	char buf[1024];
	struct queue_state st;
	size_t off;

	(void)state;
	off = put_rcpt(buf, 0, 0, QUEUE_RCPT_FAILED, "550 x\nR 1 D y #00000000\n");
	assert_int_equal(queue_state_init(&st, 2), 0);
	queue_state_replay(&st, buf, off);
	assert_int_equal(st.torn, 0);
	assert_int_equal(st.rcpt[0].state, QUEUE_RCPT_FAILED);
	assert_int_equal(st.rcpt[1].state, QUEUE_RCPT_PENDING);
	queue_state_free(&st);
}

static void
test_open_cuts_a_torn_tail_and_appends_after_it(void **state)
{
	char dir[] = "/tmp/test_queue_state.XXXXXX", path[256], rec[QUEUE_STATE_RECORD_MAX];
	char err[256];
	struct queue_state st;
	struct stat sb;
	int fd, n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/Q1", dir);
	assert_int_equal(queue_state_init(&st, 2), 0);
	fd = queue_state_open(dir, "Q1", &st, err, sizeof(err));
	assert_true(fd >= 0);
	n = queue_state_fmt_rcpt(rec, sizeof(rec), 0, QUEUE_RCPT_DELIVERED, "250 ok");
	assert_int_equal(queue_state_append(fd, rec, (size_t)n, err, sizeof(err)), 0);
	/* A crash in the middle of the next record. */
	assert_int_equal(queue_state_append(fd, "R 1 D 25", 8, err, sizeof(err)), 0);
	close(fd);
	queue_state_free(&st);

	assert_int_equal(queue_state_init(&st, 2), 0);
	fd = queue_state_open(dir, "Q1", &st, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(st.torn, 1);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal((size_t)sb.st_size, (size_t)n);
	assert_int_equal(queue_state_append(fd, rec, (size_t)n, err, sizeof(err)), 0);
	close(fd);
	queue_state_free(&st);

	assert_int_equal(queue_state_init(&st, 2), 0);
	fd = queue_state_open(dir, "Q1", &st, err, sizeof(err));
	assert_true(fd >= 0);
	assert_int_equal(st.torn, 0);
	assert_int_equal(st.rcpt[0].state, QUEUE_RCPT_DELIVERED);
	close(fd);
	queue_state_free(&st);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

static void
test_backoff_doubles_up_to_the_maximum(void **state)
{
	(void)state;
	assert_int_equal(queue_backoff_ms(1, 300000, 3600000), 300000);
	assert_int_equal(queue_backoff_ms(2, 300000, 3600000), 600000);
	assert_int_equal(queue_backoff_ms(3, 300000, 3600000), 1200000);
	assert_int_equal(queue_backoff_ms(4, 300000, 3600000), 2400000);
	assert_int_equal(queue_backoff_ms(5, 300000, 3600000), 3600000);
	assert_int_equal(queue_backoff_ms(1000000, 300000, 3600000), 3600000);
	assert_int_equal(queue_backoff_ms(70, UINT64_MAX / 3, UINT64_MAX), UINT64_MAX);
	assert_int_equal(queue_backoff_ms(3, 5000, 1000), 1000);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records_replay_to_the_same_state),
	    cmocka_unit_test(test_torn_last_record_is_ignored),
	    cmocka_unit_test(test_corrupt_record_and_everything_after_it_are_ignored),
	    cmocka_unit_test(test_recipient_out_of_range_is_corrupt),
	    cmocka_unit_test(test_delivered_is_never_undone),
	    cmocka_unit_test(test_reply_text_cannot_forge_a_record),
	    cmocka_unit_test(test_open_cuts_a_torn_tail_and_appends_after_it),
	    cmocka_unit_test(test_backoff_doubles_up_to_the_maximum),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
