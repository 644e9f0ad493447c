/*
 * Unit tests for the director's membership (director/members.c) and how the state takes
 * joined relays (director/state.c): join, refresh, refusals for taken names and addresses,
 * heartbeats of unknown relays asked to rejoin, leave and silence turning a relay leaving,
 * readiness, forgetting once the kernel holds nothing, the services a relay did not name,
 * and the rejoin grace that keeps unclaimed kernel entries after a restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "director.h"
#include "log.h"

static const char conf_text[] = "director = {\n"
                                "  cluster_listen = \"127.0.0.1:7945\";\n"
                                "  services = (\n"
                                "    { name = \"smtp\"; vip = \"192.0.2.10:25\"; },\n"
                                "    { name = \"imap\"; vip = \"192.0.2.10:143\"; } );\n"
                                "  relays = ( { name = \"relay1\"; address = \"10.0.0.21\"; } );\n"
                                "};\n";

struct fx {
	struct mailplex_conf conf;
	struct director_membership mb;
};

static int
fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[CONF_ERR_MAX];

	assert_non_null(f);
	if (mailplex_conf_load_string(conf_text, "t.conf", &f->conf, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	f->mb.fd = -1;
	*state = f;
	return 0;
}

static int
fx_teardown(void **state)
{
	struct fx *f = *state;

	members_clear(&f->mb);
	mailplex_conf_free(&f->conf);
	free(f);
	return 0;
}

static void
msg(struct cluster_msg *m, enum cluster_msg_type type, const char *name, const char *addr,
    const char *svc)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	(void)snprintf(m->name, sizeof(m->name), "%s", name);
	m->af = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, m->addr), 1);
	m->weight = 70;
	m->ready = CLUSTER_READY_NODE | CLUSTER_READY_PROXY;
	if (svc != NULL) {
		m->nservices = 1;
		(void)snprintf(m->services[0].name, sizeof(m->services[0].name), "%s", svc);
	}
}

static int
apply(struct fx *f, const struct cluster_msg *m, uint64_t now, uint8_t *code)
{
	char why[256];

	return members_apply(&f->mb, &f->conf.director, m, now, code, why, sizeof(why));
}

static void
test_join_adds_then_refreshes(void **state)
{
	struct fx *f = *state;
	struct cluster_msg m;
	uint8_t code;

	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "smtp");
	assert_int_equal(apply(f, &m, 1000, &code), MEMBERS_TABLE_CHANGED);
	assert_int_equal(code, CLUSTER_REPLY_OK);
	assert_int_equal(f->mb.n, 1);
	assert_string_equal(f->mb.v[0]->relay.name, "relay2");
	assert_string_equal(f->mb.v[0]->relay.address.str, "10.0.0.22");
	assert_int_equal(f->mb.v[0]->relay.weight, 70);
	/* The same JOIN again changes nothing the state needs. */
	assert_int_equal(apply(f, &m, 2000, &code), 0);
	assert_int_equal(f->mb.v[0]->heard_ms, 2000);
	/* Another weight or service list does. */
	m.weight = 80;
	assert_int_equal(apply(f, &m, 3000, &code), MEMBERS_TABLE_CHANGED);
	assert_int_equal(f->mb.n, 1);
}

static void
test_join_of_taken_name_or_address_is_refused(void **state)
{
	struct fx *f = *state;
	struct cluster_msg m;
	uint8_t code;
	char why[256];

	msg(&m, CLUSTER_MSG_JOIN, "relay1", "10.0.0.50", "smtp");
	assert_int_equal(members_apply(&f->mb, &f->conf.director, &m, 1, &code, why, sizeof(why)),
	                 0);
	assert_int_equal(code, CLUSTER_REPLY_REFUSED);
	assert_non_null(strstr(why, "listed in the config"));
	msg(&m, CLUSTER_MSG_JOIN, "sneaky", "10.0.0.21", "smtp");
	assert_int_equal(members_apply(&f->mb, &f->conf.director, &m, 1, &code, why, sizeof(why)),
	                 0);
	assert_int_equal(code, CLUSTER_REPLY_REFUSED);
	assert_non_null(strstr(why, "listed relay relay1"));
	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "smtp");
	assert_int_equal(apply(f, &m, 1, &code), MEMBERS_TABLE_CHANGED);
	msg(&m, CLUSTER_MSG_JOIN, "relay3", "10.0.0.22", "smtp");
	assert_int_equal(members_apply(&f->mb, &f->conf.director, &m, 1, &code, why, sizeof(why)),
	                 0);
	assert_int_equal(code, CLUSTER_REPLY_REFUSED);
	assert_non_null(strstr(why, "joined relay relay2"));
	assert_int_equal(f->mb.n, 1);
}

static void
test_unknown_heartbeat_is_asked_to_rejoin(void **state)
{
	struct fx *f = *state;
	struct cluster_msg m;
	uint8_t code;

	msg(&m, CLUSTER_MSG_HEARTBEAT, "relay2", "10.0.0.22", NULL);
	assert_int_equal(apply(f, &m, 1, &code), 0);
	assert_int_equal(code, CLUSTER_REPLY_REJOIN);
	assert_int_equal(f->mb.n, 0);
	/* A LEAVE of an unknown relay is fine and does nothing. */
	m.type = CLUSTER_MSG_LEAVE;
	assert_int_equal(apply(f, &m, 1, &code), 0);
	assert_int_equal(code, CLUSTER_REPLY_OK);
	m.type = CLUSTER_MSG_REPLY;
	assert_int_equal(apply(f, &m, 1, &code), 0);
	assert_int_equal(code, CLUSTER_REPLY_REFUSED);
}

static void
test_leave_silence_and_readiness_turn_it_leaving(void **state)
{
	struct fx *f = *state;
	struct cluster_msg m;
	uint8_t code;

	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "smtp");
	assert_int_equal(apply(f, &m, 1000, &code), MEMBERS_TABLE_CHANGED);
	assert_string_equal(members_state_word(f->mb.v[0]), "admitted");
	/* Not ready: leaving; ready again: back. */
	m.type = CLUSTER_MSG_HEARTBEAT;
	m.ready = CLUSTER_READY_PROXY;
	assert_int_equal(apply(f, &m, 2000, &code), MEMBERS_STATE_CHANGED);
	assert_true(f->mb.v[0]->leaving);
	assert_string_equal(f->mb.v[0]->why, "not ready");
	assert_string_equal(members_state_word(f->mb.v[0]), "not-ready");
	m.ready = CLUSTER_READY_NODE;
	assert_int_equal(apply(f, &m, 3000, &code), MEMBERS_STATE_CHANGED);
	assert_false(f->mb.v[0]->leaving);
	/* Silence longer than dead_after. */
	assert_int_equal(members_sweep_dead(&f->mb, 13000, 10000), 0);
	assert_int_equal(members_sweep_dead(&f->mb, 13001, 10000), 1);
	assert_string_equal(f->mb.v[0]->why, "no heartbeat");
	assert_string_equal(members_state_word(f->mb.v[0]), "silent");
	assert_int_equal(members_sweep_dead(&f->mb, 14000, 10000), 0);
	/* A heartbeat after silence brings it back. */
	assert_int_equal(apply(f, &m, 14000, &code), MEMBERS_STATE_CHANGED);
	assert_false(f->mb.v[0]->leaving);
	/* LEAVE is final: a late heartbeat does not undo it, a JOIN does. */
	m.type = CLUSTER_MSG_LEAVE;
	assert_int_equal(apply(f, &m, 15000, &code), MEMBERS_STATE_CHANGED);
	assert_string_equal(f->mb.v[0]->why, "leave");
	assert_string_equal(members_state_word(f->mb.v[0]), "draining");
	m.type = CLUSTER_MSG_HEARTBEAT;
	assert_int_equal(apply(f, &m, 15001, &code), 0);
	assert_true(f->mb.v[0]->leaving);
	m.type = CLUSTER_MSG_JOIN;
	assert_int_equal(apply(f, &m, 16000, &code), MEMBERS_STATE_CHANGED);
	assert_false(f->mb.v[0]->leaving);
}

/* Each datagram's map_in_force is kept (LEAVE's too: a draining relay still has sessions). */
static void
test_map_versions_are_kept_from_every_datagram(void **state)
{
	struct fx *f = *state;
	struct cluster_msg m;
	uint8_t code;

	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "smtp");
	m.map_version = 10;
	m.map_in_force = 9;
	assert_int_equal(apply(f, &m, 1000, &code), MEMBERS_TABLE_CHANGED);
	assert_int_equal(f->mb.v[0]->map_version, 10);
	assert_int_equal(f->mb.v[0]->map_in_force, 9);
	m.type = CLUSTER_MSG_HEARTBEAT;
	m.map_version = 11;
	m.map_in_force = 10;
	assert_int_equal(apply(f, &m, 2000, &code), 0);
	assert_int_equal(f->mb.v[0]->map_version, 11);
	assert_int_equal(f->mb.v[0]->map_in_force, 10);
	m.type = CLUSTER_MSG_LEAVE;
	m.map_version = 12;
	m.map_in_force = 11;
	assert_int_equal(apply(f, &m, 3000, &code), MEMBERS_STATE_CHANGED);
	assert_int_equal(f->mb.v[0]->map_in_force, 11);
	assert_int_equal(f->mb.v[0]->map_version, 11); /* installed: heartbeats only */
	/* A relay of wire version 1 cannot tell: 0, which no move takes as done. */
	m.type = CLUSTER_MSG_JOIN;
	m.map_in_force = 0;
	assert_int_equal(apply(f, &m, 4000, &code), MEMBERS_STATE_CHANGED);
	assert_int_equal(f->mb.v[0]->map_in_force, 0);
}

static void
test_state_takes_joined_relays_for_their_services(void **state)
{
	struct fx *f = *state;
	struct director_state st;
	struct cluster_msg m;
	uint8_t code;
	int r;

	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "imap");
	assert_int_equal(apply(f, &m, 1000, &code), MEMBERS_TABLE_CHANGED);
	assert_int_equal(state_init_joined(&st, &f->conf.director, f->mb.v, f->mb.n), 0);
	assert_int_equal(st.nrelays, 2);
	r = state_relay_index(&st, "relay2");
	assert_int_equal(r, 1);
	assert_true(state_member(&st, 0, 1)->absent);  /* smtp: not named */
	assert_false(state_member(&st, 1, 1)->absent); /* imap */
	assert_false(state_member(&st, 1, 0)->absent); /* a listed relay is in every service */
	state_member(&st, 0, 0)->healthy = 1;
	state_member(&st, 1, 0)->healthy = 1;
	state_member(&st, 1, 1)->healthy = 1;
	state_build(&st, 5000);
	assert_int_equal(st.want[0].ndests, 1); /* smtp: relay1 only */
	assert_int_equal(st.want[1].ndests, 2);
	assert_int_equal(st.want[1].dests[1].want, PLAN_WANT_ACTIVE);
	assert_int_equal(st.want[1].dests[1].dest.weight, 70);
	assert_string_equal(state_member_label(state_member(&st, 1, 1)), "adding");
	/* Leaving drains it like a failed check; labelled by why once out. */
	f->mb.v[0]->leaving = 1;
	f->mb.v[0]->why = "leave";
	state_build(&st, 6000);
	assert_int_equal(st.want[1].dests[1].want, PLAN_WANT_DRAIN);
	assert_int_equal(st.want[1].dests[1].dest.weight, 0);
	assert_string_equal(state_member_label(state_member(&st, 1, 1)), "left");
	/* Not ready and out of the kernel: kept, it still heartbeats. */
	f->mb.v[0]->why = "not ready";
	assert_int_equal(members_forget(&f->mb, &st), 0);
	f->mb.v[0]->why = "leave";
	/* Forgotten only when the kernel holds it nowhere. */
	state_member(&st, 1, 1)->in_kernel = 1;
	assert_int_equal(members_forget(&f->mb, &st), 0);
	state_member(&st, 1, 1)->in_kernel = 0;
	assert_int_equal(members_forget(&f->mb, &st), 1);
	assert_true(f->mb.v[0]->gone);
	/* A gone relay that joins again is the same entry, back. */
	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "imap");
	assert_int_equal(apply(f, &m, 7000, &code), MEMBERS_TABLE_CHANGED);
	assert_false(f->mb.v[0]->gone);
	assert_int_equal(f->mb.n, 1);
	state_free(&st);
}

static struct ipvs_dest
kdest(const char *addr, uint16_t port, int32_t weight)
{
	struct ipvs_dest d;

	memset(&d, 0, sizeof(d));
	d.af = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, &d.addr.in), 1);
	d.port = port;
	d.weight = weight;
	d.fwd = IPVS_FWD_DR;
	d.active_conns = 3;
	return d;
}

static void
test_rejoin_grace_keeps_unclaimed_entries(void **state)
{
	struct fx *f = *state;
	struct director d;
	struct plan_kernel_service *ks;
	struct plan p;
	size_t nks;

	memset(&d, 0, sizeof(d));
	d.conf = f->conf;
	assert_non_null(d.loop = ev_loop_new());
	assert_int_equal(state_init(&d.state, &d.conf.director), 0);
	/* The kernel holds relay1 and a joined relay the restarted director does not know. */
	assert_non_null(d.kernel = calloc(1, sizeof(*d.kernel)));
	d.nkernel = 1;
	state_service_ipvs(&((struct mailplex_conf_service *)d.conf.director.services.v)[0],
	                   &d.kernel[0].svc);
	assert_non_null(d.kernel[0].dests = calloc(2, sizeof(struct ipvs_dest)));
	d.kernel[0].dests[0] = kdest("10.0.0.21", 25, 100);
	d.kernel[0].dests[1] = kdest("10.0.0.22", 25, 70);
	d.kernel[0].ndests = 2;
	state_note_kernel(&d.state, d.kernel, d.nkernel);
	state_health_from_kernel(&d.state);
	state_build(&d.state, ev_now_ms(d.loop));
	d.members.fd = 99; /* listening, as far as the filter asks */
	d.members.grace_until_ms = ev_now_ms(d.loop) + 20000;
	assert_int_equal(members_grace_filter(&d, &ks, &nks), 1);
	assert_int_equal(nks, 1);
	assert_int_equal(ks[0].ndests, 1);
	memset(&p, 0, sizeof(p));
	assert_int_equal(plan_build(&p, d.state.want, d.state.nservices, ks, nks, d.state.vips,
	                            d.state.nvips, ev_now_ms(d.loop)),
	                 0);
	/* imap is added; nothing touches 10.0.0.22 in smtp. */
	for (size_t i = 0; i < p.nops; i++)
		assert_true(p.ops[i].op == IPVS_OP_SERVICE_ADD || p.ops[i].op == IPVS_OP_DEST_ADD);
	plan_free(&p);
	members_grace_free(ks, nks);
	/* After the grace the plan sees it and drains it. */
	d.members.grace_until_ms = ev_now_ms(d.loop);
	assert_int_equal(members_grace_filter(&d, &ks, &nks), 0);
	assert_null(ks);
	memset(&p, 0, sizeof(p));
	assert_int_equal(plan_build(&p, d.state.want, d.state.nservices, d.kernel, d.nkernel,
	                            d.state.vips, d.state.nvips, ev_now_ms(d.loop)),
	                 0);
	{
		int drained = 0;

		for (size_t i = 0; i < p.nops; i++)
			drained += p.ops[i].op == IPVS_OP_DEST_EDIT && p.ops[i].dest.weight == 0;
		assert_int_equal(drained, 1);
	}
	plan_free(&p);
	reconcile_kernel_free(&d);
	state_free(&d.state);
	ev_loop_free(d.loop);
}

static void
test_rebuild_keeps_running_checks(void **state)
{
	struct fx *f = *state;
	struct director d;
	struct cluster_msg m;
	struct hc_check *c1, *c2;
	char err[DIRECTOR_ERR_MAX];
	uint8_t code;

	memset(&d, 0, sizeof(d));
	d.conf = f->conf;
	d.members.fd = -1;
	assert_non_null(d.loop = ev_loop_new());
	ev_timer_init(&d.soon);
	ev_timer_init(&d.periodic);
	assert_int_equal(state_init(&d.state, &d.conf.director), 0);
	assert_int_equal(checks_start(&d, &d.state, err, sizeof(err)), 0);
	c1 = state_member(&d.state, 0, 0)->check;
	assert_non_null(c1);
	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "smtp");
	assert_int_equal(
	    members_apply(&d.members, &d.conf.director, &m, 1, &code, err, sizeof(err)),
	    MEMBERS_TABLE_CHANGED);
	assert_int_equal(members_state_rebuild(&d, err, sizeof(err)), 0);
	/* relay1 keeps its check, now calling back into the new state; relay2 has its own. */
	assert_int_equal(d.state.nrelays, 2);
	assert_ptr_equal(state_member(&d.state, 0, 0)->check, c1);
	assert_ptr_equal(c1->arg, state_member(&d.state, 0, 0));
	c2 = state_member(&d.state, 0, 1)->check;
	assert_non_null(c2);
	assert_null(state_member(&d.state, 1, 1)->check); /* imap: not offered */
	/* A new address is a new check. */
	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.23", "smtp");
	assert_int_equal(
	    members_apply(&d.members, &d.conf.director, &m, 2, &code, err, sizeof(err)),
	    MEMBERS_TABLE_CHANGED);
	assert_int_equal(members_state_rebuild(&d, err, sizeof(err)), 0);
	assert_ptr_equal(state_member(&d.state, 0, 0)->check, c1);
	assert_non_null(state_member(&d.state, 0, 1)->check);
	assert_non_null(strstr(state_member(&d.state, 0, 1)->check->spec.addr_str, "10.0.0.23"));
	checks_stop(&d.state);
	state_free(&d.state);
	members_clear(&d.members);
	ev_timer_stop(d.loop, &d.soon);
	ev_loop_free(d.loop);
}

static void
test_reload_listing_a_joined_relay_takes_it_over(void **state)
{
	struct fx *f = *state;
	struct mailplex_conf nc;
	struct member_relay *live[MEMBERS_MAX];
	struct cluster_msg m;
	char err[CONF_ERR_MAX];
	uint8_t code;

	msg(&m, CLUSTER_MSG_JOIN, "relay2", "10.0.0.22", "smtp");
	assert_int_equal(apply(f, &m, 1, &code), MEMBERS_TABLE_CHANGED);
	msg(&m, CLUSTER_MSG_JOIN, "relay3", "10.0.0.23", "smtp");
	assert_int_equal(apply(f, &m, 1, &code), MEMBERS_TABLE_CHANGED);
	if (mailplex_conf_load_string("director = { relays = ( { name = \"relayX\"; "
	                              "address = \"10.0.0.23\"; } ); };\n",
	                              "n.conf", &nc, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	assert_int_equal(members_yield(&f->mb, &nc.director), 1);
	assert_int_equal(members_live(&f->mb, live), 1);
	assert_string_equal(live[0]->name_buf, "relay2");
	/* A reload that fails gives it back; one that succeeds frees it. */
	members_unyield(&f->mb);
	assert_int_equal(members_live(&f->mb, live), 2);
	assert_int_equal(members_yield(&f->mb, &nc.director), 1);
	members_reap(&f->mb);
	assert_int_equal(f->mb.n, 1);
	mailplex_conf_free(&nc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_join_adds_then_refreshes, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_join_of_taken_name_or_address_is_refused, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_heartbeat_is_asked_to_rejoin, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_leave_silence_and_readiness_turn_it_leaving,
	                                    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_map_versions_are_kept_from_every_datagram,
	                                    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_state_takes_joined_relays_for_their_services,
	                                    fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_rejoin_grace_keeps_unclaimed_entries, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_rebuild_keeps_running_checks, fx_setup,
	                                    fx_teardown),
	    cmocka_unit_test_setup_teardown(test_reload_listing_a_joined_relay_takes_it_over,
	                                    fx_setup, fx_teardown),
	};

	log_init("test_director_members", 1, LOG_LEVEL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
