/*
 * The map reader: opens a compiled map read-only, keeps its backends, domains and rules in
 * memory, resolves addresses with GDBM fetches of user and alias records only, and swaps
 * to a replaced file when one appears. Never writes the database; a corrupt record is an
 * error result, never a crash.
 */
#include <sys/stat.h>

#include <errno.h>
#include <gdbm.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "map.h"
#include "map_source.h"
#include "util.h"

/* Keeps the hot buckets of a big map in memory; GDBM's default is tiny. */
#define MAP_CACHE_BUCKETS 4096

struct map {
	char path[PATH_MAX];
	GDBM_FILE db;
	dev_t dev;
	ino_t ino;
	dev_t bad_dev; /* a replacement that failed to open: not retried until it changes */
	ino_t bad_ino;
	struct map_tables *tables;
	struct map_info info;
	uint64_t interval_ms;
	uint64_t last_check_ms;
};

const char *
map_status_name(enum map_status s)
{
	switch (s) {
	case MAP_DELIVER:
		return "deliver";
	case MAP_REJECT:
		return "reject";
	case MAP_MIGRATING:
		return "migrating";
	case MAP_UNKNOWN_USER:
		return "unknown user";
	case MAP_NOT_OURS:
		return "not ours";
	case MAP_ERROR:
		break;
	}
	return "error";
}

const char *
map_tls_name(enum map_tls t)
{
	return t == MAP_TLS_ON ? "on" : t == MAP_TLS_IMPLICIT ? "implicit" : "off";
}

const char *
map_proto_name(enum map_deliver_proto p)
{
	return p == MAP_PROTO_LMTP ? "lmtp" : p == MAP_PROTO_SMTP ? "smtp" : "none";
}

const char *
map_via_name(enum map_via v)
{
	switch (v) {
	case MAP_VIA_USER:
		return "user";
	case MAP_VIA_ALIAS:
		return "alias";
	case MAP_VIA_RULE:
		return "rule";
	case MAP_VIA_DEFAULT:
		break;
	}
	return "default";
}

/* ---- GDBM as a map_fetcher ---- */

static int
db_fetch(void *ctx, const char *key, size_t keylen, struct map_val *out)
{
	datum k, d;

	k.dptr = (char *)(uintptr_t)key;
	k.dsize = (int)keylen;
	d = gdbm_fetch((GDBM_FILE)ctx, k);
	if (d.dptr == NULL)
		return gdbm_errno == GDBM_ITEM_NOT_FOUND ? 0 : -1;
	out->p = d.dptr;
	out->len = d.dsize < 0 ? 0 : (size_t)d.dsize;
	out->owned = d.dptr;
	return 1;
}

static int
db_fetch_str(GDBM_FILE db, const char *key, struct map_val *out)
{
	return db_fetch(db, key, strlen(key), out);
}

/* ---- open ---- */

static int
meta_parse(const char *p, size_t len, struct map_info *info)
{
	const char *end = p + len, *nl, *sp;
	char key[32], val[sizeof(info->source)];
	uint64_t v;

	memset(info, 0, sizeof(*info));
	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if ((sp = memchr(p, ' ', (size_t)(nl - p))) == NULL ||
		    str_copy_n(key, sizeof(key), p, (size_t)(sp - p)) == -1 ||
		    str_copy_n(val, sizeof(val), sp + 1, (size_t)(nl - sp - 1)) == -1)
			return -1;
		if (strcmp(key, "source") == 0) {
			(void)str_copy(info->source, sizeof(info->source), val);
			continue;
		}
		if (strcmp(key, "primary") == 0) {
			if (str_copy(info->primary, sizeof(info->primary), val) == -1)
				return -1;
			continue;
		}
		if (parse_u64(val, 0, UINT64_MAX, &v) == -1)
			return -1;
		if (strcmp(key, "version") == 0)
			info->version = v;
		else if (strcmp(key, "compiled") == 0)
			info->compiled = v;
		else if (strcmp(key, "backends") == 0)
			info->backends = v;
		else if (strcmp(key, "domains") == 0)
			info->domains = v;
		else if (strcmp(key, "rules") == 0)
			info->rules = v;
		else if (strcmp(key, "users") == 0)
			info->users = v;
		else if (strcmp(key, "aliases") == 0)
			info->aliases = v;
		/* Unknown keys are newer compilers' additions: ignored. */
	}
	/* Bounds that keep the loads below sane on a corrupt or hostile file. */
	if (info->version == 0 || info->domains == 0 || info->domains > 100000 ||
	    info->backends > 100000 || info->rules > 100000)
		return -1;
	return 0;
}

/* Loads metadata, backends, domains and rules. 0, or -1 with err. */
static int
tables_load(GDBM_FILE db, struct map_tables **tp, struct map_info *info, char *err, size_t errlen)
{
	struct map_tables *t;
	struct map_val v;
	char key[32];
	size_t i;
	int rc;

	*tp = NULL;
	if ((rc = db_fetch_str(db, MAP_KEY_META, &v)) != 1) {
		(void)str_format(err, errlen, "no metadata record (not a mailplex map?)");
		return -1;
	}
	rc = meta_parse(v.p, v.len, info);
	free(v.owned);
	if (rc == -1) {
		(void)str_format(err, errlen, "corrupt metadata record");
		return -1;
	}
	if ((t = map_tables_new()) == NULL ||
	    (t->backends = calloc(info->backends + 1, sizeof(*t->backends))) == NULL ||
	    (t->domains = calloc(info->domains, sizeof(*t->domains))) == NULL ||
	    (t->rules = calloc(info->rules + 1, sizeof(*t->rules))) == NULL) {
		map_tables_unref(t);
		(void)str_format(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < info->backends; i++, t->nbackends++) {
		(void)str_format(key, sizeof(key), "%s%zu", MAP_KEY_BACKEND, i);
		if (db_fetch_str(db, key, &v) != 1)
			goto bad;
		rc = map_backend_decode(v.p, v.len, &t->backends[i]);
		free(v.owned);
		if (rc == -1)
			goto bad;
	}
	for (i = 0; i < info->domains; i++, t->ndomains++) {
		(void)str_format(key, sizeof(key), "%s%zu", MAP_KEY_DOMAIN, i);
		if (db_fetch_str(db, key, &v) != 1)
			goto bad;
		rc = map_domain_decode(v.p, v.len, t->nbackends, &t->domains[i]);
		free(v.owned);
		if (rc == -1)
			goto bad;
	}
	for (i = 0; i < info->rules; i++) {
		(void)str_format(key, sizeof(key), "%s%zu", MAP_KEY_RULE, i);
		if (db_fetch_str(db, key, &v) != 1)
			goto bad;
		rc = map_rule_decode(v.p, v.len, t->nbackends, t->ndomains, &t->rules[i]);
		free(v.owned);
		if (rc == -1)
			goto bad;
		t->nrules++;
	}
	*tp = t;
	return 0;
bad:
	(void)str_format(err, errlen, "missing or corrupt record %s", key);
	map_tables_unref(t);
	return -1;
}

static int
map_load(const char *path, GDBM_FILE *dbp, struct map_tables **tp, struct map_info *info,
         struct stat *st, char *err, size_t errlen)
{
	GDBM_FILE db;
	int cache = MAP_CACHE_BUCKETS;

	db = gdbm_open(path, 0, GDBM_READER | GDBM_NOLOCK | GDBM_CLOEXEC, 0, NULL);
	if (db == NULL) {
		(void)str_format(err, errlen, "%s: %s", path,
		                 gdbm_errno == GDBM_FILE_OPEN_ERROR ? strerror(errno)
		                                                    : gdbm_strerror(gdbm_errno));
		return -1;
	}
	/* Identity of what we opened, not of what the path names now. */
	if (fstat(gdbm_fdesc(db), st) == -1) {
		(void)str_format(err, errlen, "%s: fstat: %s", path, strerror(errno));
		gdbm_close(db);
		return -1;
	}
	if (gdbm_setopt(db, GDBM_SETCACHESIZE, &cache, sizeof(cache)) == -1)
		log_debug("map %s: cannot set the cache size: %s", path, gdbm_strerror(gdbm_errno));
	if (tables_load(db, tp, info, err, errlen) == -1) {
		char tmp[256];

		(void)str_copy(tmp, sizeof(tmp), err);
		(void)str_format(err, errlen, "%s: %s", path, tmp);
		gdbm_close(db);
		return -1;
	}
	*dbp = db;
	return 0;
}

struct map *
map_open(const char *dbpath, char *err, size_t errlen)
{
	struct map *m;
	struct stat st;

	if ((m = calloc(1, sizeof(*m))) == NULL) {
		(void)str_format(err, errlen, "out of memory");
		return NULL;
	}
	if (str_copy(m->path, sizeof(m->path), dbpath) == -1) {
		(void)str_format(err, errlen, "path too long");
		free(m);
		return NULL;
	}
	if (map_load(dbpath, &m->db, &m->tables, &m->info, &st, err, errlen) == -1) {
		free(m);
		return NULL;
	}
	m->dev = st.st_dev;
	m->ino = st.st_ino;
	m->interval_ms = MAP_CHECK_INTERVAL_MS_DEFAULT;
	m->last_check_ms = time_mono_ms();
	return m;
}

void
map_close(struct map *m)
{
	if (m == NULL)
		return;
	gdbm_close(m->db);
	map_tables_unref(m->tables);
	free(m);
}

void
map_set_check_interval(struct map *m, uint64_t ms)
{
	m->interval_ms = ms;
}

uint64_t
map_version(const struct map *m)
{
	return m->info.version;
}

void
map_get_info(const struct map *m, struct map_info *out)
{
	*out = m->info;
}

int
map_reopen_if_changed(struct map *m, int force)
{
	struct map_tables *t;
	struct map_info info;
	struct stat st, nst;
	GDBM_FILE db;
	uint64_t now;
	char err[512];

	if (!force && m->interval_ms > 0) {
		now = time_mono_ms();
		if (now - m->last_check_ms < m->interval_ms)
			return 0;
		m->last_check_ms = now;
	}
	if (stat(m->path, &st) == -1) {
		log_warn("map %s: stat", m->path);
		return -1;
	}
	if (st.st_dev == m->dev && st.st_ino == m->ino)
		return 0;
	if (st.st_dev == m->bad_dev && st.st_ino == m->bad_ino)
		return -1;
	if (map_load(m->path, &db, &t, &info, &nst, err, sizeof(err)) == -1) {
		log_warnx("map %s: keeping version %llu: %s", m->path,
		          (unsigned long long)m->info.version, err);
		m->bad_dev = st.st_dev;
		m->bad_ino = st.st_ino;
		return -1;
	}
	gdbm_close(m->db);
	map_tables_unref(m->tables);
	m->db = db;
	m->tables = t;
	m->info = info;
	m->dev = nst.st_dev;
	m->ino = nst.st_ino;
	log_info("map %s: now version %llu", m->path, (unsigned long long)info.version);
	return 1;
}

/* ---- lookup ---- */

struct lookup {
	struct map *m;
	struct map_result *res;
	struct map_fetcher fe;
	size_t cap;
	int overflow;
};

static struct map_recipient *
rcpt_add(struct lookup *lk, enum map_status status, const char *local, const char *domain,
         const char *detail, const struct map_step *chain, size_t nchain)
{
	struct map_result *res = lk->res;
	struct map_recipient *r;
	size_t n;

	if (res->nrcpt >= MAP_EXPAND_MAX) {
		lk->overflow = 1;
		return NULL;
	}
	if (res->nrcpt == lk->cap) {
		n = lk->cap ? lk->cap * 2 : 1;
		if ((r = reallocarray(res->rcpt, n, sizeof(*r))) == NULL) {
			lk->overflow = 1;
			return NULL;
		}
		res->rcpt = r;
		lk->cap = n;
	}
	r = &res->rcpt[res->nrcpt++];
	r->status = status;
	(void)str_copy(r->local, sizeof(r->local), local);
	(void)str_copy(r->domain, sizeof(r->domain), domain);
	(void)str_copy(r->detail, sizeof(r->detail), detail);
	r->backend = r->old_backend = NULL;
	r->text[0] = '\0';
	memcpy(r->chain, chain, nchain * sizeof(*chain));
	r->nchain = nchain;
	return r;
}

/* An address reached twice through aliases is delivered once. */
static int
rcpt_seen(const struct lookup *lk, const char *local, const char *domain, const char *detail)
{
	size_t i;

	for (i = 0; i < lk->res->nrcpt; i++) {
		const struct map_recipient *r = &lk->res->rcpt[i];

		if (strcmp(r->local, local) == 0 && strcmp(r->domain, domain) == 0 &&
		    strcmp(r->detail, detail) == 0)
			return 1;
	}
	return 0;
}

static void
step_set(struct map_step *s, enum map_via via, unsigned int line, const char *a, const char *b)
{
	s->via = via;
	s->line = line;
	if (b != NULL)
		(void)str_format(s->what, sizeof(s->what), "%s@%s", a, b);
	else
		(void)str_copy(s->what, sizeof(s->what), a);
}

static void
resolve(struct lookup *lk, const char *local, const char *domain, long didx, struct map_step *chain,
        size_t nchain, size_t level)
{
	const struct map_tables *t = lk->res->tables;
	char tlocal[MAP_LOCAL_MAX + 1], tdomain[MAP_DOMAIN_MAX + 1], taddr[MAP_ADDR_MAX + 2];
	char err[256];
	struct map_hit_info hi;
	struct map_recipient *r;
	const char *s, *end, *tab;
	enum map_status st;
	long tdidx;

	map_resolve_one(t, &lk->fe, local, domain, didx, &hi, err, sizeof(err));
	if (level == 0) {
		(void)str_copy(lk->res->local, sizeof(lk->res->local), hi.local);
		(void)str_copy(lk->res->detail, sizeof(lk->res->detail), hi.detail);
	}
	switch (hi.hit) {
	case MAP_HIT_ERROR:
		if ((r = rcpt_add(lk, MAP_ERROR, hi.local, domain, hi.detail, chain, nchain)))
			(void)str_copy(r->text, sizeof(r->text), err);
		return;
	case MAP_HIT_NONE:
		(void)rcpt_add(lk, MAP_UNKNOWN_USER, hi.local, domain, hi.detail, chain, nchain);
		return;
	case MAP_HIT_RULE:
	case MAP_HIT_DEFAULT:
		if (nchain >= MAP_CHAIN_MAX || rcpt_seen(lk, hi.local, domain, hi.detail))
			return;
		if (hi.hit == MAP_HIT_RULE)
			step_set(&chain[nchain], MAP_VIA_RULE, t->rules[hi.rule].line,
			         t->rules[hi.rule].pattern, NULL);
		else
			step_set(&chain[nchain], MAP_VIA_DEFAULT, t->domains[didx].line, domain,
			         NULL);
		if ((r = rcpt_add(lk, MAP_DELIVER, hi.local, domain, hi.detail, chain,
		                  nchain + 1)) != NULL)
			r->backend = hi.hit == MAP_HIT_RULE
			                 ? &t->backends[t->rules[hi.rule].backend]
			                 : &t->backends[t->domains[didx].default_backend];
		return;
	case MAP_HIT_ENTRY:
		break;
	}
	if (nchain >= MAP_CHAIN_MAX) {
		free(hi.val.owned);
		return;
	}
	step_set(&chain[nchain], hi.rec.kind == 'U' ? MAP_VIA_USER : MAP_VIA_ALIAS, hi.rec.line,
	         hi.local, domain);
	if (hi.rec.kind == 'U') {
		if (!rcpt_seen(lk, hi.local, domain, hi.detail)) {
			st = hi.rec.state == 'D'   ? MAP_DELIVER
			     : hi.rec.state == 'M' ? MAP_MIGRATING
			                           : MAP_REJECT;
			r = rcpt_add(lk, st, hi.local, domain, hi.detail, chain, nchain + 1);
			if (r != NULL && st == MAP_REJECT)
				(void)str_copy_n(r->text, sizeof(r->text), hi.rec.text,
				                 hi.rec.textlen);
			else if (r != NULL) {
				r->backend = &t->backends[hi.rec.backend];
				if (st == MAP_MIGRATING)
					r->old_backend = &t->backends[hi.rec.old_backend];
			}
		}
		free(hi.val.owned);
		return;
	}
	if (level >= MAP_ALIAS_MAX_DEPTH) {
		if ((r = rcpt_add(lk, MAP_ERROR, hi.local, domain, hi.detail, chain, nchain + 1)))
			(void)str_format(r->text, sizeof(r->text), "aliases nest deeper than %d",
			                 MAP_ALIAS_MAX_DEPTH);
		free(hi.val.owned);
		return;
	}
	end = hi.rec.text + hi.rec.textlen;
	for (s = hi.rec.text; s < end && !lk->overflow; s = tab + 1) {
		if ((tab = memchr(s, '\t', (size_t)(end - s))) == NULL)
			tab = end;
		if (map_addr_split(s, (size_t)(tab - s), NULL, tlocal, tdomain, err, sizeof(err)) ==
		    -1) {
			(void)str_copy_n(taddr, sizeof(taddr), s, (size_t)(tab - s));
			if ((r = rcpt_add(lk, MAP_ERROR, taddr, "", "", chain, nchain + 1)))
				(void)str_format(r->text, sizeof(r->text),
				                 "corrupt alias target: %s", err);
			continue;
		}
		if ((tdidx = map_tables_find_domain(t, tdomain)) < 0) {
			(void)rcpt_add(lk, MAP_NOT_OURS, tlocal, tdomain, "", chain, nchain + 1);
			continue;
		}
		resolve(lk, tlocal, tdomain, tdidx, chain, nchain + 1, level + 1);
	}
	free(hi.val.owned);
}

static enum map_status
result_status(const struct map_result *res)
{
	size_t i;

	for (i = 0; i < res->nrcpt; i++)
		if (res->rcpt[i].status == MAP_DELIVER)
			return MAP_DELIVER;
	for (i = 0; i < res->nrcpt; i++)
		if (res->rcpt[i].status == MAP_MIGRATING)
			return MAP_MIGRATING;
	return res->nrcpt > 0 ? res->rcpt[0].status : MAP_ERROR;
}

int
map_lookup(struct map *m, const char *address, struct map_result *out)
{
	struct map_step chain[MAP_CHAIN_MAX];
	struct lookup lk;
	size_t len;
	long didx;

	memset(out, 0, sizeof(*out));
	(void)map_reopen_if_changed(m, 0);
	out->tables = m->tables;
	map_tables_ref(m->tables);
	out->status = MAP_ERROR;
	/* Bounded before strlen can run far: RCPT TO arguments reach this. */
	len = strnlen(address, MAP_ADDR_MAX + 1);
	if (map_addr_split(address, len, m->tables->domains[0].name, out->local, out->domain,
	                   out->error, sizeof(out->error)) == -1)
		return -1;
	if ((didx = map_tables_find_domain(m->tables, out->domain)) < 0) {
		out->status = MAP_NOT_OURS;
		return 0;
	}
	memset(&lk, 0, sizeof(lk));
	lk.m = m;
	lk.res = out;
	lk.fe.fetch = db_fetch;
	lk.fe.ctx = m->db;
	/* Resolution starts from the literal local part, detail included. */
	{
		char local[MAP_LOCAL_MAX + 1];

		(void)str_copy(local, sizeof(local), out->local);
		resolve(&lk, local, out->domain, didx, chain, 0, 0);
	}
	if (lk.overflow) {
		(void)str_format(out->error, sizeof(out->error), "expansion exceeds %d recipients",
		                 MAP_EXPAND_MAX);
		out->status = MAP_ERROR;
		return -1;
	}
	out->status = result_status(out);
	return out->status == MAP_ERROR ? -1 : 0;
}

void
map_result_free(struct map_result *res)
{
	free(res->rcpt);
	res->rcpt = NULL;
	res->nrcpt = 0;
	map_tables_unref(res->tables);
	res->tables = NULL;
}

/* ---- dump ---- */

static void
endpoint_print(FILE *f, const char *key, const struct map_endpoint *e)
{
	if (e->host[0] == '\0')
		return;
	if (strchr(e->host, ':') != NULL)
		fprintf(f, " %s=[%s]:%u", key, e->host, e->port);
	else
		fprintf(f, " %s=%s:%u", key, e->host, e->port);
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
dump_entry(struct map *m, FILE *f, const char *key, char *err, size_t errlen)
{
	const struct map_tables *t = m->tables;
	char quoted[2 * MAP_TEXT_MAX + 3];
	struct map_val v;
	struct map_rec rec;
	const char *s, *end, *tab;
	int rc = 0;

	if (db_fetch_str(m->db, key, &v) != 1) {
		(void)str_format(err, errlen, "cannot read %s", key);
		return -1;
	}
	if (map_rec_decode(v.p, v.len, t->nbackends, &rec) == -1) {
		(void)str_format(err, errlen, "corrupt record for %s", key);
		free(v.owned);
		return -1;
	}
	if (rec.kind == 'U' && rec.state == 'D') {
		fprintf(f, "user %s %s\n", key, t->backends[rec.backend].name);
	} else if (rec.kind == 'U' && rec.state == 'M') {
		fprintf(f, "user %s migrating %s -> %s\n", key, t->backends[rec.old_backend].name,
		        t->backends[rec.backend].name);
	} else if (rec.kind == 'U') {
		if ((rc = map_quote(rec.text, rec.textlen, quoted, sizeof(quoted))) == 0)
			fprintf(f, "user %s reject %s\n", key, quoted);
		else
			(void)str_format(err, errlen, "reject text of %s too long", key);
	} else {
		fprintf(f, "alias %s:", key);
		end = rec.text + rec.textlen;
		for (s = rec.text; s < end; s = tab + 1) {
			if ((tab = memchr(s, '\t', (size_t)(end - s))) == NULL)
				tab = end;
			fprintf(f, "%s %.*s", s == rec.text ? "" : ",", (int)(tab - s), s);
		}
		fputc('\n', f);
	}
	free(v.owned);
	return rc;
}

int
map_dump(struct map *m, FILE *f, char *err, size_t errlen)
{
	const struct map_tables *t = m->tables;
	char **keys = NULL, **nk;
	size_t nkeys = 0, cap = 0, i;
	datum k, next;
	int rc = -1;

	fprintf(f, "# mailplex.map dumped from %s: version %llu, compiled at %llu from %s\n",
	        m->path, (unsigned long long)m->info.version, (unsigned long long)m->info.compiled,
	        m->info.source);
	for (i = 0; i < t->nbackends; i++) {
		const struct map_backend *b = &t->backends[i];

		fprintf(f, "backend %s", b->name);
		endpoint_print(f, map_proto_name(b->deliver_proto), &b->deliver);
		endpoint_print(f, "imap", &b->imap);
		endpoint_print(f, "pop3", &b->pop3);
		fprintf(f, " tls=%s\n", map_tls_name(b->tls));
	}
	for (i = 0; i < t->ndomains; i++) {
		fprintf(f, "domain %s", t->domains[i].name);
		if (t->domains[i].default_backend >= 0)
			fprintf(f, " default %s", t->backends[t->domains[i].default_backend].name);
		fputc('\n', f);
	}
	/* Users and aliases sorted, so that two dumps of the same map compare equal. */
	for (k = gdbm_firstkey(m->db); k.dptr != NULL; k = next) {
		next = gdbm_nextkey(m->db, k);
		if (memchr(k.dptr, '@', (size_t)k.dsize) == NULL) {
			free(k.dptr);
			continue;
		}
		if (nkeys == cap) {
			cap = cap ? cap * 2 : 1024;
			if ((nk = reallocarray(keys, cap, sizeof(*keys))) == NULL) {
				free(k.dptr);
				free(next.dptr);
				(void)str_format(err, errlen, "out of memory");
				goto out;
			}
			keys = nk;
		}
		if ((keys[nkeys] = strndup(k.dptr, (size_t)k.dsize)) == NULL) {
			free(k.dptr);
			free(next.dptr);
			(void)str_format(err, errlen, "out of memory");
			goto out;
		}
		nkeys++;
		free(k.dptr);
	}
	if (gdbm_errno != GDBM_ITEM_NOT_FOUND && gdbm_errno != GDBM_NO_ERROR) {
		(void)str_format(err, errlen, "reading keys: %s", gdbm_strerror(gdbm_errno));
		goto out;
	}
	if (nkeys > 0)
		qsort(keys, nkeys, sizeof(*keys), key_cmp);
	for (i = 0; i < nkeys; i++) {
		/* Users first: an alias target may name any of them. */
		struct map_val v;
		int isuser;

		if (db_fetch_str(m->db, keys[i], &v) != 1) {
			(void)str_format(err, errlen, "cannot read %s", keys[i]);
			goto out;
		}
		isuser = v.len > 0 && v.p[0] == 'U';
		free(v.owned);
		if (isuser && dump_entry(m, f, keys[i], err, errlen) == -1)
			goto out;
	}
	for (i = 0; i < nkeys; i++) {
		struct map_val v;
		int isalias;

		if (db_fetch_str(m->db, keys[i], &v) != 1) {
			(void)str_format(err, errlen, "cannot read %s", keys[i]);
			goto out;
		}
		isalias = v.len > 0 && v.p[0] == 'A';
		free(v.owned);
		if (isalias && dump_entry(m, f, keys[i], err, errlen) == -1)
			goto out;
	}
	for (i = 0; i < t->nrules; i++) {
		if (t->rules[i].kind == MAP_RULE_RANGE)
			fprintf(f, "rule %s %s", t->rules[i].pattern,
			        t->backends[t->rules[i].backend].name);
		else
			fprintf(f, "rule /%s/ %s", t->rules[i].pattern,
			        t->backends[t->rules[i].backend].name);
		if (t->rules[i].domain != 0)
			fprintf(f, " domain %s", t->domains[t->rules[i].domain].name);
		fputc('\n', f);
	}
	if (fflush(f) == EOF || ferror(f)) {
		(void)str_format(err, errlen, "write: %s", strerror(errno));
		goto out;
	}
	rc = 0;
out:
	for (i = 0; i < nkeys; i++)
		free(keys[i]);
	free(keys);
	return rc;
}
