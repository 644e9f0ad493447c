/*
 * Privilege drop and descriptor limit for the daemons (daemon.h). The drop is permanent:
 * setresuid with all three ids, then a check that setuid(0) fails, so a later bug cannot
 * climb back to root.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include <sys/resource.h>

#include "daemon.h"
#include "util.h"

int
daemon_user_lookup(const char *user, uid_t *uid, gid_t *gid, char *err, size_t errlen)
{
	struct passwd *pw;

	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		err_set(err, errlen, "user %s: %s", user, errno ? strerror(errno) : "no such user");
		return -1;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

int
daemon_drop_to(uid_t uid, gid_t gid, const char *user, char *err, size_t errlen)
{
	if (geteuid() != 0)
		return 1;
	if (setgroups(1, &gid) == -1 || setresgid(gid, gid, gid) == -1 ||
	    setresuid(uid, uid, uid) == -1) {
		err_set(err, errlen, "dropping privileges to %s: %s", user, strerror(errno));
		return -1;
	}
	if (uid != 0 && setuid(0) != -1) {
		err_set(err, errlen, "dropping privileges to %s: root could be regained", user);
		return -1;
	}
	return 0;
}

int
daemon_drop_privileges(const char *user, char *err, size_t errlen)
{
	uid_t uid;
	gid_t gid;

	if (geteuid() != 0)
		return 1;
	if (daemon_user_lookup(user, &uid, &gid, err, errlen) == -1)
		return -1;
	return daemon_drop_to(uid, gid, user, err, errlen);
}

int
daemon_raise_nofile(char *err, size_t errlen)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		err_set(err, errlen, "getrlimit NOFILE: %s", strerror(errno));
		return -1;
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return 0;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
		err_set(err, errlen, "setrlimit NOFILE: %s", strerror(errno));
		return -1;
	}
	return 0;
}
