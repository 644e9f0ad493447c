# The unified per-user map: source parser/validator, compiler, reader.
LIB_SRCS += lib/map.c lib/map_source.c lib/map_compile.c
