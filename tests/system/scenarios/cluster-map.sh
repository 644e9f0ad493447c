#!/bin/bash
# cluster-map: map distribution. Proves: `mailplexctl map publish` compiles the director's
# source and every joined relay's mailplex-relay fetches the new map.db (same version,
# and a user the new source re-routes resolves to the new back end on each relay, with
# mailplex-map lookup on each relay's DB, and on relay1 through a real mailplex-proxy:
# an IMAP login lands on the new back end, a scripted IMAP server); an independent client
# with the cluster key receives header + DB, one with another key gets nothing; a relay
# that cannot install (its map folder read-only) lags past map_max_lag and is drained, and
# once writable it catches up and returns to IPVS. Topology: tests/system/cluster.sh.
. "$SYS_SRC/lib.sh"
. "$SYS_SRC/cluster.sh"
M=$SYS_BIN/mailplex-map
MAX_LAG_MS=1500
[ -x "$M" ] || { sys_check mailplex_map_built 1; sys_finish; exit 1; }

mkdir -p "$S/dir" "$S/rs1" "$S/rs2"
sed -i -e "s|map = { db = \"$S/none.db\"; };|map = { source = \"$S/map.source\"; db = \"$S/dir/map.db\"; };|" \
	-e 's|cluster_listen = "10.81.0.1:7945";|cluster_listen = "10.81.0.1:7945"; map_listen = "10.81.0.1:7946";|' "$CONF"
relay_conf rs1 relay1 10.81.0.21 100 "$KEY"
relay_conf rs2 relay2 10.81.0.22 50 "$KEY"
for r in rs1 rs2; do
	sed -i -e "s|^map = {.*|map = { db = \"$S/$r/map.db\"; reload_check = \"100ms\"; };|" \
		-e "s|^relay = {|relay = { map_max_lag = \"${MAX_LAG_MS}ms\";|" "$S/$r.conf"
done
# relay1 also runs mailplex-proxy (as nobody: its folder must be readable).
chmod 755 "$S/rs1"
cat >>"$S/rs1.conf" <<EOF
user = "nobody";
proxy = { imap = [ "10.81.0.21:1143" ]; workers = 1; allow_plaintext_login = true;
	control = "$S/proxy.sock"; backend_connect_timeout = "2s"; backend_down = "100ms"; };
EOF
"$D" -n -f "$CONF" >/dev/null && "$A" -n -f "$S/rs1.conf" >/dev/null
sys_check map_configs_valid $?

source_with() {   # ALICE_BACKEND [EXTRA LINE]
	cat >"$S/map.source.new" <<EOF2
backend storeA lmtp=10.81.0.31:24 imap=10.81.0.31:143 tls=off
backend storeB lmtp=10.81.0.32:24 imap=10.81.0.32:143 tls=off
domain example.test
user alice $1
${2:-}
rule a-z storeA
EOF2
	mv "$S/map.source.new" "$S/map.source"
}
routes() {   # NS_DIR BACKEND: alice resolves to BACKEND in that relay's map.db
	"$M" lookup "$S/$1/map.db" alice@example.test 2>/dev/null | grep -q "^  deliver $2\$"
}
db_version() { "$M" lookup "$S/$1/map.db" x@example.test 2>/dev/null | sed -n 's/^map .* version //p'; }

# Two back ends on one host: a scripted IMAP server that names itself in its LOGIN answer.
sys_host store br-c 10.81.0.31/24 && ip -n store addr add 10.81.0.32/24 dev eth0
sys_check store_host $?
cat >"$S/imapd.py" <<'EOF2'
import re, socket, sys, threading
def serve(s, name):
    while True:
        c, _ = s.accept()
        try:
            f = c.makefile("rb")
            c.sendall(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] " + name + b" ready\r\n")
            line = f.readline()
            tag = line.split()[0]
            for _ in range(4):
                m = re.search(rb"\{(\d+)(\+?)\}\r\n$", line)
                if not m:
                    break
                if not m.group(2):
                    c.sendall(b"+ go\r\n")
                f.read(int(m.group(1)))
                line = f.readline()
            c.sendall(tag + b" OK [" + name + b"] logged in\r\n")
            f.readline()
        except Exception:
            pass
        c.close()
for addr, name in (("10.81.0.31", b"storeA"), ("10.81.0.32", b"storeB")):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 143))
    s.listen(16)
    threading.Thread(target=serve, args=(s, name), daemon=True).start()
open(sys.argv[1], "w").close()
threading.Event().wait()
EOF2
cat >"$S/login.py" <<'EOF2'
import socket
s = socket.create_connection(("10.81.0.21", 1143), timeout=5)
f = s.makefile("rb")
f.readline()
s.sendall(b"a1 LOGIN alice@example.test secret\r\n")
while True:
    l = f.readline()
    if not l or l.startswith(b"a1 "):
        break
print(l.decode().strip())
s.sendall(b"a2 LOGOUT\r\n")
EOF2
ip netns exec store "$PY" "$S/imapd.py" "$S/imapd.ready" &
SYS_PIDS+=($!)
sys_wait_for 5000 "scripted IMAP back ends" test -e "$S/imapd.ready"
sys_check imap_backends_listening $?
login_lands() { ip netns exec client "$PY" "$S/login.py" 2>&1 | grep -q "^a1 OK \[$1\] logged in"; }

source_with storeA
cluster_start_two
sys_check two_relays_joined $? "$(ip netns exec dir ipvsadm -Ln | tr '\n' '|')"
[ ! -e "$S/rs1/map.db" ] && "$CTL" -f "$CONF" director status | grep -q '^map: none published'
sys_check nothing_published_at_first $?

# ---- First publish: both relays install it.
out=$("$CTL" -f "$CONF" map publish)
sys_check publish_compiles_the_source $? "$out"
v1=$(db_version dir)
sys_wait_for 5000 "both relays on version $v1" eval '[ "$(db_version rs1)" = "$v1" ] && [ "$(db_version rs2)" = "$v1" ]'
sys_check first_map_reaches_every_relay $? "director $v1, relay1 $(db_version rs1), relay2 $(db_version rs2)"
ip netns exec rs1 "$SYS_BIN/mailplex-proxy" -d -f "$S/rs1.conf" >"$S/proxy.log" 2>&1 &
SYS_PIDS+=($!)
sys_wait_for 5000 "proxy routes alice to storeA" login_lands storeA
sys_check proxy_routes_by_first_map $? "$(ip netns exec client "$PY" "$S/login.py" 2>&1 | tail -n 1) $(tail -n 2 "$S/proxy.log" | tr '\n' '|')"

# ---- A re-routed user: the change reaches every relay; timed from the publish command.
source_with storeB
t0=${EPOCHREALTIME/./}
out=$("$CTL" -f "$CONF" map publish)
rc=$?
sys_wait_for 5000 "alice on storeB at both relays" eval 'routes rs1 storeB && routes rs2 storeB'
rc2=$?
t1=${EPOCHREALTIME/./}
[ $rc = 0 ] && [ $rc2 = 0 ]
sys_check rerouted_user_follows_on_every_relay $? "$out"
echo "TIMING map_publish_to_all_relays_ms=$(((t1 - t0) / 1000))"
v2=$(db_version dir)
[ "$(db_version rs1)" = "$v2" ] && [ "$(db_version rs2)" = "$v2" ] && [ "$v2" != "$v1" ]
sys_check relays_run_the_published_version $? "v1 $v1 v2 $v2"
sys_wait_for 3000 "proxy routes alice to storeB" login_lands storeB
sys_check proxy_login_follows_the_new_map $? "$(ip netns exec client "$PY" "$S/login.py" 2>&1 | tail -n 1)"
grep -q "map: version $v2 sent to relay relay1 (10.81.0.21:" "$S/director1.log" &&
	grep -q "map: version $v2 from director 10.81.0.1:7945 installed in $S/rs2/map.db (.*SHA-256 checked)" "$S/agent-rs2.log"
sys_check transfers_logged_both_sides $?
# The agent's own measure: the fetch child's fork to its exit, verify and fsync included.
for r in rs1 rs2; do
	echo "TIMING map_fetch_install_${r}_ms=$(sed -n "s/.*map: version $v2 installed after \([0-9]*\) ms.*/\1/p" "$S/agent-$r.log" | head -n 1)"
done
sys_wait_for 2000 "status shows the relays on $v2" eval '"$CTL" -f "$CONF" director status | grep -q "^joined: relay2 .*map $v2)"'
st=$("$CTL" -f "$CONF" director status)
echo "$st" | grep -q "^map: version $v2 published, .* served on 10.81.0.1:7946, .* 0 joined relays behind" &&
	echo "$st" | grep -q "^joined: relay1 .*map $v2)"
sys_check status_shows_published_and_relay_versions $? "$(echo "$st" | grep -E '^(map|joined)' | tr '\n' '|')"

# ---- A source with an error is refused with file:line; the published map stays.
cp "$S/map.source" "$S/map.source.good"
echo "user carol nowhere" >>"$S/map.source"
out=$("$CTL" -f "$CONF" map publish 2>&1)
rc=$?
mv "$S/map.source.good" "$S/map.source"
[ $rc = 1 ] && echo "$out" | grep -q "map.source:[0-9]*: " && [ "$(db_version dir)" = "$v2" ]
sys_check bad_source_refused_published_map_stays $? "rc $rc: $out"

# ---- The protocol from an independent client: the cluster key gets the DB, another none.
cat >"$S/fetch.py" <<'EOF2'
import hmac, hashlib, socket, struct, sys, time, os
key = bytes.fromhex(open(sys.argv[1]).read().strip())
b = b"MPXF" + bytes([1, 1]) + struct.pack(">Q", int(time.time() * 1000)) + os.urandom(16)
b += struct.pack(">Q", 0) + b"checker".ljust(64, b"\0")
b += hmac.new(key, b, hashlib.sha256).digest()
s = socket.create_connection(("10.81.0.1", 7946), timeout=5)
s.sendall(b)
data = b""
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
if len(data) < 110:
    print("bytes", len(data)); sys.exit(0)
hdr, body = data[:110], data[110:]
ok = hmac.compare_digest(hmac.new(key, hdr[:78], hashlib.sha256).digest(), hdr[78:])
ver, length = struct.unpack(">QQ", hdr[30:46])
print("bytes", len(data), "mac", ok, "version", ver, "length", length,
      "sha", hashlib.sha256(body).digest() == hdr[46:78], "echo", hdr[14:30] == b[14:30])
EOF2
out=$(ip netns exec client "$PY" "$S/fetch.py" "$KEY" 2>&1)
echo "$out" | grep -q "mac True version $v2 length $(stat -c %s "$S/dir/map.db") sha True echo True"
sys_check cluster_key_fetch_gets_the_db $? "$out"
out=$(ip netns exec client "$PY" "$S/fetch.py" "$BADKEY" 2>&1)
[ "$out" = "bytes 0" ] &&
	sys_wait_for 2000 "refusal logged" grep -q "map: transfer to 10.81.0.2:[0-9]*: bad MAC" "$S/director1.log"
sys_check wrong_key_fetch_refused $? "$out"

# ---- A relay that cannot install lags past map_max_lag: drained, then back once fixed.
nsenter -t "$APID_rs2" -m -- mount --bind "$S/rs2" "$S/rs2" &&
	nsenter -t "$APID_rs2" -m -- mount -o remount,bind,ro "$S/rs2"
sys_check relay2_map_folder_read_only $?
source_with storeA "user bob storeB"
"$CTL" -f "$CONF" map publish >/dev/null
v3=$(db_version dir)
sys_wait_for 3000 "relay1 on $v3" eval '[ "$(db_version rs1)" = "$v3" ]'
sys_check relay1_installs_v3 $?
sys_wait_for 8000 "relay2 drained for lag" eval '"$CTL" -f "$CONF" director status | grep -q "^joined: relay2 .*leaving: not ready.*map $v2 behind)" && { absent "$R2" || weight_is "$R2" 0; }'
sys_check lagging_relay_drained $? "$(dest_row "$R2") $("$CTL" -f "$CONF" director status | grep '^joined: relay2')"
grep -q "readiness: not ready: map version $v2, the directors' $v3 for" "$S/agent-rs2.log" &&
	grep -q "map: fetch of version $v3 from director 10.81.0.1:7945 failed" "$S/agent-rs2.log"
sys_check lag_reason_logged $? "$(grep 'map:\|readiness' "$S/agent-rs2.log" | tail -n 3 | tr '\n' '|')"
[ "$(db_version rs2)" = "$v2" ] && ! ls "$S"/rs2/map.db.fetch.* >/dev/null 2>&1
sys_check lagging_relay_keeps_its_old_map $?
t0=${EPOCHREALTIME/./}
nsenter -t "$APID_rs2" -m -- umount "$S/rs2"
sys_wait_for 10000 "relay2 back with $v3" eval '[ "$(db_version rs2)" = "$v3" ] && weight_is "$R2" 50'
sys_check caught_up_relay_returns $? "$(dest_row "$R2") $(db_version rs2)"
echo "TIMING lag_fixed_to_back_in_ipvs_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))"
"$M" lookup "$S/rs2/map.db" bob@example.test | grep -q '^  deliver storeB$'
sys_check new_user_routed_on_caught_up_relay $?

sys_log "director log (map):"
grep 'map:' "$S/director1.log" | sed 's/^/  | /' | tail -n 12
sys_log "relay2 agent log (map):"
grep 'map:\|readiness' "$S/agent-rs2.log" | sed 's/^/  | /' | tail -n 10
sys_finish
