#!/bin/bash
# tests/demo.sh - the host side of `make demo` (the Makefile has installed the packages and
# built the programs into BINDIR first). Boots user-mode Linux once with the `demo` system
# scenario (tests/system/scenarios/demo.sh): two directors under keepalived, three relays,
# two Dovecot back ends and a client, mail in through the VIP, read back over IMAP and POP3,
# a director failover and a relay drain. Streams the scenario's account of each step to
# stdout (PASS/FAIL coloured only on a terminal) and ends with one summary line.
#
#   tests/demo.sh [BINDIR [OUTBASE]]      default build/demo/bin, build/demo/system
#   exit 0 when every step passed, 1 when one failed, 2 no verdict (UML died or the bound
#   fired), 77 prerequisites missing.
#
# Bounds: the guest's watchdog powers it off with a FAIL verdict after DEMO_BUDGET_S
# (default 170 s); the host kills UML after DEMO_TIMEOUT_S (default 180 s).
# DEMO_UML_RUN replaces tests/system/uml-run.sh (tests/integration/demo_verdict.sh uses it
# to check the verdicts without a boot).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
BINDIR=${1:-build/demo/bin}
OUTBASE=${2:-build/demo/system}
BUDGET=${DEMO_BUDGET_S:-170}
TIMEOUT=${DEMO_TIMEOUT_S:-180}

if [ -t 1 ]; then
	colour() {
		sed -u -e $'s/^\\(  PASS \\)/\e[32m\\1\e[0m/' -e $'s/^\\(  FAIL \\)/\e[1;31m\\1\e[0m/' \
			-e $'s/^\\(==== Step.*\\)/\e[1m\\1\e[0m/' -e $'s/^\\(---- step [0-9]* PASS\\)/\e[32m\\1\e[0m/' \
			-e $'s/^\\(---- step [0-9]* FAIL\\)/\e[1;31m\\1\e[0m/'
	}
else
	colour() { cat; }
fi

mkdir -p "$OUTBASE" || exit 2
echo "mailplex demo: booting user-mode Linux (bounded: ${TIMEOUT} s); programs from $BINDIR"
T0=$EPOCHREALTIME
# uml-run.sh prints the streamed log, then its own result lines; keep those for the summary.
SYS_FOLLOW=1 SYS_QUIET=1 SYS_BUDGET=$BUDGET SYS_TIMEOUT=$TIMEOUT SYS_SCENARIO_TIMEOUT=$((BUDGET - 5)) \
	"${DEMO_UML_RUN:-$HERE/system/uml-run.sh}" -b "$BINDIR" -o "$OUTBASE" demo 2>&1 | tee "$OUTBASE.last" | grep --line-buffered -v '^TIMING ' | colour
RC=${PIPESTATUS[0]}
T1=$EPOCHREALTIME
WALL_S=$(((${T1/./} - ${T0/./}) / 1000000))

summary=$(grep -a '^DEMO steps=' "$OUTBASE.last" | tail -n 1)
results=$(sed -n 's/^uml-run.sh: .* results=//p' "$OUTBASE.last")
case $RC in
0) verdict="PASS" ;;
1) verdict="FAIL" ;;
2) verdict="FAIL (no verdict: user-mode Linux died or the ${TIMEOUT} s bound fired)" ;;
77) verdict="SKIPPED (prerequisites missing: run 'sudo make deps')" ;;
*) verdict="FAIL (uml-run.sh exit $RC)" ;;
esac
if [ -n "$summary" ]; then
	steps=$(sed -n 's/.* steps=\([0-9]*\).*/\1/p' <<<"$summary")
	failed=$(sed -n 's/.* failed_steps=\([0-9]*\).*/\1/p' <<<"$summary")
else
	steps="$(grep -c '^==== Step' "$OUTBASE.last") begun"
	failed="the run (it did not finish)"
fi
[ "$RC" = 0 ] || [ "$failed" != 0 ] || failed="0 of the steps, but the run did not pass"
echo
printf 'mailplex demo: %s — %s steps, failed: %s, elapsed %d s (boot included)%s\n' \
	"$verdict" "$steps" "$failed" "$WALL_S" "${results:+; logs in $results}" | colour
rm -f "$OUTBASE.last"
case $RC in 0 | 1 | 2 | 77) exit "$RC" ;; *) exit 1 ;; esac
