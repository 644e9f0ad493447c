/*
 * Unit tests for director/ipvs_msg: requests decode back to what was asked for, kernel-shaped
 * dump replies (16-byte addresses, STATS64 nests, ACKs, DONE) decode into the public
 * structs, and malformed messages and attribute sets are rejected without reading past them.
 * Replies recorded from a real kernel (tests/unit/fixtures/ipvs) decode to what was set up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <netlink/msg.h>

#include "ipvs_msg.h"

#define FAMILY 0x1c

/* A hand-written netlink byte stream, so that every length can be made wrong on purpose. */
struct wbuf {
	uint8_t b[8192];
	size_t len;
};

static size_t
w_put(struct wbuf *w, const void *p, size_t n)
{
	size_t at = w->len;

	assert_true(w->len + NLA_ALIGN(n) <= sizeof(w->b));
	memcpy(w->b + w->len, p, n);
	memset(w->b + w->len + n, 0, NLA_ALIGN(n) - n);
	w->len += NLA_ALIGN(n);
	return at;
}

static size_t
w_attr(struct wbuf *w, uint16_t type, const void *data, uint16_t len)
{
	struct nlattr na = {.nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type};
	size_t at = w->len;

	memcpy(w->b + w->len, &na, sizeof(na));
	w->len += NLA_HDRLEN;
	if (len > 0)
		w_put(w, data, len);
	return at;
}

static void
w_u8(struct wbuf *w, uint16_t type, uint8_t v)
{
	w_attr(w, type, &v, sizeof(v));
}

static void
w_u16(struct wbuf *w, uint16_t type, uint16_t v)
{
	w_attr(w, type, &v, sizeof(v));
}

static void
w_u32(struct wbuf *w, uint16_t type, uint32_t v)
{
	w_attr(w, type, &v, sizeof(v));
}

static void
w_u64(struct wbuf *w, uint16_t type, uint64_t v)
{
	w_attr(w, type, &v, sizeof(v));
}

static void
w_str(struct wbuf *w, uint16_t type, const char *s)
{
	w_attr(w, type, s, (uint16_t)(strlen(s) + 1));
}

static size_t
w_nest(struct wbuf *w, uint16_t type)
{
	return w_attr(w, type, NULL, 0);
}

static void
w_nest_end(struct wbuf *w, size_t at)
{
	uint16_t len = (uint16_t)(w->len - at);

	memcpy(w->b + at, &len, sizeof(len));
}

static size_t
w_msg(struct wbuf *w, uint16_t type, uint32_t seq, uint8_t cmd)
{
	struct nlmsghdr nh = {.nlmsg_type = type, .nlmsg_flags = NLM_F_MULTI, .nlmsg_seq = seq};
	struct genlmsghdr gh = {.cmd = cmd, .version = IPVS_GENL_VERSION};
	size_t at = w_put(w, &nh, sizeof(nh));

	w_put(w, &gh, sizeof(gh));
	return at;
}

static void
w_msg_end(struct wbuf *w, size_t at)
{
	uint32_t len = (uint32_t)(w->len - at);

	memcpy(w->b + at, &len, sizeof(len));
}

static void
w_error(struct wbuf *w, uint16_t type, uint32_t seq, int32_t error)
{
	struct nlmsghdr nh = {.nlmsg_type = type, .nlmsg_seq = seq};
	struct nlmsghdr orig = {.nlmsg_len = 20, .nlmsg_type = FAMILY, .nlmsg_seq = seq};
	size_t at = w_put(w, &nh, sizeof(nh));

	w_put(w, &error, sizeof(error));
	if (type == NLMSG_ERROR)
		w_put(w, &orig, sizeof(orig));
	w_msg_end(w, at);
}

static void
w_stats64(struct wbuf *w, uint16_t type, uint64_t base)
{
	size_t n = w_nest(w, type);
	uint16_t i;

	for (i = IPVS_STATS_ATTR_CONNS; i <= IPVS_STATS_ATTR_OUTBPS; i++)
		w_u64(w, i, base + i);
	w_u64(w, IPVS_STATS_ATTR_PAD, 0);
	w_nest_end(w, n);
}

/* What ip_vs_genl_fill_service puts in a dump: the address always as 16 bytes. */
static void
w_kernel_service(struct wbuf *w, uint32_t seq, const char *addr, uint16_t port, uint32_t flags,
                 uint32_t timeout, uint32_t netmask)
{
	uint8_t a[16] = {0};
	struct ip_vs_flags f = {.flags = flags | IP_VS_SVC_F_HASHED, .mask = ~0u};
	size_t m, n;

	assert_int_equal(inet_pton(AF_INET, addr, a), 1);
	m = w_msg(w, FAMILY, seq, IPVS_CMD_NEW_SERVICE);
	n = w_nest(w, IPVS_CMD_ATTR_SERVICE);
	w_u16(w, IPVS_SVC_ATTR_AF, AF_INET);
	w_u16(w, IPVS_SVC_ATTR_PROTOCOL, IPPROTO_TCP);
	w_attr(w, IPVS_SVC_ATTR_ADDR, a, sizeof(a));
	w_u16(w, IPVS_SVC_ATTR_PORT, htons(port));
	w_str(w, IPVS_SVC_ATTR_SCHED_NAME, "wlc");
	w_attr(w, IPVS_SVC_ATTR_FLAGS, &f, sizeof(f));
	w_u32(w, IPVS_SVC_ATTR_TIMEOUT, timeout);
	w_u32(w, IPVS_SVC_ATTR_NETMASK, netmask);
	w_stats64(w, IPVS_SVC_ATTR_STATS64, 1000);
	w_nest_end(w, n);
	w_msg_end(w, m);
}

static int
next(const struct wbuf *w, size_t *off, struct ipvs_reply *r)
{
	return ipvs_reply_next(w->b, w->len, off, r);
}

/* The bytes of a built request, read back as if the kernel had sent them. */
static void
reply_of(struct nl_msg *m, struct ipvs_reply *r)
{
	struct nlmsghdr *nh = nlmsg_hdr(m);
	size_t off = 0;

	assert_int_equal(ipvs_reply_next(nh, nh->nlmsg_len, &off, r), 1);
	assert_int_equal(r->kind, IPVS_REPLY_DATA);
	assert_int_equal(r->type, FAMILY);
	assert_int_equal(off, nh->nlmsg_len);
}

static struct ipvs_req
req_service(enum ipvs_op op, int af, const char *addr, uint16_t port, const char *sched)
{
	struct ipvs_req req;

	memset(&req, 0, sizeof(req));
	req.op = op;
	req.svc.af = af;
	req.svc.protocol = IPPROTO_TCP;
	assert_int_equal(inet_pton(af, addr, &req.svc.addr), 1);
	req.svc.port = port;
	memcpy(req.svc.sched, sched, strlen(sched) + 1);
	return req;
}

static void
test_service_request_decodes_to_what_was_asked(void **state)
{
	struct ipvs_req req = req_service(IPVS_OP_SERVICE_ADD, AF_INET, "10.0.0.1", 25, "rr");
	struct ipvs_error err;
	struct ipvs_reply r;
	struct ipvs_service got;
	struct nl_msg *m;

	req.svc.persistence_s = 600;
	req.svc.netmask_len = 24;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	assert_true(nlmsg_hdr(m)->nlmsg_flags & NLM_F_ACK);
	assert_false(nlmsg_hdr(m)->nlmsg_flags & NLM_F_DUMP);
	reply_of(m, &r);
	assert_int_equal(r.cmd, IPVS_CMD_NEW_SERVICE);
	assert_int_equal(ipvs_reply_service(&r, &got), 0);
	assert_int_equal(got.af, AF_INET);
	assert_int_equal(got.protocol, IPPROTO_TCP);
	assert_memory_equal(&got.addr.in, &req.svc.addr.in, 4);
	assert_int_equal(got.port, 25);
	assert_string_equal(got.sched, "rr");
	assert_int_equal(got.persistence_s, 600);
	assert_int_equal(got.netmask_len, 24);
	assert_int_equal(got.flags, 0);
	nlmsg_free(m);
}

static void
test_v6_and_fwmark_services_round_trip(void **state)
{
	struct ipvs_req req = req_service(IPVS_OP_SERVICE_EDIT, AF_INET6, "2001:db8::1", 143, "sh");
	struct ipvs_error err;
	struct ipvs_reply r;
	struct ipvs_service got;
	struct nl_msg *m;
	char buf[64];

	req.svc.persistence_s = 300;
	req.svc.netmask_len = 64;
	req.svc.flags = IP_VS_SVC_F_ONEPACKET;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	reply_of(m, &r);
	/* An edit is SET_SERVICE: not what a dump carries, so the decoder refuses it. */
	assert_int_equal(ipvs_reply_service(&r, &got), -1);
	nlmsg_free(m);

	req.op = IPVS_OP_SERVICE_ADD;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	reply_of(m, &r);
	assert_int_equal(ipvs_reply_service(&r, &got), 0);
	assert_int_equal(got.af, AF_INET6);
	assert_memory_equal(&got.addr.in6, &req.svc.addr.in6, 16);
	assert_int_equal(got.netmask_len, 64);
	assert_int_equal(got.flags, IP_VS_SVC_F_ONEPACKET);
	assert_int_equal(ipvs_service_format(&got, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "TCP [2001:db8::1]:143");
	nlmsg_free(m);

	memset(&req.svc, 0, sizeof(req.svc));
	req.svc.af = AF_INET;
	req.svc.fwmark = 7;
	memcpy(req.svc.sched, "rr", 3);
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	reply_of(m, &r);
	assert_int_equal(ipvs_reply_service(&r, &got), 0);
	assert_int_equal(got.fwmark, 7);
	assert_int_equal(got.persistence_s, 0);
	assert_int_equal(ipvs_service_format(&got, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "FWM 7");
	nlmsg_free(m);
}

static void
test_dest_requests_round_trip_for_each_method(void **state)
{
	struct ipvs_req req = req_service(IPVS_OP_DEST_ADD, AF_INET, "10.0.0.1", 25, "rr");
	enum ipvs_fwd fwds[] = {IPVS_FWD_DR, IPVS_FWD_MASQ, IPVS_FWD_TUN};
	struct ipvs_error err;
	struct ipvs_reply r;
	struct ipvs_dest got;
	struct nl_msg *m;
	size_t i;

	for (i = 0; i < sizeof(fwds) / sizeof(fwds[0]); i++) {
		req.dest.af = AF_INET;
		assert_int_equal(inet_pton(AF_INET, "10.0.1.9", &req.dest.addr), 1);
		req.dest.port = 2525;
		req.dest.fwd = fwds[i];
		req.dest.weight = 7;
		req.dest.u_threshold = 100;
		req.dest.l_threshold = 50;
		req.dest.tun_type = IP_VS_CONN_F_TUNNEL_TYPE_GUE;
		req.dest.tun_port = 6080;
		assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
		reply_of(m, &r);
		assert_int_equal(r.cmd, IPVS_CMD_NEW_DEST);
		assert_int_equal(ipvs_reply_dest(&r, AF_INET6, &got), 0);
		/* The request names the family, so the fallback is not used. */
		assert_int_equal(got.af, AF_INET);
		assert_int_equal(got.port, 2525);
		assert_int_equal(got.fwd, fwds[i]);
		assert_int_equal(got.weight, 7);
		assert_int_equal(got.u_threshold, 100);
		assert_int_equal(got.l_threshold, 50);
		assert_int_equal(got.tun_port, fwds[i] == IPVS_FWD_TUN ? 6080 : 0);
		nlmsg_free(m);
	}
}

static void
test_daemon_request_round_trips(void **state)
{
	struct ipvs_req req;
	struct ipvs_error err;
	struct ipvs_reply r;
	struct ipvs_daemon got;
	struct nl_msg *m;

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DAEMON_ADD;
	req.daemon.state = IPVS_DAEMON_BACKUP;
	memcpy(req.daemon.mcast_ifname, "eth0", 5);
	req.daemon.syncid = 8;
	req.daemon.mcast_port = 8848;
	req.daemon.mcast_ttl = 2;
	req.daemon.mcast_af = AF_INET;
	assert_int_equal(inet_pton(AF_INET, "224.0.0.81", &req.daemon.mcast_group), 1);
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	reply_of(m, &r);
	assert_int_equal(ipvs_reply_daemon(&r, &got), 0);
	assert_int_equal(got.state, IPVS_DAEMON_BACKUP);
	assert_string_equal(got.mcast_ifname, "eth0");
	assert_int_equal(got.syncid, 8);
	assert_int_equal(got.mcast_port, 8848);
	assert_int_equal(got.mcast_ttl, 2);
	assert_int_equal(got.mcast_af, AF_INET);
	assert_memory_equal(&got.mcast_group.in, &req.daemon.mcast_group.in, 4);
	nlmsg_free(m);
}

static void
test_dumps_ask_for_dump_and_others_for_ack(void **state)
{
	enum ipvs_op dumps[] = {IPVS_OP_SERVICES_DUMP, IPVS_OP_DAEMONS_DUMP};
	struct ipvs_req req;
	struct ipvs_error err;
	struct nl_msg *m;
	size_t i;

	for (i = 0; i < 2; i++) {
		memset(&req, 0, sizeof(req));
		req.op = dumps[i];
		assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
		assert_int_equal(nlmsg_hdr(m)->nlmsg_flags & NLM_F_DUMP, NLM_F_DUMP);
		assert_false(nlmsg_hdr(m)->nlmsg_flags & NLM_F_ACK);
		nlmsg_free(m);
	}
	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_INFO_GET;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	assert_true(nlmsg_hdr(m)->nlmsg_flags & NLM_F_ACK);
	nlmsg_free(m);
}

static void
test_kernel_service_dump_decodes_with_stats64(void **state)
{
	struct wbuf w = {.len = 0};
	struct ipvs_reply r;
	struct ipvs_service s;
	size_t off = 0;
	int n = 0;

	w_kernel_service(&w, 42, "10.0.0.1", 25, IP_VS_SVC_F_PERSISTENT, 600, htonl(0xffffff00));
	w_kernel_service(&w, 42, "10.0.0.2", 110, 0, 0, 0xffffffff);
	w_error(&w, NLMSG_DONE, 42, 0);
	while (next(&w, &off, &r) == 1 && r.kind == IPVS_REPLY_DATA) {
		assert_int_equal(r.seq, 42);
		assert_int_equal(ipvs_reply_service(&r, &s), 0);
		assert_int_equal(s.stats.conns, 1000 + IPVS_STATS_ATTR_CONNS);
		assert_int_equal(s.stats.outbps, 1000 + IPVS_STATS_ATTR_OUTBPS);
		assert_int_equal(s.flags, 0);
		if (n++ == 0) {
			assert_int_equal(s.port, 25);
			assert_int_equal(s.persistence_s, 600);
			assert_int_equal(s.netmask_len, 24);
		} else {
			assert_int_equal(s.port, 110);
			assert_int_equal(s.persistence_s, 0);
		}
	}
	assert_int_equal(n, 2);
	assert_int_equal(r.kind, IPVS_REPLY_DONE);
	assert_int_equal(r.error, 0);
	assert_int_equal(next(&w, &off, &r), 0);
}

static void
test_acks_carry_positive_errno_and_seq(void **state)
{
	struct wbuf w = {.len = 0};
	struct ipvs_reply r;
	size_t off = 0;

	w_error(&w, NLMSG_ERROR, 7, 0);
	w_error(&w, NLMSG_ERROR, 8, -EEXIST);
	w_error(&w, NLMSG_DONE, 9, -ENOBUFS);
	assert_int_equal(next(&w, &off, &r), 1);
	assert_int_equal(r.kind, IPVS_REPLY_ACK);
	assert_int_equal(r.seq, 7);
	assert_int_equal(r.error, 0);
	assert_int_equal(next(&w, &off, &r), 1);
	assert_int_equal(r.seq, 8);
	assert_int_equal(r.error, EEXIST);
	assert_int_equal(next(&w, &off, &r), 1);
	assert_int_equal(r.kind, IPVS_REPLY_DONE);
	assert_int_equal(r.error, ENOBUFS);
	assert_int_equal(next(&w, &off, &r), 0);
}

static void
test_malformed_netlink_headers_are_rejected(void **state)
{
	struct wbuf w = {.len = 0};
	struct ipvs_reply r;
	size_t off;
	uint32_t len;
	int32_t bad = 5;

	/* Shorter than a header. */
	w_error(&w, NLMSG_ERROR, 1, 0);
	off = 0;
	assert_int_equal(ipvs_reply_next(w.b, 10, &off, &r), -1);
	/* nlmsg_len beyond the buffer, and below a header. */
	len = (uint32_t)w.len + 4;
	memcpy(w.b, &len, sizeof(len));
	off = 0;
	assert_int_equal(next(&w, &off, &r), -1);
	len = 8;
	memcpy(w.b, &len, sizeof(len));
	off = 0;
	assert_int_equal(next(&w, &off, &r), -1);
	/* An error message without room for the error. */
	len = 18;
	memcpy(w.b, &len, sizeof(len));
	off = 0;
	assert_int_equal(ipvs_reply_next(w.b, 18, &off, &r), -1);
	/* A positive "errno" is no kernel's answer. */
	w.len = 0;
	w_error(&w, NLMSG_ERROR, 1, 0);
	memcpy(w.b + sizeof(struct nlmsghdr), &bad, sizeof(bad));
	off = 0;
	assert_int_equal(next(&w, &off, &r), -1);
	/* A family message too short for its generic-netlink header. */
	w.len = 0;
	w_msg(&w, FAMILY, 1, IPVS_CMD_NEW_SERVICE);
	len = sizeof(struct nlmsghdr) + 2;
	memcpy(w.b, &len, sizeof(len));
	off = 0;
	assert_int_equal(ipvs_reply_next(w.b, len, &off, &r), -1);
}

/* Builds a service message with one thing wrong, chosen by how. */
static int
decode_broken_service(int how)
{
	struct wbuf w = {.len = 0};
	struct ip_vs_flags f = {0, ~0u};
	struct ipvs_reply r;
	struct ipvs_service s;
	uint8_t a[16] = {10, 0, 0, 1};
	char longname[24];
	size_t m, n, off = 0;

	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	m = w_msg(&w, FAMILY, 1, how == 9 ? IPVS_CMD_NEW_DEST : IPVS_CMD_NEW_SERVICE);
	n = w_nest(&w, IPVS_CMD_ATTR_SERVICE);
	if (how != 1)
		w_u16(&w, IPVS_SVC_ATTR_AF,
		      how == 2 ? 99 : (how == 7 || how == 8 ? AF_INET6 : AF_INET));
	w_u16(&w, IPVS_SVC_ATTR_PROTOCOL, IPPROTO_TCP);
	w_attr(&w, IPVS_SVC_ATTR_ADDR, a, how == 7 ? 4 : 16);
	if (how == 3)
		w_attr(&w, IPVS_SVC_ATTR_PORT, a, 3); /* a u16 in 3 bytes */
	else
		w_u16(&w, IPVS_SVC_ATTR_PORT, htons(25));
	if (how == 4)
		w_attr(&w, IPVS_SVC_ATTR_SCHED_NAME, "rrr", 3); /* not terminated */
	else
		w_str(&w, IPVS_SVC_ATTR_SCHED_NAME, how == 5 ? longname : "rr");
	w_attr(&w, IPVS_SVC_ATTR_FLAGS, &f, how == 6 ? 4 : sizeof(f));
	w_u32(&w, IPVS_SVC_ATTR_TIMEOUT, 0);
	w_u32(&w, IPVS_SVC_ATTR_NETMASK, how == 8 ? 129 : 0xffffffff);
	if (how == 10) {
		size_t st = w_nest(&w, IPVS_SVC_ATTR_STATS64);

		w_u32(&w, IPVS_STATS_ATTR_CONNS, 1); /* a 64-bit counter in 4 bytes */
		w_nest_end(&w, st);
	}
	w_nest_end(&w, n);
	if (how == 11) {
		/* The nest claims more than the message holds. */
		uint16_t big = 4000;

		memcpy(w.b + n, &big, sizeof(big));
	}
	if (how == 12)
		w.b[w.len++] = 0, w.b[w.len++] = 0; /* a 2-byte tail: half an attribute header */
	w_msg_end(&w, m);
	assert_int_equal(next(&w, &off, &r), 1);
	return ipvs_reply_service(&r, &s);
}

static void
test_malformed_service_attributes_are_rejected(void **state)
{
	int how;

	assert_int_equal(decode_broken_service(0), 0);
	for (how = 1; how <= 12; how++) {
		if (decode_broken_service(how) != -1)
			fail_msg("broken service variant %d was accepted", how);
	}
}

static void
test_info_timeouts_and_daemon_replies_decode(void **state)
{
	struct wbuf w = {.len = 0};
	struct ipvs_reply r;
	struct ipvs_info info;
	struct ipvs_timeouts t;
	struct ipvs_daemon d;
	size_t m, n, off = 0;

	m = w_msg(&w, FAMILY, 3, IPVS_CMD_SET_INFO);
	w_u32(&w, IPVS_INFO_ATTR_VERSION, 0x010201);
	w_u32(&w, IPVS_INFO_ATTR_CONN_TAB_SIZE, 4096);
	w_msg_end(&w, m);
	m = w_msg(&w, FAMILY, 4, IPVS_CMD_SET_CONFIG);
	w_u32(&w, IPVS_CMD_ATTR_TIMEOUT_TCP, 1860);
	w_u32(&w, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, 120);
	w_u32(&w, IPVS_CMD_ATTR_TIMEOUT_UDP, 300);
	w_msg_end(&w, m);
	m = w_msg(&w, FAMILY, 5, IPVS_CMD_NEW_DAEMON);
	n = w_nest(&w, IPVS_CMD_ATTR_DAEMON);
	w_u32(&w, IPVS_DAEMON_ATTR_STATE, IPVS_DAEMON_MASTER);
	w_str(&w, IPVS_DAEMON_ATTR_MCAST_IFN, "eth0");
	w_u32(&w, IPVS_DAEMON_ATTR_SYNC_ID, 7);
	w_u16(&w, IPVS_DAEMON_ATTR_SYNC_MAXLEN, 1472);
	w_u8(&w, IPVS_DAEMON_ATTR_MCAST_TTL, 1);
	w_nest_end(&w, n);
	w_msg_end(&w, m);

	assert_int_equal(next(&w, &off, &r), 1);
	assert_int_equal(ipvs_reply_info(&r, &info), 0);
	assert_int_equal(info.version, 0x010201);
	assert_int_equal(info.conn_tab_size, 4096);
	assert_int_equal(ipvs_reply_timeouts(&r, &t), -1); /* wrong command */
	assert_int_equal(next(&w, &off, &r), 1);
	assert_int_equal(ipvs_reply_timeouts(&r, &t), 0);
	assert_int_equal(t.tcp_s, 1860);
	assert_int_equal(t.tcp_fin_s, 120);
	assert_int_equal(t.udp_s, 300);
	assert_int_equal(next(&w, &off, &r), 1);
	assert_int_equal(ipvs_reply_daemon(&r, &d), 0);
	assert_int_equal(d.state, IPVS_DAEMON_MASTER);
	assert_string_equal(d.mcast_ifname, "eth0");
	assert_int_equal(d.syncid, 7);
	assert_int_equal(d.sync_maxlen, 1472);
	assert_int_equal(d.mcast_af, 0);
	assert_int_equal(next(&w, &off, &r), 0);
}

static void
test_dest_without_family_takes_the_services(void **state)
{
	struct wbuf w = {.len = 0};
	struct ipvs_reply r;
	struct ipvs_dest d;
	uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x11};
	size_t m, n, off = 0;

	m = w_msg(&w, FAMILY, 6, IPVS_CMD_NEW_DEST);
	n = w_nest(&w, IPVS_CMD_ATTR_DEST);
	w_attr(&w, IPVS_DEST_ATTR_ADDR, a, sizeof(a));
	w_u16(&w, IPVS_DEST_ATTR_PORT, htons(143));
	w_u32(&w, IPVS_DEST_ATTR_FWD_METHOD, IP_VS_CONN_F_DROUTE);
	w_u32(&w, IPVS_DEST_ATTR_WEIGHT, 3);
	w_u32(&w, IPVS_DEST_ATTR_ACTIVE_CONNS, 11);
	w_u32(&w, IPVS_DEST_ATTR_INACT_CONNS, 22);
	w_stats64(&w, IPVS_DEST_ATTR_STATS64, 5);
	w_nest_end(&w, n);
	w_msg_end(&w, m);
	assert_int_equal(next(&w, &off, &r), 1);
	assert_int_equal(ipvs_reply_dest(&r, AF_INET6, &d), 0);
	assert_int_equal(d.af, AF_INET6);
	assert_memory_equal(&d.addr.in6, a, 16);
	assert_int_equal(d.fwd, IPVS_FWD_DR);
	assert_int_equal(d.active_conns, 11);
	assert_int_equal(d.inactive_conns, 22);
	assert_int_equal(d.stats.inbytes, 5 + IPVS_STATS_ATTR_INBYTES);
	assert_string_equal(ipvs_fwd_name(d.fwd), "Route");
}

static void
test_invalid_requests_are_refused_before_the_kernel(void **state)
{
	struct ipvs_req req = req_service(IPVS_OP_SERVICE_ADD, AF_INET, "10.0.0.1", 25, "rr");
	struct ipvs_req ok = req;
	struct ipvs_error err;
	struct nl_msg *m = (struct nl_msg *)&req;

	req.svc.af = AF_UNIX;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	assert_null(m);
	assert_int_equal(err.code, EINVAL);
	req = ok;
	req.svc.sched[0] = '\0';
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	req = ok;
	memset(req.svc.sched, 'x', sizeof(req.svc.sched)); /* no terminator */
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	assert_non_null(strstr(err.msg, "scheduler name"));
	req = ok;
	req.svc.netmask_len = 33;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	req = ok;
	req.svc.protocol = 99;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);

	req = ok;
	req.op = IPVS_OP_DEST_ADD;
	req.dest.af = AF_INET6;
	req.dest.fwd = IPVS_FWD_DR;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	assert_non_null(strstr(err.msg, "needs TUN"));
	req.dest.fwd = IPVS_FWD_TUN;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	nlmsg_free(m);
	req.dest.af = AF_INET;
	req.dest.weight = -1;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	assert_non_null(strstr(err.msg, "negative weight"));

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DAEMON_ADD;
	req.daemon.state = 3;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	req.daemon.state = IPVS_DAEMON_MASTER;
	memcpy(req.daemon.mcast_ifname, "eth0", 5);
	req.daemon.syncid = 256;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	req.op = IPVS_OP_DAEMON_DEL; /* only the state identifies the daemon to stop */
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), 0);
	nlmsg_free(m);

	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_TIMEOUTS_SET;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
	assert_string_equal(err.msg, "set timeouts: no timeout given");
	req.op = IPVS_OP_OPEN;
	assert_int_equal(ipvs_msg_build(&req, FAMILY, &m, &err), -1);
}

static void
test_errors_read_in_ipvs_terms(void **state)
{
	static const struct {
		enum ipvs_op op;
		int code;
		const char *msg;
	} cases[] = {
	    {IPVS_OP_SERVICE_DEL, ESRCH, "service delete: no such service"},
	    {IPVS_OP_DEST_ADD, ESRCH, "destination add: no such service"},
	    {IPVS_OP_SERVICE_ADD, EEXIST, "service add: service exists"},
	    {IPVS_OP_DEST_ADD, EEXIST, "destination add: destination exists"},
	    {IPVS_OP_DEST_DEL, ENOENT, "destination delete: no such destination"},
	    {IPVS_OP_SERVICE_ADD, ENOENT, "service add: scheduler not found"},
	    {IPVS_OP_SERVICE_EDIT, ENOENT, "service edit: scheduler not found"},
	    {IPVS_OP_INFO_GET, EPERM, "get info: permission denied (need CAP_NET_ADMIN)"},
	    {IPVS_OP_OPEN, EPROTONOSUPPORT, "open: IPVS not available in this kernel"},
	    {IPVS_OP_DAEMON_DEL, ESRCH, "sync daemon stop: no such sync daemon"},
	    {IPVS_OP_DAEMON_ADD, EEXIST, "sync daemon start: sync daemon already running"},
	    {IPVS_OP_DEST_EDIT, ETIMEDOUT, "destination edit: no answer from the kernel in time"},
	};
	struct ipvs_error err;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ipvs_error_set(&err, cases[i].op, cases[i].code);
		assert_int_equal(err.code, cases[i].code);
		assert_string_equal(err.msg, cases[i].msg);
	}
	ipvs_error_set(&err, IPVS_OP_SERVICE_ADD, EXDEV);
	assert_non_null(strstr(err.msg, "(errno 18)"));
	ipvs_error_set(&err, IPVS_OP_SERVICE_ADD, 0);
	assert_int_equal(err.code, 0);
	assert_string_equal(err.msg, "");
	ipvs_error_set(NULL, IPVS_OP_SERVICE_ADD, EEXIST);
}

/* ---------------------------------------------------------------- replies of a real kernel */

/*
 * tests/unit/fixtures/ipvs/ holds the raw bytes a real kernel (version in KERNEL there)
 * answered, recorded by `make record-ipvs-fixtures` (ipvs_client_test record). The table
 * it recorded is set up in that driver's cmd_record; the values below are the ones set.
 */
#define FIXTURE_DIR     "tests/unit/fixtures/ipvs/"
#define FIXTURE_MAX     64
#define FIXTURE_MAX_LEN 65536

struct fixture {
	uint8_t *buf;
	size_t len;
	struct ipvs_reply r[FIXTURE_MAX];
	size_t n;     /* every message, the final ACK or DONE included */
	size_t ndata; /* DATA replies, all before the final one */
};

/*
 * Reads NAME and splits it into replies: the whole file must parse, every reply must carry
 * the one request's sequence number, and exactly the last must end the answer.
 */
static void
fixture_load(const char *name, struct fixture *fx)
{
	char path[256];
	size_t off = 0;
	FILE *f;
	int rc;

	memset(fx, 0, sizeof(*fx));
	assert_true(snprintf(path, sizeof(path), "%s%s", FIXTURE_DIR, name) < (int)sizeof(path));
	f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("%s: %s (the tests run from the repository root)", path, strerror(errno));
	fx->buf = malloc(FIXTURE_MAX_LEN);
	assert_non_null(fx->buf);
	fx->len = fread(fx->buf, 1, FIXTURE_MAX_LEN, f);
	assert_int_equal(fclose(f), 0);
	assert_true(fx->len > 0 && fx->len < FIXTURE_MAX_LEN);
	while ((rc = ipvs_reply_next(fx->buf, fx->len, &off, &fx->r[fx->n])) == 1) {
		assert_true(fx->n + 1 < FIXTURE_MAX);
		assert_int_equal(fx->r[fx->n].seq, fx->r[0].seq);
		if (fx->r[fx->n].kind == IPVS_REPLY_DATA) {
			assert_int_equal(fx->ndata, fx->n);
			fx->ndata++;
		}
		fx->n++;
	}
	assert_int_equal(rc, 0);
	assert_int_equal(off, fx->len);
	assert_true(fx->n == fx->ndata + 1);
}

/* The answer ended well: DONE for a dump, the ACK otherwise. */
static void
fixture_ends(const struct fixture *fx, enum ipvs_reply_kind kind, int error)
{
	const struct ipvs_reply *last = &fx->r[fx->n - 1];

	assert_int_equal(last->kind, kind);
	assert_int_equal(last->error, error);
}

static void
addr_is(int af, const union ipvs_addr *a, const char *want)
{
	union ipvs_addr w;

	memset(&w, 0, sizeof(w));
	assert_int_equal(inet_pton(af, want, &w), 1);
	assert_memory_equal(a, &w, af == AF_INET6 ? 16 : 4);
}

static void
stats_are_zero(const struct ipvs_stats *st)
{
	const struct ipvs_stats zero = {0};

	assert_memory_equal(st, &zero, sizeof(zero));
}

static void
test_recorded_services_dump_decodes(void **state)
{
	struct fixture fx;
	struct ipvs_service s;
	int seen = 0;

	fixture_load("services_dump.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_DONE, 0);
	assert_int_equal(fx.ndata, 4);
	for (size_t i = 0; i < fx.ndata; i++) {
		assert_int_equal(fx.r[i].cmd, IPVS_CMD_NEW_SERVICE);
		assert_int_equal(ipvs_reply_service(&fx.r[i], &s), 0);
		/* The kernel's internal HASHED flag never reaches the caller. */
		assert_int_equal(s.flags, 0);
		stats_are_zero(&s.stats);
		if (s.fwmark == 7) {
			assert_int_equal(s.af, AF_INET);
			assert_string_equal(s.sched, "rr");
			assert_int_equal(s.persistence_s, 0);
			seen |= 1;
		} else if (s.af == AF_INET6) {
			assert_int_equal(s.protocol, IPPROTO_TCP);
			addr_is(AF_INET6, &s.addr, "2001:db8::1");
			assert_int_equal(s.port, 143);
			assert_string_equal(s.sched, "wlc");
			assert_int_equal(s.persistence_s, 300);
			assert_int_equal(s.netmask_len, 64);
			seen |= 2;
		} else if (s.protocol == IPPROTO_UDP) {
			addr_is(AF_INET, &s.addr, "10.0.0.2");
			assert_int_equal(s.port, 53);
			assert_string_equal(s.sched, "wrr");
			seen |= 4;
		} else {
			assert_int_equal(s.af, AF_INET);
			assert_int_equal(s.protocol, IPPROTO_TCP);
			addr_is(AF_INET, &s.addr, "10.0.0.1");
			assert_int_equal(s.port, 25);
			assert_string_equal(s.sched, "rr");
			assert_int_equal(s.fwmark, 0);
			assert_int_equal(s.persistence_s, 0);
			seen |= 8;
		}
	}
	assert_int_equal(seen, 15);
	free(fx.buf);
}

static void
test_recorded_v4_dests_dump_decodes_each_method(void **state)
{
	struct fixture fx;
	struct ipvs_dest d;
	int seen = 0;

	fixture_load("dests_dump_v4.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_DONE, 0);
	assert_int_equal(fx.ndata, 3);
	for (size_t i = 0; i < fx.ndata; i++) {
		assert_int_equal(fx.r[i].cmd, IPVS_CMD_NEW_DEST);
		assert_int_equal(ipvs_reply_dest(&fx.r[i], AF_INET6, &d), 0);
		/* The kernel names the family: the fallback given above is not used. */
		assert_int_equal(d.af, AF_INET);
		assert_int_equal(d.active_conns, 0);
		assert_int_equal(d.inactive_conns, 0);
		assert_int_equal(d.persist_conns, 0);
		stats_are_zero(&d.stats);
		switch (d.fwd) {
		case IPVS_FWD_DR:
			addr_is(AF_INET, &d.addr, "10.0.1.1");
			assert_int_equal(d.port, 25);
			assert_int_equal(d.weight, 1);
			seen |= 1;
			break;
		case IPVS_FWD_MASQ:
			addr_is(AF_INET, &d.addr, "10.0.1.2");
			assert_int_equal(d.port, 2525);
			assert_int_equal(d.weight, 2);
			seen |= 2;
			break;
		case IPVS_FWD_TUN:
			addr_is(AF_INET, &d.addr, "10.0.1.3");
			assert_int_equal(d.port, 25);
			assert_int_equal(d.weight, 3);
			assert_int_equal(d.u_threshold, 1000);
			assert_int_equal(d.l_threshold, 500);
			assert_int_equal(d.tun_type, 0); /* IPIP */
			seen |= 4;
			break;
		default:
			fail_msg("unexpected forwarding %d", d.fwd);
		}
	}
	assert_int_equal(seen, 7);
	free(fx.buf);
}

static void
test_recorded_v6_fwmark_and_empty_dest_dumps_decode(void **state)
{
	struct fixture fx;
	struct ipvs_dest d;

	fixture_load("dests_dump_v6.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_DONE, 0);
	assert_int_equal(fx.ndata, 1);
	assert_int_equal(ipvs_reply_dest(&fx.r[0], AF_INET, &d), 0);
	assert_int_equal(d.af, AF_INET6);
	addr_is(AF_INET6, &d.addr, "2001:db8::11");
	assert_int_equal(d.port, 143);
	assert_int_equal(d.fwd, IPVS_FWD_DR);
	assert_int_equal(d.weight, 7);
	free(fx.buf);

	fixture_load("dests_dump_fwmark.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_DONE, 0);
	assert_int_equal(fx.ndata, 1);
	assert_int_equal(ipvs_reply_dest(&fx.r[0], AF_INET, &d), 0);
	assert_int_equal(d.af, AF_INET);
	addr_is(AF_INET, &d.addr, "10.0.1.4");
	assert_int_equal(d.port, 0);
	assert_int_equal(d.fwd, IPVS_FWD_DR);
	assert_int_equal(d.weight, 0);
	free(fx.buf);

	/* A service without destinations: the dump is its DONE alone. */
	fixture_load("dests_dump_empty.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_DONE, 0);
	assert_int_equal(fx.ndata, 0);
	free(fx.buf);
}

static void
test_recorded_info_config_and_daemons_decode(void **state)
{
	struct fixture fx;
	struct ipvs_info info;
	struct ipvs_timeouts t;
	struct ipvs_daemon dm;
	struct ipvs_service s;

	fixture_load("info.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_ACK, 0);
	assert_int_equal(fx.ndata, 1);
	assert_int_equal(ipvs_reply_info(&fx.r[0], &info), 0);
	assert_int_equal(info.version, 0x010201); /* "IP Virtual Server version 1.2.1" */
	assert_int_equal(info.conn_tab_size, 4096);
	/* One kind of reply is not mistaken for another. */
	assert_int_equal(ipvs_reply_service(&fx.r[0], &s), -1);
	free(fx.buf);

	fixture_load("config.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_ACK, 0);
	assert_int_equal(fx.ndata, 1);
	assert_int_equal(ipvs_reply_timeouts(&fx.r[0], &t), 0);
	assert_int_equal(t.tcp_s, 1860);
	assert_int_equal(t.tcp_fin_s, 7);
	assert_int_equal(t.udp_s, 300);
	free(fx.buf);

	fixture_load("daemons_dump.bin", &fx);
	fixture_ends(&fx, IPVS_REPLY_DONE, 0);
	assert_int_equal(fx.ndata, 1);
	assert_int_equal(ipvs_reply_daemon(&fx.r[0], &dm), 0);
	assert_int_equal(dm.state, IPVS_DAEMON_MASTER);
	assert_string_equal(dm.mcast_ifname, "eth0");
	assert_int_equal(dm.syncid, 5);
	/* What the kernel chose for what was not given: its default group, port and TTL. */
	assert_int_equal(dm.mcast_port, 8848);
	assert_int_equal(dm.mcast_ttl, 1);
	free(fx.buf);
}

static void
test_recorded_error_is_the_requests_errno(void **state)
{
	struct fixture fx;

	fixture_load("service_add_eexist.bin", &fx);
	assert_int_equal(fx.n, 1);
	fixture_ends(&fx, IPVS_REPLY_ACK, EEXIST);
	free(fx.buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_service_request_decodes_to_what_was_asked),
	    cmocka_unit_test(test_v6_and_fwmark_services_round_trip),
	    cmocka_unit_test(test_dest_requests_round_trip_for_each_method),
	    cmocka_unit_test(test_daemon_request_round_trips),
	    cmocka_unit_test(test_dumps_ask_for_dump_and_others_for_ack),
	    cmocka_unit_test(test_kernel_service_dump_decodes_with_stats64),
	    cmocka_unit_test(test_acks_carry_positive_errno_and_seq),
	    cmocka_unit_test(test_malformed_netlink_headers_are_rejected),
	    cmocka_unit_test(test_malformed_service_attributes_are_rejected),
	    cmocka_unit_test(test_info_timeouts_and_daemon_replies_decode),
	    cmocka_unit_test(test_dest_without_family_takes_the_services),
	    cmocka_unit_test(test_invalid_requests_are_refused_before_the_kernel),
	    cmocka_unit_test(test_errors_read_in_ipvs_terms),
	    cmocka_unit_test(test_recorded_services_dump_decodes),
	    cmocka_unit_test(test_recorded_v4_dests_dump_decodes_each_method),
	    cmocka_unit_test(test_recorded_v6_fwmark_and_empty_dest_dumps_decode),
	    cmocka_unit_test(test_recorded_info_config_and_daemons_decode),
	    cmocka_unit_test(test_recorded_error_is_the_requests_errno),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
