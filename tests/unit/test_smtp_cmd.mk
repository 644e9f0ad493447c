# test_smtp_cmd: mailplex-smtpd's command-line parser and DATA/BDAT unstuffer.
test_smtp_cmd_SRCS := relay/smtp_cmd.c
