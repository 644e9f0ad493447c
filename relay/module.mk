# relay/: mailplex-proxy, the POP3/IMAP4 proxy (pre-login parsers, sessions, back ends).
PROXY_SRCS := relay/proxy_session.c relay/proxy_backend.c relay/proxy_pipe.c \
              relay/proxy_listen.c relay/proxy_control.c relay/proxy_mapsweep.c relay/backend_proto.c relay/resolve.c relay/imap_cmd.c relay/pop3_cmd.c relay/sasl_plain.c
PROGRAMS += mailplex-proxy
mailplex-proxy_SRCS := relay/proxy_main.c $(PROXY_SRCS)
MANPAGES += man/mailplex-proxy.8

# mailplex-smtpd's queue runner (queue.h); mailplex-queue runs it alone (tests, debugging).
QUEUE_SRCS := relay/queue_runner.c relay/queue_conn.c relay/queue_control.c relay/resolve.c \
              relay/queue_reply.c relay/queue_state.c relay/queue_dsn.c relay/queue_body.c
NOINST_PROGRAMS += mailplex-queue
mailplex-queue_SRCS := relay/queue_main.c $(QUEUE_SRCS) relay/spool.c relay/spool_fsync.c
mailplex-queue_LIBS := -pthread

# mailplex-smtpd: the master, the inbound SMTP receivers and the spool, with the queue
# runner above (the master forks it as one more child).
SMTPD_SRCS := relay/smtpd_session.c relay/smtpd_listen.c relay/smtpd_control.c \
              relay/smtpd_verify.c relay/smtp_cmd.c relay/spool.c relay/spool_fsync.c
PROGRAMS += mailplex-smtpd
mailplex-smtpd_SRCS = relay/smtpd_main.c $(SMTPD_SRCS) $(QUEUE_SRCS)
mailplex-smtpd_LIBS := -pthread
MANPAGES += man/mailplex-smtpd.8
# mailplex-relay: the node agent (joins the directors' pool, heartbeats, DR setup).
PROGRAMS += mailplex-relay
mailplex-relay_SRCS := relay/agent_main.c relay/agent_ready.c relay/agent_dr.c relay/agent_map.c
mailplex-relay_LIBS := $(NL_LIBS)
MANPAGES += man/mailplex-relay.8
