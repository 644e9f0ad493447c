/*
 * Unit tests for director/vrrp.c: the keepalived.conf printed from a mailplex.conf (text
 * compared whole, then accepted by `keepalived -t` when keepalived is installed), the
 * refusals, the notify-line parser and the FIFO reader's line splitting and state table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "director.h"
#include "log.h"

static const char conf_text[] =
    "director = {\n"
    "  vrrp = { interface = \"eth0\"; router_id = 51; priority = 150;\n"
    "           advert_interval = \"100ms\"; preempt = false; fifo = \"/run/mp/vrrp.fifo\"; };\n"
    "  services = ( { name = \"smtp\"; vip = \"192.0.2.10:25\"; },\n"
    "               { name = \"imap\"; vip = \"192.0.2.10:143\"; },\n"
    "               { name = \"smtp2\"; vip = \"192.0.2.11:25\"; },\n"
    "               { name = \"imap6\"; vip = \"[2001:db8::10]:143\"; forwarding = \"tun\"; } );\n"
    "  relays = ( { name = \"relay1\"; address = \"10.0.0.21\"; } );\n"
    "};\n";

static const char expected[] =
    "# keepalived.conf written by mailplex-director --keepalived-conf from /etc/m.conf\n"
    "global_defs {\n"
    "    vrrp_version 3\n"
    "    vrrp_notify_fifo /run/mp/vrrp.fifo\n"
    "    script_user root\n"
    "    enable_script_security\n"
    "}\n"
    "\n"
    "# The VIPs go when the director is dead or its last pass failed.\n"
    "vrrp_script mailplex_director {\n"
    "    script \"/usr/sbin/mailplex-director --health -f /etc/m.conf\"\n"
    "    interval 1\n"
    "    timeout 2\n"
    "    fall 2\n"
    "    rise 1\n"
    "}\n"
    "\n"
    "vrrp_instance mailplex_v4 {\n"
    "    state BACKUP\n"
    "    interface eth0\n"
    "    virtual_router_id 51\n"
    "    priority 150\n"
    "    advert_int 0.10\n"
    "    nopreempt\n"
    "    virtual_ipaddress {\n"
    "        192.0.2.10/32 dev eth0\n"
    "        192.0.2.11/32 dev eth0\n"
    "    }\n"
    "    track_script {\n"
    "        mailplex_director\n"
    "    }\n"
    "}\n"
    "\n"
    "vrrp_instance mailplex_v6 {\n"
    "    state BACKUP\n"
    "    interface eth0\n"
    "    virtual_router_id 51\n"
    "    priority 150\n"
    "    advert_int 0.10\n"
    "    nopreempt\n"
    "    virtual_ipaddress {\n"
    "        2001:db8::10/128 dev eth0\n"
    "    }\n"
    "    track_script {\n"
    "        mailplex_director\n"
    "    }\n"
    "}\n";

/* Generates into a string; returns the rc of vrrp_keepalived_conf. */
static int
generate(const char *text, const char *exe, char **out, char *err, size_t errlen)
{
	struct mailplex_conf c;
	size_t len = 0;
	FILE *f;
	int rc;

	assert_int_equal(mailplex_conf_load_string(text, "m.conf", &c, err, errlen), 0);
	assert_non_null(f = open_memstream(out, &len));
	rc = vrrp_keepalived_conf(f, &c.director, exe, "/etc/m.conf", err, errlen);
	fclose(f);
	mailplex_conf_free(&c);
	return rc;
}

static void
test_keepalived_conf_text(void **state)
{
	char err[DIRECTOR_ERR_MAX], *out = NULL;

	assert_int_equal(generate(conf_text, "/usr/sbin/mailplex-director", &out, err, sizeof(err)),
	                 0);
	assert_string_equal(out, expected);
	free(out);
}

static void
test_keepalived_conf_preempt_and_whole_seconds(void **state)
{
	char err[DIRECTOR_ERR_MAX], *out = NULL;

	assert_int_equal(generate("director = { vrrp = { interface = \"bond0\"; "
	                          "advert_interval = \"2s\"; };\n"
	                          "services = ( { name = \"s\"; vip = \"192.0.2.1:25\"; } ); };\n",
	                          "/x/d", &out, err, sizeof(err)),
	                 0);
	assert_non_null(strstr(out, "    advert_int 2.00\n"));
	assert_non_null(strstr(out, "    priority 100\n    advert_int"));
	assert_non_null(strstr(out, "    virtual_router_id 51\n"));
	assert_null(strstr(out, "nopreempt"));
	assert_null(strstr(out, "mailplex_v6"));
	assert_non_null(strstr(out, "vrrp_notify_fifo " MAILPLEX_RUNDIR "/vrrp.fifo\n"));
	assert_non_null(strstr(out, "        192.0.2.1/32 dev bond0\n"));
	free(out);
}

static void
test_keepalived_conf_refusals(void **state)
{
	char err[DIRECTOR_ERR_MAX], *out = NULL;

	assert_int_equal(generate("director = { services = ( { name = \"s\"; "
	                          "vip = \"192.0.2.1:25\"; } ); };\n",
	                          "/x/d", &out, err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "director.vrrp.interface is not set");
	free(out);
	out = NULL;
	assert_int_equal(generate("director = { vrrp = { interface = \"eth0\"; }; };\n", "/x/d", &out,
	                          err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "no director services: no VIP to hold");
	free(out);
	out = NULL;
	assert_int_equal(generate("director = { vrrp = { interface = \"eth0\"; "
	                          "advert_interval = \"105ms\"; };\n"
	                          "services = ( { name = \"s\"; vip = \"192.0.2.1:25\"; } ); };\n",
	                          "/x/d", &out, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "steps of 10ms"));
	free(out);
	out = NULL;
	assert_int_equal(generate(conf_text, "/my dir/d", &out, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "blank"));
	free(out);
}

/* keepalived's own config test accepts what we print (skipped without keepalived). */
static void
test_keepalived_accepts_the_conf(void **state)
{
	char err[DIRECTOR_ERR_MAX], *out = NULL, path[] = "/tmp/mailplex-ka-XXXXXX";
	const char *ka = NULL;
	static const char *const cands[] = {"/usr/sbin/keepalived", "/sbin/keepalived"};
	FILE *f;
	int fd, status;
	pid_t pid;

	for (size_t i = 0; i < 2 && ka == NULL; i++)
		if (access(cands[i], X_OK) == 0)
			ka = cands[i];
	if (ka == NULL)
		skip();
	/* The script must exist for keepalived to keep the track_script. */
	assert_int_equal(generate(conf_text, "/bin/true", &out, err, sizeof(err)), 0);
	assert_true((fd = mkstemp(path)) >= 0);
	assert_non_null(f = fdopen(fd, "w"));
	assert_int_equal(fputs(out, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
	free(out);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);

		if (nul >= 0) {
			(void)dup2(nul, 1);
			(void)dup2(nul, 2);
		}
		execl(ka, ka, "-t", "-f", path, (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	unlink(path);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_line_parse(void **state)
{
	struct vrrp_event ev;
	static const char *const bad[] = {
	    "",
	    "INSTANCE",
	    "INSTANCE VI_1 MASTER 150",
	    "INSTANCE \"VI_1\" MASTERX 150",
	    "INSTANCE \"VI_1\" MASTER 256",
	    "INSTANCE \"VI_1\" MASTER 15x",
	    "INSTANCE \"VI_1\" MASTER ",
	    "INSTANCE \"\" MASTER 1",
	    "INSTANCE \"VI 1\" MASTER 1",
	    "INSTANCE \"VI_1 MASTER 1",
	    "VS \"x\" UP",
	    "instance \"VI_1\" MASTER 1",
	    "INSTANCE \"VI_1\" UNKNOWN 1",
	};
	const char *l = "INSTANCE \"VI_1\" MASTER 150";

	assert_int_equal(vrrp_line_parse(l, strlen(l), &ev), 0);
	assert_string_equal(ev.kind, "INSTANCE");
	assert_string_equal(ev.name, "VI_1");
	assert_int_equal(ev.state, VRRP_MASTER);
	assert_int_equal(ev.priority, 150);
	l = "GROUP \"G\" FAULT";
	assert_int_equal(vrrp_line_parse(l, strlen(l), &ev), 0);
	assert_string_equal(ev.kind, "GROUP");
	assert_int_equal(ev.state, VRRP_FAULT);
	assert_int_equal(ev.priority, -1);
	l = "INSTANCE \"x\" STOP 0";
	assert_int_equal(vrrp_line_parse(l, strlen(l), &ev), 0);
	assert_int_equal(ev.state, VRRP_STOP);
	assert_int_equal(ev.priority, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(vrrp_line_parse(bad[i], strlen(bad[i]), &ev), -1);
}

static void
test_fifo_feed_splits_lines_and_tracks_states(void **state)
{
	static struct vrrp_fifo f;
	const char *a = "INSTANCE \"mailplex_v4\" BAC", *b = "KUP 150\nINSTANCE \"mailplex_v6\" MASTER 1";
	char longline[VRRP_LINE_MAX * 2];

	memset(&f, 0, sizeof(f));
	vrrp_fifo_feed(&f, a, strlen(a), 10);
	assert_int_equal(f.ninstances, 0);
	vrrp_fifo_feed(&f, b, strlen(b), 20);
	assert_int_equal(f.ninstances, 1);
	assert_string_equal(f.instances[0].name, "mailplex_v4");
	assert_int_equal(f.instances[0].state, VRRP_BACKUP);
	assert_int_equal(f.instances[0].since_ms, 20);
	vrrp_fifo_feed(&f, "50\n", 3, 30);
	assert_int_equal(f.ninstances, 2);
	assert_int_equal(f.instances[1].state, VRRP_MASTER);
	assert_int_equal(f.instances[1].priority, 150);
	/* A line too long is dropped whole, even if its tail looks like a state line. */
	memset(longline, 'x', sizeof(longline));
	vrrp_fifo_feed(&f, longline, sizeof(longline), 40);
	vrrp_fifo_feed(&f, " INSTANCE \"mailplex_v4\" FAULT 0\n", 33, 40);
	assert_int_equal(f.instances[0].state, VRRP_BACKUP);
	vrrp_fifo_feed(&f, "garbage\nINSTANCE \"mailplex_v4\" MASTER 150\n", 42, 50);
	assert_int_equal(f.instances[0].state, VRRP_MASTER);
	assert_int_equal(f.instances[0].since_ms, 50);
	vrrp_fifo_feed(&f, "INSTANCE \"mailplex_v4\" MASTER 150\n", 34, 60);
	assert_int_equal(f.instances[0].since_ms, 50);
	assert_int_equal(f.ninstances, 2);
}

static void
test_fifo_table_is_bounded(void **state)
{
	static struct vrrp_fifo f;
	char line[64];

	memset(&f, 0, sizeof(f));
	for (int i = 0; i < VRRP_INSTANCES_MAX + 5; i++) {
		int n = snprintf(line, sizeof(line), "INSTANCE \"VI_%d\" BACKUP 100\n", i);

		vrrp_fifo_feed(&f, line, (size_t)n, 1);
	}
	assert_int_equal(f.ninstances, VRRP_INSTANCES_MAX);
}

static void
test_health_needs_a_pass_without_error(void **state)
{
	static struct director d;
	struct control_request req;
	struct director_cmd cmd;
	char err[CONTROL_ERR_MAX];

	assert_int_equal(control_request_parse(&req, "health", 6, err, sizeof(err)), 0);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), 0);
	assert_int_equal(cmd.type, DIRECTOR_CMD_HEALTH);
	assert_int_equal(control_request_parse(&req, "health x", 8, err, sizeof(err)), 0);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
	memset(&d, 0, sizeof(d));
	assert_false(director_healthy(&d));
	d.last_pass_ms = 5;
	assert_true(director_healthy(&d));
	(void)snprintf(d.last_error, sizeof(d.last_error), "netlink: timeout");
	assert_false(director_healthy(&d));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keepalived_conf_text),
	    cmocka_unit_test(test_keepalived_conf_preempt_and_whole_seconds),
	    cmocka_unit_test(test_keepalived_conf_refusals),
	    cmocka_unit_test(test_keepalived_accepts_the_conf),
	    cmocka_unit_test(test_line_parse),
	    cmocka_unit_test(test_fifo_feed_splits_lines_and_tracks_states),
	    cmocka_unit_test(test_fifo_table_is_bounded),
	    cmocka_unit_test(test_health_needs_a_pass_without_error),
	};

	log_init("test_director_vrrp", 1, LOG_LEVEL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
