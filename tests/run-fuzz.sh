#!/bin/sh
# A short run of every libFuzzer target, starting from its seed corpus (tests/fuzz/corpus/).
# New inputs go to a scratch corpus under the build dir, never into the source tree.
set -u
dir=$1
seconds=$2
shift 2
top=$(cd "$(dirname "$0")/.." && pwd)
failed=""
for f in "$@"; do
	echo "== fuzz: $f (${seconds}s)"
	work="$dir/corpus/$f"
	mkdir -p "$work"
	seeds="$top/tests/fuzz/corpus/$f"
	[ -d "$seeds" ] || seeds=""
	if ! "$dir/$f" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$dir/$f-" "$work" $seeds >"$dir/$f.log" 2>&1; then
		failed="$failed $f"
		tail -n 40 "$dir/$f.log" >&2
	else
		grep -E '^stat::number_of_executed_units' "$dir/$f.log" || true
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz targets FAILED:$failed (crash inputs: $dir/FUZZER-crash-*)" >&2
	exit 1
fi
echo "fuzz targets: all $# ran clean"
