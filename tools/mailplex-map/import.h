/*
 * Legacy map importers for mailplex-map: Perdition popmaps, Sendmail/Postfix aliases and
 * user_map files, turned into mailplex.map source text. They never write a database.
 */
#ifndef MAILPLEX_MAP_IMPORT_H
#define MAILPLEX_MAP_IMPORT_H

#include <stddef.h>
#include <stdio.h>

/*
 * kind: "popmap", "aliases" or "usermap". buf holds the file named name; domain may be
 * NULL. The source text goes to out only when the whole file was understood; problems
 * go to err as "file:line: message". Returns 0, or -1 after an error.
 */
int import_run(const char *kind, const char *name, const char *buf, size_t len, const char *domain,
               FILE *out, FILE *err);

#endif
