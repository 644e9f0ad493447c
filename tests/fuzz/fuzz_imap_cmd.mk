# fuzz_imap_cmd: the IMAP pre-login state machine fed through lib/linebuf like a session.
fuzz_imap_cmd_SRCS := relay/imap_cmd.c relay/sasl_plain.c
