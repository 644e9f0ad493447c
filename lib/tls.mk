# lib/tls: OpenSSL 3 client/server contexts and non-blocking session wrappers.
LIB_SRCS += lib/tls.c
