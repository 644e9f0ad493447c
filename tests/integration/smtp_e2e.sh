#!/bin/sh
# The whole mailplex-smtpd (master, receiver, queue runner) end to end with real peers:
# swaks and python3's smtplib/raw sockets as clients; Dovecot LMTP (d1: 127.0.0.87, d2: .88,
# read back over IMAP) and Postfix's smtp-sink (.89: one that accepts, one that refuses
# RCPT with 550) as back ends. Proves: one message to both kinds of back end; a 5xx from
# either back end bounces into the sender's Dovecot mailbox; a back end that is down
# holds the mail, and a kill -9 of every mailplex-smtpd process after the 250 loses
# nothing and delivers exactly once after the restart; a kill -9 of every process during
# DATA gives no 250, delivers nothing and leaves nothing behind; smuggling payloads are
# refused and nothing of them is delivered; over-long command lines get 500 5.5.2 and the
# session goes on; an over-long line inside DATA is accepted and delivered intact;
# pipelined commands. $1: the bin dir. Exit 0 when every check passed.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
BE1=127.0.0.87 BE2=127.0.0.88 SINK=127.0.0.89 MX=127.0.0.86
BASE=$((28000 + ($$ % 300) * 10))
LMTP1=$((BASE + 0)) IMAP1=$((BASE + 1)) LMTP2=$((BASE + 2)) IMAP2=$((BASE + 3))
SMTPOK=$((BASE + 4)) SMTPNO=$((BASE + 5)) SMTPD=$((BASE + 6))
MXPID=""
DIE_LOGS="mx.log:30"
. "$HERE/lib.sh"
lib_init smtp_e2e.sh e2e

stop_mx() { # SIGTERM to the master, bounded (10 s), then SIGKILL to it and its children
	[ -n "$MXPID" ] || return 0
	kids=$(pgrep -P "$MXPID")
	kill "$MXPID" 2>/dev/null
	for _ in $(seq 50); do kill -0 "$MXPID" 2>/dev/null || break; sleep 0.2; done
	for p in $kids $MXPID; do kill -9 "$p" 2>/dev/null; done
	wait "$MXPID" 2>/dev/null
	MXPID=""
}
on_cleanup() { stop_mx; }

need_tools python3 dovecot smtp-sink swaks
need_bins mailplex-smtpd mailplex-map mailplexctl

dovecot_start() { # NAME ADDR LMTP-PORT IMAP-PORT USERS...
	name=$1 addr=$2 port=$3 iport=$4
	shift 4
	dovecot_dir "$name"
	for u in "$@"; do dovecot_user "$u" x; done
	dovecot_conf "$name" "$addr" lmtp="$port" imap="$iport"
	dovecot_run "$name" "$addr" "$port"
}

# imap_count HOST PORT USER SUBJECT: how many messages with that subject (over IMAP)
imap_count() {
	python3 - "$@" <<'PY'
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=10)
m.login(sys.argv[3], "x")
m.select("INBOX", readonly=True)
typ, data = m.search(None, "SUBJECT", '"%s"' % sys.argv[4])
print(len(data[0].split()))
m.logout()
PY
}
# imap_grep HOST PORT USER SUBJECT TEXT: a message with that subject holds TEXT (\r \n escapes)
imap_grep() {
	python3 - "$@" <<'PY'
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=10)
m.login(sys.argv[3], "x")
m.select("INBOX", readonly=True)
typ, data = m.search(None, "SUBJECT", '"%s"' % sys.argv[4])
found = False
for n in data[0].split():
    typ, msg = m.fetch(n, "(BODY.PEEK[])")
    if sys.argv[5].encode().decode("unicode_escape").encode("latin-1") in msg[0][1]:
        found = True
m.logout()
sys.exit(0 if found else 1)
PY
}
is_n() { # is_n N COMMAND...: the command prints N
	want=$1
	shift
	[ "$("$@" 2>/dev/null)" = "$want" ]
}

dovecot_start d1 $BE1 $LMTP1 $IMAP1 alice sam
SINK_BACKLOG=20
sink_start sink $SINK:$SMTPOK
sink_start -n sinkno $SINK:$SMTPNO -f RCPT -B "550 5.1.1 no such user here"
wait_port $SINK $SMTPOK && wait_port $SINK $SMTPNO || die "smtp-sink did not start"

cat >"$T/map" <<MAP
backend d1 lmtp=$BE1:$LMTP1 tls=off
backend d2 lmtp=$BE2:$LMTP2 tls=off
backend s1 smtp=$SINK:$SMTPOK tls=off
backend s2 smtp=$SINK:$SMTPNO tls=off
domain mail.test
user alice d1
user sam d1
user ghost d1
user bob d2
user carol s1
user nemo s2
MAP
map_compile "$T/map" "$T/map.db"
ctl_dir
cat >"$T/mx.conf" <<CONF
user = "nobody";
map = { db = "$T/map.db"; reload_check = "100ms"; };
smtpd = {
	listen = [ "$MX:$SMTPD" ];
	hostname = "mx.mail.test";
	workers = 1;
	spool = "$T/spool";
	control = "$T/ctl/smtpd.sock";
	queue_control = "$T/ctl/queue.sock";
	queue_min_backoff = "1s";
	queue_max_backoff = "1s";
	delivery_timeout = "4s";
};
CONF
CTL="$BIN/mailplexctl -f $T/mx.conf"
start_mx() {
	"$BIN/mailplex-smtpd" -d -f "$T/mx.conf" >>"$T/mx.log" 2>&1 &
	MXPID=$!
	wait_port $MX $SMTPD || die "mailplex-smtpd did not start"
	wait_for "the queue runner's control socket" $CTL queue list || die "no queue runner"
}
kill9_mx() { # every process of mailplex-smtpd at once: the master and its children
	kids=$(pgrep -P "$MXPID")
	kill -9 "$MXPID" $kids 2>/dev/null
	wait "$MXPID" 2>/dev/null
	for _ in $(seq 50); do
		alive=0
		for p in $kids; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	MXPID=""
}
queue_n() { ls "$T/spool/queue" | wc -l; }
queue_empty() { $CTL queue list | grep -q "^0 message(s) shown, 0 in the queue"; }
sink_count() { grep -l "Subject: $1" "$T"/sink/* 2>/dev/null | wc -l; }
swaks_send() { # FROM TO SUBJECT [more swaks options]
	f=$1 t=$2 subj=$3
	shift 3
	swaks --server $MX --port $SMTPD --from "$f" --to "$t" --header "Subject: $subj" \
		--body "BODYSECRET $subj" "$@" >"$T/swaks.out" 2>&1 &&
		grep -q "<- *250 2.0.0 Ok: queued as" "$T/swaks.out"
}
start_mx

# ==== one message, recipients on a Dovecot LMTP and an SMTP (smtp-sink) back end ====
check "swaks: one message to alice (Dovecot LMTP) and carol (smtp-sink SMTP), 250 after DATA" \
	swaks_send sam@mail.test alice@mail.test,carol@mail.test both
check "delivered: the queue is empty" wait_for "both delivered" queue_empty
check "alice reads it over IMAP, once" is_n 1 imap_count $BE1 $IMAP1 alice both
check "carol's copy reached the SMTP back end, once" test "$(sink_count both)" = 1
check "smtplib: a message to sam accepted" python3 - $MX $SMTPD <<'PY'
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
refused = s.sendmail("x@example.org", ["sam@mail.test"],
                     b"From: x@example.org\r\nSubject: viasmtplib\r\n\r\nBODYSECRET\r\n.dot line\r\n")
s.quit()
sys.exit(1 if refused else 0)
PY
check "sam reads it over IMAP, dot-unstuffed" wait_for "sam's message" imap_grep $BE1 $IMAP1 sam viasmtplib '\r\n.dot line\r\n'

# ==== pipelined commands: MAIL, two RCPTs, DATA and the body in one write ====
check "pipelined transaction (one write) answered in order and delivered" python3 - $MX $SMTPD <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO pipe.example\r\n")
while not f.readline().startswith(b"250 "):
    pass
s.sendall(b"MAIL FROM:<x@example.org>\r\nRCPT TO:<alice@mail.test>\r\nRCPT TO:<carol@mail.test>\r\n"
          b"DATA\r\nSubject: piped\r\n\r\nBODYSECRET\r\n.\r\nQUIT\r\n")
codes = [f.readline()[:3] for _ in range(6)]
sys.exit(0 if codes == [b"250", b"250", b"250", b"354", b"250", b"221"] else 1)
PY
check "alice got the pipelined message once" wait_for "piped at alice" is_n 1 imap_count $BE1 $IMAP1 alice piped
check "carol got the pipelined message once" wait_for "piped at carol" test "$(sink_count piped)" = 1

# ==== a 5xx from the back end: the bounce reaches the sender's Dovecot mailbox ====
check "swaks: a message from sam to ghost (unknown to Dovecot d1) accepted" \
	swaks_send sam@mail.test ghost@mail.test toghost
check "Dovecot's 550 5.1.1 bounced into sam's mailbox (read over IMAP)" wait_for "the bounce to sam" \
	imap_grep $BE1 $IMAP1 sam "" "Final-Recipient: rfc822; ghost@mail.test"
check "the bounce quotes the subject" imap_grep $BE1 $IMAP1 sam "" "Subject: toghost"
check "the bounce names Dovecot's status" imap_grep $BE1 $IMAP1 sam "" "Status: 5.1.1"
check "swaks: a message from sam to nemo (the SMTP back end refuses RCPT with 550) accepted" \
	swaks_send sam@mail.test nemo@mail.test tonemo
check "the SMTP back end's 550 bounced into sam's mailbox" wait_for "the bounce for nemo" \
	imap_grep $BE1 $IMAP1 sam "" "Final-Recipient: rfc822; nemo@mail.test"
check "the queue is empty after the bounces" wait_for "bounces done" queue_empty

# ==== smuggling payloads: refused, nothing of them delivered ====
check "smuggling payloads (LF.CRLF, CRLF.LF, CR.CR) refused, no smuggled command answered" \
	python3 - $MX $SMTPD <<'PY'
import socket, sys
for payload in (b"Subject: smug1\r\n\r\nx\n.\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@mail.test>\r\nDATA\r\nSubject: smuggled1\r\n\r\nx\r\n.\r\n",
                b"Subject: smug2\r\n\r\nx\r\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@mail.test>\r\nDATA\r\nSubject: smuggled2\r\n\r\nx\r\n.\r\n",
                b"Subject: smug3\r\n\r\nx\r.\rMAIL FROM:<evil@example.org>\r\nRCPT TO:<alice@mail.test>\r\nDATA\r\nSubject: smuggled3\r\n\r\nx\r\n.\r\n"):
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10)
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO smug.example\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    s.sendall(b"MAIL FROM:<x@example.org>\r\nRCPT TO:<alice@mail.test>\r\nDATA\r\n")
    codes = [f.readline()[:3] for _ in range(3)]
    if codes != [b"250", b"250", b"354"]:
        sys.exit("setup %r" % codes)
    s.sendall(payload)
    # the end of it all: a proper end of data, then QUIT
    s.sendall(b"\r\n.\r\nQUIT\r\n")
    s.settimeout(10)
    rest = b""
    while True:
        try:
            d = s.recv(4096)
        except socket.timeout:
            break
        if not d:
            break
        rest += d
    lines = rest.split(b"\r\n")
    if not lines[0].startswith(b"554 5.6.0") or b"250 2.0.0" in rest:
        sys.exit("payload %r: %r" % (payload[:20], rest))
    s.close()
PY
sleep 1 # nothing is queued by then if the smuggling failed; a queued one would be delivered at once
check "nothing of the smuggling payloads reached alice" sh -c \
	"[ \$(grep -l 'smug' $T/d1/home/alice/Maildir/new/* 2>/dev/null | wc -l) = 0 ]"
check "nothing of the smuggling payloads is queued" queue_empty

# ==== over-long lines ====
check "over-long command lines: 500 5.5.2 Line too long (RFC 5321 4.5.3.1.4), a 600-octet path 553 5.1.3 (4.5.3.1.3); the session goes on" \
	python3 - $MX $SMTPD <<'PY'
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO long.example\r\n")
while not f.readline().startswith(b"250 "):
    pass
s.sendall(b"MAIL FROM:<" + b"a" * 600 + b"@example.org>\r\n")
r1 = f.readline()
s.sendall(b"NOOP " + b"x" * 20000 + b"\r\n")
r2 = f.readline()
s.sendall(b"MAIL FROM:<x@example.org> " + b"X" * 3000 + b"\r\n")
r2b = f.readline()
s.sendall(b"NOOP\r\n")
r3 = f.readline()
s.sendall(b"MAIL FROM:<x@example.org>\r\n")
r4 = f.readline()
s.sendall(b"QUIT\r\n")
f.readline()
print(r1, r2, r2b, r3, r4)
ok = r1.startswith(b"553 5.1.3") and r2.startswith(b"500 5.5.2") and r2b.startswith(b"500 5.5.2") \
    and r3.startswith(b"250") \
    and r4.startswith(b"250")
sys.exit(0 if ok else 1)
PY
LONG=$(python3 -c 'print("L" * 5000)')
check "an over-long line (5000 octets) inside DATA is accepted" python3 - $MX $SMTPD "$LONG" <<'PY'
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
refused = s.sendmail("x@example.org", ["alice@mail.test"],
                     ("Subject: longline\r\n\r\n%s\r\nend\r\n" % sys.argv[3]).encode())
s.quit()
sys.exit(1 if refused else 0)
PY
check "... and delivered to alice with the line intact" wait_for "longline at alice" \
	imap_grep $BE1 $IMAP1 alice longline "\\r\\n$LONG\\r\\nend\\r\\n"

# ==== a back end that is down; kill -9 of every process after the 250; exactly once ====
check "swaks: a message to bob (back end d2 down) accepted" swaks_send sam@mail.test bob@mail.test held1
check "swaks: a second message to bob accepted" swaks_send sam@mail.test bob@mail.test held2
check "both are deferred while d2 is down" wait_for "deferrals" sh -c \
	"[ \$(grep 'bob@mail.test' '$T/mx.log' | grep -c deferred) -ge 2 ]"
check "the queue files are in queue/" test "$(queue_n)" = 2
kill9_mx
check "after kill -9 of the master and its children both queue files are still there" \
	test "$(queue_n)" = 2
dovecot_start d2 $BE2 $LMTP2 $IMAP2 bob
start_mx
check "after the restart, with d2 up, both are delivered" wait_for "held delivered" queue_empty
sleep 1 # a duplicate, if any, would be delivered at once
check "bob has held1 exactly once (over IMAP)" is_n 1 imap_count $BE2 $IMAP2 bob held1
check "bob has held2 exactly once (over IMAP)" is_n 1 imap_count $BE2 $IMAP2 bob held2

# ==== kill -9 of every process during DATA: no 250, nothing delivered, nothing left ====
check "kill -9 of every mailplex-smtpd process mid-DATA: no 250 reaches the client" \
	python3 - $MX $SMTPD "$MXPID" <<'PY'
import os, signal, socket, subprocess, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10)
f = s.makefile("rb")
f.readline()
s.sendall(b"EHLO k\r\n")
while not f.readline().startswith(b"250 "):
    pass
s.sendall(b"MAIL FROM:<sam@mail.test>\r\nRCPT TO:<alice@mail.test>\r\nDATA\r\n")
codes = [f.readline()[:3] for _ in range(3)]
if codes != [b"250", b"250", b"354"]:
    sys.exit("setup %r" % codes)
s.sendall(b"Subject: halfway\r\n\r\nBODYSECRET half a message\r\n" + b"h" * 70000 + b"\r\n")
time.sleep(0.5)
master = int(sys.argv[3])
kids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True).stdout.split()
# Stopped first: the master's death sends the workers SIGTERM (PR_SET_PDEATHSIG), and a
# worker that ran its shutdown before its own SIGKILL would clean up what a crash leaves.
for p in [master] + [int(k) for k in kids]:
    os.kill(p, signal.SIGSTOP)
for p in [master] + [int(k) for k in kids]:
    os.kill(p, signal.SIGKILL)
try:
    s.sendall(b".\r\n")
    rest = s.recv(4096)
except OSError:
    rest = b""
sys.exit(1 if rest.startswith(b"250") else 0)
PY
wait "$MXPID" 2>/dev/null
MXPID=""
sleep 0.3
check "the cut-off message is not in queue/" test "$(queue_n)" = 0
start_mx
check "the restart removed the partial file from tmp/" test "$(ls "$T/spool/tmp" | wc -l)" = 0
check "the restart logged the removal" grep -q "removed 1 incomplete message(s) from tmp/" "$T/mx.log"
check "nothing is queued after the restart" queue_empty
sleep 1
check "nothing of the cut-off message reached alice" is_n 0 imap_count $BE1 $IMAP1 alice halfway

stop_mx
check "no sanitizer report" sh -c "! grep -q 'ERROR: AddressSanitizer\|runtime error:' '$T/mx.log'"
check "no message body in the log" sh -c "! grep -q BODYSECRET '$T/mx.log'"
[ $fail -eq 0 ] || tail -40 "$T/mx.log" >&2
exit $fail
