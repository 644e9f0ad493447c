#!/bin/bash
# director-dr: mailplex-director with a DR service (the default forwarding) on one flat
# segment: relays hold the VIP on lo (/32, arp_ignore=1, arp_announce=2) and answer the
# client directly. Proves: traffic through the VIP reaches both relays; a drain with a live
# connection keeps the destination at weight 0 until that connection ends, then deletes it;
# a restart keeps an established connection working (data echoed after the restart); a
# relay whose service stops goes to weight 0 or out, after exactly `fall` failed checks
# (the time it took is reported as TIMING, not asserted).
#
#   client .2 --br-d (10.80.0.0/24)-- dir .1 + VIP .10 ; rs1 .21, rs2 .22 (VIP on lo)
. "$SYS_SRC/lib.sh"
T=$SYS_BIN/ipvs_client_test
D=$SYS_BIN/mailplex-director
CTL=$SYS_BIN/mailplexctl
S=$SYS_SCRATCH
VIPA=10.80.0.10
PORT=8025
VIP=$VIPA:$PORT
R1=10.80.0.21:$PORT
R2=10.80.0.22:$PORT
CONF=$S/mailplex.conf
# The config's numbers, and the bounds derived from them (see the checks below).
CHECK_INTERVAL_MS=300
CHECK_TIMEOUT_MS=500
FALL=2
RECONCILE_MS=1000
TCPFIN_S=1
DRAIN_TIMEOUT_S=60
# UML runs every process on a slow emulated CPU; a second of slack covers its scheduling.
SLACK_MS=1500

for b in "$T" "$D" "$CTL"; do
	[ -x "$b" ] || { sys_log "missing $b (make all noinst)"; sys_check programs_built 1; sys_finish; exit 1; }
done
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }

relay_dr_setup() {   # NS: DR prerequisites before the VIP goes on lo
	ip netns exec "$1" sysctl -qw net.ipv4.conf.all.arp_ignore=1 \
		net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_ignore=1 \
		net.ipv4.conf.eth0.arp_announce=2 &&
		ip -n "$1" addr add "$VIPA/32" dev lo
}
sys_bridge br-d &&
	sys_host dir br-d 10.80.0.1/24 &&
	ip -n dir addr add "$VIPA/24" dev eth0 &&
	sys_host client br-d 10.80.0.2/24 &&
	sys_host rs1 br-d 10.80.0.21/24 &&
	sys_host rs2 br-d 10.80.0.22/24 &&
	relay_dr_setup rs1 && relay_dr_setup rs2
sys_check dr_topology $? || { sys_finish; exit 1; }
# Only the director may answer ARP for the VIP.
ip -n client neigh flush all 2>/dev/null

cat >"$CONF" <<EOF
log_level = "debug";
director = {
	control = "$S/director.sock";
	reconcile_interval = "${RECONCILE_MS}ms";
	drain_timeout = "${DRAIN_TIMEOUT_S}s";
	ipvs_tcpfin_timeout = "${TCPFIN_S}s";
	services = ( { name = "echo"; vip = "$VIP"; scheduler = "rr";
		check = { type = "tcp"; interval = "${CHECK_INTERVAL_MS}ms"; timeout = "${CHECK_TIMEOUT_MS}ms";
			rise = 2; fall = $FALL; }; } );
	relays = ( { name = "relay1"; address = "10.80.0.21"; },
		{ name = "relay2"; address = "10.80.0.22"; weight = 50; } );
};
EOF

weight() { ip netns exec dir ipvsadm -Ln -t "$VIP" 2>/dev/null | awk -v d="$1" '$1 == "->" && $2 == d { print $4 }'; }
weight_is() { [ "$(weight "$1")" = "$2" ]; }
absent() { [ -z "$(weight "$1")" ]; }
# "FWD WEIGHT ACTIVE INACTIVE" of a destination, empty if absent.
dest_row() { ip netns exec dir ipvsadm -Ln -t "$VIP" 2>/dev/null | awk -v d="$1" '$1 == "->" && $2 == d { print $3, $4, $5, $6 }'; }
dest_idle() { [ "$(dest_row "$1" | awk '{ print $3 + $4 }')" = 0 ]; }

start_relay() {   # NS ID
	rm -f "$S/$1.ready"
	ip netns exec "$1" "$T" id-server "$PORT" "$2" "$S/$1.ready" &
	SYS_PIDS+=($!)
	eval "LPID_$1=$!"
	sys_wait_for 5000 "$1 listening" test -e "$S/$1.ready"
}
start_director() {   # LOGNAME
	rm -f "$S/director.sock"
	ip netns exec dir "$D" -d -f "$CONF" >>"$S/$1" 2>&1 &
	DPID=$!
	SYS_PIDS+=($DPID)
	sys_wait_for 5000 "director control socket" test -S "$S/director.sock"
}
# A steerable connection through the VIP (conn-hold): HOLD_<name> is its folder.
hold_open() {   # NAME
	local h=$S/hold-$1
	mkdir -p "$h" && rm -f "$h/id" "$h/log"
	ip netns exec client "$T" conn-hold "$VIPA" "$PORT" 50000 "$h" &
	SYS_PIDS+=($!)
	eval "HOLDPID_$1=$!"
	sys_wait_for 5000 "held connection $1" test -s "$h/id"
}
hold_cmd() {   # NAME LINE   (O_RDWR open of a FIFO never blocks)
	local fd
	exec {fd}<>"$S/hold-$1/ctl" || return 1
	echo "$2" >&"$fd"
	exec {fd}>&-
}
hold_ping() {   # NAME N: the line comes back over the held connection
	hold_cmd "$1" "ping $2" &&
		sys_wait_for 6000 "echo of ping $2 on $1" grep -qx "pong $2" "$S/hold-$1/log"
}
relay_addr() { case $1 in relay1) echo "$R1" ;; relay2) echo "$R2" ;; esac; }

start_relay rs1 relay1 && start_relay rs2 relay2
sys_check relays_listening $?
"$D" -n -f "$CONF" >/dev/null
sys_check dr_config_valid $?
start_director director1.log
sys_check director_started $?
sys_wait_for 8000 "both relays in IPVS after rise" eval 'weight_is $R1 100 && weight_is $R2 50'
sys_check dr_relays_added $? "$(ip netns exec dir ipvsadm -Ln | tr '\n' '|')"
[ "$(dest_row "$R1" | cut -d' ' -f1)" = Route ] && [ "$(dest_row "$R2" | cut -d' ' -f1)" = Route ]
sys_check dr_destinations_are_route $? "$(dest_row "$R1") / $(dest_row "$R2")"
ip netns exec dir ipvsadm -L --timeout | grep -q "(tcp tcpfin udp): 1860 $TCPFIN_S "
sys_check ipvs_tcpfin_timeout_from_config $? "$(ip netns exec dir ipvsadm -L --timeout)"

# ---- DR traffic: rr over two relays, 10 connections, each relay answers directly.
out=$(ip netns exec client "$T" id-count "$VIPA" "$PORT" 10)
rc=$?
ids=$(echo "$out" | sed -n 's/^ids //p')
n1=$(echo "$ids" | tr ' ' '\n' | sed -n 's/^relay1=//p')
n2=$(echo "$ids" | tr ' ' '\n' | sed -n 's/^relay2=//p')
[ "$rc" = 0 ] && [ "${n1:-0}" -gt 0 ] && [ "${n2:-0}" -gt 0 ] && [ $((n1 + n2)) = 10 ]
sys_check dr_traffic_reaches_both_relays $? "replies per relay: $ids"
echo "TIMING dr_replies_relay1=${n1:-0}"
echo "TIMING dr_replies_relay2=${n2:-0}"
# The relays answered from the VIP itself: the client never learned a relay's MAC for it.
mac_vip=$(ip -n client neigh show "$VIPA" | awk '{ print $5 }')
mac_dir=$(ip -n dir link show eth0 | awk '/link\/ether/ { print $2 }')
[ -n "$mac_vip" ] && [ "$mac_vip" = "$mac_dir" ]
sys_check vip_arp_answered_by_director_only $? "client has $VIPA at $mac_vip, dir eth0 $mac_dir"

# ---- Drain with a live connection: weight 0 while it lives (drain_timeout is far), then out.
hold_open drain
sys_check drain_connection_open $?
X=$(cat "$S/hold-drain/id")
XA=$(relay_addr "$X")
[ -n "$XA" ]
sys_check held_connection_on_a_relay $? "id '$X'"
"$CTL" -f "$CONF" director drain "$X" echo
sys_check mailplexctl_drain_ok $?
sys_wait_for 3000 "$X at weight 0" weight_is "$XA" 0
sys_check drain_sets_weight_zero $? "$(dest_row "$XA")"
# Wait until the traffic test's FIN_WAIT entries have expired (tcpfin $TCPFIN_S s): what
# is left on X is the held connection, and over several reconcile passes it keeps X in.
sys_wait_for $((TCPFIN_S * 1000 + 3000)) "only the held connection left on $X" \
	eval '[ "$(dest_row "$XA" | cut -d" " -f2-)" = "0 1 0" ]'
sys_check drained_dest_has_one_active_connection $? "$(dest_row "$XA")"
sys_snooze $((RECONCILE_MS * 2 / 1000 + 1))
weight_is "$XA" 0
sys_check drained_dest_stays_while_connection_lives $? "$(dest_row "$XA")"
hold_ping drain 1
sys_check drained_relay_still_serves_its_connection $?
out=$(ip netns exec client "$T" id-count "$VIPA" "$PORT" 4)
echo "$out" | grep -qx "ids [a-z0-9]*=4" && ! echo "$out" | grep -q "$X="
sys_check new_connections_avoid_drained_relay $? "$out"
t0=${EPOCHREALTIME/./}
hold_cmd drain close
sys_wait_for 3000 "held connection closed" grep -qx closed "$S/hold-drain/log"
sys_check held_connection_closed $?
# Closed: FIN_WAIT for tcpfin seconds (DR: the director sees the client's side only),
# then no connection is left and the next pass deletes it.
sys_wait_for $((TCPFIN_S * 1000 + RECONCILE_MS + SLACK_MS)) "$X deleted after its connection ended" absent "$XA"
sys_check drained_dest_deleted_after_connection_ends $? "$(dest_row "$XA")"
echo "TIMING drain_close_to_delete_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
grep -q "delete TCP $VIP -> $XA Route .*(drained: no connections left): ok" "$S/director1.log"
sys_check deleted_because_idle_not_by_timeout $? "$(grep "$XA" "$S/director1.log" | grep -c delete) deletes"
WX=$([ "$X" = relay1 ] && echo 100 || echo 50)
"$CTL" -f "$CONF" director undrain "$X" && sys_wait_for 5000 "$X back" weight_is "$XA" "$WX"
sys_check undrained_relay_returns $?

# ---- Restart: an established connection through the VIP keeps carrying data.
hold_open restart
sys_check restart_connection_open $?
hold_ping restart 1
sys_check restart_connection_echoes_before $?
kill -TERM "$DPID"
wait "$DPID" 2>/dev/null
sys_check director_stopped_cleanly $?
weight_is "$R1" 100 && weight_is "$R2" 50
sys_check stop_leaves_table $? "$(ip netns exec dir ipvsadm -Ln | tr '\n' '|')"
hold_ping restart 2
sys_check connection_works_while_director_down $?
start_director director2.log
sys_check director_restarted $?
# Let the new process run a few reconcile passes before the data goes over.
sys_wait_for 5000 "restarted director answers status" "$CTL" -f "$CONF" director status
sys_snooze $((RECONCILE_MS * 2 / 1000 + 1))
hold_ping restart 3
sys_check established_connection_echoes_after_restart $?
hold_cmd restart close
sys_wait_for 3000 "restart connection closed" grep -qx closed "$S/hold-restart/log"
! grep -Eq 'ipvs: (service|destination) (add|edit|delete)' "$S/director2.log"
sys_check restart_changes_nothing $? "$(grep 'ipvs:' "$S/director2.log" | head -3)"

# ---- A relay's service stops: weight 0 or out, never anything else, and out after
# exactly `fall` failed checks (the director's log says so); the time it took is reported
# (fall x interval + a reconcile pass is the design figure), not asserted.
sys_wait_for $((TCPFIN_S * 1000 + 3000)) "relay2 idle" dest_idle "$R2"
LIMIT_MS=$(((FALL * CHECK_INTERVAL_MS * 5 / 4 + CHECK_TIMEOUT_MS + RECONCILE_MS) * 10))
# The first sample is taken before the kill: a slow sampler must not miss the "50".
last=$(weight "$R2")
seq_seen=" ${last:-absent}"
t0=${EPOCHREALTIME/./}
kill "$LPID_rs2"
end=$((t0 + LIMIT_MS * 1000))
while ((${EPOCHREALTIME/./} < end)); do
	w=$(weight "$R2")
	w=${w:-absent}
	[ "$w" != "$last" ] && seq_seen="$seq_seen $w" && last=$w
	[ "$w" = absent ] && break
	sys_snooze 0.05
done
ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
[ "$last" = absent ]
sys_check stopped_relay_removed $? "observed:$seq_seen after ${ms} ms"
[[ "$seq_seen" =~ ^\ 50(\ 0)?\ absent$ ]]
sys_check stopped_relay_sequence_weight_then_out $? "observed:$seq_seen"
grep -q "check tcp $R2: UP -> DOWN, .* $FALL/$FALL failed" "$S/director2.log"
sys_check stopped_relay_down_after_fall_checks $? "$(grep "check tcp $R2: UP -> DOWN" "$S/director2.log")"
echo "TIMING stop_to_removed_ms=$ms"
grep -q 'relay relay2 in service echo: check down' "$S/director2.log"
sys_check check_down_logged $?
weight_is "$R1" 100
sys_check other_relay_untouched $?
out=$(ip netns exec client "$T" id-count "$VIPA" "$PORT" 3)
echo "$out" | grep -qx "ids relay1=3"
sys_check traffic_goes_to_remaining_relay $? "$out"

sys_log "director logs:"
sed 's/^/  1| /' "$S/director1.log" | grep -v 'check.*ok\|debug' | tail -n 30
sed 's/^/  2| /' "$S/director2.log" | tail -n 20
sys_finish
