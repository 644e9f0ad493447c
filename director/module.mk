# director/: mailplex-director, the IPVS reconciler with its health checks and control socket.
# Recursive (=): healthcheck/module.mk, which sets HEALTHCHECK_SRCS, is read after this file.
DIRECTOR_SRCS = director/state.c director/members.c director/mapserve.c director/reconcile.c director/checks.c director/sysctl.c \
                director/control.c director/vrrp.c director/plan.c director/ipvs.c director/ipvs_msg.c \
                $(HEALTHCHECK_SRCS)
PROGRAMS += mailplex-director
mailplex-director_SRCS = director/main.c $(DIRECTOR_SRCS)
mailplex-director_LIBS := $(NL_LIBS)
MANPAGES += man/mailplex-director.8
