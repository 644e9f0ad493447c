/*
 * mailplex-relay: arguments, configuration, signals and the conversation with every
 * director: JOIN until the director says OK, then a HEARTBEAT per interval carrying
 * readiness, JOIN again when a director answers "rejoin", and at stop LEAVE until every
 * director has the relay out of IPVS (live connections end first; bounded by stop_timeout)
 * before the DR setup is undone. Replies count only when authentic, fresh, new, and
 * answering the last datagram sent to that director.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "agent.h"
#include "log.h"
#include "util.h"

#define AGENT_LEAVE_RETRY_MS 500
#define AGENT_LEAVE_TRIES    5 /* unanswered in a row: give that director up */

static void __attribute__((noreturn)) agent_usage(void)
{
	fprintf(stderr, "usage: mailplex-relay [-dn] [-f CONFIG]\n");
	exit(1);
}

/* The relay section's semantics the schema cannot express. 0, or -1 with err. */
static int
agent_conf_check(struct agent *a, char *err, size_t errlen)
{
	const struct mailplex_conf_relay_agent *rc = &a->conf.relay;

	if (rc->name != NULL) {
		if (str_copy(a->name, sizeof(a->name), rc->name) == -1) {
			err_set(err, errlen, "relay.name too long");
			return -1;
		}
	} else if (gethostname(a->name, sizeof(a->name)) == -1) {
		err_set(err, errlen, "relay.name unset and no host name: %s", strerror(errno));
		return -1;
	} else {
		a->name[sizeof(a->name) - 1] = '\0';
		a->name[strcspn(a->name, ".")] = '\0'; /* the short name */
	}
	if (rc->address.af == 0) {
		err_set(err, errlen, "relay.address is required");
		return -1;
	}
	if (rc->directors.n == 0) {
		err_set(err, errlen, "relay.directors lists no director");
		return -1;
	}
	if (rc->services.n == 0) {
		err_set(err, errlen, "relay.services names no service");
		return -1;
	}
	if (rc->services.n > CLUSTER_SERVICES_MAX) {
		err_set(err, errlen, "relay.services: at most %d", CLUSTER_SERVICES_MAX);
		return -1;
	}
	return 0;
}

/* The datagram of a->name's current view: type, services, readiness, a fresh nonce. */
static int
agent_msg_make(struct agent *a, enum cluster_msg_type type, struct cluster_msg *m)
{
	const struct mailplex_conf_relay_agent *rc = &a->conf.relay;

	memset(m, 0, sizeof(*m));
	m->type = type;
	(void)str_copy(m->name, sizeof(m->name), a->name);
	m->af = rc->address.af;
	memcpy(m->addr, &rc->address.addr, rc->address.af == AF_INET6 ? 16 : 4);
	m->weight = (uint16_t)rc->weight;
	m->ready = a->ready;
	m->spool_free = a->spool_free;
	m->map_version = a->map_version;
	m->map_in_force = a->map_in_force;
	for (size_t i = 0; i < rc->services.n; i++) {
		struct cluster_service *s = &m->services[m->nservices];
		const char *colon = strchr(rc->services.v[i], ':');
		uint64_t port = 0;

		if (str_copy_n(s->name, sizeof(s->name), rc->services.v[i],
		               colon != NULL ? (size_t)(colon - rc->services.v[i])
		                             : strlen(rc->services.v[i])) == -1 ||
		    (colon != NULL && parse_u64(colon + 1, 1, 65535, &port) == -1))
			return -1;
		s->port = (uint16_t)port;
		m->nservices++;
	}
	return cluster_msg_stamp(m, cluster_now_ms());
}

static void
agent_send(struct agent *a, struct agent_peer *p, enum cluster_msg_type type)
{
	struct cluster_msg m;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES];
	int n;

	if (agent_msg_make(a, type, &m) == -1 ||
	    (n = cluster_msg_encode(&a->key, &m, buf, sizeof(buf))) == -1) {
		log_warnx("director %s: cannot make a %s", p->str, cluster_msg_type_name(type));
		return;
	}
	memcpy(p->last_nonce, m.nonce, sizeof(p->last_nonce));
	p->last_type = type;
	/* ECONNREFUSED: an earlier datagram met a closed port; the director may be restarting. */
	if (send(p->fd, buf, (size_t)n, 0) == -1 && errno != ECONNREFUSED)
		log_warn("director %s: send %s", p->str, cluster_msg_type_name(type));
	else
		log_debug("director %s: %s sent", p->str, cluster_msg_type_name(type));
}

static void
agent_beat(struct ev_loop *loop, void *arg)
{
	struct agent *a = arg;

	agent_ready_probe(a);
	for (size_t i = 0; i < a->npeers; i++) {
		struct agent_peer *p = &a->peers[i];

		agent_send(
		    a, p, p->state == AGENT_PEER_JOINED ? CLUSTER_MSG_HEARTBEAT : CLUSTER_MSG_JOIN);
	}
	if (ev_timer_start(loop, &a->beat, a->conf.relay.heartbeat_ms, agent_beat, a) == -1)
		log_warn("heartbeat timer");
}

void
agent_beat_now(struct agent *a)
{
	agent_beat(a->loop, a);
}

static void
agent_reply(struct agent *a, struct agent_peer *p, const struct cluster_msg *m)
{
	enum agent_peer_state was = p->state;

	p->map_version = m->map_version;
	p->leave_unanswered = 0;
	switch (m->code) {
	case CLUSTER_REPLY_DRAINING:
		if (p->last_type == CLUSTER_MSG_LEAVE && p->leave == AGENT_LEAVE_UNANSWERED)
			log_info("director %s: leave acknowledged, draining: the VIP stays until "
			         "its connections end",
			         p->str);
		if (p->last_type == CLUSTER_MSG_LEAVE)
			p->leave = AGENT_LEAVE_DRAINING;
		return;
	case CLUSTER_REPLY_OK:
		if (p->last_type == CLUSTER_MSG_LEAVE) {
			p->leave = AGENT_LEAVE_DONE;
			log_info("director %s: leave acknowledged, out of IPVS", p->str);
			return;
		}
		if (p->last_type == CLUSTER_MSG_JOIN)
			p->state = AGENT_PEER_JOINED;
		if (was != AGENT_PEER_JOINED && p->state == AGENT_PEER_JOINED)
			log_info("director %s: joined as %s", p->str, a->name);
		break;
	case CLUSTER_REPLY_REJOIN:
		/* The director restarted and knows nobody: announce again at once. */
		log_info("director %s: asks to join again", p->str);
		p->state = AGENT_PEER_JOINING;
		if (!a->stopping)
			agent_send(a, p, CLUSTER_MSG_JOIN);
		break;
	case CLUSTER_REPLY_REFUSED:
		if (was != AGENT_PEER_REFUSED)
			log_warnx("director %s: refused our %s (see the director's log)", p->str,
			          cluster_msg_type_name(p->last_type));
		p->state = AGENT_PEER_REFUSED;
		if (p->last_type == CLUSTER_MSG_LEAVE)
			p->leave = AGENT_LEAVE_DONE;
		break;
	}
}

static void
agent_read(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct agent *a = arg;
	struct agent_peer *p = NULL;
	uint8_t buf[CLUSTER_MSG_MAX_BYTES + 1];
	struct cluster_msg m;
	enum cluster_verdict v;

	for (size_t i = 0; i < a->npeers && p == NULL; i++)
		if (a->peers[i].fd == fd)
			p = &a->peers[i];
	if (p == NULL)
		return;
	for (int i = 0; i < 16; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_TRUNC);

		if (n == -1) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNREFUSED)
				log_warn("director %s: recv", p->str);
			return;
		}
		v = cluster_msg_open(&a->key, buf,
		                     (size_t)n > sizeof(buf) ? sizeof(buf) : (size_t)n,
		                     cluster_now_ms(), CLUSTER_WINDOW_MS_DEFAULT, &a->replay, &m);
		if (v == CLUSTER_OK &&
		    (m.type != CLUSTER_MSG_REPLY || strcmp(m.name, a->name) != 0))
			v = CLUSTER_ERR_FORMAT;
		if (v != CLUSTER_OK) {
			log_warnx("director %s: reply refused: %s", p->str, cluster_verdict_str(v));
			continue;
		}
		/* An authentic but late answer to an earlier datagram says nothing about now. */
		if (CRYPTO_memcmp(m.echo, p->last_nonce, sizeof(m.echo)) != 0) {
			log_debug("director %s: reply to an earlier datagram ignored", p->str);
			continue;
		}
		agent_reply(a, p, &m);
		if (!a->stopping)
			agent_map_offered(a);
	}
}

/*
 * One round of the stop: LEAVE to every director not done. In DR the VIP on lo is what
 * lets live connections reach us, so it stays while any director still holds the relay.
 */
static void
agent_leave_step(struct ev_loop *loop, void *arg)
{
	struct agent *a = arg;
	size_t pending = 0;

	for (size_t i = 0; i < a->npeers; i++) {
		struct agent_peer *p = &a->peers[i];

		/*
		 * Silent for AGENT_LEAVE_TRIES LEAVEs in a row, whether it never answered or
		 * said "draining" and then died: waiting for it would hold the stop for
		 * stop_timeout; its peer (or its restart) drains us once heartbeats stop.
		 */
		if (p->leave != AGENT_LEAVE_DONE && p->leave_unanswered >= AGENT_LEAVE_TRIES) {
			log_warnx("stop: director %s does not answer; it drains us when our "
			          "heartbeats stop",
			          p->str);
			p->leave = AGENT_LEAVE_DONE;
		}
		if (p->leave == AGENT_LEAVE_DONE)
			continue;
		pending++;
		p->leave_unanswered++;
		agent_send(a, p, CLUSTER_MSG_LEAVE);
	}
	if (pending == 0) {
		log_info("stop: every director has us out of IPVS or was given up on");
		ev_stop(loop);
		return;
	}
	if (ev_now_ms(loop) - a->stop_ms >= a->conf.relay.stop_timeout_ms) {
		log_warnx("stop: %zu directors still send us connections after stop_timeout; "
		          "stopping anyway",
		          pending);
		ev_stop(loop);
		return;
	}
	if (ev_timer_start(loop, &a->leave_timer, AGENT_LEAVE_RETRY_MS, agent_leave_step, a) == -1)
		ev_stop(loop);
}

static void
agent_signal(struct ev_loop *loop, int signo, void *arg)
{
	struct agent *a = arg;

	switch (signo) {
	case SIGHUP:
		log_info("signal %d: mailplex-relay reads its config at start only; restart it",
		         signo);
		break;
	case SIGTERM:
	case SIGINT:
		if (a->stopping) {
			log_info("signal %d again: stopping now; connections still on the VIP end",
			         signo);
			ev_stop(loop);
			return;
		}
		a->stopping = 1;
		a->stop_ms = ev_now_ms(loop);
		log_info("signal %d: asking every director to drain %s", signo, a->name);
		ev_timer_stop(loop, &a->beat);
		agent_map_stop(a);
		agent_leave_step(loop, a);
		break;
	}
}

static int
agent_start(struct agent *a, char *err, size_t errlen)
{
	static const int signals[] = {SIGHUP, SIGTERM, SIGINT};
	const struct mailplex_conf_relay_agent *rc = &a->conf.relay;
	char why[256];

	if (cluster_key_load(rc->key, &a->key, why, sizeof(why)) == -1) {
		err_set(err, errlen, "cluster key: %s", why);
		return -1;
	}
	if (cluster_replay_init(&a->replay) == -1) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	if (rc->directors.n > AGENT_DIRECTORS_MAX) {
		err_set(err, errlen, "relay.directors: at most %d", AGENT_DIRECTORS_MAX);
		return -1;
	}
	if ((a->loop = ev_loop_new()) == NULL) {
		err_set(err, errlen, "cannot create the event loop");
		return -1;
	}
	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (ev_signal_add(a->loop, signals[i], agent_signal, a) == -1) {
			err_set(err, errlen, "signal %d: %s", signals[i], strerror(errno));
			return -1;
		}
	ev_timer_init(&a->beat);
	ev_timer_init(&a->leave_timer);
	for (size_t i = 0; i < rc->directors.n; i++) {
		struct agent_peer *p = &a->peers[i];

		p->fd = -1;
		(void)str_copy(p->str, sizeof(p->str), rc->directors.v[i]);
		p->sslen = sizeof(p->ss);
		if (sock_resolve(p->str, &p->ss, &p->sslen, why, sizeof(why)) == -1) {
			err_set(err, errlen, "director %s: %s", p->str, why);
			return -1;
		}
		a->npeers = i + 1;
		if ((p->fd = socket(p->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		                    0)) == -1 ||
		    connect(p->fd, (struct sockaddr *)&p->ss, p->sslen) == -1 ||
		    ev_io_set(a->loop, p->fd, EV_READ, agent_read, a) == -1) {
			err_set(err, errlen, "director %s: %s", p->str, strerror(errno));
			return -1;
		}
	}
	if (agent_map_start(a, err, errlen) == -1)
		return -1;
	if (agent_dr_setup(a, err, errlen) == -1)
		return -1;
	agent_beat(a->loop, a);
	return 0;
}

static void
agent_stop(struct agent *a)
{
	agent_map_stop(a);
	agent_dr_undo(a);
	for (size_t i = 0; i < a->npeers; i++)
		if (a->peers[i].fd != -1) {
			if (a->loop != NULL)
				(void)ev_io_del(a->loop, a->peers[i].fd);
			(void)close(a->peers[i].fd);
		}
	if (a->loop != NULL) {
		ev_timer_stop(a->loop, &a->beat);
		ev_timer_stop(a->loop, &a->leave_timer);
		ev_loop_free(a->loop);
	}
	cluster_replay_free(&a->replay);
	OPENSSL_cleanse(&a->key, sizeof(a->key));
	mailplex_conf_free(&a->conf);
}

int
main(int argc, char **argv)
{
	struct agent a;
	char err[512];
	int ch, foreground = 0, check_only = 0, rc = 0;

	memset(&a, 0, sizeof(a));
	a.conf_path = MAILPLEX_CONF_PATH;
	a.proc_root = "/proc";
	while ((ch = getopt(argc, argv, "df:n")) != -1) {
		switch (ch) {
		case 'd':
			foreground = 1;
			break;
		case 'f':
			a.conf_path = optarg;
			break;
		case 'n':
			check_only = 1;
			break;
		default:
			agent_usage();
		}
	}
	if (optind != argc)
		agent_usage();
	log_init("mailplex-relay", foreground || check_only, LOG_LEVEL_INFO);
	if (mailplex_conf_load(a.conf_path, &a.conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (agent_conf_check(&a, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\n", a.conf_path, err);
		mailplex_conf_free(&a.conf);
		return 1;
	}
	if (check_only) {
		printf("%s: configuration OK (relay %s, %zu directors, %zu services)\n",
		       a.conf_path, a.name, a.conf.relay.directors.n, a.conf.relay.services.n);
		mailplex_conf_free(&a.conf);
		return 0;
	}
	log_set_level((enum log_level)a.conf.log_level);
	if (!foreground && daemon(0, 0) == -1) {
		mailplex_conf_free(&a.conf);
		fatal("daemon");
	}
	if (agent_start(&a, err, sizeof(err)) == -1) {
		agent_stop(&a);
		fatalx("%s", err);
	}
	log_info("started: relay %s (%s), %zu directors, heartbeat %llu ms", a.name,
	         a.conf.relay.address.str, a.npeers, (unsigned long long)a.conf.relay.heartbeat_ms);
	if (ev_run(a.loop) == -1) {
		log_warn("event loop");
		rc = 1;
	}
	agent_stop(&a);
	log_info("stopped");
	return rc;
}
