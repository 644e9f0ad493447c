# systemd units: *.service.in get the install paths substituted at install time.
UNITS := mailplex-director.service mailplex-proxy.service
UNITS += mailplex-relay.service mailplex-smtpd.service
