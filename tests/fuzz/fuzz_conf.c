/*
 * Fuzz target for lib/conf: arbitrary text through libconfig and the validator, with the
 * mailplex.conf schema and a schema using every value type. On failure the message must
 * be set and the destination zeroed; ASan/LSan catch leaks and overreads.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "mailplex_conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libconfig 1.5 (Debian's libconfig9) leaks its scanner's string buffers when a syntax
 * error follows a string token. Not ours to fix; a few bytes per rejected reload.
 */
const char *
__lsan_default_suppressions(void)
{
	return "leak:libconfig.so\n";
}

struct f_entry {
	char *name;
	struct conf_address addr;
	struct conf_strlist tags;
};

struct f_conf {
	int64_t n;
	int flag;
	uint64_t dur;
	uint64_t size;
	int mode;
	struct conf_address addr;
	struct conf_strlist list;
	struct conf_list entries;
};

static const char *const f_modes[] = {"a", "b", NULL};

static const struct conf_key f_entry_keys[] = {
    {.name = "name",
     .type = CONF_T_STRING,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct f_entry, name),
     .max = 64},
    {.name = "addr", .type = CONF_T_ADDRESS, .offset = offsetof(struct f_entry, addr)},
    {.name = "tags", .type = CONF_T_STRLIST, .offset = offsetof(struct f_entry, tags), .max = 4},
    {.name = NULL},
};

static const struct conf_key f_keys[] = {
    {.name = "n", .type = CONF_T_INT, .offset = offsetof(struct f_conf, n), .min = -5, .max = 5},
    {.name = "flag", .type = CONF_T_BOOL, .offset = offsetof(struct f_conf, flag)},
    {.name = "dur", .type = CONF_T_DURATION, .offset = offsetof(struct f_conf, dur)},
    {.name = "size", .type = CONF_T_SIZE, .offset = offsetof(struct f_conf, size), .max = 1 << 30},
    {.name = "mode",
     .type = CONF_T_ENUM,
     .offset = offsetof(struct f_conf, mode),
     .names = f_modes},
    {.name = "addr", .type = CONF_T_ADDRESS, .offset = offsetof(struct f_conf, addr)},
    {.name = "list", .type = CONF_T_STRLIST, .offset = offsetof(struct f_conf, list), .max = 8},
    {.name = "entries",
     .type = CONF_T_GROUPLIST,
     .offset = offsetof(struct f_conf, entries),
     .sub = f_entry_keys,
     .elem_size = sizeof(struct f_entry),
     .max = 8},
    {.name = NULL},
};

static const struct conf_schema f_schema = {.keys = f_keys, .size = sizeof(struct f_conf)};

static void
check(const struct conf_schema *schema, const char *text, void *dst)
{
	char err[CONF_ERR_MAX];
	const unsigned char *p = dst;
	size_t i;

	err[0] = '\0';
	if (conf_load_string(schema, text, "fuzz.conf", dst, err, sizeof(err)) == 0) {
		conf_free(schema, dst);
		return;
	}
	if (strncmp(err, "fuzz.conf:", 10) != 0)
		abort();
	for (i = 0; i < schema->size; i++)
		if (p[i] != 0)
			abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailplex_conf mc;
	struct f_conf fc;
	char *text;

	if (size > 65536)
		return 0;
	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	check(&mailplex_conf_schema, text, &mc);
	check(&f_schema, text, &fc);
	free(text);
	return 0;
}
