# lib/ infrastructure: config loader, event loop, line buffers, sockets.
LIB_SRCS += lib/conf.c lib/event.c lib/ipcount.c lib/linebuf.c lib/mailplex_conf.c lib/sock.c
MANPAGES += man/mailplex.conf.5
