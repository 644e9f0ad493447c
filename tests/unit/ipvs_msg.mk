# test_ipvs_msg: the IPVS message layer (no kernel); it builds requests with libnl.
test_ipvs_msg_SRCS := director/ipvs_msg.c
test_ipvs_msg_LIBS := $(NL_LIBS)
