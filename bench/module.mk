# Benchmark drivers (built by `make noinst`, run by `make bench-map`), never installed.
NOINST_PROGRAMS += map-bench
map-bench_SRCS := bench/map_bench.c
# The IMAP load generator of bench/bench-proxy.sh (logins/s, FETCH MB/s, idle sessions).
NOINST_PROGRAMS += imap-bench
imap-bench_SRCS := bench/imap_bench.c

# A benchmark, not a test: mailplex-proxy beside Perdition and nginx's mail proxy in front
# of one Dovecot, and Dovecot alone (bench/bench-proxy.sh installs and starts them; root).
bench_saved_goal := $(.DEFAULT_GOAL)
.PHONY: bench-proxy
bench-proxy: $(O)/bin/imap-bench $(O)/bin/mailplex-proxy $(O)/bin/mailplex-map
	bench/bench-proxy.sh -b $(O)/bin
.DEFAULT_GOAL := $(bench_saved_goal)
