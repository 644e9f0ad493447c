/*
 * Unit tests for lib/daemon: an unknown user is refused with its name; as root, the drop
 * to "nobody" changes every id and root cannot be regained (run in a child, since it is
 * for good); the descriptor limit reaches the hard limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pwd.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"

static void
test_unknown_user_is_refused_by_name(void **state)
{
	char err[256];
	uid_t uid;
	gid_t gid;

	assert_int_equal(daemon_user_lookup("no-such-user-mailplex", &uid, &gid, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "no-such-user-mailplex"));
	assert_int_equal(daemon_user_lookup("root", &uid, &gid, err, sizeof(err)), 0);
	assert_int_equal(uid, 0);
}

static void
test_drop_is_complete_and_permanent(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	char err[256];
	pid_t pid;
	int status;

	if (geteuid() != 0 || pw == NULL) {
		/* not root: there is nothing to drop, and the call says so */
		assert_int_equal(daemon_drop_privileges("nobody", err, sizeof(err)), 1);
		return;
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uid_t r, e, s;
		gid_t gr, ge, gs;

		if (daemon_drop_privileges("nobody", err, sizeof(err)) != 0)
			_exit(2);
		if (getresuid(&r, &e, &s) == -1 || r != pw->pw_uid || e != pw->pw_uid ||
		    s != pw->pw_uid)
			_exit(3);
		if (getresgid(&gr, &ge, &gs) == -1 || gr != pw->pw_gid || ge != pw->pw_gid ||
		    gs != pw->pw_gid)
			_exit(4);
		if (setuid(0) != -1 || seteuid(0) != -1)
			_exit(5);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_nofile_reaches_the_hard_limit(void **state)
{
	struct rlimit rl;
	char err[256];

	assert_int_equal(daemon_raise_nofile(err, sizeof(err)), 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	assert_true(rl.rlim_cur == rl.rlim_max);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_unknown_user_is_refused_by_name),
	    cmocka_unit_test(test_drop_is_complete_and_permanent),
	    cmocka_unit_test(test_nofile_reaches_the_hard_limit),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
