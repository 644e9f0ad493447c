# cluster.sh - the topology and helpers both cluster scenarios share (cluster-join,
# cluster-leave), sourced after lib.sh inside user-mode Linux: a director namespace with the
# VIP, three relay namespaces with an id-server each and mailplex-relay configs (rs3's under
# another key), a client namespace, the cluster key, and helpers to start and observe them.
#
#   client .2 --br-c (10.81.0.0/24)-- dir .1 + VIP .10 ; rs1 .21, rs2 .22, rs3 .23
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
GRACE_MS=2000
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


# Both relays joined and in IPVS with their weights, traffic not checked (cluster-join does).
cluster_start_two() {
	start_server rs1 relay1 && start_server rs2 relay2 && start_director director1.log &&
		start_agent rs1 && start_agent rs2 &&
		sys_wait_for 8000 "joined relays in IPVS" eval 'weight_is $R1 100 && weight_is $R2 50'
}
