/*
 * Fuzz target for the cluster datagram reader (lib/cluster_msg.c). Half the inputs get a
 * valid MAC appended under a fixed key so the field decoder behind the MAC is reached;
 * checks that every accepted message has terminated, valid names, bounded counts, and
 * encodes again to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cluster_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[CLUSTER_MSG_MAX_BYTES + 64], again[CLUSTER_MSG_MAX_BYTES];
	struct cluster_key key;
	struct cluster_msg m;
	enum cluster_verdict v;
	unsigned int maclen = 0;
	size_t len;
	int n;

	memset(&key, 0, sizeof(key));
	key.len = CLUSTER_KEY_MIN_BYTES;
	memset(key.bytes, 0x5a, key.len);
	if (size == 0)
		return 0;
	len = size - 1 > CLUSTER_MSG_MAX_BYTES ? CLUSTER_MSG_MAX_BYTES : size - 1;
	memcpy(buf, data + 1, len);
	/* The first byte picks: as is, or signed under the key. */
	if (data[0] & 1) {
		if (HMAC(EVP_sha256(), key.bytes, (int)key.len, buf, len, buf + len, &maclen) ==
		    NULL)
			abort();
		len += maclen;
	}
	v = cluster_msg_open(&key, buf, len, 1000000, CLUSTER_WINDOW_MS_DEFAULT, NULL, &m);
	if (v != CLUSTER_OK)
		return 0;
	if (strnlen(m.name, sizeof(m.name)) == 0 ||
	    strnlen(m.name, sizeof(m.name)) >= sizeof(m.name) || m.nservices > CLUSTER_SERVICES_MAX)
		abort();
	for (size_t i = 0; i < m.nservices; i++)
		if (strnlen(m.services[i].name, sizeof(m.services[i].name)) >=
		    sizeof(m.services[i].name))
			abort();
	n = cluster_msg_encode(&key, &m, again, sizeof(again));
	if (n < 0 || (size_t)n != len || memcmp(again, buf, len) != 0)
		abort();
	return 0;
}
