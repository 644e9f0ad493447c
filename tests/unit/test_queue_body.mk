test_queue_body_SRCS := relay/queue_body.c
