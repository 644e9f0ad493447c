/*
 * map-bench: N lookups against a compiled map on one core, addresses drawn at random from
 * a file (one per line). Prints lookups per second and peak RSS. A benchmark driver for
 * bench/bench-map.sh, not a test: it never fails on speed, only on wrong answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "util.h"

static unsigned long
peak_rss_kb(void)
{
	char line[256];
	unsigned long kb = 0;
	FILE *f;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* xorshift64: a fixed, cheap sequence so that runs compare. */
static uint64_t
next_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

int
main(int argc, char **argv)
{
	char **addrs = NULL, **na, line[512], err[512];
	size_t n = 0, cap = 0, len;
	uint64_t count, i, seed = 0x9e3779b97f4a7c15ULL, start, ms, bad = 0;
	struct map_result res;
	struct map *m;
	FILE *f;

	if (argc != 4 || parse_u64(argv[3], 1, UINT64_MAX, &count) == -1) {
		fprintf(stderr, "usage: map-bench DB ADDRESS_FILE LOOKUPS\n");
		return 2;
	}
	if ((f = fopen(argv[2], "r")) == NULL) {
		perror(argv[2]);
		return 2;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		len = strcspn(line, "\n");
		line[len] = '\0';
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((na = reallocarray(addrs, cap, sizeof(*addrs))) == NULL)
				return 2;
			addrs = na;
		}
		if ((addrs[n++] = strdup(line)) == NULL)
			return 2;
	}
	fclose(f);
	if (n == 0) {
		fprintf(stderr, "%s: no addresses\n", argv[2]);
		return 2;
	}
	start = time_mono_ms();
	if ((m = map_open(argv[1], err, sizeof(err))) == NULL) {
		fprintf(stderr, "map-bench: %s\n", err);
		return 2;
	}
	printf("open: %llu ms\n", (unsigned long long)(time_mono_ms() - start));
	start = time_mono_ms();
	for (i = 0; i < count; i++) {
		(void)map_lookup(m, addrs[next_rand(&seed) % n], &res);
		if (res.status != MAP_DELIVER)
			bad++;
		map_result_free(&res);
	}
	ms = time_mono_ms() - start;
	printf("lookups: %llu in %.3f s: %.0f lookups/s; not delivered: %llu; peak RSS %lu kB\n",
	       (unsigned long long)count, (double)ms / 1000.0,
	       ms ? (double)count * 1000.0 / (double)ms : 0.0, (unsigned long long)bad,
	       peak_rss_kb());
	map_close(m);
	for (i = 0; i < n; i++)
		free(addrs[i]);
	free(addrs);
	return bad == 0 ? 0 : 1;
}
