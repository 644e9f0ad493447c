#!/bin/sh
# mailplexctl move in local mode against two real Dovecot back ends (d1 = OLD on
# 127.0.0.161, plain; d2 = NEW on .162, tls=on: the check, the proxy and the queue runner
# reach it with STARTTLS; IMAP + LMTP, a master user, passwd-file users), with
# mailplex-smtpd (receiver + queue runner) and mailplex-proxy on .160 reading a map
# compiled from a source file. carl has mail in INBOX and two other folders on d1 and is
# moved to d2 while a sender keeps mailing him (retrying on 4xx): afterwards every
# message, seeded or acknowledged with 250, is on d2 exactly once (by Message-ID, across
# folders), an IMAP login through the proxy lands on d2, d1 received nothing after the
# switch, `move status` says done. A move whose copy command fails names the step, leaves
# the user on d1 in the source and the compiled map, and his mail still reaches d1. A
# batch moves a user under a rule and one with a user line. $1: the bin dir.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
MX=127.0.0.160 BE1=127.0.0.161 BE2=127.0.0.162
BASE=$((30000 + ($$ % 300) * 10))
LMTP1=$((BASE + 0)) IMAP1=$((BASE + 1)) LMTP2=$((BASE + 2)) IMAP2=$((BASE + 3))
SMTPD=$((BASE + 4)) PIMAP=$((BASE + 5))
MXPID=""
WAIT_FOR_TRIES=300 # wait_for: at most 60 s
DIE_LOGS="mx.log:20 proxy.log:20"
. "$HERE/lib.sh"
lib_init move.sh move

need_tools python3 dovecot doveadm openssl
need_bins mailplex-smtpd mailplex-proxy mailplex-map mailplexctl

make_cert d2.mail.test "IP:$BE2"

# ---- two Dovecots: passwd-file users, a master user "mover" (AUTHENTICATE PLAIN with
# an authorization id, or LOGIN user*mover), LMTP and IMAP ----
USERS="carl dora erin frank gus hal"
dovecot_start() { # NAME ADDR LMTP-PORT IMAP-PORT SSL
	dovecot_dir "$1"
	for u in $USERS; do dovecot_user -n "$u" "pw-$u"; done
	dovecot_conf "$1" "$2" lmtp="$3" imap="$4" ssl="$5" master=mover:master-secret
	dovecot_run "$1" "$2" "$4"
}
dovecot_start d1 $BE1 $LMTP1 $IMAP1 no
dovecot_start d2 $BE2 $LMTP2 $IMAP2 yes
printf 'master-secret\n' >"$T/master.pass"
chmod 600 "$T/master.pass"

# Seeded mail on d1: carl in three folders, erin and frank in INBOX.
python3 - $BE1 $IMAP1 <<'PY' || die "seeding d1 failed"
import imaplib, sys
def seed(user, folders):
    m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=10)
    m.login(user, "pw-" + user)
    for folder, n in folders:
        if folder != "INBOX":
            typ, _ = m.create(folder)
            assert typ == "OK", folder
        for i in range(n):
            msg = "From: seed@test\r\nTo: %s@mail.test\r\nMessage-ID: <seed-%s-%s-%d@test>\r\nSubject: seeded %d\r\n\r\nBODYSECRET seeded\r\n" % (user, user, folder, i, i)
            typ, _ = m.append(folder, None, None, msg.encode())
            assert typ == "OK"
    m.logout()
seed("carl", [("INBOX", 3), ("Work", 2), ("Lists.Dev", 4)])
seed("erin", [("INBOX", 2)])
seed("frank", [("INBOX", 1), ("Archive", 2)])
seed("gus", [("INBOX", 2), ("Sent", 1)])
seed("hal", [("INBOX", 1), ("Drafts", 1)])
PY

# msgids HOST PORT USER: every Message-ID in every folder, one per line (as the master user)
msgids() {
	python3 - "$@" <<'PY'
import imaplib, re, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=10)
m.login(sys.argv[3] + "*mover", "master-secret")
typ, boxes = m.list()
for b in boxes:
    if b is None or b"\\Noselect" in b:
        continue
    name = b.decode().rsplit(' "." ', 1)[1].strip('"')
    typ, _ = m.select('"%s"' % name, readonly=True)
    typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])") if int(_[0]) > 0 else ("OK", [])
    for d in data:
        if isinstance(d, tuple):
            mid = re.search(rb"<[^>]+>", d[1])
            print(mid.group(0).decode() if mid else "?")
m.logout()
PY
}

# ---- the map, compiled; the daemons; the move's configuration ----
cat >"$T/map" <<MAP
# move.sh: d1 is the old back end, d2 the new one
backend d1 lmtp=$BE1:$LMTP1 imap=$BE1:$IMAP1 tls=off
backend d2 lmtp=$BE2:$LMTP2 imap=$BE2:$IMAP2 tls=on
domain mail.test
user carl   d1   # moved while mail arrives
user dora   d1   # the failing move
user frank  d1
user gus    d1   # interrupted, then resumed
user hal    d1   # cluster mode, through a stand-in for the director
# erin has no user line: the rule covers her
rule a-z d1
MAP
cp "$T/map" "$T/map.orig"
map_compile "$T/map" "$T/map.db"
ctl_dir
cat >"$T/mailplex.conf" <<CONF
user = "nobody";
map = { source = "$T/map"; db = "$T/map.db"; reload_check = "100ms"; };
smtpd = {
	listen = [ "$MX:$SMTPD" ];
	hostname = "mx.mail.test";
	workers = 1;
	spool = "$T/spool";
	control = "$T/ctl/smtpd.sock";
	queue_control = "$T/ctl/queue.sock";
	queue_min_backoff = "1s";
	queue_max_backoff = "1s";
	delivery_timeout = "10s";
	backend_ca_file = "$T/cert.pem";
};
proxy = {
	imap = [ "$MX:$PIMAP" ];
	allow_plaintext_login = true;
	workers = 2;
	control = "$T/ctl/proxy.sock";
	backend_client_address = "none";
	backend_ca_file = "$T/cert.pem";
};
move = {
	mode = "local";
	state_dir = "$T/moves";
	master_user = "mover";
	master_password_file = "$T/master.pass";
	barrier_timeout = "60s";
	copy_timeout = "120s";
	imap_timeout = "10s";
};
CONF
"$BIN/mailplex-smtpd" -d -f "$T/mailplex.conf" >"$T/mx.log" 2>&1 &
PIDS="$PIDS $!"
"$BIN/mailplex-proxy" -d -f "$T/mailplex.conf" >"$T/proxy.log" 2>&1 &
PIDS="$PIDS $!"
wait_port $MX $SMTPD || die "mailplex-smtpd did not start"
wait_port $MX $PIMAP || die "mailplex-proxy did not start"
CTL="$BIN/mailplexctl -f $T/mailplex.conf"
wait_for "the queue runner's control socket" $CTL queue status || die "no queue runner"
# The default copy command runs doveadm with NEW's configuration (d2's).
export DOVECOT_CONF="$T/d2/dovecot.conf"

# ---- carl: moved while a sender keeps mailing him ----
# The copy waits until the sender has seen a 4xx (bounded, 30 s): mail provably arrives
# while carl is migrating; then the default copy command (doveadm backup) runs.
cat >"$T/copy.sh" <<'SH'
for _ in $(seq 150); do [ -e "$MOVE_T/deferred-seen" ] && break; sleep 0.2; done
[ -e "$MOVE_T/deferred-seen" ] || { echo "no deferral seen by the sender" >&2; exit 1; }
exec sh -c "$DEFAULT_COPY_COMMAND"
SH
DEFAULT_COPY_COMMAND=$($CTL move config | sed -n 's/^copy_command //p')
[ -n "$DEFAULT_COPY_COMMAND" ] || die "cannot read the default copy_command"
export DEFAULT_COPY_COMMAND MOVE_T="$T"
sed "s|^move = {|move = {\n\tcopy_command = \"sh $T/copy.sh\";|" "$T/mailplex.conf" >"$T/carl.conf"
: >"$T/acked"
python3 "$HERE/move_sender.py" $MX $SMTPD carl@mail.test "$T/acked" "$T/deferred-seen" \
	"$T/stop" >"$T/sender.log" 2>&1 &
SENDER=$!
PIDS="$PIDS $SENDER"
wait_for "the sender's first acknowledged messages" sh -c "[ \$(wc -l <'$T/acked') -ge 3 ]" ||
	die "the sender got no 250: $(tail -5 "$T/sender.log")"
msgids $BE1 $IMAP1 carl | sort >"$T/old-before"
check "mailplexctl move carl --to d2 succeeds" sh -c \
	"$BIN/mailplexctl -f $T/carl.conf move carl --to d2 >'$T/move.out' 2>&1"
cat "$T/move.out"
lmtp_d1_at_switch=$(grep -c "lmtp(carl).*saved mail" "$T/d1/dovecot.log")
msgids $BE1 $IMAP1 carl | sort >"$T/old-at-switch"
check "the move reports every step" sh -c "grep -q 'published as migrating' '$T/move.out' &&
	grep -q 'in force everywhere' '$T/move.out' && grep -q 'copied and checked: 3 folders' '$T/move.out' &&
	grep -q 'done: published on d2' '$T/move.out'"
check "the source says carl d2, comment kept, every other line unchanged" sh -c \
	"grep -q '^user carl d2   # moved while mail arrives\$' '$T/map' &&
	[ \"\$(grep -v '^user carl' '$T/map')\" = \"\$(grep -v '^user carl' '$T/map.orig')\" ]"
check "the compiled map sends carl to d2" sh -c \
	"$BIN/mailplex-map lookup '$T/map.db' carl@mail.test | grep -q 'd2'"
# Mail keeps coming after the switch, then the sender stops.
n_at_switch=$(wc -l <"$T/acked")
wait_for "more mail acknowledged after the switch" sh -c "[ \$(wc -l <'$T/acked') -ge $((n_at_switch + 3)) ]"
touch "$T/stop"
for _ in $(seq 100); do kill -0 $SENDER 2>/dev/null || break; sleep 0.2; done
wait $SENDER
check "the sender saw 4xx while carl was migrating" grep -q "^deferred " "$T/sender.log"
queue_empty() { $CTL queue list | grep -q "^0 message(s) shown, 0 in the queue"; }
check "the queue is empty" wait_for "the queue to empty" queue_empty
sleep 1 # a late or duplicate delivery, if any, would happen at once
msgids $BE2 $IMAP2 carl | sort >"$T/new-after"
{
	for f in INBOX:3 Work:2 Lists.Dev:4; do
		for i in $(seq 0 $((${f#*:} - 1))); do echo "<seed-carl-${f%:*}-$i@test>"; done
	done
	cat "$T/acked"
} | sort >"$T/expected"
check "d2 holds every seeded and every acknowledged message exactly once ($(wc -l <"$T/expected"))" \
	cmp -s "$T/expected" "$T/new-after"
[ $fail -eq 0 ] || diff "$T/expected" "$T/new-after" | head -20 >&2
msgids $BE1 $IMAP1 carl | sort >"$T/old-after"
check "d1 received nothing after the switch (LMTP log and mailbox unchanged)" sh -c \
	"[ \$(grep -c 'lmtp(carl).*saved mail' '$T/d1/dovecot.log') = $lmtp_d1_at_switch ] &&
	cmp -s '$T/old-after' '$T/old-at-switch'"
check "d1 lost nothing it held before the move" sh -c "comm -23 '$T/old-before' '$T/old-at-switch' | wc -l | grep -qx 0"
logins_d2=$(grep -c "imap-login: Info: Login: user=<carl>" "$T/d2/dovecot.log")
check "an IMAP login as carl through the proxy works" python3 - $MX $PIMAP <<'PY'
import imaplib, sys
m = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]), timeout=10)
m.login("carl", "pw-carl")
typ, data = m.select("Work", readonly=True)
m.logout()
sys.exit(0 if typ == "OK" and int(data[0]) == 2 else 1)
PY
check "... and it landed on d2" sh -c \
	"[ \$(grep -c 'imap-login: Info: Login: user=<carl>' '$T/d2/dovecot.log') -gt $logins_d2 ]"
check "move status says done" sh -c "$CTL move status carl | grep -q '^carl@mail.test .* d1 .* d2 .* done .* done '"

# ---- dora: the copy fails; she stays on d1 and her mail still reaches d1 ----
sed "s|^move = {|move = {\n\tcopy_command = \"echo copy broke >\&2; false\";|" "$T/mailplex.conf" >"$T/fail.conf"
cp "$T/map" "$T/map.before-dora"
check "a move whose copy fails exits non-zero" sh -c \
	"! $BIN/mailplexctl -f $T/fail.conf move dora --to d2 >'$T/fail.out' 2>&1"
cat "$T/fail.out"
check "... and names the copy step and its output" grep -q 'failed at step "copy": the copy command exited with status 1; its output ends: copy broke' "$T/fail.out"
check "... and says dora is back on d1" grep -q "dora@mail.test is back on d1" "$T/fail.out"
check "the source is byte for byte what it was" cmp -s "$T/map.before-dora" "$T/map"
check "the compiled map sends dora to d1" sh -c \
	"$BIN/mailplex-map lookup '$T/map.db' dora@mail.test | grep -q 'd1'"
check "move status says failed at copy" sh -c "$CTL move status dora | grep -q 'failed .*copy'"
check "mail to dora is delivered to d1" python3 - $MX $SMTPD <<'PY'
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
refused = s.sendmail("x@example.org", ["dora@mail.test"],
                     b"From: x@example.org\r\nMessage-ID: <after-fail@test>\r\nSubject: after\r\n\r\nBODYSECRET\r\n")
s.quit()
sys.exit(1 if refused else 0)
PY
dora_has_it() { msgids $BE1 $IMAP1 dora | grep -q after-fail; }
check "... and is there" wait_for "dora's message on d1" dora_has_it

# ---- dora again: a copy that copies nothing is caught by the check ----
sed "s|^move = {|move = {\n\tcopy_command = \"true\";|" "$T/mailplex.conf" >"$T/nocopy.conf"
$BIN/mailplexctl -f "$T/nocopy.conf" move dora --to d2 >"$T/nocopy.out" 2>&1
check "a copy that copied nothing fails the check (exit 1)" test $? = 1
cat "$T/nocopy.out"
check "... naming the verify step and the folder" grep -q \
	'failed at step "verify": folder INBOX: 1 messages on d1, 0 on d2; dora@mail.test is back on d1' \
	"$T/nocopy.out"
check "... and the source is byte for byte what it was" cmp -s "$T/map.before-dora" "$T/map"

# ---- a source with an error: refused with file:line, nothing changed ----
printf 'bogus line\n' >>"$T/map"
cp "$T/map" "$T/map.broken"
$CTL move dora --to d2 >"$T/broken.out" 2>&1
check "a move with a broken source is refused (exit 1) with file:line" sh -c \
	"[ $? = 1 ] && grep -q '$T/map:[0-9]*: unknown directive .bogus.' '$T/broken.out'"
check "... and neither the source nor the compiled map changed" sh -c \
	"cmp -s '$T/map' '$T/map.broken' && $BIN/mailplex-map lookup '$T/map.db' dora | grep -q d1"
cp "$T/map.before-dora" "$T/map"

# ---- gus: the move is killed during the copy, then resumed ----
sed "s|^move = {|move = {\n\tcopy_command = \"kill -9 \$PPID\";|" "$T/mailplex.conf" >"$T/kill.conf"
$BIN/mailplexctl -f "$T/kill.conf" move gus --to d2 >"$T/kill.out" 2>&1
check "a move killed during its copy dies (exit 137)" test $? = 137
check "move status shows it running, stopped after queue-drained" sh -c \
	"$CTL move status gus | grep -q '^gus@mail.test .* running .*queue-drained '"
check "the killed copy's password file stayed in the private state directory" \
	test -f "$T/moves/gus@mail.test.copy/master.pass"
check "meanwhile gus's mail is deferred with 4xx" python3 - $MX $SMTPD <<'PY'
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=10)
try:
    s.sendmail("x@example.org", ["gus@mail.test"], b"Subject: x\r\n\r\nx\r\n")
    sys.exit(1)
except smtplib.SMTPRecipientsRefused as e:
    sys.exit(0 if 400 <= e.recipients["gus@mail.test"][0] < 500 else 1)
PY
$CTL move gus --to d1 >"$T/other.out" 2>&1
check "another target while it is unfinished is refused" \
	sh -c "[ $? = 1 ] && grep -q 'a move of gus@mail.test to d2 is unfinished' '$T/other.out'"
check "running it again resumes after queue-drained and finishes" sh -c \
	"$CTL move gus --to d2 >'$T/resume.out' 2>&1 && grep -q 'resuming after step queue-drained' '$T/resume.out' &&
	grep -q 'done: published on d2' '$T/resume.out'"
check "gus's mail is on d2" test "$(msgids $BE2 $IMAP2 gus | wc -l)" = 3
check "the resumed move removed the private directory and the password in it" \
	test ! -e "$T/moves/gus@mail.test.copy"

# ---- a batch: erin (under the rule: a user line is appended) and frank ----
cat >"$T/batch" <<B
# user  new back end
erin    d2
frank   d2   # two folders

B
check "mailplexctl move --batch moves erin and frank" sh -c \
	"$CTL move --batch '$T/batch' >'$T/batch.out' 2>&1"
cat "$T/batch.out"
check "erin got a user line at the end of the source" sh -c "tail -1 '$T/map' | grep -qx 'user erin@mail.test d2'"
check "erin's and frank's mail is on d2" test "$(msgids $BE2 $IMAP2 erin | wc -l) $(msgids $BE2 $IMAP2 frank | wc -l)" = "2 3"
printf '# one word\nerin\n' >"$T/bad"
$CTL move --batch "$T/bad" >"$T/bad.out" 2>&1
check "a batch file with an error is refused with file:line (exit 2)" \
	sh -c "[ $? = 2 ] && grep -q '$T/bad:2: expected USER BACKEND' '$T/bad.out'"

# The shipped example shows every move key at its compiled-in default.
printf 'user = "nobody";\n' >"$T/empty.conf"
check "conf/mailplex.conf's move section shows the defaults (copy_command included)" sh -c \
	"$BIN/mailplexctl -f '$HERE/../../conf/mailplex.conf' move config >'$T/c1' &&
	$BIN/mailplexctl -f '$T/empty.conf' move config >'$T/c2' && cmp -s '$T/c1' '$T/c2'"

# ---- hal, in cluster mode: the director (a stand-in) publishes, its relays are waited for ----
"$HERE/move_director.py" "$T/ctl/director.sock" "$BIN/mailplex-map" "$T/map" "$T/map.db" \
	"$T/lag" "$T/director-stop" >"$T/director.log" 2>&1 &
DIRECTOR=$!
PIDS="$PIDS $DIRECTOR"
wait_for "the director stand-in's socket" test -S "$T/ctl/director.sock" || die "no director stand-in"
sed -e 's|mode = "local";|mode = "cluster";|' -e 's|barrier_timeout = "60s";|barrier_timeout = "3s";|' \
	-e "s|^move = {|director = { control = \"$T/ctl/director.sock\"; };\nmove = {|" \
	"$T/mailplex.conf" >"$T/cluster.conf"
echo 0 >"$T/lag"
cp "$T/map" "$T/map.before-hal"
$BIN/mailplexctl -f "$T/cluster.conf" move hal --to d2 >"$T/cluster1.out" 2>&1
check "cluster: a relay that never takes the migrating map fails the move (exit 1)" test $? = 1
cat "$T/cluster1.out"
check "... at the barrier, naming the relay (a static one is not waited for)" grep -q \
	'failed at step "close sessions": map version [0-9]* not in force after 3 s: relay r1 (state admitted, map in force 0); hal@mail.test is back on d1' \
	"$T/cluster1.out"
check "... and hal's line is back, byte for byte" cmp -s "$T/map.before-hal" "$T/map"
rm -f "$T/lag"
check "cluster: once the relays follow, the move succeeds" sh -c \
	"$BIN/mailplexctl -f '$T/cluster.conf' move hal --to d2 >'$T/cluster2.out' 2>&1 &&
	grep -q 'done: published on d2' '$T/cluster2.out'"
cat "$T/cluster2.out"
check "hal's mail is on d2 and the map says so" sh -c \
	"[ \$(grep -c '^user hal d2 ' '$T/map') = 1 ] && $BIN/mailplex-map lookup '$T/map.db' hal | grep -q d2"
check "hal's two messages are on d2" test "$(msgids $BE2 $IMAP2 hal | wc -l)" = 2
touch "$T/director-stop"

for f in mx.log proxy.log; do
	check "no sanitizer report in $f" sh -c "! grep -q 'ERROR: AddressSanitizer\|runtime error:' '$T/$f'"
done
check "no password in the move's output or the daemons' logs" sh -c \
	"! grep -q 'master-secret' '$T/move.out' '$T/fail.out' '$T/batch.out' '$T/resume.out' '$T/mx.log' '$T/proxy.log'"
check "no sanitizer report from mailplexctl" sh -c \
	"! grep -q 'ERROR: AddressSanitizer\|runtime error:' '$T/move.out' '$T/fail.out' '$T/batch.out' '$T/resume.out' '$T/kill.out' '$T/cluster1.out' '$T/cluster2.out' '$T/nocopy.out'"
[ $fail -eq 0 ] || { tail -20 "$T/mx.log" >&2; tail -20 "$T/sender.log" >&2; }
exit $fail
