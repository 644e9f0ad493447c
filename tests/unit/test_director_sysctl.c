/*
 * Unit tests for director/sysctl.c against a fake /proc tree: a sysctl name maps to its
 * file, NAT asks for forwarding (v4 or v6 by the VIP), every setup is told about
 * expire_nodest_conn, persistence about expire_quiescent_template, and each missing or
 * unreadable setting gives exactly one warning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "director.h"
#include "log.h"
#include "util.h"

struct fake {
	char root[64];
	char msgs[8][DIRECTOR_ERR_MAX];
	size_t n;
};

static void
fake_write(struct fake *f, const char *rel, const char *text)
{
	char path[256], dir[256], *slash;
	FILE *fp;

	assert_int_equal(str_format(path, sizeof(path), "%s/sys/%s", f->root, rel), 0);
	(void)str_copy(dir, sizeof(dir), path);
	/* mkdir -p of the folders on the way. */
	for (slash = strchr(dir + strlen(f->root) + 1, '/'); slash != NULL;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST)
			fail_msg("mkdir %s: %s", dir, strerror(errno));
		*slash = '/';
	}
	assert_non_null(fp = fopen(path, "w"));
	fputs(text, fp);
	assert_int_equal(fclose(fp), 0);
}

static void
collect(void *arg, const char *msg)
{
	struct fake *f = arg;

	assert_true(f->n < ARRAY_LEN(f->msgs));
	(void)str_copy(f->msgs[f->n++], sizeof(f->msgs[0]), msg);
}

static int
fake_setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	(void)str_copy(f->root, sizeof(f->root), "/tmp/test_sysctl.XXXXXX");
	assert_non_null(mkdtemp(f->root));
	fake_write(f, "net/ipv4/ip_forward", "1\n");
	fake_write(f, "net/ipv6/conf/all/forwarding", "1\n");
	fake_write(f, "net/ipv4/vs/expire_nodest_conn", "1\n");
	fake_write(f, "net/ipv4/vs/expire_quiescent_template", "1\n");
	*state = f;
	return 0;
}

static int
fake_teardown(void **state)
{
	struct fake *f = *state;
	char cmd[128];

	assert_int_equal(str_format(cmd, sizeof(cmd), "rm -rf '%s'", f->root), 0);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static size_t
run(struct fake *f, const char *conf_text)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];
	size_t n;

	if (mailplex_conf_load_string(conf_text, "t.conf", &c, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	f->n = 0;
	n = sysctl_check(f->root, &c.director, collect, f);
	mailplex_conf_free(&c);
	assert_int_equal(n, f->n);
	return n;
}

static const char nat4[] = "director = { services = ( { name = \"s\"; vip = \"192.0.2.1:25\"; "
                           "forwarding = \"nat\"; } ); };";
static const char nat6[] = "director = { services = ( { name = \"s\"; vip = \"[2001:db8::1]:25\";"
                           " forwarding = \"nat\"; } ); };";
static const char dr_persist[] = "director = { services = ( { name = \"s\"; vip = "
                                 "\"192.0.2.1:143\"; persistence = \"5m\"; } ); };";

static void
test_sysctl_read_maps_dots_to_folders(void **state)
{
	struct fake *f = *state;
	long v = -1;

	fake_write(f, "net/ipv4/vs/expire_nodest_conn", "0\n");
	assert_int_equal(sysctl_read(f->root, "net.ipv4.vs.expire_nodest_conn", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(sysctl_read(f->root, "net.ipv4.no_such_thing", &v), -1);
	assert_int_equal(errno, ENOENT);
	fake_write(f, "net/ipv4/ip_forward", "yes\n");
	assert_int_equal(sysctl_read(f->root, "net.ipv4.ip_forward", &v), -1);
	assert_int_equal(errno, EINVAL);
}

static void
test_everything_set_gives_no_warning(void **state)
{
	struct fake *f = *state;

	assert_int_equal(run(f, nat4), 0);
	assert_int_equal(run(f, nat6), 0);
	assert_int_equal(run(f, dr_persist), 0);
	/* No service: nothing to need. */
	fake_write(f, "net/ipv4/vs/expire_nodest_conn", "0\n");
	assert_int_equal(run(f, ""), 0);
}

static void
test_nat_without_ip_forward_warns_once(void **state)
{
	struct fake *f = *state;
	static const char two_nat[] =
	    "director = { services = ( { name = \"a\"; vip = \"192.0.2.1:25\"; forwarding = "
	    "\"nat\"; },"
	    " { name = \"b\"; vip = \"192.0.2.1:110\"; forwarding = \"nat\"; } ); };";

	fake_write(f, "net/ipv4/ip_forward", "0\n");
	assert_int_equal(run(f, two_nat), 1);
	assert_non_null(strstr(f->msgs[0], "net.ipv4.ip_forward is 0, should be 1"));
	assert_non_null(strstr(f->msgs[0], "sysctl -w net.ipv4.ip_forward=1"));
	/* DR does not route replies through the director. */
	assert_int_equal(
	    run(f, "director = { services = ( { name = \"s\"; vip = \"192.0.2.1:25\"; } ); };"), 0);
}

static void
test_nat_v6_checks_v6_forwarding_only(void **state)
{
	struct fake *f = *state;

	fake_write(f, "net/ipv4/ip_forward", "0\n");
	assert_int_equal(run(f, nat6), 0);
	fake_write(f, "net/ipv6/conf/all/forwarding", "0\n");
	assert_int_equal(run(f, nat6), 1);
	assert_non_null(strstr(f->msgs[0], "net.ipv6.conf.all.forwarding is 0"));
}

static void
test_expire_settings_are_recommended(void **state)
{
	struct fake *f = *state;

	fake_write(f, "net/ipv4/vs/expire_nodest_conn", "0\n");
	fake_write(f, "net/ipv4/vs/expire_quiescent_template", "0\n");
	assert_int_equal(run(f, dr_persist), 2);
	assert_non_null(strstr(f->msgs[0], "net.ipv4.vs.expire_nodest_conn is 0"));
	assert_non_null(strstr(f->msgs[1], "net.ipv4.vs.expire_quiescent_template is 0"));
	/* Without persistence there are no templates to expire. */
	assert_int_equal(
	    run(f, "director = { services = ( { name = \"s\"; vip = \"192.0.2.1:25\"; } ); };"), 1);
}

static void
test_unreadable_setting_is_reported(void **state)
{
	struct fake *f = *state;
	char path[256];

	assert_int_equal(
	    str_format(path, sizeof(path), "%s/sys/net/ipv4/vs/expire_nodest_conn", f->root), 0);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(run(f, nat4), 1);
	assert_non_null(strstr(f->msgs[0], "net.ipv4.vs.expire_nodest_conn cannot be read"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, fake_setup, fake_teardown)
	    T(test_sysctl_read_maps_dots_to_folders),  T(test_everything_set_gives_no_warning),
	    T(test_nat_without_ip_forward_warns_once), T(test_nat_v6_checks_v6_forwarding_only),
	    T(test_expire_settings_are_recommended),   T(test_unreadable_setting_is_reported),
#undef T
	};

	log_init("test_director_sysctl", 1, LOG_LEVEL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
