#!/bin/sh
# mailplex-proxy's SIGHUP reload against two real Dovecot back ends on 127.0.0.81 and
# 127.0.0.82, the proxy on 127.0.0.80: sessions logged in before a reload keep working,
# listeners come and go, a broken config or certificate is refused, a new certificate and
# a recompiled map reach new logins, retired workers leave after their last session. The
# steps are in tests/integration/proxy_reload.py. $1: the bin dir. Exit 0 when all passed.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
PX=127.0.0.80 BE1=127.0.0.81 BE2=127.0.0.82
BASE=$((27000 + ($$ % 400) * 10))
IMAP=$((BASE + 0)) IMAPS=$((BASE + 1)) POP3=$((BASE + 2)) GONE=$((BASE + 3)) NEW=$((BASE + 4))
BIMAP=$((BASE + 5)) BPOP3=$((BASE + 6))
DIE_LOGS="proxy.log:30"
. "$HERE/lib.sh"
lib_init proxy_reload.sh reload

# The proxy's processes (master, workers of every generation, orphans of a crashed master):
# every one has this test's config path on its command line.
proxy_pids() {
	for d in /proc/[0-9]*; do
		tr '\0' ' ' 2>/dev/null <"$d/cmdline" | grep -q "mailplex-proxy -d -f $T/" &&
			echo "${d#/proc/}"
	done
}

on_cleanup() { PIDS="$(proxy_pids) $PIDS"; }

need_tools openssl python3 dovecot
need_bins mailplex-proxy mailplex-map mailplexctl

# ---- two certificates for the proxy's address, told apart by their CN ----
for n in one two; do
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=reload-$n" \
		-addext "subjectAltName=IP:$PX" \
		-keyout "$T/$n.key" -out "$T/$n.pem" >/dev/null 2>&1 || die "openssl req failed"
done
cat "$T/one.pem" "$T/two.pem" >"$T/ca.pem"
echo "not a certificate" >"$T/broken.pem"
# Read by the master only: it stays root to read keys like these on reload.
chmod 600 "$T/one.key" "$T/two.key"

# ---- two plain Dovecot back ends; each INBOX says which back end holds it ----
dovecot_start() { # NAME ADDR
	dovecot_dir "$1"
	for u in alice bob carol; do
		dovecot_user "$u" "pw-$u"
		printf 'From: t@test\r\nSubject: %s on %s\r\n\r\nhello %s\r\n' "$u" "$1" "$u" \
			>"$D/home/$u/Maildir/new/1000.M1P1.test"
	done
	dovecot_conf "$1" "$2" imap="$BIMAP" pop3="$BPOP3" userdb=static username_format=
	dovecot_run "$1"
}
dovecot_start d1 $BE1
dovecot_start d2 $BE2
wait_port $BE1 $BIMAP || die "dovecot d1 did not start: $(cat "$T/d1/stdout")"
wait_port $BE2 $BIMAP || die "dovecot d2 did not start: $(cat "$T/d2/stdout")"

# ---- the map: everyone on d1; map2 (compiled during the test) moves bob to d2 ----
for v in 1 2; do
	bob=d1
	[ $v = 2 ] && bob=d2
	cat >"$T/map$v" <<MAP
backend d1 lmtp=$BE1:24 imap=$BE1:$BIMAP pop3=$BE1:$BPOP3 tls=off
backend d2 lmtp=$BE2:24 imap=$BE2:$BIMAP pop3=$BE2:$BPOP3 tls=off
domain mail.test
user alice d1
user bob $bob
user carol d1
MAP
done
map_compile "$T/map1" "$T/map.db"

# ---- configurations: the first, the next (listeners, workers, certificate), a third
# (workers only), three broken ----
ctl_dir
cat >"$T/conf1" <<CONF
user = "nobody";
# The map is checked for a new file only hourly: only the reload can make bob move.
map = { db = "$T/map.db"; reload_check = "1h"; };
proxy = {
	imap = [ "$PX:$IMAP", "$PX:$GONE" ];
	imaps = [ "$PX:$IMAPS" ];
	pop3 = [ "$PX:$POP3" ];
	workers = 2;
	tls_cert = "$T/one.pem";
	tls_key = "$T/one.key";
	allow_plaintext_login = true;
	control = "$T/ctl/proxy.sock";
	backend_connect_timeout = "2s";
};
CONF
sed -e "s|\"$PX:$GONE\"|\"$PX:$NEW\"|" -e 's/workers = 2;/workers = 1;/' \
	-e "s|/one\.|/two.|g" "$T/conf1" >"$T/conf2"
sed -e 's/workers = 1;/workers = 2;/' "$T/conf2" >"$T/conf3"
sed -e 's/workers = 2;/workers = = 2;/' "$T/conf1" >"$T/conf-syntax"
BADLINE=$(grep -n 'workers = = 2;' "$T/conf-syntax" | cut -d: -f1)
sed -e "s|\"$T/one.pem\"|\"$T/broken.pem\"|" "$T/conf1" >"$T/conf-badcert"
# A new listener that binds, then one that cannot (Dovecot holds the port without
# SO_REUSEPORT): the first must be closed again and nothing of the running one touched.
sed -e "s|\"$PX:$GONE\" ]|\"$PX:$GONE\", \"$PX:$NEW\" ]|" \
	-e "s|\"$PX:$POP3\" ]|\"$PX:$POP3\", \"$BE1:$BIMAP\" ]|" "$T/conf1" >"$T/conf-badbind"
cp "$T/conf1" "$T/mailplex.conf"

"$BIN/mailplex-proxy" -d -f "$T/mailplex.conf" >"$T/proxy.log" 2>&1 &
PROXY=$!
wait_port $PX $IMAP || die "mailplex-proxy did not start"
wait_port $PX $GONE || die "mailplex-proxy did not start (all listeners)"

timeout 120 python3 "$HERE/proxy_reload.py" "$T" "$PROXY" "$PX" "$BIN" "$BADLINE" \
	"$IMAP" "$IMAPS" "$POP3" "$GONE" "$NEW" "$BE1:$BIMAP"
rc=$?

# ---- stop: every worker and the master leave on SIGTERM ----
kill "$PROXY" 2>/dev/null
for _ in $(seq 50); do
	kill -0 "$PROXY" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$PROXY" 2>/dev/null; then
	echo "FAIL: the proxy did not stop on SIGTERM" >&2
	rc=1
else
	wait "$PROXY"
	st=$?
	[ $st -eq 0 ] || { echo "FAIL: the proxy exited with $st" >&2; rc=1; }
fi
if [ -n "$(proxy_pids)" ]; then
	echo "FAIL: proxy processes left after the master stopped: $(proxy_pids)" >&2
	rc=1
fi
if grep -q "ERROR: AddressSanitizer\|runtime error:\|LeakSanitizer" "$T/proxy.log"; then
	echo "FAIL: sanitizer report in the proxy's log" >&2
	rc=1
fi
if grep -q "pw-" "$T/proxy.log"; then
	echo "FAIL: a password reached the log" >&2
	rc=1
fi
[ $rc -eq 0 ] || tail -40 "$T/proxy.log" >&2
exit $rc
