/*
 * Fuzz target for map_lookup's address handling: RCPT TO and login names reach it from
 * the network. A fixed map is compiled once into a temp dir; every input is looked up and
 * the result must be well formed (status and recipients consistent, strings bounded).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "map.h"
#include "map_compile.h"
#include "map_source.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char fuzz_map[] =
    "backend alf lmtp=10.1.0.11:24 imap=10.1.0.11:143 tls=off\n"
    "backend fritz smtp=[2001:db8::12]:25 pop3=h.bigisp.com:995 tls=implicit\n"
    "domain bigisp.com\ndomain bigisp.net default fritz\n"
    "user john fritz\nuser a+b alf\nuser mallory reject \"closed\"\n"
    "user carol migrating alf -> fritz\n"
    "alias postmaster: john, carol\nalias abuse: postmaster, x@bigisp.net, mallory\n"
    "rule a-k alf\nrule /^[0-9]+$/ fritz\n";

static struct map *map;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct map_compile_stats st;
	struct map_source *src;
	char dir[] = "/tmp/fuzz_map_address.XXXXXX", db[64], err[256];

	if (mkdtemp(dir) == NULL || str_format(db, sizeof(db), "%s/map.db", dir) == -1)
		abort();
	src = map_source_parse("fuzz.map", fuzz_map, sizeof(fuzz_map) - 1, NULL, NULL);
	if (src == NULL || map_compile(src, "fuzz.map", db, &st, err, sizeof(err)) == -1)
		abort();
	map_source_free(src);
	if ((map = map_open(db, err, sizeof(err))) == NULL)
		abort();
	/* The map stays open; the file can go. */
	(void)unlink(db);
	(void)rmdir(dir);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct map_result res;
	char *addr;
	size_t i;
	int rc;

	if ((addr = malloc(size + 1)) == NULL)
		return 0;
	memcpy(addr, data, size);
	addr[size] = '\0';
	map_set_check_interval(map, 1000000);
	rc = map_lookup(map, addr, &res);
	if ((rc == -1) != (res.status == MAP_ERROR))
		abort();
	if (strlen(res.local) > MAP_LOCAL_MAX || strlen(res.domain) > MAP_DOMAIN_MAX)
		abort();
	for (i = 0; i < res.nrcpt; i++) {
		const struct map_recipient *r = &res.rcpt[i];

		if ((r->status == MAP_DELIVER || r->status == MAP_MIGRATING) !=
		    (r->backend != NULL))
			abort();
		if ((r->status == MAP_MIGRATING) != (r->old_backend != NULL))
			abort();
		if (r->nchain > MAP_CHAIN_MAX)
			abort();
	}
	if (res.status == MAP_DELIVER && res.nrcpt == 0)
		abort();
	map_result_free(&res);
	free(addr);
	return 0;
}
