# fuzz_smtp_cmd: mailplex-smtpd's command parser and DATA/BDAT state machine.
fuzz_smtp_cmd_SRCS := relay/smtp_cmd.c
