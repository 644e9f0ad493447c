/*
 * The per-user map as the daemons see it: open a compiled GDBM map, resolve an address to
 * its back end(s), notice a replaced map and switch to it. Read-only: nothing here ever
 * writes the database (mailplex-map compile does, see map_source.h).
 */
#ifndef MAILPLEX_MAP_H
#define MAILPLEX_MAP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* RFC 5321 section 4.5.3.1: local part, domain and whole path limits. */
#define MAP_LOCAL_MAX         64
#define MAP_DOMAIN_MAX        255
#define MAP_ADDR_MAX          254
#define MAP_NAME_MAX          63 /* back-end names */
#define MAP_HOST_MAX          256
#define MAP_TEXT_MAX          400 /* reject texts: one SMTP reply line with its code */
#define MAP_PATTERN_MAX       256 /* rule patterns */
#define MAP_ALIAS_MAX_DEPTH   8
#define MAP_ALIAS_TARGETS_MAX 1000
/* An alias expands to at most this many recipients, however it nests. */
#define MAP_EXPAND_MAX 1000
/* A chain: up to MAP_ALIAS_MAX_DEPTH aliases, then the user, rule or default. */
#define MAP_CHAIN_MAX                 (MAP_ALIAS_MAX_DEPTH + 2)
#define MAP_STEP_TEXT                 (MAP_PATTERN_MAX + 4)
#define MAP_CHECK_INTERVAL_MS_DEFAULT 1000

enum map_status {
	MAP_DELIVER,
	MAP_REJECT,
	MAP_MIGRATING,
	MAP_UNKNOWN_USER,
	MAP_NOT_OURS,
	MAP_ERROR,
};

enum map_deliver_proto {
	MAP_PROTO_NONE, /* the back end only serves logins */
	MAP_PROTO_LMTP,
	MAP_PROTO_SMTP,
};

enum map_tls {
	MAP_TLS_OFF,
	MAP_TLS_ON,       /* STARTTLS / STLS upgrade */
	MAP_TLS_IMPLICIT, /* TLS from the first byte */
};

/* One endpoint; host[0] == '\0' when the back end does not offer the protocol. */
struct map_endpoint {
	char host[MAP_HOST_MAX]; /* host name, IPv4 or bare IPv6 (no brackets) */
	uint16_t port;
};

struct map_backend {
	char name[MAP_NAME_MAX + 1];
	enum map_deliver_proto deliver_proto;
	struct map_endpoint deliver;
	struct map_endpoint imap;
	struct map_endpoint pop3;
	enum map_tls tls;
	unsigned int line;
};

enum map_via {
	MAP_VIA_USER,
	MAP_VIA_ALIAS,
	MAP_VIA_RULE,
	MAP_VIA_DEFAULT,
};

/* One step of a resolution, for display: "alias postmaster@bigisp.com (line 14)". */
struct map_step {
	enum map_via via;
	char what[MAP_STEP_TEXT]; /* the address, the rule's pattern, or the domain */
	unsigned int line;        /* line in the source the map was compiled from */
};

struct map_recipient {
	enum map_status status;
	char local[MAP_LOCAL_MAX + 1]; /* the local part that matched (detail stripped) */
	char domain[MAP_DOMAIN_MAX + 1];
	char detail[MAP_LOCAL_MAX + 1]; /* after the first '+', kept for delivery */
	/* MAP_DELIVER: backend. MAP_MIGRATING: old_backend -> backend. Else NULL. */
	const struct map_backend *backend;
	const struct map_backend *old_backend;
	char text[MAP_TEXT_MAX + 1]; /* MAP_REJECT: the text; MAP_ERROR: the reason */
	struct map_step chain[MAP_CHAIN_MAX];
	size_t nchain;
};

struct map_tables;

/*
 * A lookup's answer. status sums up the recipients: MAP_DELIVER if any is deliverable now,
 * else MAP_MIGRATING if any is migrating, else the first recipient's status. The back-end
 * pointers stay valid until map_result_free, even if the map is replaced meanwhile.
 */
struct map_result {
	enum map_status status;
	char local[MAP_LOCAL_MAX + 1]; /* normalized: lower case */
	char domain[MAP_DOMAIN_MAX + 1];
	char detail[MAP_LOCAL_MAX + 1];
	struct map_recipient *rcpt;
	size_t nrcpt;
	char error[256];           /* MAP_ERROR: why (bad address, corrupt record, too many) */
	struct map_tables *tables; /* keeps the back ends alive */
};

struct map;

/* GDBM_READER|GDBM_NOLOCK; backends, domains and rules are loaded here. NULL + err. */
struct map *map_open(const char *dbpath, char *err, size_t errlen);
void map_close(struct map *);
/* How often a lookup stat()s the path to notice a replaced map; 0 = every lookup. */
void map_set_check_interval(struct map *, uint64_t ms);
uint64_t map_version(const struct map *);
/*
 * If the path now names another file (st_dev/st_ino), open it and swap only if it opens
 * and its metadata reads. 1 swapped, 0 unchanged, -1 new file unusable (old one kept,
 * logged). Honours the check interval unless force is set.
 */
int map_reopen_if_changed(struct map *, int force);

/*
 * Resolves address ("user", "user@domain", "user+detail@domain"). Always fills out
 * (release with map_result_free); returns 0, or -1 when out->status is MAP_ERROR.
 */
int map_lookup(struct map *, const char *address, struct map_result *out);
void map_result_free(struct map_result *);

/* Metadata of the open map (compile time, source path, counts). */
struct map_info {
	uint64_t version;
	uint64_t compiled; /* unix time */
	char source[1024];
	char primary[MAP_DOMAIN_MAX + 1];
	uint64_t backends, domains, rules, users, aliases;
};
void map_get_info(const struct map *, struct map_info *out);

/* Writes the map back as source text that compiles to the same map. 0 or -1 + err. */
int map_dump(struct map *, FILE *out, char *err, size_t errlen);

const char *map_status_name(enum map_status);
const char *map_tls_name(enum map_tls);
const char *map_proto_name(enum map_deliver_proto);
const char *map_via_name(enum map_via);

#endif
