/*
 * The map the directors publish: when a heartbeat reply names a newer version than the
 * installed one, a child process fetches it from that director (lib/map_fetch.h), writes
 * it into a temp file beside map.db (map.db.fetch.PID), checks length, SHA-256 and that it opens as
 * a map of that version, fsyncs it, renames it over map.db and fsyncs the directory. A child, not
 * the loop: disk writes and fsync cannot be made non-blocking, and the heartbeats must go
 * on meanwhile (a silent relay is drained). A failure is retried with back-off.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "agent.h"
#include "log.h"
#include "map.h"
#include "map_fetch.h"
#include "util.h"

#define AGENT_MAP_RETRY_MIN_MS  500
#define AGENT_MAP_RETRY_MAX_MS  8000
#define AGENT_MAP_IO_TIMEOUT_MS 10000  /* one connect, send or receive */
#define AGENT_MAP_FETCH_MAX_MS  600000 /* the whole transfer of even a large map */
#define AGENT_MAP_CHUNK         65536

/* Exit codes of the child: the parent logs them, the child logged the details. */
enum { FETCH_INSTALLED = 0, FETCH_FAILED = 1, FETCH_NOT_NEWER = 2 };

uint64_t
agent_map_installed(const struct agent *a)
{
	char err[256];
	struct map *m;
	uint64_t v;

	if ((m = map_open(a->conf.map.db, err, sizeof(err))) == NULL)
		return 0;
	v = map_version(m);
	map_close(m);
	return v;
}

int
agent_map_lagging(struct agent *a, char *why, size_t whylen)
{
	uint64_t now = ev_now_ms(a->loop), newest = 0;

	if (a->map_behind_since_ms == 0 || a->conf.relay.map_max_lag_ms == 0 ||
	    now - a->map_behind_since_ms <= a->conf.relay.map_max_lag_ms)
		return 0;
	for (size_t i = 0; i < a->npeers; i++)
		if (a->peers[i].map_version > newest)
			newest = a->peers[i].map_version;
	err_set(why, whylen,
	        "map version %llu, the directors' %llu for %llu ms (map_max_lag %llu ms)",
	        (unsigned long long)a->map_version, (unsigned long long)newest,
	        (unsigned long long)(now - a->map_behind_since_ms),
	        (unsigned long long)a->conf.relay.map_max_lag_ms);
	return 1;
}

/* The fetch's temp file is named by the child's pid, so the parent can remove it too. */
static int
agent_map_temp_path(const struct agent *a, pid_t pid, char *buf, size_t len)
{
	return str_format(buf, len, "%s.fetch.%d", a->conf.map.db, (int)pid);
}

/* ---- the child ---- */

static int
fetch_io_wait(int fd, short events, uint64_t deadline)
{
	uint64_t now = time_mono_ms();
	struct pollfd pfd = {.fd = fd, .events = events};
	int n;

	if (now >= deadline) {
		errno = ETIMEDOUT;
		return -1;
	}
	n = poll(&pfd, 1,
	         (int)(deadline - now > AGENT_MAP_IO_TIMEOUT_MS ? AGENT_MAP_IO_TIMEOUT_MS
	                                                        : deadline - now));
	if (n == 0)
		errno = ETIMEDOUT;
	return n == 1 ? 0 : -1;
}

static int
fetch_recv(int fd, void *buf, size_t len, uint64_t deadline, size_t *got)
{
	for (;;) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n >= 0) {
			*got = (size_t)n;
			return 0;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -1;
		if (fetch_io_wait(fd, POLLIN, deadline) == -1)
			return -1;
	}
}

static int
fetch_write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Connects, asks, and reads the header. The socket, or -1 (logged). */
static int
fetch_ask(struct agent *a, struct agent_peer *p, const char *dirstr, uint64_t have,
          uint64_t deadline, struct map_fetch_hdr *hdr)
{
	struct sockaddr_storage ss = p->ss;
	struct map_fetch_req req;
	uint8_t out[MAP_FETCH_REQ_BYTES], in[MAP_FETCH_HDR_BYTES];
	size_t got = 0, sent = 0;
	enum cluster_verdict v;
	int fd;

	if (ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)a->conf.relay.map_port);
	else
		((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)a->conf.relay.map_port);
	memset(&req, 0, sizeof(req));
	(void)str_copy(req.name, sizeof(req.name), a->name);
	req.have_version = have;
	req.time_ms = cluster_now_ms();
	if (RAND_bytes(req.nonce, sizeof(req.nonce)) != 1 ||
	    map_fetch_req_encode(&a->key, &req, out) == -1) {
		log_warnx("map: %s: cannot make a request", dirstr);
		return -1;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1) {
		log_warn("map: socket");
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, p->sslen) == -1 &&
	    (errno != EINPROGRESS || fetch_io_wait(fd, POLLOUT, deadline) == -1 ||
	     sock_connect_result(fd) == -1)) {
		log_warn("map: %s: connect", dirstr);
		(void)close(fd);
		return -1;
	}
	while (sent < sizeof(out)) {
		ssize_t n = send(fd, out + sent, sizeof(out) - sent, MSG_NOSIGNAL);

		if (n == -1 && (errno == EAGAIN || errno == EINTR) &&
		    fetch_io_wait(fd, POLLOUT, deadline) == 0)
			continue;
		if (n == -1) {
			log_warn("map: %s: send", dirstr);
			(void)close(fd);
			return -1;
		}
		sent += (size_t)n;
	}
	while (got < sizeof(in)) {
		size_t n = 0;

		if (fetch_recv(fd, in + got, sizeof(in) - got, deadline, &n) == -1) {
			log_warn("map: %s: receive", dirstr);
			(void)close(fd);
			return -1;
		}
		if (n == 0) {
			log_warnx("map: %s: closed before an answer (a request the director "
			          "refuses is answered that way; see its log)",
			          dirstr);
			(void)close(fd);
			return -1;
		}
		got += n;
	}
	v = map_fetch_hdr_open(&a->key, in, sizeof(in), cluster_now_ms(), CLUSTER_WINDOW_MS_DEFAULT,
	                       req.nonce, hdr);
	if (v != CLUSTER_OK) {
		log_warnx("map: %s: answer refused: %s", dirstr, cluster_verdict_str(v));
		(void)close(fd);
		return -1;
	}
	return fd;
}

/* Receives the content into tfd, checking it against hdr. 0, or -1 (logged). */
static int
fetch_body(int fd, int tfd, const struct map_fetch_hdr *hdr, const char *dirstr, uint64_t deadline)
{
	static uint8_t buf[AGENT_MAP_CHUNK];
	struct map_fetch_verify v;
	enum map_fetch_check c;

	if (map_fetch_verify_init(&v, hdr) == -1) {
		log_warnx("map: digest: out of memory");
		return -1;
	}
	while (v.got < v.want) {
		uint64_t left = v.want - v.got;
		size_t n = 0;

		if (fetch_recv(fd, buf, left < sizeof(buf) ? (size_t)left : sizeof(buf), deadline,
		               &n) == -1) {
			log_warn("map: %s: receive after %llu of %llu bytes", dirstr,
			         (unsigned long long)v.got, (unsigned long long)v.want);
			map_fetch_verify_free(&v);
			return -1;
		}
		if (n == 0)
			break;
		if ((c = map_fetch_verify_update(&v, buf, n)) != MAP_FETCH_CHECK_OK) {
			log_warnx("map: %s: %s", dirstr, map_fetch_check_str(c));
			map_fetch_verify_free(&v);
			return -1;
		}
		if (fetch_write_all(tfd, buf, n) == -1) {
			log_warn("map: write of the temp file");
			map_fetch_verify_free(&v);
			return -1;
		}
	}
	if ((c = map_fetch_verify_final(&v)) != MAP_FETCH_CHECK_OK) {
		log_warnx("map: %s: version %llu not installed: %s", dirstr,
		          (unsigned long long)hdr->version, map_fetch_check_str(c));
		return -1;
	}
	return 0;
}

/* The whole fetch and install; the exit code of the child. */
static int
fetch_run(struct agent *a, struct agent_peer *p, uint64_t have)
{
	char tmp[PATH_MAX], dir[PATH_MAX], err[256], dirstr[SOCK_ADDR_STRLEN + 16];
	uint64_t deadline = time_mono_ms() + AGENT_MAP_FETCH_MAX_MS;
	struct map_fetch_hdr hdr;
	struct map *m;
	int fd, tfd, dfd, rc = FETCH_FAILED;

	(void)str_format(dirstr, sizeof(dirstr), "director %s", p->str);
	if (agent_map_temp_path(a, getpid(), tmp, sizeof(tmp)) == -1 ||
	    str_copy(dir, sizeof(dir), a->conf.map.db) == -1) {
		log_warnx("map: %s: path too long", a->conf.map.db);
		return FETCH_FAILED;
	}
	/* Before asking: a relay that cannot write costs the director no transfer. */
	(void)unlink(tmp); /* a file of a dead process that had our pid */
	if ((tfd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) == -1) {
		log_warn("map: cannot create a temp file beside %s", a->conf.map.db);
		return FETCH_FAILED;
	}
	/* The daemons that read the map run as another user. */
	if (fchmod(tfd, 0644) == -1) {
		log_warn("map: chmod %s", tmp);
		fd = -1;
		goto out;
	}
	if ((fd = fetch_ask(a, p, dirstr, have, deadline, &hdr)) == -1)
		goto out;
	if (hdr.status != MAP_FETCH_OK || hdr.version <= have) {
		log_info("map: %s: offers version %llu, ours is %llu: nothing to install", dirstr,
		         (unsigned long long)hdr.version, (unsigned long long)have);
		rc = FETCH_NOT_NEWER;
		goto out;
	}
	if (fetch_body(fd, tfd, &hdr, dirstr, deadline) == -1)
		goto out;
	if (fsync(tfd) == -1) {
		log_warn("map: fsync %s", tmp);
		goto out;
	}
	/* Authentic bytes, and still: a map that does not open, or of another version, stays out.
	 */
	if ((m = map_open(tmp, err, sizeof(err))) == NULL) {
		log_warnx("map: %s: version %llu does not open: %s", dirstr,
		          (unsigned long long)hdr.version, err);
		goto out;
	}
	if (map_version(m) != hdr.version) {
		log_warnx("map: %s: announced version %llu, the file says %llu", dirstr,
		          (unsigned long long)hdr.version, (unsigned long long)map_version(m));
		map_close(m);
		goto out;
	}
	map_close(m);
	if (rename(tmp, a->conf.map.db) == -1) {
		log_warn("map: rename %s to %s", tmp, a->conf.map.db);
		goto out;
	}
	tmp[0] = '\0';
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
	    fsync(dfd) == -1)
		log_warn("map: fsync of %s (the map is in place)", dir);
	if (dfd != -1)
		(void)close(dfd);
	log_info("map: version %llu from %s installed in %s (%llu bytes, SHA-256 checked)",
	         (unsigned long long)hdr.version, dirstr, a->conf.map.db,
	         (unsigned long long)hdr.length);
	rc = FETCH_INSTALLED;
out:
	(void)close(tfd);
	if (fd != -1)
		(void)close(fd);
	if (tmp[0] != '\0' && unlink(tmp) == -1)
		log_warn("map: unlink %s", tmp);
	return rc;
}

/* ---- the parent ---- */

static void agent_map_retry(struct ev_loop *loop, void *arg);

static void
agent_map_fetch(struct agent *a, size_t peer, uint64_t want)
{
	sigset_t none;
	pid_t pid;

	if ((pid = fork()) == -1) {
		log_warn("map: fork");
		return;
	}
	if (pid == 0) {
		/* The loop's signalfd blocked these: the parent must be able to end us. */
		(void)sigemptyset(&none);
		(void)sigprocmask(SIG_SETMASK, &none, NULL);
		(void)signal(SIGTERM, SIG_DFL);
		_exit(fetch_run(a, &a->peers[peer], a->map_version));
	}
	a->map_child = pid;
	a->map_child_peer = peer;
	a->map_child_want = want;
	a->map_child_start_ms = ev_now_ms(a->loop);
	log_info("map: version %llu offered by director %s, ours is %llu: fetching (pid %d)",
	         (unsigned long long)want, a->peers[peer].str, (unsigned long long)a->map_version,
	         (int)pid);
}

void
agent_map_offered(struct agent *a)
{
	uint64_t newest = 0;
	size_t best = 0;

	for (size_t i = 0; i < a->npeers; i++)
		if (a->peers[i].map_version > newest) {
			newest = a->peers[i].map_version;
			best = i;
		}
	if (newest <= a->map_version) {
		a->map_behind_since_ms = 0;
		return;
	}
	if (a->map_behind_since_ms == 0)
		a->map_behind_since_ms = ev_now_ms(a->loop);
	if (a->map_child != 0 || ev_timer_active(&a->map_retry))
		return;
	agent_map_fetch(a, best, newest);
}

static void
agent_map_retry(struct ev_loop *loop, void *arg)
{
	agent_map_offered(arg);
}

static void
agent_map_reaped(struct agent *a, int status)
{
	uint64_t took = ev_now_ms(a->loop) - a->map_child_start_ms;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;

	a->map_child = 0;
	if (code == FETCH_INSTALLED) {
		a->map_version = agent_map_installed(a);
		a->map_retry_ms = 0;
		log_info("map: version %llu installed after %llu ms",
		         (unsigned long long)a->map_version, (unsigned long long)took);
		agent_map_offered(a);
		/* Tell the directors now: a relay drained for lag comes back without a beat's wait.
		 */
		agent_beat_now(a);
		return;
	}
	a->map_retry_ms = a->map_retry_ms == 0 ? AGENT_MAP_RETRY_MIN_MS : a->map_retry_ms * 2;
	if (a->map_retry_ms > AGENT_MAP_RETRY_MAX_MS)
		a->map_retry_ms = AGENT_MAP_RETRY_MAX_MS;
	if (code == FETCH_NOT_NEWER)
		log_info("map: nothing newer to fetch; asking again in %llu ms",
		         (unsigned long long)a->map_retry_ms);
	else
		log_warnx(
		    "map: fetch of version %llu from director %s failed (%s %d); retry in %llu ms",
		    (unsigned long long)a->map_child_want, a->peers[a->map_child_peer].str,
		    code >= 0 ? "exit" : "signal",
		    code >= 0 ? code : (WIFSIGNALED(status) ? WTERMSIG(status) : 0),
		    (unsigned long long)a->map_retry_ms);
	if (ev_timer_start(a->loop, &a->map_retry, a->map_retry_ms, agent_map_retry, a) == -1)
		log_warn("map: retry timer");
}

static void
agent_map_sigchld(struct ev_loop *loop, int signo, void *arg)
{
	struct agent *a = arg;
	int status;
	pid_t pid;

	/* Signals coalesce: reap every child that ended. */
	for (int i = 0; i < 64; i++) {
		if ((pid = waitpid(-1, &status, WNOHANG)) <= 0)
			return;
		if (pid == a->map_child)
			agent_map_reaped(a, status);
	}
}

int
agent_map_start(struct agent *a, char *err, size_t errlen)
{
	ev_timer_init(&a->map_retry);
	if (ev_signal_add(a->loop, SIGCHLD, agent_map_sigchld, a) == -1) {
		err_set(err, errlen, "signal %d: %s", SIGCHLD, strerror(errno));
		return -1;
	}
	a->map_version = agent_map_installed(a);
	return 0;
}

void
agent_map_stop(struct agent *a)
{
	char tmp[PATH_MAX];
	int status;

	if (a->loop != NULL)
		ev_timer_stop(a->loop, &a->map_retry);
	if (a->map_child == 0)
		return;
	/* A killed child removes nothing: its temp file goes here, once it cannot write. */
	if (kill(a->map_child, SIGTERM) == -1)
		log_warn("map: kill %d", (int)a->map_child);
	else if (waitpid(a->map_child, &status, 0) == -1)
		log_warn("map: wait %d", (int)a->map_child);
	else if (agent_map_temp_path(a, a->map_child, tmp, sizeof(tmp)) == 0 && unlink(tmp) == -1 &&
	         errno != ENOENT)
		log_warn("map: unlink %s", tmp);
	log_info("map: fetch of version %llu abandoned at stop",
	         (unsigned long long)a->map_child_want);
	a->map_child = 0;
}
