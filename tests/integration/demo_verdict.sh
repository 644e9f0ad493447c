#!/bin/sh
# demo_verdict: tests/demo.sh turns the boot's outcome into its exit status and summary
# line: every step passed -> 0 and "PASS"; a failed step -> 1 and the count of failed
# steps; no verdict (UML died, the bound fired) -> 2; a scenario that did not finish -> 1.
# The boot is replaced by a stand-in for uml-run.sh (DEMO_UML_RUN) that prints what the
# real one prints in each case; the real demo runs under `make demo`.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
DEMO=$HERE/../demo.sh
W=$(mktemp -d "${TMPDIR:-/tmp}/mailplex-demo-verdict.XXXXXX") || exit 2
trap 'rm -rf "$W"' EXIT
failed=0

cat >"$W/uml-run.sh" <<'EOF'
#!/bin/sh
# Stand-in for uml-run.sh: FAKE says what the boot did.
echo "mailplex demo: the cluster of bigisp.com"
case $FAKE in
pass | fail)
	echo "==== Step 1: one"
	echo "  PASS  a"
	echo "---- step 1 PASS (one)"
	echo "==== Step 2: two"
	if [ "$FAKE" = pass ]; then
		echo "  PASS  b"; echo "---- step 2 PASS (two)"; n=0; r=PASS; rc=0
	else
		echo "  FAIL  b"; echo "---- step 2 FAIL (two): 1 check(s) failed"; n=1; r=FAIL; rc=1
	fi
	echo "DEMO steps=2 failed_steps=$n checks=2 failed_checks=$n guest_time=1 s"
	echo "uml-run.sh: uml exit=0 wall=10 ms results=/nonexistent/run.X"
	echo "SCENARIO demo $r ms=5"
	echo "TIMING host_total_wall_ms=10"
	echo "RESULT=$r"
	exit $rc ;;
unfinished)
	echo "==== Step 1: one"
	echo "scenario timed out after 165s"
	echo "uml-run.sh: uml exit=0 wall=10 ms results=/nonexistent/run.X"
	echo "RESULT=FAIL"
	exit 1 ;;
noverdict)
	echo "uml-run.sh: uml exit=124 wall=10 ms results=/nonexistent/run.X"
	echo "uml-run.sh: NO VERDICT (guest wrote none, or a stale one); console tail:" >&2
	exit 2 ;;
esac
EOF
chmod +x "$W/uml-run.sh"

expect() {   # FAKE RC SUMMARY-REGEX
	out=$(FAKE=$1 DEMO_UML_RUN="$W/uml-run.sh" bash "$DEMO" "$W/bin" "$W/out" </dev/null 2>&1)
	rc=$?
	last=$(printf '%s\n' "$out" | tail -n 1)
	if [ "$rc" = "$2" ] && printf '%s\n' "$last" | grep -Eq "$3" &&
		! printf '%s\n' "$out" | grep -q '^TIMING ' && ! printf '%s\n' "$out" | grep -q "$(printf '\033')"; then
		echo "PASS demo_verdict_$1 (exit $rc: $last)"
	else
		echo "FAIL demo_verdict_$1: exit $rc (want $2), last line: $last"
		failed=1
	fi
}
expect pass 0 '^mailplex demo: PASS — 2 steps, failed: 0, elapsed [0-9]+ s'
expect fail 1 '^mailplex demo: FAIL — 2 steps, failed: 1, elapsed'
expect unfinished 1 '^mailplex demo: FAIL — 1 begun steps, failed: the run \(it did not finish\)'
expect noverdict 2 '^mailplex demo: FAIL \(no verdict'
exit $failed
