#!/usr/bin/env python3
"""SMTP checks against a running mailplex-smtpd, with smtplib and raw sockets.

usage: smtpd_client.py CHECK HOST PORT SPOOL [ARGS...]
Each check prints what it proves and exits 0, or prints why it failed and exits 1.
Every socket has a timeout; every loop is bounded.
"""
import os
import socket
import smtplib
import ssl
import sys
import time

TIMEOUT = 10


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def ok(msg):
    print("ok: " + msg)


def decode_envelope(path):
    """Decodes the documented spool format (relay/spool.c): magic, then TAG LEN ':' BYTES ',\\n'."""
    data = open(path, "rb").read()
    magic = b"MAILPLEX-SPOOL 1\n"
    if not data.startswith(magic):
        fail("%s: no magic" % path)
    off = len(magic)
    recs = []
    for _ in range(10000):
        tag = chr(data[off])
        colon = data.index(b":", off)
        n = int(data[off + 1:colon])
        val = data[colon + 1:colon + 1 + n]
        if data[colon + 1 + n:colon + 3 + n] != b",\n":
            fail("%s: record %s not terminated" % (path, tag))
        off = colon + 3 + n
        recs.append((tag, val))
        if tag == "E":
            break
    env = {"rcpt": []}
    for tag, val in recs:
        if tag in "QSCHABUN":
            env[tag] = val.decode("utf-8")
        elif tag == "R":
            env["rcpt"].append([val.decode("utf-8")])
        elif tag in "OK":
            env["rcpt"][-1].append(val.decode("utf-8"))
    return env, data[off:]


def queue_files(spool):
    return sorted(os.listdir(os.path.join(spool, "queue")))


class Raw:
    """A raw SMTP client for what smtplib will not send (pipelined plain text, bare LF)."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), TIMEOUT)
        self.buf = b""
        self.banner = self.reply()

    def send(self, data):
        self.s.sendall(data)

    def reply(self):
        lines = []
        for _ in range(100):
            while b"\r\n" not in self.buf:
                chunk = self.s.recv(4096)
                if not chunk:
                    return (0, lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] != b"-":
                return (int(line[:3]), lines)
        fail("reply too long")

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def close(self):
        self.s.close()


def expect(code, got, what):
    if got[0] != code:
        fail("%s: expected %d, got %r" % (what, code, got))


def check_accept(host, port, spool):
    before = set(queue_files(spool))
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    code, _ = s.ehlo("client.example")
    if code != 250:
        fail("EHLO")
    for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8", "chunking",
                "starttls"):
        if not s.has_extn(ext):
            fail("EHLO lacks " + ext)
    msg = b"Subject: hello\r\n\r\nline one\r\n.leading dot\r\n"
    refused = s.sendmail("sender@example.org", ["alice@mail.test", "team@mail.test"], msg)
    if refused:
        fail("refused %r" % refused)
    s.quit()
    new = set(queue_files(spool)) - before
    if len(new) != 1:
        fail("expected one new queue file, got %r" % new)
    qid = new.pop()
    env, body = decode_envelope(os.path.join(spool, "queue", qid))
    if env["Q"] != qid or env["S"] != "sender@example.org" or env["C"] != "127.0.0.1" \
            or env["H"] != "client.example":
        fail("envelope %r" % env)
    rc = sorted(tuple(r) for r in env["rcpt"])
    want = sorted([("alice@mail.test", "alice@mail.test", "d1"),
                   ("bob@mail.test", "team@mail.test", "d2")])
    if rc != want:
        fail("recipients %r, want %r (alias team expands to alice and bob; alice once)" % (rc, want))
    if not body.startswith(b"Received: from client.example ([127.0.0.1])\r\n\tby mx.test"):
        fail("no Received: header first: %r" % body[:80])
    if not body.endswith(b"\r\n\r\nline one\r\n.leading dot\r\n"):
        fail("body not unstuffed: %r" % body[-60:])
    ok("message accepted, queue file %s decodes to the right envelope, Received: added" % qid)


def check_pipelining(host, port, spool):
    r = Raw(host, port)
    expect(250, r.cmd("EHLO pipe.example"), "EHLO")
    r.send(b"MAIL FROM:<p@example.org>\r\nRCPT TO:<alice@mail.test>\r\nRCPT TO:<nobody@else.example>\r\n"
           b"DATA\r\n")
    expect(250, r.reply(), "pipelined MAIL")
    expect(250, r.reply(), "pipelined RCPT")
    expect(550, r.reply(), "pipelined foreign RCPT")
    expect(354, r.reply(), "pipelined DATA")
    r.send(b"Subject: p\r\n\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
    got = r.reply()
    expect(250, got, "end of DATA")
    expect(250, r.reply(), "NOOP pipelined after the dot")
    expect(221, r.reply(), "QUIT")
    r.close()
    ok("PIPELINING: commands in one write answered in order, commands after the dot kept")


def check_size(host, port, spool, limit):
    limit = int(limit)
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("size.example")
    if int(s.esmtp_features["size"]) != limit:
        fail("SIZE announced %s, want %d" % (s.esmtp_features["size"], limit))
    code, text = s.mail("s@example.org", ["SIZE=%d" % (limit + 1)])
    if code != 552:
        fail("MAIL SIZE over the limit: %d %r" % (code, text))
    before = queue_files(spool)
    s.rset()
    code, _ = s.mail("s@example.org")
    s.rcpt("alice@mail.test")
    code, text = s.data(b"Subject: big\r\n\r\n" + (b"x" * 70 + b"\r\n") * (limit // 72 + 10))
    if code != 552:
        fail("DATA over the limit: %d %r" % (code, text))
    if queue_files(spool) != before:
        fail("an oversized message reached the queue")
    s.quit()
    ok("SIZE %d announced; refused at MAIL SIZE= and during DATA (552 5.3.4)" % limit)


def check_refusals(host, port, spool):
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("refuse.example")
    s.mail("s@example.org")
    cases = [
        ("user@elsewhere.example", 550, b"5.7.1"),
        ("alice%elsewhere.example@mail.test", 550, b"5.7.1"),
        ("elsewhere!alice@mail.test", 550, b"5.7.1"),
        ('"alice@elsewhere.example"@mail.test', 550, b"5.7.1"),
        ("alice@[127.0.0.1]", 550, b"5.7.1"),
        ("mallory@mail.test", 550, b"5.1.1 This mailbox was closed"),
        ("carol@mail.test", 450, b"4.2.1"),
        ("zed@mail.test", 550, b"5.1.1"),
    ]
    for addr, code, text in cases:
        got = s.rcpt(addr)
        if got[0] != code or text not in got[1]:
            fail("RCPT %s: %r, want %d %r" % (addr, got, code, text))
    got = s.docmd("RCPT TO:<@relay.example,@other.example:alice@mail.test>")
    if got[0] != 550 or b"5.7.1" not in got[1]:
        fail("source route: %r" % (got,))
    got = s.rcpt("rudi@mail.test")  # no user line: the rule routes it
    if got[0] != 250:
        fail("ruled user: %r" % (got,))
    got = s.verify("alice")
    if got[0] != 252:
        fail("VRFY: %r" % (got,))
    s.quit()
    ok("foreign domain, %-hack, bang path, quoted local part, address literal, source route: "
       "550 5.7.1; reject: 550 5.1.1 with its text; migrating: 450; unknown: 550; ruled: 250; VRFY 252")


def check_map_unreadable(host, port, spool):
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("nomap.example")
    s.mail("s@example.org")
    got = s.rcpt("alice@mail.test")
    if got[0] // 100 != 4:
        fail("RCPT without a map: %r (must be 4xx)" % (got,))
    got = s.rcpt("user@elsewhere.example")
    if got[0] // 100 != 4:
        fail("foreign RCPT without a map: %r (fail closed: 4xx)" % (got,))
    s.quit()
    ok("map unreadable: every recipient gets %d (fail closed)" % got[0])


def check_bare_lf(host, port, spool):
    before = queue_files(spool)
    for payload, what in ((b"Subject: x\r\n\r\nsmuggle\n.\r\nMAIL FROM:<evil@example.org>\r\n", "bare LF"),
                          (b"Subject: x\r\n\r\nsmuggle\r\n.\nRSET\r\n", "dot bare LF"),
                          (b"Subject: x\r\n\r\nlone\rCR\r\n.\r\n", "bare CR")):
        r = Raw(host, port)
        expect(250, r.cmd("EHLO lf.example"), "EHLO")
        expect(250, r.cmd("MAIL FROM:<s@example.org>"), "MAIL")
        expect(250, r.cmd("RCPT TO:<alice@mail.test>"), "RCPT")
        expect(354, r.cmd("DATA"), "DATA")
        r.send(payload)
        got = r.reply()
        if got[0] != 554:
            fail("%s in DATA: %r" % (what, got))
        r.close()
    if queue_files(spool) != before:
        fail("a message with a bare LF reached the queue")
    ok("bare LF, '\\r\\n.\\n' and bare CR in DATA: 554 5.6.0, nothing queued, no smuggled command")


def check_starttls(host, port, spool, cafile):
    r = Raw(host, port)
    expect(250, r.cmd("EHLO tls.example"), "EHLO")
    # The injected MAIL must be discarded, never answered inside TLS.
    r.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n")
    expect(220, r.reply(), "STARTTLS")
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    t = ctx.wrap_socket(r.s, server_hostname="mx.test")
    t.settimeout(TIMEOUT)
    t.sendall(b"MAIL FROM:<s@example.org>\r\n")
    got = t.recv(4096)
    if not got.startswith(b"503"):
        fail("after STARTTLS, MAIL before EHLO must be 503 (injected text discarded): %r" % got)
    t.sendall(b"EHLO tls.example\r\n")
    got = b""
    for _ in range(20):
        got += t.recv(4096)
        if b"250 " in got:
            break
    if b"STARTTLS" in got:
        fail("STARTTLS offered again inside TLS")
    t.close()
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.starttls(context=ctx)
    s.ehlo("tls2.example")
    # 50 kB in one go: more than the server's line buffer, so OpenSSL holds decrypted
    # bytes that never wake epoll; the server must drain them itself
    big = b"Subject: tls\r\n\r\n" + (b"z" * 78 + b"\r\n") * 640
    if s.sendmail("s@example.org", ["alice@mail.test"], big):
        fail("TLS send refused")
    s.quit()
    ok("STARTTLS: pipelined plain text discarded (the injected MAIL was never answered); mail over TLS accepted")


def check_bdat(host, port, spool):
    before = set(queue_files(spool))
    r = Raw(host, port)
    expect(250, r.cmd("EHLO bdat.example"), "EHLO")
    chunks = [b"Subject: chunks\r\n\r\n", b"first part\r\n.dot kept\r\n", b"last\r\n"]
    r.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mail.test>\r\n")
    expect(250, r.reply(), "MAIL")
    expect(250, r.reply(), "RCPT")
    for i, c in enumerate(chunks):
        last = i == len(chunks) - 1
        r.send(b"BDAT %d%s\r\n" % (len(c), b" LAST" if last else b"") + c)
        got = r.reply()
        expect(250, got, "BDAT chunk %d" % i)
    new = set(queue_files(spool)) - before
    if len(new) != 1:
        fail("BDAT: %r" % new)
    env, body = decode_envelope(os.path.join(spool, "queue", new.pop()))
    if not body.endswith(b"".join(chunks)):
        fail("BDAT body: %r" % body)
    # A bare LF in a chunk is refused too
    r.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mail.test>\r\n")
    expect(250, r.reply(), "MAIL")
    expect(250, r.reply(), "RCPT")
    c = b"Subject: x\r\n\r\nbare\nlf\r\n"
    r.send(b"BDAT %d LAST\r\n" % len(c) + c)
    expect(554, r.reply(), "BDAT with bare LF")
    expect(250, r.cmd("NOOP"), "NOOP after refused BDAT")
    # Two whole transactions in one write: the second message is complete while the first
    # one's 250 waits for the group sync; both are answered, in order.
    before = set(queue_files(spool))
    one = b"MAIL FROM:<s@example.org>\r\nRCPT TO:<alice@mail.test>\r\nBDAT 9 LAST\r\nSubject:1"
    two = b"MAIL FROM:<s@example.org>\r\nRCPT TO:<bob@mail.test>\r\nBDAT 9 LAST\r\nSubject:2"
    r.send(one + two)
    for i in range(6):
        got = r.reply()
        expect(250, got, "pipelined transaction reply %d" % i)
    if len(set(queue_files(spool)) - before) != 2:
        fail("two pipelined BDAT messages: %r" % (set(queue_files(spool)) - before))
    r.close()
    ok("BDAT: three chunks with LAST stored byte for byte (no dot-unstuffing); bare LF in BDAT refused")


def check_smtputf8(host, port, spool):
    before = set(queue_files(spool))
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("utf8.example")
    s.command_encoding = "utf-8"  # smtplib would refuse to send it otherwise
    code, _ = s.docmd("MAIL FROM:<jörg@example.org>")
    if code != 553:
        fail("non-ASCII sender without SMTPUTF8: %d" % code)
    s.rset()
    msg = "Subject: grüße\r\n\r\nhällo\r\n".encode("utf-8")
    if s.sendmail("jörg@exämple.org", ["alice@mail.test"], msg, mail_options=["SMTPUTF8"]):
        fail("SMTPUTF8 refused")
    s.quit()
    new = set(queue_files(spool)) - before
    env, body = decode_envelope(os.path.join(spool, "queue", new.pop()))
    if env["S"] != "jörg@exämple.org" or env["U"] != "1":
        fail("SMTPUTF8 envelope %r" % env)
    if b"with UTF8SMTP id" not in body:
        fail("Received: without UTF8SMTP")
    ok("SMTPUTF8: UTF-8 sender accepted with the parameter, refused without (553 5.6.7)")


def check_too_many_rcpts(host, port, spool, limit):
    limit = int(limit)
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("many.example")
    s.mail("s@example.org")
    for i in range(limit):
        got = s.rcpt(["alice", "bob", "rudi", "rosa", "ruth"][i % 5] + "@mail.test")
        if got[0] != 250:
            fail("RCPT %d: %r" % (i, got))
    got = s.rcpt("rolf@mail.test")
    if got[0] != 452 or b"4.5.3" not in got[1]:
        fail("RCPT over max_recipients: %r" % (got,))
    s.quit()
    ok("max_recipients %d: the next RCPT gets 452 4.5.3" % limit)


def check_per_ip(host, port, spool, limit):
    limit = int(limit)
    conns = [Raw(host, port) for _ in range(limit)]
    for c in conns:
        if c.banner[0] != 220:
            fail("connection under the cap refused: %r" % (c.banner,))
    extra = Raw(host, port)
    if extra.banner[0] != 421:
        fail("connection over max_connections_per_ip: %r" % (extra.banner,))
    extra.close()
    for c in conns:
        c.close()
    ok("max_connections_per_ip %d: the next connection gets 421" % limit)


def check_send(host, port, spool, marker):
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("send.example")
    if s.sendmail("s@example.org", ["alice@mail.test"], b"Subject: " + marker.encode() + b"\r\n\r\nx\r\n"):
        fail("send refused")
    s.quit()
    ok("sent " + marker)


def check_expect_code(host, port, spool, code, *cmds):
    """Sends EHLO, MAIL, RCPT to alice and expects CODE at DATA end: a 3-digit code must
    match with the enhanced code 4.3.1 (full disk, RFC 3463), a single digit its class."""
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("disk.example")
    s.mail("s@example.org")
    s.rcpt("alice@mail.test")
    got = s.data(b"Subject: disk\r\n\r\n" + (b"y" * 998 + b"\r\n") * 4000)
    if len(code) == 3:
        if str(got[0]) != code or not got[1].startswith(b"4.3.1"):
            fail("full disk: %r, want %s 4.3.1" % (got, code))
    elif str(got[0])[0] != code:
        fail("full disk: %r" % (got,))
    s.quit()
    ok("full disk: DATA answered %d %s, not 250" % (got[0], got[1].decode(errors="replace")))


def check_verify(host, port, spool, bad_pid, good_pid):
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("verify.example")
    s.mail("s@example.org")
    for addr, code in (("alice@mail.test", 250), ("ghost@mail.test", 550),
                       ("dave@mail.test", 250), ("team@mail.test", 250)):
        got = s.rcpt(addr)
        if got[0] != code:
            fail("verify RCPT %s: %r, want %d" % (addr, got, code))
    # Both back ends go away: the answers come from the caches now (a back end that does
    # not answer would make ghost 250 and log "no answer" for alice).
    os.kill(int(bad_pid), 15)
    os.kill(int(good_pid), 15)
    time.sleep(0.3)
    for addr, code in (("ghost@mail.test", 550), ("alice@mail.test", 250)):
        got = s.rcpt(addr)
        if got[0] != code:
            fail("cached RCPT %s: %r, want %d" % (addr, got, code))
    s.quit()
    ok("verify_recipients: 250 known, 550 unknown, 250 for a dead back end and an alias")


def check_idle(host, port, spool):
    r = Raw(host, port)
    got = r.reply()  # the server's timeout ends the wait, or the socket's (10 s) fails it
    if got[0] != 421 or "4.4.2" not in got[1][0]:
        fail("idle client: %r, want 421 4.4.2" % (got,))
    if r.s.recv(64) != b"":
        fail("connection not closed after the timeout")
    r.close()
    ok("a silent client gets 421 4.4.2 after greeting_timeout and is disconnected")


def check_errors(host, port, spool, limit):
    limit = int(limit)
    r = Raw(host, port)
    expect(250, r.cmd("EHLO errors.example"), "EHLO")
    for i in range(limit - 1):
        expect(500, r.cmd("XYZZY"), "bad command %d" % i)
    got = r.cmd("XYZZY")
    expect(500, got, "last bad command")
    got = r.reply()
    if got[0] != 421:
        fail("after max_errors: %r, want 421" % (got,))
    if r.s.recv(64) != b"":
        fail("connection not closed after max_errors")
    r.close()
    ok("max_errors %d: the session is closed with 421 (error replies paced by error_delay)" % limit)


def check_ipv6(host, port, spool):
    before = set(queue_files(spool))
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("v6.example")
    if s.sendmail("s@example.org", ["alice@mail.test"], b"Subject: v6\r\n\r\nx\r\n"):
        fail("IPv6 send refused")
    s.quit()
    new = set(queue_files(spool)) - before
    env, body = decode_envelope(os.path.join(spool, "queue", new.pop()))
    if env["C"] != "::1" or b"([::1])" not in body.split(b"\r\n\r\n")[0]:
        fail("IPv6 client address: %r" % env["C"])
    ok("IPv6 listener: client ::1 recorded in the envelope and the Received: header")


def check_reload_session(host, port, spool, master_pid, log, want_reloads):
    """A session open across SIGHUP finishes its message."""
    s = smtplib.SMTP(host, port, timeout=TIMEOUT)
    s.ehlo("reload.example")
    s.mail("s@example.org")
    os.kill(int(master_pid), 1)
    for _ in range(50):
        if open(log).read().count("configuration reloaded") >= int(want_reloads):
            break
        time.sleep(0.2)
    else:
        fail("no reload logged")
    if s.rcpt("alice@mail.test")[0] != 250:
        fail("RCPT after reload")
    code, _ = s.data(b"Subject: across reload\r\n\r\nx\r\n")
    if code != 250:
        fail("DATA after reload: %d" % code)
    s.quit()
    ok("a session open across SIGHUP keeps going and its message is accepted")


def check_parallel(host, port, spool, n):
    """n clients at once: every one gets its 250 and its own queue file (group commit)."""
    import threading
    n = int(n)
    before = set(queue_files(spool))
    errors = []

    def one(i):
        try:
            c = smtplib.SMTP(host, port, timeout=TIMEOUT)
            c.ehlo("par%d.example" % i)
            refused = c.sendmail("s@example.org", ["alice@mail.test"],
                                 b"Subject: parallel %d\r\n\r\nx\r\n" % i)
            c.quit()
            if refused:
                errors.append(refused)
        except Exception as e:  # reported below, the check fails
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * TIMEOUT)
    if errors:
        fail("parallel sends: %r" % errors[:3])
    if len(set(queue_files(spool)) - before) != n:
        fail("parallel sends: %d new queue files, want %d" % (len(set(queue_files(spool)) - before), n))
    ok("%d clients at once: each got its 250 and its own queue file" % n)


CHECKS = {
    "accept": check_accept, "pipelining": check_pipelining, "size": check_size,
    "refusals": check_refusals, "nomap": check_map_unreadable, "barelf": check_bare_lf,
    "starttls": check_starttls, "bdat": check_bdat, "smtputf8": check_smtputf8,
    "rcpts": check_too_many_rcpts, "perip": check_per_ip, "send": check_send,
    "disk": check_expect_code, "verify": check_verify,
    "idle": check_idle, "errors": check_errors,
    "ipv6": check_ipv6, "reload_session": check_reload_session,
    "parallel": check_parallel,
}

if __name__ == "__main__":
    CHECKS[sys.argv[1]](sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
