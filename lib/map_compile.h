/*
 * Writes a validated map source into a GDBM file: temp file beside the target, fsync,
 * rename, fsync of the directory. Never touches the existing map unless the new one is
 * whole; never parses (map_source.h does).
 */
#ifndef MAILPLEX_MAP_COMPILE_H
#define MAILPLEX_MAP_COMPILE_H

#include <stdint.h>

#include "map_source.h"

struct map_compile_stats {
	uint64_t version;
	size_t backends, domains, rules, users, aliases;
	uint64_t db_bytes;
	uint64_t elapsed_ms;
};

/*
 * srcpath is recorded in the metadata. The version is max(old version + 1, now). Returns
 * 0, or -1 with err (the old map is then untouched and no temp file is left).
 */
int map_compile(const struct map_source *src, const char *srcpath, const char *dbpath,
                struct map_compile_stats *st, char *err, size_t errlen);

#endif
