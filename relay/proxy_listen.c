/*
 * mailplex-proxy's listening sockets inside one worker: accepting, the connection caps
 * (total and per client address), pausing accept when descriptors run out, and letting go
 * of the listeners when a reload retires the worker. It never reads from a client; a
 * refused connection is closed at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>

#include "log.h"
#include "proxy.h"

#define ACCEPT_PAUSE_MS 1000 /* after EMFILE/ENFILE: let sessions end first */

static void
ip_key(const struct sockaddr_storage *ss, struct sockaddr_storage *key)
{
	memset(key, 0, sizeof(*key));
	key->ss_family = ss->ss_family;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)key)->sin_addr = ((const struct sockaddr_in *)ss)->sin_addr;
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)key)->sin6_addr =
		    ((const struct sockaddr_in6 *)ss)->sin6_addr;
}

static unsigned
ip_hash(const struct sockaddr_storage *key)
{
	const unsigned char *p = (const unsigned char *)key;
	unsigned h = 2166136261u;
	size_t i;

	for (i = 0; i < sizeof(*key); i++)
		h = (h ^ p[i]) * 16777619u;
	return h % PROXY_IP_BUCKETS;
}

/* 0 counted, -1 over the per-address cap (nothing counted). */
int
proxy_ip_add(struct proxy_ctx *ctx, const struct sockaddr_storage *ss)
{
	struct sockaddr_storage key;
	struct proxy_ip_count *e;
	unsigned h;

	ip_key(ss, &key);
	h = ip_hash(&key);
	for (e = ctx->ips[h]; e != NULL; e = e->next)
		if (memcmp(&e->addr, &key, sizeof(key)) == 0)
			break;
	if (e == NULL) {
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return -1;
		e->addr = key;
		e->next = ctx->ips[h];
		ctx->ips[h] = e;
	}
	if (e->n >= (unsigned)ctx->conf->proxy.max_connections_per_ip)
		return -1;
	e->n++;
	return 0;
}

void
proxy_ip_del(struct proxy_ctx *ctx, const struct sockaddr_storage *ss)
{
	struct sockaddr_storage key;
	struct proxy_ip_count *e, **pp;

	ip_key(ss, &key);
	for (pp = &ctx->ips[ip_hash(&key)]; (e = *pp) != NULL; pp = &e->next) {
		if (memcmp(&e->addr, &key, sizeof(key)) != 0)
			continue;
		if (--e->n == 0) {
			*pp = e->next;
			free(e);
		}
		return;
	}
}

static void listener_accept(struct ev_loop *loop, int fd, int events, void *arg);

static void
accept_set(struct proxy_ctx *ctx, int on)
{
	size_t i;

	for (i = 0; i < ctx->nlisteners; i++)
		ev_io_set(ctx->loop, ctx->listeners[i].fd, on ? EV_READ : 0, listener_accept, ctx);
	ctx->accept_paused = !on;
}

static void
accept_timer(struct ev_loop *loop, void *arg)
{
	proxy_accept_resume(arg);
}

void
proxy_accept_resume(struct proxy_ctx *ctx)
{
	if (!ctx->retiring && ctx->accept_paused && !ev_timer_active(&ctx->accept_timer) &&
	    ctx->nsessions < (unsigned)ctx->conf->proxy.max_connections)
		accept_set(ctx, 1);
}

static void
listener_accept(struct ev_loop *loop, int lfd, int events, void *arg)
{
	struct proxy_ctx *ctx = arg;
	const struct proxy_listener *l = NULL;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char err[256], addr[SOCK_ADDR_STRLEN];
	size_t i;
	int fd, n;

	for (i = 0; i < ctx->nlisteners; i++)
		if (ctx->listeners[i].fd == lfd)
			l = &ctx->listeners[i];
	if (l == NULL)
		return;
	for (n = 0; n < 64; n++) {
		if (ctx->nsessions >= (unsigned)ctx->conf->proxy.max_connections) {
			log_warnx("max_connections (%lld) reached: not accepting",
			          (long long)ctx->conf->proxy.max_connections);
			accept_set(ctx, 0);
			return;
		}
		peerlen = sizeof(peer);
		err[0] = '\0';
		if ((fd = sock_accept(lfd, &peer, &peerlen, err, sizeof(err))) == -1) {
			if (err[0] != '\0') {
				log_warnx("accept on %s: %s", l->addr, err);
				accept_set(ctx, 0);
				ev_timer_start(loop, &ctx->accept_timer, ACCEPT_PAUSE_MS,
				               accept_timer, ctx);
			}
			return;
		}
		if (proxy_ip_add(ctx, &peer) == -1) {
			if (sock_addr_format((struct sockaddr *)&peer, addr, sizeof(addr)) == -1)
				addr[0] = '\0';
			log_info("client=%s refused: max_connections_per_ip reached", addr);
			close(fd);
			continue;
		}
		proxy_session_new(ctx, fd, l, &peer);
	}
}

int
proxy_listeners_start(struct proxy_ctx *ctx)
{
	ev_timer_init(&ctx->accept_timer);
	accept_set(ctx, 1);
	return 0;
}

/*
 * A newer generation took over: close this worker's copies of the listening sockets. A
 * socket the new generation kept is still open there, so its backlog waits for the new
 * workers; one the new configuration dropped closes here for good, so what already
 * waits in its backlog is taken first (one accept round) rather than reset. The array
 * stays (sessions point at their listener); only the descriptors go.
 */
void
proxy_listeners_stop(struct proxy_ctx *ctx)
{
	size_t i;

	for (i = 0; i < ctx->nlisteners; i++)
		if (ctx->listeners[i].fd != -1 && !ctx->accept_paused)
			listener_accept(ctx->loop, ctx->listeners[i].fd, EV_READ, ctx);
	ev_timer_stop(ctx->loop, &ctx->accept_timer);
	for (i = 0; i < ctx->nlisteners; i++) {
		if (ctx->listeners[i].fd == -1)
			continue;
		(void)ev_io_del(ctx->loop, ctx->listeners[i].fd);
		close(ctx->listeners[i].fd);
		ctx->listeners[i].fd = -1;
	}
	ctx->accept_paused = 1;
}
