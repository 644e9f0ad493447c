#!/bin/sh
# Runs every tests/integration/*.sh with the freshly built bin dir; non-zero if any failed.
set -u
bindir=$(cd "$1" && pwd)
cd "$(dirname "$0")/integration" || exit 2
failed=""
n=0
for t in *.sh; do
	[ -e "$t" ] || continue
	[ "$t" = lib.sh ] && continue # sourced by the tests, not one itself
	n=$((n + 1))
	echo "== integration: $t"
	if ! timeout 600 sh "./$t" "$bindir"; then
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "integration tests FAILED:$failed" >&2
	exit 1
fi
echo "integration tests: all $n passed"
