/*
 * The map compiler's write side: one new GDBM file per compile, made whole and durable
 * before it replaces the old one by rename, so readers see the old map or the new one,
 * never a mixture. Never modifies the existing file in place.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "map.h"
#include "map_compile.h"
#include "util.h"

/*
 * Tuned with bench/bench-map.sh (1,000,000 users): 4 KiB blocks and no mmap for the writer
 * were the fastest (mmap remaps the growing file again and again); 8 KiB and 16 KiB
 * blocks were slower and no smaller.
 */
#define COMPILE_BLOCK_BYTES   4096
#define COMPILE_CACHE_BUCKETS 65536

static int
put(GDBM_FILE db, const char *key, size_t keylen, const char *val, size_t vallen, char *err,
    size_t errlen)
{
	datum k, v;

	k.dptr = (char *)(uintptr_t)key;
	k.dsize = (int)keylen;
	v.dptr = (char *)(uintptr_t)val;
	v.dsize = (int)vallen;
	if (gdbm_store(db, k, v, GDBM_INSERT) != 0) {
		(void)str_format(err, errlen, "store %.*s: %s", (int)keylen, key,
		                 gdbm_strerror(gdbm_errno));
		return -1;
	}
	return 0;
}

static int
put_str(GDBM_FILE db, const char *key, const char *val, char *err, size_t errlen)
{
	return put(db, key, strlen(key), val, strlen(val), err, errlen);
}

/* The old map's version, 0 if there is none; an unreadable one only costs monotonicity. */
static uint64_t
old_version(const char *dbpath)
{
	struct map *m;
	char err[512];
	uint64_t v;

	if (access(dbpath, F_OK) == -1)
		return 0;
	if ((m = map_open(dbpath, err, sizeof(err))) == NULL) {
		log_warnx("cannot read the old map's version (%s); using the clock", err);
		return 0;
	}
	v = map_version(m);
	map_close(m);
	return v;
}

static int
store_all(GDBM_FILE db, const struct map_source *src, const char *srcpath, uint64_t version,
          char *err, size_t errlen)
{
	const struct map_tables *t = src->tables;
	char key[32], val[2048];
	size_t i;

	for (i = 0; i < src->nentries; i++)
		if (put(db, src->entries[i].key, src->entries[i].keylen, src->entries[i].val,
		        src->entries[i].vallen, err, errlen) == -1)
			return -1;
	for (i = 0; i < t->nbackends; i++) {
		(void)str_format(key, sizeof(key), "%s%zu", MAP_KEY_BACKEND, i);
		if (map_backend_encode(&t->backends[i], val, sizeof(val)) == -1 ||
		    put_str(db, key, val, err, errlen) == -1)
			return -1;
	}
	for (i = 0; i < t->ndomains; i++) {
		(void)str_format(key, sizeof(key), "%s%zu", MAP_KEY_DOMAIN, i);
		if (map_domain_encode(&t->domains[i], val, sizeof(val)) == -1 ||
		    put_str(db, key, val, err, errlen) == -1)
			return -1;
	}
	for (i = 0; i < t->nrules; i++) {
		(void)str_format(key, sizeof(key), "%s%zu", MAP_KEY_RULE, i);
		if (map_rule_encode(&t->rules[i], val, sizeof(val)) == -1 ||
		    put_str(db, key, val, err, errlen) == -1)
			return -1;
	}
	if (str_format(val, sizeof(val),
	               "version %llu\ncompiled %llu\nsource %s\nprimary %s\nbackends %zu\n"
	               "domains %zu\nrules %zu\nusers %zu\naliases %zu",
	               (unsigned long long)version, (unsigned long long)time(NULL), srcpath,
	               t->domains[0].name, t->nbackends, t->ndomains, t->nrules, src->nusers,
	               src->naliases) == -1) {
		(void)str_format(err, errlen, "source path too long");
		return -1;
	}
	return put_str(db, MAP_KEY_META, val, err, errlen);
}

static int
fsync_dir(const char *dir, char *err, size_t errlen)
{
	int fd;

	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		(void)str_format(err, errlen, "open %s: %s", dir, strerror(errno));
		return -1;
	}
	if (fsync(fd) == -1) {
		(void)str_format(err, errlen, "fsync %s: %s", dir, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int
map_compile(const struct map_source *src, const char *srcpath, const char *dbpath,
            struct map_compile_stats *st, char *err, size_t errlen)
{
	char dcopy[PATH_MAX], bcopy[PATH_MAX], tmp[PATH_MAX], dir[PATH_MAX];
	uint64_t start = time_mono_ms(), now;
	int cache = COMPILE_CACHE_BUCKETS, fd, no = 0;
	GDBM_FILE db = NULL;
	struct stat sb;

	memset(st, 0, sizeof(*st));
	if (str_copy(dcopy, sizeof(dcopy), dbpath) == -1 ||
	    str_copy(bcopy, sizeof(bcopy), dbpath) == -1 ||
	    str_copy(dir, sizeof(dir), dirname(dcopy)) == -1 ||
	    str_format(tmp, sizeof(tmp), "%s/.%s.tmp.%ld", dir, basename(bcopy), (long)getpid()) ==
	        -1) {
		(void)str_format(err, errlen, "%s: path too long", dbpath);
		return -1;
	}
	now = (uint64_t)time(NULL);
	st->version = old_version(dbpath) + 1;
	if (st->version < now)
		st->version = now;
	/* A stale temp file of a crashed compile with our pid: ours to replace. */
	if (unlink(tmp) == -1 && errno != ENOENT) {
		(void)str_format(err, errlen, "unlink %s: %s", tmp, strerror(errno));
		return -1;
	}
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd == -1) {
		(void)str_format(err, errlen, "create %s: %s", tmp, strerror(errno));
		return -1;
	}
	db = gdbm_fd_open(fd, tmp, COMPILE_BLOCK_BYTES,
	                  GDBM_NEWDB | GDBM_NOLOCK | GDBM_NOMMAP | GDBM_CLOERROR, NULL);
	if (db == NULL) {
		(void)str_format(err, errlen, "%s: %s", tmp, gdbm_strerror(gdbm_errno));
		goto fail;
	}
	/* The cache and free-space settings only change speed; a refusal is not fatal. */
	(void)gdbm_setopt(db, GDBM_SETCACHESIZE, &cache, sizeof(cache));
	(void)gdbm_setopt(db, GDBM_SETCOALESCEBLKS, &no, sizeof(no));
	if (store_all(db, src, srcpath, st->version, err, errlen) == -1)
		goto fail;
	if (gdbm_sync(db) != 0) {
		(void)str_format(err, errlen, "sync %s: %s", tmp, gdbm_strerror(gdbm_errno));
		goto fail;
	}
	if (fsync(gdbm_fdesc(db)) == -1) {
		(void)str_format(err, errlen, "fsync %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (fstat(gdbm_fdesc(db), &sb) == 0)
		st->db_bytes = (uint64_t)sb.st_size;
	if (gdbm_close(db) != 0) {
		db = NULL;
		(void)str_format(err, errlen, "close %s: %s", tmp, gdbm_strerror(gdbm_errno));
		goto fail;
	}
	db = NULL;
	if (rename(tmp, dbpath) == -1) {
		(void)str_format(err, errlen, "rename %s to %s: %s", tmp, dbpath, strerror(errno));
		goto fail;
	}
	/* The rename is durable only once the directory is. */
	if (fsync_dir(dir, err, errlen) == -1)
		return -1;
	st->backends = src->tables->nbackends;
	st->domains = src->tables->ndomains;
	st->rules = src->tables->nrules;
	st->users = src->nusers;
	st->aliases = src->naliases;
	st->elapsed_ms = time_mono_ms() - start;
	return 0;
fail:
	if (db != NULL)
		gdbm_close(db);
	(void)unlink(tmp);
	return -1;
}
