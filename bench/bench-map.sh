#!/bin/sh
# The map benchmark (not a test): a 1,000,000-user source (users over 10 back ends,
# 10,000 aliases, letter-range and regex rules), compiled with mailplex-map; then
# map-bench looks up random existing users and random rule-only users on one core.
# Reports compile seconds, DB size, lookups per second and peak RSS.
# Usage: bench/bench-map.sh BUILD_BIN_DIR   (goal: compile < 10 s, >= 500,000 lookups/s)
set -eu
bindir=$(cd "$1" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
users=${MAP_BENCH_USERS:-1000000}
lookups=${MAP_BENCH_LOOKUPS:-2000000}
# map-bench is a noinst program; build it in the same build dir if it is missing.
if [ ! -x "$bindir/map-bench" ]; then
	make -C "$top" O="$(dirname "$bindir")" noinst >/dev/null
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

awk -v n="$users" 'BEGIN {
	for (b = 0; b < 10; b++)
		printf "backend store%d lmtp=10.1.%d.1:24 imap=10.1.%d.1:143 pop3=10.1.%d.1:110 tls=on\n", b, b, b, b
	print "domain bigisp.com default store9"
	print "domain bigisp.net"
	for (i = 0; i < n; i++)
		printf "user u%07d store%d\n", i, i % 10
	for (i = 0; i < 10000; i++)
		printf "alias list%05d: u%07d, u%07d, u%07d\n", i, i, i + 1, i + 2
	print "rule a-k store0"
	print "rule /^[0-9]+$/ store1"
	print "rule l-z store2"
}' >"$tmp/bench.map"
awk -v n="$users" 'BEGIN { srand(1); for (i = 0; i < 100000; i++) printf "u%07d@bigisp.com\n", int(rand() * n) }' >"$tmp/existing"
awk 'BEGIN { srand(2); for (i = 0; i < 100000; i++) printf "%c%dx@bigisp.com\n", 97 + int(rand() * 26), i }' >"$tmp/ruleonly"

echo "source: $users users, $(wc -c <"$tmp/bench.map") bytes"
start=$(date +%s.%N)
"$bindir/mailplex-map" compile "$tmp/bench.map" "$tmp/map.db"
end=$(date +%s.%N)
echo "compile: $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }') s (wall, including parse)"
echo "db size: $(stat -c %s "$tmp/map.db") bytes"
if [ -x /usr/bin/time ]; then
	/usr/bin/time -f "compile peak RSS: %M kB" "$bindir/mailplex-map" compile "$tmp/bench.map" "$tmp/map.db" >/dev/null
fi
echo "== random existing users"
"$bindir/map-bench" "$tmp/map.db" "$tmp/existing" "$lookups"
echo "== random rule-only users"
"$bindir/map-bench" "$tmp/map.db" "$tmp/ruleonly" "$lookups"
