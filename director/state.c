/*
 * The director's desired state: every configured service × relay, with the relay's health
 * in that service, the operator's drains and the drain deadlines, turned into the plan's
 * input arrays. Pure bookkeeping: no socket, no clock of its own, no log line; the kernel
 * is only ever seen through a dump handed in.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "director.h"
#include "util.h"

static const struct mailplex_conf_service *
conf_service(const struct mailplex_conf_director *conf, size_t i)
{
	return &((const struct mailplex_conf_service *)conf->services.v)[i];
}

static const struct mailplex_conf_relay *
conf_relay(const struct mailplex_conf_director *conf, size_t i)
{
	return &((const struct mailplex_conf_relay *)conf->relays.v)[i];
}

static enum ipvs_fwd
state_fwd(int forwarding)
{
	switch (forwarding) {
	case MAILPLEX_FWD_NAT:
		return IPVS_FWD_MASQ;
	case MAILPLEX_FWD_TUN:
		return IPVS_FWD_TUN;
	default:
		return IPVS_FWD_DR;
	}
}

void
state_service_ipvs(const struct mailplex_conf_service *svc, struct ipvs_service *out)
{
	memset(out, 0, sizeof(*out));
	out->protocol = IPPROTO_TCP;
	/* The schema admits IP literals only (CONF_NUMERIC). */
	if (inet_pton(AF_INET, svc->vip.host, &out->addr.in) == 1)
		out->af = AF_INET;
	else if (inet_pton(AF_INET6, svc->vip.host, &out->addr.in6) == 1)
		out->af = AF_INET6;
	out->port = svc->vip.port;
	(void)str_copy(out->sched, sizeof(out->sched), svc->scheduler);
	/* IPVS counts persistence in whole seconds; never round a wish for it down to none. */
	out->persistence_s = (uint32_t)((svc->persistence_ms + 999) / 1000);
}

void
state_dest_ipvs(const struct mailplex_conf_service *svc, const struct mailplex_conf_relay *relay,
                struct ipvs_dest *out)
{
	memset(out, 0, sizeof(*out));
	out->af = relay->address.af;
	if (relay->address.af == AF_INET6)
		out->addr.in6 = relay->address.addr.in6;
	else
		out->addr.in = relay->address.addr.in;
	/* DR and TUN cannot change the port: the relay answers on the VIP's own. */
	out->port = svc->relay_port != 0 ? (uint16_t)svc->relay_port : svc->vip.port;
	out->fwd = state_fwd(svc->forwarding);
	out->weight = (int32_t)relay->weight;
}

int
state_conf_check(const struct mailplex_conf_director *conf, char *err, size_t errlen)
{
	for (size_t i = 0; i < conf->services.n; i++) {
		const struct mailplex_conf_service *s = conf_service(conf, i);
		struct ipvs_service is, js;

		state_service_ipvs(s, &is);
		if (is.af == 0) {
			(void)str_format(err, errlen, "service %s: vip %s is not an IP address",
			                 s->name, s->vip.host);
			return -1;
		}
		if (s->vip.port == 0) {
			(void)str_format(err, errlen, "service %s: vip needs a port", s->name);
			return -1;
		}
		if (s->forwarding != MAILPLEX_FWD_NAT && s->relay_port != 0 &&
		    s->relay_port != s->vip.port) {
			(void)str_format(
			    err, errlen,
			    "service %s: relay_port %lld differs from the VIP's port %u, "
			    "which only NAT forwarding can do",
			    s->name, (long long)s->relay_port, s->vip.port);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			const struct mailplex_conf_service *o = conf_service(conf, j);

			state_service_ipvs(o, &js);
			if (strcmp(o->name, s->name) == 0) {
				(void)str_format(err, errlen, "service %s is defined twice",
				                 s->name);
				return -1;
			}
			if (plan_service_same(&is, &js)) {
				(void)str_format(err, errlen, "services %s and %s share vip %s:%u",
				                 o->name, s->name, s->vip.host, s->vip.port);
				return -1;
			}
		}
		/* IPVS forwards between families only by tunnelling. */
		for (size_t r = 0; r < conf->relays.n; r++) {
			const struct mailplex_conf_relay *rl = conf_relay(conf, r);

			if (s->forwarding != MAILPLEX_FWD_TUN && rl->address.af != is.af) {
				(void)str_format(
				    err, errlen,
				    "service %s: relay %s (%s) is not in the VIP's address "
				    "family; only TUN forwarding crosses families",
				    s->name, rl->name, rl->address.str);
				return -1;
			}
		}
	}
	for (size_t i = 0; i < conf->relays.n; i++)
		for (size_t j = 0; j < i; j++) {
			const struct mailplex_conf_relay *a = conf_relay(conf, i);
			const struct mailplex_conf_relay *b = conf_relay(conf, j);

			if (strcmp(a->name, b->name) == 0) {
				(void)str_format(err, errlen, "relay %s is defined twice", a->name);
				return -1;
			}
			if (strcmp(a->address.str, b->address.str) == 0) {
				(void)str_format(err, errlen, "relays %s and %s share address %s",
				                 b->name, a->name, a->address.str);
				return -1;
			}
		}
	return 0;
}

/* A joined relay takes part in the services it named, where the VIP's family allows. */
static int
state_member_absent(const struct mailplex_conf_service *svc, const struct member_relay *j)
{
	struct ipvs_service is;
	int named = 0;

	if (j == NULL)
		return 0;
	for (size_t i = 0; i < j->nservices && !named; i++)
		named = strcmp(j->services[i].name, svc->name) == 0;
	state_service_ipvs(svc, &is);
	return !named || (svc->forwarding != MAILPLEX_FWD_TUN && j->relay.address.af != is.af);
}

int
state_init(struct director_state *st, const struct mailplex_conf_director *conf)
{
	return state_init_joined(st, conf, NULL, 0);
}

int
state_init_joined(struct director_state *st, const struct mailplex_conf_director *conf,
                  struct member_relay *const *joined, size_t njoined)
{
	size_t n = conf->services.n * (conf->relays.n + njoined);

	memset(st, 0, sizeof(*st));
	st->conf = conf;
	st->nservices = conf->services.n;
	st->nrelays = conf->relays.n + njoined;
	/* calloc(0) may return NULL: allocate one element so NULL always means failure. */
	if ((st->members = calloc(n + 1, sizeof(*st->members))) == NULL ||
	    (st->want = calloc(st->nservices + 1, sizeof(*st->want))) == NULL ||
	    (st->want_dests = calloc(n + 1, sizeof(*st->want_dests))) == NULL ||
	    (st->vips = calloc(st->nservices + 1, sizeof(*st->vips))) == NULL ||
	    (st->tls = calloc(st->nservices + 1, sizeof(*st->tls))) == NULL ||
	    (st->relays = calloc(st->nrelays + 1, sizeof(*st->relays))) == NULL ||
	    (st->joined = calloc(st->nrelays + 1, sizeof(*st->joined))) == NULL) {
		state_free(st);
		errno = ENOMEM;
		return -1;
	}
	for (size_t r = 0; r < st->nrelays; r++) {
		if (r < conf->relays.n) {
			st->relays[r] = conf_relay(conf, r);
		} else {
			st->joined[r] = joined[r - conf->relays.n];
			st->relays[r] = &st->joined[r]->relay;
		}
	}
	for (size_t s = 0; s < st->nservices; s++)
		for (size_t r = 0; r < st->nrelays; r++) {
			struct director_member *m = state_member(st, s, r);

			m->svc = conf_service(conf, s);
			m->relay = st->relays[r];
			m->joined = st->joined[r];
			m->absent = state_member_absent(m->svc, m->joined);
		}
	return 0;
}

void
state_free(struct director_state *st)
{
	free(st->members);
	free(st->want);
	free(st->want_dests);
	free(st->vips);
	free(st->tls);
	free(st->relays);
	free(st->joined);
	memset(st, 0, sizeof(*st));
}

struct director_member *
state_member(struct director_state *st, size_t s, size_t r)
{
	return &st->members[s * st->nrelays + r];
}

int
state_service_index(const struct director_state *st, const char *name)
{
	for (size_t s = 0; s < st->nservices; s++)
		if (strcmp(conf_service(st->conf, s)->name, name) == 0)
			return (int)s;
	return -1;
}

int
state_relay_index(const struct director_state *st, const char *name)
{
	for (size_t r = 0; r < st->nrelays; r++)
		if (strcmp(st->relays[r]->name, name) == 0)
			return (int)r;
	return -1;
}

int
state_set_drained(struct director_state *st, const char *relay, const char *service, int on,
                  char *err, size_t errlen)
{
	int r = state_relay_index(st, relay), only = -1, changed = 0;

	if (r == -1) {
		(void)str_format(err, errlen, "no relay named '%s'", relay);
		return -1;
	}
	if (service != NULL && (only = state_service_index(st, service)) == -1) {
		(void)str_format(err, errlen, "no service named '%s'", service);
		return -1;
	}
	for (size_t s = 0; s < st->nservices; s++) {
		struct director_member *m = state_member(st, s, (size_t)r);

		if (only != -1 && (size_t)only != s)
			continue;
		if (m->drained != (on != 0))
			changed++;
		m->drained = on != 0;
	}
	return changed;
}

void
state_note_kernel(struct director_state *st, const struct plan_kernel_service *have, size_t nhave)
{
	for (size_t s = 0; s < st->nservices; s++) {
		struct ipvs_service want;
		const struct plan_kernel_service *hs = NULL;

		state_service_ipvs(conf_service(st->conf, s), &want);
		for (size_t i = 0; i < nhave && hs == NULL; i++)
			if (plan_service_same(&want, &have[i].svc))
				hs = &have[i];
		for (size_t r = 0; r < st->nrelays; r++) {
			struct director_member *m = state_member(st, s, r);
			struct ipvs_dest d;

			state_dest_ipvs(m->svc, m->relay, &d);
			m->in_kernel = 0;
			for (size_t j = 0; hs != NULL && j < hs->ndests; j++)
				if (plan_dest_same(&d, &hs->dests[j])) {
					m->in_kernel = 1;
					m->kernel = hs->dests[j];
				}
		}
	}
}

void
state_health_from_kernel(struct director_state *st)
{
	for (size_t i = 0; i < st->nservices * st->nrelays; i++)
		st->members[i].healthy =
		    st->members[i].in_kernel && st->members[i].kernel.weight > 0;
}

void
state_carry(struct director_state *st, const struct director_state *old)
{
	for (size_t s = 0; s < st->nservices; s++)
		for (size_t r = 0; r < st->nrelays; r++) {
			struct director_member *m = state_member(st, s, r);
			int os = state_service_index(old, m->svc->name);
			int orl = state_relay_index(old, m->relay->name);
			const struct director_member *o;

			if (os == -1 || orl == -1)
				continue;
			o = &old->members[(size_t)os * old->nrelays + (size_t)orl];
			m->healthy = o->healthy;
			m->drained = o->drained;
			m->draining = o->draining;
			m->drain_deadline_ms = o->drain_deadline_ms;
		}
}

static int
state_vip_known(const struct director_state *st, const struct ipvs_service *svc)
{
	size_t alen = svc->af == AF_INET6 ? sizeof(struct in6_addr) : sizeof(struct in_addr);

	for (size_t i = 0; i < st->nvips; i++)
		if (st->vips[i].af == svc->af && memcmp(&st->vips[i].addr, &svc->addr, alen) == 0)
			return 1;
	return 0;
}

void
state_build(struct director_state *st, uint64_t now_ms)
{
	st->nvips = 0;
	for (size_t s = 0; s < st->nservices; s++) {
		struct plan_service *ps = &st->want[s];

		state_service_ipvs(conf_service(st->conf, s), &ps->svc);
		ps->dests = &st->want_dests[s * st->nrelays];
		ps->ndests = 0;
		if (!state_vip_known(st, &ps->svc)) {
			st->vips[st->nvips].af = ps->svc.af;
			st->vips[st->nvips].addr = ps->svc.addr;
			st->nvips++;
		}
		for (size_t r = 0; r < st->nrelays; r++) {
			struct director_member *m = state_member(st, s, r);
			struct plan_dest *pd;

			/* Not offered: a kernel entry for it is nobody's and drains as such. */
			if (m->absent)
				continue;
			pd = &ps->dests[ps->ndests++];
			memset(pd, 0, sizeof(*pd));
			state_dest_ipvs(m->svc, m->relay, &pd->dest);
			if (state_member_wanted(m)) {
				m->draining = 0;
				pd->want = PLAN_WANT_ACTIVE;
				continue;
			}
			/* The deadline starts when the member turns, not at every pass. */
			if (!m->draining) {
				m->draining = 1;
				m->drain_deadline_ms = now_ms + st->conf->drain_timeout_ms;
			}
			pd->want = PLAN_WANT_DRAIN;
			pd->dest.weight = 0;
			pd->drain_deadline_ms = m->drain_deadline_ms;
		}
	}
}

int
state_member_wanted(const struct director_member *m)
{
	return !m->absent && m->healthy && !m->drained && (m->joined == NULL || !m->joined->leaving);
}

const char *
state_member_label(const struct director_member *m)
{
	int want_active = state_member_wanted(m);

	if (want_active)
		return m->in_kernel ? "active" : "adding";
	if (m->in_kernel)
		return "draining";
	if (m->joined != NULL && m->joined->leaving)
		return "left";
	return m->drained ? "drained" : "down";
}
