#!/bin/bash
# ipvs-client: director/ipvs against the real kernel IPVS. Without IPVS first (open must
# say so), then every call in a director namespace (services v4/v6/fwmark with DR, NAT
# and TUN destinations, errno semantics, timeouts, sync daemons, a pipelined batch),
# without CAP_NET_ADMIN, and 64-bit stats after real traffic through a NAT service.
#
#   client 10.78.1.2 --br-c-- 10.78.1.1 [dir: IPVS, forwards] 10.78.2.1 --br-s-- 10.78.2.2 rs
. "$SYS_SRC/lib.sh"
T=$SYS_BIN/ipvs_client_test

if [ -d /sys/module/ip_vs ]; then
	sys_log "ip_vs already loaded: the not-available check needs a kernel without it, skipped"
else
	# No autoload either: the kernel's request_module must fail for this one call.
	old=$(</proc/sys/kernel/modprobe)
	echo /bin/false >/proc/sys/kernel/modprobe
	"$T" unavailable
	sys_check open_without_ipvs_reports_not_available $?
	echo "$old" >/proc/sys/kernel/modprobe
fi
sys_ipvs_load
sys_check ipvs_modules_loaded $? || { sys_finish; exit 1; }

sys_bridge br-c && sys_bridge br-s &&
	sys_host dir br-c 10.78.1.1/24 "" eth0 &&
	sys_host dir br-s 10.78.2.1/24 "" eth1 &&
	sys_host client br-c 10.78.1.2/24 10.78.1.1 &&
	sys_host rs br-s 10.78.2.2/24 10.78.2.1 &&
	ip netns exec dir sysctl -qw net.ipv4.ip_forward=1
sys_check topology $? || { sys_finish; exit 1; }

ip netns exec dir "$T" api eth0
sys_check api $?

# nobody, no capabilities: the kernel refuses every IPVS command (GENL_ADMIN_PERM).
ip netns exec dir setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
	--bounding-set=-all "$T" eperm
sys_check unprivileged_is_eperm $?

sys_bg ip netns exec rs "$T" echo-server 8025 "$SYS_SCRATCH/echo.ready"
sys_wait_for 5000 "echo server in rs" test -e "$SYS_SCRATCH/echo.ready"
sys_check echo_server_ready $?
ip netns exec dir "$T" nat-setup 10.78.1.1 8025 10.78.2.2 8025
sys_check nat_setup $?
ip netns exec client "$T" echo-client 10.78.1.1 8025 1000 3
sys_check traffic_through_nat_vip $?
# One more connection stays open (ESTABLISHED: an active connection on the dest).
sys_bg ip netns exec client "$T" echo-hold 10.78.1.1 8025 15000 "$SYS_SCRATCH/hold.ready"
sys_wait_for 5000 "held connection" test -e "$SYS_SCRATCH/hold.ready"
sys_check held_connection_open $?
ip netns exec dir "$T" nat-check 10.78.1.1 8025 10.78.2.2 8025 4 3000 1
sys_check nat_stats $?

sys_finish
