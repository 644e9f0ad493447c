# tools/mailplexctl: the operator's client of every daemon's control socket.
PROGRAMS += mailplexctl
mailplexctl_SRCS := tools/mailplexctl/main.c
MANPAGES += man/mailplexctl.8
