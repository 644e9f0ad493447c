/*
 * The map fetch between mailplex-relay and a director: one TCP connection, a fixed-size
 * request (relay name, the version it runs, time, nonce, HMAC-SHA256 under the cluster key)
 * and an answer header (status, version, length, SHA-256 of the DB, the request's nonce,
 * HMAC) followed by the DB's bytes. Encoding, checking and the content verifier are pure:
 * bytes in, a struct or a verdict out; no socket, no file here.
 */
#ifndef MAILPLEX_MAP_FETCH_H
#define MAILPLEX_MAP_FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "cluster_msg.h"

#define MAP_FETCH_SHA_BYTES 32
/* "MPXF" ver type time(8) nonce(16) have_version(8) name(64, NUL padded) MAC(32) */
#define MAP_FETCH_REQ_BYTES 134
/* "MPXM" ver status time(8) echo(16) version(8) length(8) sha256(32) MAC(32) */
#define MAP_FETCH_HDR_BYTES 110
/* A DB larger than this is refused before a byte of it is written (1,000,000 users: ~100 MB). */
#define MAP_FETCH_DB_MAX_BYTES (8ULL * 1024 * 1024 * 1024)

enum map_fetch_status {
	MAP_FETCH_OK = 0,   /* length bytes of the DB follow */
	MAP_FETCH_NONE = 1, /* the director has published no map */
};

struct map_fetch_req {
	uint64_t time_ms;
	uint8_t nonce[CLUSTER_NONCE_BYTES];
	uint64_t have_version; /* the map the relay runs (0: none); for the log */
	char name[CLUSTER_NAME_MAX];
};

struct map_fetch_hdr {
	uint8_t status; /* enum map_fetch_status */
	uint64_t time_ms;
	uint8_t echo[CLUSTER_NONCE_BYTES]; /* the nonce of the request answered */
	uint64_t version;
	uint64_t length;
	uint8_t sha256[MAP_FETCH_SHA_BYTES];
};

/* Writes MAP_FETCH_REQ_BYTES into out. 0, or -1 (a name that is empty, long or has odd bytes). */
int map_fetch_req_encode(const struct cluster_key *key, const struct map_fetch_req *req,
                         uint8_t *out);
/*
 * Checks a request: size, MAC (constant time) before any field is believed, fields, time
 * window, then the replay cache (NULL: not checked).
 */
enum cluster_verdict map_fetch_req_open(const struct cluster_key *key, const uint8_t *buf,
                                        size_t len, uint64_t now_ms, uint64_t window_ms,
                                        struct cluster_replay *replay, struct map_fetch_req *req);

/* Writes MAP_FETCH_HDR_BYTES into out. 0, or -1. */
int map_fetch_hdr_encode(const struct cluster_key *key, const struct map_fetch_hdr *hdr,
                         uint8_t *out);
/*
 * Checks an answer header: size, MAC, fields (status known; length 0 unless OK and at most
 * MAP_FETCH_DB_MAX_BYTES), time window, and that it answers the request with nonce.
 */
enum cluster_verdict map_fetch_hdr_open(const struct cluster_key *key, const uint8_t *buf,
                                        size_t len, uint64_t now_ms, uint64_t window_ms,
                                        const uint8_t nonce[CLUSTER_NONCE_BYTES],
                                        struct map_fetch_hdr *hdr);

/* The content as it arrives, checked against an authentic header. */
struct map_fetch_verify {
	void *md; /* EVP_MD_CTX */
	uint64_t want;
	uint64_t got;
	uint8_t sha256[MAP_FETCH_SHA_BYTES];
};

enum map_fetch_check {
	MAP_FETCH_CHECK_OK = 0,
	MAP_FETCH_CHECK_SHORT,    /* fewer bytes than the header said */
	MAP_FETCH_CHECK_LONG,     /* more bytes than the header said */
	MAP_FETCH_CHECK_CHECKSUM, /* the bytes are not the ones the director hashed */
	MAP_FETCH_CHECK_ERROR,    /* OpenSSL failed */
};

const char *map_fetch_check_str(enum map_fetch_check c);
int map_fetch_verify_init(struct map_fetch_verify *v, const struct map_fetch_hdr *hdr);
/* MAP_FETCH_CHECK_OK, or LONG once more than the header's length arrived. */
enum map_fetch_check map_fetch_verify_update(struct map_fetch_verify *v, const void *data,
                                             size_t len);
/* Frees v; OK only when exactly the announced bytes with the announced SHA-256 arrived. */
enum map_fetch_check map_fetch_verify_final(struct map_fetch_verify *v);
void map_fetch_verify_free(struct map_fetch_verify *v);

/* SHA-256 and size of a whole file read with pread (the offset is not moved). 0, or -1. */
int map_fetch_file_sha256(int fd, uint64_t *size, uint8_t sha256[MAP_FETCH_SHA_BYTES]);

#endif
