test_hc_reply_SRCS := $(HEALTHCHECK_SRCS)
