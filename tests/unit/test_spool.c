/*
 * Unit tests for relay/spool: an envelope round-trips byte for byte even when a client put
 * CR, LF, ',' or record look-alikes into its fields; the decoder refuses truncation, bad
 * lengths and oversize fields; a writer killed before commit never shows in queue/ and
 * spool_recover removes its leftover; a committed message survives its writer's death;
 * a write the file system refuses is reported as a temporary failure; a file is renamed
 * into queue/ only after its fsync succeeded; a delivered message's file is reused (cut to
 * the new message, never by two writers at once, small files only, emptied at start-up).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../relay/spool.h"
#include "util.h"

static char spool_path[256];

static int
setup_dir(void **state)
{
	char tmpl[] = "/tmp/test_spool.XXXXXX";

	if (mkdtemp(tmpl) == NULL)
		return -1;
	str_copy(spool_path, sizeof(spool_path), tmpl);
	return 0;
}

static int
teardown_dir(void **state)
{
	char cmd[512];

	if (str_format(cmd, sizeof(cmd), "rm -rf '%s'", spool_path) == -1)
		return -1;
	return system(cmd) == 0 ? 0 : -1;
}

static int
count_dir(const char *sub)
{
	char p[512];
	DIR *d;
	struct dirent *de;
	int n = 0;

	assert_int_equal(str_format(p, sizeof(p), "%s/%s", spool_path, sub), 0);
	assert_non_null(d = opendir(p));
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void
fill_env(struct spool_envelope *env, size_t nrcpt)
{
	size_t i;

	memset(env, 0, sizeof(*env));
	/* A client chose these bytes: they must not be able to add or end a record. */
	str_copy(env->sender, sizeof(env->sender), "evil,\nR5:x@y.z,\nE0:,\n@example.org");
	str_copy(env->client_addr, sizeof(env->client_addr), "2001:db8::1");
	str_copy(env->helo, sizeof(env->helo), "helo\r\nwith\x01 bytes,");
	env->arrival = 1790000000;
	env->body_type = SPOOL_BODY_8BITMIME;
	env->smtputf8 = 1;
	env->nrcpt = nrcpt;
	env->rcpt = calloc(nrcpt, sizeof(*env->rcpt));
	assert_non_null(env->rcpt);
	for (i = 0; i < nrcpt; i++) {
		snprintf(env->rcpt[i].addr, sizeof(env->rcpt[i].addr), "user%zu@bigisp.com", i);
		snprintf(env->rcpt[i].orig, sizeof(env->rcpt[i].orig), "List%zu@BigISP.com", i);
		str_copy(env->rcpt[i].backend, sizeof(env->rcpt[i].backend), "ingrid");
	}
}

static void
assert_env_equal(const struct spool_envelope *a, const struct spool_envelope *b)
{
	size_t i;

	assert_string_equal(a->qid, b->qid);
	assert_string_equal(a->sender, b->sender);
	assert_string_equal(a->client_addr, b->client_addr);
	assert_string_equal(a->helo, b->helo);
	assert_int_equal(a->arrival, b->arrival);
	assert_int_equal(a->body_type, b->body_type);
	assert_int_equal(a->smtputf8, b->smtputf8);
	assert_int_equal(a->nrcpt, b->nrcpt);
	for (i = 0; i < a->nrcpt; i++) {
		assert_string_equal(a->rcpt[i].addr, b->rcpt[i].addr);
		assert_string_equal(a->rcpt[i].orig, b->rcpt[i].orig);
		assert_string_equal(a->rcpt[i].backend, b->rcpt[i].backend);
	}
}

static int
open_queue_file(const char *qid)
{
	char p[512];

	assert_int_equal(str_format(p, sizeof(p), "%s/queue/%s", spool_path, qid), 0);
	return open(p, O_RDONLY | O_CLOEXEC);
}

static void
test_committed_message_reads_back_with_hostile_fields_intact(void **state)
{
	char err[256], body[64];
	struct spool *sp;
	struct spool_writer *w;
	struct spool_envelope env, got;
	off_t off;
	int tf, fd;
	ssize_t n;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&env, 3);
	assert_non_null(w = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
	assert_true(env.qid[0] != '\0');
	assert_int_equal(
	    spool_writer_body(w, "Subject: x\r\n\r\nhi\r\n", 18, &tf, err, sizeof(err)), 0);
	assert_int_equal(count_dir("queue"), 0); /* not before commit */
	assert_int_equal(spool_writer_commit(w, &tf, err, sizeof(err)), 0);
	assert_int_equal(count_dir("queue"), 1);
	assert_int_equal(count_dir("tmp"), 0);

	assert_true((fd = open_queue_file(env.qid)) >= 0);
	assert_int_equal(spool_envelope_read(fd, &got, &off, err, sizeof(err)), 0);
	assert_env_equal(&env, &got);
	n = pread(fd, body, sizeof(body), off);
	assert_int_equal(n, 18);
	assert_memory_equal(body, "Subject: x\r\n\r\nhi\r\n", 18);
	close(fd);
	spool_envelope_free(&got);
	spool_envelope_free(&env);
	spool_close(sp);
}

static void
test_queue_ids_are_unique_and_upper_hex(void **state)
{
	char err[256], seen[50][SPOOL_QID_MAX + 1];
	struct spool *sp;
	struct spool_writer *w;
	struct spool_envelope env;
	int tf, i, j;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&env, 1);
	for (i = 0; i < 50; i++) {
		assert_non_null(w = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
		assert_int_equal(strspn(env.qid, "0123456789ABCDEF"), strlen(env.qid));
		str_copy(seen[i], sizeof(seen[i]), env.qid);
		for (j = 0; j < i; j++)
			assert_string_not_equal(seen[i], seen[j]);
		spool_writer_abort(w);
	}
	assert_int_equal(count_dir("tmp"), 0);
	spool_envelope_free(&env);
	spool_close(sp);
}

/* A writer killed (SIGKILL) mid-message: nothing in queue/, its tmp file removed later. */
static void
test_killed_writer_leaves_nothing_in_queue_and_recover_removes_it(void **state)
{
	char err[256];
	struct spool *sp;
	pid_t pid;
	int status;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct spool_envelope env;
		struct spool_writer *w;
		int tf;

		fill_env(&env, 2);
		if ((w = spool_writer_new(sp, &env, &tf, err, sizeof(err))) == NULL)
			_exit(2);
		if (spool_writer_body(w, "partial", 7, &tf, err, sizeof(err)) == -1)
			_exit(2);
		raise(SIGKILL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(count_dir("queue"), 0);
	assert_int_equal(count_dir("tmp"), 1);
	assert_int_equal(spool_recover(sp, err, sizeof(err)), 1);
	assert_int_equal(count_dir("tmp"), 0);
	spool_close(sp);
}

/* Group commit: several messages published, one sync of queue/, all readable. */
static void
test_group_commit_publishes_then_syncs_once(void **state)
{
	char err[256];
	struct spool *sp;
	struct spool_envelope env;
	struct spool_writer *w1, *w2;
	int tf;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&env, 2);
	assert_non_null(w1 = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
	assert_non_null(w2 = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
	assert_int_equal(spool_writer_body(w1, "a\r\n", 3, &tf, err, sizeof(err)), 0);
	assert_int_equal(spool_writer_publish(w1, &tf, err, sizeof(err)), 0);
	assert_int_equal(spool_writer_publish(w2, &tf, err, sizeof(err)), 0);
	assert_int_equal(count_dir("tmp"), 0);
	assert_int_equal(count_dir("queue"), 2);
	assert_int_equal(spool_sync_queue(sp, &tf, err, sizeof(err)), 0);
	assert_int_equal(tf, 0);
	spool_envelope_free(&env);
	spool_close(sp);
}

/*
 * The steps a receiver takes with its fsyncs done elsewhere: finish hands out the file's
 * descriptor, synced renames only after a successful fsync, and a failed fsync (of the
 * file or of queue/) is answered as a temporary failure when the disk is full.
 */
static void
test_finish_then_synced_renames_only_after_a_good_fsync(void **state)
{
	char err[256];
	struct spool *sp;
	struct spool_envelope env;
	struct spool_writer *w;
	int tf, fd;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&env, 1);
	/* a good fsync: the file moves into queue/ */
	assert_non_null(w = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
	assert_int_equal(spool_writer_body(w, "a\r\n", 3, &tf, err, sizeof(err)), 0);
	assert_true((fd = spool_writer_finish(w, &tf, err, sizeof(err))) >= 0);
	assert_int_equal(fsync(fd), 0);
	assert_int_equal(count_dir("tmp"), 1);
	assert_int_equal(count_dir("queue"), 0);
	assert_int_equal(spool_writer_synced(w, 0, &tf, err, sizeof(err)), 0);
	assert_int_equal(count_dir("tmp"), 0);
	assert_int_equal(count_dir("queue"), 1);
	assert_int_equal(fsync(spool_queue_fd(sp)), 0);
	assert_int_equal(spool_queue_synced(sp, 0, &tf, err, sizeof(err)), 0);
	/* a failed fsync of a full disk: nothing renamed, the temp file gone, a tempfail */
	assert_non_null(w = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
	assert_true(spool_writer_finish(w, &tf, err, sizeof(err)) >= 0);
	assert_int_equal(spool_writer_synced(w, ENOSPC, &tf, err, sizeof(err)), -1);
	assert_int_equal(tf, 1);
	assert_non_null(strstr(err, "fsync"));
	assert_int_equal(count_dir("tmp"), 0);
	assert_int_equal(count_dir("queue"), 1);
	/* an I/O error is not a full disk: no 250, but 451 rather than 452 */
	assert_non_null(w = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
	assert_true(spool_writer_finish(w, &tf, err, sizeof(err)) >= 0);
	assert_int_equal(spool_writer_synced(w, EIO, &tf, err, sizeof(err)), -1);
	assert_int_equal(tf, 0);
	assert_int_equal(count_dir("tmp"), 0);
	assert_int_equal(spool_queue_synced(sp, ENOSPC, &tf, err, sizeof(err)), -1);
	assert_int_equal(tf, 1);
	assert_int_equal(spool_queue_synced(sp, EIO, &tf, err, sizeof(err)), -1);
	assert_int_equal(tf, 0);
	spool_envelope_free(&env);
	spool_close(sp);
}

/* After a receiver died the master removes its files only; another writer's stay. */
static void
test_recover_pid_removes_only_that_writers_files(void **state)
{
	char err[256];
	struct spool *sp;
	struct spool_envelope env;
	struct spool_writer *mine;
	pid_t pid;
	int status, tf;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&env, 1);
	assert_non_null(mine = spool_writer_new(sp, &env, &tf, err, sizeof(err)));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct spool_envelope e2;

		fill_env(&e2, 1);
		if (spool_writer_new(sp, &e2, &tf, err, sizeof(err)) == NULL ||
		    spool_writer_new(sp, &e2, &tf, err, sizeof(err)) == NULL)
			_exit(2);
		raise(SIGKILL);
		_exit(3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(count_dir("tmp"), 3);
	assert_int_equal(spool_recover_pid(sp, pid, err, sizeof(err)), 2);
	assert_int_equal(count_dir("tmp"), 1);
	assert_int_equal(spool_writer_commit(mine, &tf, err, sizeof(err)), 0);
	assert_int_equal(count_dir("queue"), 1);
	spool_envelope_free(&env);
	spool_close(sp);
}

/* Killed right after commit returned (the moment a receiver sends 250): it is complete. */
static void
test_writer_killed_after_commit_leaves_a_complete_message(void **state)
{
	char err[256], qid[SPOOL_QID_MAX + 1] = "";
	struct spool *sp;
	struct spool_envelope got;
	int pfd[2], status, fd;
	off_t off;
	pid_t pid;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct spool_envelope env;
		struct spool_writer *w;
		int tf;

		fill_env(&env, 1);
		if ((w = spool_writer_new(sp, &env, &tf, err, sizeof(err))) == NULL ||
		    spool_writer_body(w, "body\r\n", 6, &tf, err, sizeof(err)) == -1 ||
		    spool_writer_commit(w, &tf, err, sizeof(err)) == -1)
			_exit(2);
		if (write(pfd[1], env.qid, strlen(env.qid)) < 0)
			_exit(2);
		raise(SIGKILL);
		_exit(3);
	}
	close(pfd[1]);
	assert_true(read(pfd[0], qid, sizeof(qid) - 1) > 0);
	close(pfd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(spool_recover(sp, err, sizeof(err)), 0);
	assert_true((fd = open_queue_file(qid)) >= 0);
	assert_int_equal(spool_envelope_read(fd, &got, &off, err, sizeof(err)), 0);
	assert_string_equal(got.qid, qid);
	close(fd);
	spool_envelope_free(&got);
	spool_close(sp);
}

/* The file system refusing the data (here RLIMIT_FSIZE, EFBIG) is a temporary failure. */
static void
test_refused_write_is_a_tempfail_and_leaves_no_file(void **state)
{
	char err[256];
	struct spool *sp;
	pid_t pid;
	int status;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {.rlim_cur = 4096, .rlim_max = 4096};
		struct spool_envelope env;
		struct spool_writer *w;
		static char big[100000];
		int tf = 0;

		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
			_exit(2);
		fill_env(&env, 1);
		if ((w = spool_writer_new(sp, &env, &tf, err, sizeof(err))) == NULL)
			_exit(2);
		memset(big, 'x', sizeof(big));
		if (spool_writer_body(w, big, sizeof(big), &tf, err, sizeof(err)) == -1)
			spool_writer_abort(w); /* what a receiver does */
		else if (spool_writer_commit(w, &tf, err, sizeof(err)) == 0)
			_exit(4); /* must have failed */
		_exit(tf == 1 ? 0 : 5);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(count_dir("queue"), 0);
	assert_int_equal(count_dir("tmp"), 0);
	spool_close(sp);
}

static int
decode_str(const char *s, struct spool_envelope *env, char *err, size_t errlen)
{
	size_t used;

	return spool_envelope_decode((const uint8_t *)s, strlen(s), env, &used, err, errlen);
}

#define HEAD "MAILPLEX-SPOOL 1\nQ4:AB12,\nS0:,\nC9:127.0.0.1,\nH2:mx,\nA1:5,\nB1:0,\nU1:0,\n"

static void
test_decoder_accepts_minimal_and_refuses_malformed(void **state)
{
	struct spool_envelope env;
	char err[256];
	size_t used, i;
	const char ok[] = HEAD "N1:1,\nR5:a@b.c,\nO0:,\nK1:x,\nE0:,\nbody";
	static const char *const bad[] = {
	    "MAILPLEX-SPOOL 2\n",
	    HEAD "N1:0,\nE0:,\n",                          /* no recipients */
	    HEAD "N2:1,\nR5:a@b.c,\nO0:,\nK1:x,\nE0:,\n",  /* N says two */
	    HEAD "N1:1,\nR6:a@b.c,\nO0:,\nK1:x,\nE0:,\n",  /* length off by one */
	    HEAD "N1:1,\nR05:a@b.c,\nO0:,\nK1:x,\nE0:,\n", /* leading zero */
	    HEAD "N1:1,\nR:a@b.c,\nO0:,\nK1:x,\nE0:,\n",   /* no length */
	    HEAD "N1:1,\nR0:,\nO0:,\nK1:x,\nE0:,\n",       /* empty address */
	    HEAD "N1:1,\nR5:a@b.c;\nO0:,\nK1:x,\nE0:,\n",  /* bad terminator */
	    HEAD "N1:1,\nO0:,\nR5:a@b.c,\nK1:x,\nE0:,\n",  /* order */
	    HEAD "N1:1,\nR5:a@b.c,\nO0:,\nK1:x,\nE1:x,\n", /* end not empty */
	    HEAD "N4:1001,\n",                             /* over SPOOL_RCPT_MAX */
	    HEAD "N1:1,\nR99999999:",                      /* 8 digits */
	    "MAILPLEX-SPOOL 1\nQ4:ab12,\n",                /* lower-case qid */
	    "MAILPLEX-SPOOL 1\nQ4:AB12,\nS300:",           /* truncated */
	};

	assert_int_equal(spool_envelope_decode((const uint8_t *)ok, sizeof(ok) - 1, &env, &used,
	                                       err, sizeof(err)),
	                 0);
	assert_int_equal(used, sizeof(ok) - 1 - 4);
	assert_string_equal(env.rcpt[0].addr, "a@b.c");
	assert_string_equal(env.sender, "");
	spool_envelope_free(&env);
	/* Every proper prefix is truncated, never accepted. */
	for (i = 0; i + 4 < sizeof(ok) - 1; i++)
		assert_int_equal(
		    spool_envelope_decode((const uint8_t *)ok, i, &env, &used, err, sizeof(err)),
		    -1);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (decode_str(bad[i], &env, err, sizeof(err)) != -1)
			fail_msg("accepted bad envelope %zu", i);
		assert_null(env.rcpt);
	}
}

static void
test_field_longer_than_its_struct_member_is_refused(void **state)
{
	struct spool_envelope env;
	char err[256], buf[1024];

	/* A 300-byte sender: over MAP_ADDR_MAX. */
	memset(buf, 0, sizeof(buf));
	str_copy(buf, sizeof(buf), "MAILPLEX-SPOOL 1\nQ1:A,\nS300:");
	memset(buf + strlen(buf), 'a', 300);
	str_copy(buf + strlen(buf), 20, ",\n");
	assert_int_equal(decode_str(buf, &env, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "record S"));
}

/* ---- the pool of delivered files (free/) ---- */

static char big_body[20000];

/* Writes one message with body (len bytes) and commits it; returns the queue file's inode. */
static ino_t
write_message(struct spool *sp, struct spool_envelope *env, const char *body, size_t len)
{
	char err[256], p[512];
	struct spool_writer *w;
	struct stat sb;
	int tf;

	assert_non_null(w = spool_writer_new(sp, env, &tf, err, sizeof(err)));
	assert_int_equal(spool_writer_body(w, body, len, &tf, err, sizeof(err)), 0);
	assert_int_equal(spool_writer_commit(w, &tf, err, sizeof(err)), 0);
	assert_int_equal(str_format(p, sizeof(p), "%s/queue/%s", spool_path, env->qid), 0);
	assert_int_equal(stat(p, &sb), 0);
	return sb.st_ino;
}

/* The message reads back exactly: its envelope, then body to the end of the file. */
static void
assert_message(const struct spool_envelope *env, const char *body, size_t len)
{
	char err[256];
	struct spool_envelope got;
	struct stat sb;
	off_t off;
	char *buf;
	int fd;

	assert_true((fd = open_queue_file(env->qid)) >= 0);
	assert_int_equal(spool_envelope_read(fd, &got, &off, err, sizeof(err)), 0);
	assert_env_equal(env, &got);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, off + (off_t)len);
	assert_non_null(buf = malloc(len + 1));
	assert_int_equal(pread(fd, buf, len + 1, off), (ssize_t)len);
	assert_memory_equal(buf, body, len);
	free(buf);
	close(fd);
	spool_envelope_free(&got);
}

static uint64_t
file_size(const char *sub, const char *qid)
{
	char p[512];
	struct stat sb;

	assert_int_equal(str_format(p, sizeof(p), "%s/%s/%s", spool_path, sub, qid), 0);
	assert_int_equal(stat(p, &sb), 0);
	return (uint64_t)sb.st_size;
}

/* A writer that found the pool empty reads free/ again only after a pause (100 ms). */
static void
wait_pool_rescan(void)
{
	usleep(150 * 1000);
}

/*
 * A delivered message's file goes to free/ and the next message of the same process is
 * written into it (same inode, nothing created): a longer old file is cut to the new
 * message, so the body still ends at end of file.
 */
static void
test_delivered_file_is_reused_and_cut_to_the_new_message(void **state)
{
	char err[256], qid1[SPOOL_QID_MAX + 1];
	struct spool *sp;
	struct spool_envelope e1, e2;
	ino_t ino1, ino2;

	memset(big_body, 'x', sizeof(big_body));
	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&e1, 2);
	ino1 = write_message(sp, &e1, big_body, sizeof(big_body));
	str_copy(qid1, sizeof(qid1), e1.qid);
	assert_int_equal(spool_remove(sp, qid1, file_size("queue", qid1)), 0);
	assert_int_equal(count_dir("queue"), 0);
	assert_int_equal(count_dir("free"), 1);
	assert_int_equal(spool_remove(sp, qid1, 1), -1); /* gone already */
	assert_int_equal(errno, ENOENT);

	wait_pool_rescan();
	fill_env(&e2, 1);
	ino2 = write_message(sp, &e2, "Subject: y\r\n\r\nshort\r\n", 21);
	assert_string_not_equal(e2.qid, qid1);
	assert_int_equal(ino2, ino1);
	assert_int_equal(count_dir("free"), 0);
	assert_int_equal(count_dir("tmp"), 0);
	assert_message(&e2, "Subject: y\r\n\r\nshort\r\n", 21);
	spool_envelope_free(&e1);
	spool_envelope_free(&e2);
	spool_close(sp);
}

/*
 * Two messages received at once by one process never share a pool file: the first takes
 * it (renamed into tmp/, where a crash would leave the partial message), the second finds
 * the pool empty and creates one.
 */
static void
test_two_writers_never_share_a_pool_file(void **state)
{
	char err[256];
	struct spool *sp;
	struct spool_envelope e0, e1, e2;
	struct spool_writer *w1, *w2;
	int tf;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&e0, 1);
	(void)write_message(sp, &e0, "old\r\n", 5);
	assert_int_equal(spool_remove(sp, e0.qid, file_size("queue", e0.qid)), 0);
	wait_pool_rescan();
	fill_env(&e1, 1);
	fill_env(&e2, 2);
	assert_non_null(w1 = spool_writer_new(sp, &e1, &tf, err, sizeof(err)));
	assert_int_equal(count_dir("free"), 0); /* w1 took the pool's file */
	assert_int_equal(count_dir("tmp"), 1);
	assert_non_null(w2 = spool_writer_new(sp, &e2, &tf, err, sizeof(err)));
	assert_int_equal(count_dir("tmp"), 2); /* w2 could not have it: a new file */
	assert_int_equal(spool_writer_body(w2, "two\r\n", 5, &tf, err, sizeof(err)), 0);
	assert_int_equal(spool_writer_body(w1, "one\r\n", 5, &tf, err, sizeof(err)), 0);
	assert_int_equal(spool_writer_commit(w2, &tf, err, sizeof(err)), 0);
	assert_int_equal(spool_writer_commit(w1, &tf, err, sizeof(err)), 0);
	assert_int_equal(count_dir("queue"), 2);
	assert_int_equal(count_dir("free"), 0);
	assert_message(&e1, "one\r\n", 5);
	assert_message(&e2, "two\r\n", 5);
	spool_envelope_free(&e0);
	spool_envelope_free(&e1);
	spool_envelope_free(&e2);
	spool_close(sp);
}

/* A message cut off while rewriting a pool file is a partial message in tmp/ like any. */
static void
test_partial_message_in_a_reused_file_is_in_tmp(void **state)
{
	char err[256];
	struct spool *sp, *after;
	struct spool_envelope e1, e2;
	struct spool_writer *w;
	int tf;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&e1, 1);
	(void)write_message(sp, &e1, "first\r\n", 7);
	assert_int_equal(spool_remove(sp, e1.qid, file_size("queue", e1.qid)), 0);
	wait_pool_rescan();
	fill_env(&e2, 1);
	assert_non_null(w = spool_writer_new(sp, &e2, &tf, err, sizeof(err)));
	assert_int_equal(spool_writer_body(w, big_body, 100, &tf, err, sizeof(err)), 0);
	assert_true(spool_writer_finish(w, &tf, err, sizeof(err)) >= 0); /* written, never synced */
	/* the process dies here: a restart opens the spool afresh */
	assert_non_null(after = spool_open(spool_path, err, sizeof(err)));
	assert_int_equal(spool_recover(after, err, sizeof(err)), 1);
	assert_int_equal(count_dir("tmp"), 0);
	assert_int_equal(count_dir("free"), 0);
	assert_int_equal(count_dir("queue"), 0);
	spool_close(after);
	spool_writer_abort(w); /* the dead process's memory, freed for the leak checker */
	spool_envelope_free(&e1);
	spool_envelope_free(&e2);
	spool_close(sp);
}

/* Big files are not kept; an aborted rewrite gives its file up; start-up empties free/. */
static void
test_pool_keeps_small_files_only_and_recover_empties_it(void **state)
{
	char err[256];
	struct spool *sp;
	struct spool_envelope e1, e2, e3;
	struct spool_writer *w;
	int tf;

	assert_non_null(sp = spool_open(spool_path, err, sizeof(err)));
	fill_env(&e1, 1);
	(void)write_message(sp, &e1, "a\r\n", 3);
	assert_int_equal(spool_remove(sp, e1.qid, 300 * 1024), 0); /* as if 300 KiB */
	assert_int_equal(count_dir("free"), 0);
	assert_int_equal(count_dir("queue"), 0);

	fill_env(&e2, 1);
	(void)write_message(sp, &e2, "b\r\n", 3);
	assert_int_equal(spool_remove(sp, e2.qid, file_size("queue", e2.qid)), 0);
	assert_int_equal(count_dir("free"), 1);
	wait_pool_rescan();
	fill_env(&e3, 1);
	assert_non_null(w = spool_writer_new(sp, &e3, &tf, err, sizeof(err)));
	spool_writer_abort(w);
	assert_int_equal(count_dir("free"), 0);

	spool_envelope_free(&e3);
	fill_env(&e3, 1);
	(void)write_message(sp, &e3, "c\r\n", 3);
	assert_int_equal(spool_remove(sp, e3.qid, file_size("queue", e3.qid)), 0);
	assert_int_equal(count_dir("free"), 1);
	assert_int_equal(spool_recover(sp, err, sizeof(err)), 0); /* counts tmp/ only */
	assert_int_equal(count_dir("free"), 0);
	spool_envelope_free(&e1);
	spool_envelope_free(&e2);
	spool_envelope_free(&e3);
	spool_close(sp);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
	        test_committed_message_reads_back_with_hostile_fields_intact, setup_dir,
	        teardown_dir),
	    cmocka_unit_test_setup_teardown(test_queue_ids_are_unique_and_upper_hex, setup_dir,
	                                    teardown_dir),
	    cmocka_unit_test_setup_teardown(
	        test_killed_writer_leaves_nothing_in_queue_and_recover_removes_it, setup_dir,
	        teardown_dir),
	    cmocka_unit_test_setup_teardown(test_group_commit_publishes_then_syncs_once, setup_dir,
	                                    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_finish_then_synced_renames_only_after_a_good_fsync,
	                                    setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_recover_pid_removes_only_that_writers_files,
	                                    setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(
	        test_writer_killed_after_commit_leaves_a_complete_message, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_refused_write_is_a_tempfail_and_leaves_no_file,
	                                    setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(
	        test_delivered_file_is_reused_and_cut_to_the_new_message, setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_two_writers_never_share_a_pool_file, setup_dir,
	                                    teardown_dir),
	    cmocka_unit_test_setup_teardown(test_partial_message_in_a_reused_file_is_in_tmp,
	                                    setup_dir, teardown_dir),
	    cmocka_unit_test_setup_teardown(test_pool_keeps_small_files_only_and_recover_empties_it,
	                                    setup_dir, teardown_dir),
	    cmocka_unit_test(test_decoder_accepts_minimal_and_refuses_malformed),
	    cmocka_unit_test(test_field_longer_than_its_struct_member_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
