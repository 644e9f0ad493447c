#!/bin/bash
# bench-director.sh - `make bench-director`: boots user-mode Linux once for the director
# benchmark (tests/system/scenarios/director-bench.sh) and prints its numbers as a table.
# A benchmark, not a test: it exits non-zero only when the run itself failed.
#
#   bench/bench-director.sh [-b BINDIR] [-o OUTBASE]
# Environment: BENCH_DESTS (10000), BENCH_ADM_N (500 ipvsadm -a processes, extrapolated),
# BENCH_RELAYS (1000), BENCH_CPU_S (20 s of CPU sampling), SYS_MEM (768M).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BINDIR=build/bin
OUTBASE=build/bench
while getopts b:o: opt; do
	case $opt in
	b) BINDIR=$OPTARG ;;
	o) OUTBASE=$OPTARG ;;
	*) echo "usage: $0 [-b BINDIR] [-o OUTBASE]" >&2; exit 2 ;;
	esac
done
mkdir -p "$OUTBASE" || exit 2
# UML passes only the harness's own variables to the guest: the sizes travel in a file
# next to the programs (the guest mounts that folder).
{
	echo "BENCH_DESTS=${BENCH_DESTS:-10000}"
	echo "BENCH_ADM_N=${BENCH_ADM_N:-500}"
	echo "BENCH_RELAYS=${BENCH_RELAYS:-1000}"
	echo "BENCH_CPU_S=${BENCH_CPU_S:-20}"
} >"$BINDIR/director-bench.env" || exit 2
# The scenario reads BENCH_* from its environment; the kernel command line carries them.
export SYS_MEM=${SYS_MEM:-768M} SYS_TIMEOUT=${SYS_TIMEOUT:-600} SYS_BUDGET=${SYS_BUDGET:-560} \
	SYS_SCENARIO_TIMEOUT=${SYS_SCENARIO_TIMEOUT:-540} SYS_QUIET=1
out=$("$HERE/../tests/system/uml-run.sh" -b "$BINDIR" -o "$OUTBASE" director-bench)
rc=$?
run=$(echo "$out" | sed -n 's/^uml-run.sh: .* results=//p')
log=$run/director-bench.log
if [ ! -s "$log" ]; then
	echo "$out"
	echo "bench-director: no results (uml-run.sh exit $rc)" >&2
	exit 1
fi
# key=value pairs of every BENCH line, into one lookup.
declare -A V
while read -r _ rest; do
	for kv in $rest; do V[${kv%%=*}]=${kv#*=}; done
done < <(grep '^BENCH ' "$log")
v() { echo "${V[$1]:-?}"; }
N=$(v dests)
ADM_N=$(v adm_n)
add_ms=$(v reconcile_add_ms)
adm_ms=$(v ipvsadm_a_ms)
adm_x=$(awk -v m="$adm_ms" -v a="$ADM_N" -v n="$N" 'BEGIN { if (a > 0 && m != "?") printf "%.0f", m * n / a; else print "?" }')
R_ms=$(v ipvsadm_R_ms)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.1fx", b / a; else print "?" }'; }
hz=$(v hz)
wall=$(v checks_wall_ms)
cpu_d=$(awk -v t="$(v director_cpu_ticks)" -v h="$hz" -v w="$wall" 'BEGIN { if (w > 0 && h > 0) printf "%.3f", t / h / (w / 1000); else print "?" }')
cpu_r=$(awk -v t="$(v responder_cpu_ticks)" -v h="$hz" -v w="$wall" 'BEGIN { if (w > 0 && h > 0) printf "%.3f", t / h / (w / 1000); else print "?" }')
cps=$(awk -v c="$(v checks_connections)" -v w="$wall" 'BEGIN { if (w > 0) printf "%.0f", c / (w / 1000); else print "?" }')

echo "mailplex-director benchmark in user-mode Linux (kernel $(v kernel), $(v cpus) CPU); results: $run"
echo
printf '%-58s %12s %10s\n' "measurement" "ms" "vs batch"
printf '%-58s %12s %10s\n' "----------------------------------------------------------" "------------" "----------"
printf '%-58s %12s %10s\n' "reconcile adding $N dests (dump+plan+pipelined batch)" "$add_ms" "1.0x"
printf '%-58s %12s %10s\n' "  of which: dump / plan / batch" "$(v add_dump_ms) / $(v add_plan_ms) / $(v add_batch_ms)" ""
printf '%-58s %12s %10s\n' "  same adds packed per sendmsg, no ACKs (not the director's path)" "$(v packed_add_ms)" "$(ratio "$add_ms" "$(v packed_add_ms)")"
printf '%-58s %12s %10s\n' "ipvsadm -R, one process, $N lines" "$R_ms" "$(ratio "$add_ms" "$R_ms")"
printf '%-58s %12s %10s\n' "ipvsadm -a x $ADM_N processes (measured)" "$adm_ms" ""
printf '%-58s %12s %10s\n' "ipvsadm -a x $N processes (extrapolated x$((N / ADM_N)))" "$adm_x" "$(ratio "$add_ms" "$adm_x")"
printf '%-58s %12s %10s\n' "no-op reconcile, $N dests (dump+plan, median of $(v rounds))" "$(v reconcile_noop_ms)" ""
printf '%-58s %12s %10s\n' "  of which: dump" "$(v noop_dump_ms)" ""
printf '%-58s %12s %10s\n' "ipvsadm -Ln of $N dests" "$(v ipvsadm_Ln_ms)" ""
echo
printf '%-58s %12s\n' "health checks: $(v relays) relays x 7 services, 1 s interval" ""
printf '%-58s %12s\n' "  director CPU (user+sys s per wall s)" "$cpu_d"
printf '%-58s %12s\n' "  responder CPU (user+sys s per wall s)" "$cpu_r"
printf '%-58s %12s\n' "  checks completed per s (wanted $(v checks_expected_per_s))" "$cps"
printf '%-58s %12s\n' "  destinations up at the end / checks down lines" "$(v dests_up_after) / $(v checks_down_lines)"
printf '%-58s %12s\n' "  time until all were up after start (ms)" "$(v checks_all_up_ms)"
grep -q '^RESULT=PASS' "$run/verdict" || { echo "bench-director: some step failed, see $log" >&2; exit 1; }
