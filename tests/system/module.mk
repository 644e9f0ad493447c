# tests/system: kernel-IPVS system tests, booted in user-mode Linux where the host kernel
# has no IPVS (UML.md). The driver is built, not installed; check-system boots UML once.
NOINST_PROGRAMS += ipvs_client_test
ipvs_client_test_SRCS := tests/system/ipvs_client_test.c director/ipvs.c director/ipvs_msg.c
ipvs_client_test_LIBS := $(NL_LIBS)

SYSTEM_SCENARIOS ?= ipvs-client director

# A rule here must not become make's default goal (this file is read before `all`).
system_saved_goal := $(.DEFAULT_GOAL)
.PHONY: check-system
check-system: $(O)/bin/ipvs_client_test $(O)/bin/mailplex-director $(O)/bin/mailplexctl
	tests/system/uml-run.sh -b $(O)/bin -o $(O)/system $(SYSTEM_SCENARIOS)
.DEFAULT_GOAL := $(system_saved_goal)
