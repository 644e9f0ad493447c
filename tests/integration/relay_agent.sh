#!/bin/sh
# mailplex-relay's readiness against a real mailplex-proxy on 127.0.0.83: ready while the
# proxy's worker 0 answers on its control socket, with the compiled map's version; not
# ready (with the reason) once the proxy stops; ready again when it is back. A key file
# others may read is refused at start. A stop with no director answering ends within five
# LEAVE tries, and so does one whose director said "draining" and then fell silent. No director runs here (no IPVS on the host): the system tests cover joins;
# a silent peer (relay_agent_peer.py) reads the agent's datagrams to check what they carry
# (map_in_force follows the proxy's sweep of a new map). $1: the bin dir. Exit 0 when all
# passed.
set -u
BIN=$1
HERE=$(cd "$(dirname "$0")" && pwd)
PX=127.0.0.83
BASE=$((28000 + ($$ % 400) * 10))
IMAP=$((BASE + 0)) NODIR=$((BASE + 1))
T=$(mktemp -d /tmp/mailplex-agent.XXXXXX)
chmod 755 "$T"
PIDS=""
FAILED=0

cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	sleep 0.3
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 2' INT TERM HUP

check() { # NAME RC [detail]
	if [ "$2" = 0 ]; then
		echo "PASS $1"
	else
		echo "FAIL $1 ${3:-}"
		FAILED=$((FAILED + 1))
	fi
}
# wait_for SECONDS CMD...: polls every 0.1 s, bounded.
wait_for() {
	n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

for p in mailplex-proxy mailplex-map mailplex-relay; do
	[ -x "$BIN/$p" ] || { echo "relay_agent.sh: no $BIN/$p" >&2; exit 1; }
done

printf 'backend d1 lmtp=%s:24 imap=%s:1 pop3=%s:2 tls=off\ndomain mail.test\nuser alice d1\n' \
	"$PX" "$PX" "$PX" >"$T/map"
"$BIN/mailplex-map" compile "$T/map" "$T/map.db" >"$T/map.out" 2>&1
check map_compiled $? "$(cat "$T/map.out")"
chmod 644 "$T/map.db"
VERSION=$(sed -n 's/^.*: version \([0-9]*\):.*$/\1/p' "$T/map.out")
mkdir "$T/ctl" "$T/spool"
chown nobody "$T/ctl" 2>/dev/null || chmod 777 "$T/ctl"
(umask 077 && openssl rand -hex 32 >"$T/cluster.key")
cat >"$T/mailplex.conf" <<CONF
user = "nobody";
map = { db = "$T/map.db"; };
proxy = {
	imap = [ "$PX:$IMAP" ];
	workers = 1;
	allow_plaintext_login = true;
	control = "$T/ctl/proxy.sock";
};
relay = {
	name = "agent-test"; address = "$PX"; directors = [ "127.0.0.1:$NODIR" ];
	heartbeat = "200ms"; key = "$T/cluster.key"; services = [ "imap" ];
	proxy_control = "$T/ctl/proxy.sock"; spool = "$T/spool"; spool_min_free = "1k";
};
CONF

proxy_start() {
	"$BIN/mailplex-proxy" -d -f "$T/mailplex.conf" >>"$T/proxy.log" 2>&1 &
	PROXY=$!
	PIDS="$PIDS $PROXY"
	wait_for 10 test -S "$T/ctl/proxy.sock.0"
}
proxy_start
check proxy_started $? "$(tail -5 "$T/proxy.log")"

python3 "$HERE/relay_agent_peer.py" 127.0.0.1 "$NODIR" "$T/cluster.key" "$T/peer.out" 60 &
PEER=$!
PIDS="$PIDS $PEER"
"$BIN/mailplex-relay" -d -f "$T/mailplex.conf" >"$T/agent.log" 2>&1 &
AGENT=$!
PIDS="$PIDS $AGENT"
wait_for 10 grep -q "readiness: ready (map version $VERSION)" "$T/agent.log"
check ready_with_proxy_and_map_version $? "$(cat "$T/agent.log")"
wait_for 10 grep -q "map version in force: $VERSION (installed $VERSION)" "$T/agent.log"
check map_in_force_from_the_proxy $? "$(tail -3 "$T/agent.log")"
wait_for 10 grep -q "^join version=2 map_version=$VERSION map_in_force=$VERSION\$" "$T/peer.out"
check join_carries_map_in_force $? "$(tail -3 "$T/peer.out" 2>&1)"

# A new map: installed at once, in force once the proxy's worker swept its sessions.
printf 'user bob d1\n' >>"$T/map"
"$BIN/mailplex-map" compile "$T/map" "$T/map.db" >"$T/map.out" 2>&1
chmod 644 "$T/map.db"
V2=$(sed -n 's/^.*: version \([0-9]*\):.*$/\1/p' "$T/map.out")
wait_for 10 grep -q "map version in force: $V2 (installed $V2)" "$T/agent.log"
check map_in_force_follows_the_new_map $? "$(tail -3 "$T/agent.log")"
wait_for 10 grep -q "^join version=2 map_version=$V2 map_in_force=$V2\$" "$T/peer.out"
check join_carries_the_new_map_in_force $? "$(tail -3 "$T/peer.out" 2>&1)"
! grep -q "bad-mac\|short" "$T/peer.out"
check every_datagram_authentic $? "$(grep -c . "$T/peer.out") datagrams"

kill -TERM "$PROXY"
wait "$PROXY" 2>/dev/null
rm -f "$T/ctl/proxy.sock.0"
wait_for 10 grep -q "readiness: not ready: $T/ctl/proxy.sock.0: " "$T/agent.log"
check not_ready_without_proxy $? "$(tail -3 "$T/agent.log")"

proxy_start
wait_for 10 sh -c "[ \$(grep -c 'readiness: ready' '$T/agent.log') = 2 ]"
check ready_again_with_proxy_back $? "$(tail -3 "$T/agent.log")"

kill -TERM "$AGENT"
wait_for 10 sh -c "! kill -0 $AGENT"
check agent_stops_without_directors $?
wait "$AGENT"
check agent_exit_status_zero $?
grep -q "stop: director 127.0.0.1:$NODIR does not answer" "$T/agent.log"
check unanswered_leave_logged $? "$(tail -3 "$T/agent.log")"

# A director that answers the LEAVE with "draining" and then falls silent (it died): the
# stop gives it up after the same five unanswered LEAVEs instead of waiting stop_timeout
# (15 minutes by default) for a director that will never say "out".
DRAINDIR=$((BASE + 2))
sed "s/127.0.0.1:$NODIR/127.0.0.1:$DRAINDIR/" "$T/mailplex.conf" >"$T/drain.conf"
python3 "$HERE/relay_agent_peer.py" 127.0.0.1 "$DRAINDIR" "$T/cluster.key" "$T/peer2.out" 60 \
	drain-once &
PIDS="$PIDS $!"
"$BIN/mailplex-relay" -d -f "$T/drain.conf" >"$T/agent3.log" 2>&1 &
AGENT3=$!
PIDS="$PIDS $AGENT3"
wait_for 10 grep -q '^join ' "$T/peer2.out"
check draining_peer_reached $? "$(tail -3 "$T/agent3.log")"
kill -TERM "$AGENT3"
wait_for 10 sh -c "! kill -0 $AGENT3"
check agent_stops_when_a_draining_director_falls_silent $? "$(tail -4 "$T/agent3.log")"
grep -q "leave acknowledged, draining" "$T/agent3.log" &&
	grep -q "stop: director 127.0.0.1:$DRAINDIR does not answer" "$T/agent3.log"
check draining_then_silent_director_given_up $? "$(tail -4 "$T/agent3.log")"

chmod 644 "$T/cluster.key"
"$BIN/mailplex-relay" -d -f "$T/mailplex.conf" >"$T/agent2.log" 2>&1
rc=$?
[ "$rc" = 1 ] && grep -q "only its owner can read" "$T/agent2.log"
check readable_key_refused $? "rc $rc: $(cat "$T/agent2.log")"

[ "$FAILED" = 0 ] || { echo "relay_agent.sh: $FAILED failed" >&2; exit 1; }
echo "relay_agent.sh: all passed"
