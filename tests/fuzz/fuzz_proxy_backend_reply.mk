# fuzz_proxy_backend_reply: back-end reply lines (IMAP, POP3, CAPA) through lib/linebuf.
fuzz_proxy_backend_reply_SRCS := relay/backend_proto.c
