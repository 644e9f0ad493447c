test_director_vrrp_SRCS = $(DIRECTOR_SRCS)
test_director_vrrp_LIBS := $(NL_LIBS)
