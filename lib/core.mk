# libmailplex: every mechanism two programs need, exactly once (STYLE.md).
LIB_SRCS += lib/log.c lib/util.c
