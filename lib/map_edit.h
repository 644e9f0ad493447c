/*
 * Edits one user's entry in the operator's map source the way `postconf -e` edits
 * main.cf: the user's line is replaced (or appended, or removed), every other byte and
 * comment stays, the whole new source is validated before it replaces the old one by
 * rename. Never compiles the database (map_compile does) and never locks (the caller does).
 */
#ifndef MAILPLEX_MAP_EDIT_H
#define MAILPLEX_MAP_EDIT_H

#include <stddef.h>

#include "map.h"
#include "map_source.h"

#define MAP_EDIT_SOURCE_MAX (1024UL * 1024 * 1024) /* the largest source read */

enum map_edit_via {
	MAP_EDIT_VIA_USER,    /* a `user NAME ...` line */
	MAP_EDIT_VIA_RULE,    /* no user line: a rule */
	MAP_EDIT_VIA_DEFAULT, /* no user line: the domain's default */
};

/* How a user stands in a source. */
struct map_edit_user {
	char key[MAP_ADDR_MAX + 2]; /* "local@domain", normalized */
	enum map_edit_via via;
	char state;                         /* 'D' deliver, 'M' migrating, 'R' reject */
	char backend[MAP_NAME_MAX + 1];     /* D: the back end; M: the new one */
	char old_backend[MAP_NAME_MAX + 1]; /* M: the old one */
	unsigned int line;                  /* MAP_EDIT_VIA_USER: its line, else 0 */
};

/* Parses a whole source; NULL with the first error ("file:line: message") in err. */
struct map_source *map_edit_parse(const char *name, const char *buf, size_t len, char *err,
                                  size_t errlen);

/*
 * Parses the source (name is used in messages) and finds how user resolves. Refuses (-1
 * with err) a source that does not compile ("file:line: message"), an address with a
 * +detail, an alias, an unknown user and a domain that is not served.
 */
int map_edit_locate(const char *name, const char *buf, size_t len, const char *user,
                    struct map_edit_user *out, char *err, size_t errlen);

/*
 * A copy of buf with line `line` (1-based) made of state: the line keeps its indentation,
 * the user name as written and its trailing comment, the rest becomes state (a back-end
 * name, or "migrating OLD -> NEW"); with whole set, state is the line's whole new text.
 * state NULL removes the line. line 0 appends "user KEY STATE" as a new last line.
 * Returns 0 (*out malloc'd) or -1 with err.
 */
int map_edit_splice(const char *buf, size_t len, unsigned int line, const char *key,
                    const char *state, int whole, char **out, size_t *outlen, char *err,
                    size_t errlen);

/* Line `line` (1-based) of buf without its CR LF. 0, or -1 if absent or too long. */
int map_edit_line_text(const char *buf, size_t len, unsigned int line, char *out, size_t outlen);

/* Reads a whole source file (at most MAP_EDIT_SOURCE_MAX bytes). malloc'd, or NULL + err. */
char *map_edit_read(const char *path, size_t *lenp, char *err, size_t errlen);

/*
 * Replaces path with buf: temp file beside it with the old one's mode (and owner when
 * run as root), written, fsynced, renamed over it, the directory fsynced. 0 or -1 + err;
 * on failure the old file is untouched and no temp file is left.
 */
int map_edit_write(const char *path, const char *buf, size_t len, char *err, size_t errlen);

/*
 * The whole operation: read path, locate user, set its entry to state (as above; NULL:
 * remove the user line, the user then falls to a rule or the default), validate the new
 * source, write it. *srcp (if not NULL) gets the parsed new source for compiling.
 * Returns 0, or -1 with err and nothing changed.
 */
int map_edit_user(const char *path, const char *user, const char *state, struct map_source **srcp,
                  char *err, size_t errlen);
/* The same, the user's line becoming text exactly (a line saved before: a rollback). */
int map_edit_user_line(const char *path, const char *user, const char *text,
                       struct map_source **srcp, char *err, size_t errlen);

#endif
