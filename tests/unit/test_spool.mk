# test_spool: mailplex-smtpd's spool (envelope encoding, durable commit, crash recovery).
test_spool_SRCS := relay/spool.c
