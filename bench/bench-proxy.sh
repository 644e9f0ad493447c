#!/bin/bash
# bench-proxy.sh - `make bench-proxy`: mailplex-proxy side by side with Perdition and nginx's
# mail proxy in front of one Dovecot, and Dovecot alone as the limit, in one run: IMAP
# logins/s at 50 clients, login latency at 1 client, bulk FETCH of a 1 MiB message, memory
# per idle logged-in session at 2,000 sessions. A benchmark, not a test: it exits non-zero
# only when the run itself failed. Approach adapted from the team's anchor harness
# (bench-anchors/setup-anchors.sh, run-anchors.sh); everything listens on 127.0.1.0/24.
#
#   bench/bench-proxy.sh [-b BINDIR]      run everything, print the table
#   bench/bench-proxy.sh -t RAWFILE       print the table of an earlier run's raw results
# Environment (defaults): BENCH_WORK (/tmp/mailplex-bench-proxy), BENCH_REPEAT (3),
# BENCH_LOGIN_CONC (50), BENCH_LOGIN_SECS (10), BENCH_LAT_SECS (5), BENCH_FETCH_CONC (4),
# BENCH_FETCH_SECS (10), BENCH_IDLE_CONNS (2000), BENCH_USERS (1000), BENCH_TARGETS
# (perdition,nginx,haproxy,mailplex; Dovecot alone always runs), BENCH_SKIP_INSTALL=1,
# BENCH_BASE_BIN: the bin dir of another mailplex build, run as the target mailplex-base
# (add it to BENCH_TARGETS) for a before/after comparison interleaved in the same run.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$HERE/../build/bin
RAW_ONLY=""
while getopts b:t: opt; do
	case $opt in
	b) BIN=$OPTARG ;;
	t) RAW_ONLY=$OPTARG ;;
	*) echo "usage: $0 [-b BINDIR] | -t RAWFILE" >&2; exit 2 ;;
	esac
done
WORK=${BENCH_WORK:-/tmp/mailplex-bench-proxy}
REPEAT=${BENCH_REPEAT:-3}
LOGIN_K=${BENCH_LOGIN_CONC:-50}
LOGIN_T=${BENCH_LOGIN_SECS:-10}
LAT_T=${BENCH_LAT_SECS:-5}
FETCH_C=${BENCH_FETCH_CONC:-4}
FETCH_T=${BENCH_FETCH_SECS:-10}
IDLE_M=${BENCH_IDLE_CONNS:-2000}
NUSERS=${BENCH_USERS:-1000}
TARGETS=${BENCH_TARGETS:-perdition,nginx,haproxy,mailplex}
PASSWORD=pw

# Our own loopback addresses, apart from the shared anchors' 127.0.0.x, so both can run.
BE_ADDR=127.0.1.2
BE_IMAP=$BE_ADDR:11143 BE_POP3=$BE_ADDR:11110
PD_IMAP=127.0.1.1:21143
NG_IMAP=127.0.1.1:31143 NG_AUTH=127.0.1.1:31080
HA_IMAP=127.0.1.1:51143
MP_IMAP=127.0.1.1:41143 MB_IMAP=127.0.1.1:41144

PIDDIR=$WORK/pids LOGDIR=$WORK/logs RESDIR=$WORK/results
say() { echo "[bench-proxy] $*" >&2; }
die() { say "error: $*"; exit 1; }

# ---------------------------------------------------------------- the table
# print_table RAW: the medians of a raw file's RESULT lines (also: bench-proxy.sh -t RAW).
print_table() {
	local raw=$1 names reps
	names=$(awk '/^RESULT / { for (i = 2; i <= NF; i++) if ($i ~ /^label=/) { l = substr($i, 7); if (!(l in s)) { s[l] = 1; o = o (o == "" ? "" : " ") l } } } END { print o }' "$raw")
	reps=$(grep -c '^RESULT label=dovecot .*mode=fetch' "$raw")
	{
	echo "# bench-proxy $(basename "$raw" .txt | sed 's/^raw-//')"
	echo
	echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), kernel $(uname -r)."
	echo "Versions: Dovecot $(dovecot --version | cut -d' ' -f1), Perdition $(dpkg-query -W -f '${Version}' perdition 2>/dev/null), nginx $(dpkg-query -W -f '${Version}' nginx-common 2>/dev/null), mailplex $(git -C "$HERE/.." describe --always --dirty 2>/dev/null)."
	echo "IMAP, no TLS on any target, plain-text LOGIN allowed everywhere; every proxy maps $NUSERS users to the same Dovecot."
	echo "haproxy (if run) is HAProxy in TCP mode with splice: no mail protocol, every byte relayed to Dovecot; its ratios are what the second TCP hop alone leaves, the ceiling of any TCP proxy on this machine."
	echo "Medians of $reps interleaved runs (ratios: the median of each run against the same run of Dovecot alone): logins K=$LOGIN_K for ${LOGIN_T}s (connect, LOGIN, SELECT, LOGOUT), latency K=1 for ${LAT_T}s, FETCH of the 1 MiB message C=$FETCH_C for ${FETCH_T}s, idle M=$IDLE_M logged-in sessions (memory summed over the target's process tree)."
	echo
	}
	awk -v names="$names" -v K="$LOGIN_K" -v M="$IDLE_M" -v FC="$FETCH_C" '
function median_of(a, n,   i, j, t) {
	if (!n) return ""
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function median(key,   n, i, a) {
	n = cnt[key]
	for (i = 1; i <= n; i++) a[i] = val[key, i] + 0
	return median_of(a, n)
}
# Repetition i of a target against repetition i of Dovecot alone (the same minutes of a
# shared machine), then the median of those: mode "r" ratio, "a" difference.
function median_vs(t, key, mode,   n, i, a, d, m) {
	n = cnt[t "|" key] < cnt["dovecot|" key] ? cnt[t "|" key] : cnt["dovecot|" key]
	m = 0
	for (i = 1; i <= n; i++) {
		d = val["dovecot|" key, i] + 0
		if (mode == "r" && d <= 0) continue
		a[++m] = (mode == "r") ? (val[t "|" key, i] + 0) / d : val[t "|" key, i] - d
	}
	return median_of(a, m)
}
function add(key, v) { cnt[key]++; val[key, cnt[key]] = v }
function fmt(v) {
	if (v == "") return "-"
	if (v >= 100 || v <= -100) return sprintf("%.0f", v)
	if (v >= 10 || v <= -10) return sprintf("%.1f", v)
	return sprintf("%.2f", v)
}
/^RESULT / {
	delete f
	for (i = 2; i <= NF; i++) { p = index($i, "="); f[substr($i, 1, p - 1)] = substr($i, p + 1) }
	t = f["label"]
	if (f["mode"] == "login") {
		add(t "|login" f["conc"] "|rate", f["rate"]); add(t "|login" f["conc"] "|p50", f["p50_ms"])
	} else if (f["mode"] == "fetch") {
		add(t "|fetch", f["mbps"])
	} else if (f["mode"] == "idle") {
		add(t "|pssd", f["pss_delta_per_conn_kb"]); add(t "|rss", f["rss_per_conn_kb"])
		add(t "|rssd", f["rss_delta_per_conn_kb"])
		if (f["held"] + 0 < f["want"] + 0) bad[t] = bad[t] sprintf(" idle held %s/%s;", f["held"], f["want"])
	}
	errs[t] += f["err"]
}
# row TITLE KEY MODE GOAL: MODE "v" values, "r" ratio to dovecot, "a" added to dovecot.
function row(title, key, mode, goalop, goal,   i, x, line, met) {
	line = "| " title " |"
	met = "-"
	for (i = 1; i <= nt; i++) {
		x = (mode == "v") ? median(T[i] "|" key) : median_vs(T[i], key, mode)
		line = line " " fmt(x) " |"
		if (T[i] == "mailplex" && goalop != "" && x != "")
			met = ((goalop == ">=" && x >= goal) || (goalop == "<=" && x <= goal)) ? "yes" : "NO"
	}
	print line " " (goalop == "" ? "" : goalop " " goal) " | " (goalop == "" ? "" : met) " |"
}
END {
	nt = split(names, T, " ")
	h = "| metric |"; s = "|---|"
	for (i = 1; i <= nt; i++) { h = h " " (T[i] == "dovecot" ? "Dovecot alone" : T[i]) " |"; s = s "---:|" }
	print h " goal (mailplex) | met |"; print s "---|---|"
	row("IMAP logins/s, " K " clients", "login" K "|rate", "v")
	row("  ratio to Dovecot alone", "login" K "|rate", "r", ">=", 0.95)
	row("login p50 ms, 1 client", "login1|p50", "v")
	row("  ms added to Dovecot alone", "login1|p50", "a", "<=", 0.3)
	row("FETCH 1 MiB MB/s, " FC " clients", "fetch", "v")
	row("  ratio to Dovecot alone", "fetch", "r", ">=", 0.9)
	row("idle: added PSS KB/session (" M ")", "pssd", "v", "<=", 4)
	row("idle: added RSS KB/session", "rssd", "v")
	row("idle: sum RSS KB/session", "rss", "v")
	print ""
	for (i = 1; i <= nt; i++) if (errs[T[i]] > 0 || bad[T[i]] != "")
		printf "Problems %s: %d client errors;%s\n", T[i], errs[T[i]], bad[T[i]]
}' "$raw"
}

if [ -n "$RAW_ONLY" ]; then
	print_table "$RAW_ONLY"
	exit
fi
BIN=$(cd "$BIN" && pwd) || exit 2
for f in imap-bench mailplex-proxy mailplex-map; do
	[ -x "$BIN/$f" ] || die "no $BIN/$f (make all noinst)"
done
[ "$(id -u)" -eq 0 ] || die "needs root (packages, private daemons that drop privileges)"

# ---------------------------------------------------------------- packages
# The anchors are bench-only peers: installed here when missing, never by `make deps`.
PKGS="dovecot-core dovecot-imapd dovecot-pop3d perdition nginx libnginx-mod-mail haproxy iproute2 procps"
if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
	missing=""
	for p in $PKGS; do
		case "$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null)" in
		"install ok installed") ;;
		*) missing="$missing $p" ;;
		esac
	done
	if [ -n "$missing" ]; then
		say "installing:$missing"
		# Their postinst must not start system-wide daemons on ports 80/110/143 (as tests/deps.sh).
		created_policy=0
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 0755 /usr/sbin/policy-rc.d
			created_policy=1
		fi
		rc=0
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				$missing >/dev/null || rc=$?
		[ "$created_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
		[ $rc -eq 0 ] || die "apt-get install failed ($rc)"
	fi
fi

# ---------------------------------------------------------------- process bookkeeping
mkdir -p "$WORK" "$PIDDIR" "$LOGDIR" "$RESDIR" || exit 1
chmod 755 "$WORK"
pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }
descendants() { # every descendant pid of $1, from one snapshot (Dovecot may have thousands)
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ parent[$1] = $2 }
		END {
			for (p in parent) {
				for (q = parent[p]; q > 1; q = (q in parent) ? parent[q] : 0)
					if (q == root) { print p; break }
			}
		}'
}
stop_one() { # stop_one NAME: TERM the recorded root, wait 5 s, then KILL it and what it left
	local f=$PIDDIR/$1.pid pid kids i k
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if pid_alive "$pid"; then
		kids=$(descendants "$pid")
		kill -TERM "$pid" 2>/dev/null
		for ((i = 0; i < 50; i++)); do pid_alive "$pid" || break; sleep 0.1; done
		pid_alive "$pid" && kill -KILL "$pid" 2>/dev/null
		for k in $kids; do pid_alive "$k" && kill -KILL "$k" 2>/dev/null; done
	fi
	rm -f "$f"
}
stop_all() {
	local n
	for n in mailplex mailplex-base haproxy nginx perdition dovecot; do stop_one $n; done
}
# A previous run that was killed hard may have left its daemons: they hold our ports.
stop_all
trap stop_all EXIT
trap 'exit 130' INT TERM HUP

wait_port() { # wait_port HOST:PORT SECONDS
	local h=${1%:*} p=${1##*:} i
	for ((i = 0; i < $2 * 10; i++)); do
		(exec 3<>"/dev/tcp/$h/$p") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}
# One process per session (Dovecot, Perdition) and 2,000 idle sessions: descriptors for the
# load generator and for every daemon started below (they inherit this limit).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
[ "$(ulimit -n)" -ge $((IDLE_M * 2 + 100)) ] || die "descriptor limit $(ulimit -n) too low for $IDLE_M sessions"

# ---------------------------------------------------------------- mailboxes
# user1..userN, password pw; three messages each (~1 KB, ~10 KB, ~1 MiB), hard-linked.
MAIL=$WORK/mail MSGS=$WORK/msgs
if [ ! -f "$MAIL/.done-$NUSERS" ]; then
	say "creating $NUSERS users under $MAIL"
	rm -rf "$MAIL" "$MSGS"
	mkdir -p "$MAIL" "$MSGS" || exit 1
	mkmsg() { # FILE SUBJECT RANDOM_BYTES
		{
			printf 'From: Bench Sender <sender@example.test>\nTo: Bench User <user@bench.test>\n'
			printf 'Subject: %s\nDate: Mon, 01 Jan 2024 00:00:00 +0000\n' "$2"
			printf 'Message-ID: <%s@bench.test>\nMIME-Version: 1.0\n' "$(basename "$1")"
			printf 'Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n'
			head -c "$3" /dev/urandom | base64 -w 76
		} >"$1"
	}
	names=()
	i=0
	for spec in "small:700" "medium:7500" "one MiB:776000"; do
		i=$((i + 1))
		mkmsg "$MSGS/m$i" "${spec%%:*} message" "${spec##*:}"
		s=$(stat -c %s "$MSGS/m$i")
		l=$(wc -l <"$MSGS/m$i")
		# S= and W= (size with CRLF) as in files Dovecot saved itself: no size scans.
		n="170000000$i.M${i}P1.bench,S=$s,W=$((s + l)):2,"
		mv "$MSGS/m$i" "$MSGS/$n"
		names+=("$n")
	done
	for ((u = 1; u <= NUSERS; u++)); do
		d=$MAIL/user$u/Maildir
		mkdir -p "$d/cur" "$d/new" "$d/tmp" &&
			ln "$MSGS/${names[0]}" "$MSGS/${names[1]}" "$MSGS/${names[2]}" "$d/cur/" || exit 1
	done
	chown -R nobody:nogroup "$MAIL" "$MSGS"
	touch "$MAIL/.done-$NUSERS"
fi

# ---------------------------------------------------------------- Dovecot (the back end)
DV=$WORK/dovecot
mkdir -p "$DV/run" "$DV/state"
for ((u = 1; u <= NUSERS; u++)); do echo "user$u:{PLAIN}$PASSWORD::::::"; done >"$DV/users"
chmod 644 "$DV/users"
# High-performance login processes and reused mail processes, as in the anchor harness:
# with Debian's one fork+exec per login Dovecot would cap every proxy at ~190 logins/s.
# Idle mail processes go after 10 s, or the thousands left by the idle test wake on
# every login and slow the next run down.
cat >"$DV/dovecot.conf" <<EOF
# generated by bench/bench-proxy.sh: a private Dovecot, the back end of every proxy
instance_name = mailplex-bench-proxy
base_dir = $DV/run
state_dir = $DV/state
protocols = imap pop3
listen = $BE_ADDR
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = $LOGDIR/dovecot.log
info_log_path = $LOGDIR/dovecot-info.log
mail_location = maildir:~/Maildir
default_client_limit = 12000
default_vsz_limit = 512M
first_valid_uid = 65534
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DV/users
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$MAIL/%u
}
service imap-login {
  inet_listener imap {
    address = $BE_ADDR
    port = ${BE_IMAP##*:}
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  vsz_limit = 1G
}
service pop3-login {
  inet_listener pop3 {
    address = $BE_ADDR
    port = ${BE_POP3##*:}
  }
  inet_listener pop3s {
    port = 0
  }
  service_count = 0
  process_min_avail = 1
}
service imap {
  process_limit = 5000
  service_count = 0
  process_min_avail = 16
  idle_kill = 10 secs
}
service auth {
  client_limit = 12000
}
service anvil {
  client_limit = 12000
}
protocol imap {
  mail_max_userip_connections = 1000
}
EOF
say "starting Dovecot on $BE_IMAP"
dovecot -F -c "$DV/dovecot.conf" >>"$LOGDIR/dovecot.stdout" 2>&1 &
echo $! >"$PIDDIR/dovecot.pid"

# ---------------------------------------------------------------- Perdition
want() { [[ ",$TARGETS," == *",$1,"* ]]; }
if want perdition; then
	PD=$WORK/perdition
	mkdir -p "$PD"
	for ((u = 1; u <= NUSERS; u++)); do echo "user$u:$BE_ADDR"; done >"$PD/popmap"
	makegdbm "$PD/popmap.db" <"$PD/popmap" >/dev/null || die "makegdbm failed"
	chmod 644 "$PD/popmap.db"
	: >"$PD/perdition.conf"
	gdbm_lib=$(dpkg -L perdition | grep -m1 'libperditiondb_gdbm\.so\.0$')
	say "starting Perdition on $PD_IMAP"
	# Perdition uses select() and each child close()s every fd up to the soft limit on
	# exit: it runs with the daemon default of 1024, as under systemd.
	(
		ulimit -S -n 1024
		exec perdition --no_daemon -f "$PD/perdition.conf" -P IMAP4 -b "${PD_IMAP%:*}" \
			-l "${PD_IMAP##*:}" -M "$gdbm_lib" -m "$PD/popmap.db" -n -p "${BE_IMAP##*:}" \
			--pid_file "$PD/perdition.pid" -q -t 1800
	) >>"$LOGDIR/perdition.log" 2>&1 &
	echo $! >"$PIDDIR/perdition.pid"
fi

# ---------------------------------------------------------------- nginx mail
if want nginx; then
	NG=$WORK/nginx
	mkdir -p "$NG/tmp"
	for ((u = 1; u <= NUSERS; u++)); do echo "    user$u $BE_ADDR;"; done >"$NG/usermap.conf"
	mailmod=$(dpkg -L libnginx-mod-mail | grep -m1 'ngx_mail_module\.so$')
	cat >"$NG/nginx.conf" <<EOF
# generated by bench/bench-proxy.sh: nginx's mail proxy, per-user map through auth_http
load_module $mailmod;
daemon off;
master_process on;
worker_processes auto;
worker_rlimit_nofile 19000;
pid $NG/nginx.pid;
error_log $LOGDIR/nginx-error.log error;
events {
    worker_connections 9000;
}
http {
    access_log off;
    client_body_temp_path $NG/tmp/body;
    proxy_temp_path $NG/tmp/proxy;
    fastcgi_temp_path $NG/tmp/fastcgi;
    uwsgi_temp_path $NG/tmp/uwsgi;
    scgi_temp_path $NG/tmp/scgi;
    map \$http_auth_user \$mail_backend {
        default "";
        include $NG/usermap.conf;
    }
    server {
        listen $NG_AUTH;
        location = /auth {
            if (\$mail_backend = "") {
                add_header Auth-Status "Invalid login or password" always;
                add_header Auth-Wait 1 always;
                return 204;
            }
            add_header Auth-Status OK always;
            add_header Auth-Server \$mail_backend always;
            add_header Auth-Port ${BE_IMAP##*:} always;
            return 204;
        }
    }
}
mail {
    server_name mailproxy.bench.test;
    auth_http $NG_AUTH/auth;
    proxy_pass_error_message on;
    server {
        listen $NG_IMAP;
        protocol imap;
        imap_auth login plain;
    }
}
EOF
	nginx -t -q -e "$LOGDIR/nginx-error.log" -p "$NG" -c "$NG/nginx.conf" || die "nginx -t failed"
	say "starting nginx mail on $NG_IMAP (auth_http $NG_AUTH)"
	nginx -e "$LOGDIR/nginx-error.log" -p "$NG" -c "$NG/nginx.conf" >>"$LOGDIR/nginx.stdout" 2>&1 &
	echo $! >"$PIDDIR/nginx.pid"
fi

# ---------------------------------------------------------------- HAProxy, TCP mode
# Not a mail proxy: every byte relayed to Dovecot, no login read, no map, splice on. What
# the second TCP hop alone costs, so its ratios are the ceiling of any TCP proxy here.
if want haproxy; then
	HA=$WORK/haproxy
	mkdir -p "$HA"
	cat >"$HA/haproxy.cfg" <<EOF
# generated by bench/bench-proxy.sh: a plain TCP relay in front of the same Dovecot
global
    nbthread $(nproc)
    maxconn 6000
defaults
    mode tcp
    option splice-auto
    timeout connect 5s
    timeout client 30m
    timeout server 30m
frontend imap
    bind $HA_IMAP
    default_backend dovecot
backend dovecot
    server dovecot $BE_IMAP
EOF
	haproxy -c -q -f "$HA/haproxy.cfg" >"$LOGDIR/haproxy-check.log" 2>&1 ||
		die "haproxy -c: $(cat "$LOGDIR/haproxy-check.log")"
	say "starting HAProxy (TCP mode, splice) on $HA_IMAP"
	haproxy -db -f "$HA/haproxy.cfg" >>"$LOGDIR/haproxy.log" 2>&1 &
	echo $! >"$PIDDIR/haproxy.pid"
fi

# ---------------------------------------------------------------- mailplex-proxy
start_mailplex() { # start_mailplex NAME BINDIR HOST:PORT
	local name=$1 bin=$2 addr=$3 mp=$WORK/$1
	mkdir -p "$mp/ctl"
	chown nobody "$mp/ctl"
	{
		echo "backend dovecot imap=$BE_IMAP pop3=$BE_POP3 tls=off"
		echo "domain bench.test"
		for ((u = 1; u <= NUSERS; u++)); do echo "user user$u dovecot"; done
	} >"$mp/mailplex.map"
	"$bin/mailplex-map" compile "$mp/mailplex.map" "$mp/map.db" >"$LOGDIR/$name-map-compile.log" 2>&1 ||
		die "mailplex-map compile: $(cat "$LOGDIR/$name-map-compile.log")"
	chmod 644 "$mp/map.db"
	# Fair settings: one worker per core (nginx: worker_processes auto), plain-text logins
	# allowed (no TLS anywhere), warnings only in the log (nginx logs at error, Perdition -q).
	cat >"$mp/mailplex.conf" <<EOF
# generated by bench/bench-proxy.sh
log_level = "warn";
user = "nobody";
map = { db = "$mp/map.db"; };
proxy = {
	imap = [ "$addr" ];
	workers = $(nproc);
	allow_plaintext_login = true;
	control = "$mp/ctl/proxy.sock";
	max_connections = 20000;
	max_connections_per_ip = 20000;
};
EOF
	"$bin/mailplex-proxy" -n -f "$mp/mailplex.conf" >"$LOGDIR/$name-check.log" 2>&1 ||
		die "mailplex-proxy -n: $(cat "$LOGDIR/$name-check.log")"
	say "starting $name ($bin/mailplex-proxy) on $addr ($(nproc) workers)"
	"$bin/mailplex-proxy" -d -f "$mp/mailplex.conf" >>"$LOGDIR/$name-proxy.log" 2>&1 &
	echo $! >"$PIDDIR/$name.pid"
}
want mailplex && start_mailplex mailplex "$BIN" "$MP_IMAP"
if want mailplex-base; then
	[ -n "${BENCH_BASE_BIN:-}" ] && [ -x "$BENCH_BASE_BIN/mailplex-proxy" ] ||
		die "mailplex-base needs BENCH_BASE_BIN (a bin dir with mailplex-proxy and mailplex-map)"
	start_mailplex mailplex-base "$(cd "$BENCH_BASE_BIN" && pwd)" "$MB_IMAP"
fi

# ---------------------------------------------------------------- targets, warm-up
declare -a T_NAME T_ADDR
T_NAME=(dovecot) T_ADDR=("$BE_IMAP")
want perdition && T_NAME+=(perdition) T_ADDR+=("$PD_IMAP")
want nginx && T_NAME+=(nginx) T_ADDR+=("$NG_IMAP")
want haproxy && T_NAME+=(haproxy) T_ADDR+=("$HA_IMAP")
want mailplex-base && T_NAME+=(mailplex-base) T_ADDR+=("$MB_IMAP")
want mailplex && T_NAME+=(mailplex) T_ADDR+=("$MP_IMAP")
for i in "${!T_NAME[@]}"; do
	wait_port "${T_ADDR[$i]}" 20 || die "${T_NAME[$i]}: nothing on ${T_ADDR[$i]} (see $LOGDIR)"
done
IB=$BIN/imap-bench
say "warming up Dovecot's indexes for $NUSERS users"
"$IB" -q -H "$BE_IMAP" -m login -c 20 -n "$NUSERS" -u "$NUSERS" -t 120 -l warmup >/dev/null
"$IB" -q -H "$BE_IMAP" -m fetch -c 2 -t 1 -l warmup >/dev/null
for i in "${!T_NAME[@]}"; do
	out=$("$IB" -q -H "${T_ADDR[$i]}" -m login -c 10 -n 200 -u "$NUSERS" -t 20 -l "${T_NAME[$i]}")
	case "$out" in
	*" err=0 "*) ;;
	*) die "${T_NAME[$i]}: warm-up logins failed: $out" ;;
	esac
done

# Waits (at most 45 s) until Dovecot has shed the mail processes an idle test left and
# Perdition its per-session children, so that runs do not disturb each other; then 1 s.
settle() {
	local i n dv pd
	dv=$(cat "$PIDDIR/dovecot.pid")
	pd=$(cat "$PIDDIR/perdition.pid" 2>/dev/null || echo 0)
	for ((i = 0; i < 90; i++)); do
		n=$(ps -e -o ppid=,comm= | awk -v d="$dv" -v p="$pd" \
			'($1 == d && $2 == "imap") || ($1 == p && p != 0) { n++ } END { print n + 0 }')
		((n <= 40)) && break
		sleep 0.5
	done
	sleep 1
}

TS=$(date -u +%Y%m%d-%H%M%S)
RAW=$RESDIR/raw-$TS.txt TABLE=$RESDIR/table-$TS.md
: >"$RAW"
run_ib() { # run_ib LABEL ARGS...: one RESULT line into RAW
	local label=$1 out
	shift
	out=$("$IB" -q -l "$label" -u "$NUSERS" "$@" 2>>"$LOGDIR/imap-bench.err")
	echo "$out" >>"$RAW"
	echo "  $out" | cut -c1-160 >&2
}

# ---------------------------------------------------------------- the runs
# Interleaved finely: within a repetition each measurement runs on every target back to
# back (seconds apart, so a proxy and Dovecot alone see the same load of a shared machine),
# and the order of the targets rotates from one repetition to the next.
N=${#T_NAME[@]}
for ((rep = 1; rep <= REPEAT; rep++)); do
	for what in latency logins fetch idle; do
		say "rep $rep/$REPEAT: $what"
		for ((j = 0; j < N; j++)); do
			i=$(((j + rep - 1) % N))
			name=${T_NAME[$i]} hp=${T_ADDR[$i]}
			settle
			case $what in
			latency) run_ib "$name" -H "$hp" -m login -c 1 -t "$LAT_T" ;;
			logins) run_ib "$name" -H "$hp" -m login -c "$LOGIN_K" -t "$LOGIN_T" ;;
			fetch) run_ib "$name" -H "$hp" -m fetch -c "$FETCH_C" -t "$FETCH_T" ;;
			idle) run_ib "$name" -H "$hp" -m idle -c "$IDLE_M" -w 2 -S 120 \
				-r "$(cat "$PIDDIR/$name.pid")" ;;
			esac
		done
	done
done

# ---------------------------------------------------------------- results
print_table "$RAW" | tee "$TABLE"
say "raw results: $RAW; table: $TABLE; logs: $LOGDIR"
