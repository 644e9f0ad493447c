# fuzz_sasl_plain: strict base64 and the PLAIN message split, with OpenSSL as a second opinion.
fuzz_sasl_plain_SRCS := relay/sasl_plain.c
