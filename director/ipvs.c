/*
 * The IPVS client's I/O: one generic-netlink socket, the "IPVS" family resolved once at
 * open, requests sent pipelined (a bounded window in flight) and answered by sequence
 * number. Every wait is a poll with a timeout; it never blocks forever, never trusts a
 * message that is not from the kernel, and never lets a reply for one request settle another.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/socket.h>

#include "ipvs.h"
#include "ipvs_msg.h"
#include "log.h"
#include "util.h"

/*
 * Requests in flight at once. Each ACK is queued on our socket while the kernel handles
 * the request (sendmsg runs it synchronously), so the window bounds what must fit in the
 * receive buffer: 32 ACKs of ~1 KiB truesize each, far below the buffer we ask for.
 */
#define BATCH_WINDOW   256 /* ops per datagram; the failure ACKs of one must fit rcvbuf */
#define SOCK_BUF_BYTES (1 << 20)
/* One datagram from the kernel: dumps come in skbs of at most a few tens of KiB. */
#define RECV_MAX_BYTES  (1 << 20)
#define RECV_INIT_BYTES (32 * 1024)

struct ipvs {
	struct nl_sock *sk;
	int fd;
	int family;
	int timeout_ms;
	uint8_t *rbuf;
	size_t rcap;
};

enum batch_state {
	OP_QUEUED,
	OP_SENT,
	OP_DONE,
};

struct batch_op {
	enum ipvs_op op;
	enum batch_state state;
	/*
	 * The request, built into a message only when its datagram goes out: 10,000 messages
	 * alive at once cost 40 MB of fresh pages (libnl allocates a page per message).
	 */
	struct ipvs_req req;
	uint32_t seq;
	struct ipvs_error result;
};

struct ipvs_batch {
	struct ipvs *h;
	struct batch_op *ops;
	size_t n;
	size_t cap;
	int committed;
};

/* A growing array of dumped entries, bounded by IPVS_DUMP_MAX_ENTRIES. */
struct vec {
	void *items;
	size_t n;
	size_t cap;
	size_t size;
};

static void *
vec_push(struct vec *v, int *code)
{
	void *p;
	size_t cap;

	if (v->n == v->cap) {
		if (v->cap >= IPVS_DUMP_MAX_ENTRIES) {
			*code = EMSGSIZE;
			return NULL;
		}
		cap = v->cap == 0 ? 16 : v->cap * 2;
		if ((p = reallocarray(v->items, cap, v->size)) == NULL) {
			*code = ENOMEM;
			return NULL;
		}
		v->items = p;
		v->cap = cap;
	}
	p = (uint8_t *)v->items + v->n * v->size;
	memset(p, 0, v->size);
	v->n++;
	return p;
}

static int
errno_or(int fallback)
{
	return errno != 0 ? errno : fallback;
}

struct ipvs *
ipvs_open(struct ipvs_error *err)
{
	struct ipvs *h;
	struct timeval tv;
	int r, flags;

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		ipvs_error_set(err, IPVS_OP_OPEN, ENOMEM);
		return NULL;
	}
	h->timeout_ms = IPVS_TIMEOUT_MS_DEFAULT;
	if ((h->sk = nl_socket_alloc()) == NULL) {
		ipvs_error_set(err, IPVS_OP_OPEN, ENOMEM);
		goto fail;
	}
	errno = 0;
	if ((r = genl_connect(h->sk)) < 0) {
		ipvs_error_set(err, IPVS_OP_OPEN, errno_or(EIO));
		goto fail;
	}
	h->fd = nl_socket_get_fd(h->sk);
	if ((flags = fcntl(h->fd, F_GETFD)) == -1 ||
	    fcntl(h->fd, F_SETFD, flags | FD_CLOEXEC) == -1) {
		ipvs_error_set(err, IPVS_OP_OPEN, errno);
		goto fail;
	}
	/* genl_ctrl_resolve waits inside libnl; this bounds that wait as poll bounds ours. */
	tv.tv_sec = h->timeout_ms / 1000;
	tv.tv_usec = (h->timeout_ms % 1000) * 1000;
	if (setsockopt(h->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1) {
		ipvs_error_set(err, IPVS_OP_OPEN, errno);
		goto fail;
	}
	if (nl_socket_set_buffer_size(h->sk, SOCK_BUF_BYTES, SOCK_BUF_BYTES) < 0)
		log_debug("ipvs: could not enlarge the netlink socket buffers");
	errno = 0;
	if ((r = genl_ctrl_resolve(h->sk, IPVS_GENL_NAME)) < 0) {
		if (r == -NLE_OBJ_NOTFOUND)
			ipvs_error_set(err, IPVS_OP_OPEN, EPROTONOSUPPORT);
		else if (r == -NLE_AGAIN)
			ipvs_error_set(err, IPVS_OP_OPEN, ETIMEDOUT);
		else if (r == -NLE_PERM)
			ipvs_error_set(err, IPVS_OP_OPEN, EPERM);
		else
			ipvs_error_set(err, IPVS_OP_OPEN, errno_or(EIO));
		goto fail;
	}
	h->family = r;
	/* Only after resolving: libnl's resolver waits for the ACK it asked for itself. */
	nl_socket_disable_auto_ack(h->sk);
	h->rcap = RECV_INIT_BYTES;
	if ((h->rbuf = malloc(h->rcap)) == NULL) {
		ipvs_error_set(err, IPVS_OP_OPEN, ENOMEM);
		goto fail;
	}
	ipvs_error_set(err, IPVS_OP_OPEN, 0);
	return h;
fail:
	ipvs_close(h);
	return NULL;
}

void
ipvs_close(struct ipvs *h)
{
	if (h == NULL)
		return;
	if (h->sk != NULL)
		nl_socket_free(h->sk);
	free(h->rbuf);
	free(h);
}

void
ipvs_set_timeout(struct ipvs *h, int timeout_ms)
{
	h->timeout_ms = timeout_ms > 0 ? timeout_ms : IPVS_TIMEOUT_MS_DEFAULT;
}

int
ipvs_family(const struct ipvs *h)
{
	return h->family;
}

/*
 * Waits (bounded) for one datagram from the kernel into h->rbuf. 0 and *len set (0 for a
 * datagram that was not from the kernel), or -1 with *code: ETIMEDOUT, ENOBUFS (the
 * kernel dropped replies), EMSGSIZE, or the socket's errno.
 */
static int
ipvs_recv(struct ipvs *h, size_t *len, int *code)
{
	struct pollfd pfd;
	struct sockaddr_nl sa;
	struct iovec iov;
	struct msghdr mh;
	uint64_t deadline, now;
	ssize_t n;
	uint8_t *p;
	int r;

	deadline = time_mono_ms() + (uint64_t)h->timeout_ms;
	for (;;) {
		now = time_mono_ms();
		if (now >= deadline) {
			*code = ETIMEDOUT;
			return -1;
		}
		pfd.fd = h->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		r = poll(&pfd, 1, (int)(deadline - now));
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			*code = errno;
			return -1;
		}
		if (r == 0) {
			*code = ETIMEDOUT;
			return -1;
		}
		/* The real size of the next datagram, so that a dump part is never truncated. */
		n = recv(h->fd, NULL, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n == -1) {
			*code = errno;
			return -1;
		}
		if ((size_t)n > RECV_MAX_BYTES) {
			*code = EMSGSIZE;
			return -1;
		}
		if ((size_t)n > h->rcap) {
			if ((p = realloc(h->rbuf, (size_t)n)) == NULL) {
				*code = ENOMEM;
				return -1;
			}
			h->rbuf = p;
			h->rcap = (size_t)n;
		}
		iov.iov_base = h->rbuf;
		iov.iov_len = h->rcap;
		memset(&mh, 0, sizeof(mh));
		mh.msg_name = &sa;
		mh.msg_namelen = sizeof(sa);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		n = recvmsg(h->fd, &mh, MSG_DONTWAIT);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n == -1) {
			*code = errno;
			return -1;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			*code = EMSGSIZE;
			return -1;
		}
		/* Only the kernel (port 0) answers requests; anything else is not ours to read. */
		if (mh.msg_namelen != sizeof(sa) || sa.nl_family != AF_NETLINK || sa.nl_pid != 0) {
			log_debug("ipvs: ignored a netlink datagram not from the kernel");
			*len = 0;
			return 0;
		}
		*len = (size_t)n;
		return 0;
	}
}

static int
ipvs_send(struct ipvs *h, struct nl_msg *msg, uint32_t *seq, int *code)
{
	int r;

	errno = 0;
	if ((r = nl_send_auto(h->sk, msg)) < 0) {
		*code = errno_or(EIO);
		return -1;
	}
	*seq = nlmsg_hdr(msg)->nlmsg_seq;
	return 0;
}

/* ---------------------------------------------------------------- one request with replies */

typedef int (*reply_fn)(struct ipvs *h, const struct ipvs_reply *r, void *arg, int *code);

/*
 * Sends req and hands each DATA reply with its sequence number to fn until the ACK (or,
 * for a dump, NLMSG_DONE). After fn fails the rest of the answer is still read, so that
 * nothing of it is left on the socket, and the first failure is reported.
 */
static int
ipvs_request(struct ipvs *h, const struct ipvs_req *req, reply_fn fn, void *arg,
             struct ipvs_error *err)
{
	struct nl_msg *msg;
	struct ipvs_reply r;
	uint32_t seq;
	size_t len, off;
	int code = 0, fail = 0, done = 0, rc;

	if (ipvs_msg_build(req, h->family, &msg, err) == -1)
		return -1;
	rc = ipvs_send(h, msg, &seq, &code);
	nlmsg_free(msg);
	if (rc == -1) {
		ipvs_error_set(err, req->op, code);
		return -1;
	}
	while (!done) {
		if (ipvs_recv(h, &len, &code) == -1) {
			ipvs_error_set(err, req->op, code);
			return -1;
		}
		off = 0;
		while (!done && (rc = ipvs_reply_next(h->rbuf, len, &off, &r)) == 1) {
			if (r.seq != seq) {
				log_debug("ipvs: ignored a reply to an earlier request (seq %u)",
				          r.seq);
				continue;
			}
			switch (r.kind) {
			case IPVS_REPLY_DATA:
				if (fail || r.type != h->family)
					break;
				if (fn == NULL || fn(h, &r, arg, &code) == -1) {
					if (fn == NULL)
						code = EPROTO;
					fail = code;
				}
				break;
			case IPVS_REPLY_ACK:
			case IPVS_REPLY_DONE:
				if (r.error != 0 && !fail)
					fail = r.error;
				done = 1;
				break;
			case IPVS_REPLY_SKIP:
				break;
			}
		}
		if (rc == -1) {
			ipvs_error_set(err, req->op, EPROTO);
			return -1;
		}
	}
	ipvs_error_set(err, req->op, fail);
	return fail ? -1 : 0;
}

static int
on_info(struct ipvs *h, const struct ipvs_reply *r, void *arg, int *code)
{
	if (ipvs_reply_info(r, arg) == -1) {
		*code = EPROTO;
		return -1;
	}
	return 0;
}

int
ipvs_get_info(struct ipvs *h, struct ipvs_info *info, struct ipvs_error *err)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	memset(info, 0, sizeof(*info));
	req.op = IPVS_OP_INFO_GET;
	if (ipvs_request(h, &req, on_info, info, err) == -1)
		return -1;
	/* An ACK without the data would leave a version of 0: no IPVS says that. */
	if (info->version == 0) {
		ipvs_error_set(err, req.op, EPROTO);
		return -1;
	}
	return 0;
}

static int
on_timeouts(struct ipvs *h, const struct ipvs_reply *r, void *arg, int *code)
{
	if (ipvs_reply_timeouts(r, arg) == -1) {
		*code = EPROTO;
		return -1;
	}
	return 0;
}

int
ipvs_timeouts_get(struct ipvs *h, struct ipvs_timeouts *t, struct ipvs_error *err)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	memset(t, 0, sizeof(*t));
	req.op = IPVS_OP_TIMEOUTS_GET;
	if (ipvs_request(h, &req, on_timeouts, t, err) == -1)
		return -1;
	if (t->tcp_s == 0 && t->tcp_fin_s == 0 && t->udp_s == 0) {
		ipvs_error_set(err, req.op, EPROTO);
		return -1;
	}
	return 0;
}

static int
on_service(struct ipvs *h, const struct ipvs_reply *r, void *arg, int *code)
{
	struct ipvs_service *svc;

	if ((svc = vec_push(arg, code)) == NULL)
		return -1;
	if (ipvs_reply_service(r, svc) == -1) {
		*code = EPROTO;
		return -1;
	}
	return 0;
}

struct dest_dump {
	struct vec v;
	int svc_af;
};

static int
on_dest(struct ipvs *h, const struct ipvs_reply *r, void *arg, int *code)
{
	struct dest_dump *dd = arg;
	struct ipvs_dest *dest;

	if ((dest = vec_push(&dd->v, code)) == NULL)
		return -1;
	if (ipvs_reply_dest(r, dd->svc_af, dest) == -1) {
		*code = EPROTO;
		return -1;
	}
	return 0;
}

static int
on_daemon(struct ipvs *h, const struct ipvs_reply *r, void *arg, int *code)
{
	struct ipvs_daemon *d;

	if ((d = vec_push(arg, code)) == NULL)
		return -1;
	if (ipvs_reply_daemon(r, d) == -1) {
		*code = EPROTO;
		return -1;
	}
	return 0;
}

static int
dump_finish(struct vec *v, int rc, void *out, size_t *n)
{
	if (rc == -1 || v->n == 0) {
		free(v->items);
		*(void **)out = NULL;
		*n = 0;
		return rc;
	}
	*(void **)out = v->items;
	*n = v->n;
	return 0;
}

int
ipvs_services_dump(struct ipvs *h, struct ipvs_service **out, size_t *n, struct ipvs_error *err)
{
	struct ipvs_req req;
	struct vec v = {.size = sizeof(struct ipvs_service)};
	int rc;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_SERVICES_DUMP;
	rc = ipvs_request(h, &req, on_service, &v, err);
	return dump_finish(&v, rc, out, n);
}

int
ipvs_dests_dump(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_dest **out, size_t *n,
                struct ipvs_error *err)
{
	struct ipvs_req req;
	struct dest_dump dd = {.v = {.size = sizeof(struct ipvs_dest)}, .svc_af = svc->af};
	int rc;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DESTS_DUMP;
	req.svc = *svc;
	rc = ipvs_request(h, &req, on_dest, &dd, err);
	return dump_finish(&dd.v, rc, out, n);
}

int
ipvs_daemon_dump(struct ipvs *h, struct ipvs_daemon **out, size_t *n, struct ipvs_error *err)
{
	struct ipvs_req req;
	struct vec v = {.size = sizeof(struct ipvs_daemon)};
	int rc;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DAEMONS_DUMP;
	rc = ipvs_request(h, &req, on_daemon, &v, err);
	return dump_finish(&v, rc, out, n);
}

/* ---------------------------------------------------------------- batches */

struct ipvs_batch *
ipvs_batch_begin(struct ipvs *h)
{
	struct ipvs_batch *b;

	if ((b = calloc(1, sizeof(*b))) == NULL)
		return NULL;
	b->h = h;
	return b;
}

static int
batch_queue(struct ipvs_batch *b, const struct ipvs_req *req, struct ipvs_error *err)
{
	struct batch_op *op, *p;
	struct nl_msg *msg;
	size_t cap;

	if (b->committed) {
		ipvs_error_set(err, req->op, EALREADY);
		return -1;
	}
	if (b->n == b->cap) {
		cap = b->cap == 0 ? 16 : b->cap * 2;
		if ((p = reallocarray(b->ops, cap, sizeof(*p))) == NULL) {
			ipvs_error_set(err, req->op, ENOMEM);
			return -1;
		}
		b->ops = p;
		b->cap = cap;
	}
	op = &b->ops[b->n];
	memset(op, 0, sizeof(*op));
	/* Built once here so that bad arguments are refused at queue time. */
	if (ipvs_msg_build(req, b->h->family, &msg, err) == -1)
		return -1;
	nlmsg_free(msg);
	op->req = *req;
	op->op = req->op;
	op->state = OP_QUEUED;
	ipvs_error_set(err, req->op, 0);
	return (int)b->n++;
}

/* A service or destination request, for the batch and the single-call forms alike. */
static struct ipvs_req
req_svc(enum ipvs_op o, const struct ipvs_service *svc, const struct ipvs_dest *dest)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	req.op = o;
	req.svc = *svc;
	if (dest != NULL)
		req.dest = *dest;
	return req;
}

static int
batch_queue_svc(struct ipvs_batch *b, enum ipvs_op o, const struct ipvs_service *svc,
                const struct ipvs_dest *dest, struct ipvs_error *err)
{
	struct ipvs_req req = req_svc(o, svc, dest);

	return batch_queue(b, &req, err);
}

int
ipvs_batch_service_add(struct ipvs_batch *b, const struct ipvs_service *svc, struct ipvs_error *err)
{
	return batch_queue_svc(b, IPVS_OP_SERVICE_ADD, svc, NULL, err);
}

int
ipvs_batch_service_edit(struct ipvs_batch *b, const struct ipvs_service *svc,
                        struct ipvs_error *err)
{
	return batch_queue_svc(b, IPVS_OP_SERVICE_EDIT, svc, NULL, err);
}

int
ipvs_batch_service_del(struct ipvs_batch *b, const struct ipvs_service *svc, struct ipvs_error *err)
{
	return batch_queue_svc(b, IPVS_OP_SERVICE_DEL, svc, NULL, err);
}

int
ipvs_batch_dest_add(struct ipvs_batch *b, const struct ipvs_service *svc,
                    const struct ipvs_dest *dest, struct ipvs_error *err)
{
	return batch_queue_svc(b, IPVS_OP_DEST_ADD, svc, dest, err);
}

int
ipvs_batch_dest_edit(struct ipvs_batch *b, const struct ipvs_service *svc,
                     const struct ipvs_dest *dest, struct ipvs_error *err)
{
	return batch_queue_svc(b, IPVS_OP_DEST_EDIT, svc, dest, err);
}

int
ipvs_batch_dest_del(struct ipvs_batch *b, const struct ipvs_service *svc,
                    const struct ipvs_dest *dest, struct ipvs_error *err)
{
	return batch_queue_svc(b, IPVS_OP_DEST_DEL, svc, dest, err);
}

int
ipvs_batch_timeouts_set(struct ipvs_batch *b, const struct ipvs_timeouts *t, struct ipvs_error *err)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_TIMEOUTS_SET;
	req.timeouts = *t;
	return batch_queue(b, &req, err);
}

static int
batch_queue_daemon(struct ipvs_batch *b, enum ipvs_op o, const struct ipvs_daemon *d,
                   struct ipvs_error *err)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	req.op = o;
	req.daemon = *d;
	return batch_queue(b, &req, err);
}

int
ipvs_batch_daemon_add(struct ipvs_batch *b, const struct ipvs_daemon *d, struct ipvs_error *err)
{
	return batch_queue_daemon(b, IPVS_OP_DAEMON_ADD, d, err);
}

int
ipvs_batch_daemon_del(struct ipvs_batch *b, const struct ipvs_daemon *d, struct ipvs_error *err)
{
	return batch_queue_daemon(b, IPVS_OP_DAEMON_DEL, d, err);
}

/* Settles the op that seq belongs to; seqs of one batch are consecutive from ops[0]. */
static int
batch_settle(struct ipvs_batch *b, uint32_t seq, int error)
{
	struct batch_op *op;
	uint32_t i;

	if (b->n == 0 || b->ops[0].state == OP_QUEUED)
		return 0;
	i = seq - b->ops[0].seq; /* unsigned: right across a wrap of the counter */
	if (i >= b->n)
		return 0;
	op = &b->ops[i];
	if (op->state != OP_SENT || op->seq != seq)
		return 0;
	op->state = OP_DONE;
	ipvs_error_set(&op->result, op->op, error);
	return 1;
}

/* The transport failed: every op not yet answered carries code (unsent: ECANCELED). */
static void
batch_fail_rest(struct ipvs_batch *b, int code)
{
	size_t i;

	for (i = 0; i < b->n; i++) {
		if (b->ops[i].state == OP_DONE)
			continue;
		ipvs_error_set(&b->ops[i].result, b->ops[i].op,
		               b->ops[i].state == OP_SENT ? code : ECANCELED);
		b->ops[i].state = OP_DONE;
	}
}

/*
 * Sends ops [first, last) as one datagram. Only the last asks for an ACK: the kernel
 * acknowledges every failed request anyway (netlink_rcv_skb), and it handles the
 * requests of a datagram in order, so the last ACK settles every op before it. One send
 * and, when all goes well, one receive per chunk instead of four system calls per op.
 */
static int
batch_send_chunk(struct ipvs_batch *b, size_t first, size_t last, int *code)
{
	struct ipvs *h = b->h;
	struct ipvs_error err;
	struct nlmsghdr *nh;
	struct nl_msg *msg;
	size_t i, len = 0, cap = 0;
	uint8_t *buf = NULL, *p;
	ssize_t n;

	for (i = first; i < last; i++) {
		if (ipvs_msg_build(&b->ops[i].req, h->family, &msg, &err) == -1) {
			free(buf);
			*code = err.code != 0 ? err.code : EINVAL;
			return -1;
		}
		nl_complete_msg(h->sk, msg);
		nh = nlmsg_hdr(msg);
		if (i + 1 < last)
			nh->nlmsg_flags &= ~NLM_F_ACK;
		else
			nh->nlmsg_flags |= NLM_F_ACK;
		if (len + NLMSG_ALIGN(nh->nlmsg_len) > cap) {
			cap = cap == 0 ? 32768 : cap * 2;
			if (cap < len + NLMSG_ALIGN(nh->nlmsg_len))
				cap = len + NLMSG_ALIGN(nh->nlmsg_len);
			if ((p = realloc(buf, cap)) == NULL) {
				nlmsg_free(msg);
				free(buf);
				*code = ENOMEM;
				return -1;
			}
			buf = p;
		}
		memset(buf + len, 0, NLMSG_ALIGN(nh->nlmsg_len));
		memcpy(buf + len, nh, nh->nlmsg_len);
		len += NLMSG_ALIGN(nh->nlmsg_len);
		b->ops[i].seq = nh->nlmsg_seq;
		nlmsg_free(msg);
	}
	do
		n = send(h->fd, buf, len, 0);
	while (n == -1 && errno == EINTR);
	free(buf);
	/* A netlink datagram is taken whole or not at all. */
	for (i = first; n == (ssize_t)len && i < last; i++)
		b->ops[i].state = OP_SENT;
	if (n == -1 || (size_t)n != len) {
		*code = n == -1 ? errno : EMSGSIZE;
		return -1;
	}
	return 0;
}

int
ipvs_batch_commit(struct ipvs_batch *b, struct ipvs_error *err)
{
	struct ipvs *h = b->h;
	struct ipvs_reply r;
	size_t next = 0, last, len, off, i;
	int code, rc, failed = 0, chunk_done;

	if (b->committed) {
		ipvs_error_set(err, IPVS_OP_OPEN, EALREADY);
		return -1;
	}
	b->committed = 1;
	while (next < b->n) {
		last = next + BATCH_WINDOW < b->n ? next + BATCH_WINDOW : b->n;
		if (batch_send_chunk(b, next, last, &code) == -1) {
			batch_fail_rest(b, code);
			ipvs_error_set(err, b->ops[next].op, code);
			return -1;
		}
		chunk_done = 0;
		while (!chunk_done) {
			if (ipvs_recv(h, &len, &code) == -1) {
				batch_fail_rest(b, code);
				ipvs_error_set(err, b->ops[last - 1].op, code);
				return -1;
			}
			off = 0;
			while ((rc = ipvs_reply_next(h->rbuf, len, &off, &r)) == 1) {
				if (r.kind == IPVS_REPLY_ACK && batch_settle(b, r.seq, r.error)) {
					if (r.seq == b->ops[last - 1].seq)
						chunk_done = 1;
				} else {
					log_debug(
					    "ipvs: ignored a reply (type %u seq %u) in a batch",
					    r.type, r.seq);
				}
			}
			if (rc == -1) {
				batch_fail_rest(b, EPROTO);
				ipvs_error_set(err, b->ops[last - 1].op, EPROTO);
				return -1;
			}
		}
		/* The last ACK came after every failure of the chunk: the rest succeeded. */
		for (i = next; i < last; i++)
			if (b->ops[i].state == OP_SENT)
				batch_settle(b, b->ops[i].seq, 0);
		next = last;
	}
	for (i = 0; i < b->n; i++) {
		if (b->ops[i].result.code != 0)
			failed++;
	}
	ipvs_error_set(err, IPVS_OP_OPEN, 0);
	return failed;
}

size_t
ipvs_batch_count(const struct ipvs_batch *b)
{
	return b->n;
}

enum ipvs_op
ipvs_batch_op(const struct ipvs_batch *b, size_t i)
{
	return i < b->n ? b->ops[i].op : IPVS_OP_OPEN;
}

const struct ipvs_error *
ipvs_batch_result(const struct ipvs_batch *b, size_t i)
{
	if (i >= b->n || b->ops[i].state != OP_DONE)
		return NULL;
	return &b->ops[i].result;
}

void
ipvs_batch_free(struct ipvs_batch *b)
{
	if (b == NULL)
		return;
	free(b->ops);
	free(b);
}

/* ---------------------------------------------------------------- single changes */

/* One change is a batch of one: a single path for sending and matching ACKs. */
static int
single(struct ipvs *h, const struct ipvs_req *req, struct ipvs_error *err)
{
	struct ipvs_batch *b;
	const struct ipvs_error *res;
	int rc;

	if ((b = ipvs_batch_begin(h)) == NULL) {
		ipvs_error_set(err, req->op, ENOMEM);
		return -1;
	}
	if (batch_queue(b, req, err) == -1) {
		ipvs_batch_free(b);
		return -1;
	}
	rc = ipvs_batch_commit(b, NULL);
	res = ipvs_batch_result(b, 0);
	if (res != NULL && err != NULL)
		*err = *res;
	if (rc != 0)
		rc = -1;
	ipvs_batch_free(b);
	return rc;
}

static int
single_svc(struct ipvs *h, enum ipvs_op o, const struct ipvs_service *svc,
           const struct ipvs_dest *dest, struct ipvs_error *err)
{
	struct ipvs_req req = req_svc(o, svc, dest);

	return single(h, &req, err);
}

int
ipvs_service_add(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_error *err)
{
	return single_svc(h, IPVS_OP_SERVICE_ADD, svc, NULL, err);
}

int
ipvs_service_edit(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_error *err)
{
	return single_svc(h, IPVS_OP_SERVICE_EDIT, svc, NULL, err);
}

int
ipvs_service_del(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_error *err)
{
	return single_svc(h, IPVS_OP_SERVICE_DEL, svc, NULL, err);
}

int
ipvs_dest_add(struct ipvs *h, const struct ipvs_service *svc, const struct ipvs_dest *dest,
              struct ipvs_error *err)
{
	return single_svc(h, IPVS_OP_DEST_ADD, svc, dest, err);
}

int
ipvs_dest_edit(struct ipvs *h, const struct ipvs_service *svc, const struct ipvs_dest *dest,
               struct ipvs_error *err)
{
	return single_svc(h, IPVS_OP_DEST_EDIT, svc, dest, err);
}

int
ipvs_dest_del(struct ipvs *h, const struct ipvs_service *svc, const struct ipvs_dest *dest,
              struct ipvs_error *err)
{
	return single_svc(h, IPVS_OP_DEST_DEL, svc, dest, err);
}

int
ipvs_timeouts_set(struct ipvs *h, const struct ipvs_timeouts *t, struct ipvs_error *err)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_TIMEOUTS_SET;
	req.timeouts = *t;
	return single(h, &req, err);
}

int
ipvs_daemon_add(struct ipvs *h, const struct ipvs_daemon *d, struct ipvs_error *err)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DAEMON_ADD;
	req.daemon = *d;
	return single(h, &req, err);
}

int
ipvs_daemon_del(struct ipvs *h, const struct ipvs_daemon *d, struct ipvs_error *err)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DAEMON_DEL;
	req.daemon = *d;
	return single(h, &req, err);
}
