/*
 * Cluster datagrams: the byte layout, HMAC-SHA256 under the cluster key, the time window
 * and the replay cache. Owns no socket; encoding and checking take the time as an argument
 * (cluster_now_ms is only for callers), so every refusal is unit-tested. No field is
 * believed before its MAC is checked.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "cluster_msg.h"
#include "util.h"

/*
 * Layout (integers big-endian):
 *   0 "MPXC"  4 version  5 type  6 code  7 ready  8 time_ms(8)  16 nonce(16)  32 echo(16)
 *   48 af(1: 0, 4 or 6)  49 addr(16)  65 weight(2)  67 spool_free(8)  75 map_version(8)
 *   version 2 only: 83 map_in_force(8)
 *   then name_len(1) name  nservices(1) { len(1) name port(2) }*  MAC(32) over all before it
 * Both versions are read, so that directors can be upgraded before their relays.
 */
#define MSG_MAGIC          "MPXC"
#define MSG_VERSION_1      1
#define MSG_VERSION_2      2
#define MSG_FIXED_BYTES_V1 83
#define MSG_FIXED_BYTES_V2 91
#define MSG_MIN_BYTES      (MSG_FIXED_BYTES_V1 + 1 + 1 + 1 + CLUSTER_MAC_BYTES)

const char *
cluster_verdict_str(enum cluster_verdict v)
{
	switch (v) {
	case CLUSTER_OK:
		return "ok";
	case CLUSTER_ERR_SIZE:
		return "bad size";
	case CLUSTER_ERR_MAC:
		return "bad MAC (forged, or another cluster key)";
	case CLUSTER_ERR_FORMAT:
		return "malformed";
	case CLUSTER_ERR_STALE:
		return "timestamp outside the window (stale, or clocks apart)";
	case CLUSTER_ERR_REPLAY:
		return "replayed (nonce seen before)";
	case CLUSTER_ERR_REPLAY_FULL:
		return "replay cache full";
	}
	return "?";
}

const char *
cluster_msg_type_name(enum cluster_msg_type t)
{
	switch (t) {
	case CLUSTER_MSG_JOIN:
		return "join";
	case CLUSTER_MSG_HEARTBEAT:
		return "heartbeat";
	case CLUSTER_MSG_LEAVE:
		return "leave";
	case CLUSTER_MSG_REPLY:
		return "reply";
	}
	return "?";
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
cluster_key_parse(const char *text, size_t len, struct cluster_key *key, char *err, size_t errlen)
{
	size_t i = 0, end = len;

	memset(key, 0, sizeof(*key));
	while (i < end && isspace((unsigned char)text[i]))
		i++;
	while (end > i && isspace((unsigned char)text[end - 1]))
		end--;
	if ((end - i) % 2 != 0) {
		err_set(err, errlen, "key: odd number of hex digits");
		return -1;
	}
	if ((end - i) / 2 < CLUSTER_KEY_MIN_BYTES || (end - i) / 2 > CLUSTER_KEY_MAX_BYTES) {
		err_set(err, errlen, "key: %zu bytes; it needs %d to %d (openssl rand -hex 32)",
		        (end - i) / 2, CLUSTER_KEY_MIN_BYTES, CLUSTER_KEY_MAX_BYTES);
		return -1;
	}
	for (; i < end; i += 2) {
		int hi = hexval((unsigned char)text[i]), lo = hexval((unsigned char)text[i + 1]);

		if (hi < 0 || lo < 0) {
			OPENSSL_cleanse(key, sizeof(*key));
			err_set(err, errlen, "key: not hex");
			return -1;
		}
		key->bytes[key->len++] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

int
cluster_key_load(const char *path, struct cluster_key *key, char *err, size_t errlen)
{
	char text[2 * CLUSTER_KEY_MAX_BYTES + 64];
	struct stat sb;
	ssize_t n;
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) == -1) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		(void)close(fd);
		return -1;
	}
	/* Whoever reads the key can forge a JOIN and pull traffic to any address. */
	if (!S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0) {
		err_set(err, errlen,
		        "%s: must be a regular file only its owner can read (chmod 600)", path);
		(void)close(fd);
		return -1;
	}
	n = read(fd, text, sizeof(text));
	(void)close(fd);
	if (n == -1) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if ((size_t)n == sizeof(text)) {
		err_set(err, errlen, "%s: too long for a key", path);
		return -1;
	}
	rc = cluster_key_parse(text, (size_t)n, key, err, errlen);
	OPENSSL_cleanse(text, sizeof(text));
	if (rc == -1) {
		char why[128];

		(void)str_copy(why, sizeof(why), err != NULL ? err : "");
		err_set(err, errlen, "%s: %s", path, why);
	}
	return rc;
}

/* Names travel into log lines and IPVS status: letters, digits, '.', '-', '_' only. */
static int
name_valid(const char *s, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
			return 0;
	return 1;
}

static int
mac_compute(const struct cluster_key *key, const uint8_t *buf, size_t len,
            uint8_t mac[CLUSTER_MAC_BYTES])
{
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), key->bytes, (int)key->len, buf, len, mac, &maclen) == NULL ||
	    maclen != CLUSTER_MAC_BYTES)
		return -1;
	return 0;
}

int
cluster_msg_stamp(struct cluster_msg *m, uint64_t now_ms)
{
	m->time_ms = now_ms;
	return RAND_bytes(m->nonce, sizeof(m->nonce)) == 1 ? 0 : -1;
}

int
cluster_msg_encode(const struct cluster_key *key, const struct cluster_msg *m, uint8_t *out,
                   size_t outlen)
{
	size_t namelen = strnlen(m->name, sizeof(m->name)), off;
	uint8_t *p = out, version = m->version;

	if (version == 0)
		version = m->type == CLUSTER_MSG_REPLY ? MSG_VERSION_1 : MSG_VERSION_2;
	off = version == MSG_VERSION_1 ? MSG_FIXED_BYTES_V1 : MSG_FIXED_BYTES_V2;
	/* Version 1 cannot carry map_in_force: refused rather than silently dropped. */
	if (namelen == 0 || namelen >= sizeof(m->name) || !name_valid(m->name, namelen) ||
	    m->nservices > CLUSTER_SERVICES_MAX || m->type < CLUSTER_MSG_JOIN ||
	    m->type > CLUSTER_MSG_REPLY || (version != MSG_VERSION_1 && version != MSG_VERSION_2) ||
	    (version == MSG_VERSION_1 && m->map_in_force != 0)) {
		errno = EINVAL;
		return -1;
	}
	if (outlen < off + 1 + namelen + 1) {
		errno = ENOSPC;
		return -1;
	}
	memset(out, 0, off);
	memcpy(p, MSG_MAGIC, 4);
	p[4] = version;
	p[5] = (uint8_t)m->type;
	p[6] = m->code;
	p[7] = m->ready;
	be_put64(p + 8, m->time_ms);
	memcpy(p + 16, m->nonce, CLUSTER_NONCE_BYTES);
	memcpy(p + 32, m->echo, CLUSTER_NONCE_BYTES);
	if (m->af == AF_INET) {
		p[48] = 4;
		memcpy(p + 49, m->addr, 4);
	} else if (m->af == AF_INET6) {
		p[48] = 6;
		memcpy(p + 49, m->addr, 16);
	}
	be_put16(p + 65, m->weight);
	be_put64(p + 67, m->spool_free);
	be_put64(p + 75, m->map_version);
	if (version == MSG_VERSION_2)
		be_put64(p + 83, m->map_in_force);
	p[off++] = (uint8_t)namelen;
	memcpy(p + off, m->name, namelen);
	off += namelen;
	p[off++] = (uint8_t)m->nservices;
	for (size_t i = 0; i < m->nservices; i++) {
		const struct cluster_service *s = &m->services[i];
		size_t sl = strnlen(s->name, sizeof(s->name));

		if (sl == 0 || sl >= sizeof(s->name) || !name_valid(s->name, sl)) {
			errno = EINVAL;
			return -1;
		}
		if (outlen < off + 1 + sl + 2) {
			errno = ENOSPC;
			return -1;
		}
		p[off++] = (uint8_t)sl;
		memcpy(p + off, s->name, sl);
		off += sl;
		be_put16(p + off, s->port);
		off += 2;
	}
	if (outlen < off + CLUSTER_MAC_BYTES || off + CLUSTER_MAC_BYTES > CLUSTER_MSG_MAX_BYTES) {
		errno = ENOSPC;
		return -1;
	}
	if (mac_compute(key, out, off, out + off) == -1) {
		errno = EIO;
		return -1;
	}
	return (int)(off + CLUSTER_MAC_BYTES);
}

/* The fields of an authentic datagram; 0, or -1 if they break the layout. */
static int
msg_decode(const uint8_t *p, size_t len, struct cluster_msg *m)
{
	size_t off, namelen;

	memset(m, 0, sizeof(*m));
	if (memcmp(p, MSG_MAGIC, 4) != 0 || (p[4] != MSG_VERSION_1 && p[4] != MSG_VERSION_2) ||
	    p[5] < CLUSTER_MSG_JOIN || p[5] > CLUSTER_MSG_REPLY)
		return -1;
	m->version = p[4];
	off = m->version == MSG_VERSION_1 ? MSG_FIXED_BYTES_V1 : MSG_FIXED_BYTES_V2;
	/* The fixed part, a name's length and the service count at least. */
	if (len < off + 2)
		return -1;
	m->type = (enum cluster_msg_type)p[5];
	m->code = p[6];
	if (m->type == CLUSTER_MSG_REPLY && m->code > CLUSTER_REPLY_DRAINING)
		return -1;
	m->ready = p[7];
	m->time_ms = be_get64(p + 8);
	memcpy(m->nonce, p + 16, CLUSTER_NONCE_BYTES);
	memcpy(m->echo, p + 32, CLUSTER_NONCE_BYTES);
	/* One encoding per message: bytes an address does not use are zero. */
	switch (p[48]) {
	case 0:
		for (int i = 0; i < 16; i++)
			if (p[49 + i] != 0)
				return -1;
		break;
	case 4:
		m->af = AF_INET;
		memcpy(m->addr, p + 49, 4);
		for (int i = 4; i < 16; i++)
			if (p[49 + i] != 0)
				return -1;
		break;
	case 6:
		m->af = AF_INET6;
		memcpy(m->addr, p + 49, 16);
		break;
	default:
		return -1;
	}
	m->weight = be_get16(p + 65);
	m->spool_free = be_get64(p + 67);
	m->map_version = be_get64(p + 75);
	if (m->version == MSG_VERSION_2)
		m->map_in_force = be_get64(p + 83);
	namelen = p[off++];
	if (namelen == 0 || namelen >= sizeof(m->name) || off + namelen + 1 > len ||
	    !name_valid((const char *)p + off, namelen))
		return -1;
	memcpy(m->name, p + off, namelen);
	off += namelen;
	m->nservices = p[off++];
	if (m->nservices > CLUSTER_SERVICES_MAX)
		return -1;
	for (size_t i = 0; i < m->nservices; i++) {
		struct cluster_service *s = &m->services[i];
		size_t sl;

		if (off >= len)
			return -1;
		sl = p[off++];
		if (sl == 0 || sl >= sizeof(s->name) || off + sl + 2 > len ||
		    !name_valid((const char *)p + off, sl))
			return -1;
		memcpy(s->name, p + off, sl);
		off += sl;
		s->port = be_get16(p + off);
		off += 2;
	}
	/* Joins and heartbeats say who and where; no trailing bytes anywhere. */
	if (off != len || (m->type != CLUSTER_MSG_REPLY && m->af == 0))
		return -1;
	return 0;
}

uint64_t
cluster_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == -1)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
cluster_replay_init(struct cluster_replay *r)
{
	r->used = 0;
	if ((r->v = calloc(CLUSTER_REPLAY_MAX, sizeof(*r->v))) == NULL)
		return -1;
	return 0;
}

void
cluster_replay_free(struct cluster_replay *r)
{
	free(r->v);
	r->v = NULL;
	r->used = 0;
}

/*
 * A linear scan: at most CLUSTER_REPLAY_MAX 16-byte compares per datagram, for traffic of
 * a few heartbeats per relay per second. Entries live until their message would be stale.
 */
static enum cluster_verdict
replay_note(struct cluster_replay *r, const uint8_t *nonce, uint64_t expires_ms, uint64_t now_ms)
{
	struct cluster_replay_entry *free_slot = NULL;

	for (size_t i = 0; i < CLUSTER_REPLAY_MAX; i++) {
		struct cluster_replay_entry *e = &r->v[i];

		if (e->expires_ms != 0 && e->expires_ms < now_ms) {
			e->expires_ms = 0;
			r->used--;
		}
		if (e->expires_ms == 0) {
			if (free_slot == NULL)
				free_slot = e;
			continue;
		}
		if (memcmp(e->nonce, nonce, CLUSTER_NONCE_BYTES) == 0)
			return CLUSTER_ERR_REPLAY;
	}
	if (free_slot == NULL)
		return CLUSTER_ERR_REPLAY_FULL;
	memcpy(free_slot->nonce, nonce, CLUSTER_NONCE_BYTES);
	free_slot->expires_ms = expires_ms != 0 ? expires_ms : 1;
	r->used++;
	return CLUSTER_OK;
}

enum cluster_verdict
cluster_replay_note(struct cluster_replay *r, const uint8_t *nonce, uint64_t expires_ms,
                    uint64_t now_ms)
{
	return replay_note(r, nonce, expires_ms, now_ms);
}

enum cluster_verdict
cluster_msg_open(const struct cluster_key *key, const uint8_t *buf, size_t len, uint64_t now_ms,
                 uint64_t window_ms, struct cluster_replay *replay, struct cluster_msg *m)
{
	uint8_t mac[CLUSTER_MAC_BYTES];
	size_t body;

	memset(m, 0, sizeof(*m));
	if (len < MSG_MIN_BYTES || len > CLUSTER_MSG_MAX_BYTES)
		return CLUSTER_ERR_SIZE;
	body = len - CLUSTER_MAC_BYTES;
	if (mac_compute(key, buf, body, mac) == -1 ||
	    CRYPTO_memcmp(mac, buf + body, CLUSTER_MAC_BYTES) != 0)
		return CLUSTER_ERR_MAC;
	if (msg_decode(buf, body, m) == -1)
		return CLUSTER_ERR_FORMAT;
	/* Subtractions, never sums: a forged-looking but authentic time must not wrap. */
	if ((m->time_ms < now_ms && now_ms - m->time_ms > window_ms) ||
	    (m->time_ms > now_ms && m->time_ms - now_ms > window_ms))
		return CLUSTER_ERR_STALE;
	if (replay != NULL)
		return replay_note(replay, m->nonce, m->time_ms + window_ms, now_ms);
	return CLUSTER_OK;
}
