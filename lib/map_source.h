/*
 * Inside the map: the source parser and validator (bytes in, entries out), the record
 * encoding shared by the compiler and the reader, and the one-level resolution step both
 * use, so that what compile validates is exactly what lookup does. No file I/O here.
 */
#ifndef MAILPLEX_MAP_SOURCE_H
#define MAILPLEX_MAP_SOURCE_H

#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "map.h"

#define MAP_LINE_MAX   4096 /* bytes per source line, newline excluded */
#define MAP_ERRORS_MAX 50   /* then the parser stops reporting and gives up */

/*
 * GDBM keys: "local@domain" for users and aliases (lower case), and keys without '@' for
 * the rest, which no address can collide with.
 */
#define MAP_KEY_META    "=meta"
#define MAP_KEY_BACKEND "=b"
#define MAP_KEY_DOMAIN  "=d"
#define MAP_KEY_RULE    "=r"

struct map_domain {
	char name[MAP_DOMAIN_MAX + 1];
	long default_backend; /* index, -1: none (unknown users are refused) */
	unsigned int line;
};

enum map_rule_kind {
	MAP_RULE_RANGE, /* first character of the local part in [lo, hi] */
	MAP_RULE_REGEX, /* POSIX ERE, case-insensitive */
};

struct map_rule {
	enum map_rule_kind kind;
	char pattern[MAP_PATTERN_MAX + 1]; /* "a-k" or the ERE without its slashes */
	char lo, hi;
	regex_t re;
	int re_ok;
	size_t backend;
	size_t domain; /* the rule covers this domain only (default: the primary) */
	unsigned int line;
};

/* Backends, domains and rules: small, held in memory by readers, shared by results. */
struct map_tables {
	unsigned int refs;
	struct map_backend *backends;
	size_t nbackends;
	struct map_domain *domains; /* [0] is the primary domain */
	size_t ndomains;
	struct map_rule *rules;
	size_t nrules;
};

struct map_tables *map_tables_new(void);
void map_tables_ref(struct map_tables *);
void map_tables_unref(struct map_tables *);
long map_tables_find_backend(const struct map_tables *, const char *name);
long map_tables_find_domain(const struct map_tables *, const char *name);
/* Compiles a range or an ERE into r (r->kind, r->pattern set). 0, or -1 with err. */
int map_rule_prepare(struct map_rule *r, char *err, size_t errlen);
int map_rule_match(const struct map_rule *r, const char *local);

/*
 * Splits and normalizes an address: lower case, bounded (RFC 5321), characters checked.
 * A bare local part gets primary (NULL: a bare name is an error). 0 or -1 with err.
 */
int map_addr_split(const char *in, size_t len, const char *primary, char *local, char *domain,
                   char *err, size_t errlen);

/*
 * A user or alias record value (tab-separated, no NUL):
 *   U <line> D <backend>          deliver
 *   U <line> R <text>             reject
 *   U <line> M <old> <new>        migrating
 *   A <line> <target> <target>... alias (normalized addresses)
 */
struct map_rec {
	char kind;  /* 'U' or 'A' */
	char state; /* 'D', 'R', 'M' for users */
	unsigned int line;
	size_t backend, old_backend;
	const char *text; /* reject text or the targets, tab-separated */
	size_t textlen;
};

/* 0, or -1 if the bytes are not a well-formed record for a map of nbackends back ends. */
int map_rec_decode(const char *p, size_t len, size_t nbackends, struct map_rec *out);

/* A key-value source: the GDBM file for readers, the parsed source for the validator. */
struct map_val {
	const char *p;
	size_t len;
	void *owned; /* freed by the caller when not NULL */
};
struct map_fetcher {
	/* 1 found, 0 absent, -1 error. */
	int (*fetch)(void *ctx, const char *key, size_t keylen, struct map_val *out);
	void *ctx;
};

enum map_hit {
	MAP_HIT_NONE,    /* served domain, nothing matches: unknown user */
	MAP_HIT_ENTRY,   /* a user or alias record, in rec */
	MAP_HIT_RULE,    /* rules[rule] */
	MAP_HIT_DEFAULT, /* the domain's default back end */
	MAP_HIT_ERROR,   /* fetch failed or a record is corrupt: err */
};

struct map_hit_info {
	enum map_hit hit;
	char local[MAP_LOCAL_MAX + 1]; /* the local part that matched */
	char detail[MAP_LOCAL_MAX + 1];
	struct map_rec rec;
	struct map_val val; /* rec points into it; release with free(val.owned) */
	size_t rule;
	long domain;
};

/*
 * One level of the contract: the full local part's entry, then the entry of the part
 * before the first '+' (the rest is the detail), then the rules on that part in order,
 * then the domain's default. domain must be served (domain_idx >= 0).
 */
void map_resolve_one(const struct map_tables *, const struct map_fetcher *, const char *local,
                     const char *domain, long domain_idx, struct map_hit_info *out, char *err,
                     size_t errlen);

/* A parsed, validated source. */
struct map_entry {
	char *key; /* "local@domain" */
	char *val; /* record, see above */
	size_t keylen, vallen;
	unsigned int line;
};

struct map_arena;

struct map_source {
	struct map_tables *tables;
	struct map_arena *arena; /* keys and values */
	struct map_entry *entries;
	size_t nentries, capentries;
	uint32_t *slots; /* open addressing: entry index + 1, 0 empty */
	size_t nslots;
	size_t nusers, naliases;
	unsigned int nlines;
};

/* Receives "file:line: message" or "file:line: warning: message", no newline. */
typedef void map_diag_fn(void *arg, const char *msg);

/*
 * Parses and validates a whole source. NULL if any error was reported (every error is
 * reported through diag, up to MAP_ERRORS_MAX); warnings alone do not fail.
 */
struct map_source *map_source_parse(const char *name, const char *buf, size_t len,
                                    map_diag_fn *diag, void *arg);
void map_source_free(struct map_source *);
/* The parsed source as a map_fetcher (for validation and for tests). */
void map_source_fetcher(struct map_source *, struct map_fetcher *out);

/* Text forms of the records, used by the compiler and by dump. */
int map_backend_encode(const struct map_backend *, char *buf, size_t buflen);
int map_backend_decode(const char *p, size_t len, struct map_backend *out);
int map_domain_encode(const struct map_domain *, char *buf, size_t buflen);
int map_domain_decode(const char *p, size_t len, size_t nbackends, struct map_domain *out);
int map_rule_encode(const struct map_rule *, char *buf, size_t buflen);
int map_rule_decode(const char *p, size_t len, size_t nbackends, size_t ndomains,
                    struct map_rule *out);

/* Writes a quoted source string ("..." with \" and \\) into buf. */
int map_quote(const char *s, size_t len, char *buf, size_t buflen);

#endif
