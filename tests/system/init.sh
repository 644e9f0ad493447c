#!/bin/bash
# init.sh - PID 1 inside user-mode Linux for the system tests (booted by uml-run.sh).
# Owns the guest's mounts, module loading and the verdict file; runs each scenario
# (scenarios/NAME.sh) with a timeout. It must never exit (an exiting init panics the
# kernel), never write a host path except the one results folder, never wait unbounded.
#
# Kernel command line (UML hands unknown KEY=VALUE words to init as environment):
#   SYS_OUT      host folder for results (mounted as its own hostfs; never covered)
#   SYS_BIN      host folder of the built test programs
#   SYS_SCENARIOS  comma-separated scenario names
#   SYS_NONCE    echoed into the verdict so the host never reads a stale one
#   SYS_BUDGET   in-guest watchdog, seconds;  SYS_SCENARIO_TIMEOUT  per scenario, seconds
#   SYS_T0       host launch time ($EPOCHREALTIME), for the boot timing
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
T_INIT=${EPOCHREALTIME/./}
SRC=${0%/*}

# ------------------------------------------------------------------ mounts
# The root is the host's, read-only. Bind what we need from it before /tmp is covered
# (the source or build tree may live under the host's /tmp).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/src /run/bin /run/out /run/sys /run/netns /run/modroot/lib/modules
mount --bind "$SRC" /run/src
mount --bind "${SYS_BIN:-/nonexistent}" /run/bin
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/shm 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t hostfs -o "${SYS_OUT:-/nonexistent}" none /run/out
mount --bind /usr/lib/uml/modules /run/modroot/lib/modules

OUT=/run/out
BUDGET=${SYS_BUDGET:-100}
SCEN_TIMEOUT=${SYS_SCENARIO_TIMEOUT:-60}
declare -a LINES=()
FAILED=0

log() { printf '[init %6d ms] %s\n' $(((${EPOCHREALTIME/./} - T_INIT) / 1000)) "$*"; }
ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

poweroff_now() {
	sync
	# halt -f calls reboot(2) directly; sysrq is the fallback if it is missing or refuses.
	halt -f -p >/dev/null 2>&1
	echo o >/proc/sysrq-trigger
	while :; do sleep 60; done
}

verdict() {   # [abort reason]
	local res=PASS l
	{ [ "$FAILED" = 0 ] && [ -z "${1:-}" ]; } || res=FAIL
	{
		echo "NONCE=${SYS_NONCE:-none}"
		for l in "${LINES[@]}"; do echo "$l"; done
		[ -n "${1:-}" ] && echo "ABORT $1"
		echo "TIMING init_total_ms=$(ms_since "$T_INIT")"
		echo "RESULT=$res"
	} >"$OUT/verdict.tmp"
	mv "$OUT/verdict.tmp" "$OUT/verdict"
	log "RESULT=$res"
	poweroff_now
}

if ! mountpoint -q /run/out || ! mountpoint -q /run/bin; then
	log "results or program folder not mounted (SYS_OUT=$SYS_OUT SYS_BIN=$SYS_BIN)"
	poweroff_now
fi

# Whatever hangs, the guest powers off within BUDGET seconds with a FAIL verdict.
(
	sleep "$BUDGET"
	echo "watchdog: budget ${BUDGET}s exceeded" >/dev/console
	printf 'NONCE=%s\nABORT watchdog %ss\nRESULT=FAIL\n' "${SYS_NONCE:-none}" "$BUDGET" >"$OUT/verdict"
	poweroff_now
) &

log "init started, kernel uptime $(</proc/uptime)"
[ -n "${SYS_T0:-}" ] && LINES+=("TIMING host_launch_to_init_ms=$(((T_INIT - ${SYS_T0/./}) / 1000))")

# ------------------------------------------------------------------ modules
# The host has no /lib/modules/<uml version>: point modprobe at the UML modules, for us
# and for the kernel's own request_module() (a scheduler named by a service, ...).
t=${EPOCHREALTIME/./}
printf '#!/bin/sh\nexec /sbin/modprobe -d /run/modroot "$@"\n' >/run/modprobe
chmod +x /run/modprobe
echo /run/modprobe >/proc/sys/kernel/modprobe
modprobe -d /run/modroot -a veth bridge || verdict "modprobe veth bridge failed"
LINES+=("TIMING modprobe_ms=$(ms_since "$t")")

# ------------------------------------------------------------------ scenarios
export SYS_SRC=/run/src SYS_BIN=/run/bin SYS_MODROOT=/run/modroot
for s in ${SYS_SCENARIOS//,/ }; do
	if [[ ! $s =~ ^[a-z0-9-]+$ ]] || [ ! -r "/run/src/scenarios/$s.sh" ]; then
		LINES+=("SCENARIO $s FAIL no-such-scenario")
		FAILED=1
		continue
	fi
	export SYS_SCRATCH=/run/sys/$s
	mkdir -p "$SYS_SCRATCH"
	log "scenario $s"
	t=${EPOCHREALTIME/./}
	timeout -k 3 "$SCEN_TIMEOUT" /bin/bash "/run/src/scenarios/$s.sh" >"$OUT/$s.log" 2>&1
	rc=$?
	ms=$(ms_since "$t")
	if [ "$rc" = 0 ]; then
		LINES+=("SCENARIO $s PASS ms=$ms")
	else
		[ "$rc" = 124 ] && echo "scenario timed out after ${SCEN_TIMEOUT}s" >>"$OUT/$s.log"
		LINES+=("SCENARIO $s FAIL rc=$rc ms=$ms")
		FAILED=1
	fi
	grep -h '^TIMING ' "$OUT/$s.log" | sed "s/^TIMING /TIMING $s./" >"$SYS_SCRATCH/timings"
	while read -r l; do LINES+=("$l"); done <"$SYS_SCRATCH/timings"
	log "scenario $s rc=$rc ${ms} ms"
done
verdict
