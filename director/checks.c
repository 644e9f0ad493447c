/*
 * Health checks of the director: one hc_check per relay per service, started up where
 * the member is already healthy (the kernel had it, or the previous config said so), so a
 * restart or reload never pulls a working relay. A flip only marks the member and asks
 * for a reconcile pass; the check engine itself lives in healthcheck/.
 */
#include <string.h>
#include <sys/socket.h>

#include "director.h"
#include "log.h"
#include "sock.h"
#include "tls.h"
#include "util.h"

static enum hc_type
checks_type(int type)
{
	switch (type) {
	case MAILPLEX_CHECK_SMTP:
		return HC_SMTP;
	case MAILPLEX_CHECK_SMTPS:
		return HC_SMTPS;
	case MAILPLEX_CHECK_IMAP:
		return HC_IMAP;
	case MAILPLEX_CHECK_IMAPS:
		return HC_IMAPS;
	case MAILPLEX_CHECK_POP3:
		return HC_POP3;
	case MAILPLEX_CHECK_POP3S:
		return HC_POP3S;
	default:
		return HC_TCP;
	}
}

static void
checks_cb(struct hc_check *c, const struct hc_result *r, int changed, void *arg)
{
	struct director_member *m = arg;

	if (!changed)
		return;
	m->healthy = hc_check_is_up(c);
	if (m->healthy)
		log_info("relay %s in service %s: check up%s", m->relay->name, m->svc->name,
		         m->drained ? ", stays drained by the operator" : ", adding it");
	else
		log_warnx("relay %s in service %s: check down (%s), draining it", m->relay->name,
		          m->svc->name, r->reason);
	reconcile_soon(m->d);
}

/* The spec of one member's check: the relay's own address and the port IPVS sends to. */
static int
checks_spec(const struct director_member *m, SSL_CTX *ctx, struct hc_spec *spec, char *err,
            size_t errlen)
{
	const struct mailplex_conf_check *cc = &m->svc->check;
	struct ipvs_dest dest;

	memset(spec, 0, sizeof(*spec));
	state_dest_ipvs(m->svc, m->relay, &dest);
	spec->type = checks_type(cc->type);
	spec->starttls = cc->starttls;
	if (m->relay->address.af == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&spec->addr;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = m->relay->address.addr.in6;
		sin6->sin6_port = htons(dest.port);
		spec->addrlen = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&spec->addr;

		sin->sin_family = AF_INET;
		sin->sin_addr = m->relay->address.addr.in;
		sin->sin_port = htons(dest.port);
		spec->addrlen = sizeof(*sin);
	}
	if (sock_addr_format((struct sockaddr *)&spec->addr, spec->addr_str,
	                     sizeof(spec->addr_str)) == -1)
		(void)str_copy(spec->addr_str, sizeof(spec->addr_str), m->relay->address.str);
	/* Relays share the VIP's certificate, not one in their own name: chain-only. */
	spec->servername[0] = '\0';
	if (str_copy(spec->helo, sizeof(spec->helo), cc->helo) == -1) {
		(void)str_format(err, errlen, "service %s: helo too long", m->svc->name);
		return -1;
	}
	spec->timeout_ms = cc->timeout_ms;
	spec->cert_warn_days = (int)cc->cert_days;
	spec->ssl_ctx = ctx;
	return 0;
}

void
checks_stop(struct director_state *st)
{
	for (size_t i = 0; i < st->nservices * st->nrelays; i++) {
		hc_check_free(st->members[i].check);
		st->members[i].check = NULL;
	}
	for (size_t s = 0; s < st->nservices; s++) {
		tls_ctx_free(st->tls[s]);
		st->tls[s] = NULL;
	}
}

int
checks_start(struct director *d, struct director_state *st, char *err, size_t errlen)
{
	char why[DIRECTOR_ERR_MAX];

	for (size_t s = 0; s < st->nservices; s++) {
		const struct mailplex_conf_service *svc =
		    &((const struct mailplex_conf_service *)st->conf->services.v)[s];
		struct hc_spec probe;

		memset(&probe, 0, sizeof(probe));
		probe.type = checks_type(svc->check.type);
		probe.starttls = svc->check.starttls;
		if (!hc_spec_uses_tls(&probe))
			continue;
		struct tls_client_opts o = {.verify = svc->check.verify,
		                            .ca_file = svc->check.ca_file};

		if ((st->tls[s] = tls_client_ctx_new(&o, why, sizeof(why))) == NULL) {
			(void)str_format(err, errlen, "service %s: check TLS: %s", svc->name, why);
			checks_stop(st);
			return -1;
		}
	}
	for (size_t s = 0; s < st->nservices; s++)
		for (size_t r = 0; r < st->nrelays; r++) {
			struct director_member *m = state_member(st, s, r);
			struct hc_params params;
			struct hc_spec spec;

			m->d = d;
			if (m->absent)
				continue;
			if (checks_spec(m, st->tls[s], &spec, err, errlen) == -1) {
				checks_stop(st);
				return -1;
			}
			memset(&params, 0, sizeof(params));
			params.interval_ms = m->svc->check.interval_ms;
			params.rise = (unsigned)m->svc->check.rise;
			params.fall = (unsigned)m->svc->check.fall;
			params.initially_up = m->healthy;
			m->check =
			    hc_check_new(d->loop, &spec, &params, checks_cb, m, why, sizeof(why));
			if (m->check == NULL || hc_check_start(m->check) == -1) {
				(void)str_format(err, errlen, "relay %s in service %s: check: %s",
				                 m->relay->name, m->svc->name,
				                 m->check == NULL ? why : "timer");
				checks_stop(st);
				return -1;
			}
		}
	return 0;
}

void
checks_carry(struct director_state *st, struct director_state *old)
{
	for (size_t s = 0; s < st->nservices; s++)
		for (size_t r = 0; r < st->nrelays; r++) {
			struct director_member *m = state_member(st, s, r);
			int os = state_service_index(old, m->svc->name);
			int orl = state_relay_index(old, m->relay->name);
			struct director_member *o;

			if (m->check == NULL || os == -1 || orl == -1)
				continue;
			o = state_member(old, (size_t)os, (size_t)orl);
			/*
			 * Another address or port is another check: the fresh one stays. Compared
			 * on the checks themselves: a joined relay's record is shared by both states.
			 */
			if (o->check == NULL ||
			    strcmp(o->check->spec.addr_str, m->check->spec.addr_str) != 0)
				continue;
			hc_check_free(m->check);
			m->check = o->check;
			m->check->arg = m;
			o->check = NULL;
		}
}
