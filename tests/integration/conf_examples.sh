#!/bin/sh
# The shipped examples stay true: conf/keepalived.conf.example is exactly what
# `mailplex-director --keepalived-conf` prints for conf/mailplex.conf (with an interface
# set and the installed paths), and every sysctl snippet names keys the kernel has.
# Usage: conf_examples.sh BINDIR
set -u
BIN=$1
TOP=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d /tmp/mailplex-conf.XXXXXX)
trap 'rm -rf "$T"' EXIT
rc=0
sed 's|# interface = "eth0";|interface = "eth0";|' "$TOP/conf/mailplex.conf" >"$T/k.conf"
if ! "$BIN/mailplex-director" -f "$T/k.conf" --keepalived-conf >"$T/gen" 2>"$T/err"; then
	cat "$T/err" >&2
	echo "FAIL: --keepalived-conf on conf/mailplex.conf" >&2
	exit 1
fi
sed "s|[^ \"]*/mailplex-director |/usr/sbin/mailplex-director |; s|$T/k.conf|/etc/mailplex/mailplex.conf|g" \
	"$T/gen" >"$T/want"
grep -v '^# An example\|^# director.vrrp.interface\|^# differs) and install' \
	"$TOP/conf/keepalived.conf.example" >"$T/have"
if diff -u "$T/have" "$T/want" >&2; then
	echo "ok: conf/keepalived.conf.example matches the generator"
else
	echo "FAIL: conf/keepalived.conf.example is stale (regenerate it, see its header)" >&2
	rc=1
fi
for f in "$TOP"/conf/sysctl-*.conf; do
	for k in $(sed -n 's/^#\{0,1\}\([a-z][a-z0-9_.]*\) = .*/\1/p' "$f"); do
		p=/proc/sys/$(echo "$k" | tr . /)
		case $k in net.ipv4.vs.*) continue ;; esac # IPVS keys exist once ip_vs is loaded
		[ -e "$p" ] || { echo "FAIL: $(basename "$f"): no such sysctl $k" >&2; rc=1; }
	done
	echo "ok: $(basename "$f") names known sysctls"
done
exit $rc
