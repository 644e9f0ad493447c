# mailplex — GNU make build.
#
#   make                 build every program (gcc by default; `make CC=clang` works too)
#   make deps            install build and test dependencies from Debian packages (root)
#   make check           deps, gcc+clang builds, ASan+UBSan unit + integration tests,
#                        short fuzz runs, kernel-IPVS system tests in user-mode Linux
#   make install         DESTDIR=... PREFIX=... (default PREFIX=/usr/local)
#   make demo            deps, build, then the whole cluster in user-mode Linux, step by step
#   make deb             Debian packages mailplex-common, -director, -relay in $(O)/deb/ (packaging/)
#   make bench-map       1,000,000-user map benchmark (not a test)
#   make bench-smtp      mailplex-smtpd vs Postfix as the same relay to smtp-sink (not a test)
#   make bench-director  IPVS programming and check CPU in user-mode Linux (not a test)
#   make bench-proxy     mailplex-proxy vs Perdition, nginx mail, Dovecot alone (not a test)
#   make record-ipvs-fixtures  re-record the kernel replies the unit tests decode
#   make clean
#
# Each program folder has a module.mk that adds to PROGRAMS and names its sources;
# this file holds only the mechanism.

CC        ?= cc
O         ?= build
SAN       ?= 0
FUZZ      ?= 0
PREFIX    ?= /usr/local
SBINDIR   ?= $(PREFIX)/sbin
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
DOCDIR    ?= $(PREFIX)/share/doc/mailplex
SYSCONFDIR ?= /etc
LOCALSTATEDIR ?= /var
RUNSTATEDIR ?= /run
SYSTEMDUNITDIR ?= /lib/systemd/system
MODULESLOADDIR ?= /usr/lib/modules-load.d
DESTDIR   ?=

PKGS      := libconfig openssl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
NL_CFLAGS  := $(shell pkg-config --cflags libnl-genl-3.0 2>/dev/null)
NL_LIBS    := $(shell pkg-config --libs libnl-genl-3.0 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

WARN      := -Wall -Wextra -Werror -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
             -Wpointer-arith -Wshadow -Wno-unused-parameter
HARDEN    := -fstack-protector-strong -fstack-clash-protection -fPIE
LDHARDEN  := -pie -Wl,-z,relro,-z,now -Wl,--as-needed
CPPFLAGS  += -Ilib -Idirector -Ihealthcheck -D_GNU_SOURCE \
             -DMAILPLEX_SYSCONFDIR='"$(SYSCONFDIR)/mailplex"' \
             -DMAILPLEX_STATEDIR='"$(LOCALSTATEDIR)/lib/mailplex"' \
             -DMAILPLEX_RUNDIR='"$(RUNSTATEDIR)/mailplex"' \
             -DMAILPLEX_SPOOLDIR='"$(LOCALSTATEDIR)/spool/mailplex"'
CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu11 $(WARN) $(HARDEN) $(PKG_CFLAGS) $(NL_CFLAGS) -MMD -MP
LDFLAGS   += $(LDHARDEN)
LDLIBS    += $(PKG_LIBS) -lgdbm

ifeq ($(SAN),1)
# Sanitizers replace _FORTIFY_SOURCE (they check the same calls, more precisely).
CFLAGS    += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS   += -fsanitize=address,undefined
else ifeq ($(FUZZ),1)
CFLAGS    += -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
             -DMAILPLEX_FUZZING
LDFLAGS   += -fsanitize=address,undefined
else
CPPFLAGS  += -D_FORTIFY_SOURCE=2
endif

# PROGRAMS are installed; NOINST_PROGRAMS (benchmarks, test drivers) are only built.
PROGRAMS  :=
NOINST_PROGRAMS :=
LIB_SRCS  :=
MANPAGES  :=
include $(sort $(wildcard lib/*.mk))
include $(sort $(wildcard */module.mk */*/module.mk))
# Extra sources for a unit test or fuzz target: tests/unit/NAME.mk sets test_NAME_SRCS.
include $(sort $(wildcard tests/unit/*.mk tests/fuzz/*.mk))

obj        = $(patsubst %.c,$(O)/obj/%.o,$(1))
LIBMAILPLEX := $(O)/lib/libmailplex.a

.PHONY: all
all: $(addprefix $(O)/bin/,$(PROGRAMS))

# Quiet by default (one line per file); `make V=1` shows whole command lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif

$(O)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<  ($(CC)$(if $(filter 1,$(SAN)), san)$(if $(filter 1,$(FUZZ)), fuzz))")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIBMAILPLEX): $(call obj,$(LIB_SRCS))
	@mkdir -p $(dir $@)
	rm -f $@
	$(AR) rcs $@ $^

# A program: NAME_SRCS (its own folder), NAME_LIBS (extra link flags).
define program_rule
$(O)/bin/$(1): $(call obj,$($(1)_SRCS)) $(LIBMAILPLEX)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$($(1)_LIBS) $$(LDLIBS)
endef
$(foreach p,$(PROGRAMS) $(NOINST_PROGRAMS),$(eval $(call program_rule,$(p))))

.PHONY: noinst
noinst: $(addprefix $(O)/bin/,$(NOINST_PROGRAMS))

# ---- unit tests (cmocka): tests/unit/test_NAME.c, extra sources in test_NAME_SRCS ----
UNIT_TESTS := $(basename $(notdir $(wildcard tests/unit/test_*.c)))
define unit_rule
$(O)/tests/$(1): $(call obj,tests/unit/$(1).c $($(1)_SRCS)) $(LIBMAILPLEX)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$($(1)_LIBS) $(CMOCKA_LIBS) $$(LDLIBS)
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call unit_rule,$(t))))

.PHONY: unit-tests
unit-tests: $(addprefix $(O)/tests/,$(UNIT_TESTS))

# ---- fuzz targets (libFuzzer, clang): tests/fuzz/fuzz_NAME.c ----
FUZZERS := $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))
define fuzz_rule
$(O)/fuzz/$(1): $(call obj,tests/fuzz/$(1).c $($(1)_SRCS)) $(LIBMAILPLEX)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -fsanitize=fuzzer -o $$@ $$^ $$($(1)_LIBS) $$(LDLIBS)
endef
$(foreach f,$(FUZZERS),$(eval $(call fuzz_rule,$(f))))

.PHONY: fuzzers
fuzzers: $(addprefix $(O)/fuzz/,$(FUZZERS))

# ---- the targets a user runs ----
.PHONY: deps check check-build check-unit check-integration check-fuzz check-banned \
        check-compilers install clean demo bench-map bench-smtp

deps:
	@tests/deps.sh

FUZZ_SECONDS ?= 15
CHECK_O := build/check
FUZZ_O  := build/fuzz

check: deps
	$(MAKE) check-banned
	$(MAKE) check-compilers
	$(MAKE) O=$(CHECK_O) SAN=1 all noinst unit-tests
	$(MAKE) O=$(CHECK_O) SAN=1 check-unit
	$(MAKE) O=$(CHECK_O) SAN=1 check-integration
	$(MAKE) O=$(FUZZ_O) CC=clang FUZZ=1 fuzzers
	$(MAKE) O=$(FUZZ_O) CC=clang FUZZ=1 check-fuzz
	$(MAKE) O=build/system check-system
	@echo "make check: all passed"

# Both compilers must build every program warning-free (-Werror).
check-compilers:
	$(MAKE) O=build/gcc CC=gcc all noinst
	$(MAKE) O=build/clang CC=clang all noinst

check-banned:
	@tests/banned.sh

check-unit: unit-tests
	@tests/run-unit.sh $(O)/tests $(UNIT_TESTS)

check-integration: all noinst
	@tests/run-integration.sh $(O)/bin

check-fuzz: fuzzers
	@tests/run-fuzz.sh $(O)/fuzz $(FUZZ_SECONDS) $(FUZZERS)

# Examples the operator copies by hand (sysctl.d snippets, a generated keepalived.conf).
CONF_EXAMPLES := conf/keepalived.conf.example conf/sysctl-director.conf conf/sysctl-relay-dr.conf

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(SYSCONFDIR)/mailplex \
	        $(DESTDIR)$(LOCALSTATEDIR)/lib/mailplex $(DESTDIR)$(LOCALSTATEDIR)/spool/mailplex
	install -m 0755 $(addprefix $(O)/bin/,$(PROGRAMS)) $(DESTDIR)$(SBINDIR)/
	@for f in conf/mailplex.conf conf/mailplex.map; do \
	    if [ -e "$(DESTDIR)$(SYSCONFDIR)/mailplex/$${f#conf/}" ]; then \
	        echo "keeping existing $(DESTDIR)$(SYSCONFDIR)/mailplex/$${f#conf/}"; \
	    else install -m 0644 $$f $(DESTDIR)$(SYSCONFDIR)/mailplex/; fi; done
	install -d $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(MODULESLOADDIR)
	@for u in $(UNITS); do \
	    sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SPOOLDIR@|$(LOCALSTATEDIR)/spool/mailplex|g' -e 's|@STATEDIR@|$(LOCALSTATEDIR)/lib/mailplex|g' systemd/$$u.in >$(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
	    chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; done
	install -m 0644 systemd/mailplex-director.modules-load \
	    $(DESTDIR)$(MODULESLOADDIR)/mailplex-director.conf
	@for m in $(MANPAGES); do \
	    s=$${m##*.}; install -d $(DESTDIR)$(MANDIR)/man$$s; \
	    install -m 0644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done
	install -d $(DESTDIR)$(DOCDIR)/examples
	install -m 0644 $(CONF_EXAMPLES) $(DESTDIR)$(DOCDIR)/examples/

# The demo: packages, the programs, then one user-mode-Linux boot that shows the cluster
# working step by step (tests/demo.sh, tests/system/scenarios/demo.sh).
DEMO_O ?= build/demo
demo: deps
	$(MAKE) O=$(DEMO_O) all
	@tests/demo.sh $(DEMO_O)/bin $(DEMO_O)/system

bench-map: all noinst
	@bench/bench-map.sh $(O)/bin

# kept here, not in bench/module.mk: a rule there would become the default goal
bench-smtp: all
	@bench/bench-smtp.sh $(O)/bin

clean:
	rm -rf build

-include $(shell find $(O) -name '*.d' -type f 2>/dev/null)
