/*
 * The per-message delivery log of the queue runner (format below) and the back-off
 * schedule. Records are only ever appended; a record counts only when it is whole and its
 * checksum matches, so a write cut short by a crash is never mistaken for a result.
 *
 * A record is one line: "KIND FIELDS... #XXXXXXXX\n", the checksum being FNV-1a 32 over
 * everything before " #". Kinds:
 *   R IDX STATE TEXT     recipient IDX is now STATE (D delivered, F failed, B bounced)
 *   A ATTEMPTS NEXT      attempts made so far, the next try (unix milliseconds)
 *   H 0|1                held by the operator or released
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue_state.h"
#include "util.h"

static uint32_t
state_checksum(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

int
queue_state_init(struct queue_state *st, size_t nrcpt)
{
	memset(st, 0, sizeof(*st));
	st->nrcpt = nrcpt;
	if (nrcpt > 0 && (st->rcpt = calloc(nrcpt, sizeof(*st->rcpt))) == NULL)
		return -1;
	return 0;
}

void
queue_state_free(struct queue_state *st)
{
	free(st->rcpt);
	st->rcpt = NULL;
	st->nrcpt = 0;
}

/* Appends " #XXXXXXXX\n" to a record of len bytes in rec. */
static int
state_seal(char *rec, size_t reclen, int len)
{
	int n;

	if (len < 0 || (size_t)len >= reclen)
		return -1;
	n = snprintf(rec + len, reclen - (size_t)len, " #%08" PRIx32 "\n",
	             state_checksum(rec, (size_t)len));
	if (n < 0 || (size_t)n >= reclen - (size_t)len)
		return -1;
	return len + n;
}

int
queue_state_fmt_rcpt(char *rec, size_t reclen, size_t idx, enum queue_rcpt_state state,
                     const char *reply)
{
	static const char kind[] = {'P', 'D', 'F', 'B'};
	char text[QUEUE_REPLY_TEXT_MAX];
	size_t i;
	int n;

	/* The text goes on one line whatever it holds: no LF, no '#'-lookalike trouble. */
	str_copy(text, sizeof(text), reply != NULL ? reply : "");
	for (i = 0; text[i] != '\0'; i++)
		if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] >= 0x7f)
			text[i] = '?';
	n = snprintf(rec, reclen, "R %zu %c %s", idx, kind[state], text);
	if (n < 0 || (size_t)n >= reclen)
		return -1;
	return state_seal(rec, reclen, n);
}

int
queue_state_fmt_attempt(char *rec, size_t reclen, uint64_t attempts, uint64_t next_try)
{
	int n = snprintf(rec, reclen, "A %" PRIu64 " %" PRIu64, attempts, next_try);

	if (n < 0 || (size_t)n >= reclen)
		return -1;
	return state_seal(rec, reclen, n);
}

int
queue_state_fmt_hold(char *rec, size_t reclen, int held)
{
	int n = snprintf(rec, reclen, "H %d", held ? 1 : 0);

	if (n < 0 || (size_t)n >= reclen)
		return -1;
	return state_seal(rec, reclen, n);
}

/* Reads a decimal number from s[*i..len) up to a blank; 0 or -1. */
static int
state_number(const char *s, size_t len, size_t *i, uint64_t *out)
{
	uint64_t v = 0;
	size_t start = *i;

	while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[*i] - '0');
		(*i)++;
	}
	if (*i == start || *i - start > 20)
		return -1;
	*out = v;
	return 0;
}

/* Applies one record (without " #XXXXXXXX"); -1 if it makes no sense. */
static int
state_apply(struct queue_state *st, const char *s, size_t len)
{
	uint64_t a, b;
	size_t i = 2;
	enum queue_rcpt_state rs;

	if (len < 3 || s[1] != ' ')
		return -1;
	switch (s[0]) {
	case 'R':
		if (state_number(s, len, &i, &a) < 0 || a >= st->nrcpt || i + 2 > len ||
		    s[i] != ' ')
			return -1;
		switch (s[i + 1]) {
		case 'P':
			rs = QUEUE_RCPT_PENDING;
			break;
		case 'D':
			rs = QUEUE_RCPT_DELIVERED;
			break;
		case 'F':
			rs = QUEUE_RCPT_FAILED;
			break;
		case 'B':
			rs = QUEUE_RCPT_BOUNCED;
			break;
		default:
			return -1;
		}
		i += 2;
		/* Delivered is final: nothing read later can make it pending again. */
		if (st->rcpt[a].state != QUEUE_RCPT_DELIVERED)
			st->rcpt[a].state = rs;
		if (i < len && s[i] == ' ')
			i++;
		str_copy_n(st->rcpt[a].reply, sizeof(st->rcpt[a].reply), s + i, len - i);
		return 0;
	case 'A':
		if (state_number(s, len, &i, &a) < 0 || i >= len || s[i++] != ' ' ||
		    state_number(s, len, &i, &b) < 0 || i != len)
			return -1;
		st->attempts = a;
		st->next_try = b;
		return 0;
	case 'H':
		if (len != 3 || (s[2] != '0' && s[2] != '1'))
			return -1;
		st->held = s[2] == '1';
		return 0;
	default:
		return -1;
	}
}

void
queue_state_replay(struct queue_state *st, const char *buf, size_t len)
{
	size_t off = 0, end, body;
	const char *nl;
	char sum[9];

	st->valid_len = 0;
	st->torn = 0;
	while (off < len) {
		nl = memchr(buf + off, '\n', len - off);
		if (nl == NULL || (size_t)(nl - (buf + off)) >= QUEUE_STATE_RECORD_MAX)
			break;
		end = (size_t)(nl - buf);
		/* " #" and eight hex digits end every record. */
		if (end - off < 11 || buf[end - 10] != ' ' || buf[end - 9] != '#')
			break;
		body = end - 10;
		if (snprintf(sum, sizeof(sum), "%08" PRIx32,
		             state_checksum(buf + off, body - off)) != 8 ||
		    memcmp(sum, buf + end - 8, 8) != 0)
			break;
		if (state_apply(st, buf + off, body - off) < 0)
			break;
		off = end + 1;
		st->valid_len = off;
	}
	if (st->valid_len < len)
		st->torn = 1;
}

/* Blocking on purpose, like every fsync here: durability of the log's directory entry. */
static int
state_fsync_dir(const char *dir, char *err, size_t errlen)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (dfd < 0 || fsync(dfd) < 0) {
		err_set(err, errlen, "%s: fsync: %s", dir, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		return -1;
	}
	close(dfd);
	return 0;
}

int
queue_state_open(const char *dir, const char *qid, struct queue_state *st, char *err, size_t errlen)
{
	char path[4096];
	struct stat sb;
	char *buf = NULL;
	size_t got = 0;
	ssize_t n;
	int fd;

	if (str_format(path, sizeof(path), "%s/%s", dir, qid) < 0) {
		err_set(err, errlen, "%s/%s: path too long", dir, qid);
		return -1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		/* A new log's name must survive a crash with its first record. */
		if (state_fsync_dir(dir, err, errlen) < 0) {
			close(fd);
			return -1;
		}
	} else if (errno == EEXIST) {
		fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	}
	if (fd < 0) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0) {
		err_set(err, errlen, "%s: fstat: %s", path, strerror(errno));
		goto fail;
	}
	if (sb.st_size > QUEUE_STATE_FILE_MAX) {
		err_set(err, errlen, "%s: %lld bytes, larger than any valid state log", path,
		        (long long)sb.st_size);
		goto fail;
	}
	if (sb.st_size > 0) {
		if ((buf = malloc((size_t)sb.st_size)) == NULL) {
			err_set(err, errlen, "%s: out of memory", path);
			goto fail;
		}
		while (got < (size_t)sb.st_size) {
			n = pread(fd, buf + got, (size_t)sb.st_size - got, (off_t)got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				err_set(err, errlen, "%s: read: %s", path, strerror(errno));
				goto fail;
			}
			if (n == 0)
				break;
			got += (size_t)n;
		}
		queue_state_replay(st, buf, got);
		free(buf);
		buf = NULL;
		/* Appending after a torn tail would glue the next record to it: cut it off. */
		if (st->torn && ftruncate(fd, (off_t)st->valid_len) < 0) {
			err_set(err, errlen, "%s: ftruncate: %s", path, strerror(errno));
			goto fail;
		}
	}
	return fd;
fail:
	free(buf);
	close(fd);
	return -1;
}

int
queue_state_append(int fd, const char *recs, size_t len, char *err, size_t errlen)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = write(fd, recs + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_set(err, errlen, "state write: %s", strerror(errno));
			return -1;
		}
		done += (size_t)n;
	}
	/*
	 * Blocking on purpose: the result must be on disk before the runner goes on, or a
	 * crash would deliver the recipient again (DESIGN: exactly once per recipient).
	 */
	if (fdatasync(fd) < 0) {
		err_set(err, errlen, "state fsync: %s", strerror(errno));
		return -1;
	}
	return 0;
}

uint64_t
queue_backoff_ms(uint64_t n, uint64_t min_ms, uint64_t max_ms)
{
	uint64_t d = min_ms;

	while (n > 1 && d < max_ms) {
		if (d > UINT64_MAX / 2)
			return max_ms;
		d *= 2;
		n--;
	}
	return d < max_ms ? d : max_ms;
}
