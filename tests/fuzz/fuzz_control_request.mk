fuzz_control_request_SRCS = $(DIRECTOR_SRCS)
fuzz_control_request_LIBS := $(NL_LIBS)
