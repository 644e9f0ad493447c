/*
 * Configuration loader: libconfig parses, this file validates against a table and fills
 * the caller's struct. Owns the value syntaxes (durations, sizes, addresses) and the
 * wording of every config error. It must never accept an unknown key, never keep a
 * partly filled struct after an error, and never resolve a host name.
 */
#include <errno.h>
#include <libconfig.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "util.h"

#define CONF_PATH_MAX 256

struct conf_ctx {
	const char *fname; /* for settings libconfig knows no file of (strings) */
	char *err;
	size_t errlen;
};

static int conf_group(struct conf_ctx *c, const config_setting_t *g, const struct conf_key *keys,
                      char *base, const char *path, const config_setting_t *encl);

static void conf_error(struct conf_ctx *c, const config_setting_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
conf_error(struct conf_ctx *c, const config_setting_t *s, const char *fmt, ...)
{
	char msg[CONF_ERR_MAX];
	const char *file = c->fname;
	unsigned int line = 0;
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (s != NULL) {
		if (config_setting_source_file(s) != NULL)
			file = config_setting_source_file(s);
		line = config_setting_source_line(s);
	}
	/* Truncation of an overlong message is acceptable: the place comes first. */
	if (line > 0)
		(void)str_format(c->err, c->errlen, "%s:%u: %s", file, line, msg);
	else
		(void)str_format(c->err, c->errlen, "%s: %s", file, msg);
}

/* ---- value syntaxes ---- */

/* Digits then a unit from the table; no unit means units[0]. */
struct conf_unit {
	const char *suffix;
	uint64_t mult;
};

static int
conf_parse_units(const char *s, const struct conf_unit *units, size_t nunits, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	for (i = 0; i < nunits; i++) {
		if (strcmp(s, units[i].suffix) != 0)
			continue;
		if (units[i].mult != 0 && v > UINT64_MAX / units[i].mult)
			return -1;
		*out = v * units[i].mult;
		return 0;
	}
	return -1;
}

int
conf_parse_duration(const char *s, uint64_t *ms)
{
	static const struct conf_unit units[] = {
	    {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
	};

	return conf_parse_units(s, units, ARRAY_LEN(units), ms);
}

int
conf_parse_size(const char *s, uint64_t *bytes)
{
	static const struct conf_unit units[] = {
	    {"", 1},
	    {"k", 1024},
	    {"K", 1024},
	    {"m", 1024 * 1024},
	    {"M", 1024 * 1024},
	    {"g", 1024 * 1024 * 1024},
	    {"G", 1024 * 1024 * 1024},
	};

	return conf_parse_units(s, units, ARRAY_LEN(units), bytes);
}

/* ---- descriptions for messages ---- */

static const char *
conf_libconfig_type(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		return "an integer";
	case CONFIG_TYPE_FLOAT:
		return "a float";
	case CONFIG_TYPE_STRING:
		return "a string";
	case CONFIG_TYPE_BOOL:
		return "a bool";
	case CONFIG_TYPE_ARRAY:
		return "an array [ ]";
	case CONFIG_TYPE_LIST:
		return "a list ( )";
	case CONFIG_TYPE_GROUP:
		return "a group { }";
	default:
		return "nothing";
	}
}

static const char *
conf_expected(enum conf_type t)
{
	switch (t) {
	case CONF_T_STRING:
		return "a string";
	case CONF_T_INT:
		return "an integer";
	case CONF_T_BOOL:
		return "true or false";
	case CONF_T_DURATION:
		return "a duration (\"250ms\", \"30s\", \"5m\", \"1h\", \"2d\" or seconds)";
	case CONF_T_SIZE:
		return "a size (\"64k\", \"10M\", \"1G\" or bytes)";
	case CONF_T_ENUM:
		return "a string";
	case CONF_T_ADDRESS:
		return "an address string (\"host:port\", \"[v6addr]:port\", \"*:port\")";
	case CONF_T_IP:
		return "an IPv4 or IPv6 address";
	case CONF_T_STRLIST:
		return "a list of strings";
	case CONF_T_GROUP:
		return "a group { ... }";
	case CONF_T_GROUPLIST:
		return "a list of groups ( { ... }, ... )";
	}
	return "?";
}

/* "a, b, c" into buf; a truncated list still helps. */
static void
conf_join_names(char *buf, size_t len, const char *const *names, const struct conf_key *keys)
{
	size_t used = 0, i, n;
	const char *name;

	buf[0] = '\0';
	for (i = 0;; i++) {
		name = names != NULL ? names[i] : keys[i].name;
		if (name == NULL)
			break;
		n = strlen(name) + (i > 0 ? 2 : 0);
		if (used + n + 1 > len)
			break;
		(void)str_format(buf + used, len - used, "%s%s", i > 0 ? ", " : "", name);
		used += n;
	}
}

static void
conf_join_path(char *out, size_t len, const char *path, const char *name)
{
	/* A truncated path still names the place; the line number is exact anyway. */
	if (path[0] == '\0')
		(void)str_copy(out, len, name);
	else
		(void)str_format(out, len, "%s.%s", path, name);
}

/* ---- storing values ---- */

static int
conf_store_string(struct conf_ctx *c, const struct conf_key *k, const char *v, char *base,
                  const char *path, const config_setting_t *s)
{
	size_t max = k->max > 0 ? (size_t)k->max : CONF_STRING_MAX, len = strlen(v);
	char **dst = (char **)(void *)(base + k->offset);
	char *copy;

	if (len > max || (k->min > 0 && len < (size_t)k->min)) {
		conf_error(c, s, "'%s': length %zu out of range %lld..%zu", path, len,
		           (long long)(k->min > 0 ? k->min : 0), max);
		return -1;
	}
	if ((copy = strdup(v)) == NULL) {
		conf_error(c, s, "'%s': out of memory", path);
		return -1;
	}
	free(*dst);
	*dst = copy;
	return 0;
}

static int
conf_store_int(struct conf_ctx *c, const struct conf_key *k, long long v, char *base,
               const char *path, const config_setting_t *s)
{
	if (v < k->min || v > k->max) {
		conf_error(c, s, "'%s': %lld out of range %lld..%lld", path, v, (long long)k->min,
		           (long long)k->max);
		return -1;
	}
	*(int64_t *)(void *)(base + k->offset) = v;
	return 0;
}

static int
conf_store_u64(struct conf_ctx *c, const struct conf_key *k, uint64_t v, char *base,
               const char *path, const config_setting_t *s)
{
	const char *unit = k->type == CONF_T_DURATION ? " ms" : " bytes";
	uint64_t min = k->min > 0 ? (uint64_t)k->min : 0;

	if (v < min || (k->max > 0 && v > (uint64_t)k->max)) {
		if (k->max > 0)
			conf_error(c, s, "'%s': %llu%s out of range %llu..%llu%s", path,
			           (unsigned long long)v, unit, (unsigned long long)min,
			           (unsigned long long)k->max, unit);
		else
			conf_error(c, s, "'%s': %llu%s is below the minimum %llu%s", path,
			           (unsigned long long)v, unit, (unsigned long long)min, unit);
		return -1;
	}
	*(uint64_t *)(void *)(base + k->offset) = v;
	return 0;
}

/* An IP literal (v4 or v6, no brackets) into ip (may be NULL: syntax check only). */
static int
conf_ip_parse(const char *v, struct conf_ip *ip)
{
	struct conf_ip tmp;

	memset(&tmp, 0, sizeof(tmp));
	if (inet_pton(AF_INET, v, &tmp.addr.in) == 1)
		tmp.af = AF_INET;
	else if (inet_pton(AF_INET6, v, &tmp.addr.in6) == 1)
		tmp.af = AF_INET6;
	else
		return -1;
	if (inet_ntop(tmp.af, &tmp.addr, tmp.str, sizeof(tmp.str)) == NULL)
		return -1;
	if (ip != NULL)
		*ip = tmp;
	return 0;
}

/* A scalar given as text: every string-valued type, and every default. */
static int
conf_store_text(struct conf_ctx *c, const struct conf_key *k, const char *v, char *base,
                const char *path, const config_setting_t *s)
{
	struct conf_address *a;
	char names[CONF_ERR_MAX / 2], why[CONF_ERR_MAX / 2];
	uint64_t u;
	long long ll;
	char *end;
	size_t i;

	switch (k->type) {
	case CONF_T_STRING:
		return conf_store_string(c, k, v, base, path, s);
	case CONF_T_INT:
		errno = 0;
		ll = strtoll(v, &end, 10);
		if (errno != 0 || end == v || *end != '\0') {
			conf_error(c, s, "'%s': '%s' is not an integer", path, v);
			return -1;
		}
		return conf_store_int(c, k, ll, base, path, s);
	case CONF_T_BOOL:
		if (strcmp(v, "true") == 0 || strcmp(v, "yes") == 0)
			*(int *)(void *)(base + k->offset) = 1;
		else if (strcmp(v, "false") == 0 || strcmp(v, "no") == 0)
			*(int *)(void *)(base + k->offset) = 0;
		else {
			conf_error(c, s, "'%s': '%s' is not true or false", path, v);
			return -1;
		}
		return 0;
	case CONF_T_DURATION:
	case CONF_T_SIZE:
		if ((k->type == CONF_T_DURATION ? conf_parse_duration(v, &u)
		                                : conf_parse_size(v, &u)) == -1) {
			conf_error(c, s, "'%s': '%s' is not %s", path, v, conf_expected(k->type));
			return -1;
		}
		return conf_store_u64(c, k, u, base, path, s);
	case CONF_T_ENUM:
		for (i = 0; k->names[i] != NULL; i++) {
			if (strcmp(v, k->names[i]) == 0) {
				*(int *)(void *)(base + k->offset) = (int)i;
				return 0;
			}
		}
		conf_join_names(names, sizeof(names), k->names, NULL);
		conf_error(c, s, "'%s': '%s' is not one of: %s", path, v, names);
		return -1;
	case CONF_T_ADDRESS:
		a = (struct conf_address *)(void *)(base + k->offset);
		if (sock_addr_split(v, a->host, sizeof(a->host), &a->port, why, sizeof(why)) ==
		    -1) {
			conf_error(c, s, "'%s': %s", path, why);
			return -1;
		}
		if (a->port == 0) {
			conf_error(c, s, "'%s': address '%s': port 0 is not a port", path, v);
			return -1;
		}
		if ((k->flags & CONF_NUMERIC) && conf_ip_parse(a->host, NULL) == -1) {
			conf_error(c, s, "'%s': address '%s': the host must be an IP address", path,
			           v);
			return -1;
		}
		return 0;
	case CONF_T_IP:
		if (conf_ip_parse(v, (struct conf_ip *)(void *)(base + k->offset)) == -1) {
			conf_error(c, s, "'%s': '%s' is not %s", path, v, conf_expected(k->type));
			return -1;
		}
		return 0;
	default:
		conf_error(c, s, "'%s': schema error: a default for %s", path,
		           conf_expected(k->type));
		return -1;
	}
}

static int
conf_strlist(struct conf_ctx *c, const struct conf_key *k, const config_setting_t *s, char *base,
             const char *path)
{
	struct conf_strlist *l = (struct conf_strlist *)(void *)(base + k->offset);
	size_t max = k->max > 0 ? (size_t)k->max : CONF_LIST_MAX, n, i;
	const config_setting_t *e;
	const char *v;

	n = (size_t)config_setting_length(s);
	if (n > max || (k->min > 0 && n < (size_t)k->min)) {
		conf_error(c, s, "'%s': %zu elements, allowed %lld..%zu", path, n,
		           (long long)(k->min > 0 ? k->min : 0), max);
		return -1;
	}
	if (n == 0)
		return 0;
	if ((l->v = calloc(n, sizeof(*l->v))) == NULL) {
		conf_error(c, s, "'%s': out of memory", path);
		return -1;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned int)i);
		if (e == NULL || config_setting_type(e) != CONFIG_TYPE_STRING) {
			conf_error(c, e != NULL ? e : s, "'%s[%zu]': expected a string, got %s",
			           path, i, e != NULL ? conf_libconfig_type(e) : "nothing");
			return -1;
		}
		v = config_setting_get_string(e);
		if (strlen(v) > CONF_STRING_MAX) {
			conf_error(c, e, "'%s[%zu]': longer than %d bytes", path, i,
			           CONF_STRING_MAX);
			return -1;
		}
		if ((l->v[i] = strdup(v)) == NULL) {
			conf_error(c, e, "'%s': out of memory", path);
			return -1;
		}
		l->n = i + 1;
	}
	return 0;
}

static int
conf_grouplist(struct conf_ctx *c, const struct conf_key *k, const config_setting_t *s, char *base,
               const char *path)
{
	struct conf_list *l = (struct conf_list *)(void *)(base + k->offset);
	size_t max = k->max > 0 ? (size_t)k->max : CONF_LIST_MAX, n, i;
	const config_setting_t *e;
	char epath[CONF_PATH_MAX];

	n = (size_t)config_setting_length(s);
	if (n > max || (k->min > 0 && n < (size_t)k->min)) {
		conf_error(c, s, "'%s': %zu entries, allowed %lld..%zu", path, n,
		           (long long)(k->min > 0 ? k->min : 0), max);
		return -1;
	}
	if (n == 0)
		return 0;
	if ((l->v = calloc(n, k->elem_size)) == NULL) {
		conf_error(c, s, "'%s': out of memory", path);
		return -1;
	}
	/* n counts the entries conf_free must visit, so it grows as they are filled. */
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned int)i);
		(void)str_format(epath, sizeof(epath), "%s[%zu]", path, i);
		if (e == NULL || !config_setting_is_group(e)) {
			conf_error(c, e != NULL ? e : s, "'%s': expected a group { ... }, got %s",
			           epath, e != NULL ? conf_libconfig_type(e) : "nothing");
			return -1;
		}
		l->n = i + 1;
		if (conf_group(c, e, k->sub, (char *)l->v + i * k->elem_size, epath, e) == -1)
			return -1;
	}
	return 0;
}

static int
conf_value(struct conf_ctx *c, const struct conf_key *k, const config_setting_t *s, char *base,
           const char *path)
{
	int t = config_setting_type(s);
	long long v;

	switch (k->type) {
	case CONF_T_INT:
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
			break;
		return conf_store_int(c, k, config_setting_get_int64(s), base, path, s);
	case CONF_T_BOOL:
		if (t != CONFIG_TYPE_BOOL)
			break;
		*(int *)(void *)(base + k->offset) = config_setting_get_bool(s) ? 1 : 0;
		return 0;
	case CONF_T_DURATION:
	case CONF_T_SIZE:
		if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
			v = config_setting_get_int64(s);
			if (v < 0 ||
			    (k->type == CONF_T_DURATION && (uint64_t)v > UINT64_MAX / 1000)) {
				conf_error(c, s, "'%s': %lld is not %s", path, v,
				           conf_expected(k->type));
				return -1;
			}
			return conf_store_u64(
			    c, k, k->type == CONF_T_DURATION ? (uint64_t)v * 1000 : (uint64_t)v,
			    base, path, s);
		}
		if (t != CONFIG_TYPE_STRING)
			break;
		return conf_store_text(c, k, config_setting_get_string(s), base, path, s);
	case CONF_T_STRING:
	case CONF_T_ENUM:
	case CONF_T_ADDRESS:
	case CONF_T_IP:
		if (t != CONFIG_TYPE_STRING)
			break;
		return conf_store_text(c, k, config_setting_get_string(s), base, path, s);
	case CONF_T_STRLIST:
		if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
			break;
		return conf_strlist(c, k, s, base, path);
	case CONF_T_GROUP:
		if (t != CONFIG_TYPE_GROUP)
			break;
		return conf_group(c, s, k->sub, base + k->offset, path, s);
	case CONF_T_GROUPLIST:
		if (t != CONFIG_TYPE_LIST)
			break;
		return conf_grouplist(c, k, s, base, path);
	}
	conf_error(c, s, "'%s': expected %s, got %s", path, conf_expected(k->type),
	           conf_libconfig_type(s));
	return -1;
}

static const struct conf_key *
conf_find(const struct conf_key *keys, const char *name)
{
	for (; keys->name != NULL; keys++)
		if (name != NULL && strcmp(keys->name, name) == 0)
			return keys;
	return NULL;
}

/*
 * Fills base from group g (NULL: the group is absent; defaults apply and missing
 * required keys are reported at encl, the nearest setting that exists).
 */
static int
conf_group(struct conf_ctx *c, const config_setting_t *g, const struct conf_key *keys, char *base,
           const char *path, const config_setting_t *encl)
{
	const config_setting_t *m;
	const struct conf_key *k;
	char kpath[CONF_PATH_MAX], where[CONF_PATH_MAX + 16], known[CONF_ERR_MAX / 2];
	unsigned int i, n;

	if (path[0] == '\0')
		(void)str_copy(where, sizeof(where), "at top level");
	else
		(void)str_format(where, sizeof(where), "in section '%s'", path);
	n = g != NULL ? (unsigned int)config_setting_length(g) : 0;
	for (i = 0; i < n; i++) {
		m = config_setting_get_elem(g, i);
		if (conf_find(keys, config_setting_name(m)) == NULL) {
			conf_join_names(known, sizeof(known), NULL, keys);
			conf_error(c, m, "unknown key '%s' %s (known: %s)",
			           config_setting_name(m) ? config_setting_name(m) : "?", where,
			           known);
			return -1;
		}
	}
	for (k = keys; k->name != NULL; k++) {
		conf_join_path(kpath, sizeof(kpath), path, k->name);
		m = g != NULL ? config_setting_get_member(g, k->name) : NULL;
		if (m != NULL) {
			if (conf_value(c, k, m, base, kpath) == -1)
				return -1;
			continue;
		}
		if (k->flags & CONF_REQUIRED) {
			conf_error(c, encl, "required key '%s' missing %s", k->name, where);
			return -1;
		}
		if (k->type == CONF_T_GROUP) {
			if (conf_group(c, NULL, k->sub, base + k->offset, kpath, encl) == -1)
				return -1;
		} else if (k->def != NULL && k->type != CONF_T_STRLIST &&
		           k->type != CONF_T_GROUPLIST) {
			if (conf_store_text(c, k, k->def, base, kpath, encl) == -1)
				return -1;
		}
	}
	return 0;
}

/* ---- releasing ---- */

static void
conf_free_keys(const struct conf_key *keys, char *base)
{
	const struct conf_key *k;
	struct conf_strlist *sl;
	struct conf_list *gl;
	char **str;
	size_t i;

	for (k = keys; k->name != NULL; k++) {
		switch (k->type) {
		case CONF_T_STRING:
			str = (char **)(void *)(base + k->offset);
			free(*str);
			*str = NULL;
			break;
		case CONF_T_STRLIST:
			sl = (struct conf_strlist *)(void *)(base + k->offset);
			for (i = 0; i < sl->n; i++)
				free(sl->v[i]);
			free(sl->v);
			sl->v = NULL;
			sl->n = 0;
			break;
		case CONF_T_GROUP:
			conf_free_keys(k->sub, base + k->offset);
			break;
		case CONF_T_GROUPLIST:
			gl = (struct conf_list *)(void *)(base + k->offset);
			for (i = 0; i < gl->n; i++)
				conf_free_keys(k->sub, (char *)gl->v + i * k->elem_size);
			free(gl->v);
			gl->v = NULL;
			gl->n = 0;
			break;
		default:
			break;
		}
	}
}

void
conf_free(const struct conf_schema *schema, void *dst)
{
	conf_free_keys(schema->keys, dst);
	memset(dst, 0, schema->size);
}

/* ---- entry points ---- */

static int
conf_apply(struct conf_ctx *c, const struct conf_schema *schema, config_t *cf, void *dst)
{
	const config_setting_t *root = config_root_setting(cf);

	if (conf_group(c, root, schema->keys, dst, "", root) == -1) {
		conf_free(schema, dst);
		return -1;
	}
	return 0;
}

int
conf_load_file(const struct conf_schema *schema, const char *path, void *dst, char *err,
               size_t errlen)
{
	struct conf_ctx c = {.fname = path, .err = err, .errlen = errlen};
	char dir[CONF_PATH_MAX * 4];
	FILE *f;
	config_t cf;
	int rc;

	memset(dst, 0, schema->size);
	/* Open it ourselves: libconfig's "file I/O error" would hide the errno. */
	if ((f = fopen(path, "r")) == NULL) {
		(void)str_format(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (str_copy(dir, sizeof(dir), path) == -1) {
		fclose(f);
		(void)str_format(err, errlen, "%s: path too long", path);
		return -1;
	}
	config_init(&cf);
	config_set_include_dir(&cf, dirname(dir));
	if (config_read(&cf, f) == CONFIG_FALSE) {
		(void)str_format(err, errlen, "%s:%d: %s",
		                 config_error_file(&cf) ? config_error_file(&cf) : path,
		                 config_error_line(&cf), config_error_text(&cf));
		fclose(f);
		config_destroy(&cf);
		return -1;
	}
	fclose(f);
	rc = conf_apply(&c, schema, &cf, dst);
	config_destroy(&cf);
	return rc;
}

int
conf_load_string(const struct conf_schema *schema, const char *text, const char *name, void *dst,
                 char *err, size_t errlen)
{
	struct conf_ctx c = {.fname = name, .err = err, .errlen = errlen};
	config_t cf;
	int rc;

	memset(dst, 0, schema->size);
	/* An include from a string would read files relative to the working directory. */
	if (strstr(text, "@include") != NULL) {
		(void)str_format(err, errlen, "%s: @include is only allowed in files", name);
		return -1;
	}
	config_init(&cf);
	if (config_read_string(&cf, text) == CONFIG_FALSE) {
		(void)str_format(err, errlen, "%s:%d: %s", name, config_error_line(&cf),
		                 config_error_text(&cf));
		config_destroy(&cf);
		return -1;
	}
	rc = conf_apply(&c, schema, &cf, dst);
	config_destroy(&cf);
	return rc;
}
