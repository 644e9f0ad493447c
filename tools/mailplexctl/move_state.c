/*
 * The record of each move: one small key=value file per user under move.state_dir,
 * replaced atomically (temp file, fsync, rename, fsync of the directory), and the locks
 * that keep two moves of one user, or two edits of the map source, apart. Never edits the
 * map and never talks to a daemon.
 */
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "move.h"
#include "util.h"

#define STATE_FILE_MAX   8192
#define STATE_SUFFIX     ".state"
#define STATUS_ROWS_MAX  100000
#define LOCK_POLL_MS     100
#define LOCK_WAIT_MAX_MS (10 * 60 * 1000)

static const char *const step_names[] = {
    "start", "migrating-published", "sessions-closed", "queue-drained", "copied", "verified",
    "done",
};
/* What is being done to reach each step: the words of a failure message. */
static const char *const step_actions[] = {
    "start",  "publish migrating",           "close sessions", "drain the queue", "copy",
    "verify", "publish on the new back end",
};
static const char *const status_names[] = {"running", "failed", "done"};

const char *
move_step_name(int step)
{
	return step >= 0 && (size_t)step < ARRAY_LEN(step_names) ? step_names[step] : "?";
}

const char *
move_step_action(int step)
{
	return step >= 0 && (size_t)step < ARRAY_LEN(step_actions) ? step_actions[step] : "?";
}

int
move_step_parse(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(step_names); i++)
		if (strcmp(name, step_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
move_status_name(int status)
{
	return status >= 0 && (size_t)status < ARRAY_LEN(status_names) ? status_names[status] : "?";
}

int
move_state_dir(const struct mailplex_conf *conf, char *err, size_t errlen)
{
	struct stat sb;

	if (mkdir(conf->move.state_dir, 0700) == -1 && errno != EEXIST) {
		err_set(err, errlen, "%s: %s", conf->move.state_dir, strerror(errno));
		return -1;
	}
	if (stat(conf->move.state_dir, &sb) == -1 || !S_ISDIR(sb.st_mode)) {
		err_set(err, errlen, "%s: not a directory", conf->move.state_dir);
		return -1;
	}
	return 0;
}

/* A user's file name: bytes other than [A-Za-z0-9._@+-] as %XX (a local part may hold '/'). */
int
move_state_path(const struct mailplex_conf *conf, const char *user, const char *suffix, char *path,
                size_t pathlen)
{
	char name[3 * (MAP_ADDR_MAX + 2) + 1];
	size_t o = 0;

	for (const char *p = user; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (o + 4 > sizeof(name))
			return -1;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    strchr("._@+-", c) != NULL)
			name[o++] = (char)c;
		else
			o += (size_t)snprintf(name + o, 4, "%%%02X", c);
	}
	name[o] = '\0';
	if (o == 0 || name[0] == '.')
		return -1;
	return str_format(path, pathlen, "%s/%s%s", conf->move.state_dir, name, suffix);
}

static int
field_copy(char *dst, size_t dstlen, const char *v)
{
	return str_copy(dst, dstlen, v);
}

int
move_state_parse(const char *buf, size_t len, struct move_state *st)
{
	char line[MAP_LINE_MAX + 32];
	const char *p = buf, *end = buf + len, *nl;
	uint64_t v;
	int seen_user = 0, r;

	memset(st, 0, sizeof(*st));
	if (len > STATE_FILE_MAX)
		return -1;
	for (; p < end; p = nl + 1) {
		char *eq;

		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if (str_copy_n(line, sizeof(line), p, (size_t)(nl - p)) == -1 ||
		    strlen(line) != (size_t)(nl - p))
			return -1;
		if (line[0] == '\0')
			continue;
		if ((eq = strchr(line, '=')) == NULL)
			return -1;
		*eq++ = '\0';
		r = 0;
		if (strcmp(line, "user") == 0) {
			r = field_copy(st->user, sizeof(st->user), eq);
			seen_user = 1;
		} else if (strcmp(line, "old") == 0) {
			r = field_copy(st->old, sizeof(st->old), eq);
		} else if (strcmp(line, "new") == 0) {
			r = field_copy(st->new, sizeof(st->new), eq);
		} else if (strcmp(line, "via") == 0) {
			st->via_user = strcmp(eq, "user") == 0;
		} else if (strcmp(line, "step") == 0) {
			r = (st->step = move_step_parse(eq)) < 0 ? -1 : 0;
		} else if (strcmp(line, "failed_step") == 0) {
			r = (st->failed_step = move_step_parse(eq)) < 0 ? -1 : 0;
		} else if (strcmp(line, "status") == 0) {
			r = -1;
			for (size_t i = 0; i < ARRAY_LEN(status_names); i++)
				if (strcmp(eq, status_names[i]) == 0) {
					st->status = (int)i;
					r = 0;
				}
		} else if (strcmp(line, "version") == 0 || strcmp(line, "started") == 0 ||
		           strcmp(line, "updated") == 0) {
			if ((r = parse_u64(eq, 0, UINT64_MAX, &v)) == 0) {
				if (line[0] == 'v')
					st->version = v;
				else if (line[0] == 's')
					st->started = v;
				else
					st->updated = v;
			}
		} else if (strcmp(line, "orig") == 0) {
			r = field_copy(st->orig, sizeof(st->orig), eq);
		} else if (strcmp(line, "error") == 0) {
			r = field_copy(st->error, sizeof(st->error), eq);
		}
		/* Unknown keys are skipped: a newer mailplexctl may add some. */
		if (r == -1)
			return -1;
	}
	return seen_user && st->user[0] != '\0' && st->old[0] != '\0' && st->new[0] != '\0' ? 0
	                                                                                    : -1;
}

int
move_state_load(const struct mailplex_conf *conf, const char *user, struct move_state *st,
                char *err, size_t errlen)
{
	char path[4096], buf[STATE_FILE_MAX + 1];
	ssize_t n;
	size_t len = 0;
	int fd;

	if (move_state_path(conf, user, STATE_SUFFIX, path, sizeof(path)) == -1) {
		err_set(err, errlen, "%s: no state file name for this user", user);
		return -1;
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 0;
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			err_set(err, errlen, "%s: %s", path, strerror(errno));
			(void)close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	(void)close(fd);
	if (move_state_parse(buf, len, st) == -1) {
		err_set(err, errlen, "%s: not a move state file (or too long)", path);
		return -1;
	}
	return 1;
}

int
move_state_save(const struct mailplex_conf *conf, struct move_state *st, char *err, size_t errlen)
{
	char path[4096], tmp[4096 + 16], buf[STATE_FILE_MAX];
	size_t len, o = 0;
	ssize_t n;
	int fd, dfd, r;

	st->updated = (uint64_t)time(NULL);
	if (st->started == 0)
		st->started = st->updated;
	/* One line per key: the error may not carry a newline into the file. */
	for (char *p = st->error; *p != '\0'; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	r = str_format(buf, sizeof(buf),
	               "user=%s\nold=%s\nnew=%s\nvia=%s\nstep=%s\nstatus=%s\nfailed_step=%s\n"
	               "version=%llu\nstarted=%llu\nupdated=%llu\norig=%s\nerror=%s\n",
	               st->user, st->old, st->new, st->via_user ? "user" : "rule",
	               move_step_name(st->step), move_status_name(st->status),
	               move_step_name(st->failed_step), (unsigned long long)st->version,
	               (unsigned long long)st->started, (unsigned long long)st->updated, st->orig,
	               st->error);
	if (r == -1 || move_state_path(conf, st->user, STATE_SUFFIX, path, sizeof(path)) == -1 ||
	    str_format(tmp, sizeof(tmp), "%s.tmp", path) == -1) {
		err_set(err, errlen, "%s: state too long", st->user);
		return -1;
	}
	len = strlen(buf);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) == -1) {
		err_set(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	while (o < len) {
		n = write(fd, buf + o, len - o);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			break;
		o += (size_t)n;
	}
	if (o < len || fsync(fd) == -1) {
		err_set(err, errlen, "%s: %s", tmp, strerror(errno));
		(void)close(fd);
		(void)unlink(tmp);
		return -1;
	}
	if (close(fd) == -1 || rename(tmp, path) == -1) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		(void)unlink(tmp);
		return -1;
	}
	if ((dfd = open(conf->move.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(dfd) == -1) {
		err_set(err, errlen, "%s: %s", conf->move.state_dir, strerror(errno));
		if (dfd != -1)
			(void)close(dfd);
		return -1;
	}
	(void)close(dfd);
	return 0;
}

int
move_lock(const struct mailplex_conf *conf, const char *name, int wait, char *err, size_t errlen)
{
	char path[4096];
	int fd;

	if (move_state_path(conf, name, ".lock", path, sizeof(path)) == -1) {
		err_set(err, errlen, "%s: no lock file name", name);
		return -1;
	}
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	/*
	 * The map lock is held for one edit and one publish (bounded by the publish timeout):
	 * wait for it, but not for ever. A user's lock is held for a whole move: refuse.
	 */
	for (uint64_t waited = 0;; waited += LOCK_POLL_MS) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK || !wait || waited >= LOCK_WAIT_MAX_MS)
			break;
		(void)usleep(LOCK_POLL_MS * 1000);
	}
	err_set(err, errlen, "%s: %s", path,
	        errno == EWOULDBLOCK ? "another move holds it" : strerror(errno));
	(void)close(fd);
	return -1;
}

static int
status_cmp(const void *a, const void *b)
{
	return strcmp(((const struct move_state *)a)->user, ((const struct move_state *)b)->user);
}

int
move_status_print(const struct mailplex_conf *conf, const char *user)
{
	struct move_state *v = NULL, *nv, st;
	char err[MOVE_ERR_MAX], when[32];
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if ((d = opendir(conf->move.state_dir)) == NULL) {
		if (errno == ENOENT) {
			printf("no moves recorded (%s)\n", conf->move.state_dir);
			return user != NULL ? 1 : 0;
		}
		fprintf(stderr, "mailplexctl: %s: %s\n", conf->move.state_dir, strerror(errno));
		return 2;
	}
	while ((de = readdir(d)) != NULL && n < STATUS_ROWS_MAX) {
		char path[4096], buf[STATE_FILE_MAX + 1]; /* read whole: parse refuses longer */
		size_t l = strlen(de->d_name);
		ssize_t r;
		int fd;

		if (l <= strlen(STATE_SUFFIX) ||
		    strcmp(de->d_name + l - strlen(STATE_SUFFIX), STATE_SUFFIX) != 0 ||
		    str_format(path, sizeof(path), "%s/%s", conf->move.state_dir, de->d_name) == -1)
			continue;
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		r = read(fd, buf, sizeof(buf));
		(void)close(fd);
		if (r <= 0 || move_state_parse(buf, (size_t)r, &st) == -1) {
			fprintf(stderr, "mailplexctl: %s: not a move state file\n", path);
			rc = 2;
			continue;
		}
		if (user != NULL && strcmp(st.user, user) != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			if ((nv = reallocarray(v, cap, sizeof(*v))) == NULL) {
				fprintf(stderr, "mailplexctl: out of memory\n");
				free(v);
				(void)closedir(d);
				return 2;
			}
			v = nv;
		}
		v[n++] = st;
	}
	(void)closedir(d);
	if (n == 0) {
		printf(user != NULL ? "no move recorded for %s\n" : "no moves recorded%s\n",
		       user != NULL ? user : "");
		free(v);
		return user != NULL ? 1 : rc;
	}
	qsort(v, n, sizeof(*v), status_cmp);
	printf("%-32s %-12s %-12s %-8s %-20s %-20s %s\n", "USER", "OLD", "NEW", "STATUS", "STEP",
	       "UPDATED", "ERROR");
	for (size_t i = 0; i < n; i++) {
		time_t t = (time_t)v[i].updated;
		struct tm tm;

		if (gmtime_r(&t, &tm) == NULL ||
		    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
			(void)str_copy(when, sizeof(when), "-");
		printf("%-32s %-12s %-12s %-8s %-20s %-20s %s\n", v[i].user, v[i].old, v[i].new,
		       move_status_name(v[i].status),
		       v[i].status == MOVE_FAILED ? move_step_action(v[i].failed_step)
		                                  : move_step_name(v[i].step),
		       when, v[i].error[0] != '\0' ? v[i].error : "-");
	}
	free(v);
	(void)err;
	return rc;
}
