# lib/ infrastructure: config loader, event loop, line buffers, sockets.
LIB_SRCS += lib/event.c lib/linebuf.c lib/sock.c
