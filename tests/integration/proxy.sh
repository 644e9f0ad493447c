#!/bin/sh
# mailplex-proxy against two real Dovecot back ends on 127.0.0.71 (plain) and 127.0.0.72
# (STARTTLS toward the back end), users split by the map, clients written with python3's
# imaplib/poplib and raw sockets (tests/integration/proxy_client.py) and curl. The proxy
# listens on 127.0.0.70; clients that must be told apart in Dovecot's log connect from
# 127.0.0.77. A second proxy without TLS (splice) and a third that sends PROXY v2 headers
# share the map. $1: the bin dir. Exit 0 when every check passed.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
PX=127.0.0.70 BE1=127.0.0.71 BE2=127.0.0.72 DEAD=127.0.0.73 CLIENT=127.0.0.77
BASE=$((22000 + ($$ % 400) * 20))
IMAP=$((BASE + 0)) IMAPS=$((BASE + 1)) POP3=$((BASE + 2)) POP3S=$((BASE + 3))
BIMAP=$((BASE + 4)) BPOP3=$((BASE + 5)) DEADPORT=$((BASE + 9))
HIMAP=$((BASE + 10)) HPOP3=$((BASE + 11)) # d1's listeners that expect a PROXY v2 header
VIMAP=$((BASE + 12)) VPOP3=$((BASE + 13)) # the proxy that sends one
LIMAP=$((BASE + 14)) LPOP3=$((BASE + 15)) # d1 on 127.0.0.1: a back end named "localhost"
DIE_LOGS="proxy.log:30"
. "$HERE/lib.sh"
lib_init proxy.sh proxy

need_tools openssl python3 dovecot curl
need_bins mailplex-proxy mailplex-map

# ---- certificates: one self-signed for the proxy (127.0.0.70) and back end 2 ----
make_cert mail.test "DNS:mail.test,IP:$PX,IP:$BE2"

# ---- two Dovecot back ends; each user's INBOX says which back end holds it ----
dovecot_start() { # NAME ADDR EXTRA-CONFIG
	dovecot_dir "$1"
	for u in alice bob carol big frank erin; do
		dovecot_user "$u" "pw-$u"
		printf 'From: t@test\r\nSubject: %s on %s\r\n\r\nhello %s\r\n' "$u" "$1" "$u" \
			>"$D/home/$u/Maildir/new/1000.M1P1.test"
		cp "$D/home/$u/Maildir/new/1000.M1P1.test" "$T/$u-on-$1.eml"
	done
	# A 1 MiB message for the byte-identity check.
	python3 -c "
import random, sys
random.seed(4)
body = ''.join(random.choice('abcdefghijklmnopqrstuvwxyz0123456789') for _ in range(1 << 20))
lines = [body[i:i + 76] for i in range(0, len(body), 76)]
sys.stdout.write('From: t@test\r\nSubject: big\r\n\r\n' + '\r\n'.join(lines) + '\r\n')
" >"$D/home/big/Maildir/new/2000.M2P2.test"
	dovecot_conf "$1" "$2" protocols="imap pop3" ssl=yes userdb=static username_format= extra="protocol imap {
  mail_max_userip_connections = 2000
}
# Several sessions per imap process (every user has the same uid): 1,000 concurrent
# sessions are then 20-odd processes, not 1,000, on a shared two-core machine.
default_client_limit = 4000
service imap {
  service_count = 0
  client_limit = 50
  process_limit = 100
}
protocol pop3 {
  mail_max_userip_connections = 2000
}
$3"
	dovecot_run "$1"
}
# d1 trusts the proxy's ID/XCLIENT (login_trusted_networks) and has a second pair of
# listeners that expect a PROXY v2 header; d2 trusts nothing (ID and XCLIENT are ignored).
dovecot_start d1 $BE1 "login_trusted_networks = 127.0.0.0/8
haproxy_trusted_networks = 127.0.0.0/8
service imap-login {
  # TLS sessions keep their login process as the TLS end (d2 behind STARTTLS):
  # one process for many clients, not one per session.
  service_count = 0
  client_limit = 1000
  process_min_avail = 1
  inet_listener imap {
    port = $BIMAP
  }
  inet_listener imap_haproxy {
    port = $HIMAP
    haproxy = yes
  }
  inet_listener imap_localhost {
    address = 127.0.0.1
    port = $LIMAP
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $BPOP3
  }
  inet_listener pop3_haproxy {
    port = $HPOP3
    haproxy = yes
  }
  inet_listener pop3_localhost {
    address = 127.0.0.1
    port = $LPOP3
  }
  inet_listener pop3s {
    port = 0
  }
}"
dovecot_start d2 $BE2 "service imap-login {
  # TLS sessions keep their login process as the TLS end (d2 behind STARTTLS):
  # one process for many clients, not one per session.
  service_count = 0
  client_limit = 1000
  process_min_avail = 1
  inet_listener imap {
    port = $BIMAP
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $BPOP3
  }
  inet_listener pop3s {
    port = 0
  }
}"
wait_port $BE1 $BIMAP || die "dovecot d1 did not start: $(cat "$T/d1/stdout")"
wait_port $BE2 $BIMAP || die "dovecot d2 did not start: $(cat "$T/d2/stdout")"

# ---- the map: alice and big on d1, bob on d2 (STARTTLS), carol migrating, dave dead ----
cat >"$T/map" <<MAP
backend d1   lmtp=$BE1:24 imap=$BE1:$BIMAP pop3=$BE1:$BPOP3 tls=off
backend d2   lmtp=$BE2:24 imap=$BE2:$BIMAP pop3=$BE2:$BPOP3 tls=on
backend dead lmtp=$DEAD:24 imap=$DEAD:$DEADPORT pop3=$DEAD:$DEADPORT tls=off
backend d1h  lmtp=$BE1:24 imap=$BE1:$HIMAP pop3=$BE1:$HPOP3 tls=off
backend d1n  lmtp=localhost:24 imap=localhost:$LIMAP pop3=localhost:$LPOP3 tls=off
backend nx   lmtp=nx.mailplex.invalid:24 imap=nx.mailplex.invalid:143 pop3=nx.mailplex.invalid:110 tls=off
domain mail.test
user alice d1
user big d1
user bob d2
user carol migrating d1 -> d2
user dave dead
user frank d1h
user erin d1n
user gina nx
user mallory reject "closed"
MAP
map_compile "$T/map" "$T/map.db"

# ---- the proxy: plain-text logins refused; STARTTLS, imaps, pop3s offered ----
# Its workers create their control sockets after dropping to "nobody".
ctl_dir
cat >"$T/mailplex.conf" <<CONF
user = "nobody";
map = { db = "$T/map.db"; };
proxy = {
	imap = [ "$PX:$IMAP" ];
	imaps = [ "$PX:$IMAPS" ];
	pop3 = [ "$PX:$POP3" ];
	pop3s = [ "$PX:$POP3S" ];
	workers = 2;
	tls_cert = "$T/cert.pem";
	tls_key = "$T/key.pem";
	control = "$T/ctl/proxy.sock";
	prelogin_timeout = "2s";
	login_failure_delay = "100ms";
	login_failures_max = 3;
	line_max = "1k";
	max_connections_per_ip = 2000;
	backend_connect_timeout = "2s";
	backend_down = "1s";
	backend_ca_file = "$T/cert.pem";
	backend_client_address = "id";
};
CONF
# Under ASan, freed memory waits in a quarantine (256 MB by default) and would count as
# the sessions' own; a small one keeps use-after-free detection for recent frees and
# fills up during the earlier checks, so the per-session figure below is what is held.
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4 \
	"$BIN/mailplex-proxy" -d -f "$T/mailplex.conf" >"$T/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS="$PIDS $!"
wait_port $PX $IMAP || die "mailplex-proxy did not start"
wait_port $PX $POP3S || die "mailplex-proxy did not start (pop3s)"

# Memory per idle session (proxy_client.py t_many_sessions). Measured on 1,000 sessions
# (half with TLS on both sides): 25 kB plain build, 40 kB under ASan. Holding OpenSSL's
# two record buffers per TLS session while idle measured 42 and 78 kB: each bound sits
# between what an idle session needs and what it costs once it keeps buffers.
if ldd "$BIN/mailplex-proxy" 2>/dev/null | grep -q libasan; then
	: "${SESSION_KB_MAX:=56}"
else
	: "${SESSION_KB_MAX:=34}"
fi
export SESSION_KB_MAX
cp "$T/d1/home/big/Maildir/new/2000.M2P2.test" "$T/big.eml"
[ -x "$BIN/mailplexctl" ] || die "no $BIN/mailplexctl"
MAILPLEXCTL=$BIN/mailplexctl PROXY_CTL=$T/ctl/proxy.sock PROXY_PID=$PROXY_PID \
	MAP_TOOL=$BIN/mailplex-map MAP_SRC=$T/map MAP_DB=$T/map.db \
	timeout 400 python3 "$HERE/proxy_client.py" tls "$PX" "$IMAP" "$IMAPS" "$POP3" "$POP3S" \
	"$T/cert.pem" "$T/big.eml" "${PROXY_SESSIONS:-1000}"
rc=$?

fail() {
	echo "FAIL: $*" >&2
	rc=1
}

# curl_has NAME WANT CURL-ARGS...: curl's output (a message) must contain WANT.
curl_has() {
	name=$1 want=$2
	shift 2
	out=$(curl -sS --max-time 10 --cacert "$T/cert.pem" "$@" 2>&1)
	case "$out" in
	*"$want"*) echo "ok: $name" ;;
	*) fail "$name: curl said: $(printf '%s' "$out" | head -5)" ;;
	esac
}

# dovecot_saw NAME DOVECOT PROTO USER: its login line names the client's address as rip.
dovecot_saw() {
	if grep -q "$3-login: .*Login: user=<$4>.* rip=$CLIENT," "$T/$2/dovecot.log"; then
		echo "ok: $1"
	else
		fail "$1: no '$3-login ... user=<$4> ... rip=$CLIENT' in $2's log"
		grep "Login: user=<$4>" "$T/$2/dovecot.log" | tail -3 >&2
	fi
}

# curl_is NAME FILE CURL-ARGS...: curl's output must be FILE's bytes exactly.
curl_is() {
	name=$1 want=$2
	shift 2
	if ! curl -sS --max-time 10 --cacert "$T/cert.pem" -o "$T/curl.out" "$@" 2>"$T/curl.err"; then
		fail "$name: curl failed: $(head -3 "$T/curl.err")"
	elif cmp -s "$T/curl.out" "$want"; then
		echo "ok: $name"
	else
		fail "$name: got $(head -c 200 "$T/curl.out" | od -c | head -5)"
	fi
}

# ---- curl: implicit TLS and STARTTLS; each message must be the one on the right back end ----
curl_is "curl imaps:// (bob, d2 behind STARTTLS)" "$T/bob-on-d2.eml" \
	--user bob:pw-bob "imaps://$PX:$IMAPS/INBOX;UID=1"
curl_is "curl imap:// --ssl-reqd (STARTTLS; alice on d1)" "$T/alice-on-d1.eml" \
	--ssl-reqd --user alice:pw-alice "imap://$PX:$IMAP/INBOX;UID=1"
curl_is "curl pop3s:// RETR 1 (bob, d2)" "$T/bob-on-d2.eml" \
	--user bob:pw-bob "pop3s://$PX:$POP3S/1"
curl_is "curl pop3:// --ssl-reqd (STLS; alice on d1)" "$T/alice-on-d1.eml" \
	--ssl-reqd --user alice:pw-alice "pop3://$PX:$POP3/1"
out=$(curl -sS --max-time 10 --user alice:pw-alice "imap://$PX:$IMAP/INBOX;UID=1" 2>&1)
case "$out" in
*"Subject: alice"*) fail "curl imap:// without TLS logged in through a TLS-only proxy" ;;
*) echo "ok: curl imap:// without TLS: no login (LOGINDISABLED)" ;;
esac

# ---- back ends by host name (resolved off the loop): localhost works ----
curl_has "imaps: back end named localhost (getaddrinfo_a)" "Subject: erin on d1" \
	--user erin:pw-erin "imaps://$PX:$IMAPS/INBOX;UID=1"
curl_has "pop3s: back end named localhost" "Subject: erin on d1" \
	--user erin:pw-erin "pop3s://$PX:$POP3S/1"

# ---- the client's address reaches the back end: IMAP ID and POP3 XCLIENT ----
curl_has "imaps from $CLIENT through the proxy (ID to d1)" "Subject: alice on d1" \
	--interface $CLIENT --user alice:pw-alice "imaps://$PX:$IMAPS/INBOX;UID=1"
dovecot_saw "d1 saw the IMAP client's address (ID x-originating-ip)" d1 imap alice
curl_has "pop3s from $CLIENT through the proxy (XCLIENT to d1)" "Subject: alice on d1" \
	--interface $CLIENT --user alice:pw-alice "pop3s://$PX:$POP3S/1"
dovecot_saw "d1 saw the POP3 client's address (XCLIENT ADDR)" d1 pop3 alice

# ---- a second proxy without TLS that allows plain-text logins: splice() on both sides ----
PIMAP=$((BASE + 6)) PPOP3=$((BASE + 7))
sed -e '/^\t\(imaps\|pop3s\|tls_cert\|tls_key\|control\) =/d' \
	-e "s/^\timap = .*/\timap = [ \"$PX:$PIMAP\" ]; allow_plaintext_login = true;/" \
	-e "s/^\tpop3 = .*/\tpop3 = [ \"$PX:$PPOP3\" ];/" \
	-e 's/^\tworkers = .*/\tworkers = 1;/' \
	-e 's/^\tmax_connections_per_ip = .*/\tmax_connections_per_ip = 3;/' \
	-e 's/^\tbackend_client_address = .*/\tbackend_client_address = "none";/' \
	"$T/mailplex.conf" >"$T/plain.conf"
"$BIN/mailplex-proxy" -d -f "$T/plain.conf" >"$T/proxy-plain.log" 2>&1 &
PIDS="$PIDS $!"
wait_port $PX $PIMAP || die "plain mailplex-proxy did not start: $(cat "$T/proxy-plain.log")"
timeout 120 python3 "$HERE/proxy_client.py" plain "$PX" "$PIMAP" 0 "$PPOP3" 0 \
	"$T/cert.pem" "$T/big.eml" || rc=1
# curl 7.88 always picks AUTHENTICATE PLAIN (SASL-IR) here; imaplib covers LOGIN.
curl_is "curl imap:// plain (alice on d1)" "$T/alice-on-d1.eml" \
	--user alice:pw-alice "imap://$PX:$PIMAP/INBOX;UID=1"
curl_is "curl imap:// plain (bob on d2)" "$T/bob-on-d2.eml" \
	--user bob:pw-bob "imap://$PX:$PIMAP/INBOX;UID=1"
curl_is "curl pop3:// plain RETR 1 (bob on d2)" "$T/bob-on-d2.eml" \
	--user bob:pw-bob "pop3://$PX:$PPOP3/1"
# With "none" the back end sees the proxy, not the client (the checks above can fail).
curl_has "imap from $CLIENT through a proxy that passes no address" "Subject: big on d1" \
	--interface $CLIENT --user big:pw-big "imap://$PX:$PIMAP/INBOX;UID=1"
if grep "imap-login: .*Login: user=<big>" "$T/d1/dovecot.log" | grep -q "rip=$CLIENT,"; then
	fail "backend_client_address = none: d1 saw the client's address anyway"
else
	echo "ok: backend_client_address = none: d1 sees the proxy's address"
fi
cat "$T/proxy-plain.log" >>"$T/proxy.log"

# ---- a third proxy that sends a PROXY v2 header first (frank's back end expects one) ----
sed -e "s/^\timap = .*/\timap = [ \"$PX:$VIMAP\" ]; allow_plaintext_login = true;/" \
	-e "s/^\tpop3 = .*/\tpop3 = [ \"$PX:$VPOP3\" ];/" \
	-e 's/^\tbackend_client_address = .*/\tbackend_client_address = "proxy-v2";/' \
	"$T/plain.conf" >"$T/v2.conf"
"$BIN/mailplex-proxy" -d -f "$T/v2.conf" >"$T/proxy-v2.log" 2>&1 &
PIDS="$PIDS $!"
wait_port $PX $VIMAP || die "proxy-v2 mailplex-proxy did not start: $(cat "$T/proxy-v2.log")"
curl_has "imap from $CLIENT through a PROXY v2 proxy" "Subject: frank on d1" \
	--interface $CLIENT --user frank:pw-frank "imap://$PX:$VIMAP/INBOX;UID=1"
dovecot_saw "d1 saw the IMAP client's address (PROXY v2)" d1 imap frank
curl_has "pop3 from $CLIENT through a PROXY v2 proxy" "Subject: frank on d1" \
	--interface $CLIENT --user frank:pw-frank "pop3://$PX:$VPOP3/1"
dovecot_saw "d1 saw the POP3 client's address (PROXY v2)" d1 pop3 frank
cat "$T/proxy-v2.log" >>"$T/proxy.log"
if grep -q "ERROR: AddressSanitizer\|runtime error:" "$T/proxy.log"; then
	echo "FAIL: sanitizer report in the proxy's log" >&2
	rc=1
fi
# The second login for a user of the dead back end is refused without a connect attempt.
if ! grep -q "user=dave backend=.* result=backend-down" "$T/proxy.log"; then
	echo "FAIL: no login refused as backend-down after the back end was marked down" >&2
	rc=1
fi
# A name that cannot resolve (.invalid, never looked up) fails the login for a while.
if ! grep -q "user=gina backend=nx@nx.mailplex.invalid:143 result=backend-unresolvable" \
	"$T/proxy.log"; then
	echo "FAIL: no login refused as backend-unresolvable for an .invalid back end" >&2
	rc=1
fi
# A kick logs one line per session it closes.
if ! grep -q "kicked by control: client=.* user=bob backend=d2" "$T/proxy.log" ||
	! grep -q "user=bob backend=d2 state=pipe reason=kicked" "$T/proxy.log"; then
	echo "FAIL: no log line for the kicked session" >&2
	rc=1
fi
# The map sweep logs one line per session it closes, with the reason.
if ! grep -q "closed by the map sweep: client=.* user=alice backend=d1: user is being migrated" \
	"$T/proxy.log"; then
	echo "FAIL: no log line for the session the map sweep closed" >&2
	rc=1
fi
if grep -q "closed by the map sweep: .* user=bob " "$T/proxy.log"; then
	echo "FAIL: the map sweep closed a session the map did not move" >&2
	rc=1
fi
if grep -q "pw-" "$T/proxy.log"; then
	echo "FAIL: a password reached the log" >&2
	rc=1
fi
[ $rc -eq 0 ] || tail -40 "$T/proxy.log" >&2
exit $rc
