# test_imap_cmd: the proxy's IMAP pre-login parser and the SASL PLAIN decoder it uses.
test_imap_cmd_SRCS := relay/imap_cmd.c relay/sasl_plain.c
