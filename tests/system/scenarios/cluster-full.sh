#!/bin/bash
# cluster-full: the whole cluster in one boot. A client, two directors under keepalived
# (the printed config, VRRPv3 advert 100 ms, sync daemons, cluster_listen, no static
# relays), three relays each running the real mailplex-relay (DR), mailplex-smtpd and
# mailplex-proxy on its address and the VIP with the compiled map, two Dovecot back ends
# (IMAP + LMTP) splitting the users. Proves: relays join through their agents and take
# traffic only once their daemons answer; IMAP and SMTP through the VIP reach the user's
# back end; a JOIN under a wrong key is refused; held IMAP sessions survive the master
# director's death (link down, kill -9) and its return (preemption); SMTP sent during both
# loses no acknowledged message; SIGTERM of an agent drains its relay without breaking a
# session on it, which leaves IPVS once that session ends. Measures failover and failback.
#
#   client .2, dira .1 (prio 150), dirb .3 (prio 100), relay1..3 .21-.23, rogue .29,
#   be1 .31, be2 .32; all on br-f (10.82.0.0/24); VIP 10.82.0.10 (smtp 25, imap 143).
. "$SYS_SRC/lib.sh"
D=$SYS_BIN/mailplex-director
A=$SYS_BIN/mailplex-relay
CTL=$SYS_BIN/mailplexctl
MAP=$SYS_BIN/mailplex-map
SMTPD=$SYS_BIN/mailplex-smtpd
PROXY=$SYS_BIN/mailplex-proxy
PY=/usr/bin/python3
S=$SYS_SCRATCH
NET=10.82.0
VIPA=$NET.10
KEY=$S/cluster.key
BADKEY=$S/other.key
NSESS=10

for b in "$D" "$A" "$CTL" "$MAP" "$SMTPD" "$PROXY" "$PY"; do
	[ -x "$b" ] || { sys_log "missing $b (make all)"; sys_check programs_built 1; sys_finish; exit 1; }
done
for p in keepalived dovecot; do
	command -v $p >/dev/null || { sys_log "$p not installed"; sys_check "${p}_installed" 1; sys_finish; exit 1; }
done
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }

sys_bridge br-f &&
	sys_host dira br-f $NET.1/24 && sys_host dirb br-f $NET.3/24 &&
	sys_host client br-f $NET.2/24 && sys_host rogue br-f $NET.29/24 &&
	sys_host relay1 br-f $NET.21/24 && sys_host relay2 br-f $NET.22/24 &&
	sys_host relay3 br-f $NET.23/24 &&
	sys_host be1 br-f $NET.31/24 && sys_host be2 br-f $NET.32/24
sys_check topology $? || { sys_finish; exit 1; }
(umask 077 && openssl rand -hex 32 >"$KEY" && openssl rand -hex 32 >"$BADKEY")
sys_check keys_made $?

# ---------------------------------------------------------------- back ends and the map
USERS1="a1 a2 a3 a4 a5 a6"
USERS2="b1 b2 b3 b4 b5 b6"
dovecot_start() {   # NAME ADDR USERS...
	local name=$1 addr=$2 u dd=$S/$1
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
	cat >"$dd/dovecot.conf" <<-EOF
	instance_name = fc-$name
	base_dir = $dd/run
	state_dir = $dd/state
	protocols = imap lmtp
	listen = $addr
	ssl = no
	disable_plaintext_auth = no
	log_path = $dd/dovecot.log
	mail_location = maildir:~/Maildir
	auth_username_format = %Ln
	lmtp_save_to_detail_mailbox = no
	protocol imap {
	  mail_max_userip_connections = 100
	}
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
dovecot_start be1 $NET.31 $USERS1
dovecot_start be2 $NET.32 $USERS2

{
	echo "backend be1 lmtp=$NET.31:24 imap=$NET.31:143 pop3=$NET.31:110 tls=off"
	echo "backend be2 lmtp=$NET.32:24 imap=$NET.32:143 pop3=$NET.32:110 tls=off"
	echo "domain mail.test"
	for u in $USERS1; do echo "user $u be1"; done
	for u in $USERS2; do echo "user $u be2"; done
} >"$S/map"
"$MAP" compile "$S/map" "$S/map.db" >"$S/map.out" 2>&1
sys_check map_compiled $? "$(cat "$S/map.out")"

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
sys_wait_for 8000 "both Dovecots answer IMAP and LMTP" eval 'greets be1 $NET.31 143 "* OK" &&
	greets be1 $NET.31 24 220 && greets be2 $NET.32 143 "* OK" && greets be2 $NET.32 24 220'
sys_check dovecots_started $? "$(tail -n 3 "$S/be1/dovecot.log" "$S/be1/stdout" 2>/dev/null | tr '\n' '|')"

# ---------------------------------------------------------------- directors and keepalived
write_dconf() {   # NAME ADDR PRIORITY SYNCID PEER_SYNCID
	cat >"$S/$1.conf" <<-EOF
	log_level = "info";
	director = {
		control = "$S/$1.sock";
		reconcile_interval = "1s";
		drain_timeout = "60s";
		ipvs_tcpfin_timeout = "1s";
		cluster_listen = "$2:7945";
		cluster_key = "$KEY";
		relay_dead_after = "1500ms";
		rejoin_grace = "5s";
		vrrp = { interface = "eth0"; router_id = 82; priority = $3; advert_interval = "100ms";
			preempt = true; fifo = "$S/$1.fifo"; };
		sync = { interface = "eth0"; syncid = $4; peer_syncid = $5; };
		services = (
			{ name = "smtp"; vip = "$VIPA:25"; scheduler = "rr";
			  check = { type = "smtp"; interval = "300ms"; timeout = "1s"; rise = 2; fall = 3; }; },
			{ name = "imap"; vip = "$VIPA:143"; scheduler = "rr";
			  check = { type = "imap"; interval = "300ms"; timeout = "1s"; rise = 2; fall = 3; }; } );
	};
	EOF
}
write_dconf dira $NET.1 150 1 2
write_dconf dirb $NET.3 100 2 1
ok=0
for n in dira dirb; do
	"$D" --keepalived-conf -f "$S/$n.conf" >"$S/ka-$n.conf" &&
		ip netns exec "$n" keepalived -t -f "$S/ka-$n.conf" >>"$S/ka-t.log" 2>&1 || ok=1
done
sys_check keepalived_confs_printed_and_valid $ok "$(head -c 300 "$S/ka-t.log")"

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
director_start dira && director_start dirb
sys_check directors_started $?
ka_start dira
sys_wait_for 8000 "dira MASTER" status_has dira '^vrrp: instance mailplex_v4 MASTER'
sys_check dira_master $?
ka_start dirb
sys_wait_for 8000 "dirb BACKUP" status_has dirb '^vrrp: instance mailplex_v4 BACKUP'
sys_check dirb_backup $?
sys_wait_for 5000 "VIP on dira only" eval 'vip_on dira && ! vip_on dirb'
sys_check vip_on_master_only $?

# ---------------------------------------------------------------- relays
write_rconf() {   # NS NAME ADDR KEYFILE
	local r=$S/$1
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
		services = [ "smtp:25", "imap:143" ]; dr_vips = [ "$VIPA" ];
		smtpd_control = "$r/ctl/smtpd.sock.0"; proxy_control = "$r/ctl/proxy.sock";
		spool = "$r/spool"; spool_min_free = "1M"; stop_timeout = "30s";
	};
	proxy = {
		imap = [ "$3:143", "$VIPA:143" ];
		workers = 1;
		allow_plaintext_login = true;
		control = "$r/ctl/proxy.sock";
		login_failure_delay = "100ms";
		backend_down = "1s";
	};
	smtpd = {
		listen = [ "$3:25", "$VIPA:25" ];
		hostname = "$2.mail.test";
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
write_rconf relay1 relay1 $NET.21 "$KEY"
write_rconf relay2 relay2 $NET.22 "$KEY"
write_rconf relay3 relay3 $NET.23 "$KEY"
write_rconf rogue rogue $NET.29 "$BADKEY"
"$A" -n -f "$S/relay1/conf" >"$S/n.out" 2>&1 && "$SMTPD" -n -f "$S/relay1/conf" >>"$S/n.out" 2>&1 &&
	"$PROXY" -n -f "$S/relay1/conf" >>"$S/n.out" 2>&1 && "$D" -n -f "$S/dira.conf" >>"$S/n.out" 2>&1
sys_check configs_valid $? "$(tr '\n' '|' <"$S/n.out" | head -c 400)"

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
all_in() {   # DIRECTOR WEIGHT ADDR...: every ADDR in both services with WEIGHT
	local w=$2 a
	ipvs_load "$1"
	shift 2
	for a; do
		[[ $TAB == *$'\n'"$VIPA:25 $a:25 $w"$'\n'* && $TAB == *$'\n'"$VIPA:143 $a:143 $w"$'\n'* ]] || return 1
	done
}
absent() {   # DIRECTOR ADDR...: none of them in either service
	local a
	ipvs_load "$1"
	shift
	for a; do [[ $TAB != *" $a:"* ]] || return 1; done
}

# Agents first: they put the VIP on lo (the daemons bind it) and join, not ready yet.
t0=${EPOCHREALTIME/./}
for r in relay1 relay2 relay3; do agent_start $r; done
joined_not_ready() {
	local r
	for r in relay1 relay2 relay3; do
		grep -q "cluster: join of relay $r ($NET.2[123], weight 100, 2 services, not ready)" "$S/director-dira.log" || return 1
	done
}
sys_wait_for 5000 "three relays join dira not ready" joined_not_ready
sys_check relays_join_not_ready $? "$(grep -c 'join of relay' "$S/director-dira.log") joins logged"
sys_snooze 1
absent dira $NET.21 $NET.22 $NET.23 && absent dirb $NET.21 $NET.22 $NET.23
sys_check no_traffic_before_daemons_answer $? "$(ipvs_rows dira 143 | tr '\n' ' ')"
for r in relay1 relay2 relay3; do daemons_start $r; done
sys_wait_for 10000 "relays ready in both directors' IPVS" eval 'all_in dira 100 $NET.21 $NET.22 $NET.23 &&
	all_in dirb 100 $NET.21 $NET.22 $NET.23'
sys_check ready_relays_enter_both_directors $? "dira: $(ipvs_rows dira 143 | tr '\n' ' ') dirb: $(ipvs_rows dirb 143 | tr '\n' ' ')"
echo "TIMING agents_start_to_traffic_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
grep -q 'cluster: relay relay1 is ready again' "$S/director-dira.log"
sys_check readiness_change_logged $?

# ---- a JOIN under another cluster's key is refused by both directors
agent_start rogue
sys_wait_for 3000 "refusal of rogue's join" eval 'grep -q "cluster: datagram from $NET.29:[0-9]* refused: bad MAC" "$S/director-dira.log" &&
	grep -q "cluster: datagram from $NET.29:[0-9]* refused: bad MAC" "$S/director-dirb.log"'
sys_check wrong_key_join_refused $?
absent dira $NET.29 && ! grep -q 'join of relay rogue' "$S/director-dira.log" "$S/director-dirb.log"
sys_check wrong_key_relay_never_joins $?
kill -TERM "$APID_rogue"
sys_snooze 0.2
kill -TERM "$APID_rogue" 2>/dev/null
wait "$APID_rogue" 2>/dev/null

# ---------------------------------------------------------------- mail through the VIP
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
ip netns exec client "$PY" "$S/imapcheck.py" $VIPA a1 a2 b1 b2 a3 b3 >"$S/imapcheck.out" 2>&1
rc=$?
[ "$rc" = 0 ] && [ "$(grep -Ec '^(a[0-9]) Subject: seed \1 on be1$|^(b[0-9]) Subject: seed \2 on be2$' "$S/imapcheck.out")" = 6 ]
sys_check imap_via_vip_lands_on_users_backend $? "$(tr '\n' '|' <"$S/imapcheck.out" | head -c 400)"
# rr sent those six logins to every relay: each proxy logged one.
n=0
for r in relay1 relay2 relay3; do grep -Eq 'login client=.* user=(a|b)[1-3] backend=be[12].* result=ok' "$S/proxy-$r.log" && n=$((n + 1)); done
sys_check imap_logins_spread_over_relays $([ $n = 3 ]; echo $?) "$n relays logged logins"

# The sender: one message at a time through the VIP, a new connection each, retried on a
# connection error or a 4xx as an MTA would (bounded), each with a unique X-FC-Id.
cat >"$S/sender.py" <<'EOF'
import smtplib, sys, time
vip, n, prefix, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
users = sys.argv[5:]
deadline = time.time() + 60
f = open(out, "w", buffering=1)
for i in range(n):
    mid = "%s-%d" % (prefix, i)
    rcpt = users[i % len(users)]
    msg = ("From: s@example.org\r\nTo: %s@mail.test\r\nSubject: %s\r\nX-FC-Id: %s\r\n\r\nbody %s\r\n"
           % (rcpt, mid, mid, mid))
    tries, t0 = 0, time.time()
    while time.time() < deadline and tries < 40:
        tries += 1
        try:
            c = smtplib.SMTP(vip, 25, timeout=4)
            c.sendmail("s@example.org", [rcpt + "@mail.test"], msg)
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
ALLUSERS="$USERS1 $USERS2"
ip netns exec client "$PY" "$S/sender.py" $VIPA 6 pre "$S/sent-pre" $ALLUSERS
sys_check smtp_sender_runs $? "$(tail -n 2 "$S/sent-pre" | tr '\n' '|')"
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
sys_wait_for 8000 "the six messages at the back ends" all_delivered "$S/sent-pre"
rc=$?
[ "$rc" = 0 ] && [ "$(acked_ids "$S/sent-pre" | wc -l)" = 6 ] &&
	[ -z "$(delivered | awk '($1 == "be1") != ($2 ~ /^a/)')" ]
sys_check smtp_via_vip_delivered_to_users_backend $? "$(delivered | tr '\n' '|')"
n=0
for r in relay1 relay2 relay3; do grep -q 'accepted client=' "$S/smtpd-$r.log" && n=$((n + 1)); done
sys_check smtp_spread_over_relays $([ $n = 3 ]; echo $?) "$n relays accepted mail"

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
mkdir -p "$H"
mkfifo "$H/ctl"
ip netns exec client "$PY" "$S/holder.py" $VIPA $NSESS "$H" $ALLUSERS >"$H/stderr" 2>&1 &
HPID=$!
SYS_PIDS+=($HPID)
sys_wait_for 15000 "$NSESS held sessions" grep -q "^open $NSESS" "$H/log"
sys_check held_sessions_open $? "$(tail -n 3 "$H/stderr" | tr '\n' '|')"
echo "TIMING guest_mem_used_mb_sessions_open=$(free -m | awk '$1 == "Mem:" { print $3 }')"
hold_cmd() { local fd; exec {fd}<>"$H/ctl" && echo "$1" >&"$fd" && exec {fd}>&-; }
hold_round() {   # TAG: sets ok and bad (no subshell: the guest has no /dev/fd)
	ok=0 bad=$NSESS
	hold_cmd "round $1"
	sys_wait_for 15000 "round $1" grep -q "^round $1 " "$H/log" || return 1
	read -r ok bad <<<"$(sed -n "s/^round $1 ok=\([0-9]*\) fail=\([0-9]*\).*/\1 \2/p" "$H/log")"
}
hold_round before
[ "$ok" = $NSESS ]
sys_check held_sessions_answer $? "ok=$ok fail=$bad"
ports=$(awk '$1 == "session" { print $5 }' "$H/log")
synced() {   # every held session ESTABLISHED in dirb's connection table
	local tab p
	tab=$(ip netns exec dirb ipvsadm -Lnc 2>/dev/null | grep ESTABLISHED)
	for p in $ports; do [[ $tab == *" $NET.2:$p "* ]] || return 1; done
}
sys_wait_for 8000 "held sessions synced to dirb" synced
sys_check held_sessions_synced_to_backup $? "$(ip netns exec dirb ipvsadm -Lnc | grep -c ESTABLISHED) established on dirb"
sys_log "held ports: $(echo $ports)"; ip netns exec dirb ipvsadm -Lnc | sed 's/^/  dirb conn| /'

# ---------------------------------------------------------------- failover
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
ip netns exec client "$PY" "$S/sender.py" $VIPA 50 fo "$S/sent-fo" $ALLUSERS &
SPID=$!
SYS_PIDS+=($SPID)
mkfifo "$S/probe.ctl"
ip netns exec client "$PY" "$S/probe.py" $VIPA "$S/probe.ctl" >"$S/probe.out" 2>&1 &
PRPID=$!
SYS_PIDS+=($PRPID)
sys_wait_for 5000 "probe armed" grep -qx armed "$S/probe.out"
sys_wait_for 10000 "sender under way" eval '[ "$(grep -c ^acked "$S/sent-fo")" -ge 3 ]'
# The master dies: its link goes down, then keepalived and the director are killed.
t0=${EPOCHREALTIME/./}
ip -n dira link set eth0 down
kill -KILL "$(cat "$S/dira.vrrp.pid")" "$KA_dira" "$DPID_dira"
exec {pfd}<>"$S/probe.ctl" && echo "$t0" >&"$pfd" && exec {pfd}>&-
sys_wait_for 10000 "VIP on dirb" vip_on dirb
sys_check vip_moved_to_dirb $?
vip_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
wait "$PRPID"
rc=$?
fo_ms=$(sed -n '2p' "$S/probe.out")
sys_check vip_answers_after_master_death $rc "after ${fo_ms:-?} ms"
rm -f "$S"/dira.*.pid
echo "TIMING failover_ms=${fo_ms:-0}"
echo "TIMING failover_vip_on_dirb_ms=$vip_ms"
hold_round failover
echo "TIMING sessions_survived_failover=$ok/$NSESS"
[ "$ok" = $NSESS ]
sys_check held_sessions_survive_failover $? "ok=$ok fail=$bad"
sys_wait_for 40000 "failover sender done" grep -qx done "$S/sent-fo"
sys_check failover_sender_finished $? "$(tail -n 2 "$S/sent-fo" | tr '\n' '|')"
wait "$SPID" 2>/dev/null

# ---------------------------------------------------------------- failback
# dira comes back as from a reboot: no VIP on its link, director and keepalived started.
ip netns exec client "$PY" "$S/sender.py" $VIPA 30 fb "$S/sent-fb" $ALLUSERS &
SPID=$!
SYS_PIDS+=($SPID)
ip -n dira addr del "$VIPA/32" dev eth0 2>/dev/null
ip -n dira link set eth0 up
director_start dira
sys_check dira_director_restarted $?
t0=${EPOCHREALTIME/./}
ka_start dira
sys_wait_for 10000 "VIP back on dira only" eval 'vip_on dira && ! vip_on dirb'
sys_check dira_preempts $?
echo "TIMING failback_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
sys_wait_for 8000 "dira answers through the VIP" ip netns exec client "$PY" "$S/greet.py" $VIPA 143 "* OK"
hold_round failback
echo "TIMING sessions_survived_failback=$ok/$NSESS"
[ "$ok" = $NSESS ]
sys_check held_sessions_survive_failback $? "ok=$ok fail=$bad"
sys_wait_for 40000 "failback sender done" grep -qx done "$S/sent-fb"
sys_check failback_sender_finished $? "$(tail -n 2 "$S/sent-fb" | tr '\n' '|')"
wait "$SPID" 2>/dev/null

# ---------------------------------------------------------------- no acknowledged message lost
SENT="$S/sent-pre $S/sent-fo $S/sent-fb"
sys_wait_for 15000 "every acknowledged message at the back ends" all_delivered $SENT
sys_check no_acknowledged_message_lost $? "missing: $(missing_ids $SENT | tr '\n' ' ' | head -c 300)"
delivered >"$S/delivered"
nacked=$(acked_ids $SENT | wc -l)
nids=$(awk '{ print $3 }' "$S/delivered" | sort -u | wc -l)
ncopies=$(wc -l <"$S/delivered")
[ "$nacked" = 86 ] && [ "$nids" = "$nacked" ]
sys_check delivered_ids_equal_acknowledged $? "acked=$nacked distinct-delivered=$nids copies=$ncopies"
[ -z "$(awk '($1 == "be1") != ($2 ~ /^a/)' "$S/delivered")" ]
sys_check every_message_on_its_users_backend $?
echo "TIMING smtp_acked=$nacked"
echo "TIMING smtp_duplicates=$((ncopies - nids))"
echo "TIMING smtp_retries=$(cat $SENT | grep -c '^retry')"

# ---------------------------------------------------------------- drain on agent stop
# The relay carrying held session 0 leaves; that session keeps working until closed.
p0=$(awk '$1 == "session" && $2 == 0 { print $5 }' "$H/log")
X=$(ip netns exec dira ipvsadm -Lnc | awk -v c="$NET.2:$p0" '$4 == c { split($6, a, ":"); print a[1] }' | head -1)
case $X in $NET.21) XN=relay1 ;; $NET.22) XN=relay2 ;; $NET.23) XN=relay3 ;; *) XN= ;; esac
[ -n "$XN" ]
sys_check held_session_relay_known $? "session 0 port $p0 on '$X'"
onx=$(ip netns exec dira ipvsadm -Lnc | awk -v x="$X:143" '$6 == x && $3 == "ESTABLISHED" { split($4, a, ":"); print a[2] }')
eval "XPID=\$APID_$XN"
kill -TERM "$XPID"
drained() {   # DIRECTOR ADDR: weight 0 or out in each service
	local w
	for w in "$(weight "$1" "$2" 25)" "$(weight "$1" "$2" 143)"; do [ -z "$w" ] || [ "$w" = 0 ] || return 1; done
}
# imap keeps the relay at weight 0 for the held session; smtp, idle, may drop it at once.
sys_wait_for 3000 "$XN drained on both directors" eval '[ "$(weight dira $X 143)" = 0 ] && drained dira $X && drained dirb $X'
sys_check leaving_relay_weight_zero $? "dira: $(ipvs_rows dira 143 | tr '\n' ' ')"
sys_snooze 1
hold_round drain
[ "$ok" = $NSESS ] && kill -0 "$XPID"
sys_check session_through_draining_relay_continues $? "ok=$ok fail=$bad"
before=$(wc -l <"$S/proxy-$XN.log")
out=$(ip netns exec client "$PY" "$S/imapcheck.py" $VIPA a4 b4 a5 b5 2>&1)
[ "$(echo "$out" | grep -c 'Subject: seed')" = 4 ] &&
	! tail -n +$((before + 1)) "$S/proxy-$XN.log" | grep -Eq 'login client=.* user=(a4|b4|a5|b5) '
sys_check new_sessions_avoid_draining_relay $? "$(echo "$out" | tr '\n' '|' | head -c 200)"
t0=${EPOCHREALTIME/./}
for p in $onx; do
	i=$(awk -v p="$p" '$1 == "session" && $5 == p { print $2 }' "$H/log")
	[ -n "$i" ] && hold_cmd "close $i"
done
# A director deletes the relay once its connection entries are gone, or at the drain
# deadline (drain_timeout, 60 s). Entries it learnt from the peer's sync daemon (the
# failover and failback above) may never see their FIN, so the deadline is the bound here;
# the time it took is reported.
sys_wait_for 25000 "$XN out of both directors' IPVS (sessions ended or drain deadline)" \
	eval 'absent dira $X && absent dirb $X'
sys_check drained_relay_leaves_ipvs_after_its_sessions $? "dira: $(ipvs_rows dira 25 | tr '\n' ' ')/ $(ipvs_rows dira 143 | tr '\n' ' ') dirb: $(ipvs_rows dirb 25 | tr '\n' ' ')/ $(ipvs_rows dirb 143 | tr '\n' ' ')"
echo "TIMING drain_close_to_out_of_ipvs_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
sys_wait_for 25000 "agent $XN exits" eval '! kill -0 $XPID'
sys_check leaving_agent_exits $?
echo "TIMING drain_close_to_agent_exit_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
hold_round after
sys_check other_sessions_unaffected $([ "$bad" = 0 ]; echo $?) "ok=$ok fail=$bad"

for r in relay1 relay2 relay3; do eval "p=\$APID_$r"; kill -TERM "$p" 2>/dev/null; done
sys_snooze 0.3
for r in relay1 relay2 relay3; do eval "p=\$APID_$r"; kill -TERM "$p" 2>/dev/null; done
free -m | sed 's/^/  mem| /'
echo "TIMING guest_mem_used_mb=$(free -m | awk '$1 == "Mem:" { print $3 }')"
hold_cmd quit
sys_log "logs:"
grep -h 'MASTER\|BACKUP\|FAULT' "$S/keepalived-dirb.log" | tail -n 6 | sed 's/^/  ka-dirb| /'
grep -h 'cluster:\|vrrp:' "$S/director-dira.log" | grep -v heartbeat | tail -n 15 | sed 's/^/  dira| /'
grep -h 'cluster:\|vrrp:' "$S/director-dirb.log" | grep -v heartbeat | tail -n 8 | sed 's/^/  dirb| /'
for f in "$S"/sent-*; do grep -v '^acked' "$f" | head -n 8 | sed "s#^#  ${f##*/}| #"; done
grep -h 'error\|fatal\|Error' "$S"/be[12]/dovecot.log 2>/dev/null | tail -n 5 | sed 's/^/  dovecot| /'
sys_finish
