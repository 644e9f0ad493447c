/*
 * mailplex-smtpd's control commands on lib/control's socket. Each receiver worker serves
 * <smtpd.control>.<worker index> and answers for its own sessions only; mailplexctl asks
 * every worker. Nothing here blocks, and no message content is ever shown.
 */
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "smtpd.h"
#include "util.h"

static void
control_status(struct smtpd_ctx *ctx, struct control_reply *r)
{
	unsigned by_state[SS_NSTATES];
	struct smtpd_session *s;
	uint64_t now = ev_now_ms(ctx->loop);
	int st;

	memset(by_state, 0, sizeof(by_state));
	for (s = ctx->sessions; s != NULL; s = s->next)
		by_state[s->state]++;
	control_reply_printf(
	    r, "worker %zu pid %d: %u session(s), %llu message(s) accepted, map %s\n", ctx->worker,
	    (int)getpid(), ctx->nsessions, (unsigned long long)ctx->accepted,
	    ctx->map != NULL ? "open" : "UNAVAILABLE");
	for (st = 0; st < SS_DEAD; st++)
		control_reply_printf(r, "  %-8s %u\n", smtpd_state_name((enum smtpd_state)st),
		                     by_state[st]);
	if (ctx->nsessions == 0)
		return;
	control_reply_printf(r, "  %-8s %-40s %-8s %-4s %-5s %s\n", "ID", "CLIENT", "STATE", "TLS",
	                     "RCPTS", "AGE");
	for (s = ctx->sessions; s != NULL; s = s->next)
		control_reply_printf(r, "  %-8llu %-40s %-8s %-4s %-5zu %llus\n",
		                     (unsigned long long)s->id, s->peer, smtpd_state_name(s->state),
		                     s->tls ? "yes" : "no", s->tx.nrcpt,
		                     (unsigned long long)((now - s->start_ms) / 1000));
}

static void
control_handle(const struct control_request *req, struct control_reply *reply, void *arg)
{
	struct smtpd_ctx *ctx = arg;

	if (strcmp(req->argv[0], "status") == 0 && req->argc == 1)
		control_status(ctx, reply);
	else if (strcmp(req->argv[0], "status") == 0)
		control_reply_error(reply, "usage: status");
	else
		control_reply_error(reply, "unknown command '%.32s' (status)", req->argv[0]);
}

/* A worker without its socket still receives mail: the failure is logged, not fatal. */
void
smtpd_control_start(struct smtpd_ctx *ctx)
{
	char path[CONTROL_REQUEST_MAX_BYTES], err[CONTROL_ERR_MAX];

	if (str_format(path, sizeof(path), "%s.%zu", ctx->conf->smtpd.control, ctx->worker) == -1) {
		log_warnx("worker %zu: control socket path too long", ctx->worker);
		return;
	}
	ctx->control = control_server_new(ctx->loop, path, control_handle, ctx, err, sizeof(err));
	if (ctx->control == NULL)
		log_warnx("worker %zu: control socket %s: %s", ctx->worker, path, err);
}

void
smtpd_control_stop(struct smtpd_ctx *ctx)
{
	if (ctx->control != NULL)
		control_server_free(ctx->control);
	ctx->control = NULL;
}
