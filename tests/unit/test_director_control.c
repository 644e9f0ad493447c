/*
 * Unit tests for the director's control commands (director/control.c): the command table
 * refuses unknown words and wrong counts without side effects, drain/undrain change the
 * desired state and schedule a pass, and status prints aligned tables with weights,
 * states, connection counts and the timeouts in force from the last kernel dump.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "director.h"
#include "log.h"

static const char conf_text[] =
    "director = {\n"
    "  services = ( { name = \"smtp\"; vip = \"192.0.2.10:25\"; check = { type = \"smtp\"; }; },\n"
    "               { name = \"imap\"; vip = \"192.0.2.10:143\"; } );\n"
    "  relays = ( { name = \"relay1\"; address = \"10.0.0.21\"; },\n"
    "             { name = \"relay-two\"; address = \"10.0.0.122\"; weight = 7; } );\n"
    "};\n";

static void
parse(const char *line, struct control_request *req)
{
	char err[CONTROL_ERR_MAX];

	assert_int_equal(control_request_parse(req, line, strlen(line), err, sizeof(err)), 0);
}

static void
test_cmd_table_accepts_known_commands(void **state)
{
	struct control_request req;
	struct director_cmd cmd;
	char err[CONTROL_ERR_MAX];

	parse("status", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), 0);
	assert_int_equal(cmd.type, DIRECTOR_CMD_STATUS);
	parse("drain relay1", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), 0);
	assert_int_equal(cmd.type, DIRECTOR_CMD_DRAIN);
	assert_string_equal(cmd.relay, "relay1");
	assert_null(cmd.service);
	parse("undrain relay1 smtp", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), 0);
	assert_int_equal(cmd.type, DIRECTOR_CMD_UNDRAIN);
	assert_string_equal(cmd.service, "smtp");
	parse("map-publish", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), 0);
	assert_int_equal(cmd.type, DIRECTOR_CMD_MAP_PUBLISH);
	parse("map-status", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), 0);
	assert_int_equal(cmd.type, DIRECTOR_CMD_MAP_STATUS);
}

static void
test_cmd_table_refuses_unknown_and_wrong_counts(void **state)
{
	struct control_request req;
	struct director_cmd cmd;
	char err[CONTROL_ERR_MAX];

	parse("flush", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
	assert_string_equal(err, "unknown command 'flush' (status, drain, undrain, map-publish, "
	                         "map-status)");
	parse("map-status all", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
	assert_string_equal(err, "usage: map-status");
	parse("map-publish now", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
	assert_string_equal(err, "usage: map-publish");
	parse("drain", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
	assert_string_equal(err, "usage: drain RELAY [SERVICE]");
	parse("drain a b c", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
	parse("status now", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
	assert_string_equal(err, "usage: status");
	/* Case matters: commands are lower-case words. */
	parse("STATUS", &req);
	assert_int_equal(director_cmd_parse(&req, &cmd, err, sizeof(err)), -1);
}

struct fx {
	struct director d;
	struct ipvs_dest kd[3];
};

static struct ipvs_dest
kdest(const char *addr, uint16_t port, int weight, uint32_t active, uint32_t inactive)
{
	struct ipvs_dest d;

	memset(&d, 0, sizeof(d));
	d.af = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, &d.addr.in), 1);
	d.port = port;
	d.fwd = IPVS_FWD_DR;
	d.weight = weight;
	d.active_conns = active;
	d.inactive_conns = inactive;
	return d;
}

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[CONF_ERR_MAX];
	struct director *d;

	assert_non_null(f);
	d = &f->d;
	assert_non_null(d->loop = ev_loop_new());
	ev_timer_init(&d->soon);
	ev_timer_init(&d->periodic);
	d->members.fd = -1;
	if (mailplex_conf_load_string(conf_text, "t.conf", &d->conf, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	assert_int_equal(state_init(&d->state, &d->conf.director), 0);
	/* The kernel has smtp with relay1 busy, relay-two idle, and a hand-added 10.0.0.99. */
	assert_non_null(d->kernel = calloc(1, sizeof(*d->kernel)));
	d->nkernel = 1;
	state_service_ipvs(&((struct mailplex_conf_service *)d->conf.director.services.v)[0],
	                   &d->kernel[0].svc);
	assert_non_null(d->kernel[0].dests = calloc(3, sizeof(struct ipvs_dest)));
	d->kernel[0].dests[0] = kdest("10.0.0.21", 25, 100, 12, 345);
	d->kernel[0].dests[1] = kdest("10.0.0.122", 25, 7, 0, 0);
	d->kernel[0].dests[2] = kdest("10.0.0.99", 25, 0, 1, 0);
	d->kernel[0].ndests = 3;
	state_note_kernel(&d->state, d->kernel, d->nkernel);
	state_health_from_kernel(&d->state);
	d->timeouts.tcp_s = 1860;
	d->timeouts.tcp_fin_s = 120;
	d->timeouts.udp_s = 300;
	d->timeouts_known = 1;
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	ev_timer_stop(f->d.loop, &f->d.soon);
	reconcile_kernel_free(&f->d);
	state_free(&f->d.state);
	mailplex_conf_free(&f->d.conf);
	ev_loop_free(f->d.loop);
	free(f);
	return 0;
}

static void
handle(struct director *d, const char *line, struct control_reply *r)
{
	struct control_request req;

	memset(r, 0, sizeof(*r));
	parse(line, &req);
	director_control_handle(&req, r, d);
}

static void
test_drain_marks_the_member_and_schedules_a_pass(void **state)
{
	struct fx *f = *state;
	struct control_reply r;

	assert_false(ev_timer_active(&f->d.soon));
	handle(&f->d, "drain relay1 smtp", &r);
	assert_false(r.failed);
	assert_non_null(strstr(r.text, "relay relay1 draining in smtp"));
	assert_true(state_member(&f->d.state, 0, 0)->drained);
	assert_false(state_member(&f->d.state, 1, 0)->drained);
	assert_true(ev_timer_active(&f->d.soon));
	control_reply_free(&r);
	handle(&f->d, "undrain relay1", &r);
	assert_false(r.failed);
	assert_false(state_member(&f->d.state, 0, 0)->drained);
	control_reply_free(&r);
}

static void
test_drain_of_unknown_relay_is_an_error_reply(void **state)
{
	struct fx *f = *state;
	struct control_reply r;

	handle(&f->d, "drain relay9", &r);
	assert_true(r.failed);
	assert_string_equal(r.error, "no relay named 'relay9'");
	assert_false(ev_timer_active(&f->d.soon));
	control_reply_free(&r);
}

/* The line of the table that starts (after the indent) with word. */
static const char *
row_of(const char *text, const char *word)
{
	char key[64];
	const char *p;

	snprintf(key, sizeof(key), "\n  %s ", word);
	p = strstr(text, key);
	return p != NULL ? p + 3 : NULL;
}

static void
test_status_prints_aligned_tables_from_the_last_dump(void **state)
{
	struct fx *f = *state;
	struct control_reply r;
	const char *head, *r1, *r2, *unl;

	state_member(&f->d.state, 0, 1)->drained = 1;
	state_build(&f->d.state, ev_now_ms(f->d.loop));
	handle(&f->d, "status", &r);
	assert_false(r.failed);
	assert_non_null(r.text);
	print_message("%s", r.text);
	assert_non_null(strstr(r.text, "ipvs timeouts: tcp 1860s, tcpfin 120s, udp 300s\n"));
	assert_non_null(strstr(r.text, "service smtp: TCP 192.0.2.10:25, scheduler wlc, "
	                               "forwarding dr, persistence none, check smtp\n"));
	assert_non_null(strstr(r.text, "service imap: TCP 192.0.2.10:143, scheduler wlc, "
	                               "forwarding dr, persistence none, check tcp "
	                               "(not in the kernel)\n"));
	assert_non_null(head = row_of(r.text, "RELAY"));
	assert_non_null(r1 = row_of(r.text, "relay1"));
	assert_non_null(r2 = row_of(r.text, "relay-two"));
	assert_non_null(unl = row_of(r.text, "(unlisted)"));
	/* Columns line up: WEIGHT, STATE and ACTIVE start at the same offset on every row. */
	{
		size_t w = (size_t)(strstr(head, "WEIGHT") - head);
		size_t s = (size_t)(strstr(head, "STATE") - head);
		size_t a = (size_t)(strstr(head, "ACTIVE") - head);

		assert_memory_equal(r1 + w, "100 ", 4);
		assert_memory_equal(r2 + w, "7 ", 2);
		assert_memory_equal(r1 + s, "active ", 7);
		assert_memory_equal(r2 + s, "draining ", 9);
		assert_memory_equal(unl + s, "draining ", 9);
		assert_memory_equal(r1 + a, "12 ", 3);
		assert_memory_equal(r2 + a, "0 ", 2);
	}
	assert_non_null(strstr(r1, "10.0.0.21:25"));
	assert_non_null(strstr(r1, "345"));
	assert_non_null(strstr(r2, "operator drain, deleted when idle or in 15m00s"));
	assert_non_null(strstr(unl, "10.0.0.99:25"));
	assert_non_null(strstr(unl, "not in the config"));
	control_reply_free(&r);
}

static void
join(struct director *d, enum cluster_msg_type type, const char *name, const char *addr,
     uint64_t installed, uint64_t in_force, uint8_t ready)
{
	struct cluster_msg m;
	uint8_t code;
	char why[256];

	memset(&m, 0, sizeof(m));
	m.type = type;
	(void)snprintf(m.name, sizeof(m.name), "%s", name);
	m.af = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, m.addr), 1);
	m.weight = 10;
	m.ready = ready;
	m.map_version = installed;
	m.map_in_force = in_force;
	(void)members_apply(&d->members, &d->conf.director, &m, 1000, &code, why, sizeof(why));
	assert_int_equal(code, CLUSTER_REPLY_OK);
}

/* The exact lines mailplexctl map status gives a mailbox move to wait on. */
static void
test_map_status_lists_every_relay_with_both_versions(void **state)
{
	struct fx *f = *state;
	struct control_reply r;

	handle(&f->d, "map-status", &r);
	assert_false(r.failed);
	assert_string_equal(r.text,
	                    "published 0\n"
	                    "relay relay1 map_installed 0 map_in_force 0 state static\n"
	                    "relay relay-two map_installed 0 map_in_force 0 state static\n");
	control_reply_free(&r);
	f->d.mapserve.version = 42;
	join(&f->d, CLUSTER_MSG_JOIN, "relay3", "10.0.0.23", 41, 40, CLUSTER_READY_NODE);
	join(&f->d, CLUSTER_MSG_HEARTBEAT, "relay3", "10.0.0.23", 42, 41, CLUSTER_READY_NODE);
	join(&f->d, CLUSTER_MSG_JOIN, "relay4", "10.0.0.24", 42, 42, CLUSTER_READY_NODE);
	join(&f->d, CLUSTER_MSG_LEAVE, "relay4", "10.0.0.24", 42, 39, CLUSTER_READY_NODE);
	join(&f->d, CLUSTER_MSG_JOIN, "relay5", "10.0.0.25", 42, 0, 0);
	handle(&f->d, "map-status", &r);
	assert_false(r.failed);
	print_message("%s", r.text);
	assert_string_equal(r.text,
	                    "published 42\n"
	                    "relay relay1 map_installed 0 map_in_force 0 state static\n"
	                    "relay relay-two map_installed 0 map_in_force 0 state static\n"
	                    "relay relay3 map_installed 42 map_in_force 41 state admitted\n"
	                    "relay relay4 map_installed 42 map_in_force 39 state draining\n"
	                    "relay relay5 map_installed 42 map_in_force 0 state not-ready\n");
	control_reply_free(&r);
	/* director status shows it on the relay's line too. */
	f->d.members.fd = 0;
	f->d.conf.director.cluster_listen = "127.0.0.1:7945";
	handle(&f->d, "status", &r);
	f->d.members.fd = -1;
	f->d.conf.director.cluster_listen = NULL;
	assert_false(r.failed);
	assert_non_null(strstr(r.text, "\njoined: relay3 10.0.0.23 "));
	assert_non_null(strstr(r.text, "map 42) map in force 41\n"));
	control_reply_free(&r);
	members_clear(&f->d.members);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cmd_table_accepts_known_commands),
	    cmocka_unit_test(test_cmd_table_refuses_unknown_and_wrong_counts),
	    cmocka_unit_test_setup_teardown(test_drain_marks_the_member_and_schedules_a_pass,
	                                    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_drain_of_unknown_relay_is_an_error_reply, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_map_status_lists_every_relay_with_both_versions,
	                                    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_status_prints_aligned_tables_from_the_last_dump,
	                                    fx_setup, fx_teardown),
	};

	log_init("test_director_control", 1, LOG_LEVEL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
