/*
 * Small string and number helpers every module needs: bounded copies that report
 * truncation (glibc 2.36 has no strlcpy), strict number parsing, monotonic time.
 */
#ifndef MAILPLEX_UTIL_H
#define MAILPLEX_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Copy src into dst (size dstlen, always terminated). Returns 0, or -1 if truncated. */
int str_copy(char *dst, size_t dstlen, const char *src);
/* Same with an explicit source length (src need not be terminated). */
int str_copy_n(char *dst, size_t dstlen, const char *src, size_t srclen);
/* snprintf that returns 0, or -1 on error or truncation. */
int str_format(char *dst, size_t dstlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Writes a message into a caller's error buffer (err may be NULL or errlen 0: nothing is
 * written). Keeps errno, so callers can report a message and still return the errno.
 * A truncated message is still the best there is, so truncation is not an error here.
 */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* ASCII lower-case in place (local parts and domains are compared case-insensitively). */
void str_lower(char *s);

/* Whole-string decimal in [min, max]; 0 on success, -1 otherwise. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* CLOCK_MONOTONIC in milliseconds. */
uint64_t time_mono_ms(void);

/* Big-endian integers in wire formats (cluster datagrams, map transfer headers). */
static inline void
be_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void
be_put64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint16_t
be_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint64_t
be_get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

#endif
