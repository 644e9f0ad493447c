#!/bin/sh
# make demo: the end-to-end demonstration. It needs the relay agent and the packages,
# which are not built yet; until they are, say so and fail plainly.
cat <<'TEXT'
mailplex demo — not built yet.

When it exists, `sudo make demo` will: install its Debian packages, build mailplex, boot
user-mode Linux (or use host network namespaces where the kernel has IPVS), and bring up
two directors with keepalived holding the VIP of mail.bigisp.com, three relay nodes and
two Dovecot back ends; then send mail through the VIP to users on both back ends, read it
back over IMAP and POP3, fail the master director over, drain a relay, and print every
step with the `mailplexctl status` tables.

What works today, and where to see it:
    make
    build/bin/mailplex-map compile conf/mailplex.map /tmp/mailplex.db
    build/bin/mailplex-map lookup /tmp/mailplex.db john@bigisp.com
    build/bin/mailplex-director -n -f conf/mailplex.conf
    make O=build/system check-system   # the director, DR/NAT, drain, keepalived failover,
                                       # relays joining, map publish, and the whole cluster
                                       # (cluster-full: two directors, three relays, two
                                       # Dovecots, failover with sessions and SMTP counted)
                                       # against real kernel IPVS in user-mode Linux
    sh tests/integration/proxy.sh "$PWD/build/bin"   # the proxy against two Dovecots
    sh tests/integration/smtpd.sh "$PWD/build/bin"   # mailplex-smtpd: receiving, spool,
                                                     # relay refusals, kill -9, full disk
    sh tests/integration/smtp_e2e.sh "$PWD/build/bin" # swaks -> smtpd -> queue -> Dovecot
    make deb                                         # the Debian packages
TEXT
exit 1
