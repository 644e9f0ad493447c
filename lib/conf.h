/*
 * Schema-driven configuration loader on libconfig. A program describes its settings as a
 * table of struct conf_key and gets a filled, validated struct or a "file:line: message".
 * It never leaves a half-filled struct behind and never ignores a key it does not know.
 */
#ifndef MAILPLEX_CONF_H
#define MAILPLEX_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include "sock.h"

#define CONF_ERR_MAX    512  /* enough for any message this loader writes */
#define CONF_STRING_MAX 4096 /* default bound of a string's length */
#define CONF_LIST_MAX   1024 /* default bound of a list's element count */
#define CONF_REQUIRED   0x01
#define CONF_NUMERIC    0x02 /* ADDRESS: the host must be an IP literal (no name, no "*") */

enum conf_type {
	CONF_T_STRING,    /* char *; max: longest length (0: CONF_STRING_MAX); min: shortest */
	CONF_T_INT,       /* int64_t in [min, max] */
	CONF_T_BOOL,      /* int, 0 or 1 */
	CONF_T_DURATION,  /* uint64_t ms; "250ms", "30s", "5m", "1h", "2d", integer = seconds */
	CONF_T_SIZE,      /* uint64_t bytes; "64k", "10M", "1G" (powers of 1024), integer = bytes */
	CONF_T_ENUM,      /* int: index into names */
	CONF_T_ADDRESS,   /* struct conf_address; "host:port", "[v6]:port", "*:port" */
	CONF_T_IP,        /* struct conf_ip; an IPv4 or IPv6 literal without port */
	CONF_T_STRLIST,   /* struct conf_strlist; max: element count (0: CONF_LIST_MAX) */
	CONF_T_GROUP,     /* a nested struct at offset, described by sub */
	CONF_T_GROUPLIST, /* struct conf_list of elem_size structs described by sub */
};

/*
 * One setting. def is the default written as in the file ("info", "1s", "yes", "25");
 * NULL means zero / empty. A missing group is read as an empty group (defaults apply,
 * required keys inside it are reported). For DURATION and SIZE, max 0 means unbounded;
 * for INT, [min, max] is always checked.
 */
struct conf_key {
	const char *name;
	enum conf_type type;
	unsigned int flags;
	size_t offset;
	const char *def;
	int64_t min;
	int64_t max;
	const char *const *names;   /* CONF_T_ENUM: NULL-terminated */
	const struct conf_key *sub; /* GROUP, GROUPLIST: terminated by an entry with name NULL */
	size_t elem_size;           /* GROUPLIST */
};

/* A whole file: its top-level keys and the size of the struct they fill. */
struct conf_schema {
	const struct conf_key *keys;
	size_t size;
};

struct conf_address {
	char host[SOCK_HOST_MAX]; /* "*", an IP literal without brackets, or a host name */
	uint16_t port;
};

struct conf_ip {
	int af; /* AF_INET or AF_INET6 */
	union {
		struct in_addr in;
		struct in6_addr in6;
	} addr;
	char str[INET6_ADDRSTRLEN];
};

struct conf_strlist {
	char **v;
	size_t n;
};

struct conf_list {
	void *v; /* n structs of the key's elem_size */
	size_t n;
};

/*
 * Fill dst (zeroed first: pass a fresh struct, never the live one) from a file or a
 * string. name labels the string in messages. 0 on success; -1 with err set and dst
 * released and zeroed. Reload = load into a new struct, swap only on success.
 * Files may @include others (relative to the file's folder); strings may not.
 */
int conf_load_file(const struct conf_schema *schema, const char *path, void *dst, char *err,
                   size_t errlen);
int conf_load_string(const struct conf_schema *schema, const char *text, const char *name,
                     void *dst, char *err, size_t errlen);
/* Releases every string and array dst holds and zeroes it. */
void conf_free(const struct conf_schema *schema, void *dst);

/* The value syntaxes, for programs that take them on the command line too. */
int conf_parse_duration(const char *s, uint64_t *ms);
int conf_parse_size(const char *s, uint64_t *bytes);

#endif
