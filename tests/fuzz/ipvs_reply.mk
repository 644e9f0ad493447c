# fuzz_ipvs_reply: kernel replies into the IPVS decoders; round trips build requests with libnl.
fuzz_ipvs_reply_SRCS := director/ipvs_msg.c
fuzz_ipvs_reply_LIBS := $(NL_LIBS)
