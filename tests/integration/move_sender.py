#!/usr/bin/env python3
# A sender that keeps mailing one recipient through a move (tests/integration/move.sh):
# each message has its own Message-ID; a 4xx is retried after a short pause with the same
# message (as an MTA would), a 250 is recorded in ACKED (one Message-ID per line). Touches
# DEFERRED at the first 4xx; stops starting new messages once STOP exists. Bounded: at
# most 400 messages and 240 s. Usage: move_sender.py HOST PORT RCPT ACKED DEFERRED STOP
import os
import smtplib
import sys
import time

host, port, rcpt, acked, deferred, stop = sys.argv[1], int(sys.argv[2]), *sys.argv[3:7]
deadline = time.monotonic() + 240
conn = None


def connect():
    global conn
    if conn is None:
        conn = smtplib.SMTP(host, port, timeout=10)
    return conn


for i in range(400):
    if os.path.exists(stop) or time.monotonic() > deadline:
        break
    mid = "<live-%d-%d@test>" % (os.getpid(), i)
    msg = ("From: sender@example.org\r\nTo: %s\r\nMessage-ID: %s\r\nSubject: live %d\r\n\r\n"
           "BODYSECRET live %d\r\n" % (rcpt, mid, i, i)).encode()
    while time.monotonic() < deadline:
        try:
            connect().sendmail("sender@example.org", [rcpt], msg)
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients[rcpt]
            if 400 <= code < 500:
                print("deferred %s: %d %s" % (mid, code, text.decode(errors="replace")), flush=True)
                if not os.path.exists(deferred):
                    open(deferred, "w").close()
                time.sleep(0.2)
                continue
            print("refused %s: %d" % (mid, code), flush=True)
            sys.exit(1)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPResponseException, OSError) as e:
            print("retry %s: %s" % (mid, e), flush=True)
            conn = None
            time.sleep(0.2)
            continue
        with open(acked, "a") as f:
            f.write(mid + "\n")
        print("acked %s" % mid, flush=True)
        break
    time.sleep(0.1)
if conn is not None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        pass
