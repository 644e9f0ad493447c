/*
 * Socket helpers (Redis anet.c's idea). Owns the rule that every descriptor is
 * non-blocking and close-on-exec from birth (no window for a fork to inherit it) and that
 * EINTR/EAGAIN/ECONNABORTED on accept mean "nothing now". It never blocks, except
 * sock_resolve, which programs call while reading their configuration.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sock.h"
#include "util.h"

/* RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens. */
static int
sock_hostname_valid(const char *h)
{
	size_t label = 0, total = 0;
	const char *p;

	for (p = h; *p != '\0'; p++, total++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (*p == '-' && label == 0)
			return 0;
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			return 0;
		if (++label > 63)
			return 0;
	}
	return total > 0 && total <= 253 && label > 0 && p[-1] != '-';
}

int
sock_addr_split(const char *s, char *host, size_t hostlen, uint16_t *port, char *err, size_t errlen)
{
	const char *colon, *hend, *hstart = s;
	struct in6_addr a6;
	struct in_addr a4;
	uint64_t v;
	char tmp[SOCK_HOST_MAX];

	if (s[0] == '[') {
		if ((hend = strchr(s, ']')) == NULL || hend[1] != ':') {
			err_set(err, errlen, "address '%s': expected [v6addr]:port", s);
			return -1;
		}
		hstart = s + 1;
		colon = hend + 1;
	} else {
		if ((colon = strrchr(s, ':')) == NULL) {
			err_set(err, errlen, "address '%s': missing ':port'", s);
			return -1;
		}
		hend = colon;
		if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
			err_set(err, errlen, "address '%s': write IPv6 addresses as [addr]:port",
			        s);
			return -1;
		}
	}
	if (hend == hstart) {
		err_set(err, errlen, "address '%s': empty host (use * for any)", s);
		return -1;
	}
	if (str_copy_n(tmp, sizeof(tmp), hstart, (size_t)(hend - hstart)) == -1) {
		err_set(err, errlen, "address '%s': host too long", s);
		return -1;
	}
	if (parse_u64(colon + 1, 0, 65535, &v) == -1) {
		err_set(err, errlen, "address '%s': port must be a number 0..65535", s);
		return -1;
	}
	if (s[0] == '[') {
		if (inet_pton(AF_INET6, tmp, &a6) != 1) {
			err_set(err, errlen, "address '%s': bad IPv6 address", s);
			return -1;
		}
	} else if (strcmp(tmp, "*") != 0) {
		if (strspn(tmp, "0123456789.") == strlen(tmp)) {
			if (inet_pton(AF_INET, tmp, &a4) != 1) {
				err_set(err, errlen, "address '%s': bad IPv4 address", s);
				return -1;
			}
		} else if (!sock_hostname_valid(tmp)) {
			err_set(err, errlen, "address '%s': bad host name", s);
			return -1;
		}
	}
	if (str_copy(host, hostlen, tmp) == -1) {
		err_set(err, errlen, "address '%s': host too long", s);
		return -1;
	}
	*port = (uint16_t)v;
	return 0;
}

static int
sock_addr_numeric(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *sslen)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strcmp(host, "*") == 0) {
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_ANY);
		sin->sin_port = htons(port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*sslen = sizeof(*sin6);
		return 0;
	}
	return -1;
}

int
sock_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                size_t errlen)
{
	char host[SOCK_HOST_MAX];
	uint16_t port;

	if (sock_addr_split(s, host, sizeof(host), &port, err, errlen) == -1)
		return -1;
	if (sock_addr_numeric(host, port, ss, sslen) == -1) {
		err_set(err, errlen, "address '%s': not a numeric address", s);
		return -1;
	}
	return 0;
}

int
sock_resolve(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, char *err, size_t errlen)
{
	struct addrinfo hints, *res;
	char host[SOCK_HOST_MAX];
	uint16_t port;
	int rc;

	if (sock_addr_split(s, host, sizeof(host), &port, err, errlen) == -1)
		return -1;
	if (sock_addr_numeric(host, port, ss, sslen) == 0)
		return 0;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((rc = getaddrinfo(host, NULL, &hints, &res)) != 0) {
		err_set(err, errlen, "address '%s': %s", s, gai_strerror(rc));
		return -1;
	}
	if (res->ai_addrlen > sizeof(*ss) ||
	    (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
		freeaddrinfo(res);
		err_set(err, errlen, "address '%s': unsupported address family", s);
		return -1;
	}
	memset(ss, 0, sizeof(*ss));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	return 0;
}

int
sock_addr_format(const struct sockaddr *sa, char *buf, size_t buflen)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
	char a[INET6_ADDRSTRLEN];

	switch (sa->sa_family) {
	case AF_INET:
		if (inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a)) == NULL)
			return -1;
		return str_format(buf, buflen, "%s:%u", a, ntohs(sin->sin_port));
	case AF_INET6:
		if (inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a)) == NULL)
			return -1;
		return str_format(buf, buflen, "[%s]:%u", a, ntohs(sin6->sin6_port));
	default:
		return -1;
	}
}

/* A TCP socket for ss, and its printable name for messages. */
static int
sock_new(const struct sockaddr_storage *ss, char *name, size_t namelen, char *err, size_t errlen)
{
	int fd;

	if (sock_addr_format((const struct sockaddr *)ss, name, namelen) == -1)
		(void)str_copy(name, namelen, "?");
	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1)
		err_set(err, errlen, "socket for %s: %s", name, strerror(errno));
	return fd;
}

int
sock_listen(const struct sockaddr_storage *ss, socklen_t sslen, int backlog, int flags, char *err,
            size_t errlen)
{
	char name[SOCK_ADDR_STRLEN];
	int fd, on = 1;

	if ((fd = sock_new(ss, name, sizeof(name), err, errlen)) == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) == -1) {
		err_set(err, errlen, "SO_REUSEADDR on %s: %s", name, strerror(errno));
		goto fail;
	}
	if ((flags & SOCK_F_REUSEPORT) &&
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) == -1) {
		err_set(err, errlen, "SO_REUSEPORT on %s: %s", name, strerror(errno));
		goto fail;
	}
	/* v6-only, so that [::]:25 and *:25 can be bound side by side. */
	if (ss->ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) == -1) {
		err_set(err, errlen, "IPV6_V6ONLY on %s: %s", name, strerror(errno));
		goto fail;
	}
	if (bind(fd, (const struct sockaddr *)ss, sslen) == -1) {
		err_set(err, errlen, "bind %s: %s", name, strerror(errno));
		goto fail;
	}
	if (listen(fd, backlog) == -1) {
		err_set(err, errlen, "listen %s: %s", name, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

int
sock_accept(int lfd, struct sockaddr_storage *peer, socklen_t *peerlen, char *err, size_t errlen)
{
	int fd;

	*peerlen = sizeof(*peer);
	fd = accept4(lfd, (struct sockaddr *)peer, peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0)
		return fd;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
		if (err != NULL && errlen > 0)
			err[0] = '\0';
		errno = EAGAIN;
		return -1;
	}
	err_set(err, errlen, "accept: %s", strerror(errno));
	return -1;
}

int
sock_connect_start(const struct sockaddr_storage *ss, socklen_t sslen, char *err, size_t errlen)
{
	char name[SOCK_ADDR_STRLEN];
	int fd;

	if ((fd = sock_new(ss, name, sizeof(name), err, errlen)) == -1)
		return -1;
	if (connect(fd, (const struct sockaddr *)ss, sslen) == -1 && errno != EINPROGRESS) {
		err_set(err, errlen, "connect %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
sock_connect_result(int fd)
{
	socklen_t len = sizeof(int);
	int soerr = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		return -1;
	if (soerr != 0) {
		errno = soerr;
		return -1;
	}
	return 0;
}

int
sock_set_keepalive(int fd, int idle_s, int interval_s, int count, char *err, size_t errlen)
{
	int on = 1;

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof(interval_s)) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)) == -1) {
		err_set(err, errlen, "keepalive: %s", strerror(errno));
		return -1;
	}
	return 0;
}
