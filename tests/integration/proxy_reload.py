#!/usr/bin/env python3
# The client half of tests/integration/proxy_reload.sh: holds IMAP, IMAPS and POP3 sessions
# (imaplib, poplib) across SIGHUPs of mailplex-proxy's master and checks what each reload
# changed and kept. Prints "ok: ..." per passing check, "FAIL: ..." otherwise; exits 1 if
# any failed. Every socket has a timeout; every wait is bounded in count and time.
import glob
import imaplib
import os
import poplib
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

T, MASTER, HOST, BIN, BADLINE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
IMAP, IMAPS, POP3, GONE, NEW = (int(p) for p in sys.argv[6:11])
TAKEN = sys.argv[11]  # an address Dovecot holds: a listener there cannot be bound
LOG = os.path.join(T, "proxy.log")
CONF = os.path.join(T, "mailplex.conf")
CTL_SOCK = os.path.join(T, "ctl", "proxy.sock")
TIMEOUT = 10
failed = 0

ctx = ssl.create_default_context(cafile=os.path.join(T, "ca.pem"))


def check(name, cond, detail=""):
    global failed
    if cond:
        print("ok: " + name)
    else:
        failed += 1
        print("FAIL: %s %s" % (name, detail))


def step(name, fn):
    global failed
    try:
        fn()
    except Exception as e:  # a step that raised is a failed check
        failed += 1
        print("FAIL: %s raised %r" % (name, e))


def log_size():
    return os.path.getsize(LOG)


def wait_log(offset, pattern, tries=100):
    """The first match of pattern in the log after offset; None after tries x 0.1 s."""
    rx = re.compile(pattern)
    for _ in range(tries):
        with open(LOG, errors="replace") as f:
            f.seek(offset)
            m = rx.search(f.read())
        if m:
            return m.group(0)
        time.sleep(0.1)
    return None


def children():
    """The master's child processes (its workers, old and new)."""
    kids = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold blanks, so split after the last ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == MASTER:
            kids.add(int(d))
    return kids


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("Uid:"):
                return int(ln.split()[1])
    return -1


def reload(conf_file):
    """Installs conf_file as the config and signals the master; the log offset before."""
    off = log_size()
    shutil.copy(conf_file, CONF + ".tmp")
    os.rename(CONF + ".tmp", CONF)
    os.kill(MASTER, signal.SIGHUP)
    return off


def imap_login(port, user):
    m = imaplib.IMAP4(HOST, port, timeout=TIMEOUT)
    m.login(user, "pw-" + user)
    return m


def imaps_login(user):
    m = imaplib.IMAP4_SSL(HOST, IMAPS, ssl_context=ctx, timeout=TIMEOUT)
    m.login(user, "pw-" + user)
    return m


def cn(m):
    subject = m.sock.getpeercert()["subject"]
    return dict(x[0] for x in subject)["commonName"]


def subject(m):
    typ, _ = m.select("INBOX")
    assert typ == "OK", typ
    typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", typ
    return data[0][1].decode().strip()


def pop3_login(user):
    p = poplib.POP3(HOST, POP3, timeout=TIMEOUT)
    p.user(user)
    p.pass_("pw-" + user)
    return p


def pop3_subject(p):
    _, lines, _ = p.retr(1)
    return [ln.decode() for ln in lines if ln.startswith(b"Subject:")][0]


def refused(port, tries=50):
    """True once a connect to port is refused (old workers close theirs asynchronously)."""
    for _ in range(tries):
        try:
            socket.create_connection((HOST, port), 1).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.1)
    return False


def ctl(*args):
    p = subprocess.run([os.path.join(BIN, "mailplexctl"), "-s", CTL_SOCK, "proxy"] + list(args),
                       capture_output=True, text=True, timeout=TIMEOUT)
    return p.returncode, p.stdout + p.stderr


S = {}  # the sessions held across reloads


def t_before():
    gen1 = children()
    S["gen1"] = gen1
    S["gen1_idx"] = range(len(gen1))
    check("generation 1: two workers", len(gen1) == 2, gen1)
    check("workers run as nobody, the master as root (to bind and read keys on reload)",
          all(uid_of(p) == 65534 for p in gen1) and uid_of(MASTER) == 0,
          [(p, uid_of(p)) for p in gen1])
    S["imap"] = imap_login(GONE, "alice")
    check("alice over IMAP on the listener that will go", subject(S["imap"]) == "Subject: alice on d1")
    S["tls"] = imaps_login("alice")
    check("alice over IMAPS: the first certificate", cn(S["tls"]) == "reload-one", cn(S["tls"]))
    S["pop3"] = pop3_login("alice")
    check("alice over POP3", pop3_subject(S["pop3"]) == "Subject: alice on d1")
    S["carol"] = imap_login(IMAP, "carol")
    m = imap_login(IMAP, "bob")
    check("bob on d1 before the reload", subject(m) == "Subject: bob on d1")
    m.logout()


def sessions_alive(when):
    m = S["imap"]
    check("%s: the old IMAP session answers NOOP" % when, m.noop()[0] == "OK")
    check("%s: ... SELECT and FETCH" % when, subject(m) == "Subject: alice on d1")
    check("%s: the old IMAPS session answers FETCH" % when,
          subject(S["tls"]) == "Subject: alice on d1")
    check("%s: ... still with the first certificate" % when, cn(S["tls"]) == "reload-one")
    p = S["pop3"]
    check("%s: the old POP3 session answers STAT and RETR" % when,
          p.stat()[0] == 1 and pop3_subject(p) == "Subject: alice on d1")


def t_syntax_error():
    off = reload(os.path.join(T, "conf-syntax"))
    line = wait_log(off, r"reload refused, generation 1 keeps running: \S*mailplex\.conf:\d+: .*")
    check("a config with a syntax error is refused with file:line",
          line is not None and (":%s: " % BADLINE) in line, line)
    check("... the same workers keep running", children() == S["gen1"], children())
    sessions_alive("after the refused reload")
    m = imap_login(IMAP, "bob")
    check("... and new logins work", subject(m) == "Subject: bob on d1")
    m.logout()
    check("... the new config's listener was never opened", refused(NEW, 1))


def t_bad_certificate():
    off = reload(os.path.join(T, "conf-badcert"))
    line = wait_log(off, r"reload refused, generation 1 keeps running: .*broken\.pem.*")
    check("a config naming a broken certificate is refused", line is not None, line)
    check("... the same workers keep running", children() == S["gen1"], children())
    m = imaps_login("bob")
    check("... new TLS connections get the running certificate", cn(m) == "reload-one", cn(m))
    m.logout()


def t_bind_failure():
    fds = len(os.listdir("/proc/%d/fd" % MASTER))
    off = reload(os.path.join(T, "conf-badbind"))
    line = wait_log(off, r"reload refused, generation 1 keeps running: listener %s: .*" %
                    re.escape(TAKEN))
    check("a listener that cannot be bound refuses the reload", line is not None, line)
    check("... the same workers keep running", children() == S["gen1"], children())
    check("... the listener bound before it was closed again", refused(NEW, 1))
    check("... and the master holds as many descriptors as before",
          len(os.listdir("/proc/%d/fd" % MASTER)) == fds,
          (fds, len(os.listdir("/proc/%d/fd" % MASTER))))
    sessions_alive("after the refused bind")


def t_reload():
    out = subprocess.run([os.path.join(BIN, "mailplex-map"), "compile", os.path.join(T, "map2"),
                          os.path.join(T, "map.db")], capture_output=True, text=True,
                         timeout=TIMEOUT)
    check("map with bob on d2 compiled", out.returncode == 0, out.stdout + out.stderr)
    m = imap_login(IMAP, "bob")
    check("before the reload bob still lands on d1 (the map is only checked hourly)",
          subject(m) == "Subject: bob on d1")
    m.logout()

    off = reload(os.path.join(T, "conf2"))
    line = wait_log(off, r"reload: generation 2 running: .*")
    check("a valid config: generation 2 runs", line is not None, line)
    try:
        os.kill(MASTER, 0)
        alive = True
    except OSError:
        alive = False
    check("... under the same master", alive)
    check("... its log line names the listeners added and removed",
          line is not None and ("added: imap %s:%d;" % (HOST, NEW)) in line and
          ("removed: imap %s:%d;" % (HOST, GONE)) in line, line)
    # The old workers take their SIGQUIT on their own time; until then they may still
    # accept a connection under the old configuration.
    for i in S["gen1_idx"]:
        check("old worker %d retired (no longer accepting)" % i,
              wait_log(off, r"worker %d \(generation 1\): retired by a reload" % i) is not None)
    sessions_alive("after the reload")

    m = imap_login(NEW, "alice")
    check("the new listener accepts logins", subject(m) == "Subject: alice on d1")
    m.logout()
    check("the removed listener refuses connections", refused(GONE))
    m = imaps_login("alice")
    check("new TLS connections get the new certificate", cn(m) == "reload-two", cn(m))
    m.logout()
    m = imap_login(IMAP, "bob")
    check("bob, moved in the recompiled map, lands on d2", subject(m) == "Subject: bob on d2")
    m.logout()
    p = pop3_login("bob")
    check("... over POP3 too", pop3_subject(p) == "Subject: bob on d2")
    p.quit()

    kids = children()
    new = kids - S["gen1"]
    S["gen2"] = new
    check("generation 2: one worker (workers = 1), running as nobody",
          len(new) == 1 and all(uid_of(p) == 65534 for p in new), (kids, S["gen1"]))
    check("old workers holding sessions are still there", len(kids & S["gen1"]) >= 1, kids)
    rc, out = ctl("status")
    check("mailplexctl proxy status reaches old and new workers",
          rc == 0 and "generation 2)" in out and "generation 1, retiring" in out, out)
    rc, out = ctl("kick", "carol")
    check("kick reaches a session in a retired worker",
          rc == 0 and "kicked 1 session(s) in total" in out, out)
    try:
        typ = S["carol"].noop()[0]
    except (imaplib.IMAP4.abort, OSError, EOFError) as e:
        typ = repr(e)
    check("... and closes it", typ != "OK", typ)


def t_old_workers_leave():
    off = log_size()
    S["imap"].logout()
    S["tls"].logout()
    S["pop3"].quit()
    left = None
    for _ in range(100):
        left = children()
        if left == S["gen2"]:
            break
        time.sleep(0.1)
    check("once their sessions ended the old workers exited; the new one stays",
          left == S["gen2"], (left, S["gen2"]))
    check("... and the master logged it",
          wait_log(off, r"finished its sessions; 0 retired worker\(s\) left") is not None)
    socks = sorted(os.path.basename(p) for p in glob.glob(CTL_SOCK + ".*"))
    check("only the new worker's control socket is left", socks == ["proxy.sock.0"], socks)
    m = imap_login(IMAP, "alice")
    check("and the proxy still serves", subject(m) == "Subject: alice on d1")
    m.logout()


def master_sockets():
    """Inodes of the sockets the master holds: the listener sets."""
    fd_dir = "/proc/%d/fd" % MASTER
    out = set()
    for fd in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if link.startswith("socket:"):
            out.add(link)
    return out


def t_reload_under_load():
    """workers 1 -> 2, same listeners, while a client connects over and over."""
    before = master_sockets()
    stop = threading.Event()
    phase = [0]  # 0 before the SIGHUP, 1 until the old worker retired, 2 after
    results = {"ok": [0, 0, 0], "bad": []}

    def hammer():
        deadline = time.time() + 60
        for _ in range(20000):  # bounded in count and time; stopped long before
            if stop.is_set() or time.time() > deadline:
                return
            p = phase[0]
            try:
                s = socket.create_connection((HOST, IMAP), TIMEOUT)
                s.settimeout(TIMEOUT)
                g = s.recv(200)
                s.close()
                if g.startswith(b"* OK"):
                    results["ok"][p] += 1
                else:
                    results["bad"].append(g)
            except OSError as e:
                results["bad"].append(repr(e))
            time.sleep(0.005)

    th = threading.Thread(target=hammer)
    th.start()
    time.sleep(0.3)
    off = reload(os.path.join(T, "conf3"))
    phase[0] = 1
    line = wait_log(off, r"reload: generation 3 running: .*")
    retired = wait_log(off, r"worker 0 \(generation 2\): retired by a reload")
    phase[0] = 2
    time.sleep(0.3)
    stop.set()
    th.join(TIMEOUT + 5)
    check("generation 3: two workers, no listener added or removed",
          line is not None and "2 worker(s) as nobody (were 1); listeners added: none; "
          "removed: none" in line, line)
    check("the generation-2 worker retired", retired is not None)
    check("connections before, during and after the reload all got a greeting %s" %
          results["ok"], not th.is_alive() and results["ok"][0] > 0 and
          results["ok"][2] > 0 and not results["bad"], results["bad"][:3])
    after = master_sockets()
    check("the listeners that stayed are the same sockets (taken over, not bound again)",
          len(before) == 4 and before < after and len(after) == 8, (before, after))
    left = None
    for _ in range(100):
        left = children()
        if not (left & S["gen2"]) and len(left) == 2:
            break
        time.sleep(0.1)
    check("the generation-2 worker without sessions left; two new ones run",
          not (left & S["gen2"]) and len(left) == 2, (left, S["gen2"]))
    for port in (IMAP, NEW):
        m = imap_login(port, "bob")
        check("generation 3 serves port %d" % port, subject(m) == "Subject: bob on d2")
        m.logout()


step("before the reload", t_before)
step("reload with a syntax error", t_syntax_error)
step("reload with a broken certificate", t_bad_certificate)
step("reload with a listener that cannot be bound", t_bind_failure)
step("valid reload", t_reload)
step("old workers leave", t_old_workers_leave)
step("reload under load", t_reload_under_load)
sys.exit(1 if failed else 0)
