/*
 * The spool of mailplex-smtpd (interface and layout in spool.h): queue ids, the envelope
 * encoding and its bounded decoder, durable commit by fsync + rename + directory fsync,
 * and crash recovery of tmp/. It never decides routing and never reads the network.
 *
 * Envelope encoding, version 1: the line "MAILPLEX-SPOOL 1\n", then records
 *   TAG LEN ':' BYTES ',' '\n'
 * TAG one upper-case letter, LEN decimal (no leading zero, at most 7 digits), BYTES exactly
 * LEN bytes (no NUL). Records come in a fixed order: Q qid, S sender, C client address,
 * H helo, A arrival, B body type, U smtputf8, N recipient count, then per recipient
 * R address, O original address, K back end, and last E with LEN 0. The body follows.
 * A client's bytes only ever sit inside BYTES, so a CR, LF or ',' in them forges nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "spool.h"
#include "util.h"

#define SPOOL_MAGIC           "MAILPLEX-SPOOL 1\n"
#define SPOOL_LEN_DIGITS_MAX  7
#define SPOOL_WBUF_BYTES      (64 * 1024) /* body writes are batched into this */
#define SPOOL_READ_CHUNK      (64 * 1024)
#define SPOOL_QID_TIME_DIGITS 13
#define SPOOL_QID_LEN         (SPOOL_QID_TIME_DIGITS + 6 + 4)
/*
 * The pool of delivered files kept for reuse in free/ (see spool.h): at most this many,
 * each at most this large, so it holds at most 64 MiB; a writer takes up to a batch of
 * its own names per directory read and, having found none, reads again only after a pause.
 */
#define SPOOL_POOL_FILES_MAX  256
#define SPOOL_POOL_FILE_BYTES (256 * 1024)
#define SPOOL_POOL_BATCH      64
#define SPOOL_POOL_RESCAN_MS  10
#define SPOOL_POOL_RECOUNT_MS 50

struct spool {
	char dir[1024];
	int dirfd;
	int tmpfd;   /* tmp/ */
	int queuefd; /* queue/ */
	int freefd;  /* free/ */
	unsigned counter;
	/* a writer's side of the pool: names of its own files in free/, taken one by one */
	char pool[SPOOL_POOL_BATCH][SPOOL_QID_MAX + 1];
	size_t npool;
	uint64_t pool_rescan_ms; /* no read of free/ before this */
	/* the runner's side: files put into free/ since it last counted them */
	unsigned pool_count;
	uint64_t pool_recount_ms;
	int pool_claimed; /* a name left free/ since spool_source_fds */
};

struct spool_writer {
	struct spool *sp;
	char qid[SPOOL_QID_MAX + 1];
	int fd;
	off_t reused_size; /* a reused file's old size: cut back to written */
	off_t written;
	size_t wlen;
	uint8_t wbuf[SPOOL_WBUF_BYTES];
};

/* A full disk or quota is temporary for the client (452/451), never a 5xx. */
static int
spool_errno_tempfail(int e)
{
	return e == ENOSPC || e == EDQUOT || e == EFBIG;
}

static int
spool_mkdir_at(int dirfd, const char *name, char *err, size_t errlen)
{
	if (mkdirat(dirfd, name, 0700) == -1 && errno != EEXIST) {
		err_set(err, errlen, "mkdir %s: %s", name, strerror(errno));
		return -1;
	}
	return 0;
}

static int
spool_open_sub(int dirfd, const char *name, char *err, size_t errlen)
{
	int fd;

	if (spool_mkdir_at(dirfd, name, err, errlen) == -1)
		return -1;
	if ((fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		err_set(err, errlen, "open %s: %s", name, strerror(errno));
	return fd;
}

struct spool *
spool_open(const char *dir, char *err, size_t errlen)
{
	struct spool *sp;

	if ((sp = calloc(1, sizeof(*sp))) == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	sp->dirfd = sp->tmpfd = sp->queuefd = sp->freefd = -1;
	if (str_copy(sp->dir, sizeof(sp->dir), dir) == -1) {
		err_set(err, errlen, "%s: path too long", dir);
		goto fail;
	}
	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		err_set(err, errlen, "mkdir %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		err_set(err, errlen, "open %s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((sp->tmpfd = spool_open_sub(sp->dirfd, "tmp", err, errlen)) == -1 ||
	    (sp->queuefd = spool_open_sub(sp->dirfd, "queue", err, errlen)) == -1 ||
	    (sp->freefd = spool_open_sub(sp->dirfd, "free", err, errlen)) == -1 ||
	    spool_mkdir_at(sp->dirfd, "state", err, errlen) == -1)
		goto fail;
	/* The new subdirectories must survive a crash before anything is written in them. */
	if (fsync(sp->dirfd) == -1) {
		err_set(err, errlen, "fsync %s: %s", dir, strerror(errno));
		goto fail;
	}
	return sp;
fail:
	spool_close(sp);
	return NULL;
}

void
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return;
	if (sp->tmpfd != -1)
		close(sp->tmpfd);
	if (sp->queuefd != -1)
		close(sp->queuefd);
	if (sp->freefd != -1)
		close(sp->freefd);
	if (sp->dirfd != -1)
		close(sp->dirfd);
	free(sp);
}

const char *
spool_dir(const struct spool *sp)
{
	return sp->dir;
}

/* The 6 hex digits a queue id carries for its writer's pid (see spool_qid_make). */
static int
spool_pid_tag(pid_t pid, char tag[8])
{
	return str_format(tag, 8, "%06X", (unsigned)pid & 0xFFFFFFu);
}

static int
spool_name_has_tag(const char *name, const char *tag)
{
	/* QID layout (spool_qid_make): 13 digits of time, 6 of pid, 4 of counter */
	return strlen(name) == SPOOL_QID_LEN && memcmp(name + SPOOL_QID_TIME_DIGITS, tag, 6) == 0;
}

/* Removes the files in tmp/ or free/ (sub) whose queue id names pid (all when pid is 0). */
static int
spool_clean_dir(struct spool *sp, int dirfd, const char *sub, pid_t pid, char *err, size_t errlen)
{
	DIR *d;
	struct dirent *de;
	char tag[8];
	int fd, n = 0;

	if (spool_pid_tag(pid, tag) == -1)
		return -1;
	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    (d = fdopendir(fd)) == NULL) {
		err_set(err, errlen, "%s/%s: %s", sp->dir, sub, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (pid != 0 && !spool_name_has_tag(de->d_name, tag))
			continue;
		if (unlinkat(dirfd, de->d_name, 0) == -1) {
			err_set(err, errlen, "unlink %s/%s/%s: %s", sp->dir, sub, de->d_name,
			        strerror(errno));
			closedir(d);
			return -1;
		}
		n++;
	}
	closedir(d);
	if (n > 0 && fsync(dirfd) == -1) {
		err_set(err, errlen, "fsync %s/%s: %s", sp->dir, sub, strerror(errno));
		return -1;
	}
	return n;
}

/*
 * tmp/ is never acknowledged (a file taken from the pool is renamed there before it is
 * written, so tmp/ holds every partial message); free/ is the pool of delivered files, so
 * emptying it loses nothing. The count is of tmp/ only: the partial messages.
 */
static int
spool_clean(struct spool *sp, pid_t pid, char *err, size_t errlen)
{
	int n;

	if ((n = spool_clean_dir(sp, sp->tmpfd, "tmp", pid, err, errlen)) == -1 ||
	    spool_clean_dir(sp, sp->freefd, "free", pid, err, errlen) == -1)
		return -1;
	sp->npool = 0;
	return n;
}

int
spool_recover(struct spool *sp, char *err, size_t errlen)
{
	return spool_clean(sp, 0, err, errlen);
}

int
spool_recover_pid(struct spool *sp, pid_t pid, char *err, size_t errlen)
{
	if (pid <= 0) {
		err_set(err, errlen, "bad pid");
		return -1;
	}
	return spool_clean(sp, pid, err, errlen);
}

/* Microseconds, pid and a per-process counter: unique even for two writers in one tick. */
static int
spool_qid_make(struct spool *sp, char *qid, size_t qidlen)
{
	struct timeval tv;
	uint64_t us;

	if (gettimeofday(&tv, NULL) == -1)
		return -1;
	us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	sp->counter++;
	return str_format(qid, qidlen, "%013" PRIX64 "%06X%04X",
	                  (uint64_t)(us & 0xFFFFFFFFFFFFFULL), (unsigned)getpid() & 0xFFFFFFu,
	                  sp->counter & 0xFFFFu);
}

/* ---- encoding ---- */

struct spool_enc {
	uint8_t *buf;
	size_t len, cap;
	int failed;
};

static void
spool_enc_put(struct spool_enc *e, const void *p, size_t n)
{
	uint8_t *nb;
	size_t ncap;

	if (e->failed)
		return;
	if (e->len + n > SPOOL_ENVELOPE_MAX) {
		e->failed = 1;
		return;
	}
	if (e->len + n > e->cap) {
		ncap = e->cap == 0 ? 4096 : e->cap;
		while (ncap < e->len + n)
			ncap *= 2;
		if ((nb = realloc(e->buf, ncap)) == NULL) {
			e->failed = 1;
			return;
		}
		e->buf = nb;
		e->cap = ncap;
	}
	memcpy(e->buf + e->len, p, n);
	e->len += n;
}

static void
spool_enc_field(struct spool_enc *e, char tag, const char *s, size_t n)
{
	char head[16];

	if (str_format(head, sizeof(head), "%c%zu:", tag, n) == -1) {
		e->failed = 1;
		return;
	}
	spool_enc_put(e, head, strlen(head));
	spool_enc_put(e, s, n);
	spool_enc_put(e, ",\n", 2);
}

static void
spool_enc_str(struct spool_enc *e, char tag, const char *s)
{
	spool_enc_field(e, tag, s, strlen(s));
}

static void
spool_enc_u64(struct spool_enc *e, char tag, uint64_t v)
{
	char num[24];

	if (str_format(num, sizeof(num), "%" PRIu64, v) == -1) {
		e->failed = 1;
		return;
	}
	spool_enc_str(e, tag, num);
}

/* Encodes env into a malloc'ed buffer; -1 if it is over the limits. */
static int
spool_envelope_encode(const struct spool_envelope *env, uint8_t **out, size_t *outlen)
{
	struct spool_enc e = {0};
	size_t i;

	if (env->nrcpt == 0 || env->nrcpt > SPOOL_RCPT_MAX)
		return -1;
	spool_enc_put(&e, SPOOL_MAGIC, strlen(SPOOL_MAGIC));
	spool_enc_str(&e, 'Q', env->qid);
	spool_enc_str(&e, 'S', env->sender);
	spool_enc_str(&e, 'C', env->client_addr);
	spool_enc_str(&e, 'H', env->helo);
	spool_enc_u64(&e, 'A', env->arrival);
	spool_enc_u64(&e, 'B', (uint64_t)env->body_type);
	spool_enc_u64(&e, 'U', env->smtputf8 ? 1 : 0);
	spool_enc_u64(&e, 'N', env->nrcpt);
	for (i = 0; i < env->nrcpt; i++) {
		spool_enc_str(&e, 'R', env->rcpt[i].addr);
		spool_enc_str(&e, 'O', env->rcpt[i].orig);
		spool_enc_str(&e, 'K', env->rcpt[i].backend);
	}
	spool_enc_field(&e, 'E', "", 0);
	if (e.failed) {
		free(e.buf);
		return -1;
	}
	*out = e.buf;
	*outlen = e.len;
	return 0;
}

/* ---- decoding (pure, bounded) ---- */

enum spool_dec {
	SPOOL_DEC_OK,
	SPOOL_DEC_SHORT, /* truncated: more bytes may make it whole */
	SPOOL_DEC_BAD,
};

struct spool_dec_ctx {
	const uint8_t *buf;
	size_t len, off;
	char *err;
	size_t errlen;
};

/* One record with the expected tag; data and n point into the buffer. */
static enum spool_dec
spool_dec_record(struct spool_dec_ctx *c, char tag, const uint8_t **data, size_t *n)
{
	size_t off = c->off, v = 0, digits = 0;

	if (off >= c->len)
		return SPOOL_DEC_SHORT;
	if (c->buf[off] != (uint8_t)tag) {
		err_set(c->err, c->errlen, "offset %zu: expected record %c", off, tag);
		return SPOOL_DEC_BAD;
	}
	off++;
	for (;; off++) {
		if (off >= c->len)
			return SPOOL_DEC_SHORT;
		if (c->buf[off] == ':')
			break;
		if (c->buf[off] < '0' || c->buf[off] > '9' || ++digits > SPOOL_LEN_DIGITS_MAX ||
		    (digits == 2 && v == 0)) {
			err_set(c->err, c->errlen, "offset %zu: bad length in record %c", off, tag);
			return SPOOL_DEC_BAD;
		}
		v = v * 10 + (size_t)(c->buf[off] - '0');
	}
	if (digits == 0 || v > SPOOL_ENVELOPE_MAX) {
		err_set(c->err, c->errlen, "offset %zu: bad length in record %c", off, tag);
		return SPOOL_DEC_BAD;
	}
	off++;
	if (c->len - off < v + 2)
		return SPOOL_DEC_SHORT;
	if (c->buf[off + v] != ',' || c->buf[off + v + 1] != '\n') {
		err_set(c->err, c->errlen, "offset %zu: record %c not terminated", off + v, tag);
		return SPOOL_DEC_BAD;
	}
	if (memchr(c->buf + off, '\0', v) != NULL) {
		err_set(c->err, c->errlen, "offset %zu: NUL in record %c", off, tag);
		return SPOOL_DEC_BAD;
	}
	*data = c->buf + off;
	*n = v;
	c->off = off + v + 2;
	if (c->off > SPOOL_ENVELOPE_MAX) {
		err_set(c->err, c->errlen, "envelope larger than %d bytes", SPOOL_ENVELOPE_MAX);
		return SPOOL_DEC_BAD;
	}
	return SPOOL_DEC_OK;
}

static enum spool_dec
spool_dec_str(struct spool_dec_ctx *c, char tag, char *dst, size_t dstlen)
{
	const uint8_t *d;
	size_t n;
	enum spool_dec r;

	if ((r = spool_dec_record(c, tag, &d, &n)) != SPOOL_DEC_OK)
		return r;
	if (n >= dstlen) {
		err_set(c->err, c->errlen, "record %c: %zu bytes, at most %zu", tag, n, dstlen - 1);
		return SPOOL_DEC_BAD;
	}
	memcpy(dst, d, n);
	dst[n] = '\0';
	return SPOOL_DEC_OK;
}

static enum spool_dec
spool_dec_u64(struct spool_dec_ctx *c, char tag, uint64_t max, uint64_t *out)
{
	char num[24];
	enum spool_dec r;

	if ((r = spool_dec_str(c, tag, num, sizeof(num))) != SPOOL_DEC_OK)
		return r;
	if ((num[0] == '0' && num[1] != '\0') || parse_u64(num, 0, max, out) == -1) {
		err_set(c->err, c->errlen, "record %c: bad number", tag);
		return SPOOL_DEC_BAD;
	}
	return SPOOL_DEC_OK;
}

static int
spool_qid_valid(const char *q)
{
	size_t i;

	if (q[0] == '\0')
		return 0;
	for (i = 0; q[i] != '\0'; i++)
		if (!((q[i] >= '0' && q[i] <= '9') || (q[i] >= 'A' && q[i] <= 'F')))
			return 0;
	return 1;
}

static enum spool_dec
spool_dec_envelope(struct spool_dec_ctx *c, struct spool_envelope *env)
{
	size_t mlen = strlen(SPOOL_MAGIC), i;
	uint64_t v;
	enum spool_dec r;

	if (c->len < mlen) {
		if (memcmp(c->buf, SPOOL_MAGIC, c->len) != 0)
			goto badmagic;
		return SPOOL_DEC_SHORT;
	}
	if (memcmp(c->buf, SPOOL_MAGIC, mlen) != 0)
		goto badmagic;
	c->off = mlen;
	if ((r = spool_dec_str(c, 'Q', env->qid, sizeof(env->qid))) != SPOOL_DEC_OK)
		return r;
	if (!spool_qid_valid(env->qid)) {
		err_set(c->err, c->errlen, "bad queue id");
		return SPOOL_DEC_BAD;
	}
	if ((r = spool_dec_str(c, 'S', env->sender, sizeof(env->sender))) != SPOOL_DEC_OK ||
	    (r = spool_dec_str(c, 'C', env->client_addr, sizeof(env->client_addr))) !=
	        SPOOL_DEC_OK ||
	    (r = spool_dec_str(c, 'H', env->helo, sizeof(env->helo))) != SPOOL_DEC_OK ||
	    (r = spool_dec_u64(c, 'A', UINT64_MAX, &env->arrival)) != SPOOL_DEC_OK)
		return r;
	if ((r = spool_dec_u64(c, 'B', SPOOL_BODY_BINARYMIME, &v)) != SPOOL_DEC_OK)
		return r;
	env->body_type = (enum spool_body_type)v;
	if ((r = spool_dec_u64(c, 'U', 1, &v)) != SPOOL_DEC_OK)
		return r;
	env->smtputf8 = (int)v;
	if ((r = spool_dec_u64(c, 'N', SPOOL_RCPT_MAX, &v)) != SPOOL_DEC_OK)
		return r;
	if (v == 0) {
		err_set(c->err, c->errlen, "no recipients");
		return SPOOL_DEC_BAD;
	}
	if ((env->rcpt = calloc((size_t)v, sizeof(*env->rcpt))) == NULL) {
		err_set(c->err, c->errlen, "out of memory");
		return SPOOL_DEC_BAD;
	}
	env->nrcpt = (size_t)v;
	for (i = 0; i < env->nrcpt; i++) {
		struct spool_rcpt *rc = &env->rcpt[i];

		if ((r = spool_dec_str(c, 'R', rc->addr, sizeof(rc->addr))) != SPOOL_DEC_OK ||
		    (r = spool_dec_str(c, 'O', rc->orig, sizeof(rc->orig))) != SPOOL_DEC_OK ||
		    (r = spool_dec_str(c, 'K', rc->backend, sizeof(rc->backend))) != SPOOL_DEC_OK)
			return r;
		if (rc->addr[0] == '\0') {
			err_set(c->err, c->errlen, "recipient %zu: empty address", i);
			return SPOOL_DEC_BAD;
		}
	}
	{
		const uint8_t *d;
		size_t n;

		if ((r = spool_dec_record(c, 'E', &d, &n)) != SPOOL_DEC_OK)
			return r;
		if (n != 0) {
			err_set(c->err, c->errlen, "end record not empty");
			return SPOOL_DEC_BAD;
		}
	}
	return SPOOL_DEC_OK;
badmagic:
	err_set(c->err, c->errlen, "not a mailplex spool file (version 1)");
	return SPOOL_DEC_BAD;
}

static enum spool_dec
spool_decode(const uint8_t *buf, size_t len, struct spool_envelope *env, size_t *used, char *err,
             size_t errlen)
{
	struct spool_dec_ctx c = {.buf = buf, .len = len, .err = err, .errlen = errlen};
	enum spool_dec r;

	memset(env, 0, sizeof(*env));
	r = spool_dec_envelope(&c, env);
	if (r != SPOOL_DEC_OK) {
		spool_envelope_free(env);
		if (r == SPOOL_DEC_SHORT)
			err_set(err, errlen, "envelope truncated");
		return r;
	}
	*used = c.off;
	return SPOOL_DEC_OK;
}

int
spool_envelope_decode(const uint8_t *buf, size_t len, struct spool_envelope *env, size_t *used,
                      char *err, size_t errlen)
{
	return spool_decode(buf, len, env, used, err, errlen) == SPOOL_DEC_OK ? 0 : -1;
}

int
spool_envelope_read(int fd, struct spool_envelope *env, off_t *body_off, char *err, size_t errlen)
{
	uint8_t *buf = NULL, *nb;
	size_t len = 0, cap = 0, used;
	ssize_t n;
	enum spool_dec r = SPOOL_DEC_SHORT;

	memset(env, 0, sizeof(*env));
	while (r == SPOOL_DEC_SHORT) {
		if (len >= SPOOL_ENVELOPE_MAX) {
			err_set(err, errlen, "envelope larger than %d bytes", SPOOL_ENVELOPE_MAX);
			r = SPOOL_DEC_BAD;
			break;
		}
		if (cap - len < SPOOL_READ_CHUNK) {
			if ((nb = realloc(buf, cap + SPOOL_READ_CHUNK)) == NULL) {
				err_set(err, errlen, "out of memory");
				r = SPOOL_DEC_BAD;
				break;
			}
			buf = nb;
			cap += SPOOL_READ_CHUNK;
		}
		n = pread(fd, buf + len, cap - len, (off_t)len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			err_set(err, errlen, "read: %s", strerror(errno));
			r = SPOOL_DEC_BAD;
			break;
		}
		if (n == 0) {
			err_set(err, errlen, "envelope truncated");
			break;
		}
		len += (size_t)n;
		r = spool_decode(buf, len, env, &used, err, errlen);
	}
	free(buf);
	if (r != SPOOL_DEC_OK) {
		spool_envelope_free(env);
		return -1;
	}
	*body_off = (off_t)used;
	return 0;
}

void
spool_envelope_free(struct spool_envelope *env)
{
	free(env->rcpt);
	env->rcpt = NULL;
	env->nrcpt = 0;
}

/* ---- writing ---- */

static int
spool_write_all(int fd, const void *p, size_t n, int *tempfail, char *err, size_t errlen)
{
	const uint8_t *b = p;
	ssize_t w;

	while (n > 0) {
		w = write(fd, b, n);
		if (w == -1 && errno == EINTR)
			continue;
		if (w == -1) {
			*tempfail = spool_errno_tempfail(errno);
			err_set(err, errlen, "write: %s", strerror(errno));
			return -1;
		}
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * The next name from the pool: one of this process's own files in free/ (a name carries
 * its writer's pid, so processes do not compete for the same files). Reads free/ when its
 * list is empty, but after a read that found nothing not again for SPOOL_POOL_RESCAN_MS.
 * 1 with name set, 0.
 */
static int
spool_pool_take(struct spool *sp, char *name, size_t namelen)
{
	DIR *d;
	struct dirent *de;
	char tag[8];
	uint64_t now;
	int fd;

	if (sp->npool == 0) {
		now = time_mono_ms();
		if (now < sp->pool_rescan_ms || spool_pid_tag(getpid(), tag) == -1)
			return 0;
		if ((fd = openat(sp->freefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
			return 0;
		if ((d = fdopendir(fd)) == NULL) {
			close(fd);
			return 0;
		}
		while (sp->npool < SPOOL_POOL_BATCH && (de = readdir(d)) != NULL)
			if (spool_name_has_tag(de->d_name, tag))
				str_copy(sp->pool[sp->npool++], sizeof(sp->pool[0]), de->d_name);
		closedir(d);
		if (sp->npool == 0) {
			sp->pool_rescan_ms = now + SPOOL_POOL_RESCAN_MS;
			return 0;
		}
	}
	return str_copy(name, namelen, sp->pool[--sp->npool]) == 0;
}

/*
 * A file from the pool becomes tmp/QID by rename: the rename is the claim (a name another
 * writer took is gone: ENOENT, the next one), and tmp/ keeps meaning "being received", so
 * a crash leaves a partial message there and nowhere else. Opened for overwriting from its
 * start (no O_TRUNC: its blocks stay allocated). 0, or -1: create a new file instead.
 */
static int
spool_writer_reuse(struct spool_writer *w)
{
	struct spool *sp = w->sp;
	char name[SPOOL_QID_MAX + 1];
	struct stat sb;

	while (spool_pool_take(sp, name, sizeof(name))) {
		if (renameat2(sp->freefd, name, sp->tmpfd, w->qid, RENAME_NOREPLACE) == -1)
			continue;
		sp->pool_claimed = 1;
		w->fd = openat(sp->tmpfd, w->qid, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
		if (w->fd != -1 && fstat(w->fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
			w->reused_size = sb.st_size;
			return 0;
		}
		if (w->fd != -1)
			close(w->fd);
		w->fd = -1;
		(void)unlinkat(sp->tmpfd, w->qid, 0);
		return -1;
	}
	return -1;
}

struct spool_writer *
spool_writer_new(struct spool *sp, struct spool_envelope *env, int *tempfail, char *err,
                 size_t errlen)
{
	struct spool_writer *w;
	uint8_t *enc;
	size_t enclen;
	int tries;

	*tempfail = 0;
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		*tempfail = 1;
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	w->sp = sp;
	w->fd = -1;
	if (spool_qid_make(sp, w->qid, sizeof(w->qid)) == 0 && spool_writer_reuse(w) == -1) {
		/* A new file in tmp/, its queue id proven unused there by the exclusive create. */
		for (tries = 0; tries < 8 && w->fd == -1; tries++) {
			if (tries > 0 && spool_qid_make(sp, w->qid, sizeof(w->qid)) == -1)
				break;
			w->fd = openat(sp->tmpfd, w->qid, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			               0600);
			if (w->fd == -1 && errno != EEXIST)
				break;
		}
	}
	if (w->fd == -1) {
		*tempfail = 1;
		err_set(err, errlen, "create %s/tmp/%s: %s", sp->dir, w->qid, strerror(errno));
		free(w);
		return NULL;
	}
	str_copy(env->qid, sizeof(env->qid), w->qid);
	if (spool_envelope_encode(env, &enc, &enclen) == -1) {
		err_set(err, errlen, "envelope over the limits");
		spool_writer_abort(w);
		return NULL;
	}
	/* Usually the envelope, the headers and a small body then reach the file in one write. */
	if (enclen <= sizeof(w->wbuf)) {
		memcpy(w->wbuf, enc, enclen);
		w->wlen = enclen;
	} else if (spool_write_all(w->fd, enc, enclen, tempfail, err, errlen) == -1) {
		free(enc);
		spool_writer_abort(w);
		return NULL;
	} else {
		w->written += (off_t)enclen;
	}
	free(enc);
	return w;
}

static int
spool_writer_flush(struct spool_writer *w, int *tempfail, char *err, size_t errlen)
{
	if (w->wlen == 0)
		return 0;
	if (spool_write_all(w->fd, w->wbuf, w->wlen, tempfail, err, errlen) == -1)
		return -1;
	w->written += (off_t)w->wlen;
	w->wlen = 0;
	return 0;
}

int
spool_writer_body(struct spool_writer *w, const void *buf, size_t len, int *tempfail, char *err,
                  size_t errlen)
{
	const uint8_t *p = buf;
	size_t n;

	*tempfail = 0;
	while (len > 0) {
		if (w->wlen == sizeof(w->wbuf) &&
		    spool_writer_flush(w, tempfail, err, errlen) == -1)
			return -1;
		n = sizeof(w->wbuf) - w->wlen;
		if (n > len)
			n = len;
		memcpy(w->wbuf + w->wlen, p, n);
		w->wlen += n;
		p += n;
		len -= n;
	}
	return 0;
}

int
spool_writer_finish(struct spool_writer *w, int *tempfail, char *err, size_t errlen)
{
	*tempfail = 0;
	if (spool_writer_flush(w, tempfail, err, errlen) == -1) {
		spool_writer_abort(w);
		return -1;
	}
	/* A reused file longer than this message: its old tail must go (the body ends at EOF). */
	if (w->reused_size > w->written && ftruncate(w->fd, w->written) == -1) {
		*tempfail = spool_errno_tempfail(errno);
		err_set(err, errlen, "truncate %s/tmp/%s: %s", w->sp->dir, w->qid, strerror(errno));
		spool_writer_abort(w);
		return -1;
	}
	return w->fd;
}

/*
 * The order is what makes a 250 safe: the file's data, then the rename, then queue/ (the
 * new name) - after that a crash cannot lose it. tmp/ (and free/ after a file was taken
 * from the pool) is fsynced with queue/ so that an old name does not come back next to
 * the new one (see spool_source_fds).
 */
int
spool_writer_synced(struct spool_writer *w, int sync_error, int *tempfail, char *err, size_t errlen)
{
	struct spool *sp = w->sp;

	*tempfail = 0;
	if (sync_error != 0) {
		*tempfail = spool_errno_tempfail(sync_error);
		err_set(err, errlen, "fsync %s/tmp/%s: %s", sp->dir, w->qid, strerror(sync_error));
		goto fail;
	}
	if (close(w->fd) == -1) {
		w->fd = -1;
		*tempfail = spool_errno_tempfail(errno);
		err_set(err, errlen, "close %s/tmp/%s: %s", sp->dir, w->qid, strerror(errno));
		goto fail;
	}
	w->fd = -1;
	/* NOREPLACE: an existing queue/QID (a clock set back) is never overwritten. */
	if (renameat2(sp->tmpfd, w->qid, sp->queuefd, w->qid, RENAME_NOREPLACE) == -1) {
		*tempfail = spool_errno_tempfail(errno) || errno == EEXIST;
		err_set(err, errlen, "rename %s into queue/: %s", w->qid, strerror(errno));
		goto fail;
	}
	free(w);
	return 0;
fail:
	spool_writer_abort(w);
	return -1;
}

int
spool_writer_publish(struct spool_writer *w, int *tempfail, char *err, size_t errlen)
{
	int fd;

	if ((fd = spool_writer_finish(w, tempfail, err, errlen)) == -1)
		return -1;
	return spool_writer_synced(w, fsync(fd) == -1 ? errno : 0, tempfail, err, errlen);
}

int
spool_queue_fd(const struct spool *sp)
{
	return sp->queuefd;
}

int
spool_source_fds(struct spool *sp, int fds[2])
{
	int n = 0;

	fds[n++] = sp->tmpfd;
	if (sp->pool_claimed)
		fds[n++] = sp->freefd;
	sp->pool_claimed = 0;
	return n;
}

int
spool_queue_synced(struct spool *sp, int sync_error, int *tempfail, char *err, size_t errlen)
{
	*tempfail = 0;
	if (sync_error != 0) {
		/* The names may or may not be durable: never 250; the runner may still deliver
		 * them (a duplicate at worst, never a loss). */
		*tempfail = spool_errno_tempfail(sync_error);
		err_set(err, errlen, "fsync %s/queue: %s", sp->dir, strerror(sync_error));
		return -1;
	}
	return 0;
}

int
spool_sync_queue(struct spool *sp, int *tempfail, char *err, size_t errlen)
{
	int fds[2], i, n;

	if (spool_queue_synced(sp, fsync(sp->queuefd) == -1 ? errno : 0, tempfail, err, errlen) ==
	    -1)
		return -1;
	n = spool_source_fds(sp, fds);
	for (i = 0; i < n; i++)
		(void)fsync(fds[i]); /* best effort, see spool_source_fds */
	return 0;
}

/* Counts free/ again: the runner's idea of the pool's size, corrected now and then. */
static unsigned
spool_pool_count(struct spool *sp)
{
	DIR *d;
	struct dirent *de;
	unsigned n = 0;
	int fd;

	if ((fd = openat(sp->freefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return SPOOL_POOL_FILES_MAX;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return SPOOL_POOL_FILES_MAX;
	}
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int
spool_remove(struct spool *sp, const char *qid, uint64_t size)
{
	uint64_t now;

	if (size <= SPOOL_POOL_FILE_BYTES && sp->pool_count >= SPOOL_POOL_FILES_MAX &&
	    (now = time_mono_ms()) >= sp->pool_recount_ms) {
		sp->pool_recount_ms = now + SPOOL_POOL_RECOUNT_MS;
		sp->pool_count = spool_pool_count(sp);
	}
	if (size <= SPOOL_POOL_FILE_BYTES && sp->pool_count < SPOOL_POOL_FILES_MAX) {
		if (renameat2(sp->queuefd, qid, sp->freefd, qid, RENAME_NOREPLACE) == 0) {
			sp->pool_count++;
			return 0;
		}
		if (errno == ENOENT)
			return -1;
		/* anything else (EEXIST after a crash, say): the file goes as it always did */
	}
	return unlinkat(sp->queuefd, qid, 0);
}

int
spool_writer_commit(struct spool_writer *w, int *tempfail, char *err, size_t errlen)
{
	struct spool *sp = w->sp;

	if (spool_writer_publish(w, tempfail, err, errlen) == -1)
		return -1;
	return spool_sync_queue(sp, tempfail, err, errlen);
}

void
spool_writer_abort(struct spool_writer *w)
{
	if (w == NULL)
		return;
	if (w->fd != -1)
		close(w->fd);
	/* Not back into the pool: its space may be what a full disk needs. spool_recover
	 * removes it if this fails. */
	(void)unlinkat(w->sp->tmpfd, w->qid, 0);
	free(w);
}
