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

static void listener_accept(struct ev_loop *loop, int fd, int events, void *arg);
static void listener_take(struct proxy_ctx *ctx, int lfd, int max);

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

/*
 * One connection per readiness report (nginx's multi_accept off): the loop is
 * level-triggered and reports a backlog that still holds more, so a lone login costs no
 * accept4() that returns EAGAIN.
 */
static void
listener_accept(struct ev_loop *loop, int lfd, int events, void *arg)
{
	listener_take(arg, lfd, 1);
}

/* Accepts up to max connections waiting on lfd. */
static void
listener_take(struct proxy_ctx *ctx, int lfd, int max)
{
	struct ev_loop *loop = ctx->loop;
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
	for (n = 0; n < max; n++) {
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
		if (ipcount_add(&ctx->ips, &peer,
		                (unsigned)ctx->conf->proxy.max_connections_per_ip) == -1) {
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
			listener_take(ctx, ctx->listeners[i].fd, 64);
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
