# mailplex-map: compile, check, look up, dump and import the per-user map.
PROGRAMS += mailplex-map
mailplex-map_SRCS := tools/mailplex-map/main.c tools/mailplex-map/import.c
MANPAGES += man/mailplex-map.8 man/mailplex.map.5
