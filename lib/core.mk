# libmailplex: every mechanism two programs need, exactly once (STYLE.md).
LIB_SRCS += lib/daemon.c lib/log.c lib/util.c
