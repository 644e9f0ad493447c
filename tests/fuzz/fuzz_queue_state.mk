fuzz_queue_state_SRCS := relay/queue_state.c
