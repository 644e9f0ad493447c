#!/bin/sh
# Every systemd unit we install passes `systemd-analyze verify`: installed into a scratch
# prefix (so ExecStart= names the programs just built there), checked with the man pages
# they point to. Usage: systemd_units.sh BINDIR (unused: the units are installed from the
# tree with its own build).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
command -v systemd-analyze >/dev/null || { echo "FAIL: no systemd-analyze" >&2; exit 1; }
T=$(mktemp -d /tmp/mailplex-units.XXXXXX)
trap 'rm -rf "$T"' EXIT
if ! make -s -C "$TOP" O="$T/build" install PREFIX="$T/root" SYSCONFDIR="$T/root/etc" \
	SYSTEMDUNITDIR="$T/root/lib/systemd/system" MODULESLOADDIR="$T/root/lib/modules-load.d" \
	LOCALSTATEDIR="$T/root/var" >"$T/install.log" 2>&1; then
	cat "$T/install.log" >&2
	echo "FAIL: make install into $T/root" >&2
	exit 1
fi
rc=0
n=0
for u in "$T"/root/lib/systemd/system/*.service; do
	[ -e "$u" ] || continue
	n=$((n + 1))
	if MANPATH="$T/root/share/man" systemd-analyze verify "$u" >"$T/verify.out" 2>&1 &&
		! [ -s "$T/verify.out" ]; then
		echo "ok: $(basename "$u") verifies"
	else
		echo "FAIL: $(basename "$u"):" >&2
		cat "$T/verify.out" >&2
		rc=1
	fi
done
[ "$n" -ge 2 ] || { echo "FAIL: only $n units installed" >&2; rc=1; }
exit $rc
