/*
 * Direct-routing prerequisites of a relay: each VIP on lo as a host address (/32, /128)
 * so the relay accepts the director's unchanged packets, and arp_ignore=1, arp_announce=2
 * so it never answers or announces ARP for the VIP (the director owns it on the LAN).
 * Stop undoes exactly what start did: an address or a setting that was there stays.
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

#include "agent.h"
#include "log.h"
#include "util.h"

static int
agent_sysctl_read(const char *path, long *value)
{
	char buf[32];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	uint64_t v;
	if (parse_u64(buf, 0, 1000, &v) == -1)
		return -1;
	*value = (long)v;
	return 0;
}

static int
agent_sysctl_write(const char *path, long value)
{
	char buf[32];
	int fd, rc = 0;

	if (str_format(buf, sizeof(buf), "%ld\n", value) == -1 ||
	    (fd = open(path, O_WRONLY | O_CLOEXEC)) == -1)
		return -1;
	if (write(fd, buf, strlen(buf)) != (ssize_t)strlen(buf))
		rc = -1;
	if (close(fd) == -1)
		rc = -1;
	return rc;
}

/* RTM_NEWADDR (add) or RTM_DELADDR on lo; 0, or a negative libnl error (-NLE_EXIST...). */
static int
agent_addr_change(struct nl_sock *sk, int type, const struct conf_ip *ip)
{
	struct ifaddrmsg ifa;
	struct nl_msg *msg;
	size_t alen = ip->af == AF_INET6 ? 16 : 4;
	int flags = type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0, rc;
	unsigned int lo = if_nametoindex("lo");

	if (lo == 0)
		return -NLE_NODEV;
	memset(&ifa, 0, sizeof(ifa));
	ifa.ifa_family = (unsigned char)ip->af;
	ifa.ifa_prefixlen = ip->af == AF_INET6 ? 128 : 32;
	ifa.ifa_scope = RT_SCOPE_UNIVERSE;
	ifa.ifa_index = lo;
	if ((msg = nlmsg_alloc_simple(type, flags)) == NULL)
		return -NLE_NOMEM;
	if (nlmsg_append(msg, &ifa, sizeof(ifa), NLMSG_ALIGNTO) < 0 ||
	    nla_put(msg, IFA_LOCAL, (int)alen, &ip->addr) < 0 ||
	    nla_put(msg, IFA_ADDRESS, (int)alen, &ip->addr) < 0) {
		nlmsg_free(msg);
		return -NLE_NOMEM;
	}
	rc = nl_send_sync(sk, msg); /* frees msg; waits for the kernel's ACK */
	return rc < 0 ? rc : 0;
}

static struct nl_sock *
agent_rtnl_open(char *err, size_t errlen)
{
	struct nl_sock *sk;
	int rc;

	if ((sk = nl_socket_alloc()) == NULL) {
		err_set(err, errlen, "netlink: out of memory");
		return NULL;
	}
	if ((rc = nl_connect(sk, NETLINK_ROUTE)) < 0) {
		err_set(err, errlen, "netlink: %s", nl_geterror(rc));
		nl_socket_free(sk);
		return NULL;
	}
	return sk;
}

int
agent_dr_setup(struct agent *a, char *err, size_t errlen)
{
	static const char *const names[2] = {"arp_ignore", "arp_announce"};
	static const long wants[2] = {1, 2};
	const struct conf_strlist *vl = &a->conf.relay.dr_vips;
	static char paths[2][128];
	struct nl_sock *sk;

	a->nvips = 0;
	if (vl->n == 0)
		return 0;
	if (vl->n > AGENT_DR_VIPS_MAX) {
		err_set(err, errlen, "dr_vips: more than %d", AGENT_DR_VIPS_MAX);
		return -1;
	}
	for (size_t i = 0; i < vl->n; i++) {
		struct conf_ip *ip = &a->vips[i].ip;

		memset(ip, 0, sizeof(*ip));
		if (inet_pton(AF_INET, vl->v[i], &ip->addr.in) == 1)
			ip->af = AF_INET;
		else if (inet_pton(AF_INET6, vl->v[i], &ip->addr.in6) == 1)
			ip->af = AF_INET6;
		else {
			err_set(err, errlen, "dr_vips: %s is not an IP address", vl->v[i]);
			return -1;
		}
		(void)str_copy(ip->str, sizeof(ip->str), vl->v[i]);
	}
	/* The strictest of "all" and the interface wins for both: "all" covers every link. */
	for (int i = 0; i < 2; i++) {
		struct agent_dr_sysctl *s = &a->sysctls[i];

		if (str_format(paths[i], sizeof(paths[i]), "%s/sys/net/ipv4/conf/all/%s",
		               a->proc_root, names[i]) == -1) {
			err_set(err, errlen, "sysctl path too long");
			agent_dr_undo(a);
			return -1;
		}
		s->path = paths[i];
		s->want = wants[i];
		s->changed = 0;
		if (agent_sysctl_read(s->path, &s->old) == -1) {
			err_set(err, errlen, "%s: %s", s->path, strerror(errno));
			agent_dr_undo(a);
			return -1;
		}
		if (s->old >= s->want)
			continue;
		if (agent_sysctl_write(s->path, s->want) == -1) {
			err_set(err, errlen, "%s: %s", s->path, strerror(errno));
			agent_dr_undo(a);
			return -1;
		}
		s->changed = 1;
		log_info("dr: net.ipv4.conf.all.%s %ld -> %ld", names[i], s->old, s->want);
	}
	if ((sk = agent_rtnl_open(err, errlen)) == NULL) {
		agent_dr_undo(a);
		return -1;
	}
	for (size_t i = 0; i < vl->n; i++) {
		struct agent_dr_vip *v = &a->vips[i];
		int rc = agent_addr_change(sk, RTM_NEWADDR, &v->ip);

		a->nvips = i + 1;
		v->added = rc == 0;
		if (rc == -NLE_EXIST) {
			log_info("dr: %s is on lo already; it stays at stop", v->ip.str);
		} else if (rc < 0) {
			err_set(err, errlen, "dr: add %s to lo: %s", v->ip.str, nl_geterror(rc));
			nl_socket_free(sk);
			agent_dr_undo(a);
			return -1;
		} else {
			log_info("dr: %s/%d on lo", v->ip.str, v->ip.af == AF_INET6 ? 128 : 32);
		}
	}
	nl_socket_free(sk);
	return 0;
}

void
agent_dr_undo(struct agent *a)
{
	char err[256];
	struct nl_sock *sk = NULL;

	for (size_t i = 0; i < a->nvips; i++) {
		struct agent_dr_vip *v = &a->vips[i];
		int rc;

		if (!v->added)
			continue;
		if (sk == NULL && (sk = agent_rtnl_open(err, sizeof(err))) == NULL) {
			log_warnx("dr: cannot remove the VIPs from lo: %s", err);
			break;
		}
		if ((rc = agent_addr_change(sk, RTM_DELADDR, &v->ip)) < 0)
			log_warnx("dr: remove %s from lo: %s", v->ip.str, nl_geterror(rc));
		else
			log_info("dr: %s off lo", v->ip.str);
		v->added = 0;
	}
	if (sk != NULL)
		nl_socket_free(sk);
	a->nvips = 0;
	for (int i = 0; i < 2; i++) {
		struct agent_dr_sysctl *s = &a->sysctls[i];

		if (!s->changed)
			continue;
		if (agent_sysctl_write(s->path, s->old) == -1)
			log_warn("dr: restore %s to %ld", s->path, s->old);
		else
			log_info("dr: %s back to %ld", s->path, s->old);
		s->changed = 0;
	}
}
