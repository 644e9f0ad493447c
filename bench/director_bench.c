/*
 * director_bench: the director's reconcile path against kernel IPVS at scale, and a mail
 * responder for the health-check CPU benchmark. A benchmark, not a test: it measures and
 * prints "BENCH key=value" lines (bench/bench-director.sh makes the table); it checks only
 * that what it timed really happened. Runs inside user-mode Linux, in a network namespace
 * of its own: it adds and deletes IPVS services there. Never run it on a real director.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/socket.h>

#include "ipvs.h"
#include "ipvs_msg.h"
#include "log.h"
#include "plan.h"
#include "util.h"

#define NOOP_ROUNDS     5
#define MAX_DESTS       65000
#define RESP_MAX_PORTS  16
#define RESP_MAX_EVENTS 256
#define RESP_LINE_BYTES 512

static uint64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double
ms_since(uint64_t t0)
{
	return (double)(now_us() - t0) / 1000.0;
}

/* ---------------------------------------------------------------- reconcile at scale */

struct kernel_view {
	struct plan_kernel_service *ks;
	size_t n;
};

static void
view_free(struct kernel_view *v)
{
	for (size_t i = 0; i < v->n; i++)
		free(v->ks[i].dests);
	free(v->ks);
	v->ks = NULL;
	v->n = 0;
}

/* What reconcile_dump does: every service, then the destinations of those at our VIP. */
static int
view_dump(struct ipvs *h, const struct plan_vip *vip, struct kernel_view *v)
{
	struct ipvs_service *svcs;
	struct ipvs_error err;
	size_t n;

	v->ks = NULL;
	v->n = 0;
	if (ipvs_services_dump(h, &svcs, &n, &err) == -1) {
		log_warnx("%s", err.msg);
		return -1;
	}
	if ((v->ks = calloc(n + 1, sizeof(*v->ks))) == NULL)
		fatal("calloc");
	for (size_t i = 0; i < n; i++) {
		if (svcs[i].af != vip->af || memcmp(&svcs[i].addr, &vip->addr, 4) != 0)
			continue;
		v->ks[v->n].svc = svcs[i];
		if (ipvs_dests_dump(h, &svcs[i], &v->ks[v->n].dests, &v->ks[v->n].ndests, &err) ==
		    -1) {
			log_warnx("%s", err.msg);
			free(svcs);
			view_free(v);
			return -1;
		}
		v->n++;
	}
	free(svcs);
	return 0;
}

/* What reconcile_apply does: the plan as one pipelined batch; returns failed ops. */
static int
plan_apply(struct ipvs *h, const struct plan *p)
{
	struct ipvs_batch *b;
	struct ipvs_error err;
	const struct ipvs_error *res;
	int failed = 0, q;

	if ((b = ipvs_batch_begin(h)) == NULL)
		fatalx("batch");
	for (size_t i = 0; i < p->nops; i++) {
		const struct plan_op *op = &p->ops[i];

		switch (op->op) {
		case IPVS_OP_SERVICE_ADD:
			q = ipvs_batch_service_add(b, &op->svc, &err);
			break;
		case IPVS_OP_DEST_ADD:
			q = ipvs_batch_dest_add(b, &op->svc, &op->dest, &err);
			break;
		case IPVS_OP_DEST_EDIT:
			q = ipvs_batch_dest_edit(b, &op->svc, &op->dest, &err);
			break;
		case IPVS_OP_DEST_DEL:
			q = ipvs_batch_dest_del(b, &op->svc, &op->dest, &err);
			break;
		default:
			q = -1;
		}
		if (q == -1)
			failed++;
	}
	if (ipvs_batch_commit(b, &err) == -1)
		log_warnx("batch: %s", err.msg);
	for (size_t i = 0; i < ipvs_batch_count(b); i++) {
		res = ipvs_batch_result(b, i);
		if (res == NULL || res->code != 0) {
			if (failed++ == 0)
				log_warnx("op %zu: %s", i, res ? res->msg : "no result");
		}
	}
	ipvs_batch_free(b);
	return failed;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/*
 * One service at VIPADDR:25 with N DR destinations 10.90.x.y:25, brought in by one
 * reconcile pass (dump, plan, batch) from an empty table; then NOOP_ROUNDS passes that
 * find nothing to do; then the service is deleted again.
 */
static int
cmd_reconcile(const char *vipaddr, const char *nstr)
{
	struct plan_service want;
	struct plan_vip vip;
	struct kernel_view v;
	struct plan p;
	struct ipvs_error err;
	struct ipvs *h;
	uint64_t n, t0, t1, t2;
	double dump_ms, plan_ms, apply_ms, noop[NOOP_ROUNDS], noop_dump[NOOP_ROUNDS];
	char a[INET_ADDRSTRLEN];
	int failed, ok = 1;

	if (parse_u64(nstr, 1, MAX_DESTS, &n) == -1)
		fatalx("N must be 1..%d", MAX_DESTS);
	if ((h = ipvs_open(&err)) == NULL)
		fatalx("%s", err.msg);
	ipvs_set_timeout(h, 10000);
	memset(&want, 0, sizeof(want));
	want.svc.af = AF_INET;
	want.svc.protocol = IPPROTO_TCP;
	if (inet_pton(AF_INET, vipaddr, &want.svc.addr) != 1)
		fatalx("bad VIP %s", vipaddr);
	want.svc.port = 25;
	(void)str_copy(want.svc.sched, sizeof(want.svc.sched), "wlc");
	memset(&vip, 0, sizeof(vip));
	vip.af = AF_INET;
	vip.addr = want.svc.addr;
	if ((want.dests = calloc(n, sizeof(*want.dests))) == NULL)
		fatal("calloc");
	want.ndests = n;
	for (uint64_t i = 0; i < n; i++) {
		struct ipvs_dest *d = &want.dests[i].dest;

		(void)str_format(a, sizeof(a), "10.90.%u.%u", (unsigned)(i / 250),
		                 (unsigned)(i % 250 + 1));
		d->af = AF_INET;
		(void)inet_pton(AF_INET, a, &d->addr);
		d->port = 25;
		d->fwd = IPVS_FWD_DR;
		d->weight = 100;
		want.dests[i].want = PLAN_WANT_ACTIVE;
	}

	/* The add pass: everything is missing. */
	t0 = now_us();
	if (view_dump(h, &vip, &v) == -1)
		fatalx("dump failed");
	t1 = now_us();
	memset(&p, 0, sizeof(p));
	if (plan_build(&p, &want, 1, v.ks, v.n, &vip, 1, time_mono_ms()) == -1)
		fatalx("plan");
	t2 = now_us();
	failed = plan_apply(h, &p);
	apply_ms = ms_since(t2);
	dump_ms = (double)(t1 - t0) / 1000.0;
	plan_ms = (double)(t2 - t1) / 1000.0;
	printf("BENCH reconcile_add_ops=%zu failed=%d\n", p.nops, failed);
	printf("BENCH reconcile_add_ms=%.1f add_dump_ms=%.1f add_plan_ms=%.1f add_batch_ms=%.1f\n",
	       dump_ms + plan_ms + apply_ms, dump_ms, plan_ms, apply_ms);
	ok &= failed == 0 && p.nops == n + 1;
	plan_free(&p);
	view_free(&v);

	/* No-op passes: the table is as wanted. */
	for (int r = 0; r < NOOP_ROUNDS; r++) {
		t0 = now_us();
		if (view_dump(h, &vip, &v) == -1)
			fatalx("dump failed");
		t1 = now_us();
		memset(&p, 0, sizeof(p));
		if (plan_build(&p, &want, 1, v.ks, v.n, &vip, 1, time_mono_ms()) == -1)
			fatalx("plan");
		noop[r] = ms_since(t0);
		noop_dump[r] = (double)(t1 - t0) / 1000.0;
		if (v.n != 1 || v.ks[0].ndests != n || p.nops != 0) {
			log_warnx("no-op pass %d: %zu services, %zu dests, %zu ops", r, v.n,
			          v.n ? v.ks[0].ndests : 0, p.nops);
			ok = 0;
		}
		plan_free(&p);
		view_free(&v);
	}
	qsort(noop, NOOP_ROUNDS, sizeof(noop[0]), cmp_double);
	qsort(noop_dump, NOOP_ROUNDS, sizeof(noop_dump[0]), cmp_double);
	printf("BENCH reconcile_noop_ms=%.1f noop_min_ms=%.1f noop_max_ms=%.1f noop_dump_ms=%.1f "
	       "rounds=%d\n",
	       noop[NOOP_ROUNDS / 2], noop[0], noop[NOOP_ROUNDS - 1], noop_dump[NOOP_ROUNDS / 2],
	       NOOP_ROUNDS);

	t0 = now_us();
	if (ipvs_service_del(h, &want.svc, &err) == -1) {
		log_warnx("%s", err.msg);
		ok = 0;
	}
	printf("BENCH service_del_ms=%.1f\n", ms_since(t0));
	printf("BENCH reconcile_result=%s\n", ok ? "ok" : "FAILED");
	free(want.dests);
	ipvs_close(h);
	return ok ? 0 : 1;
}

/* ---------------------------------------------------------------- responder */

enum resp_proto {
	RESP_TCP,
	RESP_SMTP,
	RESP_IMAP,
	RESP_POP3,
};

struct resp_conn {
	int fd;
	enum resp_proto proto;
	size_t len;
	char line[RESP_LINE_BYTES];
};

struct resp_listener {
	int fd;
	enum resp_proto proto;
};

static volatile sig_atomic_t resp_stop;

static void
resp_on_signal(int sig)
{
	resp_stop = 1;
}

static void
resp_close(int ep, struct resp_conn *c)
{
	(void)epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* One command line: the answer the checks of hc_proto.c expect; 1 if it ends the session. */
static int
resp_answer(struct resp_conn *c, const char *l)
{
	char out[RESP_LINE_BYTES + 32], tag[64];
	int end = 0;

	switch (c->proto) {
	case RESP_SMTP:
		if (strncasecmp(l, "EHLO", 4) == 0 || strncasecmp(l, "HELO", 4) == 0)
			(void)str_copy(out, sizeof(out), "250-bench\r\n250 8BITMIME\r\n");
		else if (strncasecmp(l, "QUIT", 4) == 0) {
			(void)str_copy(out, sizeof(out), "221 2.0.0 bye\r\n");
			end = 1;
		} else
			(void)str_copy(out, sizeof(out), "250 ok\r\n");
		break;
	case RESP_IMAP:
		if (sscanf(l, "%63s", tag) != 1)
			(void)str_copy(tag, sizeof(tag), "*");
		if (strcasestr(l, " LOGOUT") != NULL) {
			(void)str_format(out, sizeof(out), "* BYE bench\r\n%s OK LOGOUT\r\n", tag);
			end = 1;
		} else
			(void)str_format(out, sizeof(out), "%s OK done\r\n", tag);
		break;
	case RESP_POP3:
		end = strncasecmp(l, "QUIT", 4) == 0;
		(void)str_copy(out, sizeof(out), end ? "+OK bye\r\n" : "+OK\r\n");
		break;
	case RESP_TCP:
		return 0;
	}
	/* A few dozen bytes into an empty socket buffer: written whole or the peer is gone. */
	if (write(c->fd, out, strlen(out)) != (ssize_t)strlen(out))
		return 1;
	return end;
}

static void
resp_read(int ep, struct resp_conn *c)
{
	ssize_t n;
	char *nl;

	n = read(c->fd, c->line + c->len, sizeof(c->line) - 1 - c->len);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		resp_close(ep, c);
		return;
	}
	c->len += (size_t)n;
	c->line[c->len] = '\0';
	while ((nl = strchr(c->line, '\n')) != NULL) {
		*nl = '\0';
		if (nl > c->line && nl[-1] == '\r')
			nl[-1] = '\0';
		if (resp_answer(c, c->line)) {
			resp_close(ep, c);
			return;
		}
		c->len -= (size_t)(nl + 1 - c->line);
		memmove(c->line, nl + 1, c->len + 1);
	}
	if (c->len == sizeof(c->line) - 1)
		resp_close(ep, c);
}

static void
resp_write_count(const char *path, uint64_t count)
{
	char tmp[512], text[32];
	int fd;

	if (str_format(tmp, sizeof(tmp), "%s.tmp", path) == -1)
		return;
	(void)str_format(text, sizeof(text), "%llu\n", (unsigned long long)count);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) == -1)
		return;
	if (write(fd, text, strlen(text)) == (ssize_t)strlen(text))
		(void)rename(tmp, path);
	close(fd);
}

/*
 * Mail servers enough for the director's checks, on every local address (a "local" route
 * makes a whole prefix ours): PROTO:PORT each (tcp, smtp, imap, pop3). Writes the number of
 * connections accepted so far to COUNTFILE every second; exits after MAX_S or on SIGTERM.
 */
static int
cmd_responder(int argc, char **argv)
{
	struct resp_listener ls[RESP_MAX_PORTS];
	struct epoll_event ev, evs[RESP_MAX_EVENTS];
	struct sockaddr_in sin;
	struct resp_conn *c;
	uint64_t max_s, deadline, next_write, accepted = 0, port;
	size_t nls = 0;
	int ep, n, fd, one = 1;
	const char *countfile = argv[0];

	if (parse_u64(argv[1], 1, 3600, &max_s) == -1)
		fatalx("usage: responder COUNTFILE MAX_S PROTO:PORT...");
	signal(SIGTERM, resp_on_signal);
	signal(SIGPIPE, SIG_IGN);
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	for (int i = 2; i < argc && nls < RESP_MAX_PORTS; i++) {
		char *colon = strchr(argv[i], ':');
		enum resp_proto proto;

		if (colon == NULL || parse_u64(colon + 1, 1, 65535, &port) == -1)
			fatalx("bad PROTO:PORT %s", argv[i]);
		*colon = '\0';
		if (strcmp(argv[i], "smtp") == 0)
			proto = RESP_SMTP;
		else if (strcmp(argv[i], "imap") == 0)
			proto = RESP_IMAP;
		else if (strcmp(argv[i], "pop3") == 0)
			proto = RESP_POP3;
		else if (strcmp(argv[i], "tcp") == 0)
			proto = RESP_TCP;
		else
			fatalx("unknown protocol %s", argv[i]);
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1)
			fatal("socket");
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 || listen(fd, 1024) == -1)
			fatal("bind/listen port %llu", (unsigned long long)port);
		ls[nls].fd = fd;
		ls[nls].proto = proto;
		ev.events = EPOLLIN;
		ev.data.ptr = &ls[nls];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1)
			fatal("epoll_ctl");
		nls++;
	}
	resp_write_count(countfile, 0);
	deadline = time_mono_ms() + max_s * 1000;
	next_write = time_mono_ms() + 1000;
	while (!resp_stop && time_mono_ms() < deadline) {
		n = epoll_wait(ep, evs, RESP_MAX_EVENTS, 200);
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;

			if (p >= (void *)ls && p < (void *)(ls + nls)) {
				struct resp_listener *l = p;
				int cfd;

				while ((cfd = accept4(l->fd, NULL, NULL,
				                      SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1) {
					static const char *greet[] = {
					    [RESP_TCP] = "", [RESP_SMTP] = "220 bench ESMTP\r\n",
					    [RESP_IMAP] = "* OK bench ready\r\n",
					    [RESP_POP3] = "+OK bench ready\r\n"};

					accepted++;
					if ((c = calloc(1, sizeof(*c))) == NULL) {
						close(cfd);
						continue;
					}
					c->fd = cfd;
					c->proto = l->proto;
					if (greet[c->proto][0] != '\0' &&
					    write(cfd, greet[c->proto], strlen(greet[c->proto])) <= 0) {
						close(cfd);
						free(c);
						continue;
					}
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) == -1) {
						close(cfd);
						free(c);
					}
				}
			} else {
				resp_read(ep, p);
			}
		}
		if (time_mono_ms() >= next_write) {
			resp_write_count(countfile, accepted);
			next_write += 1000;
		}
	}
	resp_write_count(countfile, accepted);
	return 0;
}

/* ---------------------------------------------------------------- packed: the kernel's floor */

#define PACK_BYTES (60 * 1024)

/*
 * Not the director's path: how fast the kernel takes the same adds when many requests share
 * one sendmsg and only failures are answered (no NLM_F_ACK; one acknowledged GET_INFO at the
 * end is the barrier). Shows what a packed ipvs batch could gain over one send per op.
 */
static int
cmd_packed(const char *vipaddr, const char *nstr)
{
	struct ipvs_req req;
	struct ipvs_error err;
	struct ipvs_reply r;
	struct nl_sock *sk;
	struct nl_msg *msg;
	struct nlmsghdr *nlh;
	struct ipvs *h;
	uint8_t *pack, *rbuf;
	size_t plen = 0, off;
	uint64_t n, t0, sends = 0;
	uint32_t seq = 1, barrier;
	int family, fd, errors = 0, done = 0, waits;
	ssize_t got;
	char a[INET_ADDRSTRLEN];

	if (parse_u64(nstr, 1, MAX_DESTS, &n) == -1)
		fatalx("N must be 1..%d", MAX_DESTS);
	if ((h = ipvs_open(&err)) == NULL)
		fatalx("%s", err.msg);
	family = ipvs_family(h);
	if ((sk = nl_socket_alloc()) == NULL || genl_connect(sk) < 0)
		fatalx("netlink socket");
	nl_socket_disable_auto_ack(sk);
	(void)nl_socket_set_buffer_size(sk, 1 << 20, 1 << 20);
	fd = nl_socket_get_fd(sk);
	if ((pack = malloc(PACK_BYTES)) == NULL || (rbuf = malloc(1 << 16)) == NULL)
		fatal("malloc");
	memset(&req, 0, sizeof(req));
	req.svc.af = AF_INET;
	req.svc.protocol = IPPROTO_TCP;
	if (inet_pton(AF_INET, vipaddr, &req.svc.addr) != 1)
		fatalx("bad VIP %s", vipaddr);
	req.svc.port = 25;
	(void)str_copy(req.svc.sched, sizeof(req.svc.sched), "wlc");
	req.dest.af = AF_INET;
	req.dest.port = 25;
	req.dest.fwd = IPVS_FWD_DR;
	req.dest.weight = 100;

	t0 = now_us();
	for (uint64_t i = 0; i <= n + 1; i++) {
		if (i == 0)
			req.op = IPVS_OP_SERVICE_ADD;
		else if (i <= n) {
			req.op = IPVS_OP_DEST_ADD;
			(void)str_format(a, sizeof(a), "10.90.%u.%u", (unsigned)((i - 1) / 250),
			                 (unsigned)((i - 1) % 250 + 1));
			(void)inet_pton(AF_INET, a, &req.dest.addr);
		} else
			req.op = IPVS_OP_INFO_GET;
		if (ipvs_msg_build(&req, family, &msg, &err) == -1)
			fatalx("%s", err.msg);
		nlh = nlmsg_hdr(msg);
		/* nl_send_auto would add it; without it the kernel skips the message. */
		nlh->nlmsg_flags |= NLM_F_REQUEST;
		if (i <= n)
			nlh->nlmsg_flags &= (uint16_t)~NLM_F_ACK;
		nlh->nlmsg_seq = seq++;
		nlh->nlmsg_pid = nl_socket_get_local_port(sk);
		if (plen + NLMSG_ALIGN(nlh->nlmsg_len) > PACK_BYTES || i == n + 1) {
			if (i == n + 1) {
				memcpy(pack + plen, nlh, nlh->nlmsg_len);
				plen += NLMSG_ALIGN(nlh->nlmsg_len);
			}
			if (nl_sendto(sk, pack, plen) < 0)
				fatalx("send");
			sends++;
			plen = 0;
		}
		if (i <= n) {
			memcpy(pack + plen, nlh, nlh->nlmsg_len);
			plen += NLMSG_ALIGN(nlh->nlmsg_len);
		}
		nlmsg_free(msg);
	}
	barrier = seq - 1;
	for (waits = 0; !done && waits < 100000; waits++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (poll(&p, 1, 10000) != 1 || (got = recv(fd, rbuf, 1 << 16, 0)) <= 0)
			break;
		off = 0;
		while (ipvs_reply_next(rbuf, (size_t)got, &off, &r) == 1) {
			if (r.kind == IPVS_REPLY_ACK && r.error != 0)
				errors++;
			if (r.seq == barrier && r.kind == IPVS_REPLY_ACK)
				done = 1;
		}
	}
	printf("BENCH packed_add_ms=%.1f packed_sends=%llu packed_errors=%d packed_done=%d\n",
	       ms_since(t0), (unsigned long long)sends, errors, done);
	nl_socket_free(sk);
	{
		struct ipvs_service svc = req.svc;
		struct ipvs_dest *dests;
		size_t nd = 0;

		if (ipvs_dests_dump(h, &svc, &dests, &nd, &err) == 0)
			free(dests);
		printf("BENCH packed_dests_in_kernel=%zu\n", nd);
		(void)ipvs_service_del(h, &svc, &err);
		done = done && errors == 0 && nd == n;
	}
	free(pack);
	free(rbuf);
	ipvs_close(h);
	return done ? 0 : 1;
}

static void
usage(void)
{
	fprintf(stderr, "usage: director_bench reconcile VIPADDR N\n"
	                "       director_bench packed VIPADDR N\n"
	                "       director_bench responder COUNTFILE MAX_S PROTO:PORT...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	log_init("director_bench", 1, LOG_LEVEL_INFO);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 4 && strcmp(argv[1], "reconcile") == 0)
		return cmd_reconcile(argv[2], argv[3]);
	if (argc == 4 && strcmp(argv[1], "packed") == 0)
		return cmd_packed(argv[2], argv[3]);
	if (argc >= 5 && strcmp(argv[1], "responder") == 0)
		return cmd_responder(argc - 2, argv + 2);
	usage();
}
