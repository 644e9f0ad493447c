/*
 * Fuzz target for relay/smtp_cmd: the first byte picks the mode. Command mode parses every
 * line and checks that accepted results respect their bounds and byte rules and that an
 * error always carries a reply. Data mode feeds the rest in chunks (DATA or BDAT) and
 * checks that the body produced never holds a bare CR or LF and never outgrows the input.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/smtp_cmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_text(const char *s, size_t max)
{
	size_t i, n = strnlen(s, max + 1);

	if (n > max)
		abort();
	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			abort();
}

static void
fuzz_commands(const uint8_t *data, size_t size)
{
	struct smtp_cmd c;
	const uint8_t *p = data, *end = data + size, *nl;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if (smtp_cmd_parse((const char *)p, (size_t)(nl - p), &c) == SMTP_CMD_ERR) {
			if (c.reply == NULL || c.reply[0] < '4' || c.reply[0] > '5')
				abort();
		} else {
			if (c.verb == SMTP_NONE)
				abort();
			check_text(c.arg, SMTP_ARG_MAX);
			check_text(c.addr, MAP_ADDR_MAX);
			if (c.verb == SMTP_RCPT && c.addr[0] == '\0')
				abort();
		}
		p = nl + 1;
	}
}

static void
fuzz_data(const uint8_t *data, size_t size)
{
	static uint8_t out[1 << 16];
	struct smtp_data d;
	size_t off = 1, n, used, produced, total = 0, i;
	int prev_cr = 0;

	if (size < 1)
		return;
	smtp_data_init(&d, (data[0] & 1) ? SMTP_DATA_BDAT : SMTP_DATA_DOT);
	while (off < size) {
		n = 1 + (size_t)(data[off] % 97);
		if (n > size - off)
			n = size - off;
		if (n > sizeof(out) - 1)
			n = sizeof(out) - 1;
		used = smtp_data_feed(&d, data + off, n, out, &produced);
		if (used > n || produced > n + 1)
			abort();
		for (i = 0; i < produced; i++) {
			if (out[i] == '\n' && !prev_cr)
				abort();
			if (prev_cr && out[i] != '\n')
				abort();
			prev_cr = out[i] == '\r';
		}
		total += produced;
		off += used;
		if (d.state == SMTP_DS_END || d.state == SMTP_DS_BARE)
			break;
		if (used == 0)
			abort(); /* no progress */
	}
	if (d.bytes != total)
		abort();
	/* A CR LF pair is only ever produced whole. */
	if (prev_cr)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 0x80)
		fuzz_data(data + 1, size - 1);
	else
		fuzz_commands(data + 1, size - 1);
	return 0;
}
