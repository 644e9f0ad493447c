/*
 * mailplex-smtpd's listening sockets inside one worker: accepting, the connection caps
 * (total and per client address, answered with a 421 before closing), and pausing accept
 * when descriptors run out. It never reads from a client.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "smtpd.h"
#include "util.h"

#define ACCEPT_PAUSE_MS 1000 /* after EMFILE/ENFILE: let sessions end first */
#define ACCEPT_BATCH    64   /* connections taken per wake-up: fairness with sessions */

static void listener_accept(struct ev_loop *loop, int fd, int events, void *arg);

static void
accept_set(struct smtpd_ctx *ctx, int on)
{
	size_t i;

	for (i = 0; i < ctx->nlisteners; i++)
		if (ev_io_set(ctx->loop, ctx->listeners[i].fd, on ? EV_READ : 0, listener_accept,
		              ctx) == -1)
			log_warn("listener %s", ctx->listeners[i].addr);
	ctx->accept_paused = !on;
}

static void
accept_timer(struct ev_loop *loop, void *arg)
{
	smtpd_accept_resume(arg);
}

void
smtpd_accept_resume(struct smtpd_ctx *ctx)
{
	if (ctx->accept_paused && !ev_timer_active(&ctx->accept_timer) &&
	    ctx->nsessions < (unsigned)ctx->conf->smtpd.max_connections)
		accept_set(ctx, 1);
}

/* Best effort, on a fresh non-blocking socket: the kernel takes a short reply. */
static void
refuse(int fd, const char *hostname, const char *why)
{
	char line[SMTPD_HOSTNAME_MAX + 128];

	if (str_format(line, sizeof(line), "421 4.7.0 %s %s\r\n", hostname, why) == 0 &&
	    write(fd, line, strlen(line)) < 0)
		log_debug("refusing: %s", strerror(errno));
	close(fd);
}

static void
listener_accept(struct ev_loop *loop, int lfd, int events, void *arg)
{
	struct smtpd_ctx *ctx = arg;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char err[256], addr[SOCK_ADDR_STRLEN];
	int fd, n;

	for (n = 0; n < ACCEPT_BATCH; n++) {
		peerlen = sizeof(peer);
		err[0] = '\0';
		if ((fd = sock_accept(lfd, &peer, &peerlen, err, sizeof(err))) == -1) {
			if (err[0] != '\0') {
				log_warnx("accept: %s", err);
				accept_set(ctx, 0);
				ev_timer_start(loop, &ctx->accept_timer, ACCEPT_PAUSE_MS,
				               accept_timer, ctx);
			}
			return;
		}
		if (sock_addr_format((struct sockaddr *)&peer, addr, sizeof(addr)) == -1)
			addr[0] = '\0';
		if (ctx->nsessions >= (unsigned)ctx->conf->smtpd.max_connections) {
			log_warnx("client=%s refused: max_connections (%lld) reached", addr,
			          (long long)ctx->conf->smtpd.max_connections);
			refuse(fd, ctx->hostname, "Too many connections, try again later");
			accept_set(ctx, 0);
			return;
		}
		if (ipcount_add(&ctx->ips, &peer,
		                (unsigned)ctx->conf->smtpd.max_connections_per_ip) == -1) {
			log_info("client=%s refused: max_connections_per_ip reached", addr);
			refuse(fd, ctx->hostname, "Too many connections from your address");
			continue;
		}
		smtpd_session_new(ctx, fd, &peer);
	}
}

int
smtpd_listeners_start(struct smtpd_ctx *ctx)
{
	ev_timer_init(&ctx->accept_timer);
	accept_set(ctx, 1);
	return 0;
}
