# fuzz_spool_envelope: the queue file's envelope decoder (read by the queue runner).
fuzz_spool_envelope_SRCS := relay/spool.c
