/*
 * Kernel settings the director depends on: the IPVS TCP timeouts it sets itself (an IMAP
 * IDLE client may stay silent 29 minutes, RFC 2177 section 3, and IPVS's default 900 s
 * would cut it), and the sysctls a forwarding method needs, which it only reads and
 * warns about: changing the host's routing is the operator's decision, not ours.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "director.h"
#include "log.h"
#include "util.h"

#define SYSCTL_PATH_MAX 512

int
sysctl_read(const char *proc_root, const char *name, long *value)
{
	char path[SYSCTL_PATH_MAX], buf[64], *end;
	size_t off;
	ssize_t n;
	int fd;

	if (str_format(path, sizeof(path), "%s/sys/", proc_root) == -1 ||
	    str_copy(path + strlen(path), sizeof(path) - strlen(path), name) == -1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	off = strlen(proc_root) + 5;
	for (char *p = path + off; *p != '\0'; p++)
		if (*p == '.')
			*p = '/';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n == -1 && errno == EINTR);
	close(fd);
	if (n <= 0) {
		if (n == 0)
			errno = EINVAL;
		return -1;
	}
	buf[n] = '\0';
	errno = 0;
	*value = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || (*end != '\n' && *end != '\0')) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

struct sysctl_need {
	const char *name;
	long want;
	const char *why;
};

static void
sysctl_expect(const char *proc_root, const struct sysctl_need *need, sysctl_warn_fn *warn,
              void *arg, size_t *count)
{
	char msg[DIRECTOR_ERR_MAX];
	long v;

	if (sysctl_read(proc_root, need->name, &v) == -1) {
		(void)str_format(msg, sizeof(msg), "sysctl %s cannot be read (%s): %s", need->name,
		                 strerror(errno), need->why);
	} else if (v != need->want) {
		(void)str_format(msg, sizeof(msg),
		                 "sysctl %s is %ld, should be %ld: %s (sysctl -w %s=%ld)",
		                 need->name, v, need->want, need->why, need->name, need->want);
	} else {
		return;
	}
	warn(arg, msg);
	(*count)++;
}

size_t
sysctl_check(const char *proc_root, const struct mailplex_conf_director *conf, sysctl_warn_fn *warn,
             void *arg)
{
	static const struct sysctl_need fwd4 = {
	    "net.ipv4.ip_forward", 1, "NAT forwarding routes the relays' replies through here"};
	static const struct sysctl_need fwd6 = {"net.ipv6.conf.all.forwarding", 1,
	                                        "NAT forwarding of an IPv6 VIP routes the relays' "
	                                        "replies through here"};
	static const struct sysctl_need nodest = {
	    "net.ipv4.vs.expire_nodest_conn", 1,
	    "without it, clients of a relay deleted after a drain hang until they time out"};
	static const struct sysctl_need quiescent = {
	    "net.ipv4.vs.expire_quiescent_template", 1,
	    "without it, persistent clients keep going to a drained (weight 0) relay"};
	const struct mailplex_conf_service *svcs = conf->services.v;
	int nat4 = 0, nat6 = 0, persistent = 0;
	size_t count = 0;

	for (size_t i = 0; i < conf->services.n; i++) {
		struct ipvs_service s;

		state_service_ipvs(&svcs[i], &s);
		if (svcs[i].forwarding == MAILPLEX_FWD_NAT && s.af == AF_INET6)
			nat6 = 1;
		else if (svcs[i].forwarding == MAILPLEX_FWD_NAT)
			nat4 = 1;
		if (s.persistence_s > 0)
			persistent = 1;
	}
	if (nat4)
		sysctl_expect(proc_root, &fwd4, warn, arg, &count);
	if (nat6)
		sysctl_expect(proc_root, &fwd6, warn, arg, &count);
	if (conf->services.n > 0)
		sysctl_expect(proc_root, &nodest, warn, arg, &count);
	if (persistent)
		sysctl_expect(proc_root, &quiescent, warn, arg, &count);
	return count;
}

int
sysctl_timeouts_apply(struct director *d)
{
	const struct mailplex_conf_director *c = &d->conf.director;
	struct ipvs_timeouts now, want;
	struct ipvs_error err;

	memset(&want, 0, sizeof(want));
	/* Rounded up: a timeout shorter than asked would cut the sessions it protects. */
	want.tcp_s = (uint32_t)((c->ipvs_tcp_timeout_ms + 999) / 1000);
	want.tcp_fin_s = (uint32_t)((c->ipvs_tcpfin_timeout_ms + 999) / 1000);
	if (ipvs_timeouts_get(d->ipvs, &now, &err) == -1) {
		log_warnx("ipvs timeouts: %s", err.msg);
		return -1;
	}
	if (now.tcp_s == want.tcp_s && now.tcp_fin_s == want.tcp_fin_s) {
		d->timeouts = now;
		d->timeouts_known = 1;
		return 0;
	}
	if (ipvs_timeouts_set(d->ipvs, &want, &err) == -1) {
		log_warnx("ipvs timeouts: tcp %us, tcpfin %us: %s", want.tcp_s, want.tcp_fin_s,
		          err.msg);
		return -1;
	}
	log_info("ipvs timeouts: tcp %us -> %us, tcpfin %us -> %us (udp %us unchanged)", now.tcp_s,
	         want.tcp_s, now.tcp_fin_s, want.tcp_fin_s, now.udp_s);
	d->timeouts = now;
	d->timeouts.tcp_s = want.tcp_s;
	d->timeouts.tcp_fin_s = want.tcp_fin_s;
	d->timeouts_known = 1;
	return 0;
}
