/*
 * Unit tests for the director's reconciliation plan: the kernel table is made to match
 * the desired state with the fewest operations, drained destinations leave only when
 * idle or at their deadline, and addresses the director does not manage are left alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "plan.h"

#define VIP "192.0.2.10"

static struct ipvs_service
svc4(const char *addr, uint16_t port)
{
	struct ipvs_service s;

	memset(&s, 0, sizeof(s));
	s.af = AF_INET;
	s.protocol = 6;
	assert_int_equal(inet_pton(AF_INET, addr, &s.addr.in), 1);
	s.port = port;
	memcpy(s.sched, "wlc", 4);
	return s;
}

static struct ipvs_dest
dest4(const char *addr, uint16_t port, int weight)
{
	struct ipvs_dest d;

	memset(&d, 0, sizeof(d));
	d.af = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, &d.addr.in), 1);
	d.port = port;
	d.fwd = IPVS_FWD_DR;
	d.weight = weight;
	return d;
}

static struct plan_vip
vip4(const char *addr)
{
	struct plan_vip v;

	memset(&v, 0, sizeof(v));
	v.af = AF_INET;
	assert_int_equal(inet_pton(AF_INET, addr, &v.addr.in), 1);
	return v;
}

struct fixture {
	struct plan_dest wd[2];
	struct plan_service want;
	struct ipvs_dest hd[3];
	struct plan_kernel_service have;
	struct plan_vip vip;
	struct plan plan;
};

/* Wanted: VIP:25 with relays .21 (weight 100) and .22 (weight 50). */
static void
fixture_init(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->wd[0].dest = dest4("10.0.0.21", 25, 100);
	f->wd[1].dest = dest4("10.0.0.22", 25, 50);
	f->want.svc = svc4(VIP, 25);
	f->want.dests = f->wd;
	f->want.ndests = 2;
	f->have.svc = svc4(VIP, 25);
	f->hd[0] = dest4("10.0.0.21", 25, 100);
	f->hd[1] = dest4("10.0.0.22", 25, 50);
	f->have.dests = f->hd;
	f->have.ndests = 2;
	f->vip = vip4(VIP);
}

static void
build(struct fixture *f, int with_kernel, uint64_t now_ms)
{
	assert_int_equal(plan_build(&f->plan, &f->want, 1, with_kernel ? &f->have : NULL,
	                            with_kernel ? 1 : 0, &f->vip, 1, now_ms),
	                 0);
}

static void
test_empty_kernel_gets_service_then_destinations(void **state)
{
	struct fixture f;

	fixture_init(&f);
	build(&f, 0, 0);
	assert_int_equal(f.plan.nops, 3);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_SERVICE_ADD);
	assert_int_equal(f.plan.ops[1].op, IPVS_OP_DEST_ADD);
	assert_int_equal(f.plan.ops[1].dest.weight, 100);
	assert_int_equal(f.plan.ops[2].op, IPVS_OP_DEST_ADD);
	assert_int_equal(f.plan.ops[2].dest.weight, 50);
	plan_free(&f.plan);
}

static void
test_matching_table_needs_no_operation(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.hd[0].active_conns = 7; /* counters are not configuration */
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 0);
	plan_free(&f.plan);
}

static void
test_weight_changed_by_hand_is_put_back(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.hd[1].weight = 3;
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_EDIT);
	assert_int_equal(f.plan.ops[0].dest.weight, 50);
	plan_free(&f.plan);
}

static void
test_destination_deleted_by_hand_is_added_again(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.have.ndests = 1;
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_ADD);
	assert_true(plan_dest_same(&f.plan.ops[0].dest, &f.wd[1].dest));
	plan_free(&f.plan);
}

static void
test_scheduler_change_edits_the_service_only(void **state)
{
	struct fixture f;

	fixture_init(&f);
	memcpy(f.have.svc.sched, "rr", 3);
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_SERVICE_EDIT);
	assert_string_equal(f.plan.ops[0].svc.sched, "wlc");
	plan_free(&f.plan);
}

static void
test_whole_address_persistence_mask_is_not_a_change(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.want.svc.persistence_s = 300;
	f.have.svc.persistence_s = 300;
	f.have.svc.netmask_len = 32;
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 0);
	plan_free(&f.plan);
}

static void
test_unknown_busy_destination_is_drained_not_cut(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.hd[2] = dest4("10.0.0.99", 25, 10);
	f.hd[2].active_conns = 2;
	f.have.ndests = 3;
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_EDIT);
	assert_int_equal(f.plan.ops[0].dest.weight, 0);
	plan_free(&f.plan);
}

static void
test_unknown_idle_destination_is_deleted(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.hd[2] = dest4("10.0.0.99", 25, 0);
	f.have.ndests = 3;
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_DEL);
	plan_free(&f.plan);
}

static void
test_drain_sets_weight_zero_while_connections_remain(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.wd[0].want = PLAN_WANT_DRAIN;
	f.wd[0].drain_deadline_ms = 1000;
	f.hd[0].inactive_conns = 1;
	build(&f, 1, 500);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_EDIT);
	assert_int_equal(f.plan.ops[0].dest.weight, 0);
	plan_free(&f.plan);

	/* Already at weight 0 and still busy: wait. */
	f.hd[0].weight = 0;
	build(&f, 1, 999);
	assert_int_equal(f.plan.nops, 0);
	plan_free(&f.plan);
}

static void
test_drain_deletes_when_idle_or_at_the_deadline(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.wd[0].want = PLAN_WANT_DRAIN;
	f.wd[0].drain_deadline_ms = 1000;
	f.hd[0].weight = 0;
	f.hd[0].active_conns = 4;
	build(&f, 1, 1000);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_DEL);
	plan_free(&f.plan);

	f.hd[0].active_conns = 0;
	build(&f, 1, 10);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_DEL);
	plan_free(&f.plan);
}

static void
test_drained_destination_absent_from_kernel_stays_absent(void **state)
{
	struct fixture f;

	fixture_init(&f);
	f.wd[1].want = PLAN_WANT_DRAIN;
	f.have.ndests = 1;
	build(&f, 1, 0);
	assert_int_equal(f.plan.nops, 0);
	plan_free(&f.plan);
}

static void
test_unmanaged_service_is_left_alone(void **state)
{
	struct fixture f;
	struct plan_kernel_service other[2];

	fixture_init(&f);
	other[0] = f.have;
	memset(&other[1], 0, sizeof(other[1]));
	other[1].svc = svc4("198.51.100.7", 80);
	other[1].dests = f.hd;
	other[1].ndests = 2;
	assert_int_equal(plan_build(&f.plan, &f.want, 1, other, 2, &f.vip, 1, 0), 0);
	assert_int_equal(f.plan.nops, 0);
	plan_free(&f.plan);
}

static void
test_managed_service_no_longer_configured_is_drained_then_deleted(void **state)
{
	struct fixture f;
	struct plan_kernel_service stale;

	fixture_init(&f);
	stale = f.have;
	stale.svc = svc4(VIP, 110);
	f.hd[0].active_conns = 1;
	assert_int_equal(plan_build(&f.plan, NULL, 0, &stale, 1, &f.vip, 1, 0), 0);
	assert_int_equal(f.plan.nops, 2);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_DEST_EDIT); /* busy: weight 0 */
	assert_int_equal(f.plan.ops[1].op, IPVS_OP_DEST_DEL);  /* idle: gone */
	plan_free(&f.plan);

	stale.ndests = 0;
	assert_int_equal(plan_build(&f.plan, NULL, 0, &stale, 1, &f.vip, 1, 0), 0);
	assert_int_equal(f.plan.nops, 1);
	assert_int_equal(f.plan.ops[0].op, IPVS_OP_SERVICE_DEL);
	plan_free(&f.plan);
}

/* Kernel dumps come in the kernel's hash order, not ours: matching must not care. */
static void
test_large_tables_in_different_orders_match(void **state)
{
	enum { N = 10000 };
	static struct plan_dest wd[N];
	static struct ipvs_dest hd[N];
	struct plan_service want;
	struct plan_kernel_service have;
	struct plan_vip vip = vip4(VIP);
	struct plan plan;
	char addr[32];

	memset(&want, 0, sizeof(want));
	memset(&have, 0, sizeof(have));
	memset(&plan, 0, sizeof(plan));
	for (int i = 0; i < N; i++) {
		snprintf(addr, sizeof(addr), "10.%d.%d.%d", i / 65536, (i / 256) % 256, i % 256);
		memset(&wd[i], 0, sizeof(wd[i]));
		wd[i].dest = dest4(addr, 25, 1 + i % 7);
		hd[N - 1 - i] = wd[i].dest;
	}
	want.svc = svc4(VIP, 25);
	want.dests = wd;
	want.ndests = N;
	have.svc = want.svc;
	have.dests = hd;
	have.ndests = N;
	assert_int_equal(plan_build(&plan, &want, 1, &have, 1, &vip, 1, 0), 0);
	assert_int_equal(plan.nops, 0);
	plan_free(&plan);

	/* One weight off, one missing, one extra: exactly three operations. */
	hd[17].weight += 1;
	hd[N - 1] = dest4("192.168.0.1", 25, 1);
	assert_int_equal(plan_build(&plan, &want, 1, &have, 1, &vip, 1, 0), 0);
	assert_int_equal(plan.nops, 3);
	plan_free(&plan);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty_kernel_gets_service_then_destinations),
	    cmocka_unit_test(test_matching_table_needs_no_operation),
	    cmocka_unit_test(test_weight_changed_by_hand_is_put_back),
	    cmocka_unit_test(test_destination_deleted_by_hand_is_added_again),
	    cmocka_unit_test(test_scheduler_change_edits_the_service_only),
	    cmocka_unit_test(test_whole_address_persistence_mask_is_not_a_change),
	    cmocka_unit_test(test_unknown_busy_destination_is_drained_not_cut),
	    cmocka_unit_test(test_unknown_idle_destination_is_deleted),
	    cmocka_unit_test(test_drain_sets_weight_zero_while_connections_remain),
	    cmocka_unit_test(test_drain_deletes_when_idle_or_at_the_deadline),
	    cmocka_unit_test(test_drained_destination_absent_from_kernel_stays_absent),
	    cmocka_unit_test(test_unmanaged_service_is_left_alone),
	    cmocka_unit_test(test_managed_service_no_longer_configured_is_drained_then_deleted),
	    cmocka_unit_test(test_large_tables_in_different_orders_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
