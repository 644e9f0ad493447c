test_queue_dsn_SRCS := relay/queue_dsn.c
