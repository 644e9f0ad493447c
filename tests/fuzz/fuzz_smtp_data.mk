# fuzz_smtp_data: the DATA/BDAT reader against a whole-buffer reference.
fuzz_smtp_data_SRCS := relay/smtp_cmd.c
