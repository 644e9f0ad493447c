# tools/mailplexctl: the operator's client of every daemon's control socket, and the
# mailbox move workflow (move*.c).
PROGRAMS += mailplexctl
mailplexctl_SRCS := tools/mailplexctl/main.c tools/mailplexctl/move.c \
	tools/mailplexctl/move_state.c tools/mailplexctl/move_publish.c \
	tools/mailplexctl/move_copy.c tools/mailplexctl/move_imap.c tools/mailplexctl/move_verify.c
MANPAGES += man/mailplexctl.8
