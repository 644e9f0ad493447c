/*
 * Unit tests for lib/conf (with a test-only schema that uses every type) and for the
 * mailplex.conf schema in lib/mailplex_conf. Every error must carry file:line and leave
 * the destination zeroed; ASan proves nothing leaks on the error paths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "mailplex_conf.h"
#include "util.h"

struct t_service {
	char *name;
	struct conf_address listen;
	int tls;
	uint64_t timeout_ms;
};

struct t_spool {
	char *path;
	uint64_t every_ms;
};

struct t_conf {
	char *name;
	int64_t workers;
	int debug;
	uint64_t idle_ms;
	uint64_t max_message;
	int mode;
	struct conf_address listen;
	struct conf_strlist domains;
	struct t_spool spool;
	struct conf_list services;
};

static const char *const t_modes[] = {"dr", "nat", "tun", NULL};

static const struct conf_key t_spool_keys[] = {
    {.name = "path",
     .type = CONF_T_STRING,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct t_spool, path)},
    {.name = "every",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct t_spool, every_ms),
     .def = "1s"},
    {.name = NULL},
};

static const struct conf_key t_service_keys[] = {
    {.name = "name",
     .type = CONF_T_STRING,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct t_service, name),
     .min = 1,
     .max = 16},
    {.name = "listen",
     .type = CONF_T_ADDRESS,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct t_service, listen)},
    {.name = "tls", .type = CONF_T_BOOL, .offset = offsetof(struct t_service, tls), .def = "no"},
    {.name = "timeout",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct t_service, timeout_ms),
     .def = "5m"},
    {.name = NULL},
};

static const struct conf_key t_keys[] = {
    {.name = "name",
     .type = CONF_T_STRING,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct t_conf, name),
     .max = 16},
    {.name = "workers",
     .type = CONF_T_INT,
     .offset = offsetof(struct t_conf, workers),
     .def = "4",
     .min = 1,
     .max = 64},
    {.name = "debug", .type = CONF_T_BOOL, .offset = offsetof(struct t_conf, debug), .def = "no"},
    {.name = "idle",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct t_conf, idle_ms),
     .def = "30s",
     .min = 1000,
     .max = 3600 * 1000},
    {.name = "max_message",
     .type = CONF_T_SIZE,
     .offset = offsetof(struct t_conf, max_message),
     .def = "10M",
     .max = 1024 * 1024 * 1024},
    {.name = "mode",
     .type = CONF_T_ENUM,
     .offset = offsetof(struct t_conf, mode),
     .def = "dr",
     .names = t_modes},
    {.name = "listen",
     .type = CONF_T_ADDRESS,
     .offset = offsetof(struct t_conf, listen),
     .def = "*:25"},
    {.name = "domains",
     .type = CONF_T_STRLIST,
     .offset = offsetof(struct t_conf, domains),
     .max = 3},
    {.name = "spool",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct t_conf, spool),
     .sub = t_spool_keys},
    {.name = "services",
     .type = CONF_T_GROUPLIST,
     .offset = offsetof(struct t_conf, services),
     .sub = t_service_keys,
     .elem_size = sizeof(struct t_service),
     .max = 2},
    {.name = NULL},
};

static const struct conf_schema t_schema = {.keys = t_keys, .size = sizeof(struct t_conf)};

static int
is_zeroed(const void *p, size_t n)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* Loads text that must fail; checks the message contains want and dst stays zero. */
static void
expect_error(const char *text, const char *want)
{
	struct t_conf c;
	char err[CONF_ERR_MAX];

	memset(&c, 0xa5, sizeof(c));
	err[0] = '\0';
	assert_int_equal(conf_load_string(&t_schema, text, "t.conf", &c, err, sizeof(err)), -1);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' lacks '%s'", err, want);
	assert_true(is_zeroed(&c, sizeof(c)));
}

static const char full_conf[] =
    "name = \"edge\";\n"
    "workers = 8;\n"
    "debug = true;\n"
    "idle = \"5m\";\n"
    "max_message = \"64k\";\n"
    "mode = \"tun\";\n"
    "listen = \"[::1]:2525\";\n"
    "domains = [ \"bigisp.com\", \"bigisp.net\" ];\n"
    "spool = { path = \"/var/spool/x\"; every = \"250ms\"; };\n"
    "services = (\n"
    "  { name = \"smtp\"; listen = \"127.0.0.1:25\"; },\n"
    "  { name = \"imaps\"; listen = \"mx.bigisp.com:993\"; tls = true;\n"
    "    timeout = 1800; }\n"
    ");\n";

static void
test_every_type_is_filled_from_a_full_config(void **state)
{
	struct t_conf c;
	struct t_service *sv;
	char err[CONF_ERR_MAX];

	assert_int_equal(conf_load_string(&t_schema, full_conf, "t.conf", &c, err, sizeof(err)), 0);
	assert_string_equal(c.name, "edge");
	assert_int_equal(c.workers, 8);
	assert_int_equal(c.debug, 1);
	assert_int_equal(c.idle_ms, 300000);
	assert_int_equal(c.max_message, 65536);
	assert_int_equal(c.mode, 2);
	assert_string_equal(c.listen.host, "::1");
	assert_int_equal(c.listen.port, 2525);
	assert_int_equal(c.domains.n, 2);
	assert_string_equal(c.domains.v[1], "bigisp.net");
	assert_string_equal(c.spool.path, "/var/spool/x");
	assert_int_equal(c.spool.every_ms, 250);
	assert_int_equal(c.services.n, 2);
	sv = c.services.v;
	assert_string_equal(sv[0].name, "smtp");
	assert_string_equal(sv[0].listen.host, "127.0.0.1");
	assert_int_equal(sv[0].tls, 0);
	assert_int_equal(sv[0].timeout_ms, 300000);
	assert_string_equal(sv[1].listen.host, "mx.bigisp.com");
	assert_int_equal(sv[1].listen.port, 993);
	assert_int_equal(sv[1].tls, 1);
	assert_int_equal(sv[1].timeout_ms, 1800000);
	conf_free(&t_schema, &c);
	assert_true(is_zeroed(&c, sizeof(c)));
}

static void
test_absent_keys_take_their_defaults(void **state)
{
	struct t_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(conf_load_string(&t_schema, "name = \"x\"; spool = { path = \"/s\"; };",
	                                  "t.conf", &c, err, sizeof(err)),
	                 0);
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.debug, 0);
	assert_int_equal(c.idle_ms, 30000);
	assert_int_equal(c.max_message, 10 * 1024 * 1024);
	assert_int_equal(c.mode, 0);
	assert_string_equal(c.listen.host, "*");
	assert_int_equal(c.listen.port, 25);
	assert_int_equal(c.domains.n, 0);
	assert_int_equal(c.spool.every_ms, 1000);
	assert_int_equal(c.services.n, 0);
	conf_free(&t_schema, &c);
}

static void
test_duration_syntax(void **state)
{
	static const char *bad[] = {"",
	                            "s",
	                            "5 m",
	                            "-1s",
	                            "1.5s",
	                            "1w",
	                            "5ms ",
	                            "99999999999999999999",
	                            "18446744073709552d"};
	uint64_t ms;
	size_t i;

	assert_int_equal(conf_parse_duration("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(conf_parse_duration("30s", &ms), 0);
	assert_int_equal(ms, 30000);
	assert_int_equal(conf_parse_duration("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(conf_parse_duration("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(conf_parse_duration("2d", &ms), 0);
	assert_int_equal(ms, 172800000);
	assert_int_equal(conf_parse_duration("7", &ms), 0);
	assert_int_equal(ms, 7000);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (conf_parse_duration(bad[i], &ms) != -1)
			fail_msg("accepted duration '%s'", bad[i]);
}

static void
test_size_syntax(void **state)
{
	uint64_t b;

	assert_int_equal(conf_parse_size("64k", &b), 0);
	assert_int_equal(b, 65536);
	assert_int_equal(conf_parse_size("10M", &b), 0);
	assert_int_equal(b, 10485760);
	assert_int_equal(conf_parse_size("1G", &b), 0);
	assert_int_equal(b, 1073741824);
	assert_int_equal(conf_parse_size("512", &b), 0);
	assert_int_equal(b, 512);
	assert_int_equal(conf_parse_size("1T", &b), -1);
	assert_int_equal(conf_parse_size("k", &b), -1);
	assert_int_equal(conf_parse_size("20000000000G", &b), -1);
}

static void
test_unknown_top_level_key_is_refused_with_its_line(void **state)
{
	expect_error("name = \"x\";\nspool = { path = \"/s\"; };\nwrokers = 4;\n",
	             "t.conf:3: unknown key 'wrokers' at top level (known: name, workers,");
}

static void
test_unknown_key_in_list_entry_names_the_section(void **state)
{
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nservices = (\n"
	             "  { name = \"a\"; listen = \"*:1\"; },\n"
	             "  { name = \"b\"; listen = \"*:2\"; tsl = true; }\n);\n",
	             "t.conf:4: unknown key 'tsl' in section 'services[1]'");
}

static void
test_wrong_type_names_expected_and_given(void **state)
{
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\n\nworkers = \"4\";\n",
	             "t.conf:3: 'workers': expected an integer, got a string");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\ndebug = 1;\n",
	             "t.conf:2: 'debug': expected true or false, got an integer");
	expect_error("name = \"x\"; spool = \"/s\";\n", "t.conf:1: 'spool': expected a group");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nservices = ( 1 );\n",
	             "t.conf:2: 'services[0]': expected a group { ... }, got an integer");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\ndomains = [ 1, 2 ];\n",
	             "'domains[0]': expected a string, got an integer");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nidle = 1.5;\n",
	             "t.conf:2: 'idle': expected a duration");
}

static void
test_out_of_range_values_are_refused(void **state)
{
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nworkers = 100;\n",
	             "t.conf:2: 'workers': 100 out of range 1..64");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nidle = \"500ms\";\n",
	             "t.conf:2: 'idle': 500 ms out of range 1000..3600000 ms");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nmax_message = \"2G\";\n",
	             "'max_message': 2147483648 bytes out of range");
	expect_error("name = \"this-name-is-too-long\"; spool = { path = \"/s\"; };\n",
	             "t.conf:1: 'name': length 21 out of range 0..16");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\n"
	             "domains = [\"a\", \"b\", \"c\", \"d\"];\n",
	             "t.conf:2: 'domains': 4 elements, allowed 0..3");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nservices = (\n"
	             "{ name = \"a\"; listen = \"*:1\"; }, { name = \"b\"; listen = \"*:2\"; },\n"
	             "{ name = \"c\"; listen = \"*:3\"; });\n",
	             "t.conf:2: 'services': 3 entries, allowed 0..2");
}

static void
test_bad_enum_value_lists_the_allowed_ones(void **state)
{
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nmode = \"masq\";\n",
	             "t.conf:2: 'mode': 'masq' is not one of: dr, nat, tun");
}

static void
test_bad_address_is_refused_with_the_reason(void **state)
{
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nlisten = \"::1:25\";\n",
	             "t.conf:2: 'listen': address '::1:25': write IPv6 addresses as [addr]:port");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nlisten = \"*:0\";\n",
	             "port 0 is not a port");
}

static void
test_missing_required_key_reports_the_enclosing_group_line(void **state)
{
	expect_error("name = \"x\";\nspool = {\n  every = \"2s\";\n};\n",
	             "t.conf:2: required key 'path' missing in section 'spool'");
	expect_error("name = \"x\"; spool = { path = \"/s\"; };\nservices = (\n"
	             "  { name = \"a\"; listen = \"*:1\"; },\n  { name = \"b\"; }\n);\n",
	             "t.conf:4: required key 'listen' missing in section 'services[1]'");
	/* An absent section reads as an empty one, so its required keys are still due. */
	expect_error("name = \"x\";\n", "required key 'path' missing in section 'spool'");
	expect_error("spool = { path = \"/s\"; };\n", "required key 'name' missing at top level");
}

static void
test_duplicate_key_is_refused(void **state)
{
	expect_error("name = \"x\";\nspool = { path = \"/s\"; };\nname = \"y\";\n",
	             "t.conf:3: duplicate setting name");
}

static void
test_syntax_error_carries_the_line(void **state)
{
	expect_error("name = \"x\";\nspool = { path = \"/s\"; };\nworkers = ;\n",
	             "t.conf:3: syntax error");
}

static void
test_error_late_in_a_list_frees_everything_already_filled(void **state)
{
	/* Strings of name, domains and services[0] exist when services[1] fails. */
	expect_error("name = \"x\"; domains = [\"a\", \"b\"]; spool = { path = \"/s\"; };\n"
	             "services = ( { name = \"ok\"; listen = \"*:1\"; },\n"
	             "  { name = \"\"; listen = \"*:2\"; } );\n",
	             "t.conf:3: 'services[1].name': length 0 out of range 1..16");
}

static void
test_failed_reload_leaves_the_running_config_untouched(void **state)
{
	struct t_conf running, next;
	char err[CONF_ERR_MAX];

	assert_int_equal(
	    conf_load_string(&t_schema, full_conf, "t.conf", &running, err, sizeof(err)), 0);
	assert_int_equal(
	    conf_load_string(&t_schema, "name = 1;", "t.conf", &next, err, sizeof(err)), -1);
	assert_string_equal(running.name, "edge");
	assert_int_equal(running.services.n, 2);
	conf_free(&t_schema, &running);
}

static void
test_include_is_refused_in_strings_and_followed_in_files(void **state)
{
	char dir[] = "/tmp/test_conf.XXXXXX", main_path[64], inc_path[64], err[CONF_ERR_MAX];
	struct t_conf c;
	FILE *f;

	expect_error("@include \"/etc/passwd\"\n", "t.conf: @include is only allowed in files");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(str_format(main_path, sizeof(main_path), "%s/main.conf", dir), 0);
	assert_int_equal(str_format(inc_path, sizeof(inc_path), "%s/spool.conf", dir), 0);
	assert_non_null(f = fopen(main_path, "w"));
	fputs("name = \"x\";\n@include \"spool.conf\"\n", f);
	fclose(f);
	assert_non_null(f = fopen(inc_path, "w"));
	fputs("spool = { path = \"/s\"; };\n\nworkers = 0;\n", f);
	fclose(f);
	assert_int_equal(conf_load_file(&t_schema, main_path, &c, err, sizeof(err)), -1);
	/* The message names the included file and its line. */
	assert_non_null(strstr(err, "spool.conf:3: 'workers': 0 out of range"));
	assert_non_null(f = fopen(inc_path, "w"));
	fputs("spool = { path = \"/s\"; };\n", f);
	fclose(f);
	assert_int_equal(conf_load_file(&t_schema, main_path, &c, err, sizeof(err)), 0);
	assert_string_equal(c.spool.path, "/s");
	conf_free(&t_schema, &c);
	unlink(inc_path);
	unlink(main_path);
	rmdir(dir);
}

static void
test_missing_file_reports_errno(void **state)
{
	struct t_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(
	    conf_load_file(&t_schema, "/nonexistent/mailplex.conf", &c, err, sizeof(err)), -1);
	assert_string_equal(err, "/nonexistent/mailplex.conf: No such file or directory");
}

static void
test_mailplex_conf_defaults(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("", "mailplex.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(c.log_level, LOG_LEVEL_INFO);
	assert_string_equal(c.user, "mailplex");
	assert_string_equal(c.map.source, MAILPLEX_SYSCONFDIR "/mailplex.map");
	assert_string_equal(c.map.db, MAILPLEX_STATEDIR "/mailplex.db");
	assert_int_equal(c.map.reload_check_ms, 1000);
	mailplex_conf_free(&c);
}

static const char director_conf[] =
    "director = {\n"
    "  services = (\n"
    "    { name = \"smtp\"; vip = \"192.0.2.10:25\";\n"
    "      check = { type = \"smtp\"; starttls = true; rise = 1; }; },\n"
    "    { name = \"imap6\"; vip = \"[2001:db8::10]:143\"; forwarding = \"nat\";\n"
    "      relay_port = 10143; persistence = \"5m\"; }\n"
    "  );\n"
    "  relays = ( { name = \"relay1\"; address = \"10.0.0.21\"; },\n"
    "             { name = \"relay2\"; address = \"2001:db8::22\"; weight = 50; } );\n"
    "};\n";

static void
test_director_section_fills_services_checks_and_relays(void **state)
{
	struct mailplex_conf c;
	struct mailplex_conf_service *svc;
	struct mailplex_conf_relay *relay;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string(director_conf, "d.conf", &c, err, sizeof(err)),
	                 0);
	assert_int_equal(c.director.services.n, 2);
	svc = c.director.services.v;
	assert_string_equal(svc[0].vip.host, "192.0.2.10");
	assert_int_equal(svc[0].vip.port, 25);
	assert_string_equal(svc[0].scheduler, "wlc");
	assert_int_equal(svc[0].forwarding, MAILPLEX_FWD_DR);
	assert_int_equal(svc[0].check.type, MAILPLEX_CHECK_SMTP);
	assert_int_equal(svc[0].check.starttls, 1);
	assert_int_equal(svc[0].check.rise, 1);
	assert_int_equal(svc[0].check.fall, 3);
	assert_int_equal(svc[0].check.interval_ms, 5000);
	assert_null(svc[0].check.ca_file);
	assert_string_equal(svc[1].vip.host, "2001:db8::10");
	assert_int_equal(svc[1].forwarding, MAILPLEX_FWD_NAT);
	assert_int_equal(svc[1].relay_port, 10143);
	assert_int_equal(svc[1].persistence_ms, 300000);
	assert_int_equal(svc[1].check.type, MAILPLEX_CHECK_TCP);
	relay = c.director.relays.v;
	assert_int_equal(c.director.relays.n, 2);
	assert_int_equal(relay[0].address.af, AF_INET);
	assert_string_equal(relay[0].address.str, "10.0.0.21");
	assert_int_equal(relay[0].weight, 100);
	assert_int_equal(relay[1].address.af, AF_INET6);
	assert_string_equal(relay[1].address.str, "2001:db8::22");
	/* IMAP IDLE (RFC 2177): the default must outlast a 29-minute silent client. */
	assert_true(c.director.ipvs_tcp_timeout_ms >= 1860 * 1000);
	assert_string_equal(c.director.control, MAILPLEX_RUNDIR "/director.sock");
	mailplex_conf_free(&c);
}

static void
test_director_vrrp_and_sync_groups(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("director = {};\n", "d.conf", &c, err, sizeof(err)),
	                 0);
	assert_null(c.director.vrrp.interface);
	assert_null(c.director.sync.interface);
	assert_int_equal(c.director.vrrp.router_id, 51);
	assert_int_equal(c.director.vrrp.priority, 100);
	assert_int_equal(c.director.vrrp.advert_ms, 1000);
	assert_int_equal(c.director.vrrp.preempt, 1);
	assert_string_equal(c.director.vrrp.fifo, MAILPLEX_RUNDIR "/vrrp.fifo");
	assert_int_equal(c.director.sync.syncid, 51);
	assert_int_equal(c.director.sync.peer_syncid, 0);
	mailplex_conf_free(&c);
	assert_int_equal(mailplex_conf_load_string(
	                     "director = { vrrp = { interface = \"eth1\"; router_id = 7; priority = 150;\n"
	                     "advert_interval = \"100ms\"; preempt = false; fifo = \"/x/f\"; };\n"
	                     "sync = { interface = \"eth1\"; syncid = 1; peer_syncid = 2; }; };\n",
	                     "d.conf", &c, err, sizeof(err)),
	                 0);
	assert_string_equal(c.director.vrrp.interface, "eth1");
	assert_int_equal(c.director.vrrp.router_id, 7);
	assert_int_equal(c.director.vrrp.priority, 150);
	assert_int_equal(c.director.vrrp.advert_ms, 100);
	assert_int_equal(c.director.vrrp.preempt, 0);
	assert_string_equal(c.director.vrrp.fifo, "/x/f");
	assert_int_equal(c.director.sync.syncid, 1);
	assert_int_equal(c.director.sync.peer_syncid, 2);
	mailplex_conf_free(&c);
	assert_int_equal(mailplex_conf_load_string("director = { vrrp = { priority = 255; }; };\n",
	                                           "d.conf", &c, err, sizeof(err)),
	                 -1);
	assert_int_equal(mailplex_conf_load_string("director = { vrrp = { advert_interval = \"5ms\"; }; };\n",
	                                           "d.conf", &c, err, sizeof(err)),
	                 -1);
	assert_int_equal(mailplex_conf_load_string("director = { sync = { syncid = 0; }; };\n",
	                                           "d.conf", &c, err, sizeof(err)),
	                 -1);
}

static void
test_director_refuses_a_vip_that_is_not_an_ip_address(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(
	    mailplex_conf_load_string("director = {\n services = (\n"
	                              "  { name = \"smtp\"; vip = \"mail.bigisp.com:25\"; }"
	                              "\n ); };\n",
	                              "d.conf", &c, err, sizeof(err)),
	    -1);
	assert_string_equal(err, "d.conf:3: 'director.services[0].vip': address "
	                         "'mail.bigisp.com:25': the host must be an IP address");
}

static void
test_director_refuses_a_relay_address_that_is_not_an_ip(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("director = { relays = (\n"
	                                           "  { name = \"r1\"; address = \"10.0.0.300\"; }"
	                                           "\n); };\n",
	                                           "d.conf", &c, err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "d.conf:2: 'director.relays[0].address': '10.0.0.300' is not "
	                         "an IPv4 or IPv6 address");
}

static void
test_proxy_section_defaults_are_safe(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("", "p.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(c.proxy.imap.n, 0);
	assert_int_equal(c.proxy.workers, 0);
	assert_int_equal(c.proxy.allow_plaintext_login, 0);
	assert_null(c.proxy.tls_cert);
	/* IMAP IDLE (RFC 2177): a logged-in client may stay silent for 29 minutes. */
	assert_true(c.proxy.idle_timeout_ms >= 30 * 60 * 1000);
	assert_int_equal(c.proxy.literal_max, 4096);
	assert_int_equal(c.proxy.backend_tls_verify, 1);
	assert_string_equal(c.proxy.control, MAILPLEX_RUNDIR "/proxy.sock");
	mailplex_conf_free(&c);
}

static void
test_proxy_section_fills_listeners_and_limits(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(
	    mailplex_conf_load_string("proxy = {\n imap = [\"127.0.0.1:143\", \"[::1]:143\"];\n"
	                              " pop3s = [\"*:995\"]; workers = 4;\n"
	                              " allow_plaintext_login = true; line_max = \"16k\";\n"
	                              " prelogin_timeout = \"10s\"; max_connections_per_ip = 7;\n"
	                              "};\n",
	                              "p.conf", &c, err, sizeof(err)),
	    0);
	assert_int_equal(c.proxy.imap.n, 2);
	assert_string_equal(c.proxy.imap.v[1], "[::1]:143");
	assert_int_equal(c.proxy.pop3s.n, 1);
	assert_int_equal(c.proxy.workers, 4);
	assert_int_equal(c.proxy.allow_plaintext_login, 1);
	assert_int_equal(c.proxy.line_max, 16384);
	assert_int_equal(c.proxy.prelogin_timeout_ms, 10000);
	assert_int_equal(c.proxy.max_connections_per_ip, 7);
	mailplex_conf_free(&c);
}

static void
test_proxy_refuses_an_idle_timeout_shorter_than_imap_idle(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("proxy = { idle_timeout = \"5m\"; };\n",
	                                           "p.conf", &c, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "proxy.idle_timeout"));
}

static void
test_proxy_backend_client_address_is_checked(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("", "p.conf", &c, err, sizeof(err)), 0);
	assert_int_equal(c.proxy.backend_client_address, MAILPLEX_CLIENT_ADDR_NONE);
	mailplex_conf_free(&c);
	assert_int_equal(mailplex_conf_load_string("proxy = { backend_client_address = \"id\"; };",
	                                           "p.conf", &c, err, sizeof(err)),
	                 0);
	assert_int_equal(c.proxy.backend_client_address, MAILPLEX_CLIENT_ADDR_ID);
	mailplex_conf_free(&c);
	assert_int_equal(mailplex_conf_load_string("proxy = {\n backend_client_address = \"xff\"; };",
	                                           "p.conf", &c, err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "p.conf:2: 'proxy.backend_client_address': 'xff' is not one of: "
	                         "none, proxy-v2, id");
}

static void
test_mailplex_conf_rejects_unknown_log_level(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	assert_int_equal(mailplex_conf_load_string("\nlog_level = \"verbose\";", "mailplex.conf",
	                                           &c, err, sizeof(err)),
	                 -1);
	assert_string_equal(err, "mailplex.conf:2: 'log_level': 'verbose' is not one of: err, "
	                         "warn, info, debug");
}

static void
test_shipped_example_config_loads(void **state)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	/* make runs the tests from the top of the tree. */
	if (mailplex_conf_load("conf/mailplex.conf", &c, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	assert_int_equal(c.log_level, LOG_LEVEL_INFO);
	assert_string_equal(c.map.db, "/var/lib/mailplex/mailplex.db");
	mailplex_conf_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_every_type_is_filled_from_a_full_config),
	    cmocka_unit_test(test_absent_keys_take_their_defaults),
	    cmocka_unit_test(test_duration_syntax),
	    cmocka_unit_test(test_size_syntax),
	    cmocka_unit_test(test_unknown_top_level_key_is_refused_with_its_line),
	    cmocka_unit_test(test_unknown_key_in_list_entry_names_the_section),
	    cmocka_unit_test(test_wrong_type_names_expected_and_given),
	    cmocka_unit_test(test_out_of_range_values_are_refused),
	    cmocka_unit_test(test_bad_enum_value_lists_the_allowed_ones),
	    cmocka_unit_test(test_bad_address_is_refused_with_the_reason),
	    cmocka_unit_test(test_missing_required_key_reports_the_enclosing_group_line),
	    cmocka_unit_test(test_duplicate_key_is_refused),
	    cmocka_unit_test(test_syntax_error_carries_the_line),
	    cmocka_unit_test(test_error_late_in_a_list_frees_everything_already_filled),
	    cmocka_unit_test(test_failed_reload_leaves_the_running_config_untouched),
	    cmocka_unit_test(test_include_is_refused_in_strings_and_followed_in_files),
	    cmocka_unit_test(test_missing_file_reports_errno),
	    cmocka_unit_test(test_mailplex_conf_defaults),
	    cmocka_unit_test(test_mailplex_conf_rejects_unknown_log_level),
	    cmocka_unit_test(test_director_section_fills_services_checks_and_relays),
	    cmocka_unit_test(test_director_vrrp_and_sync_groups),
	    cmocka_unit_test(test_director_refuses_a_vip_that_is_not_an_ip_address),
	    cmocka_unit_test(test_director_refuses_a_relay_address_that_is_not_an_ip),
	    cmocka_unit_test(test_proxy_section_defaults_are_safe),
	    cmocka_unit_test(test_proxy_section_fills_listeners_and_limits),
	    cmocka_unit_test(test_proxy_refuses_an_idle_timeout_shorter_than_imap_idle),
	    cmocka_unit_test(test_proxy_backend_client_address_is_checked),
	    cmocka_unit_test(test_shipped_example_config_loads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
