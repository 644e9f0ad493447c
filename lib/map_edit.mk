# lib/map_edit: one user's entry edited in place in the map source (mailplexctl move).
LIB_SRCS += lib/map_edit.c
