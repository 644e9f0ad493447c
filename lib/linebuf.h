/*
 * Bounded line buffer for SMTP/IMAP/POP3 command lines. Owns the bytes received but not
 * yet parsed. It never grows beyond its hard maximum and holds no memory while empty;
 * it never reads a socket on its own (linebuf_read is called by the session's I/O code).
 */
#ifndef MAILPLEX_LINEBUF_H
#define MAILPLEX_LINEBUF_H

#include <stddef.h>
#include <sys/types.h>

struct linebuf {
	char *data;
	size_t off;     /* first unconsumed byte */
	size_t len;     /* end of buffered bytes (off <= len <= cap) */
	size_t cap;     /* allocated size, 0 while empty */
	size_t initial; /* first allocation */
	size_t max;     /* hard maximum: longest line including its terminator */
	int discarding; /* dropping the rest of an overlong line up to its LF */
};

enum linebuf_result {
	LINEBUF_LINE,      /* *line holds one line */
	LINEBUF_NEED_MORE, /* no complete line buffered */
	LINEBUF_TOO_LONG,  /* a line exceeded max; it is being discarded up to its LF */
};

enum linebuf_eol {
	LINEBUF_EOL_CRLF,
	LINEBUF_EOL_LF, /* bare LF: SMTP must know (RFC 5321 2.3.8, smuggling) */
};

struct linebuf_line {
	const char *data; /* not terminated; valid until the next call on the buffer */
	size_t len;       /* without CR LF */
	enum linebuf_eol eol;
};

/* initial: first allocation; max: hard maximum (both > 0, initial <= max). */
void linebuf_init(struct linebuf *lb, size_t initial, size_t max);
/* Releases the memory; the buffer is empty and usable again afterwards. */
void linebuf_free(struct linebuf *lb);
/* Drops every buffered byte (after STARTTLS: never parse pre-TLS plaintext as TLS). */
void linebuf_clear(struct linebuf *lb);

/* Bytes buffered and not yet consumed (pipelining: client sent ahead). */
size_t linebuf_len(const struct linebuf *lb);
/* Bytes that can be appended now without consuming anything. */
size_t linebuf_space(const struct linebuf *lb);

/*
 * Appends up to len bytes; returns how many were taken (bytes of an overlong line being
 * discarded count as taken). Fewer than len when the buffer is full: consume lines with
 * linebuf_next_line, then append the rest. Returns 0 with errno ENOMEM if out of memory.
 */
size_t linebuf_append(struct linebuf *lb, const void *buf, size_t len);
/*
 * read(2) at most cap bytes (and at most linebuf_space) from fd. Returns read's result:
 * > 0 bytes, 0 at end of file, -1 with errno (EAGAIN/EINTR are the caller loop's business;
 * ENOBUFS when the buffer is full).
 */
ssize_t linebuf_read(struct linebuf *lb, int fd, size_t cap);

/* Takes the next line. TOO_LONG is returned once per overlong line. */
enum linebuf_result linebuf_next_line(struct linebuf *lb, struct linebuf_line *line);
/* Copies and consumes up to n raw bytes (IMAP literals); returns the count copied. */
size_t linebuf_take(struct linebuf *lb, void *dst, size_t n);

#endif
