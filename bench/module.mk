# Benchmark drivers (built by `make noinst`, run by `make bench-map`), never installed.
NOINST_PROGRAMS += map-bench
map-bench_SRCS := bench/map_bench.c
