test_hc_engine_SRCS := $(HEALTHCHECK_SRCS)
