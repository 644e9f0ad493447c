test_director_control_SRCS = $(DIRECTOR_SRCS)
test_director_control_LIBS := $(NL_LIBS)
