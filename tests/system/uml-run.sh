#!/bin/bash
# uml-run.sh - host side of the system tests: boots user-mode Linux once with the host's
# root file system read-only (hostfs), runs the named scenarios inside (init.sh) and turns
# the guest's verdict into an exit status. It writes only a fresh folder under OUTBASE and
# never waits unbounded (timeout(1) around the whole boot).
#
#   uml-run.sh [-b BINDIR] [-o OUTBASE] SCENARIO...     e.g.  uml-run.sh ipvs-client
#   exit 0 pass, 1 fail, 2 no verdict (UML crashed or timed out), 77 prerequisites missing
#
# Environment: UML (default linux.uml), SYS_MEM (256M), SYS_TIMEOUT (host bound, 150 s),
# SYS_BUDGET (in-guest watchdog, 130 s), SYS_SCENARIO_TIMEOUT (60 s), SYS_QUIET=1,
# SYS_FOLLOW=1 (stream the scenarios' logs to stdout while they run; not printed again).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
UML=${UML:-linux.uml}
MEM=${SYS_MEM:-256M}
TIMEOUT=${SYS_TIMEOUT:-150}
BUDGET=${SYS_BUDGET:-130}
SCEN_TIMEOUT=${SYS_SCENARIO_TIMEOUT:-60}
BINDIR=build/bin
OUTBASE=build/system

while getopts b:o: opt; do
	case $opt in
	b) BINDIR=$OPTARG ;;
	o) OUTBASE=$OPTARG ;;
	*) echo "usage: $0 [-b BINDIR] [-o OUTBASE] SCENARIO..." >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "usage: $0 [-b BINDIR] [-o OUTBASE] SCENARIO..." >&2; exit 2; }
for s in "$@"; do
	if [[ ! $s =~ ^[a-z0-9-]+$ ]] || [ ! -r "$HERE/scenarios/$s.sh" ]; then
		echo "uml-run.sh: no scenario $s (have: $(cd "$HERE/scenarios" && ls | sed 's/\.sh$//' | tr '\n' ' '))" >&2
		exit 2
	fi
done

# The guest runs the host's own binaries through hostfs, so they must be here.
missing=""
command -v "$UML" >/dev/null || missing="$missing $UML(user-mode-linux)"
[ -d /usr/lib/uml/modules ] || missing="$missing /usr/lib/uml/modules(user-mode-linux)"
for b in /usr/sbin/ipvsadm:ipvsadm /usr/bin/ip:iproute2 /usr/sbin/modprobe:kmod \
	/usr/sbin/sysctl:procps /usr/bin/setpriv:util-linux /usr/bin/timeout:coreutils; do
	[ -x "${b%%:*}" ] || missing="$missing ${b%%:*}(${b#*:})"
done
[ -d "$BINDIR" ] || missing="$missing $BINDIR(run make first)"
if [ -n "$missing" ]; then
	echo "uml-run.sh: SKIP, missing:$missing (make deps installs the packages)" >&2
	exit 77
fi

BINDIR=$(cd "$BINDIR" && pwd)
mkdir -p "$OUTBASE" || exit 2
OUTBASE=$(cd "$OUTBASE" && pwd)
RUNDIR=$(mktemp -d "$OUTBASE/run.XXXXXX") || exit 2
mkdir -p "$RUNDIR/uml"
# The kernel command line splits on blanks; our paths must not have any.
for p in "$HERE" "$BINDIR" "$RUNDIR"; do
	case $p in *[[:space:]]*) echo "uml-run.sh: path with blanks: $p" >&2; exit 2 ;; esac
done
NONCE=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
SCEN=$(IFS=,; echo "$*")

T0=$EPOCHREALTIME
# UML's memory file goes to TMPDIR (tmpfs), its mconsole socket to uml_dir (not ~/.uml).
# timeout signals UML, which stops its helper processes itself; -k 5 follows with SIGKILL.
TMPDIR=/dev/shm timeout -k 5 "$TIMEOUT" "$UML" \
	mem="$MEM" rootfstype=hostfs rootflags=/ ro quiet \
	init="$HERE/init.sh" \
	con=null con0=fd:0,fd:1 \
	umid="mailplex-sys-$$" uml_dir="$RUNDIR/uml" \
	SYS_OUT="$RUNDIR" SYS_BIN="$BINDIR" SYS_NONCE="$NONCE" SYS_T0="$T0" \
	SYS_BUDGET="$BUDGET" SYS_SCENARIO_TIMEOUT="$SCEN_TIMEOUT" SYS_SCENARIOS="$SCEN" \
	</dev/null >"$RUNDIR/console.log" 2>&1 &
UMLPID=$!
FOLLOW=${SYS_FOLLOW:-0}
if [ "$FOLLOW" = 1 ]; then
	# The guest writes each log through hostfs as it goes; tail ends once UML has (--pid),
	# after a last read.
	for s in "$@"; do
		tail -q -n +1 -s 0.2 -F --pid="$UMLPID" "$RUNDIR/$s.log" 2>/dev/null
	done
fi
wait "$UMLPID"
UMLRC=$?
T1=$EPOCHREALTIME
TOTAL_MS=$(((${T1/./} - ${T0/./}) / 1000))
rm -rf "$RUNDIR/uml"

[ "${SYS_QUIET:-0}" = 1 ] || grep -a '^\[init' "$RUNDIR/console.log"
echo "uml-run.sh: uml exit=$UMLRC wall=${TOTAL_MS} ms results=$RUNDIR"
V="$RUNDIR/verdict"
if [ ! -s "$V" ] || ! grep -qx "NONCE=$NONCE" "$V"; then
	echo "uml-run.sh: NO VERDICT (guest wrote none, or a stale one); console tail:" >&2
	tail -n 30 "$RUNDIR/console.log" >&2
	for s in "$@"; do [ -s "$RUNDIR/$s.log" ] && { echo "----- $s.log" >&2; tail -n 40 "$RUNDIR/$s.log" >&2; }; done
	exit 2
fi
grep -E '^(SCENARIO|TIMING|ABORT)' "$V"
echo "TIMING host_total_wall_ms=$TOTAL_MS"
if grep -qx 'RESULT=PASS' "$V"; then
	echo "RESULT=PASS"
	exit 0
fi
failed=$(awk '$1 == "SCENARIO" && $3 == "FAIL" { print $2 }' "$V")
[ "$FOLLOW" = 1 ] || for s in $failed; do
	echo "----- $s.log"
	cat "$RUNDIR/$s.log" 2>/dev/null
done
# Last, so that the tail of a long CI log names what failed.
for s in $failed; do
	grep -E '\] (FAIL|timeout) ' "$RUNDIR/$s.log" 2>/dev/null | sed "s/^/$s: /"
done
echo "RESULT=FAIL"
exit 1
