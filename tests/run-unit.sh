#!/bin/sh
# Runs every cmocka unit test binary; exits non-zero if any failed.
set -u
dir=$1
shift
failed=""
for t in "$@"; do
	echo "== unit: $t"
	if ! "$dir/$t"; then
		failed="$failed $t"
	fi
done
if [ -n "$failed" ]; then
	echo "unit tests FAILED:$failed" >&2
	exit 1
fi
echo "unit tests: all $# passed"
