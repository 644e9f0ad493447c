/*
 * Unit tests for lib/cluster_msg.c: a round trip of every message type, and each refusal
 * with its reason: forged MAC, another key, stale and future times, replayed nonce, a
 * full replay cache, truncated, oversize and malformed datagrams; key files and their modes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cluster_msg.h"
#include "log.h"

#define NOW_MS 1764400000000ULL
#define WINDOW CLUSTER_WINDOW_MS_DEFAULT

static const char key_hex[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

static void
test_key(struct cluster_key *k)
{
	char err[128];

	assert_int_equal(cluster_key_parse(key_hex, strlen(key_hex), k, err, sizeof(err)), 0);
	assert_int_equal(k->len, 32);
}

static void
join_fill(struct cluster_msg *m)
{
	memset(m, 0, sizeof(*m));
	m->type = CLUSTER_MSG_JOIN;
	assert_int_equal(cluster_msg_stamp(m, NOW_MS), 0);
	(void)snprintf(m->name, sizeof(m->name), "relay-1.example");
	m->af = AF_INET;
	m->addr[0] = 10;
	m->addr[3] = 21;
	m->weight = 100;
	m->ready = CLUSTER_READY_PROXY | CLUSTER_READY_NODE;
	m->spool_free = 123456789ULL;
	m->map_version = 42;
	m->map_in_force = 41;
	m->nservices = 2;
	(void)snprintf(m->services[0].name, sizeof(m->services[0].name), "smtp");
	m->services[0].port = 25;
	(void)snprintf(m->services[1].name, sizeof(m->services[1].name), "imap");
	m->services[1].port = 143;
}

static void
test_round_trip_of_every_type(void **state)
{
	static const enum cluster_msg_type types[] = {CLUSTER_MSG_JOIN, CLUSTER_MSG_HEARTBEAT,
	                                              CLUSTER_MSG_LEAVE};
	struct cluster_key k;
	struct cluster_msg m, out;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES];
	int n;

	test_key(&k);
	for (size_t i = 0; i < 3; i++) {
		join_fill(&m);
		m.type = types[i];
		n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
		assert_true(n > 0);
		assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
		                 CLUSTER_OK);
		assert_int_equal(out.type, types[i]);
		assert_string_equal(out.name, "relay-1.example");
		assert_int_equal(out.af, AF_INET);
		assert_memory_equal(out.addr, m.addr, 16);
		assert_int_equal(out.weight, 100);
		assert_int_equal(out.ready, CLUSTER_READY_PROXY | CLUSTER_READY_NODE);
		assert_int_equal(out.spool_free, 123456789ULL);
		assert_int_equal(out.map_version, 42);
		assert_int_equal(out.map_in_force, 41);
		assert_int_equal(out.version, 2);
		assert_int_equal(buf[4], 2);
		assert_int_equal(out.nservices, 2);
		assert_string_equal(out.services[1].name, "imap");
		assert_int_equal(out.services[1].port, 143);
		assert_memory_equal(out.nonce, m.nonce, CLUSTER_NONCE_BYTES);
	}
	/* A reply: no address, the code and the echoed nonce. */
	memset(&m, 0, sizeof(m));
	m.type = CLUSTER_MSG_REPLY;
	m.code = CLUSTER_REPLY_REJOIN;
	assert_int_equal(cluster_msg_stamp(&m, NOW_MS), 0);
	memset(m.echo, 0xab, sizeof(m.echo));
	(void)snprintf(m.name, sizeof(m.name), "relay1");
	m.map_version = 7;
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_OK);
	assert_int_equal(out.code, CLUSTER_REPLY_REJOIN);
	assert_memory_equal(out.echo, m.echo, CLUSTER_NONCE_BYTES);
	assert_int_equal(out.map_version, 7);
	assert_int_equal(out.af, 0);
	/* Replies stay version 1: relays that do not know map_in_force still read them. */
	assert_int_equal(buf[4], 1);
	assert_int_equal(out.version, 1);
	assert_int_equal(out.map_in_force, 0);
	/* Every reply code is accepted, and nothing beyond them. */
	m.code = CLUSTER_REPLY_DRAINING;
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_OK);
	assert_int_equal(out.code, CLUSTER_REPLY_DRAINING);
	m.code = CLUSTER_REPLY_DRAINING + 1;
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_FORMAT);
}

static void
test_forged_and_foreign_key_are_refused(void **state)
{
	struct cluster_key k, other;
	struct cluster_msg m, out;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES];
	int n;

	test_key(&k);
	other = k;
	other.bytes[0] ^= 1;
	join_fill(&m);
	n = cluster_msg_encode(&other, &m, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_MAC);
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	/* A changed weight with the old MAC: every byte is covered. */
	buf[66] ^= 0x40;
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_MAC);
	buf[66] ^= 0x40;
	buf[n - 1] ^= 1;
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_MAC);
	/* Nothing of a refused message leaks out. */
	assert_int_equal(out.name[0], '\0');
	assert_string_equal(cluster_verdict_str(CLUSTER_ERR_MAC),
	                    "bad MAC (forged, or another cluster key)");
}

static void
test_stale_and_future_are_refused(void **state)
{
	struct cluster_key k;
	struct cluster_msg m, out;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES];
	int n;

	test_key(&k);
	join_fill(&m);
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS + WINDOW, WINDOW, NULL, &out),
	                 CLUSTER_OK);
	assert_int_equal(
	    cluster_msg_open(&k, buf, (size_t)n, NOW_MS + WINDOW + 1, WINDOW, NULL, &out),
	    CLUSTER_ERR_STALE);
	assert_int_equal(
	    cluster_msg_open(&k, buf, (size_t)n, NOW_MS - WINDOW - 1, WINDOW, NULL, &out),
	    CLUSTER_ERR_STALE);
	/* The largest time there is must not wrap around the window. */
	m.time_ms = UINT64_MAX;
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_STALE);
}

static void
test_replayed_is_refused(void **state)
{
	struct cluster_key k;
	struct cluster_replay r;
	struct cluster_msg m, out;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES], buf2[CLUSTER_MSG_MAX_BYTES];
	int n, n2;

	test_key(&k);
	assert_int_equal(cluster_replay_init(&r), 0);
	join_fill(&m);
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, &r, &out),
	                 CLUSTER_OK);
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS + 1000, WINDOW, &r, &out),
	                 CLUSTER_ERR_REPLAY);
	assert_int_equal(r.used, 1);
	/* Another nonce passes. */
	assert_int_equal(cluster_msg_stamp(&m, NOW_MS), 0);
	n2 = cluster_msg_encode(&k, &m, buf2, sizeof(buf2));
	assert_int_equal(cluster_msg_open(&k, buf2, (size_t)n2, NOW_MS, WINDOW, &r, &out),
	                 CLUSTER_OK);
	/* After the window the old message is stale, not replayed, and its entry expired. */
	assert_int_equal(
	    cluster_msg_open(&k, buf, (size_t)n, NOW_MS + WINDOW + 1, WINDOW, &r, &out),
	    CLUSTER_ERR_STALE);
	cluster_replay_free(&r);
}

static void
test_full_replay_cache_refuses(void **state)
{
	struct cluster_key k;
	struct cluster_replay r;
	struct cluster_msg m, out;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES];
	int n;

	test_key(&k);
	assert_int_equal(cluster_replay_init(&r), 0);
	join_fill(&m);
	for (size_t i = 0; i < CLUSTER_REPLAY_MAX; i++) {
		assert_int_equal(cluster_msg_stamp(&m, NOW_MS), 0);
		n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
		assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, &r, &out),
		                 CLUSTER_OK);
	}
	assert_int_equal(cluster_msg_stamp(&m, NOW_MS), 0);
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, &r, &out),
	                 CLUSTER_ERR_REPLAY_FULL);
	/* Once the window has passed every entry expires and there is room again. */
	assert_int_equal(cluster_msg_stamp(&m, NOW_MS + WINDOW + 1), 0);
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_int_equal(
	    cluster_msg_open(&k, buf, (size_t)n, NOW_MS + WINDOW + 1, WINDOW, &r, &out),
	    CLUSTER_OK);
	assert_int_equal(r.used, 1);
	cluster_replay_free(&r);
}

/* Signs arbitrary bytes so the decoder behind the MAC is reached. */
static size_t
sign(const struct cluster_key *k, uint8_t *buf, size_t len)
{
	unsigned int maclen = 0;

	assert_non_null(HMAC(EVP_sha256(), k->bytes, (int)k->len, buf, len, buf + len, &maclen));
	return len + maclen;
}

static void
test_truncated_oversize_and_malformed_are_refused(void **state)
{
	struct cluster_key k;
	struct cluster_msg m, out;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES + 64];
	size_t body;
	int n;

	test_key(&k);
	join_fill(&m);
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	for (size_t cut = 0; cut < 118; cut++)
		assert_int_equal(cluster_msg_open(&k, buf, cut, NOW_MS, WINDOW, NULL, &out),
		                 CLUSTER_ERR_SIZE);
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n - 1, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_MAC);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(
	    cluster_msg_open(&k, buf, CLUSTER_MSG_MAX_BYTES + 1, NOW_MS, WINDOW, NULL, &out),
	    CLUSTER_ERR_SIZE);
	/* Authentic but cut short inside the service list. */
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	body = (size_t)n - CLUSTER_MAC_BYTES - 3;
	assert_int_equal(cluster_msg_open(&k, buf, sign(&k, buf, body), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_FORMAT);
	/* Authentic with a trailing byte. */
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	body = (size_t)n - CLUSTER_MAC_BYTES;
	buf[body] = 0;
	assert_int_equal(
	    cluster_msg_open(&k, buf, sign(&k, buf, body + 1), NOW_MS, WINDOW, NULL, &out),
	    CLUSTER_ERR_FORMAT);
	/* A name with a character that could forge a log line (version 2: the name at 92). */
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	body = (size_t)n - CLUSTER_MAC_BYTES;
	buf[92] = '\n';
	assert_int_equal(cluster_msg_open(&k, buf, sign(&k, buf, body), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_FORMAT);
	/* Another version. */
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	buf[4] = 3;
	assert_int_equal(cluster_msg_open(&k, buf, sign(&k, buf, body), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_FORMAT);
	/* The encoder refuses what the decoder would. */
	m.nservices = CLUSTER_SERVICES_MAX + 1;
	assert_int_equal(cluster_msg_encode(&k, &m, buf, sizeof(buf)), -1);
	join_fill(&m);
	(void)snprintf(m.name, sizeof(m.name), "bad name");
	assert_int_equal(cluster_msg_encode(&k, &m, buf, sizeof(buf)), -1);
	join_fill(&m);
	assert_int_equal(cluster_msg_encode(&k, &m, buf, 100), -1);
}

/* Version 1 senders (relays not upgraded yet) are read; their map_in_force is unknown. */
static void
test_version_1_heartbeat_is_read_without_map_in_force(void **state)
{
	struct cluster_key k;
	struct cluster_msg m, out;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES + 64];
	size_t body;
	int n;

	test_key(&k);
	join_fill(&m);
	m.type = CLUSTER_MSG_HEARTBEAT;
	m.version = 1;
	/* Version 1 has no field for it: the encoder refuses to drop it silently. */
	assert_int_equal(cluster_msg_encode(&k, &m, buf, sizeof(buf)), -1);
	m.map_in_force = 0;
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(buf[4], 1);
	assert_int_equal(buf[83], (uint8_t)strlen("relay-1.example")); /* the name follows */
	assert_int_equal(cluster_msg_open(&k, buf, (size_t)n, NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_OK);
	assert_int_equal(out.version, 1);
	assert_int_equal(out.map_version, 42);
	assert_int_equal(out.map_in_force, 0);
	assert_string_equal(out.name, "relay-1.example");
	/* The same bytes marked version 2 lack eight bytes: malformed, not misread. */
	buf[4] = 2;
	body = (size_t)n - CLUSTER_MAC_BYTES;
	assert_int_equal(cluster_msg_open(&k, buf, sign(&k, buf, body), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_FORMAT);
	/* Version 2 cut inside its fixed part, yet long enough for version 1: malformed. */
	join_fill(&m);
	n = cluster_msg_encode(&k, &m, buf, sizeof(buf));
	assert_true(n > 0);
	assert_int_equal(cluster_msg_open(&k, buf, sign(&k, buf, 88), NOW_MS, WINDOW, NULL, &out),
	                 CLUSTER_ERR_FORMAT);
}

static void
test_key_text_and_file_mode(void **state)
{
	char path[] = "/tmp/test_cluster_key.XXXXXX", err[256];
	struct cluster_key k;
	int fd;

	assert_int_equal(cluster_key_parse("abcd", 4, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "needs 32"));
	assert_int_equal(cluster_key_parse(key_hex, strlen(key_hex) - 2, &k, err, sizeof(err)), -1);
	assert_int_equal(
	    cluster_key_parse("zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
	                      64, &k, err, sizeof(err)),
	    -1);
	assert_string_equal(err, "key: not hex");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, key_hex, strlen(key_hex)), (ssize_t)strlen(key_hex));
	assert_int_equal(close(fd), 0);
	assert_int_equal(chmod(path, 0600), 0);
	assert_int_equal(cluster_key_load(path, &k, err, sizeof(err)), 0);
	assert_int_equal(k.len, 32);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(cluster_key_load(path, &k, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "only its owner can read"));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(cluster_key_load(path, &k, err, sizeof(err)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_round_trip_of_every_type),
	    cmocka_unit_test(test_forged_and_foreign_key_are_refused),
	    cmocka_unit_test(test_stale_and_future_are_refused),
	    cmocka_unit_test(test_replayed_is_refused),
	    cmocka_unit_test(test_full_replay_cache_refuses),
	    cmocka_unit_test(test_truncated_oversize_and_malformed_are_refused),
	    cmocka_unit_test(test_version_1_heartbeat_is_read_without_map_in_force),
	    cmocka_unit_test(test_key_text_and_file_mode),
	};

	log_init("test_cluster_msg", 1, LOG_LEVEL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
