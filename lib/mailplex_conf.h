/*
 * The schema and struct of /etc/mailplex/mailplex.conf, shared by every program. A new
 * section is a new struct member here and a new table in mailplex_conf.c; the loading,
 * checking and error wording stay in conf.c.
 */
#ifndef MAILPLEX_MAILPLEX_CONF_H
#define MAILPLEX_MAILPLEX_CONF_H

#include <stdint.h>

#include "conf.h"

#define MAILPLEX_CONF_PATH MAILPLEX_SYSCONFDIR "/mailplex.conf"

struct mailplex_conf_map {
	char *source;             /* text source compiled by mailplex-map */
	char *db;                 /* compiled GDBM file readers open */
	uint64_t reload_check_ms; /* how often readers look for a new inode */
};

struct mailplex_conf {
	int log_level; /* enum log_level */
	char *user;    /* unprivileged user daemons drop to */
	struct mailplex_conf_map map;
};

extern const struct conf_schema mailplex_conf_schema;

/* path NULL: MAILPLEX_CONF_PATH. See conf_load_file for the contract. */
int mailplex_conf_load(const char *path, struct mailplex_conf *conf, char *err, size_t errlen);
int mailplex_conf_load_string(const char *text, const char *name, struct mailplex_conf *conf,
                              char *err, size_t errlen);
void mailplex_conf_free(struct mailplex_conf *conf);

#endif
