fuzz_vrrp_fifo_SRCS := director/vrrp.c
