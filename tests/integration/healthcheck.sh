#!/bin/sh
# mailplex-check against real peers on 127.0.0.61: a private Dovecot (imap, imaps, pop3,
# pop3s, STARTTLS/STLS) and a private Postfix smtpd (STARTTLS and smtps) with a self-signed
# certificate made here, plus a scripted python3 peer for garbage, 554, PREAUTH and
# silence. Checks exit codes and the one output line. $1: the bin dir.
set -u
BIN=$1/mailplex-check
ADDR=127.0.0.61
BASE=$((21000 + ($$ % 400) * 10))
SMTP=$((BASE + 0)) SMTPS=$((BASE + 1)) IMAP=$((BASE + 2)) IMAPS=$((BASE + 3))
POP3=$((BASE + 4)) POP3S=$((BASE + 5)) FAKE=$((BASE + 6)) CLOSED=$((BASE + 9))
T=$(mktemp -d /tmp/mailplex-hc.XXXXXX)
chmod 755 "$T"
PIDS=""
failed=0

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	[ -f "$T/postfix/etc/main.cf" ] && postfix -c "$T/postfix/etc" stop >/dev/null 2>&1
	[ -f "$T/dovecot/run/master.pid" ] && kill "$(cat "$T/dovecot/run/master.pid")" 2>/dev/null
	sleep 0.3
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

die() {
	echo "healthcheck.sh: $*" >&2
	exit 1
}

# expect RC REGEX ARGS...: runs the check, compares the exit code and the single line.
expect() {
	want_rc=$1 want_re=$2
	shift 2
	out=$("$BIN" "$@" 2>"$T/stderr")
	rc=$?
	lines=$(printf '%s\n' "$out" | wc -l)
	if [ "$rc" -ne "$want_rc" ] || ! printf '%s\n' "$out" | grep -Eq -- "$want_re" ||
		[ "$lines" -ne 1 ] || [ -s "$T/stderr" ]; then
		echo "FAIL: mailplex-check $*" >&2
		echo "  want rc $want_rc and /$want_re/, got rc $rc, $lines line(s): $out" >&2
		[ -s "$T/stderr" ] && sed 's/^/  stderr: /' "$T/stderr" >&2
		failed=$((failed + 1))
	else
		echo "ok: $* -> $out"
	fi
}

wait_port() { # wait_port PORT: bounded, 10 s
	i=0
	while [ $i -lt 50 ]; do
		"$BIN" tcp "$ADDR:$1" --timeout 1 >/dev/null 2>&1 && return 0
		sleep 0.2
		i=$((i + 1))
	done
	return 1
}

[ -x "$BIN" ] || die "no $BIN"
for tool in openssl python3 dovecot postfix; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool missing (make deps)"
done

# ---- a self-signed certificate for mail.test and 127.0.0.61 (365 days) ----
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=mail.test" \
	-addext "subjectAltName=DNS:mail.test,IP:$ADDR" \
	-keyout "$T/key.pem" -out "$T/cert.pem" >/dev/null 2>&1 || die "openssl req failed"
chmod 644 "$T/key.pem" "$T/cert.pem"

# ---- Dovecot: imap, imaps, pop3, pop3s on $ADDR ----
D=$T/dovecot
mkdir -p "$D/run" "$D/state"
: >"$D/users"
cat >"$D/dovecot.conf" <<CONF
instance_name = mailplex-hc-$$
base_dir = $D/run
state_dir = $D/state
protocols = imap pop3
listen = $ADDR
ssl = yes
ssl_cert = <$T/cert.pem
ssl_key = <$T/key.pem
log_path = $D/dovecot.log
mail_location = maildir:/nonexistent
passdb {
  driver = passwd-file
  args = $D/users
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service imap-login {
  inet_listener imap {
    port = $IMAP
  }
  inet_listener imaps {
    port = $IMAPS
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $POP3
  }
  inet_listener pop3s {
    port = $POP3S
    ssl = yes
  }
}
CONF
dovecot -F -c "$D/dovecot.conf" >"$D/stdout" 2>&1 &
PIDS="$PIDS $!"

# ---- Postfix smtpd: STARTTLS on $SMTP, implicit TLS on $SMTPS ----
P=$T/postfix
mkdir -p "$P/etc" "$P/spool" "$P/data"
chown postfix:postfix "$P/data"
cat >"$P/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $P/spool
data_directory = $P/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.mail.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
# the services bind $ADDR in master.cf; this must name a configured address
inet_interfaces = loopback-only
inet_protocols = ipv4
smtpd_banner = \$myhostname ESMTP mailplex-test
smtpd_peername_lookup = no
smtpd_tls_cert_file = $T/cert.pem
smtpd_tls_key_file = $T/key.pem
smtpd_tls_security_level = may
maillog_file_prefixes = $T
maillog_file = $P/postfix.log
CONF
cat >"$P/etc/master.cf" <<CONF
$ADDR:$SMTP inet n - n - - smtpd
$ADDR:$SMTPS inet n - n - - smtpd -o smtpd_tls_wrappermode=yes
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
postfix -c "$P/etc" check >"$P/start.log" 2>&1 || true
postfix -c "$P/etc" start >>"$P/start.log" 2>&1 || { cat "$P/start.log" >&2; die "postfix start failed"; }

# ---- scripted peer: mode per connection order, one mode per port offset ----
cat >"$T/peer.py" <<'PY'
import socket, sys, threading, time
addr, port = sys.argv[1], int(sys.argv[2])
modes = {
    0: b"554 5.3.2 service closed\r\n",
    1: b"HELLO this is not smtp\r\n",
    2: b"* PREAUTH logged in already\r\n",
    3: None,  # silent
    4: b"220-first\r\n221-changed code\r\n220 end\r\n",
}
# STARTTLS-broken SMTP servers: each talks until the STARTTLS step, then fails its way.
def smtp_talk(c, ehlo, after_starttls):
    f = c.makefile("rb")
    c.sendall(b"220 broken.test ESMTP\r\n")
    for _ in range(4):
        cmd = f.readline().upper()
        if cmd.startswith(b"EHLO"):
            c.sendall(ehlo)
        elif cmd.startswith(b"STARTTLS"):
            c.sendall(after_starttls)
            time.sleep(2)
            break
        elif cmd.startswith(b"QUIT"):
            c.sendall(b"221 bye\r\n")
            break
        else:
            break
    c.close()
smtp_modes = {
    5: (b"250-broken.test\r\n250 STARTTLS\r\n", b"220 go ahead\r\nthis is not TLS\r\n"),
    6: (b"250-broken.test\r\n250 8BITMIME\r\n", b""),
    7: (b"250-broken.test\r\n250 STARTTLS\r\n", b"454 4.7.0 TLS not available\r\n"),
}
def serve_smtp(p, ehlo, after):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, p))
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=smtp_talk, args=(c, ehlo, after), daemon=True).start()
def serve(p, greeting):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, p))
    s.listen(16)
    while True:
        c, _ = s.accept()
        if greeting is not None:
            c.sendall(greeting)
            time.sleep(0.1)
            c.close()
        else:
            threading.Timer(30, c.close).start()
for off, g in modes.items():
    threading.Thread(target=serve, args=(port + off * 100, g), daemon=True).start()
for off, (e, a) in smtp_modes.items():
    threading.Thread(target=serve_smtp, args=(port + off * 100, e, a), daemon=True).start()
while True:
    time.sleep(1)
PY
python3 "$T/peer.py" "$ADDR" "$FAKE" &
PIDS="$PIDS $!"
F554=$FAKE FGARBAGE=$((FAKE + 100)) FPREAUTH=$((FAKE + 200)) FSILENT=$((FAKE + 300))
FMIXED=$((FAKE + 400))
FTLSJUNK=$((FAKE + 500)) FNOTLS=$((FAKE + 600)) F454=$((FAKE + 700))

for p in $IMAP $IMAPS $POP3 $POP3S $SMTP $SMTPS $F554 $FGARBAGE $FPREAUTH $FSILENT $FMIXED \
	$FTLSJUNK $FNOTLS $F454; do
	wait_port "$p" || {
		cat "$D/stdout" "$D/dovecot.log" "$P/start.log" "$P/postfix.log" 2>/dev/null >&2
		die "nothing listening on $ADDR:$p"
	}
done

A=$ADDR
# ---- passing checks, with and without STARTTLS / implicit TLS ----
expect 0 "^TCP OK - $A:$IMAP connected, [0-9]+ ms$" tcp "$A:$IMAP"
expect 0 "^SMTP OK - $A:$SMTP 220 mx.mail.test ESMTP mailplex-test, [0-9]+ ms$" smtp "$A:$SMTP"
expect 0 "^SMTP OK - $A:$SMTP 220 mx.mail.test ESMTP mailplex-test, STARTTLS ok, [0-9]+ ms$" \
	smtp "$A:$SMTP" --starttls --helo check.mail.test
expect 0 "^SMTPS OK - $A:$SMTPS 220 mx.mail.test .*, TLS ok, [0-9]+ ms$" smtps "$A:$SMTPS"
expect 0 "^IMAP OK - $A:$IMAP \* OK .*, [0-9]+ ms$" imap "$A:$IMAP"
expect 0 "^IMAP OK - $A:$IMAP \* OK .*, STARTTLS ok, [0-9]+ ms$" imap "$A:$IMAP" --starttls
expect 0 "^IMAPS OK - $A:$IMAPS \* OK .*, TLS ok, [0-9]+ ms$" imaps "$A:$IMAPS"
expect 0 "^POP3 OK - $A:$POP3 \+OK .*, [0-9]+ ms$" pop3 "$A:$POP3"
expect 0 "^POP3 OK - $A:$POP3 \+OK .*, STLS ok, [0-9]+ ms$" pop3 "$A:$POP3" -S
expect 0 "^POP3S OK - $A:$POP3S \+OK .*, TLS ok, [0-9]+ ms$" pops "$A:$POP3S"
expect 0 "^POP3S OK - " pop3s "$A:$POP3S" --timeout 5

# ---- certificates: expiry warning, verification against the system store and a CA file ----
expect 1 "^IMAPS WARNING - $A:$IMAPS certificate expires in 36[45] days, TLS ok, [0-9]+ ms$" \
	imaps "$A:$IMAPS" --cert-days 400
expect 1 "^SMTP WARNING - $A:$SMTP certificate expires in 36[45] days, STARTTLS ok" \
	smtp "$A:$SMTP" --starttls --cert-days 400
expect 0 "certificate valid for 36[45] days" pop3 "$A:$POP3" --starttls --cert-days 30
expect 2 "^IMAPS CRITICAL - $A:$IMAPS tls: certificate verify failed: self-signed certificate, [0-9]+ ms$" \
	imaps "$A:$IMAPS" --verify
expect 2 "^SMTP CRITICAL - $A:$SMTP tls: certificate verify failed: self-signed certificate" \
	smtp "$A:$SMTP" --starttls --verify
expect 0 "^IMAPS OK - .*TLS ok" imaps "$A:$IMAPS" --verify --ca-file "$T/cert.pem"
expect 0 "^SMTP OK - .*STARTTLS ok" smtp "$A:$SMTP" --starttls --verify --ca-file "$T/cert.pem" \
	--servername mail.test
expect 2 "certificate verify failed: [Hh]ostname mismatch" \
	pop3s "$A:$POP3S" --verify --ca-file "$T/cert.pem" --servername other.test

# ---- failing peers ----
expect 2 "^TCP CRITICAL - $A:$CLOSED connect: Connection refused, [0-9]+ ms$" tcp "$A:$CLOSED"
expect 2 "^SMTP CRITICAL - $A:$CLOSED connect: Connection refused" smtp "$A:$CLOSED"
expect 2 "^SMTP CRITICAL - $A:$F554 smtp: expected 220, got 554 5.3.2 service closed, [0-9]+ ms$" \
	smtp "$A:$F554"
expect 2 "^SMTP CRITICAL - $A:$FGARBAGE smtp: malformed reply in banner: HELLO this is not smtp" \
	smtp "$A:$FGARBAGE"
expect 2 "^POP3 CRITICAL - $A:$FGARBAGE pop3: expected \+OK, got HELLO" pop3 "$A:$FGARBAGE"
expect 2 "^IMAP CRITICAL - $A:$FPREAUTH imap: expected \* OK, got \* PREAUTH logged in already" \
	imap "$A:$FPREAUTH"
expect 2 "^SMTP CRITICAL - $A:$FMIXED smtp: reply code changed within a multi-line reply" \
	smtp "$A:$FMIXED"
expect 2 "^SMTP CRITICAL - $A:$FSILENT timeout after 1000 ms in banner, 1[0-9]{3} ms$" \
	smtp "$A:$FSILENT" --timeout 1
expect 2 "^IMAPS CRITICAL - $A:$FSILENT timeout after 500 ms in TLS handshake" \
	imaps "$A:$FSILENT" --timeout 500ms
expect 2 "^SMTP CRITICAL - $A:$IMAP smtp: malformed reply in banner: \* OK" smtp "$A:$IMAP"
# STARTTLS-broken servers: plaintext after "220 go ahead", STARTTLS not offered, 454.
expect 2 "^SMTP CRITICAL - $A:$FTLSJUNK " smtp "$A:$FTLSJUNK" --starttls
expect 2 "^SMTP CRITICAL - $A:$FNOTLS .*STARTTLS" smtp "$A:$FNOTLS" --starttls
expect 2 "^SMTP CRITICAL - $A:$F454 .*454" smtp "$A:$F454" --starttls
# The same servers pass a plain check: only their STARTTLS is broken.
expect 0 "^SMTP OK - $A:$FNOTLS 220 broken.test ESMTP" smtp "$A:$FNOTLS"
expect 2 "^IMAPS CRITICAL - $A:$IMAP tls: " imaps "$A:$IMAP"

# ---- bad usage is UNKNOWN (3), still one line ----
expect 3 "^CHECK UNKNOWN - unknown check type 'ftp'" ftp "$A:$SMTP"
expect 3 "^CHECK UNKNOWN - need TYPE and HOST:PORT" smtp
expect 3 "^CHECK UNKNOWN - smtps has no STARTTLS" smtps "$A:$SMTPS" --starttls
expect 3 "^CHECK UNKNOWN - bad --timeout 'soon'" smtp "$A:$SMTP" --timeout soon
expect 3 "^CHECK UNKNOWN - TLS options need a TLS check" imap "$A:$IMAP" --verify
expect 3 "^CHECK UNKNOWN - unknown or incomplete option '--bogus'" smtp "$A:$SMTP" --bogus
expect 3 "^CHECK UNKNOWN - " smtp "$A:70000"

if [ "$failed" -ne 0 ]; then
	echo "healthcheck.sh: $failed check(s) failed" >&2
	exit 1
fi
echo "healthcheck.sh: all passed"
