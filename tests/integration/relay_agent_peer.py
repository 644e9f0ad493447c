#!/usr/bin/env python3
# A director stand-in for tests/integration/relay_agent.sh: receives mailplex-relay's
# datagrams on UDP, checks each one's HMAC-SHA256 under the cluster key, decodes the fields
# the test looks at (lib/cluster_msg.c's layout) and appends one line per datagram to OUT:
# "TYPE version=V map_version=N map_in_force=N", or "bad-mac". Silent, except with MODE
# "drain-once": the first LEAVE gets an authentic REPLY "draining" (as from a director whose
# IPVS still sends the relay connections), and then nothing more, as if that director died.
# Exits after SECONDS. argv: ADDR PORT KEYFILE OUT SECONDS [MODE]
import hashlib
import hmac
import os
import socket
import sys
import time

addr, port, keyfile, out, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    float(sys.argv[5])
mode = sys.argv[6] if len(sys.argv) > 6 else "silent"
key = bytes.fromhex(open(keyfile).read().strip())
TYPES = {1: "join", 2: "heartbeat", 3: "leave", 4: "reply"}
MAC = 32

REPLY, DRAINING = 4, 3


def reply_draining(d):
    """A version 1 REPLY (the directors' wire format) echoing the nonce of datagram d."""
    version = d[4]
    off = 91 if version == 2 else 83
    name = d[off + 1:off + 1 + d[off]]
    fixed = bytearray(83)
    fixed[0:4] = b"MPXC"
    fixed[4], fixed[5], fixed[6] = 1, REPLY, DRAINING
    fixed[8:16] = int(time.time() * 1000).to_bytes(8, "big")
    fixed[16:32] = os.urandom(16)
    fixed[32:48] = d[16:32]
    body = bytes(fixed) + bytes([len(name)]) + name + bytes([0])
    return body + hmac.new(key, body, hashlib.sha256).digest()


answered = False
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
end = time.monotonic() + seconds
while time.monotonic() < end:
    s.settimeout(max(0.1, end - time.monotonic()))
    try:
        d, peer = s.recvfrom(2048)
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
        if mode == "drain-once" and typ == 3 and not answered:
            s.sendto(reply_draining(d), peer)
            answered = True
            line += " answered=draining"
    with open(out, "a") as f:
        f.write(line + "\n")
