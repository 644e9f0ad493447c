test_hc_check_SRCS := $(HEALTHCHECK_SRCS)
