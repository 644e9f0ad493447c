# test_spool_fsync: the spool's fsync threads (jobs, results, bounds, shutdown).
test_spool_fsync_SRCS := relay/spool_fsync.c
test_spool_fsync_LIBS := -pthread
