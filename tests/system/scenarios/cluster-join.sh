#!/bin/bash
# cluster-join: relays join the pool with mailplex-relay (no static relay in the config).
# Proves: an agent puts the VIP on lo and sets arp_ignore/arp_announce itself; its relay
# enters IPVS after rise and gets traffic through the VIP; status lists joined relays; a
# JOIN under another key is refused and logged and that relay never enters IPVS; a node
# that reports itself not ready joins but stays out; a replayed datagram is refused, and a
# stale one. Topology and helpers: tests/system/cluster.sh.
. "$SYS_SRC/lib.sh"
. "$SYS_SRC/cluster.sh"

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
	echo "$st" | grep -q '^joined: relay2 10.81.0.22 weight 50' &&
	echo "$st" | grep -Eq '^ +relay1 +10\.81\.0\.21:8025 +100 +active .* joined'
sys_check status_lists_joined_relays $? "$(echo "$st" | grep -E '^(cluster|joined)|relay1' | tr '\n' '|')"

# ---- Another cluster's key: refused and logged, never in IPVS.
start_agent rs3
sys_wait_for 3000 "refusal of relay3's join" grep -q 'cluster: datagram from 10.81.0.23:[0-9]* refused: bad MAC' "$S/director1.log"
sys_check wrong_key_join_refused_and_logged $?
sys_snooze 0.5
absent "$R3" && ! grep -q 'join of relay relay3' "$S/director1.log"
sys_check wrong_key_relay_never_in_ipvs $? "$(dest_row "$R3")"
kill -TERM "$APID_rs3"
wait "$APID_rs3" 2>/dev/null

# ---- A node that reports itself not ready joins but never enters IPVS.
relay_conf rs3 relay3 10.81.0.23 100 "$KEY"
sed -i 's|^relay = {|relay = { spool = "/"; spool_min_free = "1000000G";|' "$S/rs3.conf"
start_agent rs3
sys_wait_for 3000 "relay3 joins not ready" grep -q 'cluster: join of relay relay3 (10.81.0.23, weight 100, 1 services, not ready)' "$S/director1.log"
sys_check unready_relay_joins $?
sys_snooze 1
absent "$R3" && "$CTL" -f "$CONF" director status | grep -q '^joined: relay3 .* leaving: not ready (.* spool low'
sys_check unready_relay_stays_out_of_ipvs $? "$(dest_row "$R3") $("$CTL" -f "$CONF" director status | grep '^joined: relay3')"
kill -TERM "$APID_rs3"
wait "$APID_rs3" 2>/dev/null
sys_check unready_agent_stops $?

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

sys_log "director log:"
grep -v 'debug\|check.*ok' "$S/director1.log" | sed 's/^/  | /' | tail -n 25
sys_finish
