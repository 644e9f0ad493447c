/*
 * Non-blocking name resolution (see resolve.h): one cache entry per name, each with the
 * glibc request it has in flight. glibc's notification thread only writes to the eventfd;
 * everything else — reading results, the cache, the callbacks — happens on the loop.
 */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>

#include "resolve.h"
#include "util.h"

enum entry_state {
	ENTRY_PENDING,
	ENTRY_OK,
	ENTRY_FAILED,
};

struct entry {
	char host[RESOLVE_HOST_MAX];
	enum entry_state state;
	int notify; /* finished, its done() not yet called */
	char why[128];
	uint64_t expires_ms;
	struct resolve_addrs addrs;
	/* glibc reads these while the request is in flight: they live in the entry. */
	struct gaicb req;
	struct addrinfo hints;
	struct entry *next;
};

struct resolver {
	struct ev_loop *loop;
	int efd;
	uint64_t ttl_ok_ms, ttl_fail_ms;
	resolve_done_fn *done;
	void *arg;
	struct entry *entries;
	size_t nentries;
	struct resolve_addrs literal; /* the answer for an IP literal */
};

/* Runs on a glibc thread: only the eventfd, nothing of ours. */
static void
resolve_notify(union sigval v)
{
	uint64_t one = 1;

	if (write(v.sival_int, &one, sizeof(one)) != sizeof(one))
		return; /* the counter is at its maximum: the loop is woken anyway */
}

static void
entry_finish(struct resolver *r, struct entry *e)
{
	struct addrinfo *ai;
	int rc = gai_error(&e->req);

	e->addrs.n = 0;
	if (rc == 0) {
		for (ai = e->req.ar_result; ai != NULL && e->addrs.n < RESOLVE_ADDRS_MAX;
		     ai = ai->ai_next) {
			if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
			    ai->ai_addrlen > sizeof(e->addrs.ss[0]))
				continue;
			memcpy(&e->addrs.ss[e->addrs.n], ai->ai_addr, ai->ai_addrlen);
			e->addrs.len[e->addrs.n] = ai->ai_addrlen;
			e->addrs.n++;
		}
		freeaddrinfo(e->req.ar_result);
		e->req.ar_result = NULL;
	}
	if (e->addrs.n > 0) {
		e->state = ENTRY_OK;
		e->expires_ms = ev_now_ms(r->loop) + r->ttl_ok_ms;
	} else {
		e->state = ENTRY_FAILED;
		err_set(e->why, sizeof(e->why), "%s: %s", e->host,
		        rc == 0 ? "no IPv4 or IPv6 address" : gai_strerror(rc));
		e->expires_ms = ev_now_ms(r->loop) + r->ttl_fail_ms;
	}
	e->notify = 1;
}

static void
resolver_readable(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct resolver *r = arg;
	struct entry *e;
	char host[RESOLVE_HOST_MAX];
	uint64_t n;

	if (read(r->efd, &n, sizeof(n)) == -1 && errno != EAGAIN && errno != EINTR)
		return;
	for (e = r->entries; e != NULL; e = e->next)
		if (e->state == ENTRY_PENDING && gai_error(&e->req) != EAI_INPROGRESS)
			entry_finish(r, e);
	/* done() may look names up again: start over after each call, never hold e. */
	for (;;) {
		for (e = r->entries; e != NULL && !e->notify; e = e->next)
			;
		if (e == NULL)
			break;
		e->notify = 0;
		str_copy(host, sizeof(host), e->host);
		r->done(r->arg, host);
	}
}

struct resolver *
resolver_new(struct ev_loop *loop, uint64_t ttl_ok_ms, uint64_t ttl_fail_ms, resolve_done_fn *done,
             void *arg, char *err, size_t errlen)
{
	struct resolver *r = calloc(1, sizeof(*r));

	if (r == NULL) {
		err_set(err, errlen, "resolver: out of memory");
		return NULL;
	}
	r->loop = loop;
	r->ttl_ok_ms = ttl_ok_ms;
	r->ttl_fail_ms = ttl_fail_ms;
	r->done = done;
	r->arg = arg;
	if ((r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		err_set(err, errlen, "resolver: eventfd: %s", strerror(errno));
		free(r);
		return NULL;
	}
	if (ev_io_set(loop, r->efd, EV_READ, resolver_readable, r) == -1) {
		err_set(err, errlen, "resolver: ev_io_set: %s", strerror(errno));
		close(r->efd);
		free(r);
		return NULL;
	}
	return r;
}

void
resolver_free(struct resolver *r)
{
	struct entry *e, *next;
	int stuck = 0;

	if (r == NULL)
		return;
	for (e = r->entries; e != NULL; e = next) {
		next = e->next;
		if (e->state == ENTRY_PENDING && gai_cancel(&e->req) != EAI_CANCELED &&
		    gai_error(&e->req) == EAI_INPROGRESS) {
			stuck = 1; /* glibc still owns it */
			continue;
		}
		if (e->req.ar_result != NULL)
			freeaddrinfo(e->req.ar_result);
		free(e);
	}
	if (stuck)
		return;
	ev_io_del(r->loop, r->efd);
	close(r->efd);
	free(r);
}

static struct entry *
entry_find(struct resolver *r, const char *host)
{
	struct entry *e;

	for (e = r->entries; e != NULL; e = e->next)
		if (strcasecmp(e->host, host) == 0)
			return e;
	return NULL;
}

/* Drops one expired, finished entry to make room; 0 if it found one. */
static int
entry_evict(struct resolver *r)
{
	struct entry *e, **pp;
	uint64_t now = ev_now_ms(r->loop);

	for (pp = &r->entries; (e = *pp) != NULL; pp = &e->next) {
		if (e->state == ENTRY_PENDING || e->expires_ms > now)
			continue;
		*pp = e->next;
		free(e);
		r->nentries--;
		return 0;
	}
	return -1;
}

static int
is_invalid_tld(const char *host)
{
	size_t n = strlen(host);

	if (n > 0 && host[n - 1] == '.')
		n--;
	return (n == 7 && strncasecmp(host, "invalid", 7) == 0) ||
	       (n > 8 && strncasecmp(host + n - 8, ".invalid", 8) == 0);
}

static int
literal(struct resolver *r, const char *host)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&r->literal.ss[0];
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&r->literal.ss[0];

	memset(&r->literal, 0, sizeof(r->literal));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		r->literal.len[0] = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		r->literal.len[0] = sizeof(*sin6);
	} else {
		return -1;
	}
	r->literal.n = 1;
	return 0;
}

static int
entry_start(struct resolver *r, struct entry *e)
{
	struct gaicb *list[1];
	struct sigevent sev;
	int rc;

	memset(&e->req, 0, sizeof(e->req));
	memset(&e->hints, 0, sizeof(e->hints));
	/* No AI_ADDRCONFIG: it hides IPv4 answers on a host whose only IPv4 is loopback. */
	e->hints.ai_family = AF_UNSPEC;
	e->hints.ai_socktype = SOCK_STREAM;
	e->req.ar_name = e->host;
	e->req.ar_request = &e->hints;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD;
	sev.sigev_notify_function = resolve_notify;
	sev.sigev_value.sival_int = r->efd;
	list[0] = &e->req;
	if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev)) != 0) {
		e->state = ENTRY_FAILED;
		err_set(e->why, sizeof(e->why), "%s: getaddrinfo_a: %s", e->host, gai_strerror(rc));
		e->expires_ms = ev_now_ms(r->loop) + r->ttl_fail_ms;
		return -1;
	}
	e->state = ENTRY_PENDING;
	return 0;
}

enum resolve_status
resolver_lookup(struct resolver *r, const char *host, const struct resolve_addrs **addrs, char *err,
                size_t errlen)
{
	struct entry *e;

	*addrs = NULL;
	if (literal(r, host) == 0) {
		*addrs = &r->literal;
		return RESOLVE_OK;
	}
	if (is_invalid_tld(host)) {
		err_set(err, errlen, "%s: reserved name (RFC 6761), not looked up", host);
		return RESOLVE_FAILED;
	}
	if (strlen(host) >= RESOLVE_HOST_MAX) {
		err_set(err, errlen, "host name too long");
		return RESOLVE_FAILED;
	}
	if ((e = entry_find(r, host)) == NULL) {
		if (r->nentries >= RESOLVE_ENTRIES_MAX && entry_evict(r) == -1) {
			err_set(err, errlen, "%s: resolver cache full", host);
			return RESOLVE_FAILED;
		}
		if ((e = calloc(1, sizeof(*e))) == NULL) {
			err_set(err, errlen, "%s: out of memory", host);
			return RESOLVE_FAILED;
		}
		str_copy(e->host, sizeof(e->host), host);
		e->next = r->entries;
		r->entries = e;
		r->nentries++;
		e->state = ENTRY_FAILED; /* expired at 0: started below */
	}
	if (e->state != ENTRY_PENDING && e->expires_ms <= ev_now_ms(r->loop))
		entry_start(r, e);
	switch (e->state) {
	case ENTRY_PENDING:
		return RESOLVE_PENDING;
	case ENTRY_OK:
		*addrs = &e->addrs;
		return RESOLVE_OK;
	case ENTRY_FAILED:
		break;
	}
	err_set(err, errlen, "%s", e->why);
	return RESOLVE_FAILED;
}

const struct resolve_addrs *
resolver_cached(struct resolver *r, const char *host)
{
	struct entry *e;

	if (literal(r, host) == 0)
		return &r->literal;
	e = entry_find(r, host);
	return e != NULL && e->addrs.n > 0 ? &e->addrs : NULL;
}

socklen_t
resolve_addr_port(const struct resolve_addrs *a, size_t i, uint16_t port,
                  struct sockaddr_storage *ss)
{
	*ss = a->ss[i];
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	return a->len[i];
}
