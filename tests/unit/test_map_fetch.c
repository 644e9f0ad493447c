/*
 * Unit tests for lib/map_fetch.c: request and answer round trips; each refusal (forged,
 * another key, stale, replayed, an answer to another request, malformed fields, odd
 * sizes); and the content check: exact bytes pass, a flipped byte, a short and a long
 * transfer are caught.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "log.h"
#include "map_fetch.h"

#define NOW_MS 1764400000000ULL
#define WINDOW CLUSTER_WINDOW_MS_DEFAULT

static void
key_of(struct cluster_key *k, uint8_t fill)
{
	memset(k, 0, sizeof(*k));
	k->len = 32;
	memset(k->bytes, fill, k->len);
}

static void
req_fill(struct map_fetch_req *r)
{
	memset(r, 0, sizeof(*r));
	r->time_ms = NOW_MS;
	memset(r->nonce, 0x42, sizeof(r->nonce));
	r->have_version = 1795937805;
	(void)snprintf(r->name, sizeof(r->name), "relay-1.example");
}

static void
hdr_fill(struct map_fetch_hdr *h, const uint8_t *content, size_t len)
{
	memset(h, 0, sizeof(*h));
	h->status = MAP_FETCH_OK;
	h->time_ms = NOW_MS;
	memset(h->echo, 0x42, sizeof(h->echo));
	h->version = 1795937806;
	h->length = len;
	SHA256(content, len, h->sha256);
}

/* Re-signs a modified buffer so that the check behind the MAC is reached. */
static void
resign(const struct cluster_key *k, uint8_t *buf, size_t len)
{
	unsigned int n = 0;

	assert_non_null(
	    HMAC(EVP_sha256(), k->bytes, (int)k->len, buf, len - 32, buf + len - 32, &n));
}

static void
test_request_round_trip(void **state)
{
	struct cluster_key k;
	struct map_fetch_req in, out;
	uint8_t buf[MAP_FETCH_REQ_BYTES];

	key_of(&k, 0x11);
	req_fill(&in);
	assert_int_equal(map_fetch_req_encode(&k, &in, buf), 0);
	assert_int_equal(map_fetch_req_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_OK);
	assert_string_equal(out.name, "relay-1.example");
	assert_int_equal(out.have_version, in.have_version);
	assert_int_equal(out.time_ms, NOW_MS);
	assert_memory_equal(out.nonce, in.nonce, sizeof(in.nonce));
}

static void
test_request_forged_foreign_stale_replayed_are_refused(void **state)
{
	struct cluster_key k, other;
	struct map_fetch_req in, out;
	struct cluster_replay rp;
	uint8_t buf[MAP_FETCH_REQ_BYTES];

	key_of(&k, 0x11);
	key_of(&other, 0x22);
	req_fill(&in);
	assert_int_equal(map_fetch_req_encode(&k, &in, buf), 0);
	assert_int_equal(map_fetch_req_open(&other, buf, sizeof(buf), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_MAC);
	buf[40] ^= 1;
	assert_int_equal(map_fetch_req_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_MAC);
	buf[40] ^= 1;
	assert_int_equal(
	    map_fetch_req_open(&k, buf, sizeof(buf), NOW_MS + WINDOW + 1, WINDOW, NULL, &out),
	    CLUSTER_ERR_STALE);
	assert_int_equal(
	    map_fetch_req_open(&k, buf, sizeof(buf), NOW_MS - WINDOW - 1, WINDOW, NULL, &out),
	    CLUSTER_ERR_STALE);
	assert_int_equal(cluster_replay_init(&rp), 0);
	assert_int_equal(map_fetch_req_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, &rp, &out),
	                 CLUSTER_OK);
	assert_int_equal(map_fetch_req_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, &rp, &out),
	                 CLUSTER_ERR_REPLAY);
	cluster_replay_free(&rp);
}

static void
test_request_malformed_and_sizes_are_refused(void **state)
{
	struct cluster_key k;
	struct map_fetch_req in, out;
	uint8_t buf[MAP_FETCH_REQ_BYTES + 1];

	key_of(&k, 0x11);
	req_fill(&in);
	assert_int_equal(map_fetch_req_encode(&k, &in, buf), 0);
	assert_int_equal(
	    map_fetch_req_open(&k, buf, MAP_FETCH_REQ_BYTES - 1, NOW_MS, WINDOW, NULL, &out),
	    CLUSTER_ERR_SIZE);
	assert_int_equal(
	    map_fetch_req_open(&k, buf, MAP_FETCH_REQ_BYTES + 1, NOW_MS, WINDOW, NULL, &out),
	    CLUSTER_ERR_SIZE);
	/* Bytes after the name's NUL: one encoding per request. */
	buf[38 + 20] = 'x';
	resign(&k, buf, MAP_FETCH_REQ_BYTES);
	assert_int_equal(
	    map_fetch_req_open(&k, buf, MAP_FETCH_REQ_BYTES, NOW_MS, WINDOW, NULL, &out),
	    CLUSTER_ERR_FORMAT);
	/* A name with a blank or a control byte never reaches a log line. */
	assert_int_equal(map_fetch_req_encode(&k, &in, buf), 0);
	buf[38 + 2] = ' ';
	resign(&k, buf, MAP_FETCH_REQ_BYTES);
	assert_int_equal(
	    map_fetch_req_open(&k, buf, MAP_FETCH_REQ_BYTES, NOW_MS, WINDOW, NULL, &out),
	    CLUSTER_ERR_FORMAT);
	/* Another magic or version. */
	assert_int_equal(map_fetch_req_encode(&k, &in, buf), 0);
	buf[4] = 2;
	resign(&k, buf, MAP_FETCH_REQ_BYTES);
	assert_int_equal(
	    map_fetch_req_open(&k, buf, MAP_FETCH_REQ_BYTES, NOW_MS, WINDOW, NULL, &out),
	    CLUSTER_ERR_FORMAT);
	in.name[0] = '\0';
	assert_int_equal(map_fetch_req_encode(&k, &in, buf), -1);
}

static void
test_answer_round_trip_and_refusals(void **state)
{
	static const uint8_t content[] = "GDBM bytes stand-in";
	uint8_t nonce[CLUSTER_NONCE_BYTES], wrong[CLUSTER_NONCE_BYTES];
	struct cluster_key k, other;
	struct map_fetch_hdr in, out;
	uint8_t buf[MAP_FETCH_HDR_BYTES];

	key_of(&k, 0x11);
	key_of(&other, 0x22);
	memset(nonce, 0x42, sizeof(nonce));
	memset(wrong, 0x43, sizeof(wrong));
	hdr_fill(&in, content, sizeof(content));
	assert_int_equal(map_fetch_hdr_encode(&k, &in, buf), 0);
	assert_int_equal(map_fetch_hdr_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, nonce, &out),
	                 CLUSTER_OK);
	assert_int_equal(out.version, in.version);
	assert_int_equal(out.length, sizeof(content));
	assert_memory_equal(out.sha256, in.sha256, sizeof(in.sha256));
	/* A transfer recorded for another request is refused even though it is authentic. */
	assert_int_equal(map_fetch_hdr_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, wrong, &out),
	                 CLUSTER_ERR_REPLAY);
	assert_int_equal(map_fetch_hdr_open(&other, buf, sizeof(buf), NOW_MS, WINDOW, nonce, &out),
	                 CLUSTER_ERR_MAC);
	assert_int_equal(
	    map_fetch_hdr_open(&k, buf, sizeof(buf), NOW_MS + 2 * WINDOW, WINDOW, nonce, &out),
	    CLUSTER_ERR_STALE);
	assert_int_equal(map_fetch_hdr_open(&k, buf, sizeof(buf) - 1, NOW_MS, WINDOW, nonce, &out),
	                 CLUSTER_ERR_SIZE);
	/* The length is part of what the MAC covers: a changed one is forged. */
	buf[45] ^= 1;
	assert_int_equal(map_fetch_hdr_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, nonce, &out),
	                 CLUSTER_ERR_MAC);
	/* Authentic but impossible: a "none" answer with a length, an unknown status, too large. */
	in.status = MAP_FETCH_NONE;
	assert_int_equal(map_fetch_hdr_encode(&k, &in, buf), -1);
	in.status = MAP_FETCH_OK;
	assert_int_equal(map_fetch_hdr_encode(&k, &in, buf), 0);
	buf[5] = MAP_FETCH_NONE;
	resign(&k, buf, sizeof(buf));
	assert_int_equal(map_fetch_hdr_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, nonce, &out),
	                 CLUSTER_ERR_FORMAT);
	buf[5] = 9;
	resign(&k, buf, sizeof(buf));
	assert_int_equal(map_fetch_hdr_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, nonce, &out),
	                 CLUSTER_ERR_FORMAT);
	in.length = MAP_FETCH_DB_MAX_BYTES + 1;
	assert_int_equal(map_fetch_hdr_encode(&k, &in, buf), -1);
	buf[5] = MAP_FETCH_OK;
	memset(buf + 38, 0xff, 8);
	resign(&k, buf, sizeof(buf));
	assert_int_equal(map_fetch_hdr_open(&k, buf, sizeof(buf), NOW_MS, WINDOW, nonce, &out),
	                 CLUSTER_ERR_FORMAT);
}

static enum map_fetch_check
verify_bytes(const struct map_fetch_hdr *h, const uint8_t *p, size_t len, size_t step)
{
	struct map_fetch_verify v;
	enum map_fetch_check c;

	assert_int_equal(map_fetch_verify_init(&v, h), 0);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;

		if ((c = map_fetch_verify_update(&v, p + off, n)) != MAP_FETCH_CHECK_OK) {
			map_fetch_verify_free(&v);
			return c;
		}
	}
	return map_fetch_verify_final(&v);
}

static void
test_content_check_catches_corruption(void **state)
{
	uint8_t content[100000];
	struct map_fetch_hdr h;

	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (uint8_t)(i * 7);
	hdr_fill(&h, content, sizeof(content));
	assert_int_equal(verify_bytes(&h, content, sizeof(content), 4096), MAP_FETCH_CHECK_OK);
	assert_int_equal(verify_bytes(&h, content, sizeof(content), 1), MAP_FETCH_CHECK_OK);
	content[77777] ^= 0x10;
	assert_int_equal(verify_bytes(&h, content, sizeof(content), 4096),
	                 MAP_FETCH_CHECK_CHECKSUM);
	content[77777] ^= 0x10;
	assert_int_equal(verify_bytes(&h, content, sizeof(content) - 1, 4096),
	                 MAP_FETCH_CHECK_SHORT);
	h.length = sizeof(content) - 1;
	assert_int_equal(verify_bytes(&h, content, sizeof(content), 4096), MAP_FETCH_CHECK_LONG);
	h.length = 0;
	SHA256(content, 0, h.sha256);
	assert_int_equal(verify_bytes(&h, content, 0, 1), MAP_FETCH_CHECK_OK);
}

static void
test_file_digest_matches_the_content(void **state)
{
	char path[] = "/tmp/test_map_fetch.XXXXXX";
	uint8_t content[70000], want[32], got[32];
	uint64_t size = 0;
	int fd;

	for (size_t i = 0; i < sizeof(content); i++)
		content[i] = (uint8_t)(i * 13);
	SHA256(content, sizeof(content), want);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, content, sizeof(content)), (ssize_t)sizeof(content));
	assert_int_equal(map_fetch_file_sha256(fd, &size, got), 0);
	assert_int_equal(size, sizeof(content));
	assert_memory_equal(got, want, 32);
	assert_int_equal(close(fd), 0);
	assert_int_equal(unlink(path), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_round_trip),
	    cmocka_unit_test(test_request_forged_foreign_stale_replayed_are_refused),
	    cmocka_unit_test(test_request_malformed_and_sizes_are_refused),
	    cmocka_unit_test(test_answer_round_trip_and_refusals),
	    cmocka_unit_test(test_content_check_catches_corruption),
	    cmocka_unit_test(test_file_digest_matches_the_content),
	};

	log_init("test_map_fetch", 1, LOG_LEVEL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
