# relay/: mailplex-proxy, the POP3/IMAP4 proxy (pre-login parsers, sessions, back ends).
PROXY_SRCS := relay/proxy_session.c relay/proxy_backend.c relay/proxy_pipe.c \
              relay/proxy_listen.c relay/proxy_control.c relay/backend_proto.c relay/resolve.c relay/imap_cmd.c relay/pop3_cmd.c relay/sasl_plain.c
PROGRAMS += mailplex-proxy
mailplex-proxy_SRCS := relay/proxy_main.c $(PROXY_SRCS)
MANPAGES += man/mailplex-proxy.8
# mailplex-relay: the node agent (joins the directors' pool, heartbeats, DR setup).
PROGRAMS += mailplex-relay
mailplex-relay_SRCS := relay/agent_main.c relay/agent_ready.c relay/agent_dr.c
mailplex-relay_LIBS := $(NL_LIBS)
MANPAGES += man/mailplex-relay.8
