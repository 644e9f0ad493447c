/*
 * The copy step: move.copy_command under /bin/sh with the move's facts in its environment,
 * bounded by move.copy_timeout, its output kept as a short tail for the error message.
 * The master password reaches it through the environment and a private 0600 file, never
 * through an argument (which any local user could read in /proc).
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "move.h"
#include "util.h"

#define COPY_TAIL_BYTES   600
#define COPY_KILL_WAIT_MS 5000

static int
env_set(const char *name, const char *value)
{
	return setenv(name, value, 1);
}

static int
env_port(const char *name, uint16_t port)
{
	char buf[8];

	(void)str_format(buf, sizeof(buf), "%u", (unsigned)port);
	return env_set(name, buf);
}

/* Dovecot's imapc_ssl for the map's tls= of a back end. */
static const char *
imapc_ssl(enum map_tls t)
{
	return t == MAP_TLS_ON ? "starttls" : t == MAP_TLS_IMPLICIT ? "imaps" : "no";
}

/* The child: environment, descriptors, process group; never returns. */
static void __attribute__((noreturn))
copy_child(const struct move_ctx *ctx, const struct move_state *st, const struct map_backend *oldb,
           const struct map_backend *newb, const char *tmpdir, const char *pwfile, int out)
{
	int null;

	(void)setpgid(0, 0);
	(void)signal(SIGPIPE, SIG_DFL); /* mailplexctl ignores it; the command must not */
	if ((null = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1 || dup2(null, 0) == -1 ||
	    dup2(out, 1) == -1 || dup2(out, 2) == -1)
		_exit(126);
	if (env_set("MAILPLEX_USER", st->user) == -1 || env_set("MAILPLEX_OLD", st->old) == -1 ||
	    env_set("MAILPLEX_NEW", st->new) == -1 ||
	    env_set("MAILPLEX_OLD_HOST", oldb->imap.host) == -1 ||
	    env_port("MAILPLEX_OLD_IMAP_PORT", oldb->imap.port) == -1 ||
	    env_set("MAILPLEX_OLD_TLS", map_tls_name(oldb->tls)) == -1 ||
	    env_set("MAILPLEX_OLD_IMAPC_SSL", imapc_ssl(oldb->tls)) == -1 ||
	    env_set("MAILPLEX_NEW_HOST", newb->imap.host) == -1 ||
	    env_port("MAILPLEX_NEW_IMAP_PORT", newb->imap.port) == -1 ||
	    env_set("MAILPLEX_NEW_TLS", map_tls_name(newb->tls)) == -1 ||
	    env_set("MAILPLEX_TMPDIR", tmpdir) == -1 ||
	    (ctx->conf->move.master_user != NULL &&
	     env_set("MAILPLEX_MASTER_USER", ctx->conf->move.master_user) == -1) ||
	    (ctx->have_password && (env_set("MAILPLEX_MASTER_PASSWORD", ctx->password) == -1 ||
	                            env_set("MAILPLEX_MASTER_PASSWORD_FILE", pwfile) == -1)))
		_exit(126);
	execl("/bin/sh", "sh", "-c", ctx->conf->move.copy_command, (char *)NULL);
	_exit(127);
}

static void
tail_add(char *tail, size_t *tlen, const char *buf, size_t n)
{
	if (n >= COPY_TAIL_BYTES) {
		memcpy(tail, buf + n - COPY_TAIL_BYTES, COPY_TAIL_BYTES);
		*tlen = COPY_TAIL_BYTES;
		return;
	}
	if (*tlen + n > COPY_TAIL_BYTES) {
		size_t drop = *tlen + n - COPY_TAIL_BYTES;

		memmove(tail, tail + drop, *tlen - drop);
		*tlen -= drop;
	}
	memcpy(tail + *tlen, buf, n);
	*tlen += n;
}

/* Removes what the command and we left in the private directory (one level), then it. */
static void
copy_cleanup(const char *tmpdir, const char *pwfile)
{
	struct dirent *de;
	DIR *d;

	(void)unlink(pwfile);
	if (rmdir(tmpdir) == 0 || errno == ENOENT)
		return;
	/* The command may have left files there (a generated dovecot.conf). */
	if ((d = opendir(tmpdir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	(void)closedir(d);
	(void)rmdir(tmpdir);
}

/*
 * The private directory and the password file in it (no newline: Dovecot's "<file").
 * It is USER.copy inside move.state_dir (0700, root's), not under /tmp: a move killed
 * during its copy leaves the password only there, and the next run (the resume) clears
 * what is left before it starts.
 */
static int
copy_prepare(const struct move_ctx *ctx, const struct move_state *st, char *tmpdir, size_t tlen,
             char *pwfile, size_t plen, char *err, size_t errlen)
{
	size_t len, o = 0;
	ssize_t n;
	int fd;

	if (move_state_path(ctx->conf, st->user, ".copy", tmpdir, tlen) == -1 ||
	    str_format(pwfile, plen, "%s/master.pass", tmpdir) == -1) {
		err_set(err, errlen, "private directory path too long");
		return -1;
	}
	copy_cleanup(tmpdir, pwfile);
	if (mkdir(tmpdir, 0700) == -1) {
		err_set(err, errlen, "%s: %s", tmpdir, strerror(errno));
		return -1;
	}
	if (!ctx->have_password)
		return 0;
	if ((fd = open(pwfile, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) == -1) {
		err_set(err, errlen, "%s: %s", pwfile, strerror(errno));
		(void)rmdir(tmpdir);
		return -1;
	}
	len = strlen(ctx->password);
	while (o < len) {
		n = write(fd, ctx->password + o, len - o);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			break;
		o += (size_t)n;
	}
	if (close(fd) == -1 || o < len) {
		err_set(err, errlen, "%s: cannot write", pwfile);
		(void)unlink(pwfile);
		(void)rmdir(tmpdir);
		return -1;
	}
	return 0;
}

int
move_copy(const struct move_ctx *ctx, const struct move_state *st, const struct map_backend *oldb,
          const struct map_backend *newb, char *err, size_t errlen)
{
	char tmpdir[4096], pwfile[4200], tail[COPY_TAIL_BYTES + 1], buf[4096];
	uint64_t deadline = time_mono_ms() + ctx->conf->move.copy_timeout_ms, now;
	size_t tlen = 0;
	int fds[2], status = 0, timed_out = 0, rc = -1;
	pid_t pid;

	if (oldb->imap.host[0] == '\0' || newb->imap.host[0] == '\0') {
		err_set(err, errlen, "back end %s has no imap= endpoint in the map",
		        oldb->imap.host[0] == '\0' ? oldb->name : newb->name);
		return -1;
	}
	if (copy_prepare(ctx, st, tmpdir, sizeof(tmpdir), pwfile, sizeof(pwfile), err, errlen) == -1)
		return -1;
	if (pipe2(fds, O_CLOEXEC) == -1) {
		err_set(err, errlen, "pipe: %s", strerror(errno));
		copy_cleanup(tmpdir, pwfile);
		return -1;
	}
	if ((pid = fork()) == -1) {
		err_set(err, errlen, "fork: %s", strerror(errno));
		(void)close(fds[0]);
		(void)close(fds[1]);
		copy_cleanup(tmpdir, pwfile);
		return -1;
	}
	if (pid == 0)
		copy_child(ctx, st, oldb, newb, tmpdir, pwfile, fds[1]);
	(void)setpgid(pid, pid);
	(void)close(fds[1]);
	/* Read until EOF (every holder of the pipe is gone) or the deadline. */
	for (;;) {
		struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
		ssize_t n;
		int pr;

		now = time_mono_ms();
		if (now >= deadline) {
			timed_out = 1;
			break;
		}
		pr = poll(&pfd, 1, (int)(deadline - now > 1000 ? 1000 : deadline - now));
		if (pr == -1 && errno == EINTR)
			continue;
		if (pr == -1)
			break;
		if (pr == 0)
			continue;
		n = read(fds[0], buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		tail_add(tail, &tlen, buf, (size_t)n);
	}
	(void)close(fds[0]);
	if (timed_out) {
		(void)kill(-pid, SIGTERM);
		for (int i = 0; i < COPY_KILL_WAIT_MS / 100; i++) {
			if (waitpid(pid, &status, WNOHANG) == pid)
				goto reaped;
			(void)usleep(100 * 1000);
		}
		(void)kill(-pid, SIGKILL);
	}
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR) {
			err_set(err, errlen, "waitpid: %s", strerror(errno));
			copy_cleanup(tmpdir, pwfile);
			return -1;
		}
	}
reaped:
	copy_cleanup(tmpdir, pwfile);
	tail[tlen] = '\0';
	for (size_t i = 0; i < tlen; i++)
		if (tail[i] == '\n' || tail[i] == '\r' || tail[i] == '\t')
			tail[i] = ' ';
	if (timed_out)
		err_set(err, errlen,
		        "the copy command ran longer than move.copy_timeout (%llu s); "
		        "killed; its output ends: %s",
		        (unsigned long long)(ctx->conf->move.copy_timeout_ms / 1000), tail);
	else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		rc = 0;
	else if (WIFEXITED(status))
		err_set(err, errlen, "the copy command exited with status %d; its output ends: %s",
		        WEXITSTATUS(status), tlen > 0 ? tail : "(nothing)");
	else
		err_set(err, errlen,
		        "the copy command was killed by signal %d; its output ends: %s",
		        WIFSIGNALED(status) ? WTERMSIG(status) : 0, tlen > 0 ? tail : "(nothing)");
	/* A command that echoes the password must not carry it into our messages. */
	if (rc == -1 && ctx->have_password && ctx->password[0] != '\0') {
		char *p;

		while ((p = strstr(err, ctx->password)) != NULL)
			memset(p, '*', strlen(ctx->password));
	}
	return rc;
}
