/*
 * The map version in force in one proxy worker: a timer notices a replaced map, and a sweep
 * re-resolves the user of every session bound to a back end and closes those the new map
 * sends elsewhere, marks migrating or refuses. Only after a whole sweep does the worker
 * report the new version (mailbox moves wait on it). Lookups only; never a password.
 */
#include <string.h>

#include "log.h"
#include "proxy.h"
#include "util.h"

/* A lookup during a sweep may swap the map again: sweeps per check, then the next tick. */
#define SWEEPS_PER_CHECK 3

static int
bound_to_backend(const struct proxy_session *s)
{
	switch (s->state) {
	case PS_BE_RESOLVE:
	case PS_BE_CONNECT:
	case PS_BE_TLS:
	case PS_BE_GREETING:
	case PS_BE_STARTTLS:
	case PS_BE_ADDR:
	case PS_BE_LOGIN:
	case PS_PIPE:
		return s->user[0] != '\0' && s->be_name[0] != '\0';
	default:
		return 0;
	}
}

/* 1 with why set when the map (at version) no longer lets s go where it goes. */
static int
session_must_go(struct proxy_session *s, uint64_t version, char *why, size_t whylen)
{
	const struct map_backend *b;
	const struct map_endpoint *ep;
	struct map_result res;
	unsigned long long v = (unsigned long long)version;
	int go = 1;

	map_lookup(s->ctx->map, s->user, &res);
	switch (res.status) {
	case MAP_DELIVER:
		if (res.nrcpt != 1 || res.rcpt[0].status != MAP_DELIVER ||
		    (b = res.rcpt[0].backend) == NULL) {
			(void)str_format(why, whylen, "map version %llu makes the user an alias",
			                 v);
			break;
		}
		ep = s->proto == PROXY_IMAP ? &b->imap : &b->pop3;
		if (strcmp(b->name, s->be_name) != 0)
			(void)str_format(why, whylen, "map version %llu moves user to %s", v,
			                 b->name);
		else if (strcmp(ep->host, s->be_host) != 0 || ep->port != s->be_port)
			(void)str_format(why, whylen,
			                 "map version %llu moves back end %s to another address", v,
			                 b->name);
		else
			go = 0;
		break;
	case MAP_MIGRATING:
		(void)str_format(why, whylen, "user is being migrated (map version %llu)", v);
		break;
	case MAP_REJECT:
		(void)str_format(why, whylen, "map version %llu rejects the user", v);
		break;
	case MAP_UNKNOWN_USER:
	case MAP_NOT_OURS:
		(void)str_format(why, whylen, "map version %llu does not know the user", v);
		break;
	case MAP_ERROR:
		/* Kept open, a session could outlive the move it is on the wrong side of. */
		(void)str_format(why, whylen, "map version %llu: lookup failed: %s", v, res.error);
		break;
	}
	map_result_free(&res);
	return go;
}

/* One pass over the worker's sessions; the number closed. */
static unsigned
sweep(struct proxy_ctx *ctx, uint64_t version)
{
	struct proxy_session *s, *next;
	char why[MAP_NAME_MAX + MAP_TEXT_MAX + 64];
	unsigned n = 0;

	for (s = ctx->sessions; s != NULL; s = next) {
		next = s->next;
		if (!bound_to_backend(s) || !session_must_go(s, version, why, sizeof(why)))
			continue;
		log_info("session %llu: closed by the map sweep: client=%s user=%s backend=%s: %s",
		         (unsigned long long)s->id, s->peer, s->user, s->be_name, why);
		n++;
		if (s->state == PS_PIPE) {
			/* No BYE in the pipe: it could land inside a back-end reply half sent. */
			proxy_session_close(s, "map changed");
		} else {
			/* Still logging in: a temporary failure; the retry meets the new map. */
			proxy_session_temp_fail(s, "map-changed");
		}
		proxy_session_run(s); /* may free s; next was saved */
	}
	return n;
}

void
proxy_map_check(struct proxy_ctx *ctx)
{
	uint64_t v;
	unsigned closed = 0;

	if (map_reopen_if_changed(ctx->map, 0) == -1)
		log_debug("worker %zu: map: replacement unusable, version %llu stays", ctx->worker,
		          (unsigned long long)map_version(ctx->map));
	for (int i = 0; i < SWEEPS_PER_CHECK; i++) {
		v = map_version(ctx->map);
		if (v == ctx->map_in_force)
			return;
		closed += sweep(ctx, v);
		if (map_version(ctx->map) != v)
			continue; /* swapped during the sweep: once more against the newer one */
		log_info("worker %zu: map version %llu in force (was %llu): %u session(s) closed",
		         ctx->worker, (unsigned long long)v, (unsigned long long)ctx->map_in_force,
		         closed);
		ctx->map_in_force = v;
		return;
	}
}

static void
map_tick(struct ev_loop *loop, void *arg)
{
	struct proxy_ctx *ctx = arg;

	proxy_map_check(ctx);
	if (ev_timer_start(loop, &ctx->map_timer, ctx->conf->map.reload_check_ms, map_tick, ctx) ==
	    -1)
		log_warnx("worker %zu: cannot arm the map check timer", ctx->worker);
}

void
proxy_map_watch_start(struct proxy_ctx *ctx)
{
	ctx->map_in_force = map_version(ctx->map);
	ev_timer_init(&ctx->map_timer);
	if (ev_timer_start(ctx->loop, &ctx->map_timer, ctx->conf->map.reload_check_ms, map_tick,
	                   ctx) == -1)
		log_warnx("worker %zu: cannot arm the map check timer", ctx->worker);
}

void
proxy_map_watch_stop(struct proxy_ctx *ctx)
{
	ev_timer_stop(ctx->loop, &ctx->map_timer);
}
