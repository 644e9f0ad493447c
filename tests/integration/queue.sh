#!/bin/sh
# mailplex-smtpd's queue runner (run alone by mailplex-queue) against real back ends: two
# Dovecot LMTP servers (127.0.0.81, .82), Postfix's smtp-sink as an SMTP back end (.83) and
# as the bounce relay, one named by host name (localhost), and a back end that is down at
# first (.84). Messages are put into
# the spool as a receiver does (mailplex-queue inject); results are read from the maildirs
# and the sink's dump files; the queue is driven with mailplexctl. $1: the bin dir.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
BE1=127.0.0.81 BE2=127.0.0.82 SINK=127.0.0.83 DOWN=127.0.0.84
BASE=$((24000 + ($$ % 400) * 10))
LMTP1=$((BASE + 0)) LMTP2=$((BASE + 1)) SMTP=$((BASE + 2)) DOWNPORT=$((BASE + 3))
RELAY=$((BASE + 4)) SLOW=$((BASE + 5)) IMAP1=$((BASE + 6)) IMAP2=$((BASE + 7))
MX=127.0.0.86 SMTPD=$((BASE + 8)) NAMED=$((BASE + 9))
RUNNER=""
DIE_LOGS="runner.log:40"
. "$HERE/lib.sh"
lib_init queue.sh queue
on_cleanup() { PIDS="$RUNNER $PIDS"; } # the runner too: SIGTERM, then SIGKILL

need_tools openssl python3 dovecot smtp-sink swaks
need_bins mailplex-queue mailplex-map mailplexctl mailplex-smtpd

# ---- a self-signed certificate: d2 offers STARTTLS on LMTP, the map asks for it ----
make_cert d2.mail.test "DNS:d2.mail.test,IP:$BE2"

# ---- two Dovecot LMTP back ends; users unknown to a Dovecot get 550 5.1.1 from it ----
dovecot_start() { # NAME ADDR LMTP-PORT IMAP-PORT SSL USERS...
	name=$1 addr=$2 port=$3 iport=$4 ssl=$5
	shift 5
	dovecot_dir "$name"
	for u in "$@"; do
		# "full" has a 1-byte quota: Dovecot refuses its copy after DATA (552 5.2.2)
		extra=""
		[ "$u" = full ] && extra="userdb_quota_rule=*:storage=1B"
		dovecot_user "$u" x "$extra"
	done
	dovecot_conf "$name" "$addr" lmtp="$port" imap="$iport" ssl="$ssl" extra="mail_plugins = quota
plugin {
  quota = maildir:User quota
}
lmtp_save_to_detail_mailbox = no"
	dovecot_run "$name" "$addr" "$port"
}
dovecot_start d1 $BE1 $LMTP1 $IMAP1 no alice sam erin2 full
dovecot_start d2 $BE2 $LMTP2 $IMAP2 yes bob slow frank

# ---- smtp-sink: an SMTP back end and the bounce relay, each dumping what it gets ----
sink_start sink $SINK:$SMTP
sink_start relay $SINK:$RELAY
wait_port $SINK $SMTP || die "smtp-sink did not start: $(cat "$T/sink.out")"
wait_port $SINK $RELAY || die "smtp-sink (relay) did not start: $(cat "$T/relay.out")"
# a back end named by host name: localhost (::1 and 127.0.0.1; only the latter answers)
sink_start named 127.0.0.1:$NAMED
wait_port 127.0.0.1 $NAMED || die "smtp-sink (named) did not start: $(cat "$T/named.out")"

# ---- the map ----
cat >"$T/map" <<MAP
backend d1   lmtp=$BE1:$LMTP1 tls=off
backend d2   lmtp=$BE2:$LMTP2 tls=on
backend s1   smtp=$SINK:$SMTP tls=off
backend down lmtp=$DOWN:$DOWNPORT tls=off
backend named smtp=localhost:$NAMED tls=off
backend nowhere smtp=mx.nowhere.invalid:25 tls=off
domain mail.test
user alice d1
user sam d1
user erin d1
user full d1
user bob d2
user slow d2
user carol s1
user dave down
user nina named
user noel nowhere
user mallory reject "550 5.7.1 closed"
user frank migrating d1 -> d2
MAP
"$BIN/mailplex-map" compile "$T/map" "$T/map.db" >"$T/map.out" 2>&1 ||
	die "map compile: $(cat "$T/map.out")"

conf_write() { # FILE SPOOL LIFETIME [extra smtpd lines]
	cat >"$1" <<CONF
user = "nobody";
map = { db = "$T/map.db"; };
smtpd = {
	hostname = "relay1.mail.test";
	spool = "$2";
	queue_control = "$2.sock";
	queue_min_backoff = "1s";
	queue_max_backoff = "2s";
	queue_lifetime = "$3";
	backend_concurrency = 2;
	delivery_timeout = "4s";
	$4
};
CONF
}
conf_write "$T/q.conf" "$T/spool" "1d" "bounce_relay = \"$SINK:$RELAY\"; backend_ca_file = \"$T/cert.pem\";"
CTL="$BIN/mailplexctl -f $T/q.conf"

runner_start() { # CONF
	"$BIN/mailplex-queue" -d -f "$1" run >>"$T/runner.log" 2>&1 &
	RUNNER=$!
	# A kill -9 leaves the socket file: wait for an answer, not for the file.
	wait_for "the runner's control socket" "$BIN/mailplexctl" -f "$1" queue list ||
		die "the runner did not start"
}
runner_stop() {
	kill "$RUNNER" 2>/dev/null
	wait "$RUNNER" 2>/dev/null
	RUNNER=""
}
inject() { # CONF SENDER RCPT... (message from the variable MSG)
	c=$1
	shift
	printf '%s' "$MSG" | "$BIN/mailplex-queue" -f "$c" inject "$@"
}
message() { # SUBJECT
	MSG=$(printf 'From: sam@mail.test\r\nSubject: %s\r\nMessage-ID: <%s@test>\r\n\r\nBODYSECRET line 1\r\n.leading dot\r\nlast line\r\n' "$1" "$1")
}
count_in() { # MAILDIR-USER-DIR SUBJECT: how many messages with that subject
	grep -l "^Subject: $2\$\|^Subject: $2.$" "$1"/Maildir/new/* "$1"/Maildir/cur/* 2>/dev/null | wc -l
}
queue_empty() {
	$CTL queue list | grep -q "^0 message(s) shown, 0 in the queue"
}
map_ver() { # the version the last compile wrote ("map.db: version N: ...")
	sed -n 's/.*: version \([0-9]*\):.*/\1/p' "$T/map.out"
}
status_is() { # KEY VALUE: queue status has the line "KEY VALUE"
	$CTL queue status | grep -qx "$1 $2"
}

# ==== 1. one message, recipients on both LMTP back ends and the SMTP back end ====
runner_start "$T/q.conf"
message m1
inject "$T/q.conf" sam@mail.test alice@mail.test bob@mail.test carol@mail.test sam@mail.test >/dev/null ||
	die "inject failed"
wait_for "m1 delivered" queue_empty || fail=1
check "m1 reached alice (d1) once" test "$(count_in "$T/d1/home/alice" m1)" = 1
check "m1 reached sam (d1, same LMTP transaction as alice: two replies after DATA) once" \
	test "$(count_in "$T/d1/home/sam" m1)" = 1
check "m1 reached bob (d2) once" test "$(count_in "$T/d2/home/bob" m1)" = 1
check "m1 reached carol (smtp-sink) once" \
	test "$(grep -l "Subject: m1" "$T"/sink/* 2>/dev/null | wc -l)" = 1
check "m1 body was dot-stuffed and unstuffed intact" \
	grep -q "^\.leading dot" "$T"/d1/home/alice/Maildir/new/*
check "d2 was reached over STARTTLS (map tls=on)" \
	grep -q "with LMTPS" "$T"/d2/home/bob/Maildir/new/*
check "one log line per delivery attempt" \
	test "$(grep -c "from=<sam@mail.test> to=<.*@mail.test> backend=.* result=delivered" "$T/runner.log")" = 4
V=$(map_ver)
check "queue status, idle: map_version_in_force is the map's version ($V)" \
	status_is map_version_in_force "$V"
check "queue status, idle: map_version $V, nothing queued or in flight" \
	sh -c "$CTL queue status | grep -qx 'map_version $V' &&
	       $CTL queue status | grep -qx 'messages_queued 0' &&
	       $CTL queue status | grep -qx 'recipients_in_flight 0'"
check "mailplexctl queue status with an argument: usage error" \
	sh -c "$CTL queue status x >/dev/null 2>&1; test \$? = 2"

# a 3 MiB message with dot lines and bare LFs arrives byte for byte (line ends aside)
python3 - "$T/big.eml" <<'PY'
import random, sys
random.seed(7)
lines = ['From: sam@mail.test', 'Subject: big', '']
for i in range(40000):
    w = ''.join(random.choice('abcdefghij .') for _ in range(random.randint(0, 150)))
    lines.append(('.' + w) if i % 7 == 0 else w)
data = '\r\n'.join(lines[:20000]) + '\r\n' + '\n'.join(lines[20000:]) + '\n'
open(sys.argv[1], 'w', newline='').write(data)
PY
"$BIN/mailplex-queue" -f "$T/q.conf" inject sam@mail.test alice@mail.test <"$T/big.eml" >/dev/null ||
	die "inject failed"
wait_for "big delivered" queue_empty || fail=1
check "the big message arrived intact" python3 - "$T/big.eml" "$T"/d1/home/alice/Maildir/new/* <<'PY'
import sys
want = open(sys.argv[1], 'rb').read().replace(b'\r\n', b'\n')
want_body = want.split(b'\n\n', 1)[1]
for f in sys.argv[2:]:
    got = open(f, 'rb').read().replace(b'\r\n', b'\n')
    if b'\nSubject: big\n' in got:
        sys.exit(0 if got.split(b'\n\n', 1)[1] == want_body else 1)
sys.exit(1)
PY

# SIGHUP: a bad file is refused and the old configuration kept; a good one is taken
cp "$T/q.conf" "$T/q.conf.good"
printf 'smtpd = { bogus_key = 1; };\n' >>"$T/q.conf"
kill -HUP "$RUNNER"
check "SIGHUP with a bad configuration: refused" \
	wait_for "reload refused" grep -q "queue: reload refused, configuration kept" "$T/runner.log"
cp "$T/q.conf.good" "$T/q.conf"
kill -HUP "$RUNNER"
check "SIGHUP: configuration reloaded" \
	wait_for "reloaded" grep -q "queue: configuration reloaded" "$T/runner.log"
check "the runner still answers after the reloads" sh -c "$CTL queue list >/dev/null"

# ==== 1b. back ends named by host name: resolved off the loop; a name that does not resolve
# defers (4xx, retried), it is not a failure ====
message m1b
q1b=$(inject "$T/q.conf" sam@mail.test nina@mail.test noel@mail.test) || die "inject failed"
check "m1b reached nina at a back end named localhost" \
	wait_for "m1b at the named sink" sh -c "grep -l 'Subject: m1b' $T/named/* 2>/dev/null"
check "noel's back end does not resolve: deferred with a 4xx that says so" \
	wait_for "noel deferred" sh -c "$CTL queue list rcpt noel@mail.test | grep -q 'cannot resolve'"
check "delete m1b (noel's recipient will not resolve)" \
	sh -c "$CTL queue delete $q1b | grep -q deleted"
wait_for "m1b gone" queue_empty || fail=1

# ==== 2. LMTP per-recipient replies: erin is unknown to d1 -> bounce for erin only ====
message m2
inject "$T/q.conf" sam@mail.test alice@mail.test erin@mail.test >/dev/null || die "inject failed"
wait_for "m2 done" queue_empty || fail=1
check "the bounce reached sam" wait_for "the bounce for erin" sh -c "grep -l 'Final-Recipient: rfc822; erin@mail.test' $T/d1/home/sam/Maildir/new/*"
check "m2 reached alice" test "$(count_in "$T/d1/home/alice" m2)" = 1
b=$(grep -l 'Final-Recipient: rfc822; erin@mail.test' "$T"/d1/home/sam/Maildir/new/* | head -1)
check "the bounce is an RFC 3464 report" grep -q "report-type=delivery-status" "$b"
check "the bounce names the 5.1.1 from Dovecot" grep -q "^Status: 5.1.1" "$b"
check "the bounce quotes the headers" grep -q "^Subject: m2" "$b"
check "the bounce leaves out the body" sh -c "! grep -q BODYSECRET '$b'"
check "the bounce does not mention alice" sh -c "! grep -q 'Final-Recipient: rfc822; alice' '$b'"
check "the bounce came from MAILER-DAEMON" grep -q "^From: .*MAILER-DAEMON@relay1.mail.test" "$b"

# after DATA, one LMTP reply per recipient: alice's copy saved, full's refused (quota)
message m2q
inject "$T/q.conf" sam@mail.test alice@mail.test full@mail.test >/dev/null || die "inject failed"
wait_for "m2q done" queue_empty || fail=1
check "m2q reached alice" test "$(count_in "$T/d1/home/alice" m2q)" = 1
check "full's refusal after DATA bounced for full only" wait_for "the quota bounce" sh -c \
	"for f in $T/d1/home/sam/Maildir/new/*; do grep -q 'Final-Recipient: rfc822; full@mail.test' \$f &&
	 grep -q '^Subject: m2q' \$f && ! grep -q 'Final-Recipient: rfc822; alice' \$f && exit 0; done; exit 1"
check "the quota refusal came after DATA (RCPT accepted)" \
	grep -q "to=<full@mail.test> backend=d1.* result=failed .*reply=\"5[0-9][0-9] 5\.2\.2" "$T/runner.log"

# map verdicts: reject and unknown user -> bounce; migrating -> deferred
message m3
inject "$T/q.conf" sam@mail.test mallory@mail.test nobody@mail.test >/dev/null || die "inject failed"
wait_for "m3 done" queue_empty || fail=1
check "map reject: a bounce for mallory" wait_for "the bounce for mallory" sh -c "grep -l 'Final-Recipient: rfc822; mallory@mail.test' $T/d1/home/sam/Maildir/new/*"
check "bounce of m3 holds both recipients" \
	sh -c "grep -l 'Final-Recipient: rfc822; nobody@mail.test' $T/d1/home/sam/Maildir/new/* | grep -q ."

# a bounce to a foreign sender goes to smtpd.bounce_relay
message m4
inject "$T/q.conf" someone@example.org erin@mail.test >/dev/null || die "inject failed"
wait_for "m4 done" queue_empty || fail=1
check "a bounce to a foreign sender went to the bounce relay" wait_for "the relayed bounce" sh -c "grep -l 'Final-Recipient: rfc822; erin@mail.test' $T/relay/*"

# ==== 3. a back end that is down: deferred, listed, held, released, delivered ====
message m5
q5=$(inject "$T/q.conf" sam@mail.test dave@mail.test frank@mail.test) || die "inject failed"
wait_for "m5 deferred" sh -c "$CTL queue list | grep -q '^$q5 deferred'" || fail=1
check "list backend down shows m5" sh -c "$CTL queue list backend down | grep -q '^$q5 '"
check "list backend d1 does not show m5" sh -c "! $CTL queue list backend d1 | grep -q '^$q5 '"
check "list rcpt shows dave pending" \
	sh -c "$CTL queue list rcpt dave@mail.test | grep -q 'to=<dave@mail.test> pending backend=down'"
check "frank (migrating) is deferred with 4.2.1" \
	sh -c "$CTL queue list rcpt frank@mail.test | grep -q '4.2.1'"
check "frank (migrating d1 -> d2) is not listed as queued towards d1" \
	sh -c "! $CTL queue list backend d1 rcpt frank@mail.test | grep -q '^$q5 '"
check "frank (migrating d1 -> d2) is listed as queued towards d2" \
	sh -c "$CTL queue list backend d2 rcpt frank@mail.test | grep -q '^$q5 '"
check "show prints the envelope and headers" sh -c "$CTL queue show $q5 | grep -q '^  Subject: m5'"
check "show never prints the body" sh -c "! $CTL queue show $q5 | grep -q BODYSECRET"
check "hold" sh -c "$CTL queue hold $q5 | grep -q held"
check "list shows it held" sh -c "$CTL queue list | grep -q '^$q5 held'"
check "queue status counts it: one message queued and held, two recipients waiting" \
	sh -c "$CTL queue status | grep -qx 'messages_queued 1' &&
	       $CTL queue status | grep -qx 'messages_held 1' &&
	       $CTL queue status | grep -qx 'recipients_waiting 2'"
check "queue status: a deferred recipient does not hold back the map in force" \
	status_is map_version_in_force "$V"
check "an unknown qid is an error" sh -c "! $CTL queue show 0123456789ABCDEF 2>/dev/null"
# the back end comes up (an LMTP smtp-sink at dave's address), the map moves frank to d2
sink_start down $DOWN:$DOWNPORT -L
wait_port $DOWN $DOWNPORT || die "smtp-sink (down) did not start"
sed -i 's/^user frank migrating d1 -> d2$/user frank d2/' "$T/map"
"$BIN/mailplex-map" compile "$T/map" "$T/map.db" >"$T/map.out" 2>&1 || die "map compile"
V=$(map_ver)
check "queue status: the new map ($V) comes in force with nothing in flight" \
	wait_for "map $V in force" status_is map_version_in_force "$V"
sleep 2.5 # longer than the maximum back-off: a held message must stay put meanwhile
check "a held message is not tried" test "$(ls "$T/down" | wc -l)" = 0
check "release" sh -c "$CTL queue release $q5 | grep -q released"
check "flush" sh -c "$CTL queue flush | grep -q 'to be tried now'"
check "m5 delivered after the back end came up" wait_for "m5 delivered" queue_empty
check "m5 reached dave once" test "$(grep -l "Subject: m5" "$T"/down/* 2>/dev/null | wc -l)" = 1
check "m5 reached frank on d2 once the migration was done" test "$(count_in "$T/d2/home/frank" m5)" = 1

# delete
kill "$SINKPID_down" 2>/dev/null
wait "$SINKPID_down" 2>/dev/null
message m6
q6=$(inject "$T/q.conf" sam@mail.test dave+x@mail.test) || die "inject failed"
wait_for "m6 deferred" sh -c "$CTL queue list | grep -q '^$q6 deferred'" || fail=1
check "list rcpt dave@ finds dave+x@" \
	sh -c "$CTL queue list backend down rcpt dave@mail.test | grep -q 'to=<dave+x@mail.test> pending'"
check "delete" sh -c "$CTL queue delete $q6 | grep -q deleted"
check "the queue file is gone" test ! -e "$T/spool/queue/$q6"
# the state log goes once the removal of the queue file is durable (an fsync of queue/ on
# the runner's fsync thread), a moment after the reply
check "the state log is gone" wait_for "state log of m6 removed" test ! -e "$T/spool/state/$q6"
check "the queue is empty after delete" queue_empty

# ==== 4. kill -9 in the middle of deliveries, start again: nothing delivered twice ====
# slow's back end answers DATA only after 20 s; alice's is quick.
runner_stop
sed -i 's/^user slow d2$/user slow slowbe/; s/^backend down .*/&\nbackend slowbe lmtp='$SINK:$SLOW' tls=off/' "$T/map"
"$BIN/mailplex-map" compile "$T/map" "$T/map.db" >"$T/map.out" 2>&1 || die "map compile: $(cat "$T/map.out")"
sink_start slowsink $SINK:$SLOW -L -w 20
wait_port $SINK $SLOW || die "smtp-sink (slow) did not start"
runner_start "$T/q.conf"
for i in 1 2 3 4 5; do
	message "k$i"
	inject "$T/q.conf" sam@mail.test alice@mail.test bob@mail.test slow@mail.test >/dev/null ||
		die "inject failed"
done
# alice and bob final everywhere (their results are in the state logs), slow still pending
wait_for "alice and bob delivered" sh -c "test \$($CTL queue list | grep -c 'to=<alice@mail.test> delivered') = 5 && test \$($CTL queue list | grep -c 'to=<bob@mail.test> delivered') = 5" ||
	die "alice and bob were not delivered before the kill"
# five transactions wait for slow's back end, which holds each DATA: never more than
# backend_concurrency (2) connections to it
# (1 for a moment if a delivery timeout just closed one)
nslow=$(ss -Htn state established "( dport = :$SLOW )" dst $SINK | wc -l)
check "at most backend_concurrency connections to one back end ($nslow of 5 wanted)" \
	test "$nslow" -ge 1 -a "$nslow" -le 2
# (RSET first only if the last transaction may be open; after a delivered one, MAIL)
check "an idle connection was reused for the next message" \
	grep -Eq "backend d1 .*: idle -> (rset|mail)" "$T/runner.log"
kill -9 "$RUNNER"
wait "$RUNNER" 2>/dev/null
RUNNER=""
kill "$SINKPID_slowsink" 2>/dev/null
wait "$SINKPID_slowsink" 2>/dev/null
sink_start slowsink2 $SINK:$SLOW -L
wait_port $SINK $SLOW || die "smtp-sink (slow, again) did not start"
runner_start "$T/q.conf"
$CTL queue flush >/dev/null
check "the rest delivered after the restart" wait_for "the rest" queue_empty
for i in 1 2 3 4 5; do
	check "k$i: alice once" test "$(count_in "$T/d1/home/alice" "k$i")" = 1
	check "k$i: bob once" test "$(count_in "$T/d2/home/bob" "k$i")" = 1
	check "k$i: slow once after the restart" \
		test "$(grep -l "Subject: k$i" "$T"/slowsink2/* 2>/dev/null | wc -l)" = 1
done
runner_stop

# ==== 4b. the map version in force waits for a delivery routed by an older map ====
# slow's back end holds DATA for 60 s; delivery_timeout is 60 s: the attempt stays in flight
# until the sink is killed, whatever the machine's load.
conf_write "$T/f.conf" "$T/spool-f" "1d" ""
sed -i 's/delivery_timeout = "4s"/delivery_timeout = "60s"/' "$T/f.conf"
CTL="$BIN/mailplexctl -f $T/f.conf"
kill "$SINKPID_slowsink2" 2>/dev/null
wait "$SINKPID_slowsink2" 2>/dev/null
sink_start slowsink3 $SINK:$SLOW -L -w 60
wait_port $SINK $SLOW || die "smtp-sink (slow, 60 s) did not start"
V1=$(map_ver)
runner_start "$T/f.conf"
message f1
inject "$T/f.conf" sam@mail.test slow@mail.test >/dev/null || die "inject failed"
check "queue status: slow's recipient in flight" \
	wait_for "f1 in flight" status_is recipients_in_flight 1
printf '# touched\n' >>"$T/map"
"$BIN/mailplex-map" compile "$T/map" "$T/map.db" >"$T/map.out" 2>&1 || die "map compile"
V2=$(map_ver)
check "queue status: the runner opened the new map ($V2)" \
	wait_for "map $V2 open" status_is map_version "$V2"
check "queue status: map_version_in_force stays $V1 while a delivery routed by it runs" \
	status_is map_version_in_force "$V1"
kill "$SINKPID_slowsink3" 2>/dev/null
wait "$SINKPID_slowsink3" 2>/dev/null
check "queue status: once that delivery ended, $V2 is in force" \
	wait_for "map $V2 in force" status_is map_version_in_force "$V2"
runner_stop

# ==== 5. queue lifetime exceeded: bounce; none for the null sender; foreign sender dropped ====
conf_write "$T/e.conf" "$T/spool-e" "2s" ""
CTL="$BIN/mailplexctl -f $T/e.conf"
runner_start "$T/e.conf"
message e1
inject "$T/e.conf" sam@mail.test dave@mail.test >/dev/null || die "inject failed"
message e2
inject "$T/e.conf" "<>" dave@mail.test >/dev/null || die "inject failed"
message e3
inject "$T/e.conf" stranger@example.org erin@mail.test >/dev/null || die "inject failed"
# without backend_ca_file, d2's self-signed certificate does not verify: deferred
message e4
inject "$T/e.conf" sam@mail.test bob@mail.test >/dev/null || die "inject failed"
check "queue lifetime exceeded: a 5.4.7 bounce reached sam" wait_for "the expiry bounce" sh -c "grep -l '^Subject: e1' $T/d1/home/sam/Maildir/new/* | xargs grep -l 'Status: 5.4.7'"
wait_for "every message done" queue_empty || fail=1
check "an unverifiable back-end certificate defers, never delivers" \
	grep -q "to=<bob@mail.test> backend=d2.* result=deferred .*certificate verify failed" "$T/runner.log"
check "e4 did not reach bob" test "$(count_in "$T/d2/home/bob" e4)" = 0
check "a null-sender message that expired is dropped" \
	grep -q "from=<> to=<dave@mail.test> backend=none result=dropped .*5.4.7" "$T/runner.log"
check "no bounce for the null sender" test "$(count_in "$T/d1/home/sam" e2)" = 0
check "a bounce to a foreign sender without bounce_relay is dropped and logged" \
	grep -q "bounce to a foreign domain dropped" "$T/runner.log"
runner_stop

# ==== 6. end to end: swaks -> mailplex-smtpd (receiver, spool, its queue runner) ->
# Dovecot LMTP -> read back over IMAP ====
ctl_dir
cat >"$T/mx.conf" <<CONF
user = "nobody";
map = { db = "$T/map.db"; };
smtpd = {
	listen = [ "$MX:$SMTPD" ];
	hostname = "mx.mail.test";
	workers = 1;
	spool = "$T/spool-mx";
	control = "$T/ctl/smtpd.sock";
	queue_control = "$T/ctl/queue.sock";
	queue_min_backoff = "1s";
	queue_max_backoff = "2s";
	delivery_timeout = "4s";
	backend_ca_file = "$T/cert.pem";
};
CONF
"$BIN/mailplex-smtpd" -d -f "$T/mx.conf" >"$T/mx.log" 2>&1 &
MXPID=$!
PIDS="$PIDS $MXPID"
wait_port $MX $SMTPD || die "mailplex-smtpd did not start: $(tail -20 "$T/mx.log")"
CTL="$BIN/mailplexctl -f $T/mx.conf"
check "swaks: a message to alice (d1) and bob (d2) accepted by mailplex-smtpd" \
	swaks --silent 2 --server $MX --port $SMTPD --from sam@mail.test \
	--to alice@mail.test,bob@mail.test --header "Subject: e2e" --body "BODYSECRET e2e"
check "the queue runner under mailplex-smtpd delivered it" wait_for "e2e delivered" queue_empty
check "mailplex-smtpd's queue status: the map's version is in force" \
	status_is map_version_in_force "$(map_ver)"
check "alice and bob read it over IMAP, once each" python3 - $BE1 $IMAP1 $BE2 $IMAP2 <<'PY'
import imaplib, sys
def count(host, port, user):
    m = imaplib.IMAP4(host, int(port), timeout=10)
    m.login(user, 'x')
    m.select('INBOX', readonly=True)
    typ, data = m.search(None, 'SUBJECT', '"e2e"')
    n = len(data[0].split())
    typ, msg = m.fetch(data[0].split()[0], '(BODY.PEEK[TEXT])') if n else (None, [])
    m.logout()
    return n, msg
na, ma = count(sys.argv[1], sys.argv[2], 'alice')
nb, mb = count(sys.argv[3], sys.argv[4], 'bob')
ok = na == 1 and nb == 1 and b'BODYSECRET e2e' in ma[0][1]
print('alice', na, 'bob', nb)
sys.exit(0 if ok else 1)
PY
kill "$MXPID" 2>/dev/null
wait "$MXPID" 2>/dev/null
cat "$T/mx.log" >>"$T/runner.log"

check "no sanitizer report" sh -c "! grep -q 'ERROR: AddressSanitizer\|runtime error:' '$T/runner.log'"
check "no message body in the log" sh -c "! grep -q BODYSECRET '$T/runner.log'"
[ $fail -eq 0 ] || tail -60 "$T/runner.log" >&2
exit $fail
