# test_move: the parsers of mailplexctl move (IMAP responses, the daemons' map versions,
# the state file).
test_move_SRCS := tools/mailplexctl/move_imap.c tools/mailplexctl/move_publish.c \
	tools/mailplexctl/move_state.c
