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
# Last, a mailbox move in cluster mode: `mailplexctl move` on dira moves a user from be1 to
# be2 through dira's map-publish and map-status while the user holds an IMAP session and
# receives SMTP through the VIP; every message ends on be2 once, the session is closed by
# the relays' map sweep, nothing reaches be1 after the switch. Measures the move's steps.
#
#   client .2, dira .1 (prio 150), dirb .3 (prio 100), relay1..3 .21-.23, rogue .29,
#   be1 .31, be2 .32; all on br-f (10.82.0.0/24); VIP 10.82.0.10 (smtp 25, imap 143).
. "$SYS_SRC/lib.sh"
S=$SYS_SCRATCH
NET=10.82.0
VIPA=$NET.10
KEY=$S/cluster.key
BADKEY=$S/other.key
NSESS=10
# For the mailbox move at the end: the directors publish the map (map.source below), the
# Dovecots have the master user the move's copy and check log in with.
FC_MAP_SOURCE=$S/map
FC_MASTER_USER=mover FC_MASTER_PASS=master-secret
. "$SYS_SRC/fullcluster.sh"
fc_prereqs

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
dovecot_start be1 $NET.31 $USERS1
dovecot_start be2 $NET.32 $USERS2
fc_map mail.test be1 $NET.31 "$USERS1" be2 $NET.32 "$USERS2"
sys_check map_compiled $? "$(cat "$S/map.out")"

sys_wait_for 8000 "both Dovecots answer IMAP and LMTP" dovecots_answer be1 $NET.31 be2 $NET.32
sys_check dovecots_started $? "$(tail -n 3 "$S/be1/dovecot.log" "$S/be1/stdout" 2>/dev/null | tr '\n' '|')"

# ---------------------------------------------------------------- directors and keepalived
write_dconf dira $NET.1 150 1 2
write_dconf dirb $NET.3 100 2 1
ok=0
for n in dira dirb; do
	"$D" --keepalived-conf -f "$S/$n.conf" >"$S/ka-$n.conf" &&
		ip netns exec "$n" keepalived -t -f "$S/ka-$n.conf" >>"$S/ka-t.log" 2>&1 || ok=1
done
sys_check keepalived_confs_printed_and_valid $ok "$(head -c 300 "$S/ka-t.log")"

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
write_rconf relay1 relay1 $NET.21 "$KEY"
write_rconf relay2 relay2 $NET.22 "$KEY"
write_rconf relay3 relay3 $NET.23 "$KEY"
write_rconf rogue rogue $NET.29 "$BADKEY"
"$A" -n -f "$S/relay1/conf" >"$S/n.out" 2>&1 && "$SMTPD" -n -f "$S/relay1/conf" >>"$S/n.out" 2>&1 &&
	"$PROXY" -n -f "$S/relay1/conf" >>"$S/n.out" 2>&1 && "$D" -n -f "$S/dira.conf" >>"$S/n.out" 2>&1
sys_check configs_valid $? "$(tr '\n' '|' <"$S/n.out" | head -c 400)"

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
ip netns exec client "$PY" "$S/imapcheck.py" $VIPA a1 a2 b1 b2 a3 b3 >"$S/imapcheck.out" 2>&1
rc=$?
[ "$rc" = 0 ] && [ "$(grep -Ec '^(a[0-9]) Subject: seed \1 on be1$|^(b[0-9]) Subject: seed \2 on be2$' "$S/imapcheck.out")" = 6 ]
sys_check imap_via_vip_lands_on_users_backend $? "$(tr '\n' '|' <"$S/imapcheck.out" | head -c 400)"
# rr sent those six logins to every relay: each proxy logged one.
n=0
for r in relay1 relay2 relay3; do grep -Eq 'login client=.* user=(a|b)[1-3] backend=be[12].* result=ok' "$S/proxy-$r.log" && n=$((n + 1)); done
sys_check imap_logins_spread_over_relays $([ $n = 3 ]; echo $?) "$n relays logged logins"

ALLUSERS="$USERS1 $USERS2"
ip netns exec client "$PY" "$S/sender.py" $VIPA 6 pre "$S/sent-pre" $ALLUSERS
sys_check smtp_sender_runs $? "$(tail -n 2 "$S/sent-pre" | tr '\n' '|')"
sys_wait_for 8000 "the six messages at the back ends" all_delivered "$S/sent-pre"
rc=$?
[ "$rc" = 0 ] && [ "$(acked_ids "$S/sent-pre" | wc -l)" = 6 ] &&
	[ -z "$(delivered | awk '($1 == "be1") != ($2 ~ /^a/)')" ]
sys_check smtp_via_vip_delivered_to_users_backend $? "$(delivered | tr '\n' '|')"
n=0
for r in relay1 relay2 relay3; do grep -q 'accepted client=' "$S/smtpd-$r.log" && n=$((n + 1)); done
sys_check smtp_spread_over_relays $([ $n = 3 ]; echo $?) "$n relays accepted mail"

# ---------------------------------------------------------------- held IMAP sessions
holder_start $NSESS $ALLUSERS
sys_check held_sessions_open $? "$(tail -n 3 "$H/stderr" | tr '\n' '|')"
echo "TIMING guest_mem_used_mb_sessions_open=$(free -m | awk '$1 == "Mem:" { print $3 }')"
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
kill_director dira
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
session_relay dira 0
sys_check held_session_relay_known $? "session 0 on '$X'"
eval "XPID=\$APID_$XN"
kill -TERM "$XPID"
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
close_sessions_on "$ONX"
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

# ---------------------------------------------------------------- mailbox move, cluster mode
# A new user m1, on both Dovecots' userdbs, is put on be1 in map.source and published by
# dira; the relay that left above comes back. m1 gets mail in INBOX and Work through the
# VIP, holds an IMAP session through the VIP and keeps receiving SMTP through the VIP
# (movecli.py) while `mailplexctl move` on dira (move.mode cluster: dira's map-publish,
# barrier on dira's map-status) moves him to be2. The copy command is INSTALL's
# mailplex-pull run in be2's namespace (its dovecot.conf): the stand-in for the ssh to NEW.
MU=m1
MV=$S/move
mkdir -p "$MV/state"
tmv=${EPOCHREALTIME/./}
for b in be1 be2; do
	printf '%s:{PLAIN}pw-%s:65534:65534::%s/home/%s::\n' $MU $MU "$S/$b" $MU >>"$S/$b/users"
	mkdir -p "$S/$b/home/$MU" && chown 65534:65534 "$S/$b/home/$MU"
done
agent_start "$XN"
echo "user $MU be1" >>"$S/map"
out=$(ip netns exec dira "$CTL" -f "$S/dira.conf" map publish 2>&1)
sys_check move_user_published_by_dira $? "$out"
vpub=$(sed -n 's/.*map version \([0-9]*\) published.*/\1/p' <<<"$out")
cat >"$MV/movecli.py" <<'EOF'
# Once DIR/go exists (waits at most 60 s), seeds USER's mailbox through the VIP (INBOX 3,
# Work 2), then holds an IMAP session (NOOP every 0.2 s until the server ends it) and
# mails the user through the VIP, one message at a time, retried on 4xx and connection
# errors, until DIR/stop exists (bounded: 120 s).
import imaplib, os, smtplib, sys, threading, time
vip, user, d = sys.argv[1:4]
for _ in range(1200):
    if os.path.exists(d + "/go"):
        break
    time.sleep(0.05)
end = time.time() + 120
log = open(d + "/log", "a", buffering=1)
lk = threading.Lock()
def note(s):
    with lk:
        log.write("%d %s\n" % (time.time() * 1000, s))
m = imaplib.IMAP4(vip, 143, timeout=10)
m.login(user, "pw-" + user)
assert m.create("Work")[0] == "OK"
for folder, n in (("INBOX", 3), ("Work", 2)):
    for i in range(n):
        msg = ("From: seed@example.org\r\nTo: %s@mail.test\r\nMessage-ID: <seed-%s-%d@mv.test>\r\n"
               "Subject: seed %d\r\n\r\nseeded\r\n" % (user, folder, i, i))
        assert m.append(folder, None, None, msg.encode())[0] == "OK"
m.select("INBOX")
note("held port %d" % m.sock.getsockname()[1])
def hold():
    try:
        while time.time() < end:
            m.noop()
            time.sleep(0.2)
        note("timeout")
    except Exception as e:
        note("closed %s" % type(e).__name__)
t = threading.Thread(target=hold)
t.start()
i = 0
while time.time() < end and not os.path.exists(d + "/stop"):
    mid = "<mv-%d@mv.test>" % i
    msg = ("From: s@example.org\r\nTo: %s@mail.test\r\nMessage-ID: %s\r\nSubject: mv %d\r\n\r\n"
           "body %d\r\n" % (user, mid, i, i))
    try:
        c = smtplib.SMTP(vip, 25, timeout=5)
        c.sendmail("s@example.org", [user + "@mail.test"], msg)
        try:
            c.quit()
        except Exception:
            pass
        note("acked %s" % mid)
        i += 1
    except smtplib.SMTPRecipientsRefused as e:
        code = list(e.recipients.values())[0][0]
        note("deferred %s %d" % (mid, code) if code < 500 else "refused %s %d" % (mid, code))
        if code >= 500:
            i += 1
    except smtplib.SMTPResponseException as e:
        note("deferred %s %d" % (mid, e.smtp_code) if e.smtp_code < 500 else "refused %s %d" % (mid, e.smtp_code))
        if e.smtp_code >= 500:
            i += 1
    except (OSError, smtplib.SMTPException) as e:
        note("retry %s %s" % (mid, type(e).__name__))
    time.sleep(0.2)
note("done")
t.join(5)
EOF
# Python starts while the relays fetch the map; it connects once "go" exists.
ip netns exec client "$PY" "$MV/movecli.py" $VIPA $MU "$MV" >"$MV/cli.err" 2>&1 &
MCPID=$!
SYS_PIDS+=($MCPID)

printf 'master-secret\n' >"$MV/master.pass"
chmod 600 "$MV/master.pass"
# INSTALL's mailplex-pull, with be2's dovecot.conf for /etc/dovecot/dovecot.conf.
cat >"$MV/mailplex-pull" <<EOF
#!/bin/sh
set -u
d=\$(mktemp -d) || exit 1
head -c 4096 >"\$d/pw"
printf '!include $S/be2/dovecot.conf\nimapc_password = <%s\n' "\$d/pw" >"\$d/c"
doveadm -c "\$d/c" -o imapc_host="\$2" -o imapc_port="\$3" -o imapc_ssl="\$4" \\
    -o imapc_user="\$1" -o imapc_master_user="\$5" \\
    -o imapc_features="rfc822.size fetch-headers" backup -R -u "\$1" imapc:
rc=\$?; rm -rf "\$d"; exit \$rc
EOF
cat >>"$S/dira.conf" <<EOF
move = {
	mode = "cluster";
	state_dir = "$MV/state";
	master_user = "mover";
	master_password_file = "$MV/master.pass";
	barrier_timeout = "60s";
	copy_timeout = "60s";
	imap_timeout = "10s";
	copy_command = "ip netns exec be2 sh $MV/mailplex-pull \"\$MAILPLEX_USER\" \"\$MAILPLEX_OLD_HOST\" \"\$MAILPLEX_OLD_IMAP_PORT\" \"\$MAILPLEX_OLD_IMAPC_SSL\" \"\$MAILPLEX_MASTER_USER\" <\"\$MAILPLEX_MASTER_PASSWORD_FILE\"";
};
EOF
"$D" -n -f "$S/dira.conf" >"$MV/n.out" 2>&1 && "$CTL" -f "$S/dira.conf" move config >>"$MV/n.out" 2>&1
sys_check move_config_valid $? "$(tr '\n' '|' <"$MV/n.out" | head -c 600)"

cat >"$MV/mvcheck.py" <<'EOF'
# "vip HOST USER": a login through the VIP as USER, prints the message counts of INBOX
# and Work; "ids USER OUT HOST1 HOST2": every Message-ID in every folder of be1 and be2 (as
# the master user) into OUT.be1, OUT.be2, one "FOLDER ID" line each.
import imaplib, re, sys
if sys.argv[1] == "vip":
    m = imaplib.IMAP4(sys.argv[2], 143, timeout=10)
    m.login(sys.argv[3], "pw-" + sys.argv[3])
    print("vip INBOX %s Work %s" % (m.select("INBOX", readonly=True)[1][0].decode(),
                                   m.select("Work", readonly=True)[1][0].decode()))
    m.logout()
    sys.exit(0)
user, out = sys.argv[2:4]
for be, host in (("be1", sys.argv[4]), ("be2", sys.argv[5])):
    f = open(out + "." + be, "w")
    m = imaplib.IMAP4(host, 143, timeout=10)
    m.login(user + "*mover", "master-secret")
    for b in m.list()[1]:
        if b is None or b"\\Noselect" in b:
            continue
        name = b.decode().rsplit(' "." ', 1)[1].strip('"')
        typ, n = m.select('"%s"' % name, readonly=True)
        if int(n[0]) == 0:
            continue
        for d in m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")[1]:
            if isinstance(d, tuple):
                mid = re.search(rb"<[^>]+>", d[1])
                f.write("%s %s\n" % (name, mid.group(0).decode() if mid else "?"))
    m.logout()
    f.close()
EOF

map_all() {   # FIELD VERSION: dira lists three relays, each with FIELD >= VERSION
	"$CTL" -f "$S/dira.conf" map status >"$MV/mapstatus" 2>&1 &&
		awk -v f="$1" -v v="$2" '$1 == "relay" { n++; for (i = 3; i < NF; i += 2)
			if ($i == f && $(i + 1) + 0 < v + 0) bad++ } END { exit !(n == 3 && !bad) }' "$MV/mapstatus"
}
sys_wait_for 10000 "relays on map $vpub and $XN back in IPVS" eval 'map_all map_in_force "${vpub:-1}" &&
	all_in dira 100 $NET.21 $NET.22 $NET.23'
sys_check move_map_in_force_on_every_relay $? "$(tr '\n' '|' <"$MV/mapstatus") dira: $(ipvs_rows dira 143 | tr '\n' ' ')"
: >"$MV/go"
sys_wait_for 15000 "$MU seeded, a session held, mail acknowledged" eval 'grep -q " held " "$MV/log" &&
	[ "$(grep -c " acked " "$MV/log")" -ge 2 ]'
sys_check move_user_seeded_held_and_mailed $? "$(tail -n 3 "$MV/cli.err" | tr '\n' '|')"

t0=${EPOCHREALTIME/./}
ip netns exec dira "$CTL" -f "$S/dira.conf" move $MU --to be2 2>&1 | while IFS= read -r l; do
	printf '%d ms %s\n' $(((${EPOCHREALTIME/./} - t0) / 1000)) "$l"
done >"$MV/move.out"
rc=${PIPESTATUS[0]}
move_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
nacked_at_done=$(grep -c " acked " "$MV/log")
lmtp_be1_at_done=$(grep -c "lmtp($MU)<.*saved mail" "$S/be1/dovecot.log")
sed 's/^/  move| /' "$MV/move.out"
[ "$rc" = 0 ] && grep -q "published as migrating (map version" "$MV/move.out" &&
	grep -q "in force everywhere" "$MV/move.out" && grep -q "copied and checked: 2 folders" "$MV/move.out" &&
	grep -q "done: published on be2" "$MV/move.out"
sys_check move_cluster_mode_succeeds $? "rc $rc"
step_ms() { awk -v p="$1" 'index($0, p) { print $1; exit }' "$MV/move.out"; }
echo "TIMING move_ms=$move_ms"
echo "TIMING move_migrating_published_ms=$(step_ms 'published as migrating')"
echo "TIMING move_barrier_passed_ms=$(step_ms 'in force everywhere')"
echo "TIMING move_copied_checked_ms=$(step_ms 'copied and checked')"
echo "TIMING move_done_ms=$(step_ms 'done: published')"
"$CTL" -f "$S/dira.conf" move status $MU >"$MV/status.out" 2>&1
grep -q "^$MU@mail.test .* be1 .* be2 .* done .* done " "$MV/status.out"
sys_check move_status_done $? "$(cat "$MV/status.out")"
vmig=$(sed -n 's/.*published as migrating (map version \([0-9]*\)).*/\1/p' "$MV/move.out")
map_all map_in_force "${vmig:-999999999999}"
sys_check move_every_relay_reached_migrating_map $? "v$vmig: $(tr '\n' '|' <"$MV/mapstatus")"
grep -q " closed " "$MV/log" &&
	grep -Eq "closed by the map sweep: .* user=$MU[@ ].*being migrated \(map version $vmig\)" "$S"/proxy-relay[123].log
sys_check move_held_session_closed_by_map_sweep $? "$(grep -h 'map sweep' "$S"/proxy-relay[123].log | tail -n 2 | tr '\n' '|')"
grep -q " deferred " "$MV/log"
sys_check move_mail_deferred_while_migrating $? "$(grep -c ' deferred ' "$MV/log") deferrals"

# Mail keeps coming after the switch; then the sender stops and everything is counted.
sys_wait_for 10000 "mail acknowledged after the move" eval '[ "$(grep -c " acked " "$MV/log")" -ge $((nacked_at_done + 2)) ]'
sys_check move_mail_acknowledged_after_switch $?
: >"$MV/stop"
sys_wait_for 10000 "the move sender stops" grep -q " done$" "$MV/log"
grep ' acked ' "$MV/log" | awk '{ print $3 }' >"$MV/expected"
printf '<seed-INBOX-%d@mv.test>\n' 0 1 2 >>"$MV/expected"
printf '<seed-Work-%d@mv.test>\n' 0 1 >>"$MV/expected"
sort -o "$MV/expected" "$MV/expected"
nexp=$(wc -l <"$MV/expected")
on_be2() {
	local f=("$S/be2/home/$MU/Maildir/"{cur,new,.Work/cur,.Work/new}/*)
	local n=0 x
	for x in "${f[@]}"; do [ -e "$x" ] && n=$((n + 1)); done
	[ "$n" -ge "$nexp" ]
}
sys_wait_for 10000 "$nexp messages of $MU on be2" on_be2
ip netns exec client "$PY" "$MV/mvcheck.py" ids $MU "$MV/ids" $NET.31 $NET.32 >"$MV/check.out" 2>&1
rc=$?
awk '{ print $2 }' "$MV/ids.be2" | sort >"$MV/ids.be2.sorted"
[ "$rc" = 0 ] && cmp -s "$MV/expected" "$MV/ids.be2.sorted"
sys_check move_every_message_on_be2_exactly_once $? "expected $nexp, be2 $(wc -l <"$MV/ids.be2.sorted"); diff: $(diff "$MV/expected" "$MV/ids.be2.sorted" | head -n 6 | tr '\n' ' ') $(tail -n 2 "$MV/check.out" | tr '\n' '|')"
awk '{ print $2 }' "$MV/ids.be1" | sort >"$MV/ids.be1.sorted"
[ -s "$MV/ids.be1.sorted" ] && [ -z "$(comm -23 "$MV/ids.be1.sorted" "$MV/ids.be2.sorted")" ] &&
	[ "$(grep -c "lmtp($MU)<.*saved mail" "$S/be1/dovecot.log")" = "$lmtp_be1_at_done" ]
sys_check move_nothing_reached_be1_after_switch $? "be1 $(wc -l <"$MV/ids.be1.sorted") ids, lmtp $lmtp_be1_at_done/$(grep -c "lmtp($MU)<.*saved mail" "$S/be1/dovecot.log")"
# A new login through the VIP: a proxy sends it to be2 (its log), be2's Dovecot logs it, and
# it sees be2's INBOX (be1's has fewer: mail arrived after the switch).
logins_be2=$(grep -c "imap-login: Info: Login: user=<$MU>" "$S/be2/dovecot.log")
logins_px=$(cat "$S"/proxy-relay[123].log | grep -Ec "login client=.* user=$MU[@ ].*backend=be2.* result=ok")
ip netns exec client "$PY" "$MV/mvcheck.py" vip $VIPA $MU >"$MV/vip.out" 2>&1
rc=$?
n2=$(grep -c '^INBOX ' "$MV/ids.be2") n1=$(grep -c '^INBOX ' "$MV/ids.be1")
vip_login_logged() {   # by a proxy (backend=be2) and by be2's Dovecot; logs are asynchronous
	[ "$(grep -c "imap-login: Info: Login: user=<$MU>" "$S/be2/dovecot.log")" -gt "$logins_be2" ] &&
		[ "$(cat "$S"/proxy-relay[123].log | grep -Ec "login client=.* user=$MU[@ ].*backend=be2.* result=ok")" -gt "$logins_px" ]
}
[ "$rc" = 0 ] && grep -qx "vip INBOX $n2 Work 2" "$MV/vip.out" && [ "$n1" != "$n2" ] &&
	sys_wait_for 2000 "the VIP login logged by a proxy and be2" vip_login_logged
sys_check move_new_login_via_vip_lands_on_be2 $? "$(tr '\n' '|' <"$MV/vip.out") be2 INBOX $n2, be1 INBOX $n1"
echo "TIMING move_acked=$(grep -c ' acked ' "$MV/log") move_deferrals=$(grep -c ' deferred ' "$MV/log")"
echo "TIMING move_phase_ms=$(((${EPOCHREALTIME/./} - tmv) / 1000))"

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
