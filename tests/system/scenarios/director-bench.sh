#!/bin/bash
# director-bench: measurements for `make bench-director` (a benchmark, not a test; not in
# check-system). Prints "BENCH key=value" lines that bench/bench-director.sh tabulates:
#  1. one reconcile pass adding BENCH_DESTS destinations (director/plan.c + the pipelined
#     ipvs batch, through director_bench), and no-op passes (dump + plan) over them;
#     and, for comparison, the kernel's floor (requests packed many to a sendmsg);
#  2. the same destinations with one `ipvsadm -a` process each (BENCH_ADM_N of them,
#     extrapolated) and with one `ipvsadm -R` of BENCH_DESTS lines;
#  3. mailplex-director with BENCH_RELAYS relays x 7 services, 1 s check interval, against
#     one epoll responder for the whole /16 of relays: CPU seconds per wall second.
# Every step runs in a namespace of its own and every wait is bounded.
. "$SYS_SRC/lib.sh"
B=$SYS_BIN/director_bench
D=$SYS_BIN/mailplex-director
S=$SYS_SCRATCH
# Sizes from bench/bench-director.sh (the kernel command line carries only SYS_* values).
[ -r "$SYS_BIN/director-bench.env" ] && . "$SYS_BIN/director-bench.env"
N=${BENCH_DESTS:-10000}
ADM_N=${BENCH_ADM_N:-500}
RELAYS=${BENCH_RELAYS:-1000}
CPU_S=${BENCH_CPU_S:-20}
now_us() { echo "${EPOCHREALTIME/./}"; }
ms_since() { echo $((($(now_us) - $1) / 1000)); }

for b in "$B" "$D"; do
	[ -x "$b" ] || { sys_check "built_$b" 1; sys_finish; exit 1; }
done
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }
echo "BENCH kernel=$(uname -r) cpus=$(nproc) dests=$N adm_n=$ADM_N relays=$RELAYS"

# ---- 1. the director's reconcile path
sys_netns bench1
ip netns exec bench1 "$B" reconcile 10.90.255.10 "$N"
sys_check reconcile_bench $?
# Not the director's path: the same adds packed many to a sendmsg, only failures answered.
ip netns exec bench1 "$B" packed 10.90.255.12 "$N"
sys_check packed_bench $?

# ---- 2. ipvsadm, one process per destination, then one restore
sys_netns bench2
ip netns exec bench2 ipvsadm -A -t 10.91.255.10:25 -s wlc
# One shell inside the namespace runs the loop: what is timed is ipvsadm's own start-up
# and request per destination, as an operator's script would pay it.
t0=$(now_us)
ip netns exec bench2 /bin/bash -c '
	for ((i = 0; i < $1; i++)); do
		/usr/sbin/ipvsadm -a -t 10.91.255.10:25 -r "10.90.$((i / 250)).$((i % 250 + 1)):25" -g -w 100 || exit 1
	done' loop "$ADM_N"
ms=$(ms_since "$t0")
got=$(ip netns exec bench2 ipvsadm -Ln -t 10.91.255.10:25 | grep -c Route)
[ "$got" = "$ADM_N" ]
sys_check ipvsadm_a_all_added $? "$got of $ADM_N"
echo "BENCH ipvsadm_a_n=$ADM_N ipvsadm_a_ms=$ms"
ip netns exec bench2 ipvsadm -D -t 10.91.255.10:25
{
	echo "-A -t 10.91.255.11:25 -s wlc"
	for ((i = 0; i < N; i++)); do
		echo "-a -t 10.91.255.11:25 -r 10.90.$((i / 250)).$((i % 250 + 1)):25 -g -w 100"
	done
} >"$S/restore"
t0=$(now_us)
ip netns exec bench2 ipvsadm -R <"$S/restore"
rc=$?
ms=$(ms_since "$t0")
got=$(ip netns exec bench2 ipvsadm -Ln -t 10.91.255.11:25 | grep -c Route)
[ "$rc" = 0 ] && [ "$got" = "$N" ]
sys_check ipvsadm_R_all_added $? "$got of $N"
echo "BENCH ipvsadm_R_ms=$ms"
t0=$(now_us)
ip netns exec bench2 ipvsadm -Ln >/dev/null
echo "BENCH ipvsadm_Ln_ms=$(ms_since "$t0")"
ip netns exec bench2 ipvsadm -D -t 10.91.255.11:25

# ---- 3. health checks: RELAYS relays x 7 services, 1 s interval
sys_bridge br-b &&
	sys_host dir br-b 10.93.0.1/24 &&
	sys_host rs br-b 10.93.0.2/24 &&
	ip -n dir addr add 10.93.0.10/24 dev eth0 &&
	ip -n dir route add 10.92.0.0/16 via 10.93.0.2 &&
	ip -n rs route add local 10.92.0.0/16 dev lo
sys_check check_topology $? || { sys_finish; exit 1; }
ip netns exec rs "$B" responder "$S/resp.count" 600 smtp:25 smtp:587 smtp:2525 imap:143 \
	pop3:110 tcp:4190 tcp:24 &
RPID=$!
SYS_PIDS+=($RPID)
sys_wait_for 5000 "responder" test -s "$S/resp.count"
sys_check responder_ready $?
{
	echo 'log_level = "info";'
	echo 'director = {'
	echo "	control = \"$S/director.sock\";"
	echo '	reconcile_interval = "5s";'
	echo '	services = ('
	sep=" "
	for sp in smtp:25:smtp submission:587:smtp smtp-alt:2525:smtp imap:143:imap pop3:110:pop3 \
		sieve:4190:tcp lmtp:24:tcp; do
		IFS=: read -r name port type <<<"$sp"
		echo "	$sep{ name = \"$name\"; vip = \"10.93.0.10:$port\";"
		echo "	  check = { type = \"$type\"; interval = \"1s\"; timeout = \"3s\"; rise = 2; fall = 3; }; }"
		sep=","
	done
	echo '	);'
	echo '	relays = ('
	sep=" "
	for ((i = 0; i < RELAYS; i++)); do
		echo "	$sep{ name = \"r$i\"; address = \"10.92.$((i / 250)).$((i % 250 + 1))\"; }"
		sep=","
	done
	echo '	);'
	echo '};'
} >"$S/bench.conf"
"$D" -n -f "$S/bench.conf" >/dev/null
sys_check bench_config_valid $?
ip netns exec dir bash -c "ulimit -n 65536; exec \"$D\" -d -f \"$S/bench.conf\"" >"$S/director.log" 2>&1 &
DPID=$!
SYS_PIDS+=($DPID)
want=$((RELAYS * 7))
count_dests() { ip netns exec dir ipvsadm -Ln | grep -c Route; }
t0=$(now_us)
# A measurement, not a requirement: a guest too slow for the check rate never gets there.
if sys_wait_for 60000 "$want destinations up" eval '[ "$(count_dests)" = "$want" ]'; then
	echo "BENCH checks_all_up_ms=$(ms_since "$t0")"
else
	echo "BENCH checks_all_up_ms=never(60s)"
fi
echo "BENCH dests_up_at_start=$(count_dests)"
sys_snooze 3
hz=$(getconf CLK_TCK)
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
c0=$(cpu "$DPID")
r0=$(cpu "$RPID")
n0=$(cat "$S/resp.count")
t0=$(now_us)
sys_snooze "$CPU_S"
c1=$(cpu "$DPID")
r1=$(cpu "$RPID")
n1=$(cat "$S/resp.count")
wall_ms=$(ms_since "$t0")
up=$(count_dests)
echo "BENCH checks_wall_ms=$wall_ms director_cpu_ticks=$((c1 - c0)) responder_cpu_ticks=$((r1 - r0)) hz=$hz"
echo "BENCH checks_connections=$((n1 - n0)) checks_expected_per_s=$want dests_up_after=$up"
kill -0 "$DPID"
sys_check director_alive_after_bench $?
grep -c 'check down' "$S/director.log" | sed 's/^/BENCH checks_down_lines=/'
tail -n 5 "$S/director.log"
sys_finish
