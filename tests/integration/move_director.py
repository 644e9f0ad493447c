#!/usr/bin/env python3
# A stand-in for mailplex-director's control socket in tests/integration/move.sh (this
# machine has no kernel IPVS for a real director): "map-publish" compiles the source with
# mailplex-map as the director does and answers with the new version; "map-status"
# answers "published N" and two relays: r1, admitted, whose map in force is the number in
# LAG_FILE while that file exists (else the published version), and r9, static, always 0.
# Bounded: serves at most 240 s, stops when STOP_FILE exists.
# Usage: move_director.py SOCKET MAILPLEX_MAP SOURCE DB LAG_FILE STOP_FILE
import os
import re
import socket
import subprocess
import sys
import time

path, mapbin, source, db, lag_file, stop_file = sys.argv[1:7]
published = 0
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if os.path.exists(path):
    os.unlink(path)
srv.bind(path)
srv.listen(8)
srv.settimeout(0.5)
deadline = time.monotonic() + 240
while time.monotonic() < deadline and not os.path.exists(stop_file):
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        continue
    conn.settimeout(5)
    req = b""
    try:
        while not req.endswith(b"\n") and len(req) < 512:
            d = conn.recv(512)
            if not d:
                break
            req += d
    except OSError:
        conn.close()
        continue
    words = req.decode(errors="replace").split()
    if words == ["map-publish"]:
        out = subprocess.run([mapbin, "compile", source, db], capture_output=True, text=True)
        m = re.search(r"version (\d+)", out.stdout)
        if out.returncode != 0 or m is None:
            reply = "error: %s\n" % (out.stderr.strip().splitlines() or ["compile failed"])[0]
        else:
            was, published = published, int(m.group(1))
            reply = "ok\nmap version %d published (was %d): test\n" % (published, was)
    elif words == ["map-status"]:
        in_force = published
        if os.path.exists(lag_file):
            with open(lag_file) as f:
                in_force = int(f.read().strip() or "0")
        reply = ("ok\npublished %d\nrelay r1 map_installed %d map_in_force %d state admitted\n"
                 "relay r9 map_installed 0 map_in_force 0 state static\n"
                 % (published, published, in_force))
    else:
        reply = "error: unknown command\n"
    try:
        conn.sendall(reply.encode())
    except OSError:
        pass
    conn.close()
srv.close()
os.unlink(path)
