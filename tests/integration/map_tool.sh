#!/bin/sh
# mailplex-map end to end: compile the shipped conf/mailplex.map, look addresses up, refuse
# a broken source without touching the compiled map, round-trip dump, import the three
# legacy formats into sources that compile. Usage: map_tool.sh BIN_DIR
set -u
bin=$1/mailplex-map
top=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() {
	echo "FAIL: $*" >&2
	fails=$((fails + 1))
}

# expect ADDRESS EXIT_CODE PATTERN: lookup exits so and prints a line matching PATTERN.
expect() {
	"$bin" lookup "$tmp/map.db" "$1" >"$tmp/out" 2>&1
	rc=$?
	[ "$rc" -eq "$2" ] || fail "lookup $1: exit $rc, expected $2: $(cat "$tmp/out")"
	grep -Eq -- "$3" "$tmp/out" || fail "lookup $1: no line matching '$3': $(cat "$tmp/out")"
}

"$bin" compile "$top/conf/mailplex.map" "$tmp/map.db" >"$tmp/out" 2>&1 ||
	fail "compile conf/mailplex.map: $(cat "$tmp/out")"
grep -q "version [0-9]*: 2 backends, 2 domains, 5 users, 2 aliases, 3 rules" "$tmp/out" ||
	fail "compile summary: $(cat "$tmp/out")"

expect john@bigisp.com 0 '^  deliver fritz$'         # per-user override (j is in a-k)
expect alison 0 '^  via user alison@bigisp.com'      # bare name, per-user override
expect bob@bigisp.com 0 '^  deliver alf$'            # a-k rule
expect bob@bigisp.com 0 '^  via rule a-k \(.*mailplex.map:[0-9]+\)$'
expect zed@bigisp.com 0 '^  deliver fritz$'          # l-z rule
expect 42@bigisp.com 0 '^  via rule \^\[0-9\]'       # regex rule
expect postmaster 0 '^recipient alison@bigisp.com$'  # alias, one-to-many
expect abuse@bigisp.com 0 '^recipient ops@bigisp.net$' # nested alias, second domain
expect bob+lists@bigisp.com 0 '^recipient bob@bigisp.com detail lists$'
expect JOHN@BigISP.COM 0 '^  deliver fritz$'         # upper case
expect carol 0 '^  migrating alf -> fritz$'
expect mallory 1 '^  reject "This mailbox was closed; write to help@bigisp.com"$'
expect someone@example.org 1 '^result not ours$'
expect nobody@bigisp.net 1 '^  unknown user$'
expect 'bad@@bigisp.com' 2 '^result error'
expect john@bigisp.com 0 'lmtp=10.1.0.12:24 imap=10.1.0.12:143 pop3=10.1.0.12:110 tls=on'

# A broken source: refused with file:line, the compiled map stays byte for byte.
cp "$tmp/map.db" "$tmp/map.before"
cp "$top/conf/mailplex.map" "$tmp/broken.map"
echo "user newbie nosuchbackend" >>"$tmp/broken.map"
line=$(wc -l <"$tmp/broken.map")
if "$bin" compile "$tmp/broken.map" "$tmp/map.db" >"$tmp/out" 2>&1; then
	fail "compile of a broken source succeeded"
fi
grep -q "^$tmp/broken.map:$line: undefined backend 'nosuchbackend'$" "$tmp/out" ||
	fail "broken source message: $(cat "$tmp/out")"
cmp -s "$tmp/map.db" "$tmp/map.before" || fail "map changed after a failed compile"
ls -a "$tmp" | grep -q '\.tmp\.' && fail "temp file left behind"
"$bin" check "$tmp/broken.map" >/dev/null 2>&1 && fail "check accepted a broken source"

# Versions increase; dump compiles back to the same map.
v1=$("$bin" lookup "$tmp/map.db" john | sed -n 's/^map .* version //p')
"$bin" dump "$tmp/map.db" >"$tmp/dump1.map" || fail "dump"
"$bin" compile "$tmp/dump1.map" "$tmp/map.db" >/dev/null 2>&1 || fail "compile of the dump"
v2=$("$bin" lookup "$tmp/map.db" john | sed -n 's/^map .* version //p')
[ "$v2" -gt "$v1" ] || fail "version did not increase: $v1 then $v2"
"$bin" dump "$tmp/map.db" | tail -n +2 >"$tmp/dump2.body"
tail -n +2 "$tmp/dump1.map" | cmp -s - "$tmp/dump2.body" || fail "dump -> compile -> dump differs"

# Imports: each legacy format gives a source that compiles (after the operator's
# additions, here a domain with --domain and a delivery protocol for the alias targets).
cat >"$tmp/popmap" <<'POP'
# Perdition popmap
john:mail1.bigisp.com
alison:mail2.bigisp.com:110
bob:10.1.0.13:143
POP
"$bin" import popmap "$tmp/popmap" --domain bigisp.com >"$tmp/pop.map" 2>"$tmp/err" ||
	fail "import popmap: $(cat "$tmp/err")"
"$bin" compile "$tmp/pop.map" "$tmp/pop.db" >/dev/null 2>"$tmp/err" ||
	fail "imported popmap does not compile: $(cat "$tmp/err") $(cat "$tmp/pop.map")"
"$bin" lookup "$tmp/pop.db" alison | grep -q '^  backend mail2.bigisp.com pop3=mail2.bigisp.com:110 tls=off$' ||
	fail "popmap import: alison: $("$bin" lookup "$tmp/pop.db" alison)"

cat >"$tmp/aliases" <<'AL'
# Sendmail aliases
postmaster: root
root: john,
	alison
archive: "|/usr/bin/archiver", john
AL
{
	echo "backend store lmtp=10.1.0.11:24"
	echo "domain bigisp.com default store"
	"$bin" import aliases "$tmp/aliases" 2>"$tmp/err" || fail "import aliases: $(cat "$tmp/err")"
} >"$tmp/al.map"
grep -q "$tmp/aliases:5: warning: alias 'archive'" "$tmp/err" || fail "no warning for |cmd: $(cat "$tmp/err")"
"$bin" compile "$tmp/al.map" "$tmp/al.db" >/dev/null 2>"$tmp/err" ||
	fail "imported aliases do not compile: $(cat "$tmp/err") $(cat "$tmp/al.map")"
"$bin" lookup "$tmp/al.db" postmaster | grep -q '^recipient alison@bigisp.com$' ||
	fail "aliases import: continuation line lost"

printf 'john  john@mail1.bigisp.com\nalison alison@10.1.0.12\n' >"$tmp/usermap"
"$bin" import usermap "$tmp/usermap" --domain bigisp.com >"$tmp/um.map" 2>"$tmp/err" ||
	fail "import usermap: $(cat "$tmp/err")"
"$bin" compile "$tmp/um.map" "$tmp/um.db" >/dev/null 2>"$tmp/err" ||
	fail "imported usermap does not compile: $(cat "$tmp/err")"

printf 'john mail1.bigisp.com\n' >"$tmp/badmap"
if "$bin" import usermap "$tmp/badmap" >"$tmp/out" 2>"$tmp/err"; then
	fail "import of a bad usermap succeeded"
fi
grep -q "^$tmp/badmap:1: " "$tmp/err" || fail "bad usermap message: $(cat "$tmp/err")"
[ -s "$tmp/out" ] && fail "bad usermap: partial output on stdout"

if [ "$fails" -ne 0 ]; then
	echo "map_tool.sh: $fails failure(s)" >&2
	exit 1
fi
echo "map_tool.sh: ok"
