test_director_state_SRCS = $(DIRECTOR_SRCS)
test_director_state_LIBS := $(NL_LIBS)
