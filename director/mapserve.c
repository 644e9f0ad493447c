/*
 * The published map: `mailplexctl map publish` compiles map.source into map.db (atomic,
 * lib/map_compile), and from then on heartbeat replies name its version and the TCP
 * listener on map_listen serves its bytes to relays that ask with an authentic request.
 * Transfers run on the director's loop without blocking: non-blocking sockets, sendfile
 * from a descriptor of the published file (a later publish renames a new file over the
 * path; transfers under way keep reading the old inode). Never serves an unpublished file.
 * map-status tells which version each relay has installed and which one is in force there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "director.h"
#include "log.h"
#include "map.h"
#include "map_compile.h"
#include "map_edit.h"
#include "map_fetch.h"
#include "map_source.h"
#include "sock.h"
#include "util.h"

#define MAPSERVE_IO_TIMEOUT_MS   10000 /* no progress for this long: the transfer ends */
#define MAPSERVE_SEND_CHUNK      (1024 * 1024)
#define MAPSERVE_ACCEPTS_PER_RUN 16
#define MAPSERVE_LOG_PER_SECOND  10

enum mapserve_state { MAPSERVE_REQ, MAPSERVE_SEND };

struct mapserve_conn {
	struct director *d;
	int fd;
	int dbfd; /* dup of the published file, -1 when none is sent */
	enum mapserve_state state;
	uint8_t req[MAP_FETCH_REQ_BYTES];
	size_t got;
	uint8_t hdr[MAP_FETCH_HDR_BYTES];
	size_t hdr_sent;
	uint64_t off, size, version;
	uint64_t start_ms;
	char peer[SOCK_ADDR_STRLEN];
	char name[CLUSTER_NAME_MAX];
	struct ev_timer timer;
};

static void mapserve_conn_io(struct ev_loop *loop, int fd, int events, void *arg);

/* Refusals may come in floods (a misconfigured node, an attacker): a few lines a second. */
static void
mapserve_log_refusal(struct mapserve_conn *c, const char *why)
{
	struct director_mapserve *ms = &c->d->mapserve;
	uint64_t sec = ev_now_ms(c->d->loop) / 1000;

	if (sec != ms->log_second) {
		if (ms->log_count > MAPSERVE_LOG_PER_SECOND)
			log_warnx("map: %u more refused or failed transfers not logged",
			          ms->log_count - MAPSERVE_LOG_PER_SECOND);
		ms->log_second = sec;
		ms->log_count = 0;
	}
	if (ms->log_count++ < MAPSERVE_LOG_PER_SECOND)
		log_warnx("map: transfer to %s%s%s: %s", c->peer, c->name[0] ? " relay " : "",
		          c->name, why);
}

static void
mapserve_conn_free(struct mapserve_conn *c, const char *why)
{
	struct director_mapserve *ms = &c->d->mapserve;

	if (why != NULL)
		mapserve_log_refusal(c, why);
	ev_timer_stop(c->d->loop, &c->timer);
	(void)ev_io_del(c->d->loop, c->fd);
	(void)close(c->fd);
	if (c->dbfd != -1)
		(void)close(c->dbfd);
	for (size_t i = 0; i < ms->nconns; i++)
		if (ms->conns[i] == c) {
			ms->conns[i] = ms->conns[--ms->nconns];
			break;
		}
	free(c);
}

static void
mapserve_conn_timeout(struct ev_loop *loop, void *arg)
{
	mapserve_conn_free(arg, "no progress: timed out");
}

static void
mapserve_progress(struct mapserve_conn *c)
{
	if (ev_timer_start(c->d->loop, &c->timer, MAPSERVE_IO_TIMEOUT_MS, mapserve_conn_timeout,
	                   c) == -1)
		log_warn("map: timer");
}

/* The request is whole: check it and prepare the answer. 0, or -1 (c is freed). */
static int
mapserve_answer(struct mapserve_conn *c)
{
	struct director *d = c->d;
	struct director_mapserve *ms = &d->mapserve;
	struct map_fetch_req req;
	struct map_fetch_hdr hdr;
	enum cluster_verdict v;

	v = map_fetch_req_open(&d->members.key, c->req, sizeof(c->req), cluster_now_ms(),
	                       d->conf.director.cluster_window_ms, &d->members.replay, &req);
	if (v != CLUSTER_OK) {
		ms->refused++;
		mapserve_conn_free(c, cluster_verdict_str(v));
		return -1;
	}
	(void)str_copy(c->name, sizeof(c->name), req.name);
	memset(&hdr, 0, sizeof(hdr));
	hdr.time_ms = cluster_now_ms();
	memcpy(hdr.echo, req.nonce, sizeof(hdr.echo));
	if (ms->version == 0) {
		hdr.status = MAP_FETCH_NONE;
	} else {
		if ((c->dbfd = fcntl(ms->dbfd, F_DUPFD_CLOEXEC, 0)) == -1) {
			mapserve_conn_free(c, "dup of the map: out of descriptors");
			return -1;
		}
		hdr.status = MAP_FETCH_OK;
		hdr.version = ms->version;
		hdr.length = ms->size;
		memcpy(hdr.sha256, ms->sha256, sizeof(hdr.sha256));
		c->size = ms->size;
		c->version = ms->version;
	}
	if (map_fetch_hdr_encode(&d->members.key, &hdr, c->hdr) == -1) {
		mapserve_conn_free(c, "cannot encode the answer");
		return -1;
	}
	log_info("map: relay %s (%s) runs version %llu, asks for ours: %s%llu", c->name, c->peer,
	         (unsigned long long)req.have_version,
	         hdr.status == MAP_FETCH_OK ? "sending " : "none published, ",
	         (unsigned long long)hdr.version);
	c->state = MAPSERVE_SEND;
	if (ev_io_set(d->loop, c->fd, EV_WRITE, mapserve_conn_io, c) == -1) {
		mapserve_conn_free(c, "event loop");
		return -1;
	}
	return 0;
}

static void
mapserve_send(struct mapserve_conn *c)
{
	struct director_mapserve *ms = &c->d->mapserve;

	while (c->hdr_sent < sizeof(c->hdr)) {
		ssize_t n =
		    send(c->fd, c->hdr + c->hdr_sent, sizeof(c->hdr) - c->hdr_sent, MSG_NOSIGNAL);

		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n == -1) {
			mapserve_conn_free(c, strerror(errno));
			return;
		}
		c->hdr_sent += (size_t)n;
		mapserve_progress(c);
	}
	while (c->off < c->size) {
		off_t off = (off_t)c->off;
		uint64_t left = c->size - c->off;
		ssize_t n =
		    sendfile(c->fd, c->dbfd, &off,
		             left > MAPSERVE_SEND_CHUNK ? MAPSERVE_SEND_CHUNK : (size_t)left);

		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n == -1 || n == 0) {
			mapserve_conn_free(c,
			                   n == 0 ? "the published file shrank" : strerror(errno));
			return;
		}
		c->off = (uint64_t)off;
		mapserve_progress(c);
	}
	if (c->dbfd != -1) {
		ms->served++;
		log_info("map: version %llu sent to relay %s (%s): %llu bytes in %llu ms",
		         (unsigned long long)c->version, c->name, c->peer,
		         (unsigned long long)c->size,
		         (unsigned long long)(ev_now_ms(c->d->loop) - c->start_ms));
	}
	mapserve_conn_free(c, NULL);
}

static void
mapserve_conn_io(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct mapserve_conn *c = arg;

	if (c->state == MAPSERVE_SEND) {
		mapserve_send(c);
		return;
	}
	while (c->got < sizeof(c->req)) {
		ssize_t n = recv(c->fd, c->req + c->got, sizeof(c->req) - c->got, 0);

		if (n == -1 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			c->d->mapserve.refused++;
			mapserve_conn_free(c, n == 0 ? "closed before a whole request"
			                             : strerror(errno));
			return;
		}
		c->got += (size_t)n;
		mapserve_progress(c);
	}
	if (mapserve_answer(c) == 0)
		mapserve_send(c);
}

static void
mapserve_accept(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct director *d = arg;
	struct director_mapserve *ms = &d->mapserve;

	for (int i = 0; i < MAPSERVE_ACCEPTS_PER_RUN; i++) {
		struct sockaddr_storage peer;
		socklen_t peerlen = sizeof(peer);
		struct mapserve_conn *c;
		char err[256];
		int cfd;

		if ((cfd = sock_accept(fd, &peer, &peerlen, err, sizeof(err))) == -1) {
			if (err[0] != '\0')
				log_warnx("map: accept: %s", err);
			return;
		}
		/* Relays retry with back-off: refusing now is cheaper than holding a queue. */
		if (ms->nconns >= MAPSERVE_CONN_MAX || (c = calloc(1, sizeof(*c))) == NULL) {
			ms->refused++;
			log_warnx("map: %zu transfers running; a connection refused", ms->nconns);
			(void)close(cfd);
			continue;
		}
		c->d = d;
		c->fd = cfd;
		c->dbfd = -1;
		c->start_ms = ev_now_ms(loop);
		ev_timer_init(&c->timer);
		if (sock_addr_format((struct sockaddr *)&peer, c->peer, sizeof(c->peer)) == -1)
			(void)str_copy(c->peer, sizeof(c->peer), "?");
		ms->conns[ms->nconns++] = c;
		if (ev_io_set(loop, cfd, EV_READ, mapserve_conn_io, c) == -1) {
			mapserve_conn_free(c, "event loop");
			continue;
		}
		mapserve_progress(c);
	}
}

/* Makes the file at map.db the published one; nothing published when it does not exist. */
static int
mapserve_load(struct director *d, char *err, size_t errlen)
{
	struct director_mapserve *ms = &d->mapserve;
	uint8_t sha[MAP_FETCH_SHA_BYTES];
	struct map *m;
	uint64_t version, size;
	int fd;

	if ((fd = open(d->conf.map.db, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 0;
		err_set(err, errlen, "%s: %s", d->conf.map.db, strerror(errno));
		return -1;
	}
	/* The version read from the very inode we hash: a rename in between changes nothing. */
	{
		char path[64], why[256];

		(void)str_format(path, sizeof(path), "/proc/self/fd/%d", fd);
		if ((m = map_open(path, why, sizeof(why))) == NULL) {
			err_set(err, errlen, "%s: %s", d->conf.map.db, why);
			(void)close(fd);
			return -1;
		}
		version = map_version(m);
		map_close(m);
	}
	if (map_fetch_file_sha256(fd, &size, sha) == -1) {
		err_set(err, errlen, "%s: cannot read it: %s", d->conf.map.db, strerror(errno));
		(void)close(fd);
		return -1;
	}
	if (ms->dbfd != -1)
		(void)close(ms->dbfd);
	ms->dbfd = fd;
	ms->version = version;
	ms->size = size;
	memcpy(ms->sha256, sha, sizeof(sha));
	ms->published_ms = cluster_now_ms();
	return 0;
}

int
mapserve_open(struct director *d, char *err, size_t errlen)
{
	struct director_mapserve *ms = &d->mapserve;
	const struct mailplex_conf_director *conf = &d->conf.director;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char why[256];

	ms->fd = -1;
	ms->dbfd = -1;
	if (mapserve_load(d, why, sizeof(why)) == -1)
		log_warnx("map: %s; nothing published until `mailplexctl map publish`", why);
	else if (ms->dbfd != -1)
		log_info("map: version %llu published (%s, %llu bytes)",
		         (unsigned long long)ms->version, d->conf.map.db,
		         (unsigned long long)ms->size);
	if (conf->map_listen == NULL)
		return 0;
	if (conf->cluster_listen == NULL || d->members.fd == -1) {
		err_set(err, errlen,
		        "map_listen needs cluster_listen (relays learn of maps there)");
		return -1;
	}
	if (sock_addr_parse(conf->map_listen, &ss, &sslen, why, sizeof(why)) == -1) {
		err_set(err, errlen, "map_listen %s: %s", conf->map_listen, why);
		return -1;
	}
	if ((ms->fd = sock_listen(&ss, sslen, 64, 0, why, sizeof(why))) == -1) {
		err_set(err, errlen, "map_listen %s: %s", conf->map_listen, why);
		return -1;
	}
	if (ev_io_set(d->loop, ms->fd, EV_READ, mapserve_accept, d) == -1) {
		err_set(err, errlen, "map_listen: event loop: %s", strerror(errno));
		return -1;
	}
	log_info("map: serving published maps on %s", conf->map_listen);
	return 0;
}

void
mapserve_close(struct director *d)
{
	struct director_mapserve *ms = &d->mapserve;

	while (ms->nconns > 0)
		mapserve_conn_free(ms->conns[0], "director stopping");
	if (ms->fd != -1) {
		if (d->loop != NULL)
			(void)ev_io_del(d->loop, ms->fd);
		(void)close(ms->fd);
		ms->fd = -1;
	}
	if (ms->dbfd != -1)
		(void)close(ms->dbfd);
	ms->dbfd = -1;
}

/* A map is published once version is set (a compiled map's version is never 0). */
static int
mapserve_serving(const struct director *d)
{
	return d->conf.director.map_listen != NULL && d->mapserve.fd != -1;
}

uint64_t
mapserve_offered(const struct director *d)
{
	return mapserve_serving(d) ? d->mapserve.version : 0;
}

static void
mapserve_diag(void *arg, const char *msg)
{
	char *first = arg;

	if (first[0] == '\0')
		(void)str_copy(first, CONTROL_ERR_MAX, msg);
}

/*
 * Runs on the loop: an operator's command, rare, and the compile of a large source takes
 * seconds (1,000,000 users: about 3 s), during which checks and datagrams wait. IPVS keeps
 * forwarding meanwhile; heartbeats queue in the socket buffer and are answered after.
 */
int
mapserve_publish(struct director *d, struct control_reply *r)
{
	struct director_mapserve *ms = &d->mapserve;
	struct map_compile_stats st;
	struct map_source *src;
	char err[CONTROL_ERR_MAX] = "", first[CONTROL_ERR_MAX] = "";
	uint64_t was = ms->version;
	size_t len;
	char *buf;

	if ((buf = map_edit_read(d->conf.map.source, &len, err, sizeof(err))) == NULL) {
		control_reply_error(r, "%s", err);
		return -1;
	}
	src = map_source_parse(d->conf.map.source, buf, len, mapserve_diag, first);
	free(buf);
	if (src == NULL) {
		log_warnx("map: publish refused: %s; version %llu stays", first,
		          (unsigned long long)was);
		control_reply_error(r, "%s",
		                    first[0] != '\0' ? first : "the source does not compile");
		return -1;
	}
	if (map_compile(src, d->conf.map.source, d->conf.map.db, &st, err, sizeof(err)) == -1) {
		map_source_free(src);
		log_warnx("map: publish failed: %s; version %llu stays", err,
		          (unsigned long long)was);
		control_reply_error(r, "%s", err);
		return -1;
	}
	map_source_free(src);
	if (mapserve_load(d, err, sizeof(err)) == -1) {
		log_warnx("map: compiled but cannot publish: %s", err);
		control_reply_error(r, "%s", err);
		return -1;
	}
	log_info("map: version %llu published (was %llu): %s, %zu users, %zu aliases, %zu rules, "
	         "%llu bytes, compiled in %llu ms",
	         (unsigned long long)ms->version, (unsigned long long)was, d->conf.map.db, st.users,
	         st.aliases, st.rules, (unsigned long long)ms->size,
	         (unsigned long long)st.elapsed_ms);
	control_reply_printf(r,
	                     "map version %llu published (was %llu): %zu users, %zu aliases, "
	                     "%zu rules, %llu bytes%s\n",
	                     (unsigned long long)ms->version, (unsigned long long)was, st.users,
	                     st.aliases, st.rules, (unsigned long long)ms->size,
	                     mapserve_serving(d) ? ""
	                                         : "; no map_listen: relays are not offered it");
	return 0;
}

void
mapserve_status(struct director *d, struct control_reply *r)
{
	const struct director_mapserve *ms = &d->mapserve;
	char sha[2 * 8 + 1];
	size_t behind = 0;

	for (size_t i = 0; i < d->members.n; i++)
		if (!d->members.v[i]->gone && d->members.v[i]->map_version != ms->version)
			behind++;
	if (ms->version == 0) {
		control_reply_printf(r, "map: none published (%s)%s%s\n",
		                     d->conf.map.db != NULL ? d->conf.map.db : "-",
		                     mapserve_serving(d) ? ", serving on " : "",
		                     mapserve_serving(d) ? d->conf.director.map_listen : "");
		return;
	}
	for (int i = 0; i < 8; i++)
		(void)str_format(sha + 2 * i, 3, "%02x", ms->sha256[i]);
	control_reply_printf(
	    r,
	    "map: version %llu published, %llu bytes, sha256 %s..., %s%s, "
	    "%llu transfers, %llu refused, %zu running, %zu joined relays behind\n",
	    (unsigned long long)ms->version, (unsigned long long)ms->size, sha,
	    mapserve_serving(d) ? "served on " : "not served (no map_listen)",
	    mapserve_serving(d) ? d->conf.director.map_listen : "", (unsigned long long)ms->served,
	    (unsigned long long)ms->refused, ms->nconns, behind);
}

void
mapserve_map_status(struct director *d, struct control_reply *r)
{
	const struct director_state *st = &d->state;

	control_reply_printf(r, "published %llu\n", (unsigned long long)d->mapserve.version);
	for (size_t i = 0; i < st->nrelays; i++)
		if (st->joined == NULL || st->joined[i] == NULL)
			control_reply_printf(
			    r, "relay %s map_installed 0 map_in_force 0 state static\n",
			    st->relays[i]->name);
	for (size_t i = 0; i < d->members.n; i++) {
		const struct member_relay *m = d->members.v[i];

		if (m->gone)
			continue;
		control_reply_printf(r, "relay %s map_installed %llu map_in_force %llu state %s\n",
		                     m->name_buf, (unsigned long long)m->map_version,
		                     (unsigned long long)m->map_in_force, members_state_word(m));
	}
}
