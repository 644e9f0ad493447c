#!/bin/sh
# mailplex-smtpd's receiving side and spool on 127.0.0.80, driven by swaks and python3's
# smtplib/raw sockets (tests/integration/smtpd_client.py): acceptance and the queue file's
# envelope, PIPELINING, SIZE, relay refusals, map states, fail-closed without a map, bare
# LF/CR, STARTTLS injection, BDAT, SMTPUTF8, recipient and per-address caps, kill -9 of a
# worker, a full disk (small tmpfs), SIGHUP reload, mailplexctl smtp status.
# $1: the bin dir. Exit 0 when every check passed.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
IP=127.0.0.80
BASE=$((26000 + ($$ % 400) * 10))
P1=$((BASE + 0)) P2=$((BASE + 1)) P3=$((BASE + 2)) P4=$((BASE + 3))
VB=127.0.0.85 PGOOD=$((BASE + 4)) PBAD=$((BASE + 5)) PDEAD=$((BASE + 6))
PIDFILES=""
SMALL=""
DIE_LOGS="*.log:20"
. "$HERE/lib.sh"
lib_init smtpd.sh smtpd

stop() { # stop PIDFILE: SIGTERM, up to 10 s, then SIGKILL for the master and its children
	p=$(cat "$1" 2>/dev/null) || return 0
	kill "$p" 2>/dev/null || return 0
	for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done
	for c in $(pgrep -P "$p"); do kill -9 "$c" 2>/dev/null; done
	kill -9 "$p" 2>/dev/null
}

on_cleanup() { # the daemons, then the small tmpfs; the sinks are in $PIDS
	for f in $PIDFILES; do stop "$f"; done
	[ -n "$SMALL" ] && umount "$SMALL" 2>/dev/null
}

client() { timeout 60 python3 "$HERE/smtpd_client.py" "$@" || die "check $1 failed"; }

# start NAME PORT SPOOL MAPDB: a mailplex-smtpd in the foreground, pid in $T/NAME.pid
start() {
	cat >"$T/$1.conf" <<CONF
user = "nobody";
map = { db = "$4"; reload_check = "100ms"; };
smtpd = {
	listen = [ "$IP:$2", "[::1]:$2" ];
	hostname = "mx.test";
	workers = ${WORKERS:-2};
	spool = "$3";
	control = "$T/ctl/$1.sock";
	queue_control = "$T/ctl/$1-queue.sock";
	tls_cert = "$T/cert.pem";
	tls_key = "$T/key.pem";
	max_message_size = "64k";
	max_recipients = 5;
	max_connections_per_ip = ${PERIP:-20};
	error_delay = "${ERROR_DELAY:-0s}";
	max_errors = ${MAX_ERRORS:-50};
	queue_min_backoff = "1h";
	${EXTRA:-}
};
CONF
	"$BIN/mailplex-smtpd" -d -f "$T/$1.conf" >>"$T/$1.log" 2>&1 &
	echo $! >"$T/$1.pid"
	PIDFILES="$PIDFILES $T/$1.pid"
	wait_port "$IP" "$2" || die "mailplex-smtpd $1 did not start"
}

need_tools openssl python3 swaks
need_bins mailplex-smtpd

make_cert mx.test "DNS:mx.test,IP:$IP"
ctl_dir

# Back ends that do not exist: nothing is delivered while the receivers are tested.
cat >"$T/map" <<MAP
backend d1 lmtp=127.0.0.81:24 imap=127.0.0.81:143 pop3=127.0.0.81:110 tls=off
backend d2 smtp=127.0.0.82:25 imap=127.0.0.82:143 pop3=127.0.0.82:110 tls=off
domain mail.test
user alice d1
user bob d2
user carol migrating d1 -> d2
user mallory reject "This mailbox was closed"
alias team: alice, bob
rule /^r[a-z]+\$/ d2
MAP
map_compile "$T/map" "$T/map.db"

# ---- the main instance ----
start main "$P1" "$T/spool" "$T/map.db"
"$BIN/mailplex-smtpd" -n -f "$T/main.conf" >"$T/n.out" 2>&1 || die "-n: $(cat "$T/n.out")"
printf 'smtpd = { max_recipients = 0; };\n' >"$T/bad.conf"
if "$BIN/mailplex-smtpd" -n -f "$T/bad.conf" >"$T/n.out" 2>&1; then
	die "-n accepted a bad configuration"
fi
grep -q "$T/bad.conf:1:" "$T/n.out" || die "-n: no file:line: $(cat "$T/n.out")"
echo "ok: -n accepts the test configuration and refuses a bad one with file:line"
S=$T/spool
swaks --server "$IP:$P1" --from x@example.org --to alice@mail.test --pipeline \
	--h-Subject "swaks" >"$T/swaks.out" 2>&1 || die "swaks: $(tail -5 "$T/swaks.out")"
grep -q "250 2.0.0 Ok: queued as" "$T/swaks.out" || die "swaks: no queue id"
echo "ok: swaks --pipeline delivered into the spool"
client accept "$IP" "$P1" "$S"
client ipv6 "::1" "$P1" "$S"
client pipelining "$IP" "$P1" "$S"
client size "$IP" "$P1" "$S" 65536
client refusals "$IP" "$P1" "$S"
client barelf "$IP" "$P1" "$S"
client starttls "$IP" "$P1" "$S" "$T/cert.pem"
client bdat "$IP" "$P1" "$S"
client smtputf8 "$IP" "$P1" "$S"
client parallel "$IP" "$P1" "$S" 16
client rcpts "$IP" "$P1" "$S" 5
grep -q ": accepted client=127.0.0.1 helo=client.example from=<sender@example.org> size=[0-9]* nrcpt=2 to=<alice@mail.test>,<bob@mail.test>" \
	"$T/main.log" || die "no per-message log line"
echo "ok: one log line per accepted message (queue id, client, sender, recipients)"

# ---- mailplexctl smtp status: every worker answers ----
if [ -x "$BIN/mailplexctl" ]; then
	"$BIN/mailplexctl" -f "$T/main.conf" smtp status >"$T/status.out" 2>&1 ||
		die "mailplexctl smtp status: $(cat "$T/status.out")"
	grep -q "^worker 0 pid" "$T/status.out" && grep -q "^worker 1 pid" "$T/status.out" ||
		die "status: $(cat "$T/status.out")"
	echo "ok: mailplexctl smtp status answers for both workers"
fi

# ---- SIGHUP: a bad file is refused with file:line, a good one applies ----
cp "$T/main.conf" "$T/main.conf.good"
printf 'smtpd = { bogus_key = 1; };\n' >>"$T/main.conf"
kill -HUP "$(cat "$T/main.pid")"
for _ in 1 2 3 4 5 6 7 8 9 10; do
	grep -q "reload refused" "$T/main.log" && break
	sleep 0.2
done
grep -q "reload refused, configuration unchanged: $T/main.conf:[0-9]*:" "$T/main.log" ||
	die "bad reload not refused with file:line"
sed 's/hostname = "mx.test"/hostname = "mx2.test"/' "$T/main.conf.good" >"$T/main.conf"
# two workers reload: two log lines
client reload_session "$IP" "$P1" "$S" "$(cat "$T/main.pid")" "$T/main.log" 2
python3 - "$IP" "$P1" <<'PY' || die "reload did not apply the new hostname"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
banner = s.recv(512)
s.close()
sys.exit(0 if banner.startswith(b"220 mx2.test") else 1)
PY
echo "ok: SIGHUP: bad config refused with file:line and the old kept; good config applied"

# ---- kill -9 of a worker right after the 250 ----
before=$(ls "$S/queue" | wc -l)
client send "$IP" "$P1" "$S" "before-kill"
for w in $(pgrep -P "$(cat "$T/main.pid")"); do kill -9 "$w"; done
after=$(ls "$S/queue" | wc -l)
[ "$after" -eq $((before + 1)) ] || die "message lost on kill -9 ($before -> $after)"
# a message cut off mid-DATA by kill -9 stays in tmp/ until the next start
python3 - "$IP" "$P1" "$(cat "$T/main.pid")" <<'PY' || die "mid-DATA kill failed"
import os, signal, socket, subprocess, sys, time
for _ in range(50):  # the workers were just restarted
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
        break
    except OSError:
        time.sleep(0.2)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO k\r\n")
for _ in range(20):
    if f.readline().startswith(b"250 "):
        break
s.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@mail.test>\r\nDATA\r\n")
for _ in range(3):
    f.readline()
s.sendall(b"Subject: half\r\n\r\nhalf a message\r\n")
time.sleep(0.3)
for pid in subprocess.check_output(["pgrep", "-P", sys.argv[3]]).split():
    os.kill(int(pid), signal.SIGKILL)
s.close()
PY
# the master removes the dead worker's tmp/ file at once (bounded wait: 10 s)
for _ in $(seq 50); do
	grep -q "removed 1 incomplete message(s) of worker" "$T/main.log" && break
	sleep 0.2
done
grep -q "removed 1 incomplete message(s) of worker" "$T/main.log" ||
	die "the killed worker's tmp/ file was not removed"
[ "$(ls "$S/tmp" | wc -l)" -eq 0 ] || die "tmp/ not empty after the worker's death"
[ "$(ls "$S/queue" | wc -l)" -eq "$after" ] || die "a half message reached queue/"
for f in "$S"/queue/*; do
	python3 -c "
import sys; sys.path.insert(0, '$HERE')
import smtpd_client
env, body = smtpd_client.decode_envelope('$f')
sys.exit(0 if env['rcpt'] and body.startswith(b'Received:') else 1)" || die "$f incomplete"
done
# a power cut mid-message leaves a tmp/ file behind: the next start removes it
stop "$T/main.pid"
printf 'MAILPLEX-SPOOL 1\nQ4:AB12,\n' >"$S/tmp/0000000000000AAAAAA0001"
start main "$P1" "$T/spool" "$T/map.db"
[ "$(ls "$S/tmp" | wc -l)" -eq 0 ] || die "tmp/ leftover not removed at restart"
grep -q "removed 1 incomplete message(s) from tmp/" "$T/main.log" || die "no recovery log line"
echo "ok: kill -9 after the 250 keeps the message whole in queue/; a worker killed mid-message leaves nothing in queue/ and the master removes its tmp/ file; a leftover from a power cut is removed at start"

# ---- the map cannot be read: recipients get 4xx, never an accept-all ----
# one worker: the connection caps are per worker process
PERIP=3 EXTRA='greeting_timeout = "1s";' ERROR_DELAY=100ms MAX_ERRORS=3 WORKERS=1 start nomap "$P2" "$T/spool-nomap" "$T/no-such-map.db"
client nomap "$IP" "$P2" "$T/spool-nomap"
client perip "$IP" "$P2" "$T/spool-nomap" 3
client idle "$IP" "$P2" "$T/spool-nomap"
client errors "$IP" "$P2" "$T/spool-nomap" 3

# ---- a full disk: a 1 MiB tmpfs for the spool ----
SMALL=$T/small
mkdir "$SMALL"
if mount -t tmpfs -o size=1m tmpfs "$SMALL" 2>/dev/null; then
	start disk "$P3" "$SMALL/spool" "$T/map.db"
	sed -i 's/max_message_size = "64k"/max_message_size = "8M"/' "$T/disk.conf"
	kill -HUP "$(cat "$T/disk.pid")"
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ "$(grep -c "configuration reloaded" "$T/disk.log")" -ge 2 ] && break
		sleep 0.2
	done
	[ "$(grep -c "configuration reloaded" "$T/disk.log")" -ge 2 ] || die "disk: no reload"
	# one message acknowledged before the disk fills: it must survive
	client send "$IP" "$P3" "$SMALL/spool" "before-full"
	client disk "$IP" "$P3" "$SMALL/spool" 452
	[ "$(ls "$SMALL/spool/queue" | wc -l)" -eq 1 ] || die "full disk: queue/ should hold only the earlier message"
	grep -q "before-full" "$SMALL/spool/queue/"* || die "full disk: the earlier message is gone"
	[ "$(ls "$SMALL/spool/tmp" | wc -l)" -eq 0 ] || die "full disk: tmp/ not cleaned"
	echo "ok: full disk: 452 4.3.1, the message acknowledged before is kept, no half message in queue/, tmp/ cleaned"
else
	echo "SKIP: full disk (cannot mount a tmpfs here)"
fi

# ---- RCPT-time verification against real back ends (Postfix's smtp-sink) ----
if command -v smtp-sink >/dev/null 2>&1; then
	SINK_BACKLOG=10
	sink_start sinkdump "$VB:$PGOOD"
	GOOD=$SINKPID_sinkdump
	sink_start -n sinkbad "$VB:$PBAD" -L -f RCPT -B "550 5.1.1 no such user here"
	BAD=$SINKPID_sinkbad
	cat >"$T/vmap" <<MAP
backend good smtp=$VB:$PGOOD imap=$VB:143 pop3=$VB:110 tls=off
backend bad  lmtp=$VB:$PBAD imap=$VB:143 pop3=$VB:110 tls=off
backend dead smtp=$VB:$PDEAD imap=$VB:143 pop3=$VB:110 tls=off
domain mail.test
user alice good
user ghost bad
user dave dead
alias team: alice, ghost
MAP
	map_compile "$T/vmap" "$T/vmap.db"
	wait_port "$VB" "$PGOOD" && wait_port "$VB" "$PBAD" || die "smtp-sink did not start"
	EXTRA='verify_recipients = true; verify_timeout = "2s";' WORKERS=1 \
		start verify "$P4" "$T/spool-verify" "$T/vmap.db"
	# end to end: received, spooled, delivered by the queue runner the master forked
	client send "$IP" "$P4" "$T/spool-verify" "e2e-marker-$$"
	for _ in $(seq 100); do
		grep -rqs "e2e-marker-$$" "$T/sinkdump" && break
		sleep 0.2
	done
	grep -rqs "e2e-marker-$$" "$T/sinkdump" || die "the queue runner did not deliver the message"
	for _ in $(seq 50); do
		[ "$(ls "$T/spool-verify/queue" | wc -l)" -eq 0 ] && break
		sleep 0.2
	done
	[ "$(ls "$T/spool-verify/queue" | wc -l)" -eq 0 ] || die "delivered message still queued"
	echo "ok: end to end: accepted, spooled and delivered to its back end by the forked queue runner"
	client verify "$IP" "$P4" "$T/spool-verify" "$BAD" "$GOOD"
	grep -q "rcpt=<ghost@mail.test> refused by its back end: 550 5.1.1 no such user here" \
		"$T/verify.log" || die "no log line for the refused recipient"
	grep -q "rcpt=<ghost@mail.test> refused: unknown to bad (cached" "$T/verify.log" ||
		die "the second refusal did not come from the negative cache"
	grep -q "verify alice@mail.test at .*no answer" "$T/verify.log" &&
		die "alice was asked again although her answer was cached"
	grep -q "verify dave@mail.test at .*recipient accepted" "$T/verify.log" ||
		die "no log line for the dead back end"
	echo "ok: verify_recipients: known user 250, unknown 550 5.1.1 in the session, dead back end accepted, alias not asked; answers cached"
else
	echo "SKIP: verify_recipients (no smtp-sink; make deps installs postfix)"
fi

# bodies the checks sent ("line one", "half a message", "hällo") never reach a log
if grep -q "line one\|half a message\|hällo\|smuggle" "$T"/*.log; then
	die "a message body in the log"
fi
echo "ok: no message body in the logs"

if grep -q "ERROR: AddressSanitizer\|runtime error:" "$T"/*.log; then
	die "sanitizer report in the logs"
fi
echo "smtpd.sh: all checks passed"
