# tests/system: kernel-IPVS system tests, booted in user-mode Linux where the host kernel
# has no IPVS (UML.md). The drivers are built, not installed; check-system boots UML once
# for every scenario; bench-director and record-ipvs-fixtures boot their own.
NOINST_PROGRAMS += ipvs_client_test
ipvs_client_test_SRCS := tests/system/ipvs_client_test.c director/ipvs.c director/ipvs_msg.c
ipvs_client_test_LIBS := $(NL_LIBS)
# The director benchmark's driver (bench/module.mk belongs to the map benchmark).
NOINST_PROGRAMS += director_bench
director_bench_SRCS := bench/director_bench.c director/plan.c director/ipvs.c director/ipvs_msg.c
director_bench_LIBS := $(NL_LIBS)

SYSTEM_SCENARIOS ?= ipvs-client director director-dr vrrp cluster-join cluster-leave cluster-map \
                    cluster-full
# One boot runs them all: the in-guest watchdog and the host bound grow with the list.
SYSTEM_BUDGET_S ?= 600
SYSTEM_TIMEOUT_S ?= 630
# One scenario's bound. cluster-full (the whole cluster) took 95 s alone on 2 cores, 131-137 s
# of a 257-264 s boot at load 4, and 180 s at load 16 (other UMLs sharing the cores): bounds
# for a hang, not for speed (2026-11-29).
SYSTEM_SCENARIO_TIMEOUT_S ?= 300

# A rule here must not become make's default goal (this file is read before `all`).
system_saved_goal := $(.DEFAULT_GOAL)
.PHONY: check-system record-ipvs-fixtures bench-director
check-system: $(O)/bin/ipvs_client_test $(O)/bin/mailplex-director $(O)/bin/mailplexctl \
              $(O)/bin/mailplex-relay $(O)/bin/mailplex-smtpd $(O)/bin/mailplex-proxy \
              $(O)/bin/mailplex-map
	SYS_BUDGET=$(SYSTEM_BUDGET_S) SYS_TIMEOUT=$(SYSTEM_TIMEOUT_S) \
	SYS_SCENARIO_TIMEOUT=$(SYSTEM_SCENARIO_TIMEOUT_S) \
	tests/system/uml-run.sh -b $(O)/bin -o $(O)/system $(SYSTEM_SCENARIOS)

# Records the real kernel's IPVS replies into tests/unit/fixtures/ipvs/ (then commit them,
# with the kernel version the README there names).
IPVS_FIXTURES := tests/unit/fixtures/ipvs
record-ipvs-fixtures: $(O)/bin/ipvs_client_test
	@run=$$(SYS_QUIET=1 tests/system/uml-run.sh -b $(O)/bin -o $(O)/system ipvs-record | \
		sed -n 's/^uml-run.sh: .* results=//p'); \
	log=$$run/ipvs-record.log; \
	grep -q '^RESULT=PASS' $$run/verdict 2>/dev/null || { echo "recording failed: $$run" >&2; exit 1; }; \
	mkdir -p $(IPVS_FIXTURES); \
	grep '^FIXTURE ' $$log | while read -r _ name data; do \
		echo "$$data" | base64 -d >$(IPVS_FIXTURES)/$$name || exit 1; \
		echo "  $(IPVS_FIXTURES)/$$name"; \
	done; \
	sed -n 's/^KERNEL //p' $$log >$(IPVS_FIXTURES)/KERNEL

# A benchmark, not a test: reconcile at 10,000 destinations vs ipvsadm, and the health
# checks' CPU at 1,000 relays x 7 services, in UML (bench/bench-director.sh prints a table).
bench-director: $(O)/bin/director_bench $(O)/bin/mailplex-director $(O)/bin/mailplexctl
	bench/bench-director.sh -b $(O)/bin -o $(O)/bench
.DEFAULT_GOAL := $(system_saved_goal)
