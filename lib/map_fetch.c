/*
 * Map fetch messages: the byte layout of the request and of the answer header, their
 * HMAC-SHA256 under the cluster key, and the streaming SHA-256 check of the DB bytes.
 * The answer's MAC covers the request's nonce and the content's SHA-256, so a relay
 * installs only bytes the director hashed for this very request. Owns no socket or file.
 */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "map_fetch.h"
#include "util.h"

#define REQ_MAGIC   "MPXF"
#define HDR_MAGIC   "MPXM"
#define FETCH_VER   1
#define REQ_TYPE    1
#define REQ_NAME_AT 38
#define REQ_BODY    (MAP_FETCH_REQ_BYTES - CLUSTER_MAC_BYTES)
#define HDR_BODY    (MAP_FETCH_HDR_BYTES - CLUSTER_MAC_BYTES)

static int
mac_of(const struct cluster_key *key, const uint8_t *buf, size_t len, uint8_t *mac)
{
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), key->bytes, (int)key->len, buf, len, mac, &maclen) == NULL ||
	    maclen != CLUSTER_MAC_BYTES)
		return -1;
	return 0;
}

/* The MAC of buf[0..body) against the CLUSTER_MAC_BYTES after it, in constant time. */
static int
mac_ok(const struct cluster_key *key, const uint8_t *buf, size_t body)
{
	uint8_t mac[CLUSTER_MAC_BYTES];

	return mac_of(key, buf, body, mac) == 0 &&
	       CRYPTO_memcmp(mac, buf + body, CLUSTER_MAC_BYTES) == 0;
}

/* The relay's name as cluster_msg allows it: letters, digits, '.', '-', '_'. */
static int
name_ok(const char *s, size_t len)
{
	if (len == 0 || len >= CLUSTER_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
			return 0;
	return 1;
}

static int
window_ok(uint64_t t, uint64_t now_ms, uint64_t window_ms)
{
	return !((t < now_ms && now_ms - t > window_ms) || (t > now_ms && t - now_ms > window_ms));
}

int
map_fetch_req_encode(const struct cluster_key *key, const struct map_fetch_req *req, uint8_t *out)
{
	size_t namelen = strnlen(req->name, sizeof(req->name));

	if (!name_ok(req->name, namelen)) {
		errno = EINVAL;
		return -1;
	}
	memset(out, 0, MAP_FETCH_REQ_BYTES);
	memcpy(out, REQ_MAGIC, 4);
	out[4] = FETCH_VER;
	out[5] = REQ_TYPE;
	be_put64(out + 6, req->time_ms);
	memcpy(out + 14, req->nonce, CLUSTER_NONCE_BYTES);
	be_put64(out + 30, req->have_version);
	memcpy(out + REQ_NAME_AT, req->name, namelen);
	if (mac_of(key, out, REQ_BODY, out + REQ_BODY) == -1) {
		errno = EIO;
		return -1;
	}
	return 0;
}

enum cluster_verdict
map_fetch_req_open(const struct cluster_key *key, const uint8_t *buf, size_t len, uint64_t now_ms,
                   uint64_t window_ms, struct cluster_replay *replay, struct map_fetch_req *req)
{
	size_t namelen;

	memset(req, 0, sizeof(*req));
	if (len != MAP_FETCH_REQ_BYTES)
		return CLUSTER_ERR_SIZE;
	if (!mac_ok(key, buf, REQ_BODY))
		return CLUSTER_ERR_MAC;
	if (memcmp(buf, REQ_MAGIC, 4) != 0 || buf[4] != FETCH_VER || buf[5] != REQ_TYPE)
		return CLUSTER_ERR_FORMAT;
	namelen = strnlen((const char *)buf + REQ_NAME_AT, CLUSTER_NAME_MAX);
	if (!name_ok((const char *)buf + REQ_NAME_AT, namelen))
		return CLUSTER_ERR_FORMAT;
	/* One encoding per request: the padding after the name is zero. */
	for (size_t i = REQ_NAME_AT + namelen; i < REQ_BODY; i++)
		if (buf[i] != 0)
			return CLUSTER_ERR_FORMAT;
	req->time_ms = be_get64(buf + 6);
	memcpy(req->nonce, buf + 14, CLUSTER_NONCE_BYTES);
	req->have_version = be_get64(buf + 30);
	memcpy(req->name, buf + REQ_NAME_AT, namelen);
	if (!window_ok(req->time_ms, now_ms, window_ms))
		return CLUSTER_ERR_STALE;
	if (replay != NULL) {
		/* The datagram cache serves here too: nonces are random, never shared by kinds. */
		return cluster_replay_note(replay, req->nonce, req->time_ms + window_ms, now_ms);
	}
	return CLUSTER_OK;
}

int
map_fetch_hdr_encode(const struct cluster_key *key, const struct map_fetch_hdr *hdr, uint8_t *out)
{
	if (hdr->status > MAP_FETCH_NONE || (hdr->status != MAP_FETCH_OK && hdr->length != 0) ||
	    hdr->length > MAP_FETCH_DB_MAX_BYTES) {
		errno = EINVAL;
		return -1;
	}
	memset(out, 0, MAP_FETCH_HDR_BYTES);
	memcpy(out, HDR_MAGIC, 4);
	out[4] = FETCH_VER;
	out[5] = hdr->status;
	be_put64(out + 6, hdr->time_ms);
	memcpy(out + 14, hdr->echo, CLUSTER_NONCE_BYTES);
	be_put64(out + 30, hdr->version);
	be_put64(out + 38, hdr->length);
	memcpy(out + 46, hdr->sha256, MAP_FETCH_SHA_BYTES);
	if (mac_of(key, out, HDR_BODY, out + HDR_BODY) == -1) {
		errno = EIO;
		return -1;
	}
	return 0;
}

enum cluster_verdict
map_fetch_hdr_open(const struct cluster_key *key, const uint8_t *buf, size_t len, uint64_t now_ms,
                   uint64_t window_ms, const uint8_t nonce[CLUSTER_NONCE_BYTES],
                   struct map_fetch_hdr *hdr)
{
	memset(hdr, 0, sizeof(*hdr));
	if (len != MAP_FETCH_HDR_BYTES)
		return CLUSTER_ERR_SIZE;
	if (!mac_ok(key, buf, HDR_BODY))
		return CLUSTER_ERR_MAC;
	if (memcmp(buf, HDR_MAGIC, 4) != 0 || buf[4] != FETCH_VER || buf[5] > MAP_FETCH_NONE)
		return CLUSTER_ERR_FORMAT;
	hdr->status = buf[5];
	hdr->time_ms = be_get64(buf + 6);
	memcpy(hdr->echo, buf + 14, CLUSTER_NONCE_BYTES);
	hdr->version = be_get64(buf + 30);
	hdr->length = be_get64(buf + 38);
	memcpy(hdr->sha256, buf + 46, MAP_FETCH_SHA_BYTES);
	if ((hdr->status != MAP_FETCH_OK && hdr->length != 0) ||
	    hdr->length > MAP_FETCH_DB_MAX_BYTES)
		return CLUSTER_ERR_FORMAT;
	if (!window_ok(hdr->time_ms, now_ms, window_ms))
		return CLUSTER_ERR_STALE;
	/* An authentic answer to another request (a replayed transfer) is not ours. */
	if (CRYPTO_memcmp(hdr->echo, nonce, CLUSTER_NONCE_BYTES) != 0)
		return CLUSTER_ERR_REPLAY;
	return CLUSTER_OK;
}

const char *
map_fetch_check_str(enum map_fetch_check c)
{
	switch (c) {
	case MAP_FETCH_CHECK_OK:
		return "ok";
	case MAP_FETCH_CHECK_SHORT:
		return "fewer bytes than announced";
	case MAP_FETCH_CHECK_LONG:
		return "more bytes than announced";
	case MAP_FETCH_CHECK_CHECKSUM:
		return "SHA-256 mismatch";
	case MAP_FETCH_CHECK_ERROR:
		return "digest error";
	}
	return "?";
}

int
map_fetch_verify_init(struct map_fetch_verify *v, const struct map_fetch_hdr *hdr)
{
	memset(v, 0, sizeof(*v));
	v->want = hdr->length;
	memcpy(v->sha256, hdr->sha256, sizeof(v->sha256));
	if ((v->md = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (EVP_DigestInit_ex(v->md, EVP_sha256(), NULL) != 1) {
		map_fetch_verify_free(v);
		return -1;
	}
	return 0;
}

enum map_fetch_check
map_fetch_verify_update(struct map_fetch_verify *v, const void *data, size_t len)
{
	if (v->md == NULL)
		return MAP_FETCH_CHECK_ERROR;
	if (len > v->want - v->got)
		return MAP_FETCH_CHECK_LONG;
	if (EVP_DigestUpdate(v->md, data, len) != 1)
		return MAP_FETCH_CHECK_ERROR;
	v->got += len;
	return MAP_FETCH_CHECK_OK;
}

enum map_fetch_check
map_fetch_verify_final(struct map_fetch_verify *v)
{
	uint8_t sha[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	enum map_fetch_check c = MAP_FETCH_CHECK_OK;

	if (v->md == NULL)
		return MAP_FETCH_CHECK_ERROR;
	if (v->got != v->want)
		c = MAP_FETCH_CHECK_SHORT;
	else if (EVP_DigestFinal_ex(v->md, sha, &n) != 1 || n != MAP_FETCH_SHA_BYTES)
		c = MAP_FETCH_CHECK_ERROR;
	else if (CRYPTO_memcmp(sha, v->sha256, MAP_FETCH_SHA_BYTES) != 0)
		c = MAP_FETCH_CHECK_CHECKSUM;
	map_fetch_verify_free(v);
	return c;
}

void
map_fetch_verify_free(struct map_fetch_verify *v)
{
	if (v->md != NULL)
		EVP_MD_CTX_free(v->md);
	v->md = NULL;
}

int
map_fetch_file_sha256(int fd, uint64_t *size, uint8_t sha256[MAP_FETCH_SHA_BYTES])
{
	uint8_t buf[65536];
	EVP_MD_CTX *md;
	unsigned int n = 0;
	uint64_t off = 0;
	int rc = -1;

	if ((md = EVP_MD_CTX_new()) == NULL)
		return -1;
	if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
		goto out;
	for (;;) {
		ssize_t r = pread(fd, buf, sizeof(buf), (off_t)off);

		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			goto out;
		if (r == 0)
			break;
		if (EVP_DigestUpdate(md, buf, (size_t)r) != 1)
			goto out;
		off += (uint64_t)r;
	}
	if (EVP_DigestFinal_ex(md, sha256, &n) != 1 || n != MAP_FETCH_SHA_BYTES)
		goto out;
	*size = off;
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	return rc;
}
