/*
 * Unit tests for the configuration mailplex-relay reads: the relay section and the
 * director's cluster keys with their defaults, and that a file without them still loads
 * for every other program (no key of the relay section is required).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "mailplex_conf.h"

static void
test_relay_section_and_cluster_keys(void **state)
{
	static const char text[] =
	    "director = { cluster_listen = \"*:7945\"; relay_dead_after = \"4s\"; };\n"
	    "relay = { name = \"relay7\"; address = \"10.0.0.27\"; weight = 30;\n"
	    "  directors = [ \"10.0.0.1:7945\", \"10.0.0.2:7945\" ]; heartbeat = \"1s\";\n"
	    "  services = [ \"smtp\", \"imap:143\" ]; proxy_control = \"/run/p.sock\";\n"
	    "  spool = \"/var/spool/mailplex\"; spool_min_free = \"1G\"; dr_vips = [ "
	    "\"192.0.2.10\" ];\n"
	    "  stop_timeout = \"2m\"; };\n";
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	if (mailplex_conf_load_string(text, "t.conf", &c, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	assert_string_equal(c.director.cluster_listen, "*:7945");
	assert_string_equal(c.director.cluster_key, MAILPLEX_SYSCONFDIR "/cluster.key");
	assert_int_equal(c.director.cluster_window_ms, 30000);
	assert_int_equal(c.director.relay_dead_after_ms, 4000);
	assert_int_equal(c.director.rejoin_grace_ms, 20000);
	assert_string_equal(c.relay.name, "relay7");
	assert_int_equal(c.relay.address.af, AF_INET);
	assert_int_equal(c.relay.weight, 30);
	assert_int_equal(c.relay.directors.n, 2);
	assert_int_equal(c.relay.heartbeat_ms, 1000);
	assert_string_equal(c.relay.services.v[1], "imap:143");
	assert_null(c.relay.smtpd_control);
	assert_string_equal(c.relay.proxy_control, "/run/p.sock");
	assert_int_equal(c.relay.spool_min_free, 1024ULL * 1024 * 1024);
	assert_int_equal(c.relay.dr_vips.n, 1);
	assert_int_equal(c.relay.stop_timeout_ms, 120000);
	mailplex_conf_free(&c);
}

static void
test_defaults_without_the_sections(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	if (mailplex_conf_load_string("log_level = \"info\";\n", "t.conf", &c, err, sizeof(err)) ==
	    -1)
		fail_msg("%s", err);
	assert_null(c.director.cluster_listen);
	assert_int_equal(c.relay.address.af, 0);
	assert_int_equal(c.relay.weight, 100);
	assert_int_equal(c.relay.heartbeat_ms, 3000);
	assert_int_equal(c.relay.stop_timeout_ms, 15 * 60 * 1000);
	assert_string_equal(c.relay.key, MAILPLEX_SYSCONFDIR "/cluster.key");
	mailplex_conf_free(&c);
}

static void
test_bounds_are_enforced(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("relay = { heartbeat = \"10ms\"; };\n", "t.conf",
	                                           &c, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "heartbeat"));
	assert_int_equal(
	    mailplex_conf_load_string("relay = { weight = 0; };\n", "t.conf", &c, err, sizeof(err)),
	    -1);
	assert_int_equal(mailplex_conf_load_string("director = { cluster_window = \"1h\"; };\n",
	                                           "t.conf", &c, err, sizeof(err)),
	                 -1);
	assert_int_equal(mailplex_conf_load_string("relay = { nonsense = 1; };\n", "t.conf", &c,
	                                           err, sizeof(err)),
	                 -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_relay_section_and_cluster_keys),
	    cmocka_unit_test(test_defaults_without_the_sections),
	    cmocka_unit_test(test_bounds_are_enforced),
	};

	log_init("test_relay_conf", 1, LOG_LEVEL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
