# lib/cluster_msg: the authenticated datagrams between mailplex-relay and the directors.
LIB_SRCS += lib/cluster_msg.c
