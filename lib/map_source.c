/*
 * The map source language: tokenizer, directives, cross-checks (references, duplicates,
 * served domains, alias loops and depth), the record encoding and the one-level resolution
 * step the reader shares. Takes bytes and reports through a callback: never opens a file,
 * never writes the database.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map_source.h"
#include "sock.h"
#include "util.h"

/* ---- tables ---- */

struct map_tables *
map_tables_new(void)
{
	struct map_tables *t;

	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	t->refs = 1;
	return t;
}

void
map_tables_ref(struct map_tables *t)
{
	t->refs++;
}

void
map_tables_unref(struct map_tables *t)
{
	size_t i;

	if (t == NULL || --t->refs > 0)
		return;
	for (i = 0; i < t->nrules; i++)
		if (t->rules[i].re_ok)
			regfree(&t->rules[i].re);
	free(t->rules);
	free(t->domains);
	free(t->backends);
	free(t);
}

long
map_tables_find_backend(const struct map_tables *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->nbackends; i++)
		if (strcmp(t->backends[i].name, name) == 0)
			return (long)i;
	return -1;
}

long
map_tables_find_domain(const struct map_tables *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->ndomains; i++)
		if (strcmp(t->domains[i].name, name) == 0)
			return (long)i;
	return -1;
}

/* ---- rules ---- */

static int
range_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/*
 * glibc compiles bounded repetitions by copying the atom, so "(a{99}){99}" costs 10^4
 * states: refuse patterns whose repetition bounds multiply past a small budget.
 */
static int
regex_cost_ok(const char *p)
{
	unsigned long cost = 1, n;
	const char *q;

	for (; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0') {
			p++;
			continue;
		}
		if (*p != '{')
			continue;
		n = 0;
		for (q = p + 1; *q != '\0' && *q != '}'; q++) {
			if (*q >= '0' && *q <= '9') {
				n = n * 10 + (unsigned long)(*q - '0');
				if (n > 1000)
					return 0;
			} else if (*q == ',') {
				n = 0;
			}
		}
		cost *= n + 1;
		if (cost > 1000)
			return 0;
	}
	return 1;
}

int
map_rule_prepare(struct map_rule *r, char *err, size_t errlen)
{
	char buf[128];
	size_t len = strlen(r->pattern);
	int rc;

	r->re_ok = 0;
	if (r->kind == MAP_RULE_RANGE) {
		if (len == 1 && range_char(r->pattern[0])) {
			r->lo = r->hi = r->pattern[0];
		} else if (len == 3 && r->pattern[1] == '-' && range_char(r->pattern[0]) &&
		           range_char(r->pattern[2]) && r->pattern[0] <= r->pattern[2] &&
		           !!isdigit((unsigned char)r->pattern[0]) ==
		               !!isdigit((unsigned char)r->pattern[2])) {
			r->lo = r->pattern[0];
			r->hi = r->pattern[2];
		} else {
			(void)str_format(err, errlen,
			                 "bad letter range '%s' (expected like a-k or 0-9)",
			                 r->pattern);
			return -1;
		}
		return 0;
	}
	if (len == 0) {
		(void)str_format(err, errlen, "empty regular expression");
		return -1;
	}
	if (!regex_cost_ok(r->pattern)) {
		(void)str_format(err, errlen,
		                 "regular expression /%s/: repetition bounds too large",
		                 r->pattern);
		return -1;
	}
	if ((rc = regcomp(&r->re, r->pattern, REG_EXTENDED | REG_ICASE | REG_NOSUB)) != 0) {
		regerror(rc, NULL, buf, sizeof(buf));
		(void)str_format(err, errlen, "invalid regular expression /%s/: %s", r->pattern,
		                 buf);
		return -1;
	}
	r->re_ok = 1;
	return 0;
}

int
map_rule_match(const struct map_rule *r, const char *local)
{
	if (r->kind == MAP_RULE_RANGE)
		return local[0] >= r->lo && local[0] <= r->hi;
	return r->re_ok && regexec(&r->re, local, 0, NULL, 0) == 0;
}

/* ---- addresses ---- */

static int
local_char_ok(unsigned char c)
{
	/* Controls, space and the specials that only quoted local parts may hold. */
	if (c <= 0x20 || c == 0x7f)
		return 0;
	return strchr("\"(),:;<>@[\\]", c) == NULL;
}

static int
domain_ok(const char *d, size_t len)
{
	size_t i;

	if (len == 0 || len > MAP_DOMAIN_MAX || d[0] == '.' || d[0] == '-' || d[len - 1] == '.' ||
	    d[len - 1] == '-')
		return 0;
	for (i = 0; i < len; i++) {
		if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= '0' && d[i] <= '9') || d[i] == '-' ||
		      d[i] == '.'))
			return 0;
		if (d[i] == '.' && d[i + 1] == '.')
			return 0;
	}
	return 1;
}

int
map_addr_split(const char *in, size_t len, const char *primary, char *local, char *domain,
               char *err, size_t errlen)
{
	const char *at;
	size_t llen, dlen, i;

	if (len > MAP_ADDR_MAX) {
		(void)str_format(err, errlen, "address longer than %d bytes", MAP_ADDR_MAX);
		return -1;
	}
	at = memchr(in, '@', len);
	llen = at != NULL ? (size_t)(at - in) : len;
	if (llen == 0) {
		(void)str_format(err, errlen, "empty local part");
		return -1;
	}
	if (llen > MAP_LOCAL_MAX) {
		(void)str_format(err, errlen, "local part longer than %d bytes", MAP_LOCAL_MAX);
		return -1;
	}
	for (i = 0; i < llen; i++) {
		if (!local_char_ok((unsigned char)in[i])) {
			(void)str_format(err, errlen,
			                 "bad character in local part (quoted local parts are "
			                 "not supported)");
			return -1;
		}
		local[i] = (char)tolower((unsigned char)in[i]);
	}
	local[llen] = '\0';
	if (at == NULL) {
		if (primary == NULL) {
			(void)str_format(err, errlen, "address without a domain");
			return -1;
		}
		if (llen + 1 + strlen(primary) > MAP_ADDR_MAX) {
			(void)str_format(err, errlen, "address longer than %d bytes", MAP_ADDR_MAX);
			return -1;
		}
		return str_copy(domain, MAP_DOMAIN_MAX + 1, primary);
	}
	dlen = len - llen - 1;
	if (dlen > MAP_DOMAIN_MAX) {
		(void)str_format(err, errlen, "domain longer than %d bytes", MAP_DOMAIN_MAX);
		return -1;
	}
	for (i = 0; i < dlen; i++)
		domain[i] = (char)tolower((unsigned char)at[1 + i]);
	domain[dlen] = '\0';
	if (!domain_ok(domain, dlen)) {
		(void)str_format(err, errlen, "bad domain '%.*s'", (int)dlen, at + 1);
		return -1;
	}
	return 0;
}

/* ---- record encoding ---- */

struct field {
	const char *p;
	size_t len;
};

/* Splits on tabs. Returns the number of fields, or max + 1 if there are more. */
static size_t
fields_split(const char *p, size_t len, struct field *f, size_t max)
{
	size_t n = 0;
	const char *end = p + len, *tab;

	for (;;) {
		if (n == max)
			return max + 1;
		tab = memchr(p, '\t', (size_t)(end - p));
		f[n].p = p;
		f[n].len = tab != NULL ? (size_t)(tab - p) : (size_t)(end - p);
		n++;
		if (tab == NULL)
			return n;
		p = tab + 1;
	}
}

static int
field_u64(const struct field *f, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (f->len == 0 || f->len > 20)
		return -1;
	for (i = 0; i < f->len; i++) {
		if (f->p[i] < '0' || f->p[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(f->p[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(f->p[i] - '0');
	}
	if (v > max)
		return -1;
	*out = v;
	return 0;
}

static int
field_is(const struct field *f, const char *s)
{
	return f->len == strlen(s) && memcmp(f->p, s, f->len) == 0;
}

static int
text_ok(const char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return 0;
	return 1;
}

int
map_rec_decode(const char *p, size_t len, size_t nbackends, struct map_rec *out)
{
	struct field f[5];
	uint64_t v;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (len < 3 || p[1] != '\t' || (p[0] != 'U' && p[0] != 'A'))
		return -1;
	out->kind = p[0];
	n = fields_split(p + 2, len - 2, f, p[0] == 'U' ? 4 : 2);
	if (n < 2 || field_u64(&f[0], UINT32_MAX, &v) == -1)
		return -1;
	out->line = (unsigned int)v;
	if (out->kind == 'A') {
		/* f[1] runs to the end: every target, tab-separated, none empty. */
		out->text = f[1].p;
		out->textlen = (size_t)(p + len - f[1].p);
		if (out->textlen == 0 || out->text[0] == '\t' ||
		    out->text[out->textlen - 1] == '\t' ||
		    memmem(out->text, out->textlen, "\t\t", 2) != NULL)
			return -1;
		return 0;
	}
	if (f[1].len != 1)
		return -1;
	out->state = f[1].p[0];
	switch (out->state) {
	case 'D':
		if (n != 3 || field_u64(&f[2], nbackends - 1, &v) == -1 || nbackends == 0)
			return -1;
		out->backend = (size_t)v;
		return 0;
	case 'R':
		if (n != 3 || f[2].len == 0 || f[2].len > MAP_TEXT_MAX ||
		    !text_ok(f[2].p, f[2].len))
			return -1;
		out->text = f[2].p;
		out->textlen = f[2].len;
		return 0;
	case 'M':
		if (n != 4 || nbackends == 0 || field_u64(&f[2], nbackends - 1, &v) == -1)
			return -1;
		out->old_backend = (size_t)v;
		if (field_u64(&f[3], nbackends - 1, &v) == -1)
			return -1;
		out->backend = (size_t)v;
		return 0;
	default:
		return -1;
	}
}

static int
backend_name_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > MAP_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
			return 0;
	return 1;
}

int
map_backend_encode(const struct map_backend *b, char *buf, size_t buflen)
{
	return str_format(buf, buflen, "%u\t%s\t%s\t%s\t%u\t%s\t%u\t%s\t%u\t%s", b->line, b->name,
	                  b->deliver_proto == MAP_PROTO_NONE ? "-"
	                                                     : map_proto_name(b->deliver_proto),
	                  b->deliver.host, b->deliver.port, b->imap.host, b->imap.port,
	                  b->pop3.host, b->pop3.port, map_tls_name(b->tls));
}

static int
endpoint_decode(const struct field *h, const struct field *port, struct map_endpoint *e)
{
	uint64_t v;

	if (h->len >= sizeof(e->host) || !text_ok(h->p, h->len) || field_u64(port, 65535, &v) == -1)
		return -1;
	memcpy(e->host, h->p, h->len);
	e->host[h->len] = '\0';
	e->port = (uint16_t)v;
	return (h->len == 0) == (v == 0) ? 0 : -1;
}

int
map_backend_decode(const char *p, size_t len, struct map_backend *b)
{
	struct field f[10];
	uint64_t v;

	memset(b, 0, sizeof(*b));
	if (fields_split(p, len, f, 10) != 10 || field_u64(&f[0], UINT32_MAX, &v) == -1 ||
	    !backend_name_ok(f[1].p, f[1].len))
		return -1;
	b->line = (unsigned int)v;
	memcpy(b->name, f[1].p, f[1].len);
	if (field_is(&f[2], "-"))
		b->deliver_proto = MAP_PROTO_NONE;
	else if (field_is(&f[2], "lmtp"))
		b->deliver_proto = MAP_PROTO_LMTP;
	else if (field_is(&f[2], "smtp"))
		b->deliver_proto = MAP_PROTO_SMTP;
	else
		return -1;
	if (endpoint_decode(&f[3], &f[4], &b->deliver) == -1 ||
	    endpoint_decode(&f[5], &f[6], &b->imap) == -1 ||
	    endpoint_decode(&f[7], &f[8], &b->pop3) == -1)
		return -1;
	if ((b->deliver_proto == MAP_PROTO_NONE) != (b->deliver.host[0] == '\0'))
		return -1;
	if (field_is(&f[9], "off"))
		b->tls = MAP_TLS_OFF;
	else if (field_is(&f[9], "on"))
		b->tls = MAP_TLS_ON;
	else if (field_is(&f[9], "implicit"))
		b->tls = MAP_TLS_IMPLICIT;
	else
		return -1;
	return 0;
}

int
map_domain_encode(const struct map_domain *d, char *buf, size_t buflen)
{
	if (d->default_backend < 0)
		return str_format(buf, buflen, "%u\t%s\t-", d->line, d->name);
	return str_format(buf, buflen, "%u\t%s\t%ld", d->line, d->name, d->default_backend);
}

int
map_domain_decode(const char *p, size_t len, size_t nbackends, struct map_domain *d)
{
	struct field f[3];
	uint64_t v;

	memset(d, 0, sizeof(*d));
	if (fields_split(p, len, f, 3) != 3 || field_u64(&f[0], UINT32_MAX, &v) == -1 ||
	    !domain_ok(f[1].p, f[1].len))
		return -1;
	d->line = (unsigned int)v;
	memcpy(d->name, f[1].p, f[1].len);
	if (field_is(&f[2], "-")) {
		d->default_backend = -1;
		return 0;
	}
	if (nbackends == 0 || field_u64(&f[2], nbackends - 1, &v) == -1)
		return -1;
	d->default_backend = (long)v;
	return 0;
}

int
map_rule_encode(const struct map_rule *r, char *buf, size_t buflen)
{
	return str_format(buf, buflen, "%u\t%c\t%s\t%zu\t%zu", r->line,
	                  r->kind == MAP_RULE_RANGE ? 'R' : 'X', r->pattern, r->backend, r->domain);
}

int
map_rule_decode(const char *p, size_t len, size_t nbackends, size_t ndomains, struct map_rule *r)
{
	struct field f[5];
	uint64_t v;
	char err[8];

	memset(r, 0, sizeof(*r));
	if (fields_split(p, len, f, 5) != 5 || field_u64(&f[0], UINT32_MAX, &v) == -1 ||
	    f[2].len > MAP_PATTERN_MAX || !text_ok(f[2].p, f[2].len))
		return -1;
	r->line = (unsigned int)v;
	if (field_is(&f[1], "R"))
		r->kind = MAP_RULE_RANGE;
	else if (field_is(&f[1], "X"))
		r->kind = MAP_RULE_REGEX;
	else
		return -1;
	memcpy(r->pattern, f[2].p, f[2].len);
	if (nbackends == 0 || field_u64(&f[3], nbackends - 1, &v) == -1)
		return -1;
	r->backend = (size_t)v;
	if (ndomains == 0 || field_u64(&f[4], ndomains - 1, &v) == -1)
		return -1;
	r->domain = (size_t)v;
	return map_rule_prepare(r, err, sizeof(err));
}

int
map_quote(const char *s, size_t len, char *buf, size_t buflen)
{
	size_t i, o = 0;

	if (buflen < 3)
		return -1;
	buf[o++] = '"';
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\') {
			if (o + 2 >= buflen)
				return -1;
			buf[o++] = '\\';
		}
		if (o + 2 >= buflen)
			return -1;
		buf[o++] = s[i];
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return 0;
}

/* ---- the resolution step ---- */

static int
fetch_rec(const struct map_tables *t, const struct map_fetcher *fe, const char *local,
          const char *domain, struct map_hit_info *out, char *err, size_t errlen)
{
	char key[MAP_LOCAL_MAX + 1 + MAP_DOMAIN_MAX + 1];
	int rc;

	if (str_format(key, sizeof(key), "%s@%s", local, domain) == -1) {
		(void)str_format(err, errlen, "address too long");
		return -1;
	}
	rc = fe->fetch(fe->ctx, key, strlen(key), &out->val);
	if (rc == -1) {
		(void)str_format(err, errlen, "cannot read the record of %s", key);
		return -1;
	}
	if (rc == 0)
		return 0;
	if (map_rec_decode(out->val.p, out->val.len, t->nbackends, &out->rec) == -1) {
		free(out->val.owned);
		memset(&out->val, 0, sizeof(out->val));
		(void)str_format(err, errlen, "corrupt record for %s", key);
		return -1;
	}
	return 1;
}

void
map_resolve_one(const struct map_tables *t, const struct map_fetcher *fe, const char *local,
                const char *domain, long domain_idx, struct map_hit_info *out, char *err,
                size_t errlen)
{
	const char *plus;
	size_t i;
	int rc;

	memset(out, 0, sizeof(*out));
	out->hit = MAP_HIT_ERROR;
	out->domain = domain_idx;
	(void)str_copy(out->local, sizeof(out->local), local);
	if ((rc = fetch_rec(t, fe, local, domain, out, err, errlen)) != 0) {
		if (rc == 1)
			out->hit = MAP_HIT_ENTRY;
		return;
	}
	/* Postfix's order: the literal local part first ("a+b" may be a user), then without
	 * its detail. */
	plus = strchr(local, '+');
	if (plus != NULL && plus != local) {
		(void)str_copy_n(out->local, sizeof(out->local), local, (size_t)(plus - local));
		(void)str_copy(out->detail, sizeof(out->detail), plus + 1);
		if ((rc = fetch_rec(t, fe, out->local, domain, out, err, errlen)) != 0) {
			if (rc == 1)
				out->hit = MAP_HIT_ENTRY;
			return;
		}
	}
	for (i = 0; i < t->nrules; i++) {
		if (t->rules[i].domain == (size_t)domain_idx &&
		    map_rule_match(&t->rules[i], out->local)) {
			out->hit = MAP_HIT_RULE;
			out->rule = i;
			return;
		}
	}
	out->hit = t->domains[domain_idx].default_backend >= 0 ? MAP_HIT_DEFAULT : MAP_HIT_NONE;
}

/* ---- arena: the 1,000,000 keys and values of a big source, freed at once ---- */

#define ARENA_CHUNK_BYTES (1024 * 1024)

struct map_arena {
	struct map_arena *next;
	size_t used, cap;
	char data[];
};

static char *
arena_alloc(struct map_source *src, size_t n)
{
	struct map_arena *a = src->arena;
	size_t cap;

	if (a == NULL || a->cap - a->used < n) {
		cap = n > ARENA_CHUNK_BYTES ? n : ARENA_CHUNK_BYTES;
		if ((a = malloc(sizeof(*a) + cap)) == NULL)
			return NULL;
		a->next = src->arena;
		a->used = 0;
		a->cap = cap;
		src->arena = a;
	}
	a->used += n;
	return a->data + a->used - n;
}

static char *
arena_strndup(struct map_source *src, const char *s, size_t n)
{
	char *p;

	if ((p = arena_alloc(src, n + 1)) == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* ---- entry table ---- */

static uint32_t
key_hash(const char *k, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)k[i];
		h *= 16777619u;
	}
	return h;
}

static long
entry_find(const struct map_source *src, const char *key, size_t keylen)
{
	size_t i, mask = src->nslots - 1;
	const struct map_entry *e;
	uint32_t s;

	if (src->nslots == 0)
		return -1;
	for (i = key_hash(key, keylen) & mask; (s = src->slots[i]) != 0; i = (i + 1) & mask) {
		e = &src->entries[s - 1];
		if (e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
			return (long)(s - 1);
	}
	return -1;
}

static int
slots_grow(struct map_source *src)
{
	size_t n = src->nslots ? src->nslots * 2 : 1024, i, j;
	uint32_t *s;

	if ((s = calloc(n, sizeof(*s))) == NULL)
		return -1;
	for (i = 0; i < src->nentries; i++) {
		j = key_hash(src->entries[i].key, src->entries[i].keylen) & (n - 1);
		while (s[j] != 0)
			j = (j + 1) & (n - 1);
		s[j] = (uint32_t)(i + 1);
	}
	free(src->slots);
	src->slots = s;
	src->nslots = n;
	return 0;
}

/* The caller checked that the key is absent. */
static int
entry_add(struct map_source *src, char *key, size_t keylen, char *val, size_t vallen,
          unsigned int line)
{
	struct map_entry *e;
	size_t n, j;

	if (src->nentries >= UINT32_MAX - 1)
		return -1;
	if (src->nentries == src->capentries) {
		n = src->capentries ? src->capentries * 2 : 1024;
		if ((e = reallocarray(src->entries, n, sizeof(*e))) == NULL)
			return -1;
		src->entries = e;
		src->capentries = n;
	}
	if ((src->nentries + 1) * 2 > src->nslots && slots_grow(src) == -1)
		return -1;
	e = &src->entries[src->nentries];
	e->key = key;
	e->keylen = keylen;
	e->val = val;
	e->vallen = vallen;
	e->line = line;
	for (j = key_hash(key, keylen) & (src->nslots - 1); src->slots[j] != 0;
	     j = (j + 1) & (src->nslots - 1))
		;
	src->slots[j] = (uint32_t)(++src->nentries);
	return 0;
}

static int
source_fetch(void *ctx, const char *key, size_t keylen, struct map_val *out)
{
	const struct map_source *src = ctx;
	long i;

	if ((i = entry_find(src, key, keylen)) < 0)
		return 0;
	out->p = src->entries[i].val;
	out->len = src->entries[i].vallen;
	out->owned = NULL;
	return 1;
}

void
map_source_fetcher(struct map_source *src, struct map_fetcher *out)
{
	out->fetch = source_fetch;
	out->ctx = src;
}

void
map_source_free(struct map_source *src)
{
	struct map_arena *a, *next;

	if (src == NULL)
		return;
	for (a = src->arena; a != NULL; a = next) {
		next = a->next;
		free(a);
	}
	map_tables_unref(src->tables);
	free(src->entries);
	free(src->slots);
	free(src);
}

/* ---- parser ---- */

#define TOKENS_MAX (MAP_LINE_MAX / 2 + 2)
#define REFS_MAX   65535

struct tok {
	const char *s; /* unescaped, terminated, in parser scratch */
	size_t len;
	int quoted;
};

/* Back-end names as referenced, resolved once every backend line has been read. */
struct ref {
	char name[MAP_NAME_MAX + 1];
};

struct pending_user {
	const char *name; /* "local" or "local@domain" as written */
	const char *text;
	unsigned int line;
	char state;
	uint16_t ref, old_ref;
};

struct pending_alias {
	const char *name;
	size_t first, ntargets; /* into parser.targets */
	unsigned int line;
};

struct pending_rule {
	unsigned int line;
	uint16_t ref;
	char *domain; /* NULL: the primary domain */
};

struct pending_domain {
	long ref; /* -1 none */
};

struct parser {
	const char *name;
	map_diag_fn *diag;
	void *arg;
	unsigned int line;
	size_t nerrors;
	struct map_source *src;
	struct ref *refs;
	size_t nrefs, caprefs;
	struct pending_user *users;
	size_t nusers, capusers;
	struct pending_alias *aliases;
	size_t naliases, capaliases;
	const char **targets;
	size_t ntargets, captargets;
	struct pending_rule *prules;
	struct pending_domain *pdomains;
	int oom;
	char scratch[MAP_LINE_MAX + 1];
	struct tok toks[TOKENS_MAX];
	size_t ntoks;
};

static void diag_at(struct parser *p, unsigned int line, int warning, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
diag_at(struct parser *p, unsigned int line, int warning, const char *fmt, ...)
{
	char msg[1024], out[1200];
	va_list ap;

	if (!warning) {
		if (++p->nerrors > MAP_ERRORS_MAX)
			return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!warning && p->nerrors == MAP_ERRORS_MAX)
		(void)snprintf(out, sizeof(out), "%s:%u: %s (too many errors, stopping)", p->name,
		               line, msg);
	else
		(void)snprintf(out, sizeof(out), "%s:%u: %s%s", p->name, line,
		               warning ? "warning: " : "", msg);
	if (p->diag != NULL)
		p->diag(p->arg, out);
}

#define perr(p, ...) diag_at((p), (p)->line, 0, __VA_ARGS__)

static int
grow(void **arr, size_t *cap, size_t n, size_t size)
{
	size_t ncap;
	void *a;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 64;
	if ((a = reallocarray(*arr, ncap, size)) == NULL)
		return -1;
	*arr = a;
	*cap = ncap;
	return 0;
}

/* Splits a line into tokens; '#' outside quotes starts a comment. */
static int
tokenize(struct parser *p, const char *line, size_t len)
{
	size_t i = 0, o = 0;
	struct tok *t;

	p->ntoks = 0;
	while (i < len) {
		if (line[i] == ' ' || line[i] == '\t') {
			i++;
			continue;
		}
		if (line[i] == '#')
			break;
		t = &p->toks[p->ntoks++];
		t->s = p->scratch + o;
		t->quoted = line[i] == '"';
		if (t->quoted) {
			for (i++;; i++) {
				if (i >= len) {
					perr(p, "unterminated quoted string");
					return -1;
				}
				if (line[i] == '"')
					break;
				if (line[i] == '\\') {
					if (i + 1 >= len ||
					    (line[i + 1] != '"' && line[i + 1] != '\\')) {
						perr(p, "bad escape in quoted string (only \\\" "
						        "and \\\\)");
						return -1;
					}
					i++;
				}
				p->scratch[o++] = line[i];
			}
			i++;
			if (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '#') {
				perr(p, "quoted string must be followed by a space");
				return -1;
			}
		} else {
			while (i < len && line[i] != ' ' && line[i] != '\t' && line[i] != '"' &&
			       line[i] != '#')
				p->scratch[o++] = line[i++];
			if (i < len && line[i] == '"') {
				perr(p, "quote inside a word");
				return -1;
			}
		}
		t->len = (size_t)(p->scratch + o - t->s);
		p->scratch[o++] = '\0';
	}
	return 0;
}

static int
ref_get(struct parser *p, const struct tok *t, uint16_t *out)
{
	size_t i;

	if (t->quoted || !backend_name_ok(t->s, t->len)) {
		perr(p, "bad backend name '%s'", t->s);
		return -1;
	}
	for (i = 0; i < p->nrefs; i++) {
		if (strcmp(p->refs[i].name, t->s) == 0) {
			*out = (uint16_t)i;
			return 0;
		}
	}
	if (p->nrefs >= REFS_MAX) {
		perr(p, "too many distinct backend names");
		return -1;
	}
	if (grow((void **)&p->refs, &p->caprefs, p->nrefs, sizeof(*p->refs)) == -1) {
		p->oom = 1;
		return -1;
	}
	memcpy(p->refs[p->nrefs].name, t->s, t->len + 1);
	*out = (uint16_t)p->nrefs++;
	return 0;
}

static long
ref_resolve(struct parser *p, uint16_t ref, unsigned int line)
{
	long b = map_tables_find_backend(p->src->tables, p->refs[ref].name);

	if (b < 0)
		diag_at(p, line, 0, "undefined backend '%s'", p->refs[ref].name);
	return b;
}

static int
endpoint_parse(struct parser *p, const char *key, const char *val, struct map_endpoint *e)
{
	char err[256];

	if (e->host[0] != '\0') {
		perr(p, "%s= given twice", key);
		return -1;
	}
	if (sock_addr_split(val, e->host, sizeof(e->host), &e->port, err, sizeof(err)) == -1) {
		perr(p, "bad %s address: %s", key, err);
		e->host[0] = '\0';
		return -1;
	}
	if (strcmp(e->host, "*") == 0 || e->port == 0) {
		perr(p, "bad %s address '%s': a back end needs a host and a port", key, val);
		e->host[0] = '\0';
		return -1;
	}
	return 0;
}

static void
directive_backend(struct parser *p)
{
	struct map_tables *t = p->src->tables;
	struct map_backend b, *nb;
	const char *eq, *v;
	int tls_seen = 0;
	size_t i;
	long dup;

	if (p->ntoks < 3) {
		perr(p, "usage: backend NAME lmtp=|smtp=HOST:PORT imap=HOST:PORT pop3=HOST:PORT "
		        "tls=off|on|implicit");
		return;
	}
	memset(&b, 0, sizeof(b));
	b.line = p->line;
	if (p->toks[1].quoted || !backend_name_ok(p->toks[1].s, p->toks[1].len)) {
		perr(p, "bad backend name '%s' (letters, digits, '.', '_', '-'; 1 to %d)",
		     p->toks[1].s, MAP_NAME_MAX);
		return;
	}
	if (strcmp(p->toks[1].s, "reject") == 0 || strcmp(p->toks[1].s, "migrating") == 0) {
		perr(p, "'%s' is a keyword, not a backend name", p->toks[1].s);
		return;
	}
	memcpy(b.name, p->toks[1].s, p->toks[1].len + 1);
	for (i = 2; i < p->ntoks; i++) {
		if (p->toks[i].quoted || (eq = strchr(p->toks[i].s, '=')) == NULL) {
			perr(p, "expected key=value, got '%s'", p->toks[i].s);
			return;
		}
		v = eq + 1;
		if (strncmp(p->toks[i].s, "lmtp=", 5) == 0 ||
		    strncmp(p->toks[i].s, "smtp=", 5) == 0) {
			if (b.deliver_proto != MAP_PROTO_NONE) {
				perr(p, "one delivery protocol per backend (lmtp= or smtp=)");
				return;
			}
			if (endpoint_parse(p, p->toks[i].s[0] == 'l' ? "lmtp" : "smtp", v,
			                   &b.deliver) == -1)
				return;
			b.deliver_proto = p->toks[i].s[0] == 'l' ? MAP_PROTO_LMTP : MAP_PROTO_SMTP;
		} else if (strncmp(p->toks[i].s, "imap=", 5) == 0) {
			if (endpoint_parse(p, "imap", v, &b.imap) == -1)
				return;
		} else if (strncmp(p->toks[i].s, "pop3=", 5) == 0) {
			if (endpoint_parse(p, "pop3", v, &b.pop3) == -1)
				return;
		} else if (strncmp(p->toks[i].s, "tls=", 4) == 0) {
			if (tls_seen++) {
				perr(p, "tls= given twice");
				return;
			}
			if (strcmp(v, "off") == 0)
				b.tls = MAP_TLS_OFF;
			else if (strcmp(v, "on") == 0)
				b.tls = MAP_TLS_ON;
			else if (strcmp(v, "implicit") == 0)
				b.tls = MAP_TLS_IMPLICIT;
			else {
				perr(p, "tls= must be off, on or implicit");
				return;
			}
		} else {
			perr(p, "unknown backend key '%.*s'", (int)(eq - p->toks[i].s),
			     p->toks[i].s);
			return;
		}
	}
	if (b.deliver_proto == MAP_PROTO_NONE && b.imap.host[0] == '\0' && b.pop3.host[0] == '\0') {
		perr(p, "backend '%s' serves no protocol (give lmtp= or smtp=, imap=, pop3=)",
		     b.name);
		return;
	}
	if ((dup = map_tables_find_backend(t, b.name)) >= 0) {
		perr(p, "duplicate backend '%s' (first at line %u)", b.name, t->backends[dup].line);
		return;
	}
	if ((nb = reallocarray(t->backends, t->nbackends + 1, sizeof(*nb))) == NULL) {
		p->oom = 1;
		return;
	}
	t->backends = nb;
	t->backends[t->nbackends++] = b;
}

static void
directive_domain(struct parser *p)
{
	struct map_tables *t = p->src->tables;
	struct map_domain d, *nd;
	struct pending_domain *npd;
	struct pending_domain pd = {-1};
	uint16_t ref;
	long dup;

	if (p->ntoks != 2 &&
	    !(p->ntoks == 4 && strcmp(p->toks[2].s, "default") == 0 && !p->toks[2].quoted)) {
		perr(p, "usage: domain NAME [default BACKEND]");
		return;
	}
	memset(&d, 0, sizeof(d));
	d.line = p->line;
	d.default_backend = -1;
	if (p->toks[1].quoted || p->toks[1].len > MAP_DOMAIN_MAX) {
		perr(p, "bad domain '%s'", p->toks[1].s);
		return;
	}
	memcpy(d.name, p->toks[1].s, p->toks[1].len + 1);
	str_lower(d.name);
	if (!domain_ok(d.name, p->toks[1].len)) {
		perr(p, "bad domain '%s'", p->toks[1].s);
		return;
	}
	if ((dup = map_tables_find_domain(t, d.name)) >= 0) {
		perr(p, "duplicate domain '%s' (first at line %u)", d.name, t->domains[dup].line);
		return;
	}
	if (p->ntoks == 4) {
		if (ref_get(p, &p->toks[3], &ref) == -1)
			return;
		pd.ref = ref;
	}
	nd = reallocarray(t->domains, t->ndomains + 1, sizeof(*nd));
	if (nd == NULL) {
		p->oom = 1;
		return;
	}
	t->domains = nd;
	npd = reallocarray(p->pdomains, t->ndomains + 1, sizeof(*npd));
	if (npd == NULL) {
		p->oom = 1;
		return;
	}
	p->pdomains = npd;
	p->pdomains[t->ndomains] = pd;
	t->domains[t->ndomains++] = d;
}

static void
directive_user(struct parser *p)
{
	struct pending_user u;
	size_t i;

	memset(&u, 0, sizeof(u));
	u.line = p->line;
	if (p->ntoks < 3 || p->toks[1].quoted) {
		perr(p, "usage: user NAME BACKEND | reject \"TEXT\" | migrating OLD -> NEW");
		return;
	}
	if (!p->toks[2].quoted && strcmp(p->toks[2].s, "reject") == 0) {
		if (p->ntoks != 4 || !p->toks[3].quoted) {
			perr(p, "usage: user NAME reject \"TEXT\"");
			return;
		}
		if (p->toks[3].len == 0 || p->toks[3].len > MAP_TEXT_MAX) {
			perr(p, "reject text must be 1 to %d bytes", MAP_TEXT_MAX);
			return;
		}
		for (i = 0; i < p->toks[3].len; i++) {
			if ((unsigned char)p->toks[3].s[i] < 0x20 || p->toks[3].s[i] == 0x7f) {
				perr(p, "control character in reject text");
				return;
			}
		}
		u.state = 'R';
		if ((u.text = arena_strndup(p->src, p->toks[3].s, p->toks[3].len)) == NULL) {
			p->oom = 1;
			return;
		}
	} else if (!p->toks[2].quoted && strcmp(p->toks[2].s, "migrating") == 0) {
		if (p->ntoks != 6 || strcmp(p->toks[4].s, "->") != 0 || p->toks[4].quoted) {
			perr(p, "usage: user NAME migrating OLD -> NEW");
			return;
		}
		if (ref_get(p, &p->toks[3], &u.old_ref) == -1 ||
		    ref_get(p, &p->toks[5], &u.ref) == -1)
			return;
		if (u.ref == u.old_ref) {
			perr(p, "migrating from '%s' to itself", p->toks[3].s);
			return;
		}
		u.state = 'M';
	} else {
		if (p->ntoks != 3) {
			perr(p, "unexpected '%s' after the backend", p->toks[3].s);
			return;
		}
		if (ref_get(p, &p->toks[2], &u.ref) == -1)
			return;
		u.state = 'D';
	}
	if ((u.name = arena_strndup(p->src, p->toks[1].s, p->toks[1].len)) == NULL ||
	    grow((void **)&p->users, &p->capusers, p->nusers, sizeof(*p->users)) == -1) {
		p->oom = 1;
		return;
	}
	p->users[p->nusers++] = u;
}

static void
directive_alias(struct parser *p)
{
	struct pending_alias a;
	const char *s, *comma;
	size_t i = 2, n, namelen;

	memset(&a, 0, sizeof(a));
	a.line = p->line;
	if (p->ntoks < 2 || p->toks[1].quoted) {
		perr(p, "usage: alias NAME: TARGET, TARGET...");
		return;
	}
	namelen = p->toks[1].len;
	if (namelen > 0 && p->toks[1].s[namelen - 1] == ':') {
		namelen--;
	} else if (p->ntoks > 2 && strcmp(p->toks[2].s, ":") == 0 && !p->toks[2].quoted) {
		i = 3;
	} else {
		perr(p, "expected ':' after the alias name");
		return;
	}
	if (namelen == 0) {
		perr(p, "empty alias name");
		return;
	}
	if ((a.name = arena_strndup(p->src, p->toks[1].s, namelen)) == NULL) {
		p->oom = 1;
		return;
	}
	a.first = p->ntargets;
	for (; i < p->ntoks; i++) {
		if (p->toks[i].quoted) {
			perr(p, "alias targets are addresses, not quoted strings");
			goto fail;
		}
		for (s = p->toks[i].s; *s != '\0'; s = comma + (*comma == ',')) {
			comma = strchr(s, ',');
			if (comma == NULL)
				comma = s + strlen(s);
			n = (size_t)(comma - s);
			if (n == 0)
				continue;
			if (++a.ntargets > MAP_ALIAS_TARGETS_MAX) {
				perr(p, "alias '%s' has more than %d targets", a.name,
				     MAP_ALIAS_TARGETS_MAX);
				goto fail;
			}
			if (grow((void **)&p->targets, &p->captargets, p->ntargets,
			         sizeof(*p->targets)) == -1 ||
			    (p->targets[p->ntargets] = arena_strndup(p->src, s, n)) == NULL) {
				p->oom = 1;
				goto fail;
			}
			p->ntargets++;
		}
	}
	if (a.ntargets == 0) {
		perr(p, "alias '%s' has no target", a.name);
		goto fail;
	}
	if (grow((void **)&p->aliases, &p->capaliases, p->naliases, sizeof(*p->aliases)) == -1) {
		p->oom = 1;
		goto fail;
	}
	p->aliases[p->naliases++] = a;
	return;
fail:
	p->ntargets = a.first;
}

static void
directive_rule(struct parser *p)
{
	struct map_tables *t = p->src->tables;
	struct map_rule r, *nr;
	struct pending_rule *npr;
	const struct tok *pat;
	char err[300];
	uint16_t ref;

	if ((p->ntoks != 3 && !(p->ntoks == 5 && strcmp(p->toks[3].s, "domain") == 0 &&
	                        !p->toks[3].quoted && !p->toks[4].quoted)) ||
	    p->toks[1].quoted) {
		perr(p, "usage: rule a-k|/REGEX/ BACKEND [domain DOMAIN]");
		return;
	}
	if (t->nbackends == 0) {
		perr(p, "rule before any backend is defined");
		return;
	}
	memset(&r, 0, sizeof(r));
	r.line = p->line;
	pat = &p->toks[1];
	if (pat->len >= 2 && pat->s[0] == '/' && pat->s[pat->len - 1] == '/') {
		r.kind = MAP_RULE_REGEX;
		if (pat->len - 2 > MAP_PATTERN_MAX) {
			perr(p, "regular expression longer than %d bytes", MAP_PATTERN_MAX);
			return;
		}
		memcpy(r.pattern, pat->s + 1, pat->len - 2);
	} else {
		r.kind = MAP_RULE_RANGE;
		if (pat->len > MAP_PATTERN_MAX) {
			perr(p, "bad letter range");
			return;
		}
		memcpy(r.pattern, pat->s, pat->len);
		str_lower(r.pattern);
	}
	if (map_rule_prepare(&r, err, sizeof(err)) == -1) {
		perr(p, "%s", err);
		return;
	}
	if (ref_get(p, &p->toks[2], &ref) == -1)
		goto fail;
	if ((nr = reallocarray(t->rules, t->nrules + 1, sizeof(*nr))) == NULL)
		goto oom;
	t->rules = nr;
	if ((npr = reallocarray(p->prules, t->nrules + 1, sizeof(*npr))) == NULL)
		goto oom;
	p->prules = npr;
	p->prules[t->nrules].line = p->line;
	p->prules[t->nrules].ref = ref;
	p->prules[t->nrules].domain = NULL;
	if (p->ntoks == 5 && (p->prules[t->nrules].domain =
	                          arena_strndup(p->src, p->toks[4].s, p->toks[4].len)) == NULL)
		goto oom;
	t->rules[t->nrules++] = r;
	return;
oom:
	p->oom = 1;
fail:
	if (r.re_ok)
		regfree(&r.re);
}

static void
parse_line(struct parser *p, const char *line, size_t len)
{
	const char *d;

	if (tokenize(p, line, len) == -1 || p->ntoks == 0)
		return;
	d = p->toks[0].s;
	if (p->toks[0].quoted)
		perr(p, "a line starts with a directive, not a quoted string");
	else if (strcmp(d, "backend") == 0)
		directive_backend(p);
	else if (strcmp(d, "domain") == 0)
		directive_domain(p);
	else if (strcmp(d, "user") == 0)
		directive_user(p);
	else if (strcmp(d, "alias") == 0)
		directive_alias(p);
	else if (strcmp(d, "rule") == 0)
		directive_rule(p);
	else
		perr(p, "unknown directive '%s'", d);
}

/* Resolves references, qualifies names, fills the entry table. */
static void
finish_tables(struct parser *p)
{
	struct map_tables *t = p->src->tables;
	size_t i;
	long b;

	for (i = 0; i < t->ndomains; i++) {
		if (p->pdomains[i].ref < 0)
			continue;
		if ((b = ref_resolve(p, (uint16_t)p->pdomains[i].ref, t->domains[i].line)) >= 0)
			t->domains[i].default_backend = b;
	}
	for (i = 0; i < t->nrules; i++) {
		if ((b = ref_resolve(p, p->prules[i].ref, p->prules[i].line)) >= 0)
			t->rules[i].backend = (size_t)b;
		if (p->prules[i].domain == NULL)
			continue;
		str_lower(p->prules[i].domain);
		if ((b = map_tables_find_domain(t, p->prules[i].domain)) < 0)
			diag_at(p, p->prules[i].line, 0,
			        "rule for domain '%s', which is not served (no domain line)",
			        p->prules[i].domain);
		else
			t->rules[i].domain = (size_t)b;
	}
}

static int
qualify(struct parser *p, const char *what, const char *name, unsigned int line, char *key,
        size_t keylen)
{
	char local[MAP_LOCAL_MAX + 1], domain[MAP_DOMAIN_MAX + 1], err[128];

	if (map_addr_split(name, strlen(name), p->src->tables->domains[0].name, local, domain, err,
	                   sizeof(err)) == -1) {
		diag_at(p, line, 0, "%s '%s': %s", what, name, err);
		return -1;
	}
	if (map_tables_find_domain(p->src->tables, domain) < 0) {
		diag_at(p, line, 0, "%s '%s': domain '%s' is not served (no domain line)", what,
		        name, domain);
		return -1;
	}
	return str_format(key, keylen, "%s@%s", local, domain);
}

static void
finish_users(struct parser *p)
{
	char key[MAP_ADDR_MAX + 2], val[MAP_TEXT_MAX + 64];
	const struct pending_user *u;
	char *k, *v;
	long b, ob = 0, dup;
	size_t i;

	for (i = 0; i < p->nusers && !p->oom; i++) {
		u = &p->users[i];
		if (qualify(p, "user", u->name, u->line, key, sizeof(key)) == -1)
			continue;
		if ((dup = entry_find(p->src, key, strlen(key))) >= 0) {
			diag_at(p, u->line, 0, "duplicate user '%s' (first at line %u)", key,
			        p->src->entries[dup].line);
			continue;
		}
		b = -1;
		if (u->state != 'R' && (b = ref_resolve(p, u->ref, u->line)) < 0)
			continue;
		if (u->state == 'M' && (ob = ref_resolve(p, u->old_ref, u->line)) < 0)
			continue;
		if (u->state == 'D')
			(void)str_format(val, sizeof(val), "U\t%u\tD\t%ld", u->line, b);
		else if (u->state == 'M')
			(void)str_format(val, sizeof(val), "U\t%u\tM\t%ld\t%ld", u->line, ob, b);
		else
			(void)str_format(val, sizeof(val), "U\t%u\tR\t%s", u->line, u->text);
		if ((k = arena_strndup(p->src, key, strlen(key))) == NULL ||
		    (v = arena_strndup(p->src, val, strlen(val))) == NULL ||
		    entry_add(p->src, k, strlen(k), v, strlen(v), u->line) == -1) {
			p->oom = 1;
			return;
		}
		p->src->nusers++;
	}
}

static void
finish_aliases(struct parser *p)
{
	char key[MAP_ADDR_MAX + 2], tkey[MAP_ADDR_MAX + 2];
	const struct pending_alias *a;
	const struct map_entry *e;
	size_t i, j, len, cap;
	char *k, *v;
	int bad;
	long dup;

	for (i = 0; i < p->naliases && !p->oom; i++) {
		a = &p->aliases[i];
		if (qualify(p, "alias", a->name, a->line, key, sizeof(key)) == -1)
			continue;
		if ((dup = entry_find(p->src, key, strlen(key))) >= 0) {
			e = &p->src->entries[dup];
			if (e->val[0] == 'U')
				diag_at(p, a->line, 1,
				        "'%s' is both a user (line %u) and an alias; the user wins",
				        key, e->line);
			else
				diag_at(p, a->line, 0, "duplicate alias '%s' (first at line %u)",
				        key, e->line);
			continue;
		}
		/* "A\t<line>" then "\t<target>" each: bounded by the targets' lengths. */
		cap = 16 + a->ntargets * (MAP_ADDR_MAX + 2);
		if ((v = arena_alloc(p->src, cap)) == NULL) {
			p->oom = 1;
			return;
		}
		(void)str_format(v, cap, "A\t%u", a->line);
		len = strlen(v);
		bad = 0;
		for (j = 0; j < a->ntargets; j++) {
			if (qualify(p, "alias target", p->targets[a->first + j], a->line, tkey,
			            sizeof(tkey)) == -1) {
				bad = 1;
				continue;
			}
			v[len++] = '\t';
			memcpy(v + len, tkey, strlen(tkey));
			len += strlen(tkey);
		}
		v[len] = '\0';
		if (bad)
			continue;
		if ((k = arena_strndup(p->src, key, strlen(key))) == NULL ||
		    entry_add(p->src, k, strlen(k), v, len, a->line) == -1) {
			p->oom = 1;
			return;
		}
		p->src->naliases++;
	}
}

/* ---- alias graph: loops, depth, expansion size, targets that resolve to nothing ---- */

enum { AL_NEW, AL_VISITING, AL_DONE, AL_FAILED };
#define AL_TOO_DEEP (-2)

struct alias_check {
	struct parser *p;
	struct map_fetcher fe;
	unsigned char *state;
	unsigned char *height;
	uint16_t *count;
	size_t path[MAP_ALIAS_MAX_DEPTH + 2];
};

static int alias_visit(struct alias_check *ac, size_t idx, size_t level);

static void
path_text(struct alias_check *ac, size_t from, size_t level, const char *last, char *buf,
          size_t buflen)
{
	size_t i, o = 0;

	buf[0] = '\0';
	for (i = from; i < level; i++) {
		if (str_format(buf + o, buflen - o, "%s -> ",
		               ac->p->src->entries[ac->path[i]].key) == -1)
			return;
		o += strlen(buf + o);
	}
	(void)str_copy(buf + o, buflen - o, last);
}

/* Returns the alias's height (1: no alias among its targets), -1 failed, AL_TOO_DEEP. */
static int
alias_visit(struct alias_check *ac, size_t idx, size_t level)
{
	const struct map_entry *e = &ac->p->src->entries[idx];
	const struct map_tables *t = ac->p->src->tables;
	char local[MAP_LOCAL_MAX + 1], domain[MAP_DOMAIN_MAX + 1], err[160];
	char tkey[MAP_ADDR_MAX + 2], chain[(MAP_ALIAS_MAX_DEPTH + 2) * (MAP_ADDR_MAX + 5)];
	struct map_hit_info hi;
	const char *s, *end, *tab;
	unsigned int count = 0;
	int height = 1, h;
	long child;

	if (ac->state[idx] == AL_DONE)
		return ac->height[idx];
	if (ac->state[idx] == AL_FAILED)
		return -1;
	if (level > MAP_ALIAS_MAX_DEPTH + 1)
		return AL_TOO_DEEP;
	ac->path[level - 1] = idx;
	ac->state[idx] = AL_VISITING;
	s = e->val + 2;
	s = strchr(s, '\t') + 1; /* after "A\t<line>\t": our own encoding */
	end = e->val + e->vallen;
	for (; s < end; s = tab + 1) {
		tab = memchr(s, '\t', (size_t)(end - s));
		if (tab == NULL)
			tab = end;
		(void)str_copy_n(tkey, sizeof(tkey), s, (size_t)(tab - s));
		if (map_addr_split(tkey, strlen(tkey), NULL, local, domain, err, sizeof(err)) == -1)
			goto fail_msg;
		map_resolve_one(t, &ac->fe, local, domain, map_tables_find_domain(t, domain), &hi,
		                err, sizeof(err));
		if (hi.hit == MAP_HIT_ERROR)
			goto fail_msg;
		if (hi.hit == MAP_HIT_NONE) {
			diag_at(ac->p, e->line, 0,
			        "alias '%s': target '%s' resolves to nothing (no user, alias, rule "
			        "or default)",
			        e->key, tkey);
			goto fail;
		}
		if (hi.hit != MAP_HIT_ENTRY || hi.rec.kind != 'A') {
			count++;
		} else {
			(void)str_format(err, sizeof(err), "%s@%s", hi.local, domain);
			child = entry_find(ac->p->src, err, strlen(err));
			if (child < 0)
				goto fail; /* cannot happen: the fetcher found it */
			if (ac->state[child] == AL_VISITING) {
				size_t from = 0;

				while (from < level && ac->path[from] != (size_t)child)
					from++;
				path_text(ac, from, level, err, chain, sizeof(chain));
				diag_at(ac->p, e->line, 0, "alias loop: %s", chain);
				goto fail;
			}
			h = alias_visit(ac, (size_t)child, level + 1);
			if (h == AL_TOO_DEEP) {
				if (level > 1) {
					ac->state[idx] = AL_FAILED;
					return AL_TOO_DEEP;
				}
				path_text(ac, 0, MAP_ALIAS_MAX_DEPTH + 1, "...", chain,
				          sizeof(chain));
				diag_at(ac->p, e->line, 0,
				        "alias '%s' nests deeper than %d levels: %s", e->key,
				        MAP_ALIAS_MAX_DEPTH, chain);
				goto fail;
			}
			if (h < 0)
				goto fail;
			if (h + 1 > height)
				height = h + 1;
			count += ac->count[child];
		}
		if (count > MAP_EXPAND_MAX) {
			diag_at(ac->p, e->line, 0, "alias '%s' expands to more than %d recipients",
			        e->key, MAP_EXPAND_MAX);
			goto fail;
		}
	}
	if (height > MAP_ALIAS_MAX_DEPTH) {
		diag_at(ac->p, e->line, 0, "alias '%s' nests deeper than %d levels", e->key,
		        MAP_ALIAS_MAX_DEPTH);
		goto fail;
	}
	ac->state[idx] = AL_DONE;
	ac->height[idx] = (unsigned char)height;
	ac->count[idx] = (uint16_t)count;
	return height;
fail_msg:
	diag_at(ac->p, e->line, 0, "alias '%s': target '%s': %s", e->key, tkey, err);
fail:
	ac->state[idx] = AL_FAILED;
	return -1;
}

static void
check_aliases(struct parser *p)
{
	struct alias_check ac;
	size_t i, n = p->src->nentries;

	memset(&ac, 0, sizeof(ac));
	ac.p = p;
	map_source_fetcher(p->src, &ac.fe);
	ac.state = calloc(n ? n : 1, 1);
	ac.height = calloc(n ? n : 1, 1);
	ac.count = calloc(n ? n : 1, sizeof(*ac.count));
	if (ac.state == NULL || ac.height == NULL || ac.count == NULL) {
		p->oom = 1;
		goto out;
	}
	for (i = 0; i < n; i++)
		if (p->src->entries[i].val[0] == 'A' && ac.state[i] == AL_NEW)
			(void)alias_visit(&ac, i, 1);
out:
	free(ac.state);
	free(ac.height);
	free(ac.count);
}

struct map_source *
map_source_parse(const char *name, const char *buf, size_t len, map_diag_fn *diag, void *arg)
{
	struct parser *p;
	struct map_source *src = NULL;
	const char *line, *nl, *end = buf + len;
	size_t llen;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->name = name;
	p->diag = diag;
	p->arg = arg;
	if ((p->src = calloc(1, sizeof(*p->src))) == NULL ||
	    (p->src->tables = map_tables_new()) == NULL) {
		p->oom = 1;
		goto out;
	}
	for (line = buf; line < end && !p->oom && p->nerrors < MAP_ERRORS_MAX; line = nl + 1) {
		p->line++;
		nl = memchr(line, '\n', (size_t)(end - line));
		if (nl == NULL)
			nl = end;
		llen = (size_t)(nl - line);
		if (llen > 0 && line[llen - 1] == '\r')
			llen--;
		if (llen > MAP_LINE_MAX) {
			perr(p, "line longer than %d bytes", MAP_LINE_MAX);
			continue;
		}
		if (memchr(line, '\0', llen) != NULL) {
			perr(p, "NUL byte in line");
			continue;
		}
		parse_line(p, line, llen);
	}
	p->src->nlines = p->line;
	if (p->oom || p->nerrors >= MAP_ERRORS_MAX)
		goto out;
	if (p->src->tables->ndomains == 0) {
		diag_at(p, p->line > 0 ? p->line : 1, 0,
		        "no domain declared (add a line: domain NAME [default BACKEND])");
		goto out;
	}
	finish_tables(p);
	finish_users(p);
	finish_aliases(p);
	if (p->nerrors == 0 && !p->oom)
		check_aliases(p);
	if (p->nerrors == 0 && !p->oom) {
		src = p->src;
		p->src = NULL;
	}
out:
	if (p->oom)
		diag_at(p, p->line, 0, "out of memory");
	map_source_free(p->src);
	free(p->refs);
	free(p->users);
	free(p->aliases);
	free(p->targets);
	free(p->prules);
	free(p->pdomains);
	free(p);
	return src;
}
