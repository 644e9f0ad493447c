/*
 * The scheduler: one timer and one session per check, jittered intervals, rise/fall
 * counters and the log line of a state change. Owns when a check runs and whether it is
 * up; it must never run two sessions of one check at once and never touch a check after
 * handing it to the callback (which may free it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "hc.h"
#include "log.h"
#include "util.h"

int
hc_health_update(struct hc_health *h, enum hc_status status, unsigned rise, unsigned fall)
{
	if (status == HC_UNKNOWN)
		return 0;
	if (rise == 0)
		rise = 1;
	if (fall == 0)
		fall = 1;
	if (status <= HC_WARNING) {
		h->nfail = 0;
		if (h->up)
			return 0;
		if (++h->nok < rise)
			return 0;
		h->up = 1;
		h->nok = 0;
		return 1;
	}
	h->nok = 0;
	if (!h->up)
		return 0;
	if (++h->nfail < fall)
		return 0;
	h->up = 0;
	h->nfail = 0;
	return 1;
}

uint64_t
hc_jitter_ms(uint64_t interval_ms, uint32_t rnd)
{
	uint64_t span = interval_ms / 5; /* the width of -10% .. +10% */

	if (span == 0)
		return interval_ms;
	return interval_ms - interval_ms / 10 + (uint64_t)rnd % (span + 1);
}

static uint32_t
hc_rand(struct hc_check *c)
{
	uint32_t x = c->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	c->rng = x;
	return x;
}

static void hc_check_run(struct ev_loop *loop, void *arg);

static void
hc_check_log_change(struct hc_check *c, const struct hc_result *r)
{
	const char *why = r->reason[0] != '\0' ? r->reason : r->greeting;
	unsigned x = c->health.up ? c->params.rise : c->params.fall;

	/* The counters were reset by the flip: x/y is what it took, rise or fall of them. */
	if (c->health.up)
		log_info("check %s %s: DOWN -> UP, reason: %s, code: %s/%d, duration: %llu ms, "
		         "%u/%u passed",
		         hc_type_name(c->spec.type), c->spec.addr_str, why,
		         hc_status_name(r->status), r->code, (unsigned long long)r->latency_ms, x,
		         c->params.rise);
	else
		log_warnx("check %s %s: UP -> DOWN, reason: %s, code: %s/%d, duration: %llu ms, "
		          "%u/%u failed",
		          hc_type_name(c->spec.type), c->spec.addr_str, why,
		          hc_status_name(r->status), r->code, (unsigned long long)r->latency_ms, x,
		          c->params.fall);
}

static void
hc_check_done(struct hc_session *s, const struct hc_result *r, void *arg)
{
	struct hc_check *c = arg;
	int changed;

	c->last = *r;
	c->nruns++;
	changed = hc_health_update(&c->health, r->status, c->params.rise, c->params.fall);
	if (changed)
		hc_check_log_change(c, r);
	else if (r->status == HC_UNKNOWN)
		log_warnx("check %s %s: cannot run: %s", hc_type_name(c->spec.type),
		          c->spec.addr_str, r->reason);
	if (ev_timer_start(c->loop, &c->timer, hc_jitter_ms(c->params.interval_ms, hc_rand(c)),
	                   hc_check_run, c) == -1)
		log_warn("check %s %s: timer", hc_type_name(c->spec.type), c->spec.addr_str);
	if (c->cb != NULL)
		c->cb(c, &c->last, changed, c->arg);
}

static void
hc_check_run(struct ev_loop *loop, void *arg)
{
	struct hc_check *c = arg;

	if (hc_session_start(&c->sess, c->loop, &c->spec, hc_check_done, c) == -1) {
		log_warn("check %s %s: cannot start", hc_type_name(c->spec.type), c->spec.addr_str);
		if (ev_timer_start(c->loop, &c->timer, c->params.interval_ms, hc_check_run, c) ==
		    -1)
			log_warn("check %s %s: timer", hc_type_name(c->spec.type),
			         c->spec.addr_str);
	}
}

struct hc_check *
hc_check_new(struct ev_loop *loop, const struct hc_spec *spec, const struct hc_params *params,
             hc_check_fn *cb, void *arg, char *err, size_t errlen)
{
	struct hc_check *c;

	if (hc_spec_check(spec, err, errlen) == -1)
		return NULL;
	if (params->interval_ms == 0) {
		(void)str_copy(err, errlen, "check interval is 0");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		(void)str_format(err, errlen, "check: %s", strerror(errno));
		return NULL;
	}
	c->loop = loop;
	c->spec = *spec;
	c->params = *params;
	if (c->params.rise == 0)
		c->params.rise = 1;
	if (c->params.fall == 0)
		c->params.fall = 1;
	c->health.up = params->initially_up != 0;
	c->cb = cb;
	c->arg = arg;
	hc_session_init(&c->sess);
	ev_timer_init(&c->timer);
	memset(&c->last, 0, sizeof(c->last));
	c->last.status = HC_UNKNOWN;
	c->last.cert_days = HC_CERT_DAYS_NONE;
	(void)str_copy(c->last.reason, sizeof(c->last.reason), "not run yet");
	if (getrandom(&c->rng, sizeof(c->rng), GRND_NONBLOCK) != (ssize_t)sizeof(c->rng))
		c->rng = (uint32_t)time_mono_ms() ^ (uint32_t)(uintptr_t)c;
	if (c->rng == 0) /* xorshift's one fixed point */
		c->rng = 0x9e3779b9u;
	if (c->spec.ssl_ctx != NULL && SSL_CTX_up_ref(c->spec.ssl_ctx) != 1) {
		(void)str_copy(err, errlen, "check: cannot reference the TLS context");
		free(c);
		return NULL;
	}
	return c;
}

int
hc_check_start(struct hc_check *c)
{
	return ev_timer_start(c->loop, &c->timer, (uint64_t)hc_rand(c) % c->params.interval_ms,
	                      hc_check_run, c);
}

void
hc_check_free(struct hc_check *c)
{
	if (c == NULL)
		return;
	hc_session_abort(&c->sess);
	ev_timer_stop(c->loop, &c->timer);
	SSL_CTX_free(c->spec.ssl_ctx);
	free(c);
}

int
hc_check_is_up(const struct hc_check *c)
{
	return c->health.up;
}

void
hc_check_state_string(const struct hc_check *c, char *buf, size_t len)
{
	if (c->health.up && c->health.nfail == 0)
		(void)str_copy(buf, len, "UP");
	else if (c->health.up)
		(void)str_format(buf, len, "UP %u/%u failed", c->health.nfail, c->params.fall);
	else
		(void)str_format(buf, len, "DOWN %u/%u passed", c->health.nok, c->params.rise);
}
