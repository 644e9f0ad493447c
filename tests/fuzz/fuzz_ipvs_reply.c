/*
 * Fuzz target for director/ipvs_msg's reply side: arbitrary bytes as a kernel datagram.
 * The walk must stay inside the buffer and always advance; every decoded struct must keep
 * its invariants; and whatever decodes must survive a round trip (built as a request,
 * decoded again) unchanged, so that the reconciler never sees a phantom difference.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <linux/ip_vs.h>
#include <netinet/in.h>
#include <netlink/msg.h>

#include "ipvs_msg.h"

#define FAMILY 0x1c

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
reparse(struct nl_msg *m, struct ipvs_reply *r)
{
	struct nlmsghdr *nh = nlmsg_hdr(m);
	size_t off = 0;

	if (ipvs_reply_next(nh, nh->nlmsg_len, &off, r) != 1 || r->kind != IPVS_REPLY_DATA)
		abort();
}

static unsigned int
full_mask(const struct ipvs_service *s)
{
	if (s->netmask_len != 0)
		return s->netmask_len;
	return s->af == AF_INET6 ? 128 : 32;
}

static size_t
alen(int af)
{
	return af == AF_INET6 ? 16 : 4;
}

static void
service_round_trip(const struct ipvs_service *s)
{
	struct ipvs_req req;
	struct ipvs_reply r;
	struct ipvs_service t;
	struct nl_msg *m;

	if (s->af != AF_INET && s->af != AF_INET6)
		abort();
	if (strnlen(s->sched, sizeof(s->sched)) == sizeof(s->sched))
		abort();
	if (s->netmask_len > (s->af == AF_INET6 ? 128 : 32))
		abort();
	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_SERVICE_ADD;
	req.svc = *s;
	if (ipvs_msg_build(&req, FAMILY, &m, NULL) == -1)
		return; /* e.g. an empty scheduler name: refused as a request, fine */
	reparse(m, &r);
	if (ipvs_reply_service(&r, &t) == -1)
		abort();
	if (t.af != s->af || t.fwmark != s->fwmark || strcmp(t.sched, s->sched) != 0 ||
	    t.flags != s->flags || t.persistence_s != s->persistence_s)
		abort();
	if (s->fwmark == 0 && (t.protocol != s->protocol || t.port != s->port ||
	                       memcmp(&t.addr, &s->addr, alen(s->af)) != 0))
		abort();
	if (s->persistence_s != 0 && full_mask(&t) != full_mask(s))
		abort();
	nlmsg_free(m);
}

static void
dest_round_trip(const struct ipvs_dest *d)
{
	struct ipvs_req req;
	struct ipvs_reply r;
	struct ipvs_dest t;
	struct nl_msg *m;

	if ((d->af != AF_INET && d->af != AF_INET6) || d->weight < 0 || d->fwd > IPVS_FWD_DR)
		abort();
	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DEST_ADD;
	req.svc.af = d->af;
	req.svc.protocol = IPPROTO_TCP;
	req.dest = *d;
	if (ipvs_msg_build(&req, FAMILY, &m, NULL) == -1)
		abort(); /* every decoded destination is a valid request */
	reparse(m, &r);
	if (ipvs_reply_dest(&r, AF_INET, &t) == -1)
		abort();
	if (t.af != d->af || t.port != d->port || memcmp(&t.addr, &d->addr, alen(d->af)) != 0 ||
	    t.fwd != d->fwd || t.weight != d->weight || t.u_threshold != d->u_threshold ||
	    t.l_threshold != d->l_threshold)
		abort();
	if (d->fwd == IPVS_FWD_TUN &&
	    (t.tun_type != d->tun_type || t.tun_port != d->tun_port || t.tun_flags != d->tun_flags))
		abort();
	nlmsg_free(m);
}

static void
daemon_round_trip(const struct ipvs_daemon *d)
{
	struct ipvs_req req;
	struct ipvs_reply r;
	struct ipvs_daemon t;
	struct nl_msg *m;

	if (d->state != IPVS_DAEMON_MASTER && d->state != IPVS_DAEMON_BACKUP)
		abort();
	if (strnlen(d->mcast_ifname, sizeof(d->mcast_ifname)) == sizeof(d->mcast_ifname))
		abort();
	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_DAEMON_ADD;
	req.daemon = *d;
	if (ipvs_msg_build(&req, FAMILY, &m, NULL) == -1)
		return; /* empty interface name or a sync id above 255 */
	reparse(m, &r);
	if (ipvs_reply_daemon(&r, &t) == -1)
		abort();
	if (t.state != d->state || strcmp(t.mcast_ifname, d->mcast_ifname) != 0 ||
	    t.syncid != d->syncid || t.sync_maxlen != d->sync_maxlen ||
	    t.mcast_port != d->mcast_port || t.mcast_ttl != d->mcast_ttl ||
	    t.mcast_af != d->mcast_af ||
	    (d->mcast_af != 0 && memcmp(&t.mcast_group, &d->mcast_group, alen(d->mcast_af)) != 0))
		abort();
	nlmsg_free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ipvs_reply r;
	struct ipvs_service s;
	struct ipvs_dest d;
	struct ipvs_daemon dm;
	struct ipvs_info info;
	struct ipvs_timeouts t;
	const uint8_t *a;
	size_t off = 0, prev;
	int rc;

	for (;;) {
		prev = off;
		rc = ipvs_reply_next(data, size, &off, &r);
		if (rc != 1)
			break;
		if (off <= prev || off > size)
			abort();
		if ((r.kind == IPVS_REPLY_ACK || r.kind == IPVS_REPLY_DONE) &&
		    (r.error < 0 || r.error > 4095))
			abort();
		if (r.kind != IPVS_REPLY_DATA)
			continue;
		a = (const uint8_t *)r.attrs;
		if (a < data + prev || a + r.attrlen > data + off)
			abort();
		if (ipvs_reply_service(&r, &s) == 0)
			service_round_trip(&s);
		if (ipvs_reply_dest(&r, AF_INET6, &d) == 0)
			dest_round_trip(&d);
		if (ipvs_reply_daemon(&r, &dm) == 0)
			daemon_round_trip(&dm);
		if (ipvs_reply_info(&r, &info) == 0 && r.cmd != IPVS_CMD_SET_INFO)
			abort();
		if (ipvs_reply_timeouts(&r, &t) == 0 && t.tcp_s == 0 && t.tcp_fin_s == 0 &&
		    t.udp_s == 0)
			abort();
	}
	if (rc == 0 && off != size && size != 0)
		abort();
	return 0;
}
