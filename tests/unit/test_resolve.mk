# test_resolve: getaddrinfo_a through the event loop, the cache and its TTLs.
test_resolve_SRCS := relay/resolve.c
