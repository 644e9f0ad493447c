#!/usr/bin/env python3
# A silent director for tests/integration/relay_agent.sh: receives mailplex-relay's
# datagrams on UDP, checks each one's HMAC-SHA256 under the cluster key, decodes the fields
# the test looks at (lib/cluster_msg.c's layout) and appends one line per datagram to OUT:
# "TYPE version=V map_version=N map_in_force=N", or "bad-mac". Never answers. Exits after
# SECONDS. argv: ADDR PORT KEYFILE OUT SECONDS
import hashlib
import hmac
import socket
import sys
import time

addr, port, keyfile, out, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    float(sys.argv[5])
key = bytes.fromhex(open(keyfile).read().strip())
TYPES = {1: "join", 2: "heartbeat", 3: "leave", 4: "reply"}
MAC = 32

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
end = time.monotonic() + seconds
while time.monotonic() < end:
    s.settimeout(max(0.1, end - time.monotonic()))
    try:
        d = s.recv(2048)
    except socket.timeout:
        break
    if len(d) < 83 + 3 + MAC:
        line = "short"
    elif not hmac.compare_digest(hmac.new(key, d[:-MAC], hashlib.sha256).digest(), d[-MAC:]):
        line = "bad-mac"
    else:
        version, typ = d[4], d[5]
        mv = int.from_bytes(d[75:83], "big")
        mif = int.from_bytes(d[83:91], "big") if version == 2 else 0
        line = "%s version=%d map_version=%d map_in_force=%d" % (TYPES.get(typ, "?"), version,
                                                                  mv, mif)
    with open(out, "a") as f:
        f.write(line + "\n")
