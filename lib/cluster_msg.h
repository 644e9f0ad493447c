/*
 * The cluster datagram between mailplex-relay and the directors: JOIN, HEARTBEAT, LEAVE
 * and the directors' REPLY, one UDP datagram each, authenticated by HMAC-SHA256 under the
 * cluster key, fresh within a time window and never accepted twice (replay cache).
 * Encoding and verification are pure (bytes and a clock value in, a struct out): no I/O.
 */
#ifndef MAILPLEX_CLUSTER_MSG_H
#define MAILPLEX_CLUSTER_MSG_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_KEY_MIN_BYTES     32
#define CLUSTER_KEY_MAX_BYTES     128
#define CLUSTER_NONCE_BYTES       16
#define CLUSTER_MAC_BYTES         32 /* HMAC-SHA256 */
#define CLUSTER_NAME_MAX          64 /* with the terminating NUL: 63 characters */
#define CLUSTER_SERVICE_NAME_MAX  33
#define CLUSTER_SERVICES_MAX      16
#define CLUSTER_MSG_MAX_BYTES     1024 /* a whole datagram; larger ones are refused unread */
#define CLUSTER_WINDOW_MS_DEFAULT 30000
#define CLUSTER_REPLAY_MAX        8192 /* nonces remembered; full means refuse, not forget */

enum cluster_msg_type {
	CLUSTER_MSG_JOIN = 1,
	CLUSTER_MSG_HEARTBEAT = 2,
	CLUSTER_MSG_LEAVE = 3,
	CLUSTER_MSG_REPLY = 4,
};

/* A director's answer (REPLY only). */
enum cluster_reply_code {
	CLUSTER_REPLY_OK = 0,
	CLUSTER_REPLY_REJOIN = 1,   /* the director does not know the relay: send JOIN */
	CLUSTER_REPLY_REFUSED = 2,  /* the JOIN cannot be admitted (name or address taken) */
	CLUSTER_REPLY_DRAINING = 3, /* LEAVE noted; IPVS still sends the relay connections */
};

/* Readiness bits of a JOIN or HEARTBEAT. */
#define CLUSTER_READY_SMTPD 0x01 /* mailplex-smtpd answers on its control socket */
#define CLUSTER_READY_PROXY 0x02 /* mailplex-proxy answers on its control socket */
#define CLUSTER_READY_SPOOL 0x04 /* the spool has the configured free space */
#define CLUSTER_READY_NODE  0x08 /* the agent's verdict: admit this node */

struct cluster_service {
	char name[CLUSTER_SERVICE_NAME_MAX];
	uint16_t port; /* where the relay listens; the director's config decides */
};

struct cluster_msg {
	enum cluster_msg_type type;
	uint8_t code;     /* REPLY: enum cluster_reply_code */
	uint64_t time_ms; /* sender's wall clock, ms since the epoch */
	uint8_t nonce[CLUSTER_NONCE_BYTES];
	uint8_t echo[CLUSTER_NONCE_BYTES]; /* REPLY: the nonce of the message answered */
	char name[CLUSTER_NAME_MAX];       /* the relay's name (REPLY: the relay answered) */
	int af;                            /* AF_INET, AF_INET6, or 0 (REPLY) */
	uint8_t addr[16];                  /* the relay's address, network order */
	uint16_t weight;
	uint8_t ready;        /* CLUSTER_READY_* */
	uint64_t spool_free;  /* bytes */
	uint64_t map_version; /* relay: the map it runs; REPLY: the newest the director has */
	/*
	 * Relay (wire version 2): the oldest map its proxy sessions and deliveries in flight
	 * still follow (mailbox moves wait on it); 0: unknown, or a version 1 sender.
	 */
	uint64_t map_in_force;
	/*
	 * Wire version: set by the decoder; 0 when encoding picks it (2 for a relay's message,
	 * 1 for a REPLY, which carries no map_in_force: relays of version 1 still read it).
	 */
	uint8_t version;
	size_t nservices;
	struct cluster_service services[CLUSTER_SERVICES_MAX];
};

enum cluster_verdict {
	CLUSTER_OK = 0,
	CLUSTER_ERR_SIZE,   /* shorter than the smallest or longer than the largest */
	CLUSTER_ERR_MAC,    /* forged, or another cluster's key */
	CLUSTER_ERR_FORMAT, /* authentic but malformed (a bug, or another version) */
	CLUSTER_ERR_STALE,  /* outside the time window */
	CLUSTER_ERR_REPLAY, /* the nonce was seen already */
	CLUSTER_ERR_REPLAY_FULL,
};

struct cluster_key {
	uint8_t bytes[CLUSTER_KEY_MAX_BYTES];
	size_t len;
};

struct cluster_replay_entry {
	uint8_t nonce[CLUSTER_NONCE_BYTES];
	uint64_t expires_ms; /* wall clock; 0: free */
};

struct cluster_replay {
	struct cluster_replay_entry *v; /* CLUSTER_REPLAY_MAX */
	size_t used;
};

/* "forged or wrong key", ... for log lines. */
const char *cluster_verdict_str(enum cluster_verdict v);
const char *cluster_msg_type_name(enum cluster_msg_type t);

/* Hex text (whitespace around it allowed) to a key of 32..128 bytes. 0, or -1 with err. */
int cluster_key_parse(const char *text, size_t len, struct cluster_key *key, char *err,
                      size_t errlen);
/* Reads a key file; refuses one that others than its owner may read or write. */
int cluster_key_load(const char *path, struct cluster_key *key, char *err, size_t errlen);

/*
 * Encodes m (nonce and time included as set by the caller) and its MAC into out.
 * Returns the length, or -1 if out is too small or a field is out of bounds.
 */
int cluster_msg_encode(const struct cluster_key *key, const struct cluster_msg *m, uint8_t *out,
                       size_t outlen);
/* Fills m->nonce from OpenSSL's RAND_bytes and m->time_ms from now_ms. 0, or -1. */
int cluster_msg_stamp(struct cluster_msg *m, uint64_t now_ms);

/*
 * Verifies and decodes one datagram: size, then the MAC (constant time) before any field is
 * believed, then the fields, then the time window around now_ms, then the replay cache
 * (replay NULL: not checked; the nonce is remembered only when every other test passed).
 */
enum cluster_verdict cluster_msg_open(const struct cluster_key *key, const uint8_t *buf, size_t len,
                                      uint64_t now_ms, uint64_t window_ms,
                                      struct cluster_replay *replay, struct cluster_msg *m);

/* The clock of cluster timestamps: wall time (NTP keeps the nodes within the window), ms. */
uint64_t cluster_now_ms(void);

int cluster_replay_init(struct cluster_replay *r);
/* Remembers an authentic message's nonce until expires_ms: OK, REPLAY or REPLAY_FULL. */
enum cluster_verdict cluster_replay_note(struct cluster_replay *r, const uint8_t *nonce,
                                         uint64_t expires_ms, uint64_t now_ms);
void cluster_replay_free(struct cluster_replay *r);

#endif
