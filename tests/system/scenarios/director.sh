#!/bin/bash
# director: mailplex-director against kernel IPVS. One NAT VIP over two relays (echo
# listeners): relays enter after rise, a weight changed and a destination deleted by hand
# are put back, a dead listener is drained out and comes back, mailplexctl drain/undrain
# work, a bad reload keeps the running config, and a restart leaves an established
# connection's IPVS entry and the table untouched and the connection still echoing.
#
#   client 10.79.1.2 --br-c-- 10.79.1.1 + VIP 10.79.1.10 [dir] 10.79.2.1 --br-s-- relays .21 .22
. "$SYS_SRC/lib.sh"
T=$SYS_BIN/ipvs_client_test
D=$SYS_BIN/mailplex-director
CTL=$SYS_BIN/mailplexctl
S=$SYS_SCRATCH
VIP=10.79.1.10:8025
R1=10.79.2.21:8025
R2=10.79.2.22:8025
CONF=$S/mailplex.conf

for b in "$T" "$D" "$CTL"; do
	[ -x "$b" ] || { sys_log "missing $b (make all noinst)"; sys_check programs_built 1; sys_finish; exit 1; }
done
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }

sys_bridge br-c && sys_bridge br-s &&
	sys_host dir br-c 10.79.1.1/24 "" eth0 &&
	sys_host dir br-s 10.79.2.1/24 "" eth1 &&
	ip -n dir addr add 10.79.1.10/24 dev eth0 &&
	sys_host client br-c 10.79.1.2/24 10.79.1.1 &&
	sys_host rs1 br-s 10.79.2.21/24 10.79.2.1 &&
	sys_host rs2 br-s 10.79.2.22/24 10.79.2.1 &&
	ip netns exec dir sysctl -qw net.ipv4.ip_forward=1 net.ipv4.vs.expire_nodest_conn=1
sys_check topology $? || { sys_finish; exit 1; }

write_conf() {   # RELAY2_WEIGHT
	cat >"$CONF" <<-EOF
	log_level = "debug";
	director = {
		control = "$S/director.sock";
		reconcile_interval = "1s";
		drain_timeout = "3s";
		services = ( { name = "echo"; vip = "$VIP"; forwarding = "nat"; scheduler = "rr";
			check = { type = "tcp"; interval = "300ms"; timeout = "500ms"; rise = 2; fall = 2; }; } );
		relays = ( { name = "relay1"; address = "10.79.2.21"; },
			{ name = "relay2"; address = "10.79.2.22"; weight = $1; } );
	};
	EOF
}

# weight DEST: the destination's weight in the VIP's service, empty if absent.
weight() { ip netns exec dir ipvsadm -Ln -t "$VIP" 2>/dev/null | awk -v d="$1" '$1 == "->" && $2 == d { print $4 }'; }
weight_is() { [ "$(weight "$1")" = "$2" ]; }
absent() { [ -z "$(weight "$1")" ]; }

start_listener() {   # NS: echo server on 8025 that names its relay, its pid in LPID_<NS>
	rm -f "$S/$1.ready"
	ip netns exec "$1" "$T" id-server 8025 "$1" "$S/$1.ready" &
	SYS_PIDS+=($!)
	eval "LPID_$1=$!"
	sys_wait_for 5000 "$1 listening" test -e "$S/$1.ready"
}

start_director() {   # LOGNAME
	ip netns exec dir "$D" -d -f "$CONF" >>"$S/$1" 2>&1 &
	DPID=$!
	SYS_PIDS+=($DPID)
	sys_wait_for 5000 "director control socket" test -S "$S/director.sock"
}

start_listener rs1 && start_listener rs2
sys_check listeners_ready $?

write_conf 50
"$D" -n -f "$CONF" >/dev/null
sys_check config_valid $?

start_director director1.log
sys_check director_started $?
sys_wait_for 8000 "both relays in IPVS after rise" eval 'weight_is $R1 100 && weight_is $R2 50'
sys_check relays_added_after_rise $? "$(ip netns exec dir ipvsadm -Ln | tr '\n' '|')"
ip netns exec dir ipvsadm -Ln | grep -q "TCP  $VIP rr"
sys_check service_created_with_scheduler $?
ip netns exec dir ipvsadm -L --timeout | grep -q '(tcp tcpfin udp): 1860 120'
sys_check ipvs_tcp_timeout_1860 $? "$(ip netns exec dir ipvsadm -L --timeout)"

ip netns exec client "$T" id-count 10.79.1.10 8025 4 | grep -qx 'ids rs[12]=2 rs[12]=2'
sys_check traffic_through_vip $?

ip netns exec dir ipvsadm -e -t "$VIP" -r "$R1" -m -w 5
sys_wait_for 4000 "weight put back" weight_is "$R1" 100
sys_check manual_weight_change_is_put_back $?

ip netns exec dir ipvsadm -d -t "$VIP" -r "$R2"
sys_wait_for 4000 "deleted destination put back" weight_is "$R2" 50
sys_check manual_delete_is_put_back $?

ip netns exec dir ipvsadm -a -t "$VIP" -r 10.79.2.99:8025 -m -w 10
sys_wait_for 4000 "unlisted destination removed" absent 10.79.2.99:8025
sys_check unlisted_destination_is_drained_out $?

# Operator drain: weight 0 at once; relay1 still has inactive (TIME_WAIT) entries from the
# traffic above, so it stays until they end or drain_timeout (3 s here) passes.
"$CTL" -f "$CONF" director drain relay1 echo >"$S/drain.out"
sys_check mailplexctl_drain_ok $?
sys_wait_for 3000 "relay1 at weight 0" eval 'weight_is $R1 0 || absent $R1'
sys_check drain_sets_weight_zero_first $? "$(weight "$R1")"
"$CTL" -f "$CONF" director status >"$S/status.out"
rc=$?
grep -Eq '^  relay1 +10\.79\.2\.21:8025 +(0 +draining|- +drained)' "$S/status.out"
sys_check status_shows_draining_relay $((rc + $?)) "$(tr '\n' '|' <"$S/status.out")"
sys_wait_for 6000 "relay1 deleted at the drain deadline" absent "$R1"
sys_check drained_relay_leaves_ipvs $?
"$CTL" -f "$CONF" director status >"$S/status.out"
grep -Eq '^  relay1 +10\.79\.2\.21:8025 +- +drained' "$S/status.out"
sys_check status_shows_drained_relay $? "$(tr '\n' '|' <"$S/status.out")"
# The short form the operators use: drain and undrain are the director's.
"$CTL" -f "$CONF" undrain relay1
sys_check mailplexctl_undrain_ok $?
sys_wait_for 4000 "relay1 back" weight_is "$R1" 100
sys_check undrained_relay_returns $?
"$CTL" -f "$CONF" director drain relay9 2>/dev/null
[ $? = 1 ]
sys_check mailplexctl_unknown_relay_exits_1 $?

# A dead listener: two failed checks, then drained out; back after two passing ones.
kill "$LPID_rs2"
sys_wait_for 5000 "relay2 drained after its check fell" absent "$R2"
sys_check failing_relay_is_drained $?
grep -q 'relay relay2 in service echo: check down' "$S/director1.log"
sys_check check_down_logged $?
start_listener rs2
sys_wait_for 5000 "relay2 back after rise" weight_is "$R2" 50
sys_check recovered_relay_returns $?

# Reload: a broken file changes nothing; a valid one changes relay2's weight.
cp "$CONF" "$S/good.conf"
echo 'director = { nonsense = 1; };' >"$CONF"
kill -HUP "$DPID"
sys_wait_for 3000 "bad reload refused" grep -q 'keeping the running configuration' "$S/director1.log"
sys_check bad_reload_keeps_running_config $?
kill -0 "$DPID" && weight_is "$R2" 50
sys_check director_alive_after_bad_reload $?
write_conf 30
kill -HUP "$DPID"
sys_wait_for 4000 "reloaded weight" weight_is "$R2" 30
sys_check reload_applies_new_weight $?

# Restart: an established connection's IPVS entry survives, it still carries data, and
# nothing is re-added. conn-hold obeys "ping N" / "close" written to its FIFO.
H=$S/hold
mkdir -p "$H"
sys_bg ip netns exec client "$T" conn-hold 10.79.1.10 8025 30000 "$H"
sys_wait_for 5000 "held connection" test -s "$H/id"
sys_check held_connection_open $?
hold_ping() {   # N
	local fd
	exec {fd}<>"$H/ctl" && echo "ping $1" >&"$fd" && exec {fd}>&-
	sys_wait_for 6000 "echo of ping $1" grep -qx "pong $1" "$H/log"
}
hold_ping 1
sys_check held_connection_echoes $?
conns() { ip netns exec dir ipvsadm -Lnc | awk '$3 == "ESTABLISHED" { print $4, $5, $6 }' | sort; }
before=$(conns)
[ -n "$before" ]
sys_check established_entry_seen $? "$before"
kill -TERM "$DPID"
wait "$DPID" 2>/dev/null
rc=$?
[ "$rc" = 0 ] && weight_is "$R1" 100 && weight_is "$R2" 30
sys_check stop_leaves_table $? "rc=$rc $(ip netns exec dir ipvsadm -Ln | tr '\n' '|')"
start_director director2.log
sys_check director_restarted $?
sys_snooze 3   # several reconcile passes and check rounds
after=$(conns)
[ -n "$after" ] && [ "$before" = "$after" ]
sys_check established_entry_survives_restart $? "before=[$before] after=[$after]"
weight_is "$R1" 100 && weight_is "$R2" 30
sys_check restart_keeps_weights $?
hold_ping 2
sys_check established_connection_echoes_after_restart $? "$(tr '\n' ' ' <"$H/log")"
! grep -Eq 'ipvs: (service|destination) (add|edit|delete)' "$S/director2.log"
sys_check restart_changes_nothing $? "$(grep 'ipvs:' "$S/director2.log" | head -3)"

sys_log "director logs:"
sed 's/^/  1| /' "$S/director1.log" | tail -n 40
sed 's/^/  2| /' "$S/director2.log" | tail -n 20
sys_finish
