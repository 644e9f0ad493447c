#!/bin/bash
# cluster-leave: joined relays leaving and a director restarting. Proves: a restarted
# director keeps the table and the relays rejoin without a weight change; SIGTERM of an
# agent drains its relay (weight 0 while a live connection lasts, the VIP kept on lo for
# it, then out) and only then takes the VIP off lo and restores the sysctls; an agent
# started again rejoins; kill -9 of an agent drains its relay once heartbeats stop.
# Topology and helpers: tests/system/cluster.sh.
. "$SYS_SRC/lib.sh"
. "$SYS_SRC/cluster.sh"

cluster_start_two
sys_check two_relays_joined $? "$(ip netns exec dir ipvsadm -Ln | tr '\n' '|')"

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

# ---- kill -9 of the other agent: its heartbeats stop and the relay drains; X, started
# again, takes the new connections.
start_agent "$XN"
sys_wait_for 5000 "$X back after rise" eval 'w=$(weight $XA); [ -n "$w" ] && [ "$w" != 0 ]'
sys_check restarted_agent_rejoins $? "$(dest_row "$XA")"
eval "YPID=\$APID_$YN"
t0=${EPOCHREALTIME/./}
kill -KILL "$YPID"
wait "$YPID" 2>/dev/null
sys_wait_for $((DEAD_AFTER_MS + RECONCILE_MS + 2000)) "$Y drained" eval 'w=$(weight $YA); [ -z "$w" ] || [ "$w" = 0 ]'
sys_check killed_agent_relay_drained $? "$(dest_row "$YA")"
echo "TIMING kill_to_drained_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
grep -q "cluster: relay $Y: no heartbeat for [0-9]* ms, draining it" "$S/director2.log"
sys_check missing_heartbeats_logged $?
out=$(ip netns exec client "$T" id-count "$VIPA" "$PORT" 3 2>&1)
echo "$out" | grep -qx "ids $X=3"
sys_check new_connections_go_to_live_relay_only $? "$out"

sys_log "director logs:"
grep -v 'debug\|check.*ok' "$S/director1.log" | sed 's/^/  1| /' | tail -n 25
grep -v 'debug\|check.*ok' "$S/director2.log" | sed 's/^/  2| /' | tail -n 25
sed 's/^/  rs1| /' "$S/agent-rs1.log" | grep -v debug | tail -n 8
sys_finish
