/*
 * Unit tests for lib/control: request-line splitting and its bounds, reply parsing, and
 * real unix-socket round trips between the server on one event loop and clients in child
 * processes (the helper, raw overlong requests, a silent client, stale and live sockets).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "event.h"
#include "log.h"
#include "util.h"

#define SAFETY_MS 5000

static void
test_request_splits_words_on_blanks(void **state)
{
	struct control_request req;
	char err[CONTROL_ERR_MAX];
	const char line[] = "  drain\trelay1   smtp \r";

	assert_int_equal(control_request_parse(&req, line, sizeof(line) - 1, err, sizeof(err)), 0);
	assert_int_equal(req.argc, 3);
	assert_string_equal(req.argv[0], "drain");
	assert_string_equal(req.argv[1], "relay1");
	assert_string_equal(req.argv[2], "smtp");
	assert_null(req.argv[3]);
}

static void
test_request_rejects_empty_long_many_and_binary(void **state)
{
	struct control_request req;
	char err[CONTROL_ERR_MAX], big[CONTROL_REQUEST_MAX_BYTES + 10];
	const char many[] = "a b c d e f g h i";
	const char bell[] = "status\a";
	const char nul[] = {'s', 't', '\0', 'x'};

	assert_int_equal(control_request_parse(&req, " \t ", 3, err, sizeof(err)), -1);
	assert_string_equal(err, "empty request");
	memset(big, 'a', sizeof(big));
	assert_int_equal(control_request_parse(&req, big, sizeof(big), err, sizeof(err)), -1);
	assert_string_equal(err, "request too long");
	/* The longest that fits is accepted: one byte under the buffer for the terminator. */
	assert_int_equal(
	    control_request_parse(&req, big, CONTROL_REQUEST_MAX_BYTES - 1, err, sizeof(err)), 0);
	assert_int_equal(control_request_parse(&req, many, sizeof(many) - 1, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too many words"));
	assert_int_equal(control_request_parse(&req, bell, sizeof(bell) - 1, err, sizeof(err)), -1);
	assert_string_equal(err, "bad byte 0x07 in request");
	assert_int_equal(control_request_parse(&req, nul, sizeof(nul), err, sizeof(err)), -1);
	assert_string_equal(err, "bad byte 0x00 in request");
}

static void
test_reply_parse_tells_ok_error_and_garbage(void **state)
{
	const char *msg, *body;
	size_t msglen;
	int ok;

	assert_int_equal(control_reply_parse("ok\nline1\nline2\n", &ok, &msg, &msglen, &body), 0);
	assert_true(ok);
	assert_string_equal(body, "line1\nline2\n");
	assert_int_equal(
	    control_reply_parse("error: no relay named 'x'\n", &ok, &msg, &msglen, &body), 0);
	assert_false(ok);
	assert_int_equal(msglen, strlen("no relay named 'x'"));
	assert_memory_equal(msg, "no relay named 'x'", msglen);
	assert_int_equal(control_reply_parse("okay\n", &ok, &msg, &msglen, &body), -1);
	assert_int_equal(control_reply_parse("HTTP/1.1 200 OK\r\n", &ok, &msg, &msglen, &body), -1);
}

static void
test_reply_builder_truncates_at_its_bound(void **state)
{
	struct control_reply r;
	char chunk[4097];

	memset(&r, 0, sizeof(r));
	memset(chunk, 'x', sizeof(chunk) - 1);
	chunk[sizeof(chunk) - 1] = '\0';
	for (int i = 0; i < 300; i++)
		control_reply_printf(&r, "%s", chunk);
	assert_true(r.truncated);
	assert_true(r.len < CONTROL_REPLY_MAX_BYTES);
	assert_true(r.len >= CONTROL_REPLY_MAX_BYTES - sizeof(chunk));
	control_reply_error(&r, "bad\nthing");
	assert_true(r.failed);
	assert_string_equal(r.error, "bad thing");
	control_reply_free(&r);
}

/* ---- round trips ---- */

struct rt {
	struct ev_loop *loop;
	struct control_server *srv;
	char path[108];
	char dir[64];
	int pipe_rd;
	char got[8192];
	size_t gotlen;
	int timed_out;
	struct ev_timer safety;
	int handled;
};

static void
echo_handler(const struct control_request *req, struct control_reply *reply, void *arg)
{
	struct rt *rt = arg;

	rt->handled++;
	if (strcmp(req->argv[0], "fail") == 0) {
		control_reply_error(reply, "asked to fail with %d words", req->argc);
		return;
	}
	control_reply_printf(reply, "argc=%d", req->argc);
	for (int i = 0; i < req->argc; i++)
		control_reply_printf(reply, " [%s]", req->argv[i]);
	control_reply_printf(reply, "\n");
}

static void
rt_pipe_read(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct rt *rt = arg;
	ssize_t n = read(fd, rt->got + rt->gotlen, sizeof(rt->got) - 1 - rt->gotlen);

	if (n > 0) {
		rt->gotlen += (size_t)n;
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	rt->got[rt->gotlen] = '\0';
	(void)ev_io_del(loop, fd);
	ev_stop(loop);
}

static void
rt_safety(struct ev_loop *loop, void *arg)
{
	struct rt *rt = arg;

	rt->timed_out = 1;
	ev_stop(loop);
}

static int
rt_setup(void **state)
{
	struct rt *rt = calloc(1, sizeof(*rt));
	char err[CONTROL_ERR_MAX];

	assert_non_null(rt);
	(void)str_copy(rt->dir, sizeof(rt->dir), "/tmp/test_control.XXXXXX");
	assert_non_null(mkdtemp(rt->dir));
	assert_int_equal(str_format(rt->path, sizeof(rt->path), "%s/ctl.sock", rt->dir), 0);
	assert_non_null(rt->loop = ev_loop_new());
	rt->srv = control_server_new(rt->loop, rt->path, echo_handler, rt, err, sizeof(err));
	if (rt->srv == NULL)
		fail_msg("%s", err);
	*state = rt;
	return 0;
}

static int
rt_teardown(void **state)
{
	struct rt *rt = *state;

	control_server_free(rt->srv);
	ev_loop_free(rt->loop);
	(void)rmdir(rt->dir);
	free(rt);
	return 0;
}

typedef void rt_child_fn(struct rt *rt, int out);

/* Runs fn in a child that writes what it saw to a pipe; the loop serves until EOF. */
static void
rt_run(struct rt *rt, rt_child_fn *fn)
{
	int p[2], status;
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		fn(rt, p[1]);
		_exit(0);
	}
	close(p[1]);
	rt->pipe_rd = p[0];
	rt->gotlen = 0;
	rt->timed_out = 0;
	ev_timer_init(&rt->safety);
	assert_int_equal(ev_io_set(rt->loop, p[0], EV_READ, rt_pipe_read, rt), 0);
	assert_int_equal(ev_timer_start(rt->loop, &rt->safety, SAFETY_MS, rt_safety, rt), 0);
	assert_int_equal(ev_run(rt->loop), 0);
	ev_timer_stop(rt->loop, &rt->safety);
	(void)ev_io_del(rt->loop, p[0]);
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_false(rt->timed_out);
}

static void
child_write(int out, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = write(out, s, len);

		if (n <= 0)
			_exit(3);
		s += n;
		len -= (size_t)n;
	}
}

static void
child_helper_status(struct rt *rt, int out)
{
	char err[CONTROL_ERR_MAX], *reply;
	size_t len;

	if (control_client_request(rt->path, "drain relay1 smtp", 3000, &reply, &len, err,
	                           sizeof(err)) == -1) {
		child_write(out, "CLIENT ", 7);
		child_write(out, err, strlen(err));
		return;
	}
	child_write(out, reply, len);
	free(reply);
}

static void
test_roundtrip_through_the_client_helper(void **state)
{
	struct rt *rt = *state;
	struct stat st;

	assert_int_equal(stat(rt->path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 0777, CONTROL_SOCKET_MODE);
	rt_run(rt, child_helper_status);
	assert_string_equal(rt->got, "ok\nargc=3 [drain] [relay1] [smtp]\n");
	assert_int_equal(rt->handled, 1);
}

static void
child_helper_fail(struct rt *rt, int out)
{
	char err[CONTROL_ERR_MAX], *reply;
	size_t len;

	if (control_client_request(rt->path, "fail a", 3000, &reply, &len, err, sizeof(err)) == 0) {
		child_write(out, reply, len);
		free(reply);
	}
}

static void
test_handler_error_becomes_the_error_line(void **state)
{
	struct rt *rt = *state;

	rt_run(rt, child_helper_fail);
	assert_string_equal(rt->got, "error: asked to fail with 2 words\n");
}

/* A raw client: connects, sends bytes, reads until EOF, writes what it read. */
static void
child_raw(struct rt *rt, int out, const char *send_buf, size_t send_len)
{
	struct sockaddr_un sun;
	char buf[1024];
	ssize_t n;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	(void)str_copy(sun.sun_path, sizeof(sun.sun_path), rt->path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		_exit(4);
	if (send_len > 0 && write(fd, send_buf, send_len) != (ssize_t)send_len)
		_exit(5);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		child_write(out, buf, (size_t)n);
	child_write(out, "<EOF>", 5);
	close(fd);
}

static void
child_overlong(struct rt *rt, int out)
{
	char big[CONTROL_REQUEST_MAX_BYTES * 2 + 1];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\n';
	child_raw(rt, out, big, sizeof(big));
}

static void
test_overlong_request_is_answered_with_an_error(void **state)
{
	struct rt *rt = *state;

	rt_run(rt, child_overlong);
	assert_string_equal(rt->got, "error: request too long\n<EOF>");
	assert_int_equal(rt->handled, 0);
}

static void
child_two_lines(struct rt *rt, int out)
{
	static const char two[] = "first 1\nsecond 2\n";

	child_raw(rt, out, two, sizeof(two) - 1);
}

static void
test_one_request_per_connection(void **state)
{
	struct rt *rt = *state;

	rt_run(rt, child_two_lines);
	assert_string_equal(rt->got, "ok\nargc=2 [first] [1]\n<EOF>");
	assert_int_equal(rt->handled, 1);
}

static void
child_silent(struct rt *rt, int out)
{
	child_raw(rt, out, NULL, 0);
}

static void
test_silent_client_is_dropped_at_the_timeout(void **state)
{
	struct rt *rt = *state;
	uint64_t t0 = time_mono_ms();

	control_server_set_timeout(rt->srv, 100);
	rt_run(rt, child_silent);
	assert_string_equal(rt->got, "<EOF>");
	assert_true(time_mono_ms() - t0 >= 100);
	assert_int_equal(rt->handled, 0);
}

static void
test_live_socket_is_not_taken_over_and_stale_one_is(void **state)
{
	struct rt *rt = *state;
	struct control_server *other;
	char err[CONTROL_ERR_MAX];
	struct sockaddr_un sun;
	int fd;

	other = control_server_new(rt->loop, rt->path, echo_handler, rt, err, sizeof(err));
	assert_null(other);
	assert_non_null(strstr(err, "in use"));

	/* A socket file nobody listens on (a crashed daemon's) is replaced. */
	control_server_free(rt->srv);
	rt->srv = NULL;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	(void)str_copy(sun.sun_path, sizeof(sun.sun_path), rt->path);
	assert_true((fd = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	rt->srv = control_server_new(rt->loop, rt->path, echo_handler, rt, err, sizeof(err));
	if (rt->srv == NULL)
		fail_msg("%s", err);
	rt_run(rt, child_helper_status);
	assert_string_equal(rt->got, "ok\nargc=3 [drain] [relay1] [smtp]\n");
}

static void
test_renamed_socket_keeps_answering_and_frees_its_new_name(void **state)
{
	struct rt *rt = *state;
	struct control_server *successor;
	char old[sizeof(rt->path)], err[CONTROL_ERR_MAX];
	struct stat st;

	(void)str_copy(old, sizeof(old), rt->path);
	assert_int_equal(str_format(rt->path, sizeof(rt->path), "%s/ctl.sock.old", rt->dir), 0);
	if (control_server_rename(rt->srv, rt->path, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	assert_int_equal(lstat(old, &st), -1);
	rt_run(rt, child_helper_status);
	assert_string_equal(rt->got, "ok\nargc=3 [drain] [relay1] [smtp]\n");

	/* The old name is free for a successor, and freeing the renamed server spares it. */
	successor = control_server_new(rt->loop, old, echo_handler, rt, err, sizeof(err));
	if (successor == NULL)
		fail_msg("%s", err);
	control_server_free(rt->srv);
	rt->srv = NULL;
	assert_int_equal(lstat(rt->path, &st), -1);
	assert_int_equal(lstat(old, &st), 0);
	control_server_free(successor);
	assert_int_equal(lstat(old, &st), -1);
}

static void
test_rename_to_an_impossible_path_keeps_the_socket(void **state)
{
	struct rt *rt = *state;
	char err[CONTROL_ERR_MAX];

	assert_int_equal(
	    control_server_rename(rt->srv, "/nonexistent/dir/ctl.sock", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "rename"));
	rt_run(rt, child_helper_status);
	assert_string_equal(rt->got, "ok\nargc=3 [drain] [relay1] [smtp]\n");
}

static void
test_regular_file_at_the_path_is_left_alone(void **state)
{
	char path[] = "/tmp/test_control_file.XXXXXX", err[CONTROL_ERR_MAX];
	struct ev_loop *loop = ev_loop_new();
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	assert_null(control_server_new(loop, path, echo_handler, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(access(path, F_OK), 0);
	(void)unlink(path);
	ev_loop_free(loop);
}

static void
test_client_reports_a_missing_daemon(void **state)
{
	char err[CONTROL_ERR_MAX], *reply = NULL;
	size_t len;

	assert_int_equal(control_client_request("/nonexistent/mailplex.sock", "status", 1000,
	                                        &reply, &len, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "No such file"));
	assert_null(reply);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_splits_words_on_blanks),
	    cmocka_unit_test(test_request_rejects_empty_long_many_and_binary),
	    cmocka_unit_test(test_reply_parse_tells_ok_error_and_garbage),
	    cmocka_unit_test(test_reply_builder_truncates_at_its_bound),
	    cmocka_unit_test_setup_teardown(test_roundtrip_through_the_client_helper, rt_setup,
	                                    rt_teardown),
	    cmocka_unit_test_setup_teardown(test_handler_error_becomes_the_error_line, rt_setup,
	                                    rt_teardown),
	    cmocka_unit_test_setup_teardown(test_overlong_request_is_answered_with_an_error,
	                                    rt_setup, rt_teardown),
	    cmocka_unit_test_setup_teardown(test_one_request_per_connection, rt_setup, rt_teardown),
	    cmocka_unit_test_setup_teardown(test_silent_client_is_dropped_at_the_timeout, rt_setup,
	                                    rt_teardown),
	    cmocka_unit_test_setup_teardown(test_live_socket_is_not_taken_over_and_stale_one_is,
	                                    rt_setup, rt_teardown),
	    cmocka_unit_test_setup_teardown(
	        test_renamed_socket_keeps_answering_and_frees_its_new_name, rt_setup, rt_teardown),
	    cmocka_unit_test_setup_teardown(test_rename_to_an_impossible_path_keeps_the_socket,
	                                    rt_setup, rt_teardown),
	    cmocka_unit_test(test_regular_file_at_the_path_is_left_alone),
	    cmocka_unit_test(test_client_reports_a_missing_daemon),
	};

	log_init("test_control", 1, LOG_LEVEL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
