/*
 * imap-bench: single-threaded epoll load generator for IMAP4 servers and proxies, the
 * driver of bench/bench-proxy.sh (modes login, fetch, idle). Adapted from the team's
 * shared anchor harness (bench-anchors/imap-bench.c) into this project's style; IMAP only.
 * It never measures anything but loopback targets, and every run is bounded in count and
 * time and ends at a hard deadline even when the server under test hangs.
 */
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sock.h"
#include "util.h"

#define LINE_MAX_BYTES   (64 * 1024)
#define READ_BUF_BYTES   (1024 * 1024)
#define RUN_MAX_S        600   /* no run, whatever its options, lasts longer */
#define CONNS_MAX        20000
#define ROOTS_MAX        64
#define LATENCY_MAX      4000000
#define BACKOFF_US       20000 /* after a failed cycle: no hot error loop */
#define WAITEOF_US       2000000
#define SCAN_EVERY_US    5000
#define LOGOUT_DRAIN_US  10000000
#define DISCARD_MIN      65536 /* literal bytes left before MSG_TRUNC discards them */

enum bench_mode { MODE_LOGIN, MODE_IDLE, MODE_FETCH };
/* One connection's place in its cycle; the timeout of each is conn.deadline_us. */
enum conn_state { ST_FREE, ST_CONNECTING, ST_GREETING, ST_CMD, ST_HOLD, ST_WAITEOF, ST_BACKOFF };
enum imap_step { STEP_NONE, STEP_LOGIN, STEP_SELECT, STEP_SIZES, STEP_BODY, STEP_LOGOUT };
enum bench_err { ERR_CONNECT, ERR_PROTO, ERR_TIMEOUT, ERR_EOF, ERR_IO, ERR_COUNT };
static const char *const err_names[ERR_COUNT] = {"connect", "proto", "timeout", "eof", "io"};

struct conn {
	int fd;
	enum conn_state st;
	enum imap_step step;
	int outwatch;      /* EPOLLOUT requested */
	int counted;       /* login: this cycle is already counted */
	unsigned user;
	unsigned tagn;
	char tag[16];
	size_t taglen;
	uint64_t lit_rem;  /* bytes of an IMAP literal still to skip */
	uint64_t cur_body; /* message bytes of the FETCH in progress */
	long best_seq, best_size;
	int64_t t_cycle_us;
	int64_t deadline_us; /* 0: none */
	char *lbuf;          /* a partial line, allocated only when a line spans reads */
	size_t llen, lcap;
	char obuf[256];
	size_t olen, ooff;
};

struct bench {
	/* options */
	enum bench_mode mode;
	struct sockaddr_storage target;
	socklen_t target_len;
	char target_str[SOCK_ADDR_STRLEN];
	int conc;
	double dur_s, hold_s, setup_max_s, op_timeout_s;
	long max_ops;
	unsigned nusers, user_base;
	const char *uprefix, *password, *label;
	pid_t roots[ROOTS_MAX];
	int nroots;
	int inflight_max;
	int quiet;
	/* state */
	int epfd;
	struct conn *conns;
	char *rbuf;
	int running; /* new cycles and fetches may start */
	long ops_started, ops_ok, errs[ERR_COUNT];
	unsigned long user_ctr;
	uint32_t *lat_us;
	long lat_n, lat_cap;
	long fetch_ok;
	uint64_t fetch_bytes;
	int64_t t_first_fetch, t_last_fetch;
	int n_hold, n_open, n_failed_idle;
	char first_err[256];
};

static volatile sig_atomic_t stop_flag;

static void conn_start(struct bench *, struct conn *);

static void
on_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static int64_t
now_us(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		return 0;
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void say(const struct bench *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
say(const struct bench *b, const char *fmt, ...)
{
	va_list ap;

	if (b->quiet)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
}

static void
epoll_watch(struct bench *b, struct conn *c, int out)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLRDHUP | (out ? EPOLLOUT : 0);
	ev.data.ptr = c;
	if (epoll_ctl(b->epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1)
		perror("imap-bench: epoll_ctl");
	c->outwatch = out;
}

static void
conn_close(struct bench *b, struct conn *c)
{
	if (c->fd >= 0) {
		/* close() removes the fd from the epoll set; nothing to undo by hand. */
		close(c->fd);
		b->n_open--;
	}
	c->fd = -1;
	c->llen = 0;
	c->lit_rem = 0;
	c->olen = c->ooff = 0;
	c->deadline_us = 0;
}

/* The one place a connection ends; ok says whether its cycle ended cleanly. */
static void
conn_finish(struct bench *b, struct conn *c, int ok, enum bench_err err)
{
	if (c->st == ST_HOLD)
		b->n_hold--;
	if (!ok) {
		b->errs[err]++;
		if (b->mode == MODE_IDLE)
			b->n_failed_idle++;
	}
	conn_close(b, c);
	if (b->mode == MODE_LOGIN && b->running && !stop_flag) {
		if (ok) {
			conn_start(b, c);
		} else {
			c->st = ST_BACKOFF;
			c->deadline_us = now_us() + BACKOFF_US;
		}
	} else {
		c->st = ST_FREE;
	}
}

static void
conn_fail(struct bench *b, struct conn *c, enum bench_err err, const char *line, size_t len)
{
	char *p;

	if (b->first_err[0] == '\0') {
		if (len > 200)
			len = 200;
		(void)str_format(b->first_err, sizeof(b->first_err), "%s: %.*s", err_names[err],
		                 (int)len, line);
		for (p = b->first_err; *p != '\0'; p++)
			if (*p == '\r' || *p == '\n' || *p == '"')
				*p = ' ';
	}
	conn_finish(b, c, 0, err);
}

/* 0 when everything is written or the rest waits for EPOLLOUT; -1 on a write error. */
static int
conn_flush(struct bench *b, struct conn *c)
{
	ssize_t w;

	while (c->ooff < c->olen) {
		w = write(c->fd, c->obuf + c->ooff, c->olen - c->ooff);
		if (w == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				if (!c->outwatch)
					epoll_watch(b, c, 1);
				return 0;
			}
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->ooff += (size_t)w;
	}
	c->olen = c->ooff = 0;
	if (c->outwatch)
		epoll_watch(b, c, 0);
	return 0;
}

/* Sends "TAG command\r\n"; -1 if the connection was closed. */
static int
conn_command(struct bench *b, struct conn *c, enum imap_step step, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
conn_command(struct bench *b, struct conn *c, enum imap_step step, const char *fmt, ...)
{
	char cmd[200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	c->tagn++;
	if (n < 0 || (size_t)n >= sizeof(cmd) ||
	    str_format(c->tag, sizeof(c->tag), "a%u", c->tagn) == -1 ||
	    str_format(c->obuf, sizeof(c->obuf), "%s %s\r\n", c->tag, cmd) == -1) {
		conn_fail(b, c, ERR_PROTO, "command too long", 16);
		return -1;
	}
	c->taglen = strlen(c->tag);
	c->olen = strlen(c->obuf);
	c->ooff = 0;
	c->step = step;
	c->st = ST_CMD;
	c->deadline_us = now_us() + (int64_t)(b->op_timeout_s * 1e6);
	if (conn_flush(b, c) == -1) {
		conn_fail(b, c, ERR_IO, "write", 5);
		return -1;
	}
	return 0;
}

static void
conn_start(struct bench *b, struct conn *c)
{
	struct epoll_event ev;
	char err[128];
	int one = 1;

	c->fd = sock_connect_start(&b->target, b->target_len, err, sizeof(err));
	if (c->fd == -1) {
		if (b->first_err[0] == '\0')
			(void)str_format(b->first_err, sizeof(b->first_err), "connect: %s", err);
		b->errs[ERR_CONNECT]++;
		if (b->mode == MODE_IDLE)
			b->n_failed_idle++;
		c->st = ST_BACKOFF;
		c->deadline_us = now_us() + BACKOFF_US;
		return;
	}
	b->n_open++;
	/* Commands are single writes; Nagle would only delay them behind delayed ACKs. */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == -1)
		perror("imap-bench: TCP_NODELAY");
	c->tagn = 0;
	c->counted = 0;
	c->best_seq = c->best_size = 0;
	c->user = b->user_base + (unsigned)(b->user_ctr++ % b->nusers);
	c->t_cycle_us = now_us();
	c->deadline_us = c->t_cycle_us + (int64_t)(b->op_timeout_s * 1e6);
	c->st = ST_CONNECTING;
	if (b->mode == MODE_LOGIN)
		b->ops_started++;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
	ev.data.ptr = c;
	c->outwatch = 1;
	if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		(void)str_format(err, sizeof(err), "epoll_ctl: %s", strerror(errno));
		conn_fail(b, c, ERR_IO, err, strlen(err));
	}
}

static int
starts_with(const char *l, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && strncasecmp(l, prefix, n) == 0;
}

static void
fetch_next(struct bench *b, struct conn *c)
{
	if (b->t_first_fetch == 0)
		b->t_first_fetch = now_us();
	c->cur_body = 0;
	(void)conn_command(b, c, STEP_BODY, "FETCH %ld BODY.PEEK[]", c->best_seq);
}

static void
conn_hold(struct bench *b, struct conn *c)
{
	c->st = ST_HOLD;
	c->deadline_us = 0;
	b->n_hold++;
}

/* The tagged OK of c->step arrived: the next step of the cycle. */
static void
conn_step_done(struct bench *b, struct conn *c)
{
	int64_t t, us;

	switch (c->step) {
	case STEP_LOGIN:
		(void)conn_command(b, c, STEP_SELECT, "SELECT INBOX");
		break;
	case STEP_SELECT:
		if (b->mode == MODE_LOGIN)
			(void)conn_command(b, c, STEP_LOGOUT, "LOGOUT");
		else if (b->mode == MODE_IDLE)
			conn_hold(b, c);
		else
			(void)conn_command(b, c, STEP_SIZES, "FETCH 1:* RFC822.SIZE");
		break;
	case STEP_SIZES:
		if (c->best_seq <= 0)
			conn_fail(b, c, ERR_PROTO, "no message found", 16);
		else if (b->running && !stop_flag)
			fetch_next(b, c);
		else
			(void)conn_command(b, c, STEP_LOGOUT, "LOGOUT");
		break;
	case STEP_BODY:
		b->fetch_ok++;
		b->fetch_bytes += c->cur_body;
		b->t_last_fetch = now_us();
		if (b->running && !stop_flag && b->fetch_ok < b->max_ops)
			fetch_next(b, c);
		else
			(void)conn_command(b, c, STEP_LOGOUT, "LOGOUT");
		break;
	case STEP_LOGOUT:
		t = now_us();
		if (b->mode == MODE_LOGIN && !c->counted) {
			c->counted = 1;
			b->ops_ok++;
			if (b->lat_n < b->lat_cap) {
				us = t - c->t_cycle_us;
				b->lat_us[b->lat_n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
			}
		}
		/* The cycle ends when the server closes (RFC 9051 6.1.3). */
		c->st = ST_WAITEOF;
		c->deadline_us = t + WAITEOF_US;
		break;
	case STEP_NONE:
		break;
	}
}

/* A literal announced at the end of a line: "{123}" or "{123+}"; -1 if none. */
static long
line_literal(const char *l, size_t len)
{
	size_t i, end;
	long v = 0;

	if (len < 3 || l[len - 1] != '}')
		return -1;
	i = len - 2;
	if (l[i] == '+')
		i--;
	end = i;
	while (i > 0 && isdigit((unsigned char)l[i]))
		i--;
	if (l[i] != '{' || i == end)
		return -1;
	for (i++; i <= end; i++) {
		if (v > (LONG_MAX - 9) / 10)
			return -1;
		v = v * 10 + (l[i] - '0');
	}
	return v;
}

/* One response line. -1 when the connection was closed or restarted by it. */
static int
conn_line(struct bench *b, struct conn *c, const char *l, size_t len)
{
	int fd = c->fd;
	long lit = line_literal(l, len), seq, sz;
	const char *p;

	if (c->st == ST_GREETING) {
		if (!starts_with(l, len, "* OK")) {
			conn_fail(b, c, ERR_PROTO, l, len);
			return -1;
		}
		(void)conn_command(b, c, STEP_LOGIN, "LOGIN %s%u %s", b->uprefix, c->user,
		                   b->password);
	} else if (c->st == ST_CMD) {
		if (len > c->taglen && memcmp(l, c->tag, c->taglen) == 0 && l[c->taglen] == ' ') {
			if (!starts_with(l + c->taglen + 1, len - c->taglen - 1, "OK")) {
				conn_fail(b, c, ERR_PROTO, l, len);
				return -1;
			}
			conn_step_done(b, c);
		} else if (c->step == STEP_SIZES && starts_with(l, len, "* ")) {
			seq = strtol(l + 2, NULL, 10);
			p = memmem(l, len, "RFC822.SIZE ", 12);
			if (p != NULL && (sz = strtol(p + 12, NULL, 10)) > c->best_size) {
				c->best_size = sz;
				c->best_seq = seq;
			}
		}
	}
	if (c->fd != fd || c->fd == -1)
		return -1;
	if (lit >= 0)
		c->lit_rem = (uint64_t)lit;
	return 0;
}

static int
lbuf_append(struct conn *c, const char *p, size_t n)
{
	size_t ncap;
	char *nb;

	if (c->llen + n > LINE_MAX_BYTES)
		return -1;
	if (c->llen + n > c->lcap) {
		for (ncap = c->lcap ? c->lcap : 256; ncap < c->llen + n; ncap *= 2)
			;
		if ((nb = realloc(c->lbuf, ncap)) == NULL)
			return -1;
		c->lbuf = nb;
		c->lcap = ncap;
	}
	memcpy(c->lbuf + c->llen, p, n);
	c->llen += n;
	return 0;
}

/* Splits received bytes into lines and literals. -1 when the connection went away. */
static int
conn_input(struct bench *b, struct conn *c, const char *p, size_t n)
{
	const char *q, *line;
	size_t len, take;

	while (n > 0) {
		if (c->lit_rem > 0) {
			take = n < c->lit_rem ? n : (size_t)c->lit_rem;
			c->lit_rem -= take;
			if (c->st == ST_CMD && c->step == STEP_BODY)
				c->cur_body += take;
			p += take;
			n -= take;
			continue;
		}
		if ((q = memchr(p, '\n', n)) == NULL) {
			if (lbuf_append(c, p, n) == -1) {
				conn_fail(b, c, ERR_PROTO, "line too long", 13);
				return -1;
			}
			return 0;
		}
		if (c->llen > 0) {
			if (lbuf_append(c, p, (size_t)(q - p)) == -1) {
				conn_fail(b, c, ERR_PROTO, "line too long", 13);
				return -1;
			}
			line = c->lbuf;
			len = c->llen;
		} else {
			line = p;
			len = (size_t)(q - p);
		}
		if (len > 0 && line[len - 1] == '\r')
			len--;
		n -= (size_t)(q + 1 - p);
		p = q + 1;
		c->llen = 0;
		if (conn_line(b, c, line, len) == -1)
			return -1;
	}
	return 0;
}

static void
conn_eof(struct bench *b, struct conn *c)
{
	if (c->st == ST_WAITEOF) {
		conn_finish(b, c, 1, ERR_EOF);
	} else if (c->st == ST_CMD && c->step == STEP_LOGOUT) {
		/* Closed before the tagged OK of LOGOUT: the cycle still completed. */
		conn_step_done(b, c);
		conn_finish(b, c, 1, ERR_EOF);
	} else {
		conn_fail(b, c, ERR_EOF, "unexpected EOF", 14);
	}
}

static void
conn_event(struct bench *b, struct conn *c, uint32_t ev)
{
	char err[128];
	uint64_t want;
	ssize_t r;
	int i;

	if (c->fd == -1)
		return;
	if (c->st == ST_CONNECTING) {
		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		if (sock_connect_result(c->fd) == -1) {
			(void)str_format(err, sizeof(err), "connect: %s", strerror(errno));
			conn_fail(b, c, ERR_CONNECT, err, strlen(err));
			return;
		}
		c->st = ST_GREETING;
		epoll_watch(b, c, 0);
	}
	if ((ev & EPOLLOUT) && c->olen > 0 && conn_flush(b, c) == -1) {
		conn_fail(b, c, ERR_IO, "write", 5);
		return;
	}
	if (!(ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		return;
	/* A bounded number of reads per event keeps one fast connection from starving others. */
	for (i = 0; i < 8; i++) {
		if (c->lit_rem >= DISCARD_MIN && c->llen == 0) {
			/*
			 * A message body: the kernel drops it without copying (MSG_TRUNC on TCP),
			 * which leaves more of the shared CPUs to the servers under test.
			 */
			want = c->lit_rem > (1u << 30) ? (1u << 30) : c->lit_rem;
			r = recv(c->fd, NULL, want, MSG_TRUNC | MSG_DONTWAIT);
			if (r > 0) {
				c->lit_rem -= (uint64_t)r;
				if (c->st == ST_CMD && c->step == STEP_BODY)
					c->cur_body += (uint64_t)r;
				continue;
			}
		} else {
			r = read(c->fd, b->rbuf, READ_BUF_BYTES);
		}
		if (r > 0) {
			if (conn_input(b, c, b->rbuf, (size_t)r) == -1)
				return;
			if (r < READ_BUF_BYTES && !(ev & (EPOLLRDHUP | EPOLLHUP)))
				break;
			continue;
		}
		if (r == 0) {
			conn_eof(b, c);
			return;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		if (errno == EINTR)
			continue;
		if (c->st == ST_WAITEOF) {
			conn_finish(b, c, 1, ERR_IO);
		} else {
			(void)str_format(err, sizeof(err), "read: %s", strerror(errno));
			conn_fail(b, c, ERR_IO, err, strlen(err));
		}
		return;
	}
}

static void
scan_timeouts(struct bench *b, int64_t t)
{
	struct conn *c;
	int i;

	for (i = 0; i < b->conc; i++) {
		c = &b->conns[i];
		if (c->deadline_us == 0 || t < c->deadline_us)
			continue;
		if (c->st == ST_BACKOFF) {
			c->deadline_us = 0;
			if (b->mode == MODE_LOGIN && b->running && !stop_flag)
				conn_start(b, c);
			else
				c->st = ST_FREE;
		} else if (c->st == ST_WAITEOF) {
			conn_finish(b, c, 1, ERR_TIMEOUT);
		} else if (c->fd >= 0) {
			conn_fail(b, c, ERR_TIMEOUT, "timeout", 7);
		}
	}
}

/* ---- memory of the process trees under test ---- */

struct proc {
	pid_t pid, ppid;
	int in;
};

static long
proc_kb(pid_t pid, const char *file, const char *field)
{
	char path[64], line[256];
	size_t fl = strlen(field);
	long v = -1;
	FILE *f;

	if (str_format(path, sizeof(path), "/proc/%d/%s", (int)pid, file) == -1 ||
	    (f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, fl) == 0) {
			v = strtol(line + fl, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static int
proc_ppid(const char *pid, pid_t *ppid)
{
	char path[300], buf[512], st;
	const char *rp;
	size_t r;
	int pp;
	FILE *f;

	if (str_format(path, sizeof(path), "/proc/%s/stat", pid) == -1 ||
	    (f = fopen(path, "r")) == NULL)
		return -1;
	r = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[r] = '\0';
	/* The command name may hold spaces and parentheses: parse after the last ')'. */
	if ((rp = strrchr(buf, ')')) == NULL || sscanf(rp + 1, " %c %d", &st, &pp) != 2)
		return -1;
	*ppid = pp;
	return 0;
}

/* Sums VmRSS and Pss (kB) over every process in the trees rooted at b->roots. */
static void
mem_trees(const struct bench *b, long *rss_kb, long *pss_kb, int *nproc)
{
	struct proc *v = NULL, *nv;
	size_t n = 0, cap = 0, i, j;
	struct dirent *de;
	int changed, k;
	long rss, pss;
	pid_t ppid;
	DIR *d;

	*rss_kb = *pss_kb = 0;
	*nproc = 0;
	if (b->nroots == 0 || (d = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (!isdigit((unsigned char)de->d_name[0]) || proc_ppid(de->d_name, &ppid) == -1)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			if ((nv = reallocarray(v, cap, sizeof(*v))) == NULL)
				break;
			v = nv;
		}
		v[n].pid = (pid_t)atoi(de->d_name);
		v[n].ppid = ppid;
		v[n].in = 0;
		for (k = 0; k < b->nroots; k++)
			if (v[n].pid == b->roots[k])
				v[n].in = 1;
		n++;
	}
	closedir(d);
	/* Descendants to any depth; a few thousand processes, twice per idle run. */
	do {
		changed = 0;
		for (i = 0; i < n; i++) {
			if (v[i].in)
				continue;
			for (j = 0; j < n; j++)
				if (v[j].in && v[j].pid == v[i].ppid) {
					v[i].in = changed = 1;
					break;
				}
		}
	} while (changed);
	for (i = 0; i < n; i++) {
		if (!v[i].in || (rss = proc_kb(v[i].pid, "status", "VmRSS:")) < 0)
			continue;
		pss = proc_kb(v[i].pid, "smaps_rollup", "Pss:");
		*rss_kb += rss;
		if (pss > 0)
			*pss_kb += pss;
		(*nproc)++;
	}
	free(v);
}

/* ---- options and the loop ---- */

static void
usage(void)
{
	fprintf(stderr,
	        "usage: imap-bench -H ADDR:PORT [-m login|idle|fetch] [-c conns] [-t secs]\n"
	        "        [-n max_ops] [-u nusers] [-B first_user] [-x user_prefix] [-p password]\n"
	        "        [-r root_pid]... [-w hold_s] [-S setup_max_s] [-T op_timeout_s]\n"
	        "        [-i inflight_connects] [-l label] [-q]\n"
	        "ADDR must be in 127.0.0.0/8 or ::1. One RESULT line on stdout.\n");
	exit(2);
}

static int
is_loopback(const struct sockaddr_storage *ss)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

	if (ss->ss_family == AF_INET)
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	return ss->ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
}

static double
opt_double(const char *s, double min, double max)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		usage();
	return v;
}

static uint64_t
opt_u64(const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (parse_u64(s, min, max, &v) == -1)
		usage();
	return v;
}

static void
parse_options(struct bench *b, int argc, char **argv)
{
	char err[128];
	int opt;

	while ((opt = getopt(argc, argv, "H:m:c:t:n:u:B:x:p:r:w:S:T:i:l:qh")) != -1) {
		switch (opt) {
		case 'H':
			if (sock_addr_parse(optarg, &b->target, &b->target_len, err, sizeof(err)) ==
			    -1) {
				fprintf(stderr, "imap-bench: %s\n", err);
				exit(2);
			}
			if (!is_loopback(&b->target)) {
				fprintf(stderr, "imap-bench: refusing %s: loopback only\n", optarg);
				exit(2);
			}
			if (str_copy(b->target_str, sizeof(b->target_str), optarg) == -1)
				usage();
			break;
		case 'm':
			if (strcmp(optarg, "login") == 0)
				b->mode = MODE_LOGIN;
			else if (strcmp(optarg, "idle") == 0)
				b->mode = MODE_IDLE;
			else if (strcmp(optarg, "fetch") == 0)
				b->mode = MODE_FETCH;
			else
				usage();
			break;
		case 'c':
			b->conc = (int)opt_u64(optarg, 1, CONNS_MAX);
			break;
		case 't':
			b->dur_s = opt_double(optarg, 0.1, RUN_MAX_S);
			break;
		case 'n':
			b->max_ops = (long)opt_u64(optarg, 1, 100000000);
			break;
		case 'u':
			b->nusers = (unsigned)opt_u64(optarg, 1, 10000000);
			break;
		case 'B':
			b->user_base = (unsigned)opt_u64(optarg, 0, 10000000);
			break;
		case 'x':
			b->uprefix = optarg;
			break;
		case 'p':
			b->password = optarg;
			break;
		case 'r':
			if (b->nroots < ROOTS_MAX)
				b->roots[b->nroots++] = (pid_t)opt_u64(optarg, 1, INT32_MAX);
			break;
		case 'w':
			b->hold_s = opt_double(optarg, 0, 60);
			break;
		case 'S':
			b->setup_max_s = opt_double(optarg, 1, RUN_MAX_S);
			break;
		case 'T':
			b->op_timeout_s = opt_double(optarg, 0.1, 120);
			break;
		case 'i':
			b->inflight_max = (int)opt_u64(optarg, 1, CONNS_MAX);
			break;
		case 'l':
			b->label = optarg;
			break;
		case 'q':
			b->quiet = 1;
			break;
		default:
			usage();
		}
	}
	if (b->target_len == 0 || optind != argc || strlen(b->uprefix) > 40 ||
	    strlen(b->password) > 100 || strlen(b->label) > 40)
		usage();
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Idle mode: open connections gradually, hold, measure, then log every one out. */
struct idle_run {
	int next, measured, logout_sent, held_at_measure;
	int64_t hold_since, logout_at;
	double setup_s;
	long rss0, pss0, rss1, pss1;
	int np0, np1;
};

/* Returns 1 when the idle run is over. */
static int
idle_tick(struct bench *b, struct idle_run *ir, int64_t t, int64_t t_start, int64_t t_setup_end)
{
	struct conn *c;
	int busy, i;

	if (!ir->measured && !stop_flag && t < t_setup_end) {
		/* A bounded number of logins in flight, like clients arriving over time. */
		for (busy = b->n_open - b->n_hold; ir->next < b->conc && busy < b->inflight_max;
		     busy++)
			conn_start(b, &b->conns[ir->next++]);
	}
	if (!ir->measured &&
	    (b->n_hold + b->n_failed_idle >= b->conc || t >= t_setup_end || stop_flag) &&
	    (ir->next >= b->conc || t >= t_setup_end || stop_flag)) {
		if (ir->hold_since == 0) {
			ir->hold_since = t;
			ir->setup_s = (double)(t - t_start) / 1e6;
			say(b, "[%s] %d connections held (%d failed) after %.2fs; holding %.1fs\n",
			    b->label, b->n_hold, b->n_failed_idle, ir->setup_s, b->hold_s);
		}
		if (t - ir->hold_since >= (int64_t)(b->hold_s * 1e6)) {
			ir->held_at_measure = b->n_hold;
			mem_trees(b, &ir->rss1, &ir->pss1, &ir->np1);
			ir->measured = 1;
			b->running = 0;
		}
	}
	if (ir->measured && !ir->logout_sent) {
		ir->logout_sent = 1;
		ir->logout_at = t;
		for (i = 0; i < b->conc; i++) {
			c = &b->conns[i];
			if (c->fd >= 0 && c->st == ST_HOLD) {
				b->n_hold--;
				(void)conn_command(b, c, STEP_LOGOUT, "LOGOUT");
			} else if (c->fd >= 0) {
				conn_close(b, c);
				c->st = ST_FREE;
			}
		}
	}
	return ir->logout_sent && (b->n_open == 0 || t - ir->logout_at > LOGOUT_DRAIN_US);
}

/* Login and fetch modes: returns 1 when the run is over (every started cycle ended). */
static int
load_tick(struct bench *b, int64_t t, int64_t t_end)
{
	int i, active = 0;

	if (b->running &&
	    (t >= t_end || stop_flag || (b->mode == MODE_LOGIN && b->ops_started >= b->max_ops) ||
	     (b->mode == MODE_FETCH && b->fetch_ok >= b->max_ops)))
		b->running = 0;
	if (b->running)
		return 0;
	for (i = 0; i < b->conc; i++) {
		if (b->conns[i].fd >= 0)
			active++;
		else if (b->conns[i].st == ST_BACKOFF)
			b->conns[i].st = ST_FREE, b->conns[i].deadline_us = 0;
	}
	return active == 0;
}

static void
report(struct bench *b, const struct idle_run *ir, int64_t t_start)
{
	double el = (double)(now_us() - t_start) / 1e6, p50 = 0, p99 = 0, w;
	char ebuf[160];
	size_t eo = 0;
	long nerr = 0, k;
	int i, m;

	ebuf[0] = '\0';
	for (i = 0; i < ERR_COUNT; i++) {
		nerr += b->errs[i];
		if (str_format(ebuf + eo, sizeof(ebuf) - eo, "%s%s:%ld", i ? "," : "",
		               err_names[i], b->errs[i]) == 0)
			eo += strlen(ebuf + eo);
	}
	if (b->mode == MODE_LOGIN) {
		if (b->lat_n > 0) {
			qsort(b->lat_us, (size_t)b->lat_n, sizeof(*b->lat_us), cmp_u32);
			p50 = b->lat_us[b->lat_n / 2] / 1000.0;
			k = (long)((double)b->lat_n * 0.99);
			p99 = b->lat_us[k < b->lat_n ? k : b->lat_n - 1] / 1000.0;
		}
		printf("RESULT label=%s proto=imap mode=login target=%s conc=%d secs=%.2f ok=%ld "
		       "err=%ld rate=%.1f p50_ms=%.3f p99_ms=%.3f errs=%s first_err=\"%s\"\n",
		       b->label, b->target_str, b->conc, el, b->ops_ok, nerr,
		       el > 0 ? (double)b->ops_ok / el : 0, p50, p99, ebuf, b->first_err);
	} else if (b->mode == MODE_IDLE) {
		m = ir->held_at_measure;
		printf("RESULT label=%s proto=imap mode=idle target=%s want=%d held=%d err=%ld "
		       "setup_s=%.2f procs_before=%d procs=%d rss_before_kb=%ld rss_kb=%ld "
		       "pss_before_kb=%ld pss_kb=%ld rss_per_conn_kb=%.2f rss_delta_per_conn_kb=%.2f "
		       "pss_per_conn_kb=%.2f pss_delta_per_conn_kb=%.2f errs=%s first_err=\"%s\"\n",
		       b->label, b->target_str, b->conc, m, nerr, ir->setup_s, ir->np0, ir->np1,
		       ir->rss0, ir->rss1, ir->pss0, ir->pss1, m ? (double)ir->rss1 / m : 0,
		       m ? (double)(ir->rss1 - ir->rss0) / m : 0, m ? (double)ir->pss1 / m : 0,
		       m ? (double)(ir->pss1 - ir->pss0) / m : 0, ebuf, b->first_err);
	} else {
		w = b->t_last_fetch > b->t_first_fetch
		        ? (double)(b->t_last_fetch - b->t_first_fetch) / 1e6
		        : 0;
		printf("RESULT label=%s proto=imap mode=fetch target=%s conc=%d secs=%.2f fetches=%ld "
		       "bytes=%llu mbps=%.1f err=%ld errs=%s first_err=\"%s\"\n",
		       b->label, b->target_str, b->conc, w, b->fetch_ok,
		       (unsigned long long)b->fetch_bytes,
		       w > 0 ? (double)b->fetch_bytes / w / 1e6 : 0, nerr, ebuf, b->first_err);
	}
}

int
main(int argc, char **argv)
{
	struct bench b = {
	    .mode = MODE_LOGIN, .conc = 50, .dur_s = 10, .hold_s = 2, .setup_max_s = 180,
	    .op_timeout_s = 15, .max_ops = 5000000, .nusers = 1000, .user_base = 1,
	    .uprefix = "user", .password = "pw", .label = "", .inflight_max = 64, .running = 1,
	};
	struct idle_run ir;
	struct epoll_event evs[512];
	int64_t t, t_start, t_end, hard_end, last_scan = 0;
	struct sigaction sa;
	struct rlimit rl;
	int i, n, done;

	parse_options(&b, argc, argv);
	memset(&ir, 0, sizeof(ir));
	/* Each connection is one descriptor: raise the soft limit as far as the hard one. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			perror("imap-bench: setrlimit");
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur < (rlim_t)b.conc + 32) {
		fprintf(stderr, "imap-bench: descriptor limit too low for %d connections\n", b.conc);
		return 2;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) == -1)
		return 3;
	sa.sa_handler = on_signal;
	if (sigaction(SIGINT, &sa, NULL) == -1 || sigaction(SIGTERM, &sa, NULL) == -1)
		return 3;

	b.epfd = epoll_create1(EPOLL_CLOEXEC);
	b.conns = calloc((size_t)b.conc, sizeof(*b.conns));
	b.rbuf = malloc(READ_BUF_BYTES);
	if (b.epfd == -1 || b.conns == NULL || b.rbuf == NULL) {
		perror("imap-bench: init");
		return 3;
	}
	for (i = 0; i < b.conc; i++) {
		b.conns[i].fd = -1;
		b.conns[i].st = ST_FREE;
	}
	if (b.mode == MODE_LOGIN) {
		b.lat_cap = b.max_ops < LATENCY_MAX ? b.max_ops : LATENCY_MAX;
		if ((b.lat_us = calloc((size_t)b.lat_cap, sizeof(*b.lat_us))) == NULL)
			return 3;
	}
	if (b.mode == MODE_IDLE) {
		mem_trees(&b, &ir.rss0, &ir.pss0, &ir.np0);
		say(&b, "[%s] before: procs=%d rss=%ld kB pss=%ld kB\n", b.label, ir.np0, ir.rss0,
		    ir.pss0);
	}

	t_start = now_us();
	if (b.mode == MODE_IDLE) {
		t_end = t_start + (int64_t)(b.setup_max_s * 1e6);
		hard_end = t_end + (int64_t)((b.hold_s + 30) * 1e6);
	} else {
		t_end = t_start + (int64_t)(b.dur_s * 1e6);
		hard_end = t_end + (int64_t)((b.op_timeout_s + 15) * 1e6);
		for (i = 0; i < b.conc; i++)
			conn_start(&b, &b.conns[i]);
	}
	for (;;) {
		t = now_us();
		if (t > hard_end) {
			say(&b, "[%s] hard time limit reached\n", b.label);
			break;
		}
		done = b.mode == MODE_IDLE ? idle_tick(&b, &ir, t, t_start, t_end)
		                           : load_tick(&b, t, t_end);
		if (done)
			break;
		n = epoll_wait(b.epfd, evs, (int)ARRAY_LEN(evs), 5);
		if (n == -1 && errno != EINTR) {
			perror("imap-bench: epoll_wait");
			break;
		}
		for (i = 0; i < n; i++)
			conn_event(&b, evs[i].data.ptr, evs[i].events);
		t = now_us();
		if (t - last_scan > SCAN_EVERY_US) {
			scan_timeouts(&b, t);
			last_scan = t;
		}
	}
	for (i = 0; i < b.conc; i++) {
		conn_close(&b, &b.conns[i]);
		free(b.conns[i].lbuf);
	}
	report(&b, &ir, t_start);
	if (fflush(stdout) == EOF)
		return 3;
	free(b.conns);
	free(b.rbuf);
	free(b.lat_us);
	close(b.epfd);
	return 0;
}
