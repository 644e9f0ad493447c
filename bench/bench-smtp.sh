#!/bin/sh
# The relay benchmark (not a test): Postfix's smtp-source sends to mailplex-smtpd and, in the
# same run, to Postfix configured as the same relay (private config_directory, transport map
# to the same sink, in_flow_delay = 0, fsync of each queue file as always); both forward to
# one smtp-sink, which counts every message. Concurrency 1, 10, 50 x 1 KiB and 100 KiB,
# repetitions interleaved (rep 1 of every cell for both relays, then rep 2, ...), medians.
# Adapted from /work/shared/bench-anchors (setup-anchors.sh, smtp-bench).
# Usage: bench/bench-smtp.sh BUILD_BIN_DIR
# Knobs: BENCH_REPEAT (3), BENCH_SMTP_CONCS ("1 10 50"), BENCH_SMTP_SIZES ("1024 102400"),
# BENCH_SMTP_COUNT_1024 (2000), BENCH_SMTP_COUNT_102400 (1000), BENCH_SMTP_MAXS (120, per run),
# BENCH_BASE_BIN: the bin dir of another mailplex build, run as mailplex-base in the same
# run (its own spool, same file system, same config) for a before/after comparison,
# BENCH_SMTP_WORKERS (2): smtpd.workers of mailplex, BENCH_BASE_WORKERS (the same): of the base.
# Goal: mailplex >= 3x Postfix's messages/s at concurrency 10 and 50, same durability.
set -u
bindir=$(cd "$1" && pwd)
REPEAT=${BENCH_REPEAT:-3}
CONCS=${BENCH_SMTP_CONCS:-"1 10 50"}
SIZES=${BENCH_SMTP_SIZES:-"1024 102400"}
MAXS=${BENCH_SMTP_MAXS:-120}
[ "$MAXS" -gt 600 ] && MAXS=600
[ "$REPEAT" -gt 10 ] && REPEAT=10
DOMAIN=bench.test
# Postfix checks inet_interfaces against the interface list: lo has only 127.0.0.1
SINK_IP=127.0.0.90 PF_IP=127.0.0.1 MX_IP=127.0.0.92
BASE=$((27000 + ($$ % 300) * 4))
SINK_PORT=$BASE PF_PORT=$((BASE + 1)) MX_PORT=$((BASE + 2)) MB_PORT=$((BASE + 3))
BASEBIN=""
if [ -n "${BENCH_BASE_BIN:-}" ]; then
	BASEBIN=$(cd "$BENCH_BASE_BIN" && pwd) && [ -x "$BASEBIN/mailplex-smtpd" ] ||
		{ echo "bench-smtp: no mailplex-smtpd in BENCH_BASE_BIN=$BENCH_BASE_BIN" >&2; exit 2; }
fi
# The spools of both relays on one file system (the same fsync costs): under /var/tmp.
W=$(mktemp -d /var/tmp/mailplex-bench-smtp.XXXXXX)
chmod 755 "$W"
SINKPID="" MXPID="" MBPID="" PF_STARTED=""

for tool in postfix postmap smtp-source smtp-sink python3; do
	command -v "$tool" >/dev/null 2>&1 || { echo "bench-smtp: $tool missing (make deps)" >&2; exit 2; }
done
[ -x "$bindir/mailplex-smtpd" ] && [ -x "$bindir/mailplex-map" ] ||
	{ echo "bench-smtp: no mailplex-smtpd in $bindir" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench-smtp: Postfix's master needs root" >&2; exit 2; }

kill_tree() { # PID: the process and its children, SIGTERM, 5 s, then SIGKILL
	p=$1
	kids=$(pgrep -P "$p" 2>/dev/null)
	kill "$p" 2>/dev/null
	for _ in $(seq 25); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
	for k in $kids $p; do kill -9 "$k" 2>/dev/null; done
}
cleanup() {
	[ -n "$MXPID" ] && kill_tree "$MXPID"
	[ -n "$MBPID" ] && kill_tree "$MBPID"
	if [ -n "$PF_STARTED" ]; then
		timeout 30 postfix -c "$W/postfix/etc" stop >/dev/null 2>&1
		pf=$(tr -d ' ' <"$W/postfix/spool/pid/master.pid" 2>/dev/null)
		[ -n "$pf" ] && kill -0 "$pf" 2>/dev/null && kill_tree "$pf"
	fi
	[ -n "$SINKPID" ] && kill_tree "$SINKPID"
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

# wait_port ADDR PORT [SECONDS] from the integration tests' shared functions (definitions only).
. "$(dirname "$0")/../tests/integration/lib.sh"

# ---- the sink: counts messages (-c writes a running counter) ----
mkdir "$W/sink"
smtp-sink -u postfix -c -m 2000 "$SINK_IP:$SINK_PORT" 1024 >"$W/sink/counter.out" 2>"$W/sink.err" &
SINKPID=$!
wait_port "$SINK_IP" "$SINK_PORT" 20 || { echo "bench-smtp: smtp-sink did not start" >&2; exit 1; }

# ---- Postfix as the relay (as in bench-anchors' setup-anchors.sh) ----
PF=$W/postfix
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
chown postfix:postfix "$PF/data"
{
	echo "$DOMAIN smtp:[$SINK_IP]:$SINK_PORT"
	for i in $(seq 1000); do echo "user$i@$DOMAIN smtp:[$SINK_IP]:$SINK_PORT"; done
} >"$PF/etc/transport"
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.bench.test
mydomain = bench.test
myorigin = \$myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
alias_maps =
alias_database =
relay_domains = $DOMAIN
transport_maps = hash:$PF/etc/transport
mynetworks = 127.0.0.0/8
inet_interfaces = $PF_IP
inet_protocols = ipv4
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
# no arrival throttling: measure the queue, not the throttle
in_flow_delay = 0
smtp_dns_support_level = disabled
smtp_host_lookup = native
biff = no
append_dot_mydomain = no
maillog_file = $W/postfix.log
EOF
cat >"$PF/etc/master.cf" <<EOF
$PF_IP:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
postmap -c "$PF/etc" "hash:$PF/etc/transport" || exit 1
timeout 60 postfix -c "$PF/etc" start >"$W/postfix-start.log" 2>&1 ||
	{ echo "bench-smtp: postfix start: $(cat "$W/postfix-start.log")" >&2; exit 1; }
PF_STARTED=1
wait_port "$PF_IP" "$PF_PORT" 20 || { echo "bench-smtp: Postfix did not start" >&2; exit 1; }

# ---- mailplex-smtpd: the same domain to the same sink over SMTP ----
cat >"$W/map" <<EOF
backend sink smtp=$SINK_IP:$SINK_PORT tls=off
domain $DOMAIN default sink
EOF
for i in $(seq 1000); do echo "user user$i sink"; done >>"$W/map"
"$bindir/mailplex-map" compile "$W/map" "$W/map.db" >/dev/null || exit 1
chmod 644 "$W/map.db"
mkdir "$W/ctl"
chown nobody "$W/ctl"
WORKERS=${BENCH_SMTP_WORKERS:-2}
BASE_WORKERS=${BENCH_BASE_WORKERS:-$WORKERS}
# mx_conf NAME PORT WORKERS: backend_concurrency 20 is Postfix's default destination concurrency
mx_conf() {
	cat <<EOF
user = "nobody";
map = { db = "$W/map.db"; };
smtpd = {
	listen = [ "$MX_IP:$2" ];
	hostname = "mx.bench.test";
	workers = $3;
	spool = "$W/$1-spool";
	control = "$W/ctl/$1-smtpd.sock";
	queue_control = "$W/ctl/$1-queue.sock";
	max_connections_per_ip = 1000;
	max_message_size = "10M";
	backend_concurrency = 20;
};
EOF
}
mx_conf mx "$MX_PORT" "$WORKERS" >"$W/mx.conf"
"$bindir/mailplex-smtpd" -d -f "$W/mx.conf" >"$W/mx.log" 2>&1 &
MXPID=$!
wait_port "$MX_IP" "$MX_PORT" 20 || { echo "bench-smtp: mailplex-smtpd did not start: $(tail -5 "$W/mx.log")" >&2; exit 1; }
if [ -n "$BASEBIN" ]; then
	mx_conf mb "$MB_PORT" "$BASE_WORKERS" >"$W/mb.conf"
	"$BASEBIN/mailplex-smtpd" -d -f "$W/mb.conf" >"$W/mb.log" 2>&1 &
	MBPID=$!
	wait_port "$MX_IP" "$MB_PORT" 20 || { echo "bench-smtp: mailplex-base did not start: $(tail -5 "$W/mb.log")" >&2; exit 1; }
fi

sink_count() { # the last "mesg=N" smtp-sink -c wrote
	s=$(tail -c 80 "$W/sink/counter.out" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -n 1)
	echo "${s#mesg=}"
}
now_ns() { date +%s%N; }

# run LABEL ADDR:PORT SIZE CONC COUNT: one bounded run; appends a RESULT line to $W/raw
run() {
	m0=$(sink_count)
	m0=${m0:-0}
	t0=$(now_ns)
	timeout "$MAXS" smtp-source -4 -s "$4" -m "$5" -l "$3" -f "bench@sender.test" \
		-t "user1@$DOMAIN" -M client.bench.test "inet:$2" >/dev/null 2>"$W/source.err"
	rc=$?
	ta=$(now_ns)
	# the sink must count every message: bounded drain of MAXS seconds
	deadline=$(($(now_ns) + MAXS * 1000000000))
	m=$(sink_count)
	while [ $((${m:-0} - m0)) -lt "$5" ] && [ "$(now_ns)" -lt "$deadline" ]; do
		sleep 0.05
		m=$(sink_count)
	done
	t1=$(now_ns)
	got=$((${m:-0} - m0))
	awk -v l="$1" -v s="$3" -v c="$4" -v n="$5" -v rc="$rc" -v got="$got" -v t0="$t0" -v ta="$ta" -v t1="$t1" \
		'BEGIN { a = (ta - t0) / 1e9; e = (t1 - t0) / 1e9; printf "RESULT relay=%s size=%d conc=%d count=%d rc=%d delivered=%d accept_secs=%.3f secs=%.3f rate=%.1f\n", l, s, c, n, rc, got, a, e, (got >= n ? n / e : 0) }' |
		tee -a "$W/raw"
	[ "$rc" = 0 ] || echo "  smtp-source exit $rc: $(head -c 200 "$W/source.err")" >&2
	[ "$got" -ge "$5" ] || echo "  only $got of $5 counted at the sink" >&2
}

# warm-up: a few messages through each
run warmup-postfix "$PF_IP:$PF_PORT" 1024 2 20 >/dev/null
run warmup-mailplex "$MX_IP:$MX_PORT" 1024 2 20 >/dev/null
[ -n "$BASEBIN" ] && run warmup-base "$MX_IP:$MB_PORT" 1024 2 20 >/dev/null
: >"$W/raw"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
r=1
while [ "$r" -le "$REPEAT" ]; do
	for size in $SIZES; do
		eval "count=\${BENCH_SMTP_COUNT_$size:-}"
		[ -n "$count" ] || { [ "$size" -le 10240 ] && count=2000 || count=1000; }
		for conc in $CONCS; do
			c=$count
			[ "$conc" = 1 ] && c=$((count / 4))
			run postfix "$PF_IP:$PF_PORT" "$size" "$conc" "$c"
			run mailplex "$MX_IP:$MX_PORT" "$size" "$conc" "$c"
			[ -n "$BASEBIN" ] && run mailplex-base "$MX_IP:$MB_PORT" "$size" "$conc" "$c"
		done
	done
	r=$((r + 1))
done
for q in mx mb; do
	[ -d "$W/$q-spool/queue" ] || continue
	left=$(find "$W/$q-spool/queue" -type f | wc -l)
	[ "$left" -eq 0 ] || echo "bench-smtp: $left message(s) still in $q's queue" >&2
done

echo
echo "bench-smtp: smtp-source -> relay -> smtp-sink, msgs/s counted at the sink, median of $REPEAT;"
echo "ratio = median, [lowest-highest] of the per-repetition ratios; load average at the start: $LOAD0, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "smtpd.workers: mailplex $WORKERS${BASEBIN:+, mailplex-base $BASE_WORKERS}"
echo
awk -v concs="$CONCS" -v sizes="$SIZES" -v base="$BASEBIN" '
/^RESULT/ {
	for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
	k = f["relay"] SUBSEP f["size"] SUBSEP f["conc"]
	v[k, ++n[k]] = f["rate"]
}
function median_of(a, m,   i, j, t) {
	if (m == 0) return 0
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
}
function median(k,   m, i, a) {
	m = n[k]
	for (i = 1; i <= m; i++) a[i] = v[k, i]
	return median_of(a, m)
}
# "1.23 [1.10-1.40]": the ratio of relay to postfix in each repetition (same conditions)
function ratios(relay, sz, c,   kp, km, m, i, a, lo, hi, med) {
	kp = "postfix" SUBSEP sz SUBSEP c; km = relay SUBSEP sz SUBSEP c
	m = n[kp] < n[km] ? n[kp] : n[km]
	if (m == 0) return "-"
	for (i = 1; i <= m; i++) a[i] = v[kp, i] > 0 ? v[km, i] / v[kp, i] : 0
	med = median_of(a, m)
	lo = a[1]; hi = a[m]
	return sprintf("%.2f [%.2f-%.2f]", med, lo, hi)
}
END {
	if (base != "") {
		printf "| size | conc | Postfix msgs/s | mailplex-base msgs/s | mailplex msgs/s | base/Postfix | mailplex/Postfix | goal >= 3x |\n"
		printf "|---|---|---|---|---|---|---|---|\n"
	} else {
		printf "| size | conc | Postfix msgs/s | mailplex msgs/s | mailplex/Postfix | goal >= 3x |\n"
		printf "|---|---|---|---|---|---|\n"
	}
	ns = split(sizes, S, " "); nc = split(concs, C, " ")
	for (i = 1; i <= ns; i++) for (j = 1; j <= nc; j++) {
		p = median("postfix" SUBSEP S[i] SUBSEP C[j]); m = median("mailplex" SUBSEP S[i] SUBSEP C[j])
		r = ratios("mailplex", S[i], C[j])
		split(r, rr, " ")
		g = (C[j] == 1) ? "-" : (rr[1] >= 3 ? "met" : "missed")
		sz = (S[i] >= 1024 ? S[i] / 1024 " KiB" : S[i])
		if (base != "")
			printf "| %s | %s | %.0f | %.0f | %.0f | %s | %s | %s |\n", sz, C[j], p,
			    median("mailplex-base" SUBSEP S[i] SUBSEP C[j]), m, ratios("mailplex-base", S[i], C[j]), r, g
		else
			printf "| %s | %s | %.0f | %.0f | %s | %s |\n", sz, C[j], p, m, r, g
	}
}' "$W/raw"
