/*
 * Fuzz target for lib/linebuf: random maxima and random chunkings of random bytes.
 * Checks the buffer invariants after every call and compares every result with a
 * straightforward model of the contract (lines up to max kept whole, longer ones reported
 * once as TOO_LONG and skipped through their LF).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linebuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_invariants(const struct linebuf *lb)
{
	if (lb->off > lb->len || lb->len > lb->cap || lb->cap > lb->max)
		abort();
	if ((lb->cap == 0) != (lb->data == NULL))
		abort();
}

/* The model: where the next line in the input starts, what it must produce. */
struct model {
	const uint8_t *in;
	size_t size;
	size_t pos;
	size_t max;
};

static void
model_expect_line(struct model *m, const struct linebuf_line *line)
{
	const uint8_t *lf = memchr(m->in + m->pos, '\n', m->size - m->pos);
	size_t total, len;
	enum linebuf_eol eol = LINEBUF_EOL_LF;

	if (lf == NULL)
		abort();
	total = (size_t)(lf - (m->in + m->pos)) + 1;
	if (total > m->max)
		abort();
	len = total - 1;
	if (len > 0 && m->in[m->pos + len - 1] == '\r') {
		len--;
		eol = LINEBUF_EOL_CRLF;
	}
	if (line->len != len || line->eol != eol || memcmp(line->data, m->in + m->pos, len) != 0)
		abort();
	m->pos += total;
}

static void
model_expect_too_long(struct model *m, size_t fed)
{
	const uint8_t *lf = memchr(m->in + m->pos, '\n', m->size - m->pos);
	size_t total = lf ? (size_t)(lf - (m->in + m->pos)) + 1 : m->size - m->pos;

	/* Only a line longer than max, at least max bytes of which have arrived. */
	if (total <= m->max && lf != NULL)
		abort();
	if (fed - m->pos < m->max)
		abort();
	m->pos += total;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct linebuf lb;
	struct linebuf_line line;
	struct model m;
	enum linebuf_result r;
	uint32_t rng;
	size_t fed = 0, chunk, took;

	if (size < 3)
		return 0;
	linebuf_init(&lb, 1 + data[0] % 8, 1 + data[1] % 64);
	rng = data[2] | 1u;
	m.in = data + 3;
	m.size = size - 3;
	m.pos = 0;
	m.max = lb.max;
	while (fed < m.size) {
		rng = rng * 1103515245u + 12345u;
		chunk = 1 + (rng >> 16) % 80;
		if (chunk > m.size - fed)
			chunk = m.size - fed;
		took = linebuf_append(&lb, m.in + fed, chunk);
		check_invariants(&lb);
		if (took > chunk)
			abort();
		fed += took;
		while ((r = linebuf_next_line(&lb, &line)) != LINEBUF_NEED_MORE) {
			check_invariants(&lb);
			if (r == LINEBUF_LINE)
				model_expect_line(&m, &line);
			else
				model_expect_too_long(&m, fed);
		}
		check_invariants(&lb);
		if (linebuf_len(&lb) >= lb.max)
			abort();
	}
	/* Whatever is still buffered is the unterminated tail the model still holds. */
	if (!lb.discarding && linebuf_len(&lb) != m.size - m.pos)
		abort();
	linebuf_free(&lb);
	return 0;
}
