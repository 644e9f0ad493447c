test_queue_reply_SRCS := relay/queue_reply.c
