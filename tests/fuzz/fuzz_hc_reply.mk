fuzz_hc_reply_SRCS := healthcheck/hc_reply.c
