# fullcluster.sh - the whole cluster both cluster-full and demo build, sourced after lib.sh
# inside user-mode Linux: Dovecot back ends (IMAP, POP3, LMTP), the compiled map, two
# directors under keepalived, relays running mailplex-relay, -smtpd and -proxy, and the
# Python clients (IMAP login check, SMTP sender, held IMAP sessions, failover probe).
#
# Before sourcing, set NET (e.g. 10.82.0), VIPA (the VIP) and KEY (the cluster key file);
# optional: FC_SERVICES ("smtp:25 imap:143": name:port of every VIP service, the check
# type is the name), FC_DOMAIN (mail.test), FC_DRAIN_TIMEOUT (60s),
# FC_DOVECOT_PROTOCOLS ("imap lmtp"), FC_MAP_SOURCE (a path: each director gets map.source
# there and its own map.db, published at its start from a copy of $S/map.db, and serves it
# on NAME's address port 7946: relays fetch what `mailplexctl map publish` publishes),
# FC_MASTER_USER and FC_MASTER_PASS (every Dovecot gets that master user, for
# `mailplexctl move`). Scripts and configs go to SYS_SCRATCH.
D=$SYS_BIN/mailplex-director
A=$SYS_BIN/mailplex-relay
CTL=$SYS_BIN/mailplexctl
MAP=$SYS_BIN/mailplex-map
SMTPD=$SYS_BIN/mailplex-smtpd
PROXY=$SYS_BIN/mailplex-proxy
PY=/usr/bin/python3
S=$SYS_SCRATCH
FC_SERVICES=${FC_SERVICES:-smtp:25 imap:143}
FC_DRAIN_TIMEOUT=${FC_DRAIN_TIMEOUT:-60s}
FC_DOVECOT_PROTOCOLS=${FC_DOVECOT_PROTOCOLS:-imap lmtp}
export FC_DOMAIN=${FC_DOMAIN:-mail.test}

# The programs, keepalived and Dovecot present, IPVS loaded; exits the scenario if not.
fc_prereqs() {
	local b p
	for b in "$D" "$A" "$CTL" "$MAP" "$SMTPD" "$PROXY" "$PY"; do
		[ -x "$b" ] || { sys_log "missing $b (make all)"; sys_check programs_built 1; sys_finish; exit 1; }
	done
	for p in keepalived dovecot; do
		command -v $p >/dev/null || { sys_log "$p not installed"; sys_check "${p}_installed" 1; sys_finish; exit 1; }
	done
	sys_ipvs_load
	sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }
}

# ---------------------------------------------------------------- back ends and the map
dovecot_start() {   # NAME ADDR USERS...: user U has password pw-U and one "seed U on NAME" message
	local name=$1 addr=$2 u dd=$S/$1 pop3="" master=""
	shift 2
	mkdir -p "$dd/run" "$dd/state" "$dd/home"
	: >"$dd/users"
	for u in "$@"; do
		printf '%s:{PLAIN}pw-%s:65534:65534::%s/home/%s::\n' "$u" "$u" "$dd" "$u" >>"$dd/users"
		mkdir -p "$dd/home/$u/Maildir/new" "$dd/home/$u/Maildir/cur" "$dd/home/$u/Maildir/tmp"
		printf 'From: t@mail.test\r\nSubject: seed %s on %s\r\n\r\nhello\r\n' "$u" "$name" \
			>"$dd/home/$u/Maildir/new/1000.M1P1.seed"
	done
	chown -R 65534:65534 "$dd/home"
	[[ " $FC_DOVECOT_PROTOCOLS " == *" pop3 "* ]] && pop3="service pop3-login {
	  service_count = 0
	  client_limit = 100
	  inet_listener pop3s {
	    port = 0
	  }
	}"
	if [ -n "${FC_MASTER_USER:-}" ]; then
		printf '%s:{PLAIN}%s::::::\n' "$FC_MASTER_USER" "$FC_MASTER_PASS" >"$dd/masters"
		master="auth_master_user_separator = *
	passdb {
	  driver = passwd-file
	  args = $dd/masters
	  master = yes
	  pass = yes
	}"
	fi
	cat >"$dd/dovecot.conf" <<-EOF
	instance_name = fc-$name
	base_dir = $dd/run
	state_dir = $dd/state
	protocols = $FC_DOVECOT_PROTOCOLS
	listen = $addr
	ssl = no
	disable_plaintext_auth = no
	log_path = $dd/dovecot.log
	mail_location = maildir:~/Maildir
	auth_username_format = %Ln
	lmtp_save_to_detail_mailbox = no
	pop3_uidl_format = %08Xu%08Xv
	protocol imap {
	  mail_max_userip_connections = 100
	}
	$master
	passdb {
	  driver = passwd-file
	  args = $dd/users
	}
	userdb {
	  driver = passwd-file
	  args = $dd/users
	}
	# Few processes: UML memory is small. One imap process serves many sessions.
	service imap {
	  service_count = 0
	  client_limit = 50
	}
	service imap-login {
	  service_count = 0
	  client_limit = 100
	  inet_listener imap {
	    port = 143
	  }
	  inet_listener imaps {
	    port = 0
	  }
	}
	$pop3
	service lmtp {
	  inet_listener lmtp {
	    address = $addr
	    port = 24
	  }
	}
	EOF
	ip netns exec "$name" dovecot -F -c "$dd/dovecot.conf" >"$dd/stdout" 2>&1 &
	SYS_PIDS+=($!)
}

fc_map() {   # DOMAIN {NAME ADDR "USERS"}...: writes $S/map, compiles $S/map.db
	local domain=$1 u
	shift
	{
		local a
		for ((a = 1; a <= $#; a += 3)); do
			local n=${!a} ad i=$((a + 1))
			ad=${!i}
			echo "backend $n lmtp=$ad:24 imap=$ad:143 pop3=$ad:110 tls=off"
		done
		echo "domain $domain"
		for ((a = 1; a <= $#; a += 3)); do
			local n=${!a} j=$((a + 2))
			for u in ${!j}; do echo "user $u $n"; done
		done
	} >"$S/map"
	"$MAP" compile "$S/map" "$S/map.db" >"$S/map.out" 2>&1
}

# A TCP port answering with a greeting line starting with WANT (bounded: one try).
cat >"$S/greet.py" <<'EOF'
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)
    s.settimeout(2)
    sys.exit(0 if s.recv(200).startswith(sys.argv[3].encode()) else 1)
except OSError:
    sys.exit(1)
EOF
greets() { ip netns exec "$1" "$PY" "$S/greet.py" "$2" "$3" "$4"; }
dovecots_answer() {   # {NAME ADDR}...: IMAP and LMTP of each answer
	while [ $# -ge 2 ]; do
		greets "$1" "$2" 143 "* OK" && greets "$1" "$2" 24 220 || return 1
		shift 2
	done
}

# ---------------------------------------------------------------- directors and keepalived
write_dconf() {   # NAME ADDR PRIORITY SYNCID PEER_SYNCID
	local sv svcs="" sep="" map="" maplisten=""
	for sv in $FC_SERVICES; do
		svcs+="$sep
			{ name = \"${sv%:*}\"; vip = \"$VIPA:${sv#*:}\"; scheduler = \"rr\";
			  check = { type = \"${sv%:*}\"; interval = \"300ms\"; timeout = \"1s\"; rise = 2; fall = 3; }; }"
		sep=","
	done
	if [ -n "${FC_MAP_SOURCE:-}" ]; then
		cp "$S/map.db" "$S/$1.map.db" || return 1
		map="map = { source = \"$FC_MAP_SOURCE\"; db = \"$S/$1.map.db\"; };"
		maplisten="map_listen = \"$2:7946\";"
	fi
	cat >"$S/$1.conf" <<-EOF
	log_level = "info";
	$map
	director = {
		control = "$S/$1.sock";
		reconcile_interval = "1s";
		drain_timeout = "$FC_DRAIN_TIMEOUT";
		ipvs_tcpfin_timeout = "1s";
		cluster_listen = "$2:7945";
		$maplisten
		cluster_key = "$KEY";
		relay_dead_after = "1500ms";
		rejoin_grace = "5s";
		vrrp = { interface = "eth0"; router_id = 82; priority = $3; advert_interval = "100ms";
			preempt = true; fifo = "$S/$1.fifo"; };
		sync = { interface = "eth0"; syncid = $4; peer_syncid = $5; };
		services = ($svcs );
	};
	EOF
}
director_start() {   # NAME
	ip netns exec "$1" "$D" -d -f "$S/$1.conf" >>"$S/director-$1.log" 2>&1 &
	SYS_PIDS+=($!)
	eval "DPID_$1=$!"
	sys_wait_for 5000 "$1 control socket answers" "$CTL" -f "$S/$1.conf" director status
}
ka_start() {   # NAME
	ip netns exec "$1" keepalived --vrrp --dont-fork --log-console --log-detail --no-syslog \
		-f "$S/ka-$1.conf" -p "$S/$1.ka.pid" -r "$S/$1.vrrp.pid" -c "$S/$1.chk.pid" \
		>>"$S/keepalived-$1.log" 2>&1 &
	SYS_PIDS+=($!)
	eval "KA_$1=$!"
}
status_has() {   # NAME REGEX
	"$CTL" -f "$S/$1.conf" director status >"$S/status-$1.out" 2>&1 && grep -Eq "$2" "$S/status-$1.out"
}
vip_on() { [[ $(ip -n "$1" -4 -o addr show dev eth0) == *" $VIPA/"* ]]; }
# The master dies: its link goes down, then keepalived and the director are killed.
kill_director() {   # NAME
	ip -n "$1" link set eth0 down
	eval "kill -KILL \"\$(cat \"\$S/$1.vrrp.pid\")\" \"\$KA_$1\" \"\$DPID_$1\"
		wait \"\$KA_$1\" \"\$DPID_$1\"" 2>/dev/null
}

# ---------------------------------------------------------------- relays
write_rconf() {   # NS NAME ADDR KEYFILE
	local r=$S/$1 sv svcs="" sep="" imap="" pop3=""
	for sv in $FC_SERVICES; do svcs+="$sep\"$sv\""; sep=", "; done
	[[ " $FC_SERVICES " == *" imap:"* ]] && imap="imap = [ \"$3:143\", \"$VIPA:143\" ];"
	[[ " $FC_SERVICES " == *" pop3:"* ]] && pop3="pop3 = [ \"$3:110\", \"$VIPA:110\" ];"
	mkdir -p "$r/ctl"
	chown nobody "$r/ctl"
	cp "$S/map.db" "$r/map.db"
	chmod 644 "$r/map.db"
	cat >"$r/conf" <<-EOF
	log_level = "info";
	user = "nobody";
	map = { db = "$r/map.db"; reload_check = "1s"; };
	relay = {
		name = "$2"; address = "$3"; weight = 100; key = "$4";
		directors = [ "$NET.1:7945", "$NET.3:7945" ]; heartbeat = "300ms";
		services = [ $svcs ]; dr_vips = [ "$VIPA" ];
		smtpd_control = "$r/ctl/smtpd.sock.0"; proxy_control = "$r/ctl/proxy.sock";
		spool = "$r/spool"; spool_min_free = "1M"; stop_timeout = "30s";
	};
	proxy = {
		$imap
		$pop3
		workers = 1;
		allow_plaintext_login = true;
		control = "$r/ctl/proxy.sock";
		login_failure_delay = "100ms";
		backend_down = "1s";
	};
	smtpd = {
		listen = [ "$3:25", "$VIPA:25" ];
		hostname = "$2.$FC_DOMAIN";
		workers = 1;
		spool = "$r/spool";
		control = "$r/ctl/smtpd.sock";
		queue_control = "$r/ctl/queue.sock";
		queue_min_backoff = "1s";
		queue_max_backoff = "2s";
		delivery_timeout = "5s";
	};
	EOF
}
agent_start() {   # NS
	ip netns exec "$1" "$A" -d -f "$S/$1/conf" >>"$S/agent-$1.log" 2>&1 &
	SYS_PIDS+=($!)
	eval "APID_$1=$!"
}
daemons_start() {   # NS
	ip netns exec "$1" "$SMTPD" -d -f "$S/$1/conf" >>"$S/smtpd-$1.log" 2>&1 &
	SYS_PIDS+=($!)
	ip netns exec "$1" "$PROXY" -d -f "$S/$1/conf" >>"$S/proxy-$1.log" 2>&1 &
	SYS_PIDS+=($!)
}
# One ipvsadm per look (every fork costs in UML): TAB holds "VIP DEST WEIGHT" lines.
ipvs_load() {   # DIRECTOR
	TAB=$'\n'$(ip netns exec "$1" ipvsadm -Ln 2>/dev/null |
		awk '$1 == "TCP" { s = $2 } $1 == "->" && $2 ~ /^10/ { print s, $2, $4 }')$'\n'
}
ipvs_rows() {   # DIRECTOR VIPPORT: "DEST WEIGHT" per destination
	ipvs_load "$1"
	echo "$TAB" | awk -v v="$VIPA:$2" '$1 == v { print $2, $3 }'
}
weight() {   # DIRECTOR ADDR VIPPORT
	ipvs_rows "$1" "$3" | awk -v d="$2:$3" '$1 == d { print $2 }'
}
all_in() {   # DIRECTOR WEIGHT ADDR...: every ADDR in every service with WEIGHT
	local w=$2 a sv
	ipvs_load "$1"
	shift 2
	for a; do
		for sv in $FC_SERVICES; do
			[[ $TAB == *$'\n'"$VIPA:${sv#*:} $a:${sv#*:} $w"$'\n'* ]] || return 1
		done
	done
}
absent() {   # DIRECTOR ADDR...: none of them in any service
	local a
	ipvs_load "$1"
	shift
	for a; do [[ $TAB != *" $a:"* ]] || return 1; done
}
drained() {   # DIRECTOR ADDR: weight 0 or out in each service
	local w sv
	for sv in $FC_SERVICES; do
		w=$(weight "$1" "$2" "${sv#*:}")
		[ -z "$w" ] || [ "$w" = 0 ] || return 1
	done
}

# ---------------------------------------------------------------- clients
cat >"$S/imapcheck.py" <<'EOF'
# Logs in as each user through the VIP and prints the back end the INBOX seed names.
import imaplib, sys
vip, users = sys.argv[1], sys.argv[2:]
for u in users:
    c = imaplib.IMAP4(vip, 143, timeout=10)
    c.login(u, "pw-" + u)
    c.select("INBOX")
    seq = c.search(None, "SUBJECT", "seed")[1][0].split()[0]
    typ, d = c.fetch(seq, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    print(u, d[0][1].decode().strip())
    c.logout()
EOF

# The sender: one message at a time through the VIP, a new connection each, retried on a
# connection error or a 4xx as an MTA would (bounded), each with a unique X-FC-Id.
cat >"$S/sender.py" <<'EOF'
import os, smtplib, sys, time
vip, n, prefix, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
users = sys.argv[5:]
dom = os.environ.get("FC_DOMAIN", "mail.test")
deadline = time.time() + 60
f = open(out, "w", buffering=1)
for i in range(n):
    mid = "%s-%d" % (prefix, i)
    rcpt = users[i % len(users)]
    msg = ("From: s@example.org\r\nTo: %s@%s\r\nSubject: %s\r\nX-FC-Id: %s\r\n\r\nbody %s\r\n"
           % (rcpt, dom, mid, mid, mid))
    tries, t0 = 0, time.time()
    while time.time() < deadline and tries < 40:
        tries += 1
        try:
            c = smtplib.SMTP(vip, 25, timeout=4)
            c.sendmail("s@example.org", [rcpt + "@" + dom], msg)
            try:
                c.quit()
            except Exception:
                pass
            f.write("acked %s %s tries=%d ms=%d\n" % (mid, rcpt, tries, (time.time() - t0) * 1000))
            break
        except smtplib.SMTPResponseException as e:
            if e.smtp_code >= 500:
                f.write("refused %s %s %d\n" % (mid, rcpt, e.smtp_code))
                break
            f.write("retry %s %d\n" % (mid, e.smtp_code))
        except smtplib.SMTPRecipientsRefused as e:
            f.write("retry %s rcpt %s\n" % (mid, e))
        except (OSError, smtplib.SMTPException) as e:
            f.write("retry %s %s\n" % (mid, type(e).__name__))
        time.sleep(0.2)
    else:
        f.write("gaveup %s\n" % mid)
    time.sleep(0.03)
f.write("done\n")
EOF
# Message ids found at the back ends, one "BACKEND USER ID" line per copy.
delivered() {
	grep -r -H '^X-FC-Id:' "$S"/be[12]/home/*/Maildir/new "$S"/be[12]/home/*/Maildir/cur 2>/dev/null |
		awk -v s="$S/" '{ p = substr($0, length(s) + 1); split(p, a, "/"); n = split($0, f, "X-FC-Id:");
			id = f[n]; gsub(/[ \t\r]/, "", id); print a[1], a[3], id }'
}
missing_ids() {   # SENTFILE...: acknowledged ids not found at any back end
	acked_ids "$@" >"$S/ids.acked"
	delivered | awk '{ print $3 }' | sort -u >"$S/ids.found"
	comm -23 "$S/ids.acked" "$S/ids.found"
}
acked_ids() { cat "$@" 2>/dev/null | awk '$1 == "acked" { print $2 }' | sort; }
all_delivered() {   # SENTFILE...
	[ -n "$(acked_ids "$@")" ] && [ -z "$(missing_ids "$@")" ]
}

# ---------------------------------------------------------------- held IMAP sessions
cat >"$S/holder.py" <<'EOF'
# Holds N logged-in IMAP sessions through the VIP (SELECTed INBOX); commands on the FIFO:
# "round TAG" (NOOP + FETCH on every open session, in parallel), "close I", "quit".
import imaplib, sys, threading, time, os
vip, n, d = sys.argv[1], int(sys.argv[2]), sys.argv[3]
users = sys.argv[4:]
log = open(d + "/log", "a", buffering=1)
sess = {}
for i in range(n):
    u = users[i % len(users)]
    c = imaplib.IMAP4(vip, 143, timeout=8)
    c.login(u, "pw-" + u)
    c.select("INBOX")
    seq = c.search(None, "SUBJECT", "seed")[1][0].split()[0]
    sess[i] = (u, c, seq)
    log.write("session %d %s port %d\n" % (i, u, c.sock.getsockname()[1]))
log.write("open %d\n" % n)
def probe(i, res):
    u, c, seq = sess[i]
    try:
        c.noop()
        typ, dd = c.fetch(seq, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        res[i] = typ == "OK" and ("seed " + u) in dd[0][1].decode()
    except Exception as e:
        res[i] = False
deadline = time.time() + 170
fd = os.open(d + "/ctl", os.O_RDWR)
ctl = os.fdopen(fd, "r")
while time.time() < deadline:
    line = ctl.readline().split()
    if not line:
        continue
    if line[0] == "round":
        res = {}
        ts = [threading.Thread(target=probe, args=(i, res)) for i in sess]
        for t in ts: t.start()
        for t in ts: t.join(20)
        ok = sorted(i for i in sess if res.get(i))
        bad = sorted(i for i in sess if not res.get(i))
        for i in bad:
            sess.pop(i)
        log.write("round %s ok=%d fail=%d okset=%s\n" % (line[1], len(ok), len(bad), ",".join(map(str, ok))))
    elif line[0] == "close":
        i = int(line[1])
        try:
            sess.pop(i)[1].logout()
            log.write("closed %d\n" % i)
        except Exception as e:
            log.write("close %d failed %s\n" % (i, e))
    elif line[0] == "quit":
        break
EOF
H=$S/hold
holder_start() {   # N USERS...: N sessions through the VIP, user by user in turn
	NSESS=$1
	shift
	mkdir -p "$H"
	mkfifo "$H/ctl"
	ip netns exec client "$PY" "$S/holder.py" "$VIPA" "$NSESS" "$H" "$@" >"$H/stderr" 2>&1 &
	HPID=$!
	SYS_PIDS+=($HPID)
	sys_wait_for 15000 "$NSESS held sessions" grep -q "^open $NSESS" "$H/log"
}
hold_cmd() { local fd; exec {fd}<>"$H/ctl" && echo "$1" >&"$fd" && exec {fd}>&-; }
hold_round() {   # TAG: sets ok and bad (no subshell: the guest has no /dev/fd)
	ok=0 bad=$NSESS
	hold_cmd "round $1"
	sys_wait_for 15000 "round $1" grep -q "^round $1 " "$H/log" || return 1
	read -r ok bad <<<"$(sed -n "s/^round $1 ok=\([0-9]*\) fail=\([0-9]*\).*/\1 \2/p" "$H/log")"
}
# The relay (address X, namespace XN) IPVS sent held session I to, on DIRECTOR; ONX: the
# client ports of every held session established through that relay.
session_relay() {   # DIRECTOR I
	local p0
	p0=$(awk -v i="$2" '$1 == "session" && $2 == i { print $5 }' "$H/log")
	X=$(ip netns exec "$1" ipvsadm -Lnc | awk -v c="$NET.2:$p0" '$4 == c { split($6, a, ":"); print a[1] }' | head -1)
	XN=
	[[ $X == "$NET".2[123] ]] && XN=relay${X: -1}
	ONX=$(ip netns exec "$1" ipvsadm -Lnc | awk -v x="$X:143" '$6 == x && $3 == "ESTABLISHED" { split($4, a, ":"); print a[2] }')
	[ -n "$XN" ]
}
close_sessions_on() {   # PORTS: closes the held sessions from those client ports
	local p i
	for p in $1; do
		i=$(awk -v p="$p" '$1 == "session" && $5 == p { print $2 }' "$H/log")
		[ -n "$i" ] && hold_cmd "close $i"
	done
}

# ---------------------------------------------------------------- failover probe
cat >"$S/probe.py" <<'EOF'
# Started before the failure (Python's start-up is slow in UML): reads T0 (bash
# $EPOCHREALTIME without the dot) from the FIFO, prints the ms from T0 to the first greeting.
import os, socket, sys, time
vip = sys.argv[1]
print("armed", flush=True)
t0 = int(os.fdopen(os.open(sys.argv[2], os.O_RDWR), "r").readline())
end = time.time() + 30
while time.time() < end:
    try:
        s = socket.create_connection((vip, 143), 0.25)
        s.settimeout(1)
        if s.recv(100).startswith(b"* OK"):
            print(int((time.time() * 1e6 - t0) / 1000))
            sys.exit(0)
    except OSError:
        time.sleep(0.02)
sys.exit(1)
EOF
