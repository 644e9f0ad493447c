/*
 * Fuzz target for the map source parser and validator (lib/map_source): arbitrary bytes
 * in, either a source whose every record decodes and whose every entry resolves, or
 * diagnostics in "file:line: " form. Never touches a file.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "map_source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
diag_check(void *arg, const char *msg)
{
	/* Every message names the file and a line. */
	if (strncmp(msg, "f.map:", 6) != 0 || msg[6] < '0' || msg[6] > '9')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char local[MAP_LOCAL_MAX + 1], domain[MAP_DOMAIN_MAX + 1], err[256];
	struct map_source *src;
	struct map_hit_info hi;
	struct map_fetcher fe;
	struct map_rec rec;
	size_t i;
	long d;

	src = map_source_parse("f.map", (const char *)data, size, diag_check, NULL);
	if (src == NULL)
		return 0;
	if (src->tables->ndomains == 0)
		abort();
	map_source_fetcher(src, &fe);
	for (i = 0; i < src->nentries; i++) {
		const struct map_entry *e = &src->entries[i];

		if (map_rec_decode(e->val, e->vallen, src->tables->nbackends, &rec) == -1)
			abort();
		if (map_addr_split(e->key, e->keylen, NULL, local, domain, err, sizeof(err)) == -1)
			abort();
		if ((d = map_tables_find_domain(src->tables, domain)) < 0)
			abort();
		map_resolve_one(src->tables, &fe, local, domain, d, &hi, err, sizeof(err));
		if (hi.hit != MAP_HIT_ENTRY)
			abort();
		free(hi.val.owned);
	}
	map_source_free(src);
	return 0;
}
