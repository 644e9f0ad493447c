# fuzz_pop3_cmd: the POP3 AUTHORIZATION-state parser fed through lib/linebuf.
fuzz_pop3_cmd_SRCS := relay/pop3_cmd.c relay/sasl_plain.c
