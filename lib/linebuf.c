/*
 * Bounded line buffer. Owns the invariant 0 <= off <= len <= cap <= max and the
 * discard state of an overlong line; it must never hold more than max bytes, never read
 * past len, and never keep memory once every buffered byte has been consumed.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linebuf.h"

void
linebuf_init(struct linebuf *lb, size_t initial, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	if (max == 0)
		max = 1;
	if (initial == 0 || initial > max)
		initial = max;
	lb->initial = initial;
	lb->max = max;
}

/*
 * Empty buffers give their memory back: an idle session holds no buffer at all. The
 * bytes are wiped first: login lines and literals carry passwords.
 */
static void
linebuf_release(struct linebuf *lb)
{
	if (lb->data != NULL)
		explicit_bzero(lb->data, lb->cap);
	free(lb->data);
	lb->data = NULL;
	lb->off = lb->len = lb->cap = 0;
}

void
linebuf_free(struct linebuf *lb)
{
	linebuf_release(lb);
	lb->discarding = 0;
}

void
linebuf_clear(struct linebuf *lb)
{
	linebuf_free(lb);
}

size_t
linebuf_len(const struct linebuf *lb)
{
	return lb->len - lb->off;
}

size_t
linebuf_space(const struct linebuf *lb)
{
	return lb->max - linebuf_len(lb);
}

/* Makes room for n more bytes at data + len; n <= linebuf_space(). */
static int
linebuf_reserve(struct linebuf *lb, size_t n)
{
	size_t used = lb->len - lb->off, want, ncap;
	char *p;

	if (lb->off > 0 && lb->cap - lb->len < n) {
		memmove(lb->data, lb->data + lb->off, used);
		lb->off = 0;
		lb->len = used;
	}
	want = used + n;
	if (want <= lb->cap)
		return 0;
	ncap = lb->cap == 0 ? lb->initial : lb->cap;
	while (ncap < want)
		ncap = ncap > lb->max / 2 ? lb->max : ncap * 2;
	if ((p = realloc(lb->data, ncap)) == NULL)
		return -1;
	lb->data = p;
	lb->cap = ncap;
	return 0;
}

size_t
linebuf_append(struct linebuf *lb, const void *buf, size_t len)
{
	const char *in = buf, *lf;
	size_t taken = 0, n;

	while (taken < len) {
		if (lb->discarding) {
			lf = memchr(in + taken, '\n', len - taken);
			if (lf == NULL)
				return len;
			taken = (size_t)(lf - in) + 1;
			lb->discarding = 0;
			continue;
		}
		n = linebuf_space(lb);
		if (n == 0)
			break;
		if (n > len - taken)
			n = len - taken;
		if (linebuf_reserve(lb, n) == -1) {
			errno = ENOMEM;
			break;
		}
		memcpy(lb->data + lb->len, in + taken, n);
		lb->len += n;
		taken += n;
	}
	return taken;
}

ssize_t
linebuf_read(struct linebuf *lb, int fd, size_t cap)
{
	size_t n = linebuf_space(lb), rest;
	ssize_t r;
	char *start, *lf;

	if (n == 0) {
		errno = ENOBUFS;
		return -1;
	}
	if (cap == 0) {
		errno = EINVAL;
		return -1;
	}
	if (n > cap)
		n = cap;
	if (linebuf_reserve(lb, n) == -1) {
		errno = ENOMEM;
		return -1;
	}
	start = lb->data + lb->len;
	r = read(fd, start, n);
	if (r <= 0)
		return r;
	if (!lb->discarding) {
		lb->len += (size_t)r;
		return r;
	}
	/* Resynchronise: the rest of the overlong line, up to its LF, never enters. */
	if ((lf = memchr(start, '\n', (size_t)r)) != NULL) {
		rest = (size_t)r - (size_t)(lf + 1 - start);
		memmove(start, lf + 1, rest);
		lb->len += rest;
		lb->discarding = 0;
	}
	return r;
}

enum linebuf_result
linebuf_next_line(struct linebuf *lb, struct linebuf_line *line)
{
	char *start, *lf;
	size_t n;

	if (lb->off == lb->len) {
		linebuf_release(lb);
		return LINEBUF_NEED_MORE;
	}
	start = lb->data + lb->off;
	n = lb->len - lb->off;
	if ((lf = memchr(start, '\n', n)) == NULL) {
		if (n < lb->max)
			return LINEBUF_NEED_MORE;
		/* Full without a line end: report once, then drop up to the LF (Redis inline). */
		linebuf_release(lb);
		lb->discarding = 1;
		return LINEBUF_TOO_LONG;
	}
	line->data = start;
	line->len = (size_t)(lf - start);
	line->eol = LINEBUF_EOL_LF;
	if (line->len > 0 && start[line->len - 1] == '\r') {
		line->len--;
		line->eol = LINEBUF_EOL_CRLF;
	}
	lb->off += (size_t)(lf - start) + 1;
	return LINEBUF_LINE;
}

size_t
linebuf_take(struct linebuf *lb, void *dst, size_t n)
{
	size_t have = lb->len - lb->off;

	if (n > have)
		n = have;
	if (n > 0) {
		memcpy(dst, lb->data + lb->off, n);
		lb->off += n;
	}
	return n;
}
