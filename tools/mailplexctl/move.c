/*
 * mailplexctl move: the steps of one move in order (migrating published, sessions closed,
 * queue drained, copied, verified, published on the new back end), the record after each,
 * the resume after an interruption, the rollback to the old back end after a failure, and
 * --batch. Owns the order and the decisions; every mechanism lives in the other move*.c.
 */
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "map_edit.h"
#include "map_source.h"
#include "move.h"
#include "util.h"

#define MOVE_EXIT_OK     0
#define MOVE_EXIT_FAILED 1
#define MOVE_EXIT_USAGE  2
#define BATCH_LINES_MAX  100000

static void say(const struct move_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
say(const struct move_state *st, const char *fmt, ...)
{
	char msg[MOVE_ERR_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	printf("move %s %s -> %s: %s\n", st->user, st->old, st->new, msg);
	(void)fflush(stdout);
}

/* The master password: the first line of move.master_password_file. */
static int
read_password(struct move_ctx *ctx, char *err, size_t errlen)
{
	const char *path = ctx->conf->move.master_password_file;
	ssize_t n;
	size_t len = 0;
	int fd;

	ctx->have_password = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT && !ctx->conf->move.verify)
			return 0;
		err_set(err, errlen, "move.master_password_file %s: %s", path, strerror(errno));
		return -1;
	}
	while (len < sizeof(ctx->password) - 1) {
		n = read(fd, ctx->password + len, sizeof(ctx->password) - 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	(void)close(fd);
	ctx->password[len] = '\0';
	ctx->password[strcspn(ctx->password, "\r\n")] = '\0';
	if (ctx->password[0] == '\0') {
		err_set(err, errlen, "move.master_password_file %s: empty", path);
		return -1;
	}
	ctx->have_password = 1;
	return 0;
}

/* The source's back ends, for the endpoints and to check NEW exists. */
static struct map_source *
load_source(const struct mailplex_conf *conf, char *err, size_t errlen)
{
	struct map_source *src;
	size_t len;
	char *buf;

	if ((buf = map_edit_read(conf->map.source, &len, err, errlen)) == NULL)
		return NULL;
	src = map_edit_parse(conf->map.source, buf, len, err, errlen);
	free(buf);
	return src;
}

static const struct map_backend *
backend(const struct map_source *src, const char *name)
{
	long i = map_tables_find_backend(src->tables, name);

	return i < 0 ? NULL : &src->tables->backends[i];
}

/* The user's entry now, from the source; orig (if not NULL) gets its line's text. */
static int
locate_line(const struct mailplex_conf *conf, const char *user, struct map_edit_user *u, char *orig,
            size_t origlen, char *err, size_t errlen)
{
	size_t len;
	char *buf;
	int rc;

	if ((buf = map_edit_read(conf->map.source, &len, err, errlen)) == NULL)
		return -1;
	rc = map_edit_locate(conf->map.source, buf, len, user, u, err, errlen);
	if (rc == 0 && orig != NULL && u->via == MAP_EDIT_VIA_USER &&
	    map_edit_line_text(buf, len, u->line, orig, origlen) == -1)
		orig[0] = '\0';
	free(buf);
	return rc;
}

static int
locate(const struct mailplex_conf *conf, const char *user, struct map_edit_user *u, char *err,
       size_t errlen)
{
	return locate_line(conf, user, u, NULL, 0, err, errlen);
}

/*
 * Where the user's mail goes now is what the compiled map says; the source must agree,
 * else the operator has an unpublished edit and the move would start from a wrong OLD.
 */
static int
check_published(const struct mailplex_conf *conf, const char *key, const char *old, char *err,
                size_t errlen)
{
	struct map_result res;
	struct map *m;
	char merr[512];
	int rc = 0;

	if ((m = map_open(conf->map.db, merr, sizeof(merr))) == NULL) {
		err_set(err, errlen, "the compiled map: %s", merr);
		return -1;
	}
	if (map_lookup(m, key, &res) == -1 || res.nrcpt != 1 || res.status != MAP_DELIVER ||
	    strcmp(res.rcpt[0].backend->name, old) != 0) {
		err_set(err, errlen,
		        "%s: the source says %s but the compiled map %s says otherwise (%s); "
		        "publish the source first",
		        key, old, conf->map.db, map_status_name(res.status));
		rc = -1;
	}
	map_result_free(&res);
	map_close(m);
	return rc;
}

/*
 * Puts the user back on OLD after a failure; appends how that went to st->error. 0, or -1
 * when that failed too.
 */
static int
rollback(const struct mailplex_conf *conf, struct move_state *st)
{
	int rc = 0;

	char err[MOVE_ERR_MAX], msg[MOVE_ERR_MAX];
	struct map_edit_user u;
	uint64_t v;

	if (locate(conf, st->user, &u, err, sizeof(err)) == 0 && u.state == 'D' &&
	    strcmp(u.backend, st->old) == 0) {
		(void)str_format(msg, sizeof(msg), "%s; %s stays on %s", st->error, st->user,
		                 st->old);
	} else if (move_publish(conf, st->user,
	                        st->via_user ? (st->orig[0] != '\0' ? st->orig : st->old) : NULL,
	                        st->via_user && st->orig[0] != '\0', &v, err, sizeof(err)) == 0) {
		(void)str_format(msg, sizeof(msg), "%s; %s is back on %s (map version %llu)",
		                 st->error, st->user, st->old, (unsigned long long)v);
	} else {
		(void)str_format(msg, sizeof(msg),
		                 "%s; putting %s back on %s failed too (%s): its mail waits; run "
		                 "the move again to resume it, or put the user's line back in "
		                 "map.source and publish it",
		                 st->error, st->user, st->old, err);
		rc = -1;
	}
	(void)str_copy(st->error, sizeof(st->error), msg);
	return rc;
}

static int
fail(const struct move_ctx *ctx, struct move_state *st, int step, const char *why)
{
	char err[MOVE_ERR_MAX];

	st->status = MOVE_FAILED;
	st->failed_step = step;
	(void)str_format(st->error, sizeof(st->error), "failed at step \"%s\": %s",
	                 move_step_action(step), why);
	/* Not back on OLD: the record stays "running", so that running it again resumes. */
	if (rollback(ctx->conf, st) == -1)
		st->status = MOVE_RUNNING;
	if (move_state_save(ctx->conf, st, err, sizeof(err)) == -1)
		fprintf(stderr, "mailplexctl: move %s: cannot record the failure: %s\n", st->user,
		        err);
	fprintf(stderr, "mailplexctl: move %s %s -> %s: %s\n", st->user, st->old, st->new,
	        st->error);
	return MOVE_EXIT_FAILED;
}

static int
record(const struct move_ctx *ctx, struct move_state *st, int step)
{
	char err[MOVE_ERR_MAX];

	st->step = step;
	if (move_state_save(ctx->conf, st, err, sizeof(err)) == -1)
		return fail(ctx, st, step, err);
	return 0;
}

/*
 * Decides where the move starts: a new one, or the resume of an interrupted one whose
 * record agrees with the source. 1 to run, 0 nothing to do, -1 refused (err).
 */
static int
move_begin(const struct move_ctx *ctx, const char *user, const char *to, struct move_state *st,
           char *err, size_t errlen)
{
	const struct mailplex_conf *conf = ctx->conf;
	struct map_edit_user u;
	struct move_state old;
	char orig[MAP_LINE_MAX + 1] = "";
	int had;

	if (locate_line(conf, user, &u, orig, sizeof(orig), err, errlen) == -1)
		return -1;
	if ((had = move_state_load(conf, u.key, &old, err, errlen)) == -1)
		return -1;
	if (had && old.status == MOVE_RUNNING) {
		if (strcmp(old.new, to) != 0) {
			err_set(err, errlen,
			        "a move of %s to %s is unfinished (step %s); resume it "
			        "with --to %s",
			        u.key, old.new, move_step_name(old.step), old.new);
			return -1;
		}
		if (u.state == 'M' && strcmp(u.old_backend, old.old) == 0 &&
		    strcmp(u.backend, old.new) == 0) {
			*st = old;
			say(st, "resuming after step %s", move_step_name(st->step));
			return 1;
		}
		if (old.step == MOVE_STEP_START && u.state == 'D' &&
		    strcmp(u.backend, old.old) == 0) {
			*st = old; /* interrupted before the first edit */
			return 1;
		}
		if (old.step >= MOVE_STEP_VERIFIED && u.state == 'D' &&
		    strcmp(u.backend, old.new) == 0) {
			*st = old; /* interrupted after the last edit: publish once more */
			return 1;
		}
		err_set(err, errlen,
		        "%s: the unfinished move %s -> %s (step %s) no longer matches "
		        "the source (%s); fix the source or remove %s's state file",
		        u.key, old.old, old.new, move_step_name(old.step),
		        u.state == 'M' ? "another migrating line" : "the user is not migrating",
		        u.key);
		return -1;
	}
	if (u.state == 'R') {
		err_set(err, errlen, "%s is rejected in the map (line %u): nothing to move", u.key,
		        u.line);
		return -1;
	}
	if (u.state == 'M') {
		err_set(err, errlen,
		        "%s is already migrating %s -> %s in the source (line %u), "
		        "not by mailplexctl move; finish that by hand",
		        u.key, u.old_backend, u.backend, u.line);
		return -1;
	}
	if (strcmp(u.backend, to) == 0) {
		printf("move %s: already on %s, nothing to do\n", u.key, to);
		return 0;
	}
	if (check_published(conf, u.key, u.backend, err, errlen) == -1)
		return -1;
	memset(st, 0, sizeof(*st));
	(void)str_copy(st->user, sizeof(st->user), u.key);
	(void)str_copy(st->old, sizeof(st->old), u.backend);
	(void)str_copy(st->new, sizeof(st->new), to);
	st->via_user = u.via == MAP_EDIT_VIA_USER;
	(void)str_copy(st->orig, sizeof(st->orig), orig);
	st->step = MOVE_STEP_START;
	st->status = MOVE_RUNNING;
	return 1;
}

/* One move, the user lock held. Returns an exit code. */
static int
move_run(const struct move_ctx *ctx, const char *user, const char *to)
{
	const struct mailplex_conf *conf = ctx->conf;
	const struct map_backend *oldb, *newb;
	struct map_source *src;
	struct move_state st;
	char err[MOVE_ERR_MAX], sum[256], state[2 * MAP_NAME_MAX + 32];
	uint64_t v;
	int r, reached;

	if ((src = load_source(conf, err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailplexctl: move %s: %s\n", user, err);
		return MOVE_EXIT_FAILED;
	}
	if ((newb = backend(src, to)) == NULL) {
		fprintf(stderr, "mailplexctl: move %s: no back end %s in %s\n", user, to,
		        conf->map.source);
		map_source_free(src);
		return MOVE_EXIT_FAILED;
	}
	if ((r = move_begin(ctx, user, to, &st, err, sizeof(err))) <= 0) {
		if (r == -1)
			fprintf(stderr, "mailplexctl: move %s: %s\n", user, err);
		map_source_free(src);
		return r == 0 ? MOVE_EXIT_OK : MOVE_EXIT_FAILED;
	}
	if ((oldb = backend(src, st.old)) == NULL) {
		map_source_free(src);
		return fail(ctx, &st, st.step + 1, "the old back end is no longer in the map");
	}
	/* The record exists before the first edit: an interruption can always be resumed. */
	if (st.step == MOVE_STEP_START && record(ctx, &st, MOVE_STEP_START) != 0)
		goto failed;
	if (st.step < MOVE_STEP_MIGRATING) {
		(void)str_format(state, sizeof(state), "migrating %s -> %s", st.old, st.new);
		if (move_publish(conf, st.user, state, 0, &v, err, sizeof(err)) == -1) {
			fail(ctx, &st, MOVE_STEP_MIGRATING, err);
			goto failed;
		}
		st.version = v;
		say(&st,
		    "published as migrating (map version %llu): new mail is deferred, logins "
		    "refused for now",
		    (unsigned long long)v);
		if (record(ctx, &st, MOVE_STEP_MIGRATING) != 0)
			goto failed;
	}
	if (st.step < MOVE_STEP_QUEUE_DRAINED) {
		reached = st.step;
		if (move_barrier(conf, st.user, st.version, &reached, err, sizeof(err)) == -1) {
			fail(ctx, &st, reached + 1, err);
			goto failed;
		}
		say(&st,
		    "map version %llu in force everywhere: no session on %s, nothing "
		    "queued towards it",
		    (unsigned long long)st.version, st.old);
		if (record(ctx, &st, MOVE_STEP_QUEUE_DRAINED) != 0)
			goto failed;
	}
	if (st.step < MOVE_STEP_COPIED) {
		say(&st, "copying");
		if (move_copy(ctx, &st, oldb, newb, err, sizeof(err)) == -1) {
			fail(ctx, &st, MOVE_STEP_COPIED, err);
			goto failed;
		}
		if (record(ctx, &st, MOVE_STEP_COPIED) != 0)
			goto failed;
	}
	if (st.step < MOVE_STEP_VERIFIED) {
		if (!conf->move.verify) {
			say(&st, "copied (move.verify is off: no check)");
		} else if (move_verify(ctx, st.user, oldb, newb, sum, sizeof(sum), err,
		                       sizeof(err)) == -1) {
			fail(ctx, &st, MOVE_STEP_VERIFIED, err);
			goto failed;
		} else {
			say(&st, "copied and checked: %s", sum);
		}
		if (record(ctx, &st, MOVE_STEP_VERIFIED) != 0)
			goto failed;
	}
	if (move_publish(conf, st.user, st.new, 0, &v, err, sizeof(err)) == -1) {
		fail(ctx, &st, MOVE_STEP_DONE, err);
		goto failed;
	}
	move_queue_flush(conf);
	st.status = MOVE_DONE;
	st.error[0] = '\0';
	if (record(ctx, &st, MOVE_STEP_DONE) != 0)
		goto failed;
	say(&st, "done: published on %s (map version %llu); deferred mail now flows there", st.new,
	    (unsigned long long)v);
	map_source_free(src);
	return MOVE_EXIT_OK;
failed:
	map_source_free(src);
	return MOVE_EXIT_FAILED;
}

static int
move_one(const struct move_ctx *ctx, const char *user, const char *to)
{
	struct map_edit_user u;
	char err[MOVE_ERR_MAX];
	int lock, rc;

	if (locate(ctx->conf, user, &u, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailplexctl: move %s: %s\n", user, err);
		return MOVE_EXIT_FAILED;
	}
	/* One move per user at a time: the lock lives as long as this process. */
	if ((lock = move_lock(ctx->conf, u.key, 0, err, sizeof(err))) == -1) {
		fprintf(stderr, "mailplexctl: move %s: %s\n", u.key, err);
		return MOVE_EXIT_FAILED;
	}
	rc = move_run(ctx, u.key, to);
	(void)close(lock);
	return rc;
}

struct batch_line {
	char user[MAP_ADDR_MAX + 2];
	char to[MAP_NAME_MAX + 1];
};

/* "USER BACKEND" per line; '#' comments and blank lines. Errors as file:line. */
static int
batch_read(const char *path, struct batch_line **out, size_t *nout)
{
	struct batch_line *v = NULL, *nv;
	char line[1024], extra[8];
	size_t n = 0, cap = 0;
	unsigned lineno = 0;
	int bad = 0;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL) {
		fprintf(stderr, "mailplexctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char u[MAP_ADDR_MAX + 2], b[MAP_NAME_MAX + 1], *hash;
		int k;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			fprintf(stderr, "mailplexctl: %s:%u: line too long\n", path, lineno);
			bad = 1;
			break;
		}
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		k = sscanf(line, "%255s %63s %7s", u, b, extra);
		if (k <= 0)
			continue;
		if (k != 2 || strlen(u) > MAP_ADDR_MAX) {
			fprintf(stderr, "mailplexctl: %s:%u: expected USER BACKEND\n", path,
			        lineno);
			bad = 1;
			continue;
		}
		if (n >= BATCH_LINES_MAX) {
			fprintf(stderr, "mailplexctl: %s:%u: more than %d moves\n", path, lineno,
			        BATCH_LINES_MAX);
			bad = 1;
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nv = reallocarray(v, cap, sizeof(*nv))) == NULL) {
				fprintf(stderr, "mailplexctl: out of memory\n");
				bad = 1;
				break;
			}
			v = nv;
		}
		(void)str_copy(v[n].user, sizeof(v[n].user), u);
		(void)str_copy(v[n].to, sizeof(v[n].to), b);
		n++;
	}
	if (ferror(f)) {
		fprintf(stderr, "mailplexctl: %s: read error\n", path);
		bad = 1;
	}
	(void)fclose(f);
	if (bad) {
		free(v);
		return -1;
	}
	*out = v;
	*nout = n;
	return 0;
}

/*
 * Up to move.concurrency moves at once, one child process each. Each move publishes its
 * own map changes, one at a time under the map lock: simple and correct, and a barrier
 * passed for one version is passed for every older one, so the waits overlap.
 */
static int
move_batch(const struct move_ctx *ctx, const char *path)
{
	struct batch_line *v;
	size_t n, next = 0, running = 0, failed = 0;
	int status;
	pid_t pid;

	if (batch_read(path, &v, &n) == -1)
		return MOVE_EXIT_USAGE;
	while (next < n || running > 0) {
		if (next < n && running < (size_t)ctx->conf->move.concurrency) {
			(void)fflush(stdout);
			(void)fflush(stderr);
			if ((pid = fork()) == -1) {
				fprintf(stderr, "mailplexctl: fork: %s\n", strerror(errno));
				failed += n - next;
				next = n;
				continue;
			}
			if (pid == 0) {
				int rc = move_one(ctx, v[next].user, v[next].to);

				(void)fflush(stdout);
				_exit(rc);
			}
			next++;
			running++;
			continue;
		}
		if ((pid = wait(&status)) == -1) {
			if (errno == EINTR)
				continue;
			break;
		}
		running--;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			failed++;
	}
	free(v);
	printf("batch %s: %zu moves, %zu done, %zu failed\n", path, n, n - failed, failed);
	return failed > 0 ? MOVE_EXIT_FAILED : MOVE_EXIT_OK;
}

static int
move_usage(void)
{
	fprintf(stderr, "usage: mailplexctl move USER --to BACKEND\n"
	                "       mailplexctl move --batch FILE\n"
	                "       mailplexctl move status [USER]\n"
	                "       mailplexctl move config\n");
	return MOVE_EXIT_USAGE;
}

/* The settings a move would run with, one "key value" per line (the password file's
 * path, never its content). */
static void
move_config_print(const struct mailplex_conf *conf)
{
	const struct mailplex_conf_move *m = &conf->move;

	printf("mode %s\nmap.source %s\nmap.db %s\nstate_dir %s\nmaster_user %s\n"
	       "master_password_file %s\nbarrier_timeout %llums\ncopy_timeout %llums\n"
	       "verify %s\nimap_timeout %llums\nconcurrency %lld\ncopy_command %s\n",
	       m->mode == MAILPLEX_MOVE_LOCAL ? "local" : "cluster", conf->map.source, conf->map.db,
	       m->state_dir, m->master_user != NULL ? m->master_user : "-", m->master_password_file,
	       (unsigned long long)m->barrier_timeout_ms, (unsigned long long)m->copy_timeout_ms,
	       m->verify ? "true" : "false", (unsigned long long)m->imap_timeout_ms,
	       (long long)m->concurrency, m->copy_command);
}

int
move_main(const char *conf_path, int argc, char **argv)
{
	struct mailplex_conf conf;
	struct move_ctx ctx;
	char err[MOVE_ERR_MAX];
	int rc;

	if (argc < 1)
		return move_usage();
	/* A back end that closes during a TLS write must give an error, not kill us. */
	(void)signal(SIGPIPE, SIG_IGN);
	if (mailplex_conf_load(conf_path, &conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailplexctl: %s\n", err);
		return MOVE_EXIT_USAGE;
	}
	memset(&ctx, 0, sizeof(ctx));
	ctx.conf = &conf;
	if (strcmp(argv[0], "config") == 0 && argc == 1) {
		move_config_print(&conf);
		mailplex_conf_free(&conf);
		return MOVE_EXIT_OK;
	}
	if (strcmp(argv[0], "status") == 0) {
		struct map_edit_user u;
		const char *who = argc == 2 ? argv[1] : NULL;

		/* A user as written ("carl") is recorded by its key ("carl@mail.test"). */
		if (who != NULL && locate(&conf, who, &u, err, sizeof(err)) == 0)
			who = u.key;
		rc = argc <= 2 ? move_status_print(&conf, who) : move_usage();
		mailplex_conf_free(&conf);
		return rc;
	}
	if (!((argc == 3 && strcmp(argv[1], "--to") == 0) ||
	      (argc == 2 && strcmp(argv[0], "--batch") == 0))) {
		mailplex_conf_free(&conf);
		return move_usage();
	}
	if (move_state_dir(&conf, err, sizeof(err)) == -1 ||
	    read_password(&ctx, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailplexctl: move: %s\n", err);
		mailplex_conf_free(&conf);
		return MOVE_EXIT_USAGE;
	}
	if (conf.move.verify && conf.move.master_user == NULL) {
		fprintf(stderr, "mailplexctl: move: move.master_user is not set (the check logs "
		                "in as the user through it)\n");
		mailplex_conf_free(&conf);
		return MOVE_EXIT_USAGE;
	}
	if (strcmp(argv[0], "--batch") == 0)
		rc = move_batch(&ctx, argv[1]);
	else
		rc = move_one(&ctx, argv[0], argv[2]);
	explicit_bzero(ctx.password, sizeof(ctx.password));
	mailplex_conf_free(&conf);
	return rc;
}
