/*
 * Fuzz target for mailplex-smtpd's DATA/BDAT reader (smtp_data_feed in relay/smtp_cmd.c):
 * dot-unstuffing, end-of-data detection and the refusal of a bare CR or LF. The input is fed
 * in pieces of fuzzer-chosen sizes and compared with a whole-buffer reference written
 * from RFC 5321 4.1.1.4/4.5.2 and 3030: the same verdict (end, refused, or more wanted), the
 * same body, and at the end of data exactly the same number of bytes consumed (what follows
 * is the next command: a different split would be a smuggling bug).
 * Input: byte 0 picks the mode (bit 0) and a split seed; the rest is the stream.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/smtp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_DATA_MAX 65536

enum ref_verdict { REF_MORE, REF_END, REF_BARE };

/* The reference: whole input at once. *outlen: body bytes; *consumed: through the end. */
static enum ref_verdict
ref_data(int dot, const uint8_t *in, size_t len, uint8_t *out, size_t *outlen, size_t *consumed)
{
	size_t i = 0;
	int bol = 1;

	*outlen = 0;
	*consumed = len;
	while (i < len) {
		if (dot && bol && in[i] == '.') {
			if (i + 1 == len)
				return REF_MORE; /* a dot at the start of a line: wait */
			if (in[i + 1] == '\r') {
				if (i + 2 == len)
					return REF_MORE;
				if (in[i + 2] != '\n')
					return REF_BARE;
				*consumed = i + 3;
				return REF_END;
			}
			i++; /* the stuffed dot goes */
		}
		bol = 0;
		if (in[i] == '\r') {
			if (i + 1 == len)
				return REF_MORE; /* the CR waits for its LF */
			if (in[i + 1] != '\n')
				return REF_BARE;
			out[(*outlen)++] = '\r';
			out[(*outlen)++] = '\n';
			i += 2;
			bol = 1;
			continue;
		}
		if (in[i] == '\n')
			return REF_BARE;
		out[(*outlen)++] = in[i++];
	}
	return REF_MORE;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t want[FUZZ_DATA_MAX], got[FUZZ_DATA_MAX + 1], piece[FUZZ_DATA_MAX + 1];
	struct smtp_data d;
	enum ref_verdict v;
	size_t len, wantlen, wantused, off = 0, gotlen = 0, n, used, produced;
	uint32_t seed;
	const uint8_t *in;
	int dot;

	if (size < 1 || size - 1 > FUZZ_DATA_MAX)
		return 0;
	dot = !(data[0] & 1);
	seed = data[0] >> 1;
	in = data + 1;
	len = size - 1;
	v = ref_data(dot, in, len, want, &wantlen, &wantused);

	smtp_data_init(&d, dot ? SMTP_DATA_DOT : SMTP_DATA_BDAT);
	while (off < len) {
		seed = seed * 1103515245u + 12345u;
		n = 1 + (seed >> 16) % 67;
		if (n > len - off)
			n = len - off;
		used = smtp_data_feed(&d, in + off, n, piece, &produced);
		if (used > n || produced > n + 1 || gotlen + produced > sizeof(got))
			abort();
		memcpy(got + gotlen, piece, produced);
		gotlen += produced;
		off += used;
		if (d.state == SMTP_DS_END || d.state == SMTP_DS_BARE)
			break;
		if (used != n)
			abort(); /* short only at the end or a refusal */
	}
	switch (v) {
	case REF_END:
		if (d.state != SMTP_DS_END || off != wantused)
			abort();
		break;
	case REF_BARE:
		if (d.state != SMTP_DS_BARE)
			abort();
		return 0; /* the message is refused: its body does not matter */
	case REF_MORE:
		if (d.state == SMTP_DS_END || d.state == SMTP_DS_BARE || off != len)
			abort();
		break;
	}
	if (gotlen != wantlen || memcmp(got, want, wantlen) != 0 || d.bytes != gotlen)
		abort();
	if (d.mode == SMTP_DATA_BDAT && v == REF_MORE &&
	    smtp_data_finish(&d) != (len > 0 && in[len - 1] == '\r' ? -1 : 0))
		abort();
	return 0;
}
