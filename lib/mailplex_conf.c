/*
 * Tables describing mailplex.conf: names, types, defaults and bounds of every key.
 * Nothing here parses or reports errors (conf.c does); the enum lists must follow the
 * order of the C enums they fill.
 */
#include <stddef.h>

#include "log.h"
#include "mailplex_conf.h"

/* Same order as enum log_level in log.h. */
static const char *const mailplex_log_levels[] = {"err", "warn", "info", "debug", NULL};

static const struct conf_key mailplex_map_keys[] = {
    {.name = "source",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_map, source),
     .def = MAILPLEX_SYSCONFDIR "/mailplex.map",
     .min = 1,
     .max = 1024},
    {.name = "db",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_map, db),
     .def = MAILPLEX_STATEDIR "/mailplex.db",
     .min = 1,
     .max = 1024},
    {.name = "reload_check",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_map, reload_check_ms),
     .def = "1s",
     .min = 100,
     .max = 3600 * 1000},
    {.name = NULL},
};

static const struct conf_key mailplex_keys[] = {
    {.name = "log_level",
     .type = CONF_T_ENUM,
     .offset = offsetof(struct mailplex_conf, log_level),
     .def = "info",
     .names = mailplex_log_levels},
    {.name = "user",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf, user),
     .def = "mailplex",
     .min = 1,
     .max = 32},
    {.name = "map",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf, map),
     .sub = mailplex_map_keys},
    {.name = NULL},
};

const struct conf_schema mailplex_conf_schema = {
    .keys = mailplex_keys,
    .size = sizeof(struct mailplex_conf),
};

int
mailplex_conf_load(const char *path, struct mailplex_conf *conf, char *err, size_t errlen)
{
	return conf_load_file(&mailplex_conf_schema, path != NULL ? path : MAILPLEX_CONF_PATH, conf,
	                      err, errlen);
}

int
mailplex_conf_load_string(const char *text, const char *name, struct mailplex_conf *conf, char *err,
                          size_t errlen)
{
	return conf_load_string(&mailplex_conf_schema, text, name, conf, err, errlen);
}

void
mailplex_conf_free(struct mailplex_conf *conf)
{
	conf_free(&mailplex_conf_schema, conf);
}
