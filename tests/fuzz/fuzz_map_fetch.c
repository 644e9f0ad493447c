/*
 * Fuzz target for the map fetch readers (lib/map_fetch.c): the director's request parser
 * and the relay's answer-header parser. Half the inputs are signed under a fixed key so
 * the field checks behind the MAC are reached; an accepted request encodes again to the
 * same bytes, an accepted header has a bounded length and a known status.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "map_fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[MAP_FETCH_REQ_BYTES + MAP_FETCH_HDR_BYTES], again[MAP_FETCH_REQ_BYTES];
	static const uint8_t nonce[CLUSTER_NONCE_BYTES];
	struct cluster_key key;
	struct map_fetch_req req;
	struct map_fetch_hdr hdr;
	unsigned int maclen = 0;
	size_t len;

	memset(&key, 0, sizeof(key));
	key.len = CLUSTER_KEY_MIN_BYTES;
	memset(key.bytes, 0x5a, key.len);
	if (size == 0)
		return 0;
	len =
	    size - 1 > sizeof(buf) - CLUSTER_MAC_BYTES ? sizeof(buf) - CLUSTER_MAC_BYTES : size - 1;
	memcpy(buf, data + 1, len);
	if (data[0] & 1) {
		if (HMAC(EVP_sha256(), key.bytes, (int)key.len, buf, len, buf + len, &maclen) ==
		    NULL)
			abort();
		len += maclen;
	}
	if (map_fetch_req_open(&key, buf, len, 1000000, CLUSTER_WINDOW_MS_DEFAULT, NULL, &req) ==
	    CLUSTER_OK) {
		if (strnlen(req.name, sizeof(req.name)) == 0 ||
		    strnlen(req.name, sizeof(req.name)) >= sizeof(req.name))
			abort();
		if (map_fetch_req_encode(&key, &req, again) != 0 ||
		    memcmp(again, buf, MAP_FETCH_REQ_BYTES) != 0)
			abort();
	}
	if (map_fetch_hdr_open(&key, buf, len, 1000000, CLUSTER_WINDOW_MS_DEFAULT, nonce, &hdr) ==
	    CLUSTER_OK) {
		if (hdr.status > MAP_FETCH_NONE || hdr.length > MAP_FETCH_DB_MAX_BYTES ||
		    (hdr.status != MAP_FETCH_OK && hdr.length != 0))
			abort();
	}
	return 0;
}
