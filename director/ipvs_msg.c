/*
 * IPVS generic-netlink messages without I/O. Owns the request encodings (what the kernel's
 * ip_vs_genl_parse_* require for each command), the reply walk with its bounds checks,
 * and the errno-to-IPVS-terms messages. Never reads past a length it has not checked,
 * never trusts an attribute's declared size, never touches a socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <linux/genetlink.h>
#include <linux/ip_vs.h>
#include <linux/netlink.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>

#include "ipvs_msg.h"
#include "util.h"

/* Largest attribute type any IPVS nest uses (IPVS_DEST_ATTR_TUN_FLAGS today). */
#define ATTR_TABLE_MAX 32

struct attr {
	const uint8_t *data;
	size_t len;
};

static void
msg_invalid(struct ipvs_error *err, enum ipvs_op op, const char *why)
{
	if (err == NULL)
		return;
	err->code = EINVAL;
	if (str_format(err->msg, sizeof(err->msg), "%s: %s", ipvs_op_name(op), why) == -1)
		err->msg[sizeof(err->msg) - 1] = '\0';
}

const char *
ipvs_op_name(enum ipvs_op op)
{
	switch (op) {
	case IPVS_OP_OPEN:
		return "open";
	case IPVS_OP_INFO_GET:
		return "get info";
	case IPVS_OP_SERVICE_ADD:
		return "service add";
	case IPVS_OP_SERVICE_EDIT:
		return "service edit";
	case IPVS_OP_SERVICE_DEL:
		return "service delete";
	case IPVS_OP_SERVICES_DUMP:
		return "services dump";
	case IPVS_OP_DEST_ADD:
		return "destination add";
	case IPVS_OP_DEST_EDIT:
		return "destination edit";
	case IPVS_OP_DEST_DEL:
		return "destination delete";
	case IPVS_OP_DESTS_DUMP:
		return "destinations dump";
	case IPVS_OP_TIMEOUTS_GET:
		return "get timeouts";
	case IPVS_OP_TIMEOUTS_SET:
		return "set timeouts";
	case IPVS_OP_DAEMON_ADD:
		return "sync daemon start";
	case IPVS_OP_DAEMON_DEL:
		return "sync daemon stop";
	case IPVS_OP_DAEMONS_DUMP:
		return "sync daemons dump";
	}
	return "unknown op";
}

const char *
ipvs_fwd_name(enum ipvs_fwd fwd)
{
	switch (fwd) {
	case IPVS_FWD_MASQ:
		return "Masq";
	case IPVS_FWD_LOCAL:
		return "Local";
	case IPVS_FWD_TUN:
		return "Tunnel";
	case IPVS_FWD_DR:
		return "Route";
	}
	return "Unknown";
}

/* What the errno means for this op: the kernel reuses a few codes with different senses. */
static const char *
error_text(enum ipvs_op op, int code)
{
	switch (code) {
	case EPERM:
	case EACCES:
		return "permission denied (need CAP_NET_ADMIN)";
	case ESRCH:
		if (op == IPVS_OP_DAEMON_DEL)
			return "no such sync daemon";
		return "no such service";
	case EEXIST:
		if (op == IPVS_OP_SERVICE_ADD)
			return "service exists";
		if (op == IPVS_OP_DEST_ADD)
			return "destination exists";
		if (op == IPVS_OP_DAEMON_ADD)
			return "sync daemon already running";
		return "already exists";
	case ENOENT:
		/* ip_vs_add_service and ip_vs_edit_service: ip_vs_scheduler_get failed. */
		if (op == IPVS_OP_SERVICE_ADD || op == IPVS_OP_SERVICE_EDIT)
			return "scheduler not found";
		if (op == IPVS_OP_DEST_ADD || op == IPVS_OP_DEST_EDIT || op == IPVS_OP_DEST_DEL)
			return "no such destination";
		return "not found";
	case EPROTONOSUPPORT:
		if (op == IPVS_OP_OPEN)
			return "IPVS not available in this kernel";
		return "protocol not supported";
	case ENODEV:
		return "no such interface";
	case ETIMEDOUT:
		return "no answer from the kernel in time";
	case ENOBUFS:
		return "netlink receive buffer overrun, replies lost";
	case EPROTO:
		return "malformed reply from the kernel";
	case ERANGE:
		return "value out of range";
	case EAFNOSUPPORT:
		return "address family not supported";
	case EINVAL:
		return "invalid argument";
	case ENOMEM:
		return "out of memory";
	case EMSGSIZE:
		return "message too large";
	}
	return NULL;
}

void
ipvs_error_set(struct ipvs_error *err, enum ipvs_op op, int code)
{
	const char *text;
	int r;

	if (err == NULL)
		return;
	err->code = code;
	if (code == 0) {
		err->msg[0] = '\0';
		return;
	}
	text = error_text(op, code);
	if (text != NULL)
		r = str_format(err->msg, sizeof(err->msg), "%s: %s", ipvs_op_name(op), text);
	else
		r = str_format(err->msg, sizeof(err->msg), "%s: %s (errno %d)", ipvs_op_name(op),
		               strerror(code), code);
	if (r == -1)
		err->msg[sizeof(err->msg) - 1] = '\0';
}

int
ipvs_addr_format(int af, const union ipvs_addr *addr, uint16_t port, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (af != AF_INET && af != AF_INET6)
		return -1;
	if (inet_ntop(af, addr, a, sizeof(a)) == NULL)
		return -1;
	if (af == AF_INET6)
		return str_format(buf, len, "[%s]:%u", a, (unsigned int)port);
	return str_format(buf, len, "%s:%u", a, (unsigned int)port);
}

int
ipvs_service_format(const struct ipvs_service *svc, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN + 8];
	const char *proto;

	if (svc->fwmark != 0)
		return str_format(buf, len, "FWM %u", svc->fwmark);
	switch (svc->protocol) {
	case IPPROTO_TCP:
		proto = "TCP";
		break;
	case IPPROTO_UDP:
		proto = "UDP";
		break;
	case IPPROTO_SCTP:
		proto = "SCTP";
		break;
	default:
		proto = "?";
		break;
	}
	if (ipvs_addr_format(svc->af, &svc->addr, svc->port, a, sizeof(a)) == -1)
		return -1;
	return str_format(buf, len, "%s %s", proto, a);
}

/* ---------------------------------------------------------------- requests */

static size_t
addr_len(int af)
{
	return af == AF_INET6 ? sizeof(struct in6_addr) : sizeof(struct in_addr);
}

static int
af_valid(int af)
{
	return af == AF_INET || af == AF_INET6;
}

static int
check_service(const struct ipvs_service *svc, enum ipvs_op op, int full, struct ipvs_error *err)
{
	if (!af_valid(svc->af)) {
		msg_invalid(err, op, "service address family must be inet or inet6");
		return -1;
	}
	if (svc->fwmark == 0 && svc->protocol != IPPROTO_TCP && svc->protocol != IPPROTO_UDP &&
	    svc->protocol != IPPROTO_SCTP) {
		msg_invalid(err, op, "service protocol must be tcp, udp or sctp");
		return -1;
	}
	if (!full)
		return 0;
	if (svc->sched[0] == '\0' || memchr(svc->sched, '\0', sizeof(svc->sched)) == NULL) {
		msg_invalid(err, op, "scheduler name empty or too long");
		return -1;
	}
	if (svc->netmask_len > (svc->af == AF_INET ? 32 : 128)) {
		msg_invalid(err, op, "persistence netmask longer than the address");
		return -1;
	}
	return 0;
}

static int
check_dest(const struct ipvs_service *svc, const struct ipvs_dest *dest, enum ipvs_op op, int full,
           struct ipvs_error *err)
{
	if (!af_valid(dest->af)) {
		msg_invalid(err, op, "destination address family must be inet or inet6");
		return -1;
	}
	if (!full)
		return 0;
	if (dest->af != svc->af && dest->fwd != IPVS_FWD_TUN) {
		/* ip_vs_genl_set_cmd: only tunnelling can cross address families. */
		msg_invalid(err, op, "a destination of another address family needs TUN");
		return -1;
	}
	if (dest->fwd != IPVS_FWD_MASQ && dest->fwd != IPVS_FWD_TUN && dest->fwd != IPVS_FWD_DR &&
	    dest->fwd != IPVS_FWD_LOCAL) {
		msg_invalid(err, op, "unknown forwarding method");
		return -1;
	}
	if (dest->weight < 0) {
		msg_invalid(err, op, "negative weight");
		return -1;
	}
	return 0;
}

/* The persistence netmask: a be32 mask for IPv4, a prefix length for IPv6 (ip_vs_ctl.c). */
static uint32_t
netmask_encode(const struct ipvs_service *svc)
{
	unsigned int bits = svc->netmask_len;

	if (svc->af == AF_INET6)
		return bits == 0 ? 128 : bits;
	if (bits == 0 || bits >= 32)
		return 0xffffffffu;
	return htonl(~((1u << (32 - bits)) - 1));
}

static int
put_service(struct nl_msg *m, const struct ipvs_service *svc, int full)
{
	struct nlattr *nest;
	struct ip_vs_flags flags;

	if ((nest = nla_nest_start(m, IPVS_CMD_ATTR_SERVICE)) == NULL)
		return -1;
	if (nla_put_u16(m, IPVS_SVC_ATTR_AF, (uint16_t)svc->af) < 0)
		return -1;
	if (svc->fwmark != 0) {
		if (nla_put_u32(m, IPVS_SVC_ATTR_FWMARK, svc->fwmark) < 0)
			return -1;
	} else {
		if (nla_put_u16(m, IPVS_SVC_ATTR_PROTOCOL, svc->protocol) < 0 ||
		    nla_put(m, IPVS_SVC_ATTR_ADDR, (int)addr_len(svc->af), &svc->addr) < 0 ||
		    nla_put_u16(m, IPVS_SVC_ATTR_PORT, htons(svc->port)) < 0)
			return -1;
	}
	if (full) {
		flags.flags = svc->flags & ~(uint32_t)(IP_VS_SVC_F_HASHED | IP_VS_SVC_F_PERSISTENT);
		if (svc->persistence_s > 0)
			flags.flags |= IP_VS_SVC_F_PERSISTENT;
		/* A full mask: the flags we send replace the service's, as ipvsadm does. */
		flags.mask = ~0u;
		if (nla_put_string(m, IPVS_SVC_ATTR_SCHED_NAME, svc->sched) < 0 ||
		    nla_put(m, IPVS_SVC_ATTR_FLAGS, sizeof(flags), &flags) < 0 ||
		    nla_put_u32(m, IPVS_SVC_ATTR_TIMEOUT, svc->persistence_s) < 0 ||
		    nla_put_u32(m, IPVS_SVC_ATTR_NETMASK, netmask_encode(svc)) < 0)
			return -1;
	}
	return nla_nest_end(m, nest) < 0 ? -1 : 0;
}

static int
put_dest(struct nl_msg *m, const struct ipvs_dest *dest, int full)
{
	struct nlattr *nest;

	if ((nest = nla_nest_start(m, IPVS_CMD_ATTR_DEST)) == NULL)
		return -1;
	if (nla_put(m, IPVS_DEST_ATTR_ADDR, (int)addr_len(dest->af), &dest->addr) < 0 ||
	    nla_put_u16(m, IPVS_DEST_ATTR_PORT, htons(dest->port)) < 0 ||
	    nla_put_u16(m, IPVS_DEST_ATTR_ADDR_FAMILY, (uint16_t)dest->af) < 0)
		return -1;
	if (full) {
		if (nla_put_u32(m, IPVS_DEST_ATTR_FWD_METHOD, (uint32_t)dest->fwd) < 0 ||
		    nla_put_u32(m, IPVS_DEST_ATTR_WEIGHT, (uint32_t)dest->weight) < 0 ||
		    nla_put_u32(m, IPVS_DEST_ATTR_U_THRESH, dest->u_threshold) < 0 ||
		    nla_put_u32(m, IPVS_DEST_ATTR_L_THRESH, dest->l_threshold) < 0)
			return -1;
		if (dest->fwd == IPVS_FWD_TUN &&
		    (nla_put_u8(m, IPVS_DEST_ATTR_TUN_TYPE, dest->tun_type) < 0 ||
		     nla_put_u16(m, IPVS_DEST_ATTR_TUN_PORT, htons(dest->tun_port)) < 0 ||
		     nla_put_u16(m, IPVS_DEST_ATTR_TUN_FLAGS, dest->tun_flags) < 0))
			return -1;
	}
	return nla_nest_end(m, nest) < 0 ? -1 : 0;
}

static int
put_daemon(struct nl_msg *m, const struct ipvs_daemon *d, int full)
{
	struct nlattr *nest;

	if ((nest = nla_nest_start(m, IPVS_CMD_ATTR_DAEMON)) == NULL)
		return -1;
	if (nla_put_u32(m, IPVS_DAEMON_ATTR_STATE, (uint32_t)d->state) < 0)
		return -1;
	if (full) {
		if (nla_put_string(m, IPVS_DAEMON_ATTR_MCAST_IFN, d->mcast_ifname) < 0 ||
		    nla_put_u32(m, IPVS_DAEMON_ATTR_SYNC_ID, d->syncid) < 0)
			return -1;
		if (d->sync_maxlen != 0 &&
		    nla_put_u16(m, IPVS_DAEMON_ATTR_SYNC_MAXLEN, d->sync_maxlen) < 0)
			return -1;
		if (d->mcast_port != 0 &&
		    nla_put_u16(m, IPVS_DAEMON_ATTR_MCAST_PORT, d->mcast_port) < 0)
			return -1;
		if (d->mcast_ttl != 0 &&
		    nla_put_u8(m, IPVS_DAEMON_ATTR_MCAST_TTL, d->mcast_ttl) < 0)
			return -1;
		if (d->mcast_af == AF_INET &&
		    nla_put(m, IPVS_DAEMON_ATTR_MCAST_GROUP, 4, &d->mcast_group.in) < 0)
			return -1;
		if (d->mcast_af == AF_INET6 &&
		    nla_put(m, IPVS_DAEMON_ATTR_MCAST_GROUP6, 16, &d->mcast_group.in6) < 0)
			return -1;
	}
	return nla_nest_end(m, nest) < 0 ? -1 : 0;
}

static int
check_daemon(const struct ipvs_daemon *d, enum ipvs_op op, int full, struct ipvs_error *err)
{
	if (d->state != IPVS_DAEMON_MASTER && d->state != IPVS_DAEMON_BACKUP) {
		msg_invalid(err, op, "sync daemon state must be master or backup");
		return -1;
	}
	if (!full)
		return 0;
	if (d->mcast_ifname[0] == '\0' ||
	    memchr(d->mcast_ifname, '\0', sizeof(d->mcast_ifname)) == NULL) {
		msg_invalid(err, op, "multicast interface name empty or too long");
		return -1;
	}
	if (d->syncid > 255) {
		msg_invalid(err, op, "sync id above 255");
		return -1;
	}
	if (d->mcast_af != 0 && !af_valid(d->mcast_af)) {
		msg_invalid(err, op, "multicast group family must be inet or inet6");
		return -1;
	}
	return 0;
}

int
ipvs_msg_is_dump(enum ipvs_op op)
{
	return op == IPVS_OP_SERVICES_DUMP || op == IPVS_OP_DESTS_DUMP ||
	       op == IPVS_OP_DAEMONS_DUMP;
}

/* The command and whether the service / destination / daemon go in full. */
static int
op_cmd(enum ipvs_op op, uint8_t *cmd)
{
	static const struct {
		enum ipvs_op op;
		uint8_t cmd;
	} map[] = {
	    {IPVS_OP_INFO_GET, IPVS_CMD_GET_INFO},
	    {IPVS_OP_SERVICE_ADD, IPVS_CMD_NEW_SERVICE},
	    {IPVS_OP_SERVICE_EDIT, IPVS_CMD_SET_SERVICE},
	    {IPVS_OP_SERVICE_DEL, IPVS_CMD_DEL_SERVICE},
	    {IPVS_OP_SERVICES_DUMP, IPVS_CMD_GET_SERVICE},
	    {IPVS_OP_DEST_ADD, IPVS_CMD_NEW_DEST},
	    {IPVS_OP_DEST_EDIT, IPVS_CMD_SET_DEST},
	    {IPVS_OP_DEST_DEL, IPVS_CMD_DEL_DEST},
	    {IPVS_OP_DESTS_DUMP, IPVS_CMD_GET_DEST},
	    {IPVS_OP_TIMEOUTS_GET, IPVS_CMD_GET_CONFIG},
	    {IPVS_OP_TIMEOUTS_SET, IPVS_CMD_SET_CONFIG},
	    {IPVS_OP_DAEMON_ADD, IPVS_CMD_NEW_DAEMON},
	    {IPVS_OP_DAEMON_DEL, IPVS_CMD_DEL_DAEMON},
	    {IPVS_OP_DAEMONS_DUMP, IPVS_CMD_GET_DAEMON},
	};
	size_t i;

	for (i = 0; i < ARRAY_LEN(map); i++) {
		if (map[i].op == op) {
			*cmd = map[i].cmd;
			return 0;
		}
	}
	return -1;
}

static int
check_req(const struct ipvs_req *req, struct ipvs_error *err)
{
	const struct ipvs_timeouts *t = &req->timeouts;

	switch (req->op) {
	case IPVS_OP_SERVICE_ADD:
	case IPVS_OP_SERVICE_EDIT:
		return check_service(&req->svc, req->op, 1, err);
	case IPVS_OP_SERVICE_DEL:
	case IPVS_OP_DESTS_DUMP:
		return check_service(&req->svc, req->op, 0, err);
	case IPVS_OP_DEST_ADD:
	case IPVS_OP_DEST_EDIT:
	case IPVS_OP_DEST_DEL:
		if (check_service(&req->svc, req->op, 0, err) == -1)
			return -1;
		return check_dest(&req->svc, &req->dest, req->op, req->op != IPVS_OP_DEST_DEL, err);
	case IPVS_OP_TIMEOUTS_SET:
		if (t->tcp_s == 0 && t->tcp_fin_s == 0 && t->udp_s == 0) {
			msg_invalid(err, req->op, "no timeout given");
			return -1;
		}
		/* ip_vs_set_timeout refuses what does not fit in jiffies as an int. */
		if (t->tcp_s > INT_MAX / 1000 || t->tcp_fin_s > INT_MAX / 1000 ||
		    t->udp_s > INT_MAX / 1000) {
			msg_invalid(err, req->op, "timeout too large");
			return -1;
		}
		return 0;
	case IPVS_OP_DAEMON_ADD:
	case IPVS_OP_DAEMON_DEL:
		return check_daemon(&req->daemon, req->op, req->op == IPVS_OP_DAEMON_ADD, err);
	default:
		return 0;
	}
}

static int
put_attrs(struct nl_msg *m, const struct ipvs_req *req)
{
	const struct ipvs_timeouts *t = &req->timeouts;

	switch (req->op) {
	case IPVS_OP_SERVICE_ADD:
	case IPVS_OP_SERVICE_EDIT:
		return put_service(m, &req->svc, 1);
	case IPVS_OP_SERVICE_DEL:
	case IPVS_OP_DESTS_DUMP:
		return put_service(m, &req->svc, 0);
	case IPVS_OP_DEST_ADD:
	case IPVS_OP_DEST_EDIT:
	case IPVS_OP_DEST_DEL:
		if (put_service(m, &req->svc, 0) == -1)
			return -1;
		return put_dest(m, &req->dest, req->op != IPVS_OP_DEST_DEL);
	case IPVS_OP_TIMEOUTS_SET:
		if (t->tcp_s != 0 && nla_put_u32(m, IPVS_CMD_ATTR_TIMEOUT_TCP, t->tcp_s) < 0)
			return -1;
		if (t->tcp_fin_s != 0 &&
		    nla_put_u32(m, IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, t->tcp_fin_s) < 0)
			return -1;
		if (t->udp_s != 0 && nla_put_u32(m, IPVS_CMD_ATTR_TIMEOUT_UDP, t->udp_s) < 0)
			return -1;
		return 0;
	case IPVS_OP_DAEMON_ADD:
	case IPVS_OP_DAEMON_DEL:
		return put_daemon(m, &req->daemon, req->op == IPVS_OP_DAEMON_ADD);
	default:
		return 0;
	}
}

int
ipvs_msg_build(const struct ipvs_req *req, int family, struct nl_msg **out, struct ipvs_error *err)
{
	struct nl_msg *m;
	uint8_t cmd;
	int flags;

	*out = NULL;
	if (op_cmd(req->op, &cmd) == -1) {
		msg_invalid(err, req->op, "not a request");
		return -1;
	}
	if (check_req(req, err) == -1)
		return -1;
	if ((m = nlmsg_alloc()) == NULL) {
		ipvs_error_set(err, req->op, ENOMEM);
		return -1;
	}
	/* Dumps end with NLMSG_DONE; everything else asks for the ACK we match by seq. */
	flags = ipvs_msg_is_dump(req->op) ? NLM_F_DUMP : NLM_F_ACK;
	if (genlmsg_put(m, NL_AUTO_PORT, NL_AUTO_SEQ, family, 0, flags, cmd, IPVS_GENL_VERSION) ==
	        NULL ||
	    put_attrs(m, req) == -1) {
		nlmsg_free(m);
		ipvs_error_set(err, req->op, EMSGSIZE);
		return -1;
	}
	*out = m;
	return 0;
}

/* ---------------------------------------------------------------- replies */

int
ipvs_reply_next(const void *buf, size_t len, size_t *off, struct ipvs_reply *r)
{
	const uint8_t *p;
	struct nlmsghdr nh;
	struct genlmsghdr gh;
	size_t rem, plen, step;
	int32_t e;

	if (*off >= len)
		return 0;
	p = (const uint8_t *)buf + *off;
	rem = len - *off;
	if (rem < sizeof(nh))
		return -1;
	memcpy(&nh, p, sizeof(nh));
	if (nh.nlmsg_len < sizeof(nh) || nh.nlmsg_len > rem)
		return -1;
	plen = nh.nlmsg_len - sizeof(nh);
	p += sizeof(nh);
	/* The last message of a buffer need not carry its alignment padding. */
	step = NLMSG_ALIGN(nh.nlmsg_len);
	*off += step < rem ? step : rem;

	memset(r, 0, sizeof(*r));
	r->type = nh.nlmsg_type;
	r->flags = nh.nlmsg_flags;
	r->seq = nh.nlmsg_seq;
	switch (nh.nlmsg_type) {
	case NLMSG_ERROR:
	case NLMSG_DONE:
		if (plen < sizeof(e)) {
			if (nh.nlmsg_type == NLMSG_ERROR)
				return -1;
			e = 0;
		} else
			memcpy(&e, p, sizeof(e));
		/* A negative errno or 0; anything else is not what a kernel sends. */
		if (e > 0 || e < -4095)
			return -1;
		r->kind = nh.nlmsg_type == NLMSG_ERROR ? IPVS_REPLY_ACK : IPVS_REPLY_DONE;
		r->error = -e;
		return 1;
	default:
		break;
	}
	if (nh.nlmsg_type < NLMSG_MIN_TYPE) {
		r->kind = IPVS_REPLY_SKIP;
		return 1;
	}
	if (plen < sizeof(gh))
		return -1;
	memcpy(&gh, p, sizeof(gh));
	r->kind = IPVS_REPLY_DATA;
	r->cmd = gh.cmd;
	r->attrs = (const struct nlattr *)(const void *)(p + GENL_HDRLEN);
	r->attrlen = plen - GENL_HDRLEN;
	return 1;
}

/*
 * Indexes the attributes in p[0..len) by type (the last of a type wins, as in the kernel).
 * -1 if an attribute header or length does not fit: the set is malformed as a whole.
 */
static int
attr_table(const uint8_t *p, size_t len, struct attr *tb, size_t max)
{
	struct nlattr na;
	size_t type, step;

	memset(tb, 0, (max + 1) * sizeof(*tb));
	while (len > 0) {
		if (len < sizeof(na))
			return -1;
		memcpy(&na, p, sizeof(na));
		if (na.nla_len < sizeof(na) || na.nla_len > len)
			return -1;
		type = na.nla_type & NLA_TYPE_MASK;
		if (type <= max) {
			tb[type].data = p + NLA_HDRLEN;
			tb[type].len = na.nla_len - NLA_HDRLEN;
		}
		step = NLA_ALIGN(na.nla_len);
		if (step > len)
			step = len;
		p += step;
		len -= step;
	}
	return 0;
}

static int
attr_nested(const struct attr *a, struct attr *tb, size_t max)
{
	if (a->data == NULL)
		return -1;
	return attr_table(a->data, a->len, tb, max);
}

/* Typed reads demand the exact width: a u32 in 3 or 5 bytes is malformed. */
static int
get_u8(const struct attr *a, uint8_t *v)
{
	if (a->data == NULL || a->len != sizeof(*v))
		return -1;
	*v = a->data[0];
	return 0;
}

static int
get_u16(const struct attr *a, uint16_t *v)
{
	if (a->data == NULL || a->len != sizeof(*v))
		return -1;
	memcpy(v, a->data, sizeof(*v));
	return 0;
}

static int
get_u32(const struct attr *a, uint32_t *v)
{
	if (a->data == NULL || a->len != sizeof(*v))
		return -1;
	memcpy(v, a->data, sizeof(*v));
	return 0;
}

static int
get_u64(const struct attr *a, uint64_t *v)
{
	if (a->data == NULL || a->len != sizeof(*v))
		return -1;
	memcpy(v, a->data, sizeof(*v));
	return 0;
}

/* An optional attribute: absent leaves 0, present must be well formed. */
static int
opt_u32(const struct attr *a, uint32_t *v)
{
	*v = 0;
	return a->data == NULL ? 0 : get_u32(a, v);
}

static int
get_string(const struct attr *a, char *dst, size_t dstlen)
{
	size_t n;

	if (a->data == NULL || a->len == 0)
		return -1;
	n = strnlen((const char *)a->data, a->len);
	/* Must be terminated inside the attribute and fit with its terminator. */
	if (n == a->len || n >= dstlen)
		return -1;
	memcpy(dst, a->data, n);
	dst[n] = '\0';
	return 0;
}

/* The kernel sends a whole union nf_inet_addr (16 bytes) even for IPv4. */
static int
get_addr(const struct attr *a, int af, union ipvs_addr *addr)
{
	memset(addr, 0, sizeof(*addr));
	if (a->data == NULL || (af != AF_INET && af != AF_INET6))
		return -1;
	if (a->len < addr_len(af) || a->len > sizeof(struct in6_addr))
		return -1;
	memcpy(addr, a->data, addr_len(af));
	return 0;
}

static int
get_af(const struct attr *a, int *af)
{
	uint16_t v;

	if (get_u16(a, &v) == -1 || (v != AF_INET && v != AF_INET6))
		return -1;
	*af = v;
	return 0;
}

static int
get_stats(const struct attr *s64, const struct attr *s32, struct ipvs_stats *st)
{
	struct attr tb[IPVS_STATS_ATTR_MAX + 1];
	uint64_t *f[IPVS_STATS_ATTR_MAX + 1] = {
	    [IPVS_STATS_ATTR_CONNS] = &st->conns,       [IPVS_STATS_ATTR_INPKTS] = &st->inpkts,
	    [IPVS_STATS_ATTR_OUTPKTS] = &st->outpkts,   [IPVS_STATS_ATTR_INBYTES] = &st->inbytes,
	    [IPVS_STATS_ATTR_OUTBYTES] = &st->outbytes, [IPVS_STATS_ATTR_CPS] = &st->cps,
	    [IPVS_STATS_ATTR_INPPS] = &st->inpps,       [IPVS_STATS_ATTR_OUTPPS] = &st->outpps,
	    [IPVS_STATS_ATTR_INBPS] = &st->inbps,       [IPVS_STATS_ATTR_OUTBPS] = &st->outbps,
	};
	uint32_t v32;
	size_t i;

	memset(st, 0, sizeof(*st));
	if (s64->data != NULL) {
		if (attr_nested(s64, tb, IPVS_STATS_ATTR_MAX) == -1)
			return -1;
		for (i = 0; i < ARRAY_LEN(f); i++) {
			if (f[i] != NULL && tb[i].data != NULL && get_u64(&tb[i], f[i]) == -1)
				return -1;
		}
		return 0;
	}
	/* Kernels before 4.1 have only the old nest: u32 counters, u64 byte counts. */
	if (s32->data == NULL)
		return 0;
	if (attr_nested(s32, tb, IPVS_STATS_ATTR_MAX) == -1)
		return -1;
	for (i = 0; i < ARRAY_LEN(f); i++) {
		if (f[i] == NULL || tb[i].data == NULL)
			continue;
		if (i == IPVS_STATS_ATTR_INBYTES || i == IPVS_STATS_ATTR_OUTBYTES) {
			if (get_u64(&tb[i], f[i]) == -1)
				return -1;
		} else {
			if (get_u32(&tb[i], &v32) == -1)
				return -1;
			*f[i] = v32;
		}
	}
	return 0;
}

/* The top-level attributes of a DATA reply of command cmd. */
static int
reply_table(const struct ipvs_reply *r, uint8_t cmd, struct attr *tb, size_t max)
{
	if (r->kind != IPVS_REPLY_DATA || r->cmd != cmd)
		return -1;
	return attr_table((const uint8_t *)r->attrs, r->attrlen, tb, max);
}

static uint8_t
netmask_decode(int af, uint32_t v)
{
	uint32_t m;
	uint8_t bits = 0;

	if (af == AF_INET6)
		return (uint8_t)v;
	/* Leading ones of the be32 mask; a non-contiguous mask (ipvsadm allows one) stops there. */
	for (m = ntohl(v); m & 0x80000000u; m <<= 1)
		bits++;
	return bits;
}

int
ipvs_reply_service(const struct ipvs_reply *r, struct ipvs_service *svc)
{
	struct attr top[IPVS_CMD_ATTR_MAX + 1], tb[ATTR_TABLE_MAX + 1];
	struct ip_vs_flags flags;
	uint32_t timeout, netmask;
	uint16_t port;

	memset(svc, 0, sizeof(*svc));
	if (reply_table(r, IPVS_CMD_NEW_SERVICE, top, IPVS_CMD_ATTR_MAX) == -1 ||
	    attr_nested(&top[IPVS_CMD_ATTR_SERVICE], tb, ATTR_TABLE_MAX) == -1)
		return -1;
	if (get_af(&tb[IPVS_SVC_ATTR_AF], &svc->af) == -1)
		return -1;
	if (tb[IPVS_SVC_ATTR_FWMARK].data != NULL) {
		if (get_u32(&tb[IPVS_SVC_ATTR_FWMARK], &svc->fwmark) == -1 || svc->fwmark == 0)
			return -1;
	} else {
		if (get_u16(&tb[IPVS_SVC_ATTR_PROTOCOL], &svc->protocol) == -1 ||
		    get_addr(&tb[IPVS_SVC_ATTR_ADDR], svc->af, &svc->addr) == -1 ||
		    get_u16(&tb[IPVS_SVC_ATTR_PORT], &port) == -1)
			return -1;
		svc->port = ntohs(port);
	}
	if (get_string(&tb[IPVS_SVC_ATTR_SCHED_NAME], svc->sched, sizeof(svc->sched)) == -1)
		return -1;
	if (tb[IPVS_SVC_ATTR_FLAGS].data == NULL || tb[IPVS_SVC_ATTR_FLAGS].len != sizeof(flags))
		return -1;
	memcpy(&flags, tb[IPVS_SVC_ATTR_FLAGS].data, sizeof(flags));
	if (get_u32(&tb[IPVS_SVC_ATTR_TIMEOUT], &timeout) == -1 ||
	    get_u32(&tb[IPVS_SVC_ATTR_NETMASK], &netmask) == -1)
		return -1;
	if (svc->af == AF_INET6 && netmask > 128)
		return -1;
	svc->flags = flags.flags & ~(uint32_t)(IP_VS_SVC_F_HASHED | IP_VS_SVC_F_PERSISTENT);
	if (flags.flags & IP_VS_SVC_F_PERSISTENT) {
		svc->persistence_s = timeout;
		svc->netmask_len = netmask_decode(svc->af, netmask);
	}
	return get_stats(&tb[IPVS_SVC_ATTR_STATS64], &tb[IPVS_SVC_ATTR_STATS], &svc->stats);
}

int
ipvs_reply_dest(const struct ipvs_reply *r, int svc_af, struct ipvs_dest *dest)
{
	struct attr top[IPVS_CMD_ATTR_MAX + 1], tb[ATTR_TABLE_MAX + 1];
	uint32_t fwd, weight;
	uint16_t port;

	memset(dest, 0, sizeof(*dest));
	if (reply_table(r, IPVS_CMD_NEW_DEST, top, IPVS_CMD_ATTR_MAX) == -1 ||
	    attr_nested(&top[IPVS_CMD_ATTR_DEST], tb, ATTR_TABLE_MAX) == -1)
		return -1;
	/* Before 4.2 there was no per-destination family: it is the service's. */
	dest->af = svc_af;
	if (tb[IPVS_DEST_ATTR_ADDR_FAMILY].data != NULL &&
	    get_af(&tb[IPVS_DEST_ATTR_ADDR_FAMILY], &dest->af) == -1)
		return -1;
	if (get_addr(&tb[IPVS_DEST_ATTR_ADDR], dest->af, &dest->addr) == -1 ||
	    get_u16(&tb[IPVS_DEST_ATTR_PORT], &port) == -1 ||
	    get_u32(&tb[IPVS_DEST_ATTR_FWD_METHOD], &fwd) == -1 ||
	    get_u32(&tb[IPVS_DEST_ATTR_WEIGHT], &weight) == -1)
		return -1;
	dest->port = ntohs(port);
	fwd &= IP_VS_CONN_F_FWD_MASK;
	if (fwd > IPVS_FWD_DR || weight > INT32_MAX)
		return -1;
	dest->fwd = (enum ipvs_fwd)fwd;
	dest->weight = (int32_t)weight;
	if (opt_u32(&tb[IPVS_DEST_ATTR_U_THRESH], &dest->u_threshold) == -1 ||
	    opt_u32(&tb[IPVS_DEST_ATTR_L_THRESH], &dest->l_threshold) == -1 ||
	    opt_u32(&tb[IPVS_DEST_ATTR_ACTIVE_CONNS], &dest->active_conns) == -1 ||
	    opt_u32(&tb[IPVS_DEST_ATTR_INACT_CONNS], &dest->inactive_conns) == -1 ||
	    opt_u32(&tb[IPVS_DEST_ATTR_PERSIST_CONNS], &dest->persist_conns) == -1)
		return -1;
	if (tb[IPVS_DEST_ATTR_TUN_TYPE].data != NULL &&
	    get_u8(&tb[IPVS_DEST_ATTR_TUN_TYPE], &dest->tun_type) == -1)
		return -1;
	if (tb[IPVS_DEST_ATTR_TUN_PORT].data != NULL) {
		if (get_u16(&tb[IPVS_DEST_ATTR_TUN_PORT], &port) == -1)
			return -1;
		dest->tun_port = ntohs(port);
	}
	if (tb[IPVS_DEST_ATTR_TUN_FLAGS].data != NULL &&
	    get_u16(&tb[IPVS_DEST_ATTR_TUN_FLAGS], &dest->tun_flags) == -1)
		return -1;
	return get_stats(&tb[IPVS_DEST_ATTR_STATS64], &tb[IPVS_DEST_ATTR_STATS], &dest->stats);
}

int
ipvs_reply_daemon(const struct ipvs_reply *r, struct ipvs_daemon *d)
{
	struct attr top[IPVS_CMD_ATTR_MAX + 1], tb[ATTR_TABLE_MAX + 1];
	uint32_t state;
	const struct attr *g;

	memset(d, 0, sizeof(*d));
	if (reply_table(r, IPVS_CMD_NEW_DAEMON, top, IPVS_CMD_ATTR_MAX) == -1 ||
	    attr_nested(&top[IPVS_CMD_ATTR_DAEMON], tb, ATTR_TABLE_MAX) == -1)
		return -1;
	if (get_u32(&tb[IPVS_DAEMON_ATTR_STATE], &state) == -1 ||
	    (state != IPVS_DAEMON_MASTER && state != IPVS_DAEMON_BACKUP))
		return -1;
	d->state = (enum ipvs_daemon_state)state;
	if (get_string(&tb[IPVS_DAEMON_ATTR_MCAST_IFN], d->mcast_ifname, sizeof(d->mcast_ifname)) ==
	        -1 ||
	    get_u32(&tb[IPVS_DAEMON_ATTR_SYNC_ID], &d->syncid) == -1)
		return -1;
	if (tb[IPVS_DAEMON_ATTR_SYNC_MAXLEN].data != NULL &&
	    get_u16(&tb[IPVS_DAEMON_ATTR_SYNC_MAXLEN], &d->sync_maxlen) == -1)
		return -1;
	if (tb[IPVS_DAEMON_ATTR_MCAST_PORT].data != NULL &&
	    get_u16(&tb[IPVS_DAEMON_ATTR_MCAST_PORT], &d->mcast_port) == -1)
		return -1;
	if (tb[IPVS_DAEMON_ATTR_MCAST_TTL].data != NULL &&
	    get_u8(&tb[IPVS_DAEMON_ATTR_MCAST_TTL], &d->mcast_ttl) == -1)
		return -1;
	g = &tb[IPVS_DAEMON_ATTR_MCAST_GROUP];
	if (g->data != NULL) {
		if (g->len != sizeof(struct in_addr))
			return -1;
		d->mcast_af = AF_INET;
		memcpy(&d->mcast_group.in, g->data, g->len);
	}
	g = &tb[IPVS_DAEMON_ATTR_MCAST_GROUP6];
	if (g->data != NULL) {
		if (g->len != sizeof(struct in6_addr) || d->mcast_af != 0)
			return -1;
		d->mcast_af = AF_INET6;
		memcpy(&d->mcast_group.in6, g->data, g->len);
	}
	return 0;
}

int
ipvs_reply_info(const struct ipvs_reply *r, struct ipvs_info *info)
{
	struct attr tb[IPVS_INFO_ATTR_MAX + 1];

	memset(info, 0, sizeof(*info));
	if (reply_table(r, IPVS_CMD_SET_INFO, tb, IPVS_INFO_ATTR_MAX) == -1)
		return -1;
	if (get_u32(&tb[IPVS_INFO_ATTR_VERSION], &info->version) == -1 ||
	    get_u32(&tb[IPVS_INFO_ATTR_CONN_TAB_SIZE], &info->conn_tab_size) == -1)
		return -1;
	return 0;
}

int
ipvs_reply_timeouts(const struct ipvs_reply *r, struct ipvs_timeouts *t)
{
	struct attr tb[IPVS_CMD_ATTR_MAX + 1];

	memset(t, 0, sizeof(*t));
	if (reply_table(r, IPVS_CMD_SET_CONFIG, tb, IPVS_CMD_ATTR_MAX) == -1)
		return -1;
	/* Each is present only if its protocol is compiled in (CONFIG_IP_VS_PROTO_TCP/UDP). */
	if (opt_u32(&tb[IPVS_CMD_ATTR_TIMEOUT_TCP], &t->tcp_s) == -1 ||
	    opt_u32(&tb[IPVS_CMD_ATTR_TIMEOUT_TCP_FIN], &t->tcp_fin_s) == -1 ||
	    opt_u32(&tb[IPVS_CMD_ATTR_TIMEOUT_UDP], &t->udp_s) == -1)
		return -1;
	if (t->tcp_s == 0 && t->tcp_fin_s == 0 && t->udp_s == 0)
		return -1;
	return 0;
}
