# test_pop3_cmd: the proxy's POP3 AUTHORIZATION-state parser and the SASL PLAIN decoder.
test_pop3_cmd_SRCS := relay/pop3_cmd.c relay/sasl_plain.c
