# test_sasl_plain: the SASL PLAIN decoder and strict base64 shared by the proxy front ends.
test_sasl_plain_SRCS := relay/sasl_plain.c
