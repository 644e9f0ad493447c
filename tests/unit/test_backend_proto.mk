# test_backend_proto: the proxy's back-end reply classifier and client-address encoders.
test_backend_proto_SRCS := relay/backend_proto.c
