test_director_members_SRCS = $(DIRECTOR_SRCS)
test_director_members_LIBS := $(NL_LIBS)
