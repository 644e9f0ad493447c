/*
 * What every mailplex daemon does between binding and serving: look its unprivileged user
 * up, drop to it for good (groups, gid, uid; no way back), and raise the descriptor limit.
 * Nothing here binds, forks or logs; errors go to the caller's buffer.
 */
#ifndef MAILPLEX_DAEMON_H
#define MAILPLEX_DAEMON_H

#include <stddef.h>
#include <sys/types.h>

/* 0 with the user's ids, -1 with err if there is no such user. */
int daemon_user_lookup(const char *user, uid_t *uid, gid_t *gid, char *err, size_t errlen);
/*
 * As root: becomes user (supplementary groups, real/effective/saved gid and uid) and
 * checks that root cannot be regained. Returns 0 dropped, 1 not root (nothing to drop,
 * the caller may say so), -1 with err.
 */
int daemon_drop_privileges(const char *user, char *err, size_t errlen);
/* The same with ids looked up earlier (a forked worker of a master that checked them). */
int daemon_drop_to(uid_t uid, gid_t gid, const char *user, char *err, size_t errlen);
/* Soft RLIMIT_NOFILE up to the hard one. 0, or -1 with err. */
int daemon_raise_nofile(char *err, size_t errlen);

#endif
