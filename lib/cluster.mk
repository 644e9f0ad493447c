# lib/cluster_msg: the authenticated datagrams between mailplex-relay and the directors.
LIB_SRCS += lib/cluster_msg.c
# lib/map_fetch: the authenticated map transfer from a director to mailplex-relay.
LIB_SRCS += lib/map_fetch.c
