# fuzz_move_imap: the IMAP response framing and parsing of mailplexctl move's check.
fuzz_move_imap_SRCS := tools/mailplexctl/move_imap.c
