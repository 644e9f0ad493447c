test_director_sysctl_SRCS = $(DIRECTOR_SRCS)
test_director_sysctl_LIBS := $(NL_LIBS)
