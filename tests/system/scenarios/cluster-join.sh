#!/bin/bash
# cluster-join: relays join the pool with mailplex-relay (no static relay in the config).
# Proves: an agent puts the VIP on lo and sets arp_ignore/arp_announce itself; its relay
# enters IPVS after rise and gets traffic through the VIP; a JOIN under another key is
# refused and logged and that relay never enters IPVS; a replayed datagram is refused; a
# restarted director keeps the table and the relays rejoin without a weight change; SIGTERM
# drains the relay (weight 0 while a live connection lasts, the VIP kept on lo for it, then
# out) and the agent then takes the VIP off lo; kill -9 of an agent drains its relay once
# heartbeats stop.
#
#   client .2 --br-c (10.81.0.0/24)-- dir .1 + VIP .10 ; rs1 .21, rs2 .22, rs3 .23 (bad key)
. "$SYS_SRC/lib.sh"
T=$SYS_BIN/ipvs_client_test
D=$SYS_BIN/mailplex-director
A=$SYS_BIN/mailplex-relay
CTL=$SYS_BIN/mailplexctl
PY=/usr/bin/python3
S=$SYS_SCRATCH
VIPA=10.81.0.10
PORT=8025
VIP=$VIPA:$PORT
R1=10.81.0.21:$PORT
R2=10.81.0.22:$PORT
R3=10.81.0.23:$PORT
CONF=$S/mailplex.conf
KEY=$S/cluster.key
BADKEY=$S/other.key
HEARTBEAT_MS=300
DEAD_AFTER_MS=1500
GRACE_MS=3000
RECONCILE_MS=1000
TCPFIN_S=1

for b in "$T" "$D" "$A" "$CTL" "$PY"; do
	[ -x "$b" ] || { sys_log "missing $b (make all noinst)"; sys_check programs_built 1; sys_finish; exit 1; }
done
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }
sys_bridge br-c &&
	sys_host dir br-c 10.81.0.1/24 &&
	ip -n dir addr add "$VIPA/24" dev eth0 &&
	sys_host client br-c 10.81.0.2/24 &&
	sys_host rs1 br-c 10.81.0.21/24 &&
	sys_host rs2 br-c 10.81.0.22/24 &&
	sys_host rs3 br-c 10.81.0.23/24
sys_check topology $? || { sys_finish; exit 1; }
ip -n client neigh flush all 2>/dev/null

umask 077
openssl rand -hex 32 >"$KEY" && openssl rand -hex 32 >"$BADKEY"
sys_check keys_made $?
cat >"$CONF" <<EOF
log_level = "debug";
map = { db = "$S/none.db"; };
director = {
	control = "$S/director.sock";
	reconcile_interval = "${RECONCILE_MS}ms";
	drain_timeout = "60s";
	ipvs_tcpfin_timeout = "${TCPFIN_S}s";
	cluster_listen = "10.81.0.1:7945";
	cluster_key = "$KEY";
	relay_dead_after = "${DEAD_AFTER_MS}ms";
	rejoin_grace = "${GRACE_MS}ms";
	services = ( { name = "echo"; vip = "$VIP"; scheduler = "rr";
		check = { type = "tcp"; interval = "300ms"; timeout = "500ms"; rise = 2; fall = 2; }; } );
};
EOF
relay_conf() {   # NS NAME ADDR WEIGHT KEY
	cat "$CONF" >"$S/$1.conf"
	cat >>"$S/$1.conf" <<EOF
relay = {
	name = "$2"; address = "$3"; weight = $4; key = "$5";
	directors = [ "10.81.0.1:7945" ]; heartbeat = "${HEARTBEAT_MS}ms";
	services = [ "echo:$PORT" ]; dr_vips = [ "$VIPA" ];
};
EOF
}
relay_conf rs1 relay1 10.81.0.21 100 "$KEY"
relay_conf rs2 relay2 10.81.0.22 50 "$KEY"
relay_conf rs3 relay3 10.81.0.23 100 "$BADKEY"
"$D" -n -f "$CONF" >/dev/null && "$A" -n -f "$S/rs1.conf" >/dev/null
sys_check configs_valid $?

weight() { ip netns exec dir ipvsadm -Ln -t "$VIP" 2>/dev/null | awk -v d="$1" '$1 == "->" && $2 == d { print $4 }'; }
weight_is() { [ "$(weight "$1")" = "$2" ]; }
absent() { [ -z "$(weight "$1")" ]; }
dest_row() { ip netns exec dir ipvsadm -Ln -t "$VIP" 2>/dev/null | awk -v d="$1" '$1 == "->" && $2 == d { print $3, $4, $5, $6 }'; }
vip_on_lo() { ip -n "$1" -4 addr show dev lo | grep -q "inet $VIPA/32"; }
sysctl_of() { ip netns exec "$1" cat "/proc/sys/net/ipv4/conf/all/$2"; }

start_server() {   # NS ID
	rm -f "$S/$1.ready"
	ip netns exec "$1" "$T" id-server "$PORT" "$2" "$S/$1.ready" &
	SYS_PIDS+=($!)
	sys_wait_for 5000 "$1 listening" test -e "$S/$1.ready"
}
start_agent() {   # NS
	ip netns exec "$1" "$A" -d -f "$S/$1.conf" >>"$S/agent-$1.log" 2>&1 &
	SYS_PIDS+=($!)
	eval "APID_$1=$!"
}
start_director() {   # LOGNAME
	rm -f "$S/director.sock"
	ip netns exec dir "$D" -d -f "$CONF" >>"$S/$1" 2>&1 &
	DPID=$!
	SYS_PIDS+=($DPID)
	sys_wait_for 5000 "director control socket" test -S "$S/director.sock"
}
hold_open() {   # NAME
	local h=$S/hold-$1
	mkdir -p "$h" && rm -f "$h/id" "$h/log"
	ip netns exec client "$T" conn-hold "$VIPA" "$PORT" 40000 "$h" &
	SYS_PIDS+=($!)
	sys_wait_for 5000 "held connection $1" test -s "$h/id"
}
hold_cmd() {   # NAME LINE
	local fd
	exec {fd}<>"$S/hold-$1/ctl" || return 1
	echo "$2" >&"$fd"
	exec {fd}>&-
}
hold_ping() {   # NAME N
	hold_cmd "$1" "ping $2" &&
		sys_wait_for 6000 "echo of ping $2 on $1" grep -qx "pong $2" "$S/hold-$1/log"
}

# ---- Join: nothing on lo before; the agents set up DR and their relays enter after rise.
! vip_on_lo rs1 && [ "$(sysctl_of rs1 arp_ignore)" = 0 ]
sys_check relay_starts_without_dr_setup $?
start_server rs1 relay1 && start_server rs2 relay2 && start_server rs3 relay3
sys_check servers_listening $?
start_director director1.log
sys_check director_started $?
t0=${EPOCHREALTIME/./}
start_agent rs1
start_agent rs2
sys_wait_for 3000 "VIP on lo of rs1 and rs2" eval 'vip_on_lo rs1 && vip_on_lo rs2'
sys_check agent_puts_vip_on_lo $? "$(ip -n rs1 -4 addr show dev lo | grep inet | tr '\n' '|')"
[ "$(sysctl_of rs1 arp_ignore)" = 1 ] && [ "$(sysctl_of rs1 arp_announce)" = 2 ]
sys_check agent_sets_arp_sysctls $? "arp_ignore $(sysctl_of rs1 arp_ignore) arp_announce $(sysctl_of rs1 arp_announce)"
sys_wait_for 8000 "joined relays in IPVS" eval 'weight_is $R1 100 && weight_is $R2 50'
sys_check joined_relays_enter_ipvs $? "$(ip netns exec dir ipvsadm -Ln | tr '\n' '|')"
echo "TIMING join_to_ipvs_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
grep -q 'cluster: join of relay relay1 (10.81.0.21, weight 100, 1 services, ready)' "$S/director1.log" &&
	grep -q 'check tcp 10.81.0.21:8025: DOWN -> UP' "$S/director1.log"
sys_check entered_after_rise_checks $? "$(grep -c 'relay1' "$S/director1.log") lines on relay1"
out=$(ip netns exec client "$T" id-count "$VIPA" "$PORT" 10)
rc=$?
ids=$(echo "$out" | sed -n 's/^ids //p')
n1=$(echo "$ids" | tr ' ' '\n' | sed -n 's/^relay1=//p')
n2=$(echo "$ids" | tr ' ' '\n' | sed -n 's/^relay2=//p')
[ "$rc" = 0 ] && [ "${n1:-0}" -gt 0 ] && [ "${n2:-0}" -gt 0 ] && [ $((n1 + n2)) = 10 ]
sys_check traffic_reaches_joined_relays $? "replies per relay: $ids"
st=$("$CTL" -f "$CONF" director status)
echo "$st" | grep -q '^joined: relay1 10.81.0.21 weight 100 services echo heartbeat .* ready' &&
	echo "$st" | grep -q '^joined: relay2 10.81.0.22 weight 50'
sys_check status_lists_joined_relays $? "$(echo "$st" | grep -E '^(cluster|joined)' | tr '\n' '|')"

# ---- Another cluster's key: refused and logged, never in IPVS.
start_agent rs3
sys_wait_for 3000 "refusal of relay3's join" grep -q 'cluster: datagram from 10.81.0.23:[0-9]* refused: bad MAC' "$S/director1.log"
sys_check wrong_key_join_refused_and_logged $?
sys_snooze 0.5
absent "$R3" && ! grep -q 'join of relay relay3' "$S/director1.log"
sys_check wrong_key_relay_never_in_ipvs $? "$(dest_row "$R3")"
kill -TERM "$APID_rs3"
wait "$APID_rs3" 2>/dev/null

# ---- A datagram sent twice: the copy is refused as replayed; an old one as stale.
cat >"$S/replay.py" <<'EOF'
import hmac, hashlib, socket, struct, sys, time, os
key = bytes.fromhex(open(sys.argv[1]).read().strip())
def dgram(name, ts):
    b = b"MPXC" + bytes([1, 2, 0, 0x0f]) + struct.pack(">Q", ts) + os.urandom(16) + bytes(16)
    b += bytes([4]) + socket.inet_aton("10.81.0.2") + bytes(12) + struct.pack(">HQQ", 1, 0, 0)
    b += bytes([len(name)]) + name + bytes([0])
    return b + hmac.new(key, b, hashlib.sha256).digest()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
now = int(time.time() * 1000)
d = dgram(b"replayer", now)
s.sendto(d, ("10.81.0.1", 7945))
print("first reply", len(s.recv(2048)))
s.sendto(d, ("10.81.0.1", 7945))
s.sendto(dgram(b"oldtimer", now - 120000), ("10.81.0.1", 7945))
EOF
ip netns exec client "$PY" "$S/replay.py" "$KEY" >"$S/replay.out" 2>&1
sys_check crafted_heartbeat_answered $? "$(cat "$S/replay.out")"
sys_wait_for 2000 "replay refusal" grep -q 'cluster: datagram from 10.81.0.2:[0-9]* refused: replayed' "$S/director1.log"
sys_check replayed_datagram_refused $?
grep -q 'heartbeat of unknown relay replayer from 10.81.0.2' "$S/director1.log" &&
	[ "$(grep -c 'heartbeat of unknown relay replayer' "$S/director1.log")" = 1 ]
sys_check original_datagram_accepted_once $?
grep -q 'cluster: datagram from 10.81.0.2:[0-9]* refused: timestamp outside the window' "$S/director1.log"
sys_check stale_datagram_refused $?

# ---- Director restart: the table stays, the relays rejoin, no weight changes.
kill -TERM "$DPID"
wait "$DPID" 2>/dev/null
sys_check director_stopped $?
t0=${EPOCHREALTIME/./}
start_director director2.log
sys_check director_restarted $?
sys_wait_for 5000 "relays rejoined" eval 'grep -q "join of relay relay1" "$S/director2.log" && grep -q "join of relay relay2" "$S/director2.log"'
sys_check relays_rejoin_restarted_director $? "$(grep -c 'asks to join again' "$S/agent-rs1.log") rejoin requests seen by relay1"
echo "TIMING restart_to_rejoined_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
# Past the grace: what nobody claimed would drain now; the rejoined relays stay as they were.
sys_snooze $((GRACE_MS / 1000 + RECONCILE_MS / 1000 + 1))
weight_is "$R1" 100 && weight_is "$R2" 50
sys_check rejoined_relays_keep_their_weight $? "$(dest_row "$R1") / $(dest_row "$R2")"
! grep -Eq 'ipvs: (destination|service) (edit|delete)' "$S/director2.log"
sys_check restart_changes_no_destination $? "$(grep 'ipvs:' "$S/director2.log" | head -3 | tr '\n' '|')"

# ---- SIGTERM of an agent with a live connection on its relay: weight 0, out when idle.
hold_open leave
sys_check held_connection_open $?
X=$(cat "$S/hold-leave/id")
case $X in relay1) XN=rs1 XA=$R1 Y=relay2 YN=rs2 YA=$R2 ;; relay2) XN=rs2 XA=$R2 Y=relay1 YN=rs1 YA=$R1 ;; *) XN= ;; esac
[ -n "$XN" ]
sys_check held_connection_on_a_joined_relay $? "id '$X'"
eval "XPID=\$APID_$XN"
kill -TERM "$XPID"
sys_wait_for 3000 "$X at weight 0" weight_is "$XA" 0
sys_check leave_sets_weight_zero $? "$(dest_row "$XA")"
sys_wait_for 2000 "leave logged" grep -q "cluster: relay $X leaves (from .*): draining it" "$S/director2.log"
sys_check leave_logged $?
sys_snooze $((RECONCILE_MS * 2 / 1000 + 1))
weight_is "$XA" 0 && kill -0 "$XPID" && vip_on_lo "$XN"
sys_check left_relay_keeps_vip_while_connection_lives $? "$(dest_row "$XA"), agent $(kill -0 "$XPID" 2>/dev/null && echo running || echo gone)"
hold_ping leave 1
sys_check left_relay_still_serves_its_connection $?
grep -q 'leave acknowledged, draining' "$S/agent-$XN.log"
sys_check agent_told_it_is_draining $?
t0=${EPOCHREALTIME/./}
hold_cmd leave close
sys_wait_for 3000 "held connection closed" grep -qx closed "$S/hold-leave/log"
sys_wait_for $((TCPFIN_S * 1000 + RECONCILE_MS + 1500)) "$X out after its connection ended" absent "$XA"
sys_check left_relay_deleted_when_idle $? "$(dest_row "$XA")"
sys_wait_for 3000 "agent $X exits" eval '! kill -0 $XPID'
sys_check agent_exits_once_out_of_ipvs $?
wait "$XPID" 2>/dev/null
sys_check agent_exit_status_zero $?
echo "TIMING close_to_agent_exit_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
! vip_on_lo "$XN" && [ "$(sysctl_of "$XN" arp_ignore)" = 0 ] && [ "$(sysctl_of "$XN" arp_announce)" = 0 ]
sys_check stop_undoes_dr_setup $? "lo: $(ip -n "$XN" -4 addr show dev lo | grep -c "$VIPA") VIP lines, arp_ignore $(sysctl_of "$XN" arp_ignore)"
sys_wait_for 3000 "$X forgotten" grep -q "cluster: relay $X (leave) is out of every service: forgotten" "$S/director2.log"
sys_check left_relay_forgotten $?

# ---- kill -9 of the other agent: its heartbeats stop and the relay drains.
eval "YPID=\$APID_$YN"
t0=${EPOCHREALTIME/./}
kill -KILL "$YPID"
wait "$YPID" 2>/dev/null
sys_wait_for $((DEAD_AFTER_MS + RECONCILE_MS + 2000)) "$Y drained" eval 'w=$(weight $YA); [ -z "$w" ] || [ "$w" = 0 ]'
sys_check killed_agent_relay_drained $? "$(dest_row "$YA")"
echo "TIMING kill_to_drained_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
grep -q "cluster: relay $Y: no heartbeat for [0-9]* ms, draining it" "$S/director2.log"
sys_check missing_heartbeats_logged $?
out=$(ip netns exec client "$T" id-count "$VIPA" "$PORT" 2 2>&1)
! echo "$out" | grep -q "$Y="
sys_check no_new_connections_to_dead_relay $? "$out"

sys_log "director logs:"
grep -v 'debug\|check.*ok' "$S/director1.log" | sed 's/^/  1| /' | tail -n 25
grep -v 'debug\|check.*ok' "$S/director2.log" | sed 's/^/  2| /' | tail -n 25
sed 's/^/  rs1| /' "$S/agent-rs1.log" | grep -v debug | tail -n 8
sys_finish
