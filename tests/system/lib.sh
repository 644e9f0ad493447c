# lib.sh - helpers for system-test scenarios, sourced inside user-mode Linux (or on a host
# whose kernel has IPVS). Owns the topology helpers (bridges, one network namespace per
# host), bounded waits and the PASS/FAIL lines a scenario prints. Never touches the host
# network: every address it makes lives on bridges and namespaces of the test kernel.
#
# A scenario:   . "$SYS_SRC/lib.sh"; sys_bridge br0; sys_host relay1 br0 10.77.0.21/24 ...
#               sys_check NAME $? "detail"; ...; sys_finish
# Environment (set by init.sh): SYS_SRC, SYS_BIN, SYS_SCRATCH (tmpfs), SYS_MODROOT.

SYS_FAILED=0
SYS_CHECKS=0
SYS_NETNS=()
SYS_BRIDGES=()
SYS_LINKS=()
SYS_PIDS=()
SYS_T0=${EPOCHREALTIME/./}

sys_log() {
	local now=${EPOCHREALTIME/./}
	printf '[%6d ms] %s\n' $(((now - SYS_T0) / 1000)) "$*"
}

sys_check() {   # NAME RC [detail]
	SYS_CHECKS=$((SYS_CHECKS + 1))
	if [ "$2" = 0 ]; then
		sys_log "PASS $1 ${3:-}"
	else
		SYS_FAILED=$((SYS_FAILED + 1))
		sys_log "FAIL $1 (rc $2) ${3:-}"
	fi
}

# Sleeping without a process: every fork+exec costs ~30 ms of host CPU in UML.
sys_snooze() {
	local fifo=${SYS_SCRATCH:-/tmp}/.snooze
	[ -p "$fifo" ] || mkfifo "$fifo"
	[ -n "${SYS_SNOOZE_FD:-}" ] || { exec {SYS_SNOOZE_FD}<>"$fifo"; }
	read -r -t "$1" -u "$SYS_SNOOZE_FD" _ || true
}

# TIMEOUT_MS is a ceiling for a slow machine, never a speed claim: it is multiplied by
# SYS_WAIT_SCALE (default 3; UML on a loaded CI host runs several times slower than here).
# Speeds are reported as TIMING lines and measured by the benchmarks.
sys_wait_for() {   # TIMEOUT_MS DESC CMD...   (polls every SYS_WAIT_POLL s, default 0.05)
	local to=$(($1 * ${SYS_WAIT_SCALE:-3})) desc=$2 end
	shift 2
	end=$((${EPOCHREALTIME/./} + to * 1000))
	until "$@" >/dev/null 2>&1; do
		if ((${EPOCHREALTIME/./} > end)); then
			sys_log "timeout (${to} ms) waiting for: $desc"
			return 1
		fi
		sys_snooze "${SYS_WAIT_POLL:-0.05}"
	done
}

# IPVS and the schedulers the tests use; the kernel loads others on demand through the
# modprobe wrapper init.sh installed.
sys_ipvs_load() {
	modprobe -d "${SYS_MODROOT:-/}" -a ip_vs ip_vs_rr ip_vs_wrr ip_vs_wlc
}

sys_bridge() {   # NAME: a bridge in the root namespace, no STP, no snooping delays
	ip link add "$1" type bridge stp_state 0 mcast_snooping 0 &&
		ip link set "$1" up || return 1
	SYS_BRIDGES+=("$1")
}

sys_netns() {   # NS: create it (idempotent) with lo up
	[ -e "/run/netns/$1" ] && return 0
	ip netns add "$1" && ip -n "$1" link set lo up || return 1
	SYS_NETNS+=("$1")
}

# A host on a bridge: namespace NS gets interface IFNAME (default eth0) with ADDR/PLEN,
# its peer "vh-NS-IFNAME" is enslaved to BRIDGE; GW (optional, "" for none) is the
# default route. Call again with another IFNAME for a second interface.
sys_host() {   # NS BRIDGE ADDR/PLEN [GW] [IFNAME]
	local ns=$1 br=$2 addr=$3 gw=${4:-} ifn=${5:-eth0} peer
	peer="vh-$ns-$ifn"
	if [ ${#peer} -gt 15 ]; then
		sys_log "sys_host: interface name $peer longer than 15 characters"
		return 1
	fi
	sys_netns "$ns" || return 1
	# An earlier scenario's namespace may still be dismantled by the kernel (slow in UML on
	# a loaded host) with this veth pair in it: remove it rather than fail on "File exists".
	[ -e "/sys/class/net/$peer" ] && ip link del "$peer"
	{
		echo "link add $peer type veth peer name $ifn netns $ns"
		echo "link set $peer master $br"
		echo "link set $peer up"
	} >"$SYS_SCRATCH/host.batch"
	ip -batch "$SYS_SCRATCH/host.batch" || return 1
	SYS_LINKS+=("$peer")
	{
		echo "addr add $addr dev $ifn"
		echo "link set $ifn up"
		[ -n "$gw" ] && echo "route add default via $gw"
	} >"$SYS_SCRATCH/host.batch"
	ip -n "$ns" -batch "$SYS_SCRATCH/host.batch"
}

sys_bg() {   # CMD...: a background process that sys_finish kills
	"$@" &
	SYS_PIDS+=($!)
}

# Removes what this scenario made (namespaces take their IPVS tables and veths along)
# and prints the summary; returns the scenario's exit status.
sys_finish() {
	local p ns br alive end
	for p in "${SYS_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	# Bounded: one process that outlives SIGTERM must not hold the boot until the scenario
	# timeout and leave its namespaces to break the next scenario's topology. Named in the
	# log (a daemon that does not stop on SIGTERM is worth a look), then killed.
	end=$((${EPOCHREALTIME/./} + 10000000))
	while :; do
		alive=""
		for p in "${SYS_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
		[ -z "$alive" ] && break
		if ((${EPOCHREALTIME/./} > end)); then
			for p in $alive; do
				sys_log "WARN pid $p still running 10 s after SIGTERM, killed: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)"
				kill -9 "$p" 2>/dev/null
			done
			break
		fi
		sleep 0.1
	done
	for p in "${SYS_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	# A namespace outlives `ip netns del` while the kernel still holds it (its cleanup runs
	# later, slowly in UML): deleting our end of each veth frees the names at once.
	for p in "${SYS_LINKS[@]}"; do ip link del "$p" 2>/dev/null; done
	for ns in "${SYS_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	for br in "${SYS_BRIDGES[@]}"; do ip link del "$br" 2>/dev/null; done
	sys_log "$SYS_CHECKS checks, $SYS_FAILED failed"
	[ "$SYS_FAILED" = 0 ] && [ "$SYS_CHECKS" -gt 0 ]
}
