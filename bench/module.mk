# Benchmark drivers (built by `make noinst`, run by `make bench-map`), never installed.
NOINST_PROGRAMS += map-bench
map-bench_SRCS := bench/map_bench.c
# The IMAP load generator of bench/bench-proxy.sh (logins/s, FETCH MB/s, idle sessions).
NOINST_PROGRAMS += imap-bench
imap-bench_SRCS := bench/imap_bench.c
