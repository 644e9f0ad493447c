/*
 * Fuzz target for the keepalived notify-FIFO reader (director/vrrp.c): bytes cut at
 * arbitrary points are fed as reads would deliver them. Checks that the line buffer never
 * overflows, the instance table stays bounded and every tracked name is short, printable
 * and from a line the parser accepted (a known state, priority 0..255 or none).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "director.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vrrp_fifo f;
	size_t off = 0;

	log_set_level(LOG_LEVEL_ERR);
	memset(&f, 0, sizeof(f));
	f.fd = -1;
	/* The first byte picks the chunk size, as reads of a pipe may split anywhere. */
	size_t chunk = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;

		vrrp_fifo_feed(&f, (const char *)data + off, n, 1 + off);
		off += n;
		if (f.len > sizeof(f.buf) || f.ninstances > VRRP_INSTANCES_MAX)
			abort();
	}
	for (size_t i = 0; i < f.ninstances; i++) {
		const struct vrrp_instance *in = &f.instances[i];
		size_t l = strnlen(in->name, sizeof(in->name));

		if (l == 0 || l >= sizeof(in->name))
			abort();
		for (size_t c = 0; c < l; c++)
			if (in->name[c] <= ' ' || in->name[c] > '~' || in->name[c] == '"')
				abort();
		if (in->state < VRRP_BACKUP || in->state > VRRP_STOP || in->priority < -1 ||
		    in->priority > 255)
			abort();
	}
	return 0;
}
