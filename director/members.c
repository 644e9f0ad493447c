/*
 * Membership: relays that join the pool with mailplex-relay through authenticated UDP
 * datagrams (lib/cluster_msg.h). Owns the joined-relay table, its socket, the replay cache
 * and the sweep for silent relays; from the table on, state.c and checks.c treat a joined
 * relay exactly like a listed one. It never removes anything from IPVS itself: a relay
 * that leaves, falls silent or is not ready is drained by the state like any other.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "director.h"
#include "log.h"
#include "sock.h"
#include "util.h"

#define MEMBERS_SWEEP_MS      500
#define MEMBERS_READS_PER_RUN 64 /* datagrams per wakeup: the loop stays fair to checks */

static struct member_relay *
members_find(struct director_membership *mb, const char *name)
{
	for (size_t i = 0; i < mb->n; i++)
		if (strcmp(mb->v[i]->name_buf, name) == 0)
			return mb->v[i];
	return NULL;
}

static void
members_msg_ip(const struct cluster_msg *m, struct conf_ip *ip)
{
	memset(ip, 0, sizeof(*ip));
	ip->af = m->af;
	if (m->af == AF_INET6)
		memcpy(&ip->addr.in6, m->addr, 16);
	else
		memcpy(&ip->addr.in, m->addr, 4);
	if (inet_ntop(ip->af, &ip->addr, ip->str, sizeof(ip->str)) == NULL)
		(void)str_copy(ip->str, sizeof(ip->str), "?");
}

/* A JOIN that would take a listed relay's name or address, or another joined relay's. */
static int
members_conflict(const struct director_membership *mb, const struct mailplex_conf_director *conf,
                 const struct cluster_msg *m, const struct conf_ip *ip, char *why, size_t whylen)
{
	const struct mailplex_conf_relay *rl = conf->relays.v;

	for (size_t i = 0; i < conf->relays.n; i++) {
		if (strcmp(rl[i].name, m->name) == 0) {
			err_set(why, whylen, "the name %s belongs to a relay listed in the config",
			        m->name);
			return 1;
		}
		if (strcmp(rl[i].address.str, ip->str) == 0) {
			err_set(why, whylen, "address %s belongs to listed relay %s", ip->str,
			        rl[i].name);
			return 1;
		}
	}
	for (size_t i = 0; i < mb->n; i++)
		if (strcmp(mb->v[i]->name_buf, m->name) != 0 && !mb->v[i]->gone &&
		    strcmp(mb->v[i]->relay.address.str, ip->str) == 0) {
			err_set(why, whylen, "address %s belongs to joined relay %s", ip->str,
			        mb->v[i]->name_buf);
			return 1;
		}
	return 0;
}

/* Readiness of a JOIN or HEARTBEAT; a LEAVE is final until the next JOIN. */
static int
members_note_ready(struct member_relay *r, uint8_t ready, int is_join)
{
	int was = r->leaving;

	r->ready = ready;
	if (!(ready & CLUSTER_READY_NODE)) {
		if (!r->leaving || strcmp(r->why, "leave") != 0 || is_join) {
			r->leaving = 1;
			r->why = "not ready";
		}
	} else if (r->leaving && (is_join || strcmp(r->why, "leave") != 0)) {
		r->leaving = 0;
		r->why = "";
	}
	return was != r->leaving;
}

int
members_apply(struct director_membership *mb, const struct mailplex_conf_director *conf,
              const struct cluster_msg *m, uint64_t now_ms, uint8_t *reply_code, char *why,
              size_t whylen)
{
	struct member_relay *r = members_find(mb, m->name);
	struct conf_ip ip;
	int flags = 0;

	*reply_code = CLUSTER_REPLY_OK;
	err_set(why, whylen, "%s", "");
	switch (m->type) {
	case CLUSTER_MSG_JOIN:
		members_msg_ip(m, &ip);
		if (members_conflict(mb, conf, m, &ip, why, whylen)) {
			*reply_code = CLUSTER_REPLY_REFUSED;
			return 0;
		}
		if (r == NULL || r->gone) {
			if (r == NULL && mb->n >= MEMBERS_MAX) {
				err_set(why, whylen, "the table holds %d relays already",
				        MEMBERS_MAX);
				*reply_code = CLUSTER_REPLY_REFUSED;
				return 0;
			}
			if (r == NULL) {
				if ((r = calloc(1, sizeof(*r))) == NULL) {
					err_set(why, whylen, "out of memory");
					*reply_code = CLUSTER_REPLY_REFUSED;
					return 0;
				}
				mb->v[mb->n++] = r;
			}
			r->gone = 0;
			(void)str_copy(r->name_buf, sizeof(r->name_buf), m->name);
			r->relay.name = r->name_buf;
			r->joined_ms = now_ms;
			r->leaving = 0;
			r->why = "";
			flags |= MEMBERS_TABLE_CHANGED;
		}
		/* Where it is and what it offers decide the IPVS entries: a new state. */
		if (strcmp(r->relay.address.str, ip.str) != 0 || r->relay.weight != m->weight ||
		    r->nservices != m->nservices ||
		    memcmp(r->services, m->services, m->nservices * sizeof(m->services[0])) != 0) {
			r->relay.address = ip;
			r->relay.weight = m->weight > 0 ? m->weight : 1;
			r->nservices = m->nservices;
			memcpy(r->services, m->services, m->nservices * sizeof(m->services[0]));
			flags |= MEMBERS_TABLE_CHANGED;
		}
		r->heard_ms = now_ms;
		r->spool_free = m->spool_free;
		r->map_version = m->map_version;
		r->map_in_force = m->map_in_force;
		if (members_note_ready(r, m->ready, 1))
			flags |= MEMBERS_STATE_CHANGED;
		return flags;
	case CLUSTER_MSG_HEARTBEAT:
		if (r == NULL || r->gone) {
			*reply_code = CLUSTER_REPLY_REJOIN;
			err_set(why, whylen, "unknown relay: asked to join");
			return 0;
		}
		r->heard_ms = now_ms;
		r->spool_free = m->spool_free;
		r->map_version = m->map_version;
		r->map_in_force = m->map_in_force;
		if (members_note_ready(r, m->ready, 0))
			flags |= MEMBERS_STATE_CHANGED;
		return flags;
	case CLUSTER_MSG_LEAVE:
		if (r == NULL || r->gone)
			return 0;
		r->heard_ms = now_ms;
		/* A draining relay still ends sessions and deliveries: a move waits on it too. */
		r->map_in_force = m->map_in_force;
		if (!r->leaving || strcmp(r->why, "leave") != 0)
			flags |= MEMBERS_STATE_CHANGED;
		r->leaving = 1;
		r->why = "leave";
		return flags;
	case CLUSTER_MSG_REPLY:
		break;
	}
	*reply_code = CLUSTER_REPLY_REFUSED;
	err_set(why, whylen, "a director takes no replies");
	return 0;
}

size_t
members_sweep_dead(struct director_membership *mb, uint64_t now_ms, uint64_t dead_after_ms)
{
	size_t n = 0;

	for (size_t i = 0; i < mb->n; i++) {
		struct member_relay *r = mb->v[i];

		if (r->leaving || r->gone || now_ms - r->heard_ms <= dead_after_ms)
			continue;
		r->leaving = 1;
		r->why = "no heartbeat";
		log_warnx("cluster: relay %s: no heartbeat for %llu ms, draining it", r->name_buf,
		          (unsigned long long)(now_ms - r->heard_ms));
		n++;
	}
	return n;
}

int
members_held(const struct director_state *st, const char *name)
{
	int held = 0, ri;

	if ((ri = state_relay_index(st, name)) != -1)
		for (size_t s = 0; s < st->nservices && !held; s++)
			held = st->members[s * st->nrelays + (size_t)ri].in_kernel;
	return held;
}

size_t
members_forget(struct director_membership *mb, const struct director_state *st)
{
	size_t n = 0;

	for (size_t i = 0; i < mb->n; i++) {
		struct member_relay *r = mb->v[i];

		/* Not ready, it still heartbeats: forgotten, it would rejoin at once. */
		if (!r->leaving || r->gone || strcmp(r->why, "not ready") == 0)
			continue;
		if (!members_held(st, r->name_buf)) {
			r->gone = 1;
			n++;
		}
	}
	return n;
}

size_t
members_yield(struct director_membership *mb, const struct mailplex_conf_director *conf)
{
	const struct mailplex_conf_relay *rl = conf->relays.v;
	size_t n = 0;

	for (size_t i = 0; i < mb->n; i++) {
		struct member_relay *r = mb->v[i];

		for (size_t j = 0; j < conf->relays.n && !r->gone; j++)
			if (strcmp(rl[j].name, r->name_buf) == 0 ||
			    strcmp(rl[j].address.str, r->relay.address.str) == 0) {
				log_info(
				    "cluster: joined relay %s (%s): the config lists %s (%s) now; "
				    "the listed one counts",
				    r->name_buf, r->relay.address.str, rl[j].name,
				    rl[j].address.str);
				r->gone = 1;
				n++;
			}
	}
	return n;
}

void
members_unyield(struct director_membership *mb)
{
	for (size_t i = 0; i < mb->n; i++)
		mb->v[i]->gone = 0;
}

size_t
members_live(const struct director_membership *mb, struct member_relay **out)
{
	size_t n = 0;

	for (size_t i = 0; i < mb->n; i++)
		if (!mb->v[i]->gone)
			out[n++] = mb->v[i];
	return n;
}

void
members_reap(struct director_membership *mb)
{
	size_t k = 0;

	for (size_t i = 0; i < mb->n; i++) {
		if (mb->v[i]->gone) {
			free(mb->v[i]);
			continue;
		}
		mb->v[k++] = mb->v[i];
	}
	for (size_t i = k; i < mb->n; i++)
		mb->v[i] = NULL;
	mb->n = k;
}

void
members_clear(struct director_membership *mb)
{
	for (size_t i = 0; i < mb->n; i++) {
		free(mb->v[i]);
		mb->v[i] = NULL;
	}
	mb->n = 0;
}

int
members_state_rebuild(struct director *d, char *err, size_t errlen)
{
	struct director_membership *mb = &d->members;
	struct member_relay *keep[MEMBERS_MAX];
	struct director_state ns;
	size_t n = members_live(mb, keep);

	if (state_init_joined(&ns, &d->conf.director, keep, n) == -1) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	/* New relays start from the kernel (a rejoin after a restart keeps its weight). */
	state_note_kernel(&ns, d->kernel, d->nkernel);
	state_health_from_kernel(&ns);
	state_carry(&ns, &d->state);
	if (checks_start(d, &ns, err, errlen) == -1) {
		state_free(&ns);
		return -1;
	}
	/* A join must not restart every other relay's checks (at scale: all at once). */
	checks_carry(&ns, &d->state);
	checks_stop(&d->state);
	state_free(&d->state);
	d->state = ns;
	members_reap(mb);
	reconcile_soon(d);
	return 0;
}

int
members_grace_filter(const struct director *d, struct plan_kernel_service **out, size_t *nout)
{
	const struct director_state *st = &d->state;
	struct plan_kernel_service *ks;
	int hidden = 0;

	*out = NULL;
	*nout = 0;
	if (d->members.fd == -1 || d->conf.director.cluster_listen == NULL ||
	    ev_now_ms(d->loop) >= d->members.grace_until_ms)
		return 0;
	if ((ks = calloc(d->nkernel + 1, sizeof(*ks))) == NULL)
		return -1;
	for (size_t i = 0; i < d->nkernel; i++) {
		const struct plan_kernel_service *h = &d->kernel[i];
		const struct plan_service *w = NULL;

		ks[i].svc = h->svc;
		if ((ks[i].dests = calloc(h->ndests + 1, sizeof(*ks[i].dests))) == NULL) {
			members_grace_free(ks, i);
			return -1;
		}
		for (size_t s = 0; s < st->nservices && w == NULL; s++)
			if (plan_service_same(&st->want[s].svc, &h->svc))
				w = &st->want[s];
		for (size_t j = 0; j < h->ndests; j++) {
			int claimed = w == NULL; /* an unwanted service drains as before */

			for (size_t k = 0; w != NULL && k < w->ndests && !claimed; k++)
				claimed = plan_dest_same(&w->dests[k].dest, &h->dests[j]);
			if (claimed)
				ks[i].dests[ks[i].ndests++] = h->dests[j];
			else
				hidden++;
		}
	}
	*out = ks;
	*nout = d->nkernel;
	return hidden;
}

void
members_grace_free(struct plan_kernel_service *ks, size_t n)
{
	for (size_t i = 0; ks != NULL && i < n; i++)
		free(ks[i].dests);
	free(ks);
}

/* Refusals may come in floods (a misconfigured node, an attacker): log a few per second. */
static void
members_log_refusal(struct director *d, const char *peer, const char *what)
{
	struct director_membership *mb = &d->members;
	uint64_t sec = ev_now_ms(d->loop) / 1000;

	mb->refused++;
	if (sec != mb->log_second) {
		if (mb->log_count > MEMBERS_LOG_PER_SECOND)
			log_warnx("cluster: %u more refused datagrams not logged",
			          mb->log_count - MEMBERS_LOG_PER_SECOND);
		mb->log_second = sec;
		mb->log_count = 0;
	}
	if (mb->log_count++ < MEMBERS_LOG_PER_SECOND)
		log_warnx("cluster: datagram from %s refused: %s", peer, what);
}

static void
members_reply(struct director *d, const struct cluster_msg *m, uint8_t code,
              const struct sockaddr_storage *peer, socklen_t peerlen, const char *peerstr)
{
	struct cluster_msg rep;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES];
	int n;

	memset(&rep, 0, sizeof(rep));
	rep.type = CLUSTER_MSG_REPLY;
	rep.code = code;
	memcpy(rep.echo, m->nonce, sizeof(rep.echo));
	(void)str_copy(rep.name, sizeof(rep.name), m->name);
	/* The map a relay should run: mailplexctl map publish made it (mapserve.c). */
	rep.map_version = mapserve_offered(d);
	if (cluster_msg_stamp(&rep, cluster_now_ms()) == -1 ||
	    (n = cluster_msg_encode(&d->members.key, &rep, buf, sizeof(buf))) == -1) {
		log_warnx("cluster: cannot make a reply to %s", peerstr);
		return;
	}
	if (sendto(d->members.fd, buf, (size_t)n, 0, (const struct sockaddr *)peer, peerlen) == -1)
		log_warn("cluster: reply to %s", peerstr);
}

static void
members_log_apply(const struct cluster_msg *m, const char *peer, uint8_t code, int flags,
                  const char *why, const struct member_relay *r)
{
	char addr[INET6_ADDRSTRLEN];

	if (m->af == 0 || inet_ntop(m->af, m->addr, addr, sizeof(addr)) == NULL)
		(void)str_copy(addr, sizeof(addr), "-");
	if (code == CLUSTER_REPLY_REFUSED) {
		log_warnx("cluster: %s of relay %s (%s) from %s refused: %s",
		          cluster_msg_type_name(m->type), m->name, addr, peer, why);
		return;
	}
	if (code == CLUSTER_REPLY_REJOIN) {
		log_info("cluster: heartbeat of unknown relay %s from %s: asked to join", m->name,
		         peer);
		return;
	}
	if (m->type == CLUSTER_MSG_JOIN)
		log_info("cluster: join of relay %s (%s, weight %u, %zu services, %s) from %s%s",
		         m->name, addr, m->weight, m->nservices,
		         (m->ready & CLUSTER_READY_NODE) ? "ready" : "not ready", peer,
		         (flags & MEMBERS_TABLE_CHANGED) ? ": checks start" : ": refreshed");
	else if (m->type == CLUSTER_MSG_LEAVE)
		log_info("cluster: relay %s leaves (from %s)%s", m->name, peer,
		         (flags & MEMBERS_STATE_CHANGED) ? ": draining it" : "");
	else if (flags & MEMBERS_STATE_CHANGED)
		log_info("cluster: relay %s %s", m->name,
		         r != NULL && r->leaving ? "is not ready: draining it" : "is ready again");
	else
		log_debug("cluster: heartbeat of relay %s from %s", m->name, peer);
}

static void
members_datagram(struct director *d, const uint8_t *buf, size_t len,
                 const struct sockaddr_storage *peer, socklen_t peerlen)
{
	struct director_membership *mb = &d->members;
	const struct mailplex_conf_director *conf = &d->conf.director;
	char peerstr[SOCK_ADDR_STRLEN], why[256], err[DIRECTOR_ERR_MAX];
	struct cluster_msg m;
	enum cluster_verdict v;
	uint8_t code;
	int flags;

	if (sock_addr_format((const struct sockaddr *)peer, peerstr, sizeof(peerstr)) == -1)
		(void)str_copy(peerstr, sizeof(peerstr), "?");
	v = cluster_msg_open(&mb->key, buf, len, cluster_now_ms(), conf->cluster_window_ms,
	                     &mb->replay, &m);
	if (v != CLUSTER_OK) {
		members_log_refusal(d, peerstr, cluster_verdict_str(v));
		return;
	}
	if (m.type == CLUSTER_MSG_REPLY) {
		members_log_refusal(d, peerstr, "a reply sent to a director");
		return;
	}
	mb->accepted++;
	flags = members_apply(mb, conf, &m, ev_now_ms(d->loop), &code, why, sizeof(why));
	members_log_apply(&m, peerstr, code, flags, why, members_find(mb, m.name));
	if (code == CLUSTER_REPLY_OK) {
		struct member_relay *r = members_find(mb, m.name);

		if (r != NULL)
			(void)str_copy(r->peer, sizeof(r->peer), peerstr);
	}
	if ((flags & MEMBERS_TABLE_CHANGED) && members_state_rebuild(d, err, sizeof(err)) == -1) {
		log_warnx("cluster: relay %s: %s; it stays out until its next join", m.name, err);
		/* Unadmitted: forget it so the next JOIN tries again from scratch. */
		struct member_relay *r = members_find(mb, m.name);

		if (r != NULL && state_relay_index(&d->state, m.name) == -1) {
			r->gone = 1;
			members_reap(mb);
		}
		code = CLUSTER_REPLY_REFUSED;
	}
	if (flags & MEMBERS_STATE_CHANGED)
		reconcile_soon(d);
	/* A leaving relay keeps its VIP until IPVS sends it nothing: live connections end. */
	if (m.type == CLUSTER_MSG_LEAVE && code == CLUSTER_REPLY_OK &&
	    members_held(&d->state, m.name))
		code = CLUSTER_REPLY_DRAINING;
	members_reply(d, &m, code, peer, peerlen, peerstr);
}

static void
members_read(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct director *d = arg;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES + 1];

	for (int i = 0; i < MEMBERS_READS_PER_RUN; i++) {
		struct sockaddr_storage peer;
		socklen_t peerlen = sizeof(peer);
		ssize_t n;

		n = recvfrom(fd, buf, sizeof(buf), MSG_TRUNC, (struct sockaddr *)&peer, &peerlen);
		if (n == -1) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("cluster: recvfrom");
			return;
		}
		/* MSG_TRUNC: n is the datagram's real length, so an oversize one is refused. */
		members_datagram(d, buf, (size_t)n > sizeof(buf) ? sizeof(buf) : (size_t)n, &peer,
		                 peerlen);
	}
}

static void
members_sweep(struct ev_loop *loop, void *arg)
{
	struct director *d = arg;
	struct director_membership *mb = &d->members;
	char err[DIRECTOR_ERR_MAX];
	uint64_t now = ev_now_ms(loop);

	if (members_sweep_dead(mb, now, d->conf.director.relay_dead_after_ms) > 0)
		reconcile_soon(d);
	if (mb->grace_until_ms != 0 && now >= mb->grace_until_ms) {
		log_info("cluster: rejoin grace over: entries no relay claimed now drain");
		mb->grace_until_ms = 0;
		reconcile_soon(d);
	}
	/* Only after a pass has seen the kernel: in_kernel must be current. */
	if (d->last_pass_ms != 0 && members_forget(mb, &d->state) > 0) {
		for (size_t i = 0; i < mb->n; i++)
			if (mb->v[i]->gone)
				log_info(
				    "cluster: relay %s (%s) is out of every service: forgotten",
				    mb->v[i]->name_buf, mb->v[i]->why);
		if (members_state_rebuild(d, err, sizeof(err)) == -1) {
			for (size_t i = 0; i < mb->n; i++)
				mb->v[i]->gone = 0;
			log_warnx("cluster: cannot forget relays: %s", err);
		}
	}
	if (ev_timer_start(loop, &mb->sweep, MEMBERS_SWEEP_MS, members_sweep, d) == -1)
		log_warn("cluster: sweep timer");
}

int
members_open(struct director *d, char *err, size_t errlen)
{
	struct director_membership *mb = &d->members;
	const struct mailplex_conf_director *conf = &d->conf.director;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char why[256];

	mb->fd = -1;
	ev_timer_init(&mb->sweep);
	if (conf->cluster_listen == NULL)
		return 0;
	if (cluster_key_load(conf->cluster_key, &mb->key, why, sizeof(why)) == -1) {
		err_set(err, errlen, "cluster key: %s", why);
		return -1;
	}
	if (sock_addr_parse(conf->cluster_listen, &ss, &sslen, why, sizeof(why)) == -1) {
		err_set(err, errlen, "cluster_listen %s: %s", conf->cluster_listen, why);
		return -1;
	}
	if (cluster_replay_init(&mb->replay) == -1) {
		err_set(err, errlen, "cluster: out of memory");
		return -1;
	}
	if ((mb->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) == -1 ||
	    bind(mb->fd, (struct sockaddr *)&ss, sslen) == -1) {
		err_set(err, errlen, "cluster_listen %s: %s", conf->cluster_listen,
		        strerror(errno));
		return -1;
	}
	if (ev_io_set(d->loop, mb->fd, EV_READ, members_read, d) == -1 ||
	    ev_timer_start(d->loop, &mb->sweep, MEMBERS_SWEEP_MS, members_sweep, d) == -1) {
		err_set(err, errlen, "cluster: event loop: %s", strerror(errno));
		return -1;
	}
	/* A restarted director knows nobody yet: give joined relays time to re-announce. */
	mb->grace_until_ms = ev_now_ms(d->loop) + conf->rejoin_grace_ms;
	log_info("cluster: listening on %s; unclaimed IPVS entries kept for %llu ms",
	         conf->cluster_listen, (unsigned long long)conf->rejoin_grace_ms);
	return 0;
}

void
members_close(struct director *d)
{
	struct director_membership *mb = &d->members;

	if (mb->fd != -1) {
		if (d->loop != NULL)
			(void)ev_io_del(d->loop, mb->fd);
		(void)close(mb->fd);
		mb->fd = -1;
	}
	if (d->loop != NULL)
		ev_timer_stop(d->loop, &mb->sweep);
	cluster_replay_free(&mb->replay);
	OPENSSL_cleanse(&mb->key, sizeof(mb->key));
	members_clear(mb);
}

const char *
members_state_word(const struct member_relay *r)
{
	if (!r->leaving)
		return "admitted";
	if (strcmp(r->why, "leave") == 0)
		return "draining";
	if (strcmp(r->why, "no heartbeat") == 0)
		return "silent";
	return "not-ready";
}

void
members_status(struct director *d, struct control_reply *r)
{
	struct director_membership *mb = &d->members;
	uint64_t now = ev_now_ms(d->loop);

	if (mb->fd == -1 || d->conf.director.cluster_listen == NULL) {
		control_reply_printf(r,
		                     "cluster: no cluster_listen, relays from the config only\n");
		return;
	}
	control_reply_printf(
	    r, "cluster: %s, %zu joined relays, %llu datagrams accepted, %llu refused%s\n",
	    d->conf.director.cluster_listen, mb->n, (unsigned long long)mb->accepted,
	    (unsigned long long)mb->refused,
	    mb->grace_until_ms > now ? ", rejoin grace running" : "");
	for (size_t i = 0; i < mb->n; i++) {
		const struct member_relay *m = mb->v[i];
		char svcs[CLUSTER_SERVICES_MAX * CLUSTER_SERVICE_NAME_MAX] = "";
		size_t l = 0;

		for (size_t s = 0; s < m->nservices; s++) {
			(void)str_format(svcs + l, sizeof(svcs) - l, "%s%s", s > 0 ? "," : "",
			                 m->services[s].name);
			l = strlen(svcs);
		}
		control_reply_printf(
		    r,
		    "joined: %s %s weight %lld services %s heartbeat %llu ms ago %s%s "
		    "(smtpd %s, proxy %s, spool %s, %llu MiB free, map %llu%s) map in force %llu\n",
		    m->name_buf, m->relay.address.str, (long long)m->relay.weight,
		    svcs[0] != '\0' ? svcs : "-", (unsigned long long)(now - m->heard_ms),
		    m->leaving ? "leaving: " : "ready", m->leaving ? m->why : "",
		    (m->ready & CLUSTER_READY_SMTPD) ? "up" : "down",
		    (m->ready & CLUSTER_READY_PROXY) ? "up" : "down",
		    (m->ready & CLUSTER_READY_SPOOL) ? "ok" : "low",
		    (unsigned long long)(m->spool_free >> 20), (unsigned long long)m->map_version,
		    mapserve_offered(d) != 0 && m->map_version != mapserve_offered(d) ? " behind"
		                                                                        : "",
		    (unsigned long long)m->map_in_force);
	}
}
