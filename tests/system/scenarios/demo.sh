#!/bin/bash
# demo: `make demo`, the whole cluster told step by step for a reader. Two directors under
# keepalived hold the VIP of mail.bigisp.com, three relays join through their agents, two
# Dovecots hold the mailboxes. Mail is sent through the VIP to a user on each back end and
# read back over IMAP and POP3; the master director dies (held IMAP sessions go on, mail is
# still accepted); a relay is drained. Every step prints why, the commands it runs with
# their real output, and PASS or FAIL per check; the scenario fails if any check does.
# tests/demo.sh boots it (uml-run.sh) and streams this log to the terminal.
#
#   client .2, dira .1 (prio 150), dirb .3 (prio 100), relay1..3 .21-.23, be1 .31, be2 .32
#   on br-d (10.83.0.0/24); VIP 10.83.0.10: smtp 25, imap 143, pop3 110.
. "$SYS_SRC/lib.sh"
S=$SYS_SCRATCH
NET=10.83.0
VIPA=$NET.10
KEY=$S/cluster.key
FC_SERVICES="smtp:25 imap:143 pop3:110"
FC_DOMAIN=bigisp.com
FC_DRAIN_TIMEOUT=20s
FC_DOVECOT_PROTOCOLS="imap pop3 lmtp"
# Every poll forks (ipvsadm, grep): fewer of them leave the CPU to the cluster.
SYS_WAIT_POLL=0.2
USERS1="john alice"
USERS2="mary bob"
. "$SYS_SRC/fullcluster.sh"
export PATH=$SYS_BIN:$PATH
cd "$S" || exit 1

# ---------------------------------------------------------------- telling it
STEP=0
STEP_FAILS=0
FAILED_STEPS=()
step() {   # TITLE WHY
	step_end
	STEP=$((STEP + 1))
	STEP_FAILS=0
	STEP_TITLE=$1
	STEP_T0=${EPOCHREALTIME/./}
	printf '\n==== Step %d: %s\n     why: %s\n' "$STEP" "$1" "$2"
}
step_end() {
	local t
	[ "$STEP" -gt 0 ] || return 0
	t=$(((${EPOCHREALTIME/./} - STEP_T0) / 100000))
	t="$((t / 10)).$((t % 10)) s"
	if [ "$STEP_FAILS" = 0 ]; then
		printf -- '---- step %d PASS (%s), %s\n' "$STEP" "$STEP_TITLE" "$t"
	else
		printf -- '---- step %d FAIL (%s): %d check(s) failed, %s\n' "$STEP" "$STEP_TITLE" "$STEP_FAILS" "$t"
		FAILED_STEPS+=("$STEP")
	fi
}
say() { printf '     %s\n' "$*"; }
# Runs CMD in namespace NS ("-" for the test kernel's own) from the scratch folder and
# shows it as "NS# CMD" with its output indented; OUT holds the output, the status is CMD's.
run() {   # NS CMD...
	local ns=$1 rc a shown=""
	shift
	for a; do
		[[ $a =~ ^[][A-Za-z0-9_./:=@,+*-]+$ ]] && shown+=" $a" || shown+=" '$a'"
	done
	printf '  %s#%s\n' "${ns/-/uml}" "$shown"
	if [ "$ns" = - ]; then "$@" >"$S/run.out" 2>&1; else ip netns exec "$ns" "$@" >"$S/run.out" 2>&1; fi
	rc=$?
	OUT=$(<"$S/run.out")
	[ -n "$OUT" ] && sed 's/^/      /' "$S/run.out"
	[ "$rc" = 0 ] || printf '      (exit status %d)\n' "$rc"
	return $rc
}
check() {   # NAME RC [DETAIL]
	SYS_CHECKS=$((SYS_CHECKS + 1))
	if [ "$2" = 0 ]; then
		printf '  PASS  %s%s\n' "$1" "${3:+ — $3}"
	else
		SYS_FAILED=$((SYS_FAILED + 1))
		STEP_FAILS=$((STEP_FAILS + 1))
		printf '  FAIL  %s%s\n' "$1" "${3:+ — $3}"
	fi
}
elapsed() { echo "$(((${EPOCHREALTIME/./} - SYS_T0) / 1000000)) s"; }
# The relays whose proxy logged a successful login of USER since mark_logs.
mark_logs() { local r; for r in relay1 relay2 relay3; do eval "MARK_$r=$(wc -l <"$S/proxy-$r.log")"; done; }
login_relay() {   # USER
	local r m
	for r in relay1 relay2 relay3; do
		eval "m=\$MARK_$r"
		tail -n +$((m + 1)) "$S/proxy-$r.log" | grep -q "login client=.* user=$1 backend=.* result=ok" && echo "$r"
	done
}

# Reads back through the VIP: logs in as USER over IMAP or POP3 and waits (bounded) for a
# message whose Subject is SUBJECT; prints each exchange in one line.
cat >"$S/readback.py" <<'EOF'
# readback.py VIP WAIT {PROTO USER SUBJECT}...: each read in turn, one line per exchange,
# then "found PROTO USER" or "missing PROTO USER". One process: Python starts slowly in UML.
import imaplib, poplib, re, sys, time
vip, wait, args = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
def say(s):
    print(s, flush=True)
def imap(user, subject, end):
    c = imaplib.IMAP4(vip, 143, timeout=10)
    say("S: " + c.welcome.decode())
    typ, d = c.login(user, "pw-" + user)
    say("C: LOGIN %s ****   S: %s %s" % (user, typ, re.sub(r"\[CAPABILITY [^]]*\]", "[CAPABILITY ...]", d[0].decode())))
    while True:
        typ, d = c.select("INBOX")
        seqs = c.search(None, "SUBJECT", '"%s"' % subject)[1][0].split()
        say("C: SELECT INBOX -> %s messages; SEARCH SUBJECT \"%s\" -> %s" % (d[0].decode(), subject, b" ".join(seqs).decode() or "none"))
        if seqs or time.time() > end:
            break
        time.sleep(1)
    if seqs:
        typ, d = c.fetch(seqs[-1], "(BODY.PEEK[HEADER.FIELDS (SUBJECT RECEIVED)])")
        hdr = d[0][1].decode().strip().replace("\r\n\t", " ").replace("\r\n ", " ")
        for l in hdr.split("\r\n"):
            if l.startswith("Received:"):
                l = re.sub(r"\s*\(envelope-from.*|;.*", "", l)
            say("C: FETCH %s -> %s" % (seqs[-1].decode(), l))
    c.logout()
    say("C: LOGOUT")
    return bool(seqs)
def pop3(user, subject, end):
    while True:
        found = None
        c = poplib.POP3(vip, 110, timeout=10)
        say("S: " + c.getwelcome().decode())
        c.user(user)
        r = c.pass_("pw-" + user).decode()
        say("C: USER %s / PASS ****   S: %s" % (user, r))
        n = c.stat()[0]
        say("C: STAT -> %d messages" % n)
        for i in range(n, 0, -1):
            lines = c.top(i, 0)[1]
            subj = [l.decode() for l in lines if l.lower().startswith(b"subject:")]
            if subj and subj[0][9:].strip() == subject:
                found = (i, subj[0])
                say("C: TOP %d 0 -> %s" % found)
                break
        c.quit()
        say("C: QUIT")
        if found or time.time() > end:
            return bool(found)
        time.sleep(1)
ok = True
for k in range(0, len(args) - 2, 3):
    proto, user, subject = args[k:k + 3]
    try:
        got = (imap if proto == "imap" else pop3)(user, subject, time.time() + wait)
    except Exception as e:
        say("error: %s" % e)
        got = False
    say("%s %s %s" % ("found" if got else "missing", proto, user))
    ok = ok and got
sys.exit(0 if ok else 1)
EOF

printf 'mailplex demo: the cluster of bigisp.com in one user-mode Linux kernel, %s\n' "$(uname -r)"

# ---------------------------------------------------------------- 1: back ends and map
step "two Dovecot back ends and the per-user map" \
	"mailboxes live on back-end stores; relays route each user with one compiled map"
fc_prereqs >/dev/null
sys_bridge br-d &&
	sys_host dira br-d $NET.1/24 && sys_host dirb br-d $NET.3/24 &&
	sys_host client br-d $NET.2/24 &&
	sys_host relay1 br-d $NET.21/24 && sys_host relay2 br-d $NET.22/24 &&
	sys_host relay3 br-d $NET.23/24 &&
	sys_host be1 br-d $NET.31/24 && sys_host be2 br-d $NET.32/24
check "network: one bridge, a namespace per machine (client, dira, dirb, relay1-3, be1, be2)" $?
(umask 077 && openssl rand -hex 32 >"$KEY")
dovecot_start be1 $NET.31 $USERS1
dovecot_start be2 $NET.32 $USERS2
fc_map $FC_DOMAIN be1 $NET.31 "$USERS1" be2 $NET.32 "$USERS2"
check "map compiled" $? "$(cat "$S/map.out")"
run - cat map
run - mailplex-map lookup map.db john@bigisp.com Mary@BIGISP.com
[[ $OUT == *john*be1* && $OUT == *mary*be2* ]]
check "john is on be1, mary on be2" $?
sys_wait_for 8000 "both Dovecots answer" dovecots_answer be1 $NET.31 be2 $NET.32
check "both Dovecots answer IMAP and LMTP" $?

# ---------------------------------------------------------------- 2: directors
step "two directors and keepalived: the VIP on the master" \
	"VRRP keeps $VIPA on one director; both program the same IPVS table and sync connections"
write_dconf dira $NET.1 150 1 2
write_dconf dirb $NET.3 100 2 1
printf '  uml# mailplex-director --keepalived-conf -f dirX.conf > ka-dirX.conf   (X = a, b)\n'
"$D" --keepalived-conf -f dira.conf >ka-dira.conf && "$D" --keepalived-conf -f dirb.conf >ka-dirb.conf
check "keepalived.conf printed from mailplex.conf on both" $?
run - grep -E 'vrrp_instance|priority|advert_int|/32|notify_fifo|mailplex-director --health' ka-dira.conf
run dira keepalived -t -f ka-dira.conf
check "keepalived accepts it" $?
director_start dira && director_start dirb
check "mailplex-director running on dira and dirb" $?
ka_start dira
sys_wait_for 8000 "dira MASTER" status_has dira '^vrrp: instance mailplex_v4 MASTER'
ka_start dirb
sys_wait_for 8000 "dirb BACKUP" status_has dirb '^vrrp: instance mailplex_v4 BACKUP'
sys_wait_for 5000 "VIP on dira only" eval 'vip_on dira && ! vip_on dirb'
run dira ip -4 -br addr show dev eth0
run dirb ip -4 -br addr show dev eth0
vip_on dira && ! vip_on dirb && status_has dira 'MASTER' && status_has dirb 'BACKUP'
check "dira MASTER with the VIP, dirb BACKUP" $?

# ---------------------------------------------------------------- 3: relays join
step "three relays join through their agents" \
	"a relay joins by starting mailplex-relay with the cluster key; the directors admit it once its smtpd and proxy answer"
for r in 1 2 3; do write_rconf relay$r relay$r $NET.2$r "$KEY"; done
run - ls -l cluster.key
run relay1 mailplex-relay -n -f relay1/conf
t0=${EPOCHREALTIME/./}
for r in relay1 relay2 relay3; do agent_start $r; done
say "started mailplex-relay -d -f relayN/conf on relay1..3: the agents put the VIP on lo and join"
joined() { [ "$(grep -c 'cluster: join of relay relay[123] .*checks start' director-dira.log)" -ge 3 ]; }
sys_wait_for 5000 "three joins on dira" joined
rc=$?
run - grep 'cluster: join of relay.*checks start' director-dira.log
check "the three agents joined, not ready yet (no smtpd, no proxy)" $rc
absent dira $NET.21 $NET.22 $NET.23 && absent dirb $NET.21 $NET.22 $NET.23
check "so no traffic is sent to them yet" $? "$(ipvs_rows dira 25 | tr '\n' ' ')"
for r in relay1 relay2 relay3; do daemons_start $r; done
say "started mailplex-smtpd -d and mailplex-proxy -d -f relayN/conf on relay1..3"
sys_wait_for 10000 "relays in both directors' IPVS" eval 'all_in dira 100 $NET.21 $NET.22 $NET.23 &&
	all_in dirb 100 $NET.21 $NET.22 $NET.23'
check "relay1..3 active in both directors' IPVS" $? "$(((${EPOCHREALTIME/./} - t0) / 1000)) ms after the agents started"
run relay1 ip -4 -br addr show dev lo
run dira mailplexctl -f dira.conf director status
[[ $OUT == *"joined: relay1"* ]]
check "status shows the joined relays" $?
run dira ipvsadm -Ln
say "(the kernel's own table: DR ('Route') to every relay, written by mailplex-director over netlink)"

# ---------------------------------------------------------------- 4: mail in
step "mail through the VIP to a user on each back end" \
	"any relay takes mail for bigisp.com, fsyncs it to its spool before 250, and its queue runner delivers it over LMTP to the user's back end"
short=""
for u in john mary; do
	run client swaks -4 --server $VIPA:25 --from friend@example.org --to $u@bigisp.com \
		--header "Subject: demo to $u" --body "Hello $u, this went through the VIP." --timeout 10 $short
	short="--suppress-data --hide-informational"
	check "$u@bigisp.com accepted (swaks saw 250 to DATA)" $?
done
rel=$(grep -l 'accepted client=.*to=<john@bigisp.com>' "$S"/smtpd-relay[123].log 2>/dev/null | sed 's/.*smtpd-\(relay[123]\).*/\1/' | head -1)
say "john's message was accepted by ${rel:-no relay}"
[ -n "$rel" ] || rel=relay1
sys_wait_for 5000 "delivery logged" grep -q 'to=<john@bigisp.com> backend=.* result=delivered' smtpd-$rel.log
run - grep -h 'john@bigisp.com' smtpd-$rel.log
run $rel mailplexctl -f $rel/conf smtp status
run $rel mailplexctl -f $rel/conf queue status
run $rel mailplexctl -f $rel/conf queue list

# ---------------------------------------------------------------- 5: read back
step "reading it back through the VIP over IMAP and POP3" \
	"the proxy answers the login, finds the user's back end in the map, logs in there and then only copies bytes"
mark_logs
run client "$PY" readback.py $VIPA 20 imap john "demo to john" pop3 john "demo to john" \
	imap mary "demo to mary" pop3 mary "demo to mary"
for u in john mary; do
	for p in imap pop3; do
		[[ $OUT == *"found $p $u"* ]]
		check "$u reads 'demo to $u' over ${p^^}" $?
	done
	say "$u's logins were proxied by $(login_relay $u | tr '\n' ' ')to $(grep -ho "user=$u backend=[a-z0-9]*" proxy-relay[123].log | head -1 | sed 's/.*backend=//')"
done
run - grep -h 'login client=.* result=ok' proxy-relay1.log proxy-relay2.log proxy-relay3.log

# ---------------------------------------------------------------- 6: failover
step "the master director dies" \
	"keepalived on dirb takes the VIP within about a second; the IPVS sync daemon has already copied the connection table, so sessions go on"
holder_start 4 $USERS1 $USERS2
check "4 IMAP sessions held open through the VIP" $? "$(tail -n 2 "$H/stderr" | tr '\n' '|')"
ports=$(awk '$1 == "session" { print $5 }' "$H/log")
synced() {
	local tab p
	tab=$(ip netns exec dirb ipvsadm -Lnc 2>/dev/null | grep ESTABLISHED)
	for p in $ports; do [[ $tab == *" $NET.2:$p "* ]] || return 1; done
}
sys_wait_for 8000 "held sessions synced to dirb" synced
rc=$?
run dirb ipvsadm -Lnc
check "dirb (backup) has the held sessions in its connection table" $rc
session_relay dira 0
run $XN mailplexctl -f $XN/conf proxy status
[[ $OUT == *" imap "* ]]
check "proxy status on $XN lists its logged-in sessions" $?
say "killing the master: its link goes down, keepalived and mailplex-director get SIGKILL"
printf '  dira# ip link set eth0 down; kill -KILL keepalived mailplex-director\n'
t0=${EPOCHREALTIME/./}
kill_director dira
sys_wait_for 10000 "VIP on dirb" vip_on dirb
check "VIP moved to dirb" $? "after $(((${EPOCHREALTIME/./} - t0) / 1000)) ms"
run dirb ip -4 -br addr show dev eth0
hold_round failover
[ "$ok" = 4 ]
check "the 4 held IMAP sessions still answer NOOP and FETCH" $? "ok=$ok fail=$bad"
run client swaks -4 --server $VIPA:25 --from friend@example.org --to mary@bigisp.com \
	--header "Subject: after failover" --body "Still here." --timeout 10 --suppress-data --hide-informational
check "mail still accepted through the VIP" $?
run client "$PY" readback.py $VIPA 20 imap mary "after failover"
check "and delivered to mary on be2" $?
run dirb mailplexctl -f dirb.conf director status
[[ $OUT == *"MASTER"* ]]
check "dirb reports MASTER" $?

# ---------------------------------------------------------------- 7: drain
step "draining a relay" \
	"before maintenance the operator drains a relay: weight 0 at once, its sessions go on, new ones go elsewhere, and it leaves IPVS once idle"
session_relay dirb 0
check "held session 0 runs through $XN" $?
run dirb mailplexctl -f dirb.conf director drain $XN
check "drain accepted" $?
sys_wait_for 3000 "$XN at weight 0" drained dirb $X
check "$XN at weight 0 on dirb" $?
run dirb ipvsadm -Ln -t $VIPA:143
before=$(wc -l <"$S/proxy-$XN.log")
run client "$PY" imapcheck.py $VIPA john mary alice bob
[ "$(grep -c 'Subject: seed' <<<"$OUT")" = 4 ] &&
	! tail -n +$((before + 1)) "$S/proxy-$XN.log" | grep -q 'login client=.* result=ok'
check "4 new logins, none of them on $XN" $?
hold_round drain
[ "$ok" = 4 ]
check "sessions through $XN still work" $? "ok=$ok fail=$bad"
say "closing the held sessions that run through $XN"
close_sessions_on "$ONX"
t0=${EPOCHREALTIME/./}
sys_wait_for 10000 "$XN out of IPVS" absent dirb $X
check "$XN left IPVS" $? "$(((${EPOCHREALTIME/./} - t0) / 1000)) ms after its last session closed"
run dirb mailplexctl -f dirb.conf director status
[[ $OUT == *"$XN"*drained* ]]
check "status shows $XN drained" $?
hold_cmd quit

step_end
if [ "$SYS_FAILED" != 0 ]; then
	printf '\n==== What the daemons logged (errors and warnings, last lines of each)\n'
	for f in director-*.log keepalived-*.log agent-*.log smtpd-*.log proxy-*.log; do
		[ -s "$f" ] && grep -iE 'error|fatal|warn|refused|fail' "$f" | tail -n 4 | sed "s#^#  $f| #"
	done
	grep -iE 'error|fatal' be1/dovecot.log be2/dovecot.log 2>/dev/null | tail -n 4 | sed 's/^/  /'
fi
printf '\nDEMO steps=%d failed_steps=%d checks=%d failed_checks=%d guest_time=%s%s\n' \
	"$STEP" "${#FAILED_STEPS[@]}" "$SYS_CHECKS" "$SYS_FAILED" "$(elapsed)" \
	"${FAILED_STEPS[*]:+ failed: ${FAILED_STEPS[*]}}"
# The end: agents are stopped hard (a SIGTERM would drain each relay first, up to
# relay.stop_timeout); sys_finish stops the rest and removes the namespaces.
for r in relay1 relay2 relay3; do eval "kill -KILL \$APID_$r" 2>/dev/null; done
sys_finish >/dev/null
