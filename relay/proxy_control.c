/*
 * mailplex-proxy's control commands (status, kick, map-version) on lib/control's socket. Each
 * worker serves its own socket, <proxy.control>.<worker index>, and answers for its own sessions
 * only; a worker retired by a reload moves to <proxy.control>.<index>.old-<pid> so that its
 * successor gets the name and kick still reaches its sessions (mailplexctl asks every
 * <proxy.control>.[0-9]* and merges). Nothing here blocks or logs a password.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "proxy.h"
#include "util.h"

/*
 * The map's normal form of a login name, "local@domain" in lower case (a bare name gets
 * the primary domain), so that "Alice" and "alice@mail.test" name the same mailbox.
 * -1 with err if the map cannot parse it.
 */
int
proxy_mailbox_key(struct map *map, const char *user, char *key, size_t len, char *err,
                  size_t errlen)
{
	struct map_result res;
	int r = -1;

	map_lookup(map, user, &res);
	if (res.local[0] == '\0' || res.domain[0] == '\0')
		(void)str_format(err, errlen, "%s", res.error[0] ? res.error : "bad address");
	else
		r = str_format(key, len, "%s@%s", res.local, res.domain);
	map_result_free(&res);
	return r;
}

static const char *
proto_name(enum proxy_proto p)
{
	return p == PROXY_IMAP ? "imap" : "pop3";
}

/* Exactly this line: mailplexctl move reads it from status, mailplex-relay asks for it alone. */
static void
control_map_version(struct proxy_ctx *ctx, struct control_reply *r)
{
	control_reply_printf(r, "map_version_in_force %llu\n",
	                     (unsigned long long)(ctx->map != NULL ? ctx->map_in_force : 0));
}

static void
control_status(struct proxy_ctx *ctx, struct control_reply *r)
{
	uint64_t now = ev_now_ms(ctx->loop);
	unsigned pre = 0, in = 0;
	struct proxy_session *s;
	char be[MAP_NAME_MAX + SOCK_ADDR_STRLEN + 4];

	for (s = ctx->sessions; s != NULL; s = s->next) {
		if (s->state == PS_PIPE)
			in++;
		else if (s->state != PS_DEAD)
			pre++;
	}
	control_reply_printf(r,
	                     "worker %zu pid %d: %u pre-login, %u logged-in (generation %lu%s)\n",
	                     ctx->worker, (int)getpid(), pre, in, ctx->generation,
	                     ctx->retiring ? ", retiring: leaves after its last session" : "");
	control_map_version(ctx, r);
	if (in == 0)
		return;
	control_reply_printf(r, "  %-8s %-24s %-24s %-28s %-5s %s\n", "ID", "CLIENT", "USER",
	                     "BACKEND", "PROTO", "AGE");
	for (s = ctx->sessions; s != NULL; s = s->next) {
		if (s->state != PS_PIPE)
			continue;
		(void)str_format(be, sizeof(be), "%s (%s)", s->be_name, s->be_addr);
		control_reply_printf(r, "  %-8llu %-24s %-24s %-28s %-5s %llus\n",
		                     (unsigned long long)s->id, s->peer, s->user, be,
		                     proto_name(s->proto),
		                     (unsigned long long)((now - s->start_ms) / 1000));
	}
}

/* Closes every session that logged in (or is logging in) as user's mailbox. */
static void
control_kick(struct proxy_ctx *ctx, const char *user, struct control_reply *r)
{
	char key[sizeof(((struct proxy_session *)0)->mailbox)], err[CONTROL_ERR_MAX];
	struct proxy_session *s, *next;
	unsigned n = 0;

	if (proxy_mailbox_key(ctx->map, user, key, sizeof(key), err, sizeof(err)) == -1) {
		control_reply_error(r, "user %.64s: %s", user, err);
		return;
	}
	for (s = ctx->sessions; s != NULL; s = next) {
		next = s->next;
		if (s->state == PS_DEAD || s->mailbox[0] == '\0' || strcmp(s->mailbox, key) != 0)
			continue;
		log_info("session %llu: kicked by control: client=%s user=%s backend=%s",
		         (unsigned long long)s->id, s->peer, s->user,
		         s->be_name[0] ? s->be_name : "-");
		/* No BYE in the pipe: it could land inside a back-end reply half sent. */
		proxy_session_close(s, "kicked");
		proxy_session_run(s); /* frees it; next was saved */
		n++;
	}
	control_reply_printf(r, "worker %zu pid %d: kicked %u session(s) of %s\n", ctx->worker,
	                     (int)getpid(), n, key);
}

static void
control_handle(const struct control_request *req, struct control_reply *reply, void *arg)
{
	struct proxy_ctx *ctx = arg;

	if (strcmp(req->argv[0], "status") == 0 && req->argc == 1)
		control_status(ctx, reply);
	else if (strcmp(req->argv[0], "kick") == 0 && req->argc == 2)
		control_kick(ctx, req->argv[1], reply);
	else if (strcmp(req->argv[0], "map-version") == 0 && req->argc == 1)
		control_map_version(ctx, reply);
	else if (strcmp(req->argv[0], "status") == 0 || strcmp(req->argv[0], "kick") == 0 ||
	         strcmp(req->argv[0], "map-version") == 0)
		control_reply_error(reply, "usage: status | kick USER | map-version");
	else
		control_reply_error(reply, "unknown command '%.32s' (status, kick, map-version)",
		                    req->argv[0]);
}

/*
 * 0 when the socket is up (or none is configured); -1 with err otherwise. A worker without
 * its socket still serves mail, so the caller logs and may try again: right after a reload
 * the retiring predecessor may not have moved away from the name yet.
 */
int
proxy_control_start(struct proxy_ctx *ctx, char *err, size_t errlen)
{
	const char *base = ctx->conf->proxy.control;
	char path[CONTROL_REQUEST_MAX_BYTES];

	if (base == NULL || ctx->control != NULL)
		return 0;
	if (str_format(path, sizeof(path), "%s.%zu", base, ctx->worker) == -1) {
		(void)str_format(err, errlen, "control socket path %s.%zu too long", base,
		                 ctx->worker);
		return -1;
	}
	ctx->control = control_server_new(ctx->loop, path, control_handle, ctx, err, errlen);
	return ctx->control == NULL ? -1 : 0;
}

/*
 * Hands <base>.<worker> to the next generation's worker. If the move fails the socket is
 * closed instead: the successor must get the name, and a retiring worker only finishes
 * sessions (kick cannot reach them then; logged).
 */
void
proxy_control_retire(struct proxy_ctx *ctx)
{
	char path[CONTROL_REQUEST_MAX_BYTES], err[CONTROL_ERR_MAX];

	if (ctx->control == NULL)
		return;
	if (str_format(path, sizeof(path), "%s.%zu.old-%d", ctx->conf->proxy.control, ctx->worker,
	               (int)getpid()) == -1) {
		(void)str_copy(err, sizeof(err), "path too long");
	} else if (control_server_rename(ctx->control, path, err, sizeof(err)) == 0) {
		log_debug("worker %zu: control socket now %s", ctx->worker, path);
		return;
	}
	log_warnx("worker %zu: control socket: %s; closed (kick will not reach this worker)",
	          ctx->worker, err);
	proxy_control_stop(ctx);
}

void
proxy_control_stop(struct proxy_ctx *ctx)
{
	if (ctx->control != NULL)
		control_server_free(ctx->control);
	ctx->control = NULL;
}
