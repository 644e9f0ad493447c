#!/bin/bash
# vrrp: two mailplex-directors, each under keepalived with the keepalived.conf that
# `mailplex-director --keepalived-conf` prints (VRRPv3, advert 100 ms), in front of two DR
# relays (echo listeners). Proves: keepalived accepts the printed config; one director
# becomes MASTER and both directors' status shows keepalived's state from the notify FIFO;
# both run a master and a backup sync daemon; the VIP answers; an established connection
# through the VIP keeps echoing after the master's keepalived is stopped (the VIP moves,
# IPVS sync carried the connection). Prints the failover time as a TIMING line.
#
#   client .2, dira .1 (prio 150), dirb .3 (prio 100), rs1 .21, rs2 .22 (VIP on lo);
#   all on br-v (10.81.0.0/24), VIP 10.81.0.10 held by keepalived.
. "$SYS_SRC/lib.sh"
T=$SYS_BIN/ipvs_client_test
D=$SYS_BIN/mailplex-director
CTL=$SYS_BIN/mailplexctl
S=$SYS_SCRATCH
VIPA=10.81.0.10
PORT=8025
VIP=$VIPA:$PORT

for b in "$T" "$D" "$CTL"; do
	[ -x "$b" ] || { sys_log "missing $b (make all noinst)"; sys_check programs_built 1; sys_finish; exit 1; }
done
command -v keepalived >/dev/null || { sys_log "keepalived not installed"; sys_check keepalived_installed 1; sys_finish; exit 1; }
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }

relay_dr_setup() {   # NS: DR prerequisites before the VIP goes on lo
	ip netns exec "$1" sysctl -qw net.ipv4.conf.all.arp_ignore=1 \
		net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.eth0.arp_ignore=1 \
		net.ipv4.conf.eth0.arp_announce=2 &&
		ip -n "$1" addr add "$VIPA/32" dev lo
}
sys_bridge br-v &&
	sys_host dira br-v 10.81.0.1/24 &&
	sys_host dirb br-v 10.81.0.3/24 &&
	sys_host client br-v 10.81.0.2/24 &&
	sys_host rs1 br-v 10.81.0.21/24 &&
	sys_host rs2 br-v 10.81.0.22/24 &&
	relay_dr_setup rs1 && relay_dr_setup rs2
sys_check vrrp_topology $? || { sys_finish; exit 1; }

write_conf() {   # NAME PRIORITY SYNCID PEER_SYNCID
	cat >"$S/$1.conf" <<-EOF
	log_level = "debug";
	director = {
		control = "$S/$1.sock";
		reconcile_interval = "1s";
		vrrp = { interface = "eth0"; router_id = 81; priority = $2; advert_interval = "100ms";
			preempt = true; fifo = "$S/$1.fifo"; };
		sync = { interface = "eth0"; syncid = $3; peer_syncid = $4; };
		services = ( { name = "echo"; vip = "$VIP"; scheduler = "rr";
			check = { type = "tcp"; interval = "300ms"; timeout = "500ms"; rise = 1; fall = 2; }; } );
		relays = ( { name = "relay1"; address = "10.81.0.21"; },
			{ name = "relay2"; address = "10.81.0.22"; } );
	};
	EOF
}
write_conf dira 150 1 2
write_conf dirb 100 2 1

for r in rs1 rs2; do
	rm -f "$S/$r.ready"
	sys_bg ip netns exec "$r" "$T" id-server "$PORT" "$r" "$S/$r.ready"
done
sys_wait_for 5000 "relays listening" eval 'test -e "$S/rs1.ready" && test -e "$S/rs2.ready"'
sys_check listeners_ready $?

for n in dira dirb; do
	sys_bg ip netns exec "$n" "$D" -d -f "$S/$n.conf" >>"$S/director-$n.log" 2>&1
done
sys_wait_for 5000 "both control sockets" eval 'test -S "$S/dira.sock" && test -S "$S/dirb.sock"'
sys_check directors_started $?
[ -p "$S/dira.fifo" ] && [ -p "$S/dirb.fifo" ]
sys_check directors_made_notify_fifos $?

ok=0
for n in dira dirb; do
	"$D" --keepalived-conf -f "$S/$n.conf" >"$S/ka-$n.conf" && ip netns exec "$n" keepalived -t -f "$S/ka-$n.conf" >>"$S/ka-t.log" 2>&1 || ok=1
done
sys_check keepalived_accepts_printed_conf $ok "$(tr '\n' '|' <"$S/ka-t.log" | head -c 300)"
grep -q 'vrrp_version 3' "$S/ka-dira.conf" && grep -q "track_script" "$S/ka-dira.conf" &&
	grep -q "$VIPA/32 dev eth0" "$S/ka-dira.conf"
sys_check printed_conf_has_vrrp3_vip_and_track_script $?
"$D" --health -f "$S/dira.conf"
sys_check director_health_ok $?

ka_start() {   # NAME
	ip netns exec "$1" keepalived --vrrp --dont-fork --log-console --log-detail --no-syslog \
		-f "$S/ka-$1.conf" -p "$S/$1.ka.pid" -r "$S/$1.vrrp.pid" -c "$S/$1.chk.pid" \
		>"$S/keepalived-$1.log" 2>&1 &
	SYS_PIDS+=($!)
	eval "KA_$1=$!"
}
status_has() {   # NAME REGEX
	"$CTL" -f "$S/$1.conf" director status >"$S/status-$1.out" 2>&1 && grep -Eq "$2" "$S/status-$1.out"
}
vip_on() { [[ $(ip -n "$1" -4 -o addr show dev eth0) == *" $VIPA/"* ]]; }

ka_start dira
sys_wait_for 8000 "dira MASTER in its status" status_has dira '^vrrp: instance mailplex_v4 MASTER'
sys_check dira_master_in_status $? "$(tr '\n' '|' <"$S/status-dira.out" | head -c 400)"
ka_start dirb
sys_wait_for 8000 "dirb BACKUP in its status" status_has dirb '^vrrp: instance mailplex_v4 BACKUP'
sys_check dirb_backup_in_status $? "$(tr '\n' '|' <"$S/status-dirb.out" | head -c 400)"
# keepalived writes the FIFO line and adds the address in separate steps: wait for both.
sys_wait_for 5000 "VIP on dira only" eval 'vip_on dira && ! vip_on dirb'
sys_check vip_on_master_only $?

status_has dira '^sync: master daemon, syncid 1 on eth0' && status_has dira '^sync: backup daemon, syncid 2 on eth0' &&
	status_has dirb '^sync: master daemon, syncid 2 on eth0' && status_has dirb '^sync: backup daemon, syncid 1 on eth0'
sys_check sync_daemons_master_and_backup_on_both $? "$(grep sync: "$S/status-dirb.out" | tr '\n' '|')"
ip netns exec dira ipvsadm -L --daemon | grep -q 'master sync daemon'
sys_check kernel_runs_sync_daemons $? "$(ip netns exec dira ipvsadm -L --daemon | tr '\n' '|')"

ip -n client neigh flush all 2>/dev/null
sys_wait_for 6000 "relays in dira's IPVS" eval 'ip netns exec client "$T" id-count $VIPA $PORT 4 | grep -qx "ids rs[12]=2 rs[12]=2"'
sys_check vip_answers_through_both_relays $?

# An established connection, old enough (> 3 s) for the sync daemon to have sent it.
H=$S/hold
mkdir -p "$H"
sys_bg ip netns exec client "$T" conn-hold "$VIPA" "$PORT" 30000 "$H"
sys_wait_for 5000 "held connection" test -s "$H/id"
sys_check held_connection_open $?
hold_ping() {   # N
	local fd
	exec {fd}<>"$H/ctl" && echo "ping $1" >&"$fd" && exec {fd}>&-
	sys_wait_for 6000 "echo of ping $1" grep -qx "pong $1" "$H/log"
}
hold_ping 1
sys_check held_connection_echoes $?
synced() { ip netns exec dirb ipvsadm -Lnc | grep -q "ESTABLISHED.*$VIP"; }
sys_wait_for 8000 "connection synced to dirb" synced
sys_check connection_synced_to_backup $? "$(ip netns exec dirb ipvsadm -Lnc | tr '\n' '|')"
sys_snooze 1

# Failover: stop the master's keepalived (it releases the VIP and sends priority 0).
t0=${EPOCHREALTIME/./}
kill -TERM "$KA_dira"
sys_wait_for 10000 "VIP gone from dira" eval '! vip_on dira'
t1=${EPOCHREALTIME/./}
sys_wait_for 10000 "VIP answering via dirb" eval 'vip_on dirb && ip netns exec client "$T" id-count $VIPA $PORT 1 | grep -q "^ids rs"'
rc=$?
t2=${EPOCHREALTIME/./}
sys_check vip_moved_to_dirb $rc
echo "TIMING vrrp_failover_ms=$(((t2 - t0) / 1000))"
echo "TIMING vrrp_vip_gone_from_a_ms=$(((t1 - t0) / 1000))"
hold_ping 2
sys_check established_connection_survives_failover $? "$(tr '\n' ' ' <"$H/log")"
sys_wait_for 4000 "dirb MASTER in its status" status_has dirb '^vrrp: instance mailplex_v4 MASTER'
sys_check dirb_master_in_status $? "$(tr '\n' '|' <"$S/status-dirb.out" | head -c 400)"

sys_log "logs:"
grep -h 'vrrp:\|sync:' "$S/director-dira.log" "$S/director-dirb.log" | tail -n 20
tail -n 15 "$S/keepalived-dira.log" "$S/keepalived-dirb.log"
sys_finish
