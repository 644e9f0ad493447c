/*
 * Unit tests for the director's desired state (director/state.c): what each relay should
 * be in each service given health and operator drains, the drain deadline that starts
 * when a relay turns and never moves, weights and ports per forwarding method, the health
 * a restart or reload starts from, the config checks, and the plan those inputs make.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>

#include "director.h"
#include "log.h"

#define DRAIN_MS 60000

static const char two_services[] =
    "director = {\n"
    "  drain_timeout = \"60s\";\n"
    "  services = (\n"
    "    { name = \"smtp\"; vip = \"192.0.2.10:25\"; },\n"
    "    { name = \"imap\"; vip = \"192.0.2.10:143\"; forwarding = \"nat\";\n"
    "      relay_port = 10143; scheduler = \"rr\"; persistence = \"1500ms\"; }\n"
    "  );\n"
    "  relays = ( { name = \"relay1\"; address = \"10.0.0.21\"; },\n"
    "             { name = \"relay2\"; address = \"10.0.0.22\"; weight = 50; } );\n"
    "};\n";

struct fx {
	struct mailplex_conf conf;
	struct director_state st;
};

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[CONF_ERR_MAX];

	assert_non_null(f);
	if (mailplex_conf_load_string(two_services, "t.conf", &f->conf, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	assert_int_equal(state_conf_check(&f->conf.director, err, sizeof(err)), 0);
	assert_int_equal(state_init(&f->st, &f->conf.director), 0);
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	state_free(&f->st);
	mailplex_conf_free(&f->conf);
	free(f);
	return 0;
}

static void
all_healthy(struct director_state *st)
{
	for (size_t i = 0; i < st->nservices * st->nrelays; i++)
		st->members[i].healthy = 1;
}

static const struct plan_dest *
want(const struct director_state *st, size_t s, size_t r)
{
	return &st->want[s].dests[r];
}

static void
test_healthy_relays_are_active_with_their_weights(void **state)
{
	struct fx *f = *state;
	char addr[64];

	all_healthy(&f->st);
	state_build(&f->st, 1000);
	assert_int_equal(f->st.want[0].ndests, 2);
	assert_int_equal(want(&f->st, 0, 0)->want, PLAN_WANT_ACTIVE);
	assert_int_equal(want(&f->st, 0, 0)->dest.weight, 100);
	assert_int_equal(want(&f->st, 0, 1)->dest.weight, 50);
	assert_int_equal(want(&f->st, 0, 0)->dest.fwd, IPVS_FWD_DR);
	assert_int_equal(want(&f->st, 0, 0)->dest.port, 25);
	assert_int_equal(ipvs_addr_format(AF_INET, &want(&f->st, 0, 1)->dest.addr,
	                                  want(&f->st, 0, 1)->dest.port, addr, sizeof(addr)),
	                 0);
	assert_string_equal(addr, "10.0.0.22:25");
	assert_string_equal(f->st.want[0].svc.sched, "wlc");
	assert_int_equal(f->st.want[0].svc.persistence_s, 0);
	/* Both services share one VIP address: it is listed once as managed. */
	assert_int_equal(f->st.nvips, 1);
}

static void
test_nat_sends_to_relay_port_and_persistence_rounds_up(void **state)
{
	struct fx *f = *state;

	all_healthy(&f->st);
	state_build(&f->st, 1000);
	assert_int_equal(want(&f->st, 1, 0)->dest.fwd, IPVS_FWD_MASQ);
	assert_int_equal(want(&f->st, 1, 0)->dest.port, 10143);
	assert_int_equal(f->st.want[1].svc.port, 143);
	assert_string_equal(f->st.want[1].svc.sched, "rr");
	assert_int_equal(f->st.want[1].svc.persistence_s, 2);
}

static void
test_operator_drain_of_one_service_sets_weight_zero_with_deadline(void **state)
{
	struct fx *f = *state;
	char err[256];

	all_healthy(&f->st);
	state_build(&f->st, 1000);
	assert_int_equal(state_set_drained(&f->st, "relay1", "smtp", 1, err, sizeof(err)), 1);
	state_build(&f->st, 5000);
	assert_int_equal(want(&f->st, 0, 0)->want, PLAN_WANT_DRAIN);
	assert_int_equal(want(&f->st, 0, 0)->dest.weight, 0);
	assert_int_equal(want(&f->st, 0, 0)->drain_deadline_ms, 5000 + DRAIN_MS);
	/* relay1 in imap and relay2 everywhere are untouched. */
	assert_int_equal(want(&f->st, 1, 0)->want, PLAN_WANT_ACTIVE);
	assert_int_equal(want(&f->st, 0, 1)->want, PLAN_WANT_ACTIVE);
	/* Draining again changes nothing and does not restart the deadline. */
	assert_int_equal(state_set_drained(&f->st, "relay1", "smtp", 1, err, sizeof(err)), 0);
	state_build(&f->st, 9000);
	assert_int_equal(want(&f->st, 0, 0)->drain_deadline_ms, 5000 + DRAIN_MS);
}

static void
test_drain_without_service_covers_every_service_and_undrain_restores(void **state)
{
	struct fx *f = *state;
	char err[256];

	all_healthy(&f->st);
	assert_int_equal(state_set_drained(&f->st, "relay2", NULL, 1, err, sizeof(err)), 2);
	state_build(&f->st, 1000);
	assert_int_equal(want(&f->st, 0, 1)->want, PLAN_WANT_DRAIN);
	assert_int_equal(want(&f->st, 1, 1)->want, PLAN_WANT_DRAIN);
	assert_string_equal(state_member_label(state_member(&f->st, 0, 1)), "drained");
	assert_int_equal(state_set_drained(&f->st, "relay2", NULL, 0, err, sizeof(err)), 2);
	state_build(&f->st, 2000);
	assert_int_equal(want(&f->st, 0, 1)->want, PLAN_WANT_ACTIVE);
	assert_int_equal(want(&f->st, 0, 1)->dest.weight, 50);
	assert_int_equal(want(&f->st, 1, 1)->want, PLAN_WANT_ACTIVE);
	assert_false(state_member(&f->st, 0, 1)->draining);
}

static void
test_unknown_names_are_refused(void **state)
{
	struct fx *f = *state;
	char err[256];

	assert_int_equal(state_set_drained(&f->st, "relay9", NULL, 1, err, sizeof(err)), -1);
	assert_string_equal(err, "no relay named 'relay9'");
	assert_int_equal(state_set_drained(&f->st, "relay1", "pop3", 1, err, sizeof(err)), -1);
	assert_string_equal(err, "no service named 'pop3'");
	for (size_t i = 0; i < 4; i++)
		assert_false(f->st.members[i].drained);
}

static void
test_failing_check_drains_with_deadline_and_recovery_restores(void **state)
{
	struct fx *f = *state;
	struct director_member *m = state_member(&f->st, 0, 0);

	all_healthy(&f->st);
	state_build(&f->st, 1000);
	m->healthy = 0;
	state_build(&f->st, 3000);
	assert_int_equal(want(&f->st, 0, 0)->want, PLAN_WANT_DRAIN);
	assert_int_equal(want(&f->st, 0, 0)->drain_deadline_ms, 3000 + DRAIN_MS);
	state_build(&f->st, 30000);
	assert_int_equal(want(&f->st, 0, 0)->drain_deadline_ms, 3000 + DRAIN_MS);
	m->healthy = 1;
	state_build(&f->st, 31000);
	assert_int_equal(want(&f->st, 0, 0)->want, PLAN_WANT_ACTIVE);
	assert_int_equal(want(&f->st, 0, 0)->dest.weight, 100);
	/* A second failure starts a fresh deadline. */
	m->healthy = 0;
	state_build(&f->st, 40000);
	assert_int_equal(want(&f->st, 0, 0)->drain_deadline_ms, 40000 + DRAIN_MS);
}

static void
test_undrain_of_an_unhealthy_relay_keeps_it_out(void **state)
{
	struct fx *f = *state;
	char err[256];

	all_healthy(&f->st);
	state_member(&f->st, 0, 0)->healthy = 0;
	assert_int_equal(state_set_drained(&f->st, "relay1", "smtp", 1, err, sizeof(err)), 1);
	assert_int_equal(state_set_drained(&f->st, "relay1", "smtp", 0, err, sizeof(err)), 1);
	state_build(&f->st, 1000);
	assert_int_equal(want(&f->st, 0, 0)->want, PLAN_WANT_DRAIN);
	assert_string_equal(state_member_label(state_member(&f->st, 0, 0)), "down");
}

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

static void
test_restart_starts_from_what_the_kernel_holds(void **state)
{
	struct fx *f = *state;
	struct ipvs_dest kd[2] = {kdest("10.0.0.21", 25, 100, 3, 1),
	                          kdest("10.0.0.22", 25, 0, 1, 0)};
	struct plan_kernel_service ks;

	memset(&ks, 0, sizeof(ks));
	state_service_ipvs(&((struct mailplex_conf_service *)f->conf.director.services.v)[0],
	                   &ks.svc);
	ks.dests = kd;
	ks.ndests = 2;
	state_note_kernel(&f->st, &ks, 1);
	state_health_from_kernel(&f->st);
	assert_true(state_member(&f->st, 0, 0)->healthy);
	assert_int_equal(state_member(&f->st, 0, 0)->kernel.active_conns, 3);
	/* Weight 0 in the kernel was a drain: it must pass its checks again. */
	assert_false(state_member(&f->st, 0, 1)->healthy);
	assert_true(state_member(&f->st, 0, 1)->in_kernel);
	assert_false(state_member(&f->st, 1, 0)->healthy);
	state_build(&f->st, 1000);
	assert_string_equal(state_member_label(state_member(&f->st, 0, 0)), "active");
	assert_string_equal(state_member_label(state_member(&f->st, 0, 1)), "draining");
	assert_string_equal(state_member_label(state_member(&f->st, 1, 0)), "down");
}

static void
test_plan_from_state_drains_then_deletes_when_idle(void **state)
{
	struct fx *f = *state;
	struct ipvs_dest kd[2] = {kdest("10.0.0.21", 25, 100, 3, 1),
	                          kdest("10.0.0.22", 25, 50, 0, 0)};
	struct plan_kernel_service ks;
	struct plan p;
	char err[256];

	memset(&ks, 0, sizeof(ks));
	state_service_ipvs(&((struct mailplex_conf_service *)f->conf.director.services.v)[0],
	                   &ks.svc);
	ks.dests = kd;
	ks.ndests = 2;
	all_healthy(&f->st);
	/* imap's relays are down: only smtp is wanted with members. */
	for (size_t r = 0; r < 2; r++)
		state_member(&f->st, 1, r)->healthy = 0;
	assert_int_equal(state_set_drained(&f->st, "relay1", "smtp", 1, err, sizeof(err)), 1);
	state_build(&f->st, 1000);
	memset(&p, 0, sizeof(p));
	assert_int_equal(
	    plan_build(&p, f->st.want, f->st.nservices, &ks, 1, f->st.vips, f->st.nvips, 1000), 0);
	/* imap is missing: one SERVICE_ADD, no dest (nobody healthy); relay1 to weight 0. */
	assert_int_equal(p.nops, 2);
	assert_int_equal(p.ops[0].op, IPVS_OP_DEST_EDIT);
	assert_int_equal(p.ops[0].dest.weight, 0);
	assert_int_equal(p.ops[1].op, IPVS_OP_SERVICE_ADD);
	assert_int_equal(p.ops[1].svc.port, 143);
	plan_free(&p);
	/* Idle now: deleted. */
	kd[0].weight = 0;
	kd[0].active_conns = 0;
	kd[0].inactive_conns = 0;
	state_build(&f->st, 2000);
	assert_int_equal(plan_build(&p, f->st.want, 1, &ks, 1, f->st.vips, f->st.nvips, 2000), 0);
	assert_int_equal(p.nops, 1);
	assert_int_equal(p.ops[0].op, IPVS_OP_DEST_DEL);
	plan_free(&p);
	/* Busy but past the deadline: deleted too. */
	kd[0].active_conns = 5;
	state_build(&f->st, 1000 + DRAIN_MS);
	assert_int_equal(
	    plan_build(&p, f->st.want, 1, &ks, 1, f->st.vips, f->st.nvips, 1000 + DRAIN_MS), 0);
	assert_int_equal(p.nops, 1);
	assert_int_equal(p.ops[0].op, IPVS_OP_DEST_DEL);
	plan_free(&p);
}

static void
test_reload_carries_health_and_drains_by_name(void **state)
{
	struct fx *f = *state;
	static const char reordered[] =
	    "director = { services = ( { name = \"imap\"; vip = \"192.0.2.10:143\"; },\n"
	    "  { name = \"pop3\"; vip = \"192.0.2.10:110\"; } );\n"
	    "  relays = ( { name = \"relay3\"; address = \"10.0.0.23\"; },\n"
	    "             { name = \"relay1\"; address = \"10.0.0.21\"; } ); };\n";
	struct mailplex_conf nc;
	struct director_state ns;
	char err[CONF_ERR_MAX];

	state_member(&f->st, 1, 0)->healthy = 1; /* relay1 in imap */
	state_member(&f->st, 1, 0)->drained = 1;
	state_member(&f->st, 1, 0)->draining = 1;
	state_member(&f->st, 1, 0)->drain_deadline_ms = 777;
	assert_int_equal(mailplex_conf_load_string(reordered, "n.conf", &nc, err, sizeof(err)), 0);
	assert_int_equal(state_init(&ns, &nc.director), 0);
	state_carry(&ns, &f->st);
	assert_true(state_member(&ns, 0, 1)->healthy);
	assert_true(state_member(&ns, 0, 1)->drained);
	assert_int_equal(state_member(&ns, 0, 1)->drain_deadline_ms, 777);
	assert_false(state_member(&ns, 0, 0)->healthy); /* relay3 is new */
	assert_false(state_member(&ns, 1, 1)->healthy); /* pop3 is new */
	state_free(&ns);
	mailplex_conf_free(&nc);
}

static void
expect_conf_error(const char *text, const char *msg)
{
	struct mailplex_conf c;
	char err[CONF_ERR_MAX];

	if (mailplex_conf_load_string(text, "bad.conf", &c, err, sizeof(err)) == -1)
		fail_msg("schema refused it: %s", err);
	assert_int_equal(state_conf_check(&c.director, err, sizeof(err)), -1);
	assert_string_equal(err, msg);
	mailplex_conf_free(&c);
}

static void
test_config_checks_the_schema_cannot_express(void **state)
{
	expect_conf_error("director = { services = ( { name = \"s\"; vip = \"192.0.2.1:25\";"
	                  " relay_port = 2525; } ); };",
	                  "service s: relay_port 2525 differs from the VIP's port 25, which only "
	                  "NAT forwarding can do");
	expect_conf_error("director = { services = ( { name = \"s\"; vip = \"192.0.2.1:25\"; },"
	                  " { name = \"s\"; vip = \"192.0.2.1:26\"; } ); };",
	                  "service s is defined twice");
	expect_conf_error("director = { services = ( { name = \"a\"; vip = \"192.0.2.1:25\"; },"
	                  " { name = \"b\"; vip = \"192.0.2.1:25\"; } ); };",
	                  "services a and b share vip 192.0.2.1:25");
	expect_conf_error("director = { relays = ( { name = \"r\"; address = \"10.0.0.1\"; },"
	                  " { name = \"r\"; address = \"10.0.0.2\"; } ); };",
	                  "relay r is defined twice");
	expect_conf_error("director = { services = ( { name = \"s\"; vip = \"192.0.2.1:25\"; } );"
	                  " relays = ( { name = \"r6\"; address = \"2001:db8::1\"; } ); };",
	                  "service s: relay r6 (2001:db8::1) is not in the VIP's address family; "
	                  "only TUN forwarding crosses families");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)
	    T(test_healthy_relays_are_active_with_their_weights),
	    T(test_nat_sends_to_relay_port_and_persistence_rounds_up),
	    T(test_operator_drain_of_one_service_sets_weight_zero_with_deadline),
	    T(test_drain_without_service_covers_every_service_and_undrain_restores),
	    T(test_unknown_names_are_refused),
	    T(test_failing_check_drains_with_deadline_and_recovery_restores),
	    T(test_undrain_of_an_unhealthy_relay_keeps_it_out),
	    T(test_restart_starts_from_what_the_kernel_holds),
	    T(test_plan_from_state_drains_then_deletes_when_idle),
	    T(test_reload_carries_health_and_drains_by_name),
	    cmocka_unit_test(test_config_checks_the_schema_cannot_express),
#undef T
	};

	log_init("test_director_state", 1, LOG_LEVEL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
