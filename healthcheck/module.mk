# healthcheck/: the check engine (also linked into mailplex-director) and mailplex-check.
HEALTHCHECK_SRCS := healthcheck/hc_check.c healthcheck/hc_engine.c healthcheck/hc_proto.c \
                    healthcheck/hc_reply.c
PROGRAMS += mailplex-check
mailplex-check_SRCS := healthcheck/main.c $(HEALTHCHECK_SRCS)
MANPAGES += man/mailplex-check.8
