/*
 * mailplex-relay, the node agent: its one context struct and the faces of its files:
 * agent_main.c (arguments, signals, the loop, the conversation with every director),
 * agent_ready.c (readiness: local daemons, spool, map version), agent_dr.c (the VIP on
 * lo and the ARP sysctls for direct routing, undone at stop), agent_map.c (fetching the
 * map the directors publish, in a child process). Nothing outside relay/agent*.
 */
#ifndef MAILPLEX_RELAY_AGENT_H
#define MAILPLEX_RELAY_AGENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "cluster_msg.h"
#include "event.h"
#include "mailplex_conf.h"
#include "sock.h"

#define AGENT_DIRECTORS_MAX    16
#define AGENT_DR_VIPS_MAX      64
#define AGENT_READY_TIMEOUT_MS 500 /* per control socket asked */

/* What the agent believes one director thinks of it. */
enum agent_peer_state {
	AGENT_PEER_JOINING, /* JOIN sent, no OK yet: JOIN again at each beat */
	AGENT_PEER_JOINED,  /* heartbeats */
	AGENT_PEER_REFUSED, /* the director refused the JOIN: retried at each beat, logged once */
};

/* At stop: what one director said to our LEAVE. */
enum agent_leave_state {
	AGENT_LEAVE_UNANSWERED,
	AGENT_LEAVE_DRAINING, /* it still sends us connections: keep the VIP */
	AGENT_LEAVE_DONE,     /* out of its IPVS, or given up on */
};

struct agent_peer {
	char str[SOCK_ADDR_STRLEN]; /* as configured */
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd; /* UDP, connected: only this director's datagrams arrive on it */
	enum agent_peer_state state;
	uint8_t last_nonce[CLUSTER_NONCE_BYTES];
	enum cluster_msg_type last_type;
	enum agent_leave_state leave; /* at stop */
	unsigned leave_unanswered;    /* LEAVEs sent since its last reply */
	uint64_t map_version;         /* the newest the director offers (item 5 fetches it) */
};

struct agent_dr_vip {
	struct conf_ip ip;
	int added; /* ours to remove at stop; 0: it was there before us */
};

struct agent_dr_sysctl {
	const char *path;
	long want;
	long old;
	int changed; /* ours to restore at stop */
};

struct agent {
	struct ev_loop *loop;
	const char *conf_path;
	struct mailplex_conf conf;
	struct cluster_key key;
	struct cluster_replay replay;
	char name[CLUSTER_NAME_MAX];
	struct agent_peer peers[AGENT_DIRECTORS_MAX];
	size_t npeers;
	struct ev_timer beat;
	struct ev_timer leave_timer;
	int stopping;
	uint64_t stop_ms; /* loop time of the stop signal */
	uint8_t ready;    /* CLUSTER_READY_* of the last beat */
	int probed;       /* readiness was probed once (the first verdict is logged either way) */
	uint64_t spool_free;
	uint64_t map_version;  /* installed (drives lagging, fetches and readiness) */
	uint64_t map_in_force; /* min of the local daemons' map_version_in_force; 0: unknown */
	struct agent_dr_vip vips[AGENT_DR_VIPS_MAX];
	size_t nvips;
	struct agent_dr_sysctl sysctls[2];
	const char *proc_root; /* "/proc" */
	/* The map the directors publish (agent_map.c). */
	pid_t map_child;              /* the fetch under way, 0: none */
	uint64_t map_child_want;      /* the version it fetches */
	size_t map_child_peer;        /* from which director */
	uint64_t map_child_start_ms;  /* loop time */
	uint64_t map_behind_since_ms; /* loop time a director first offered a newer map; 0 */
	uint64_t map_retry_ms;        /* the next back-off */
	struct ev_timer map_retry;
};

/* ---- agent_ready.c ---- */

/*
 * Fills a->ready, a->spool_free, a->map_version and a->map_in_force; logs changes of
 * readiness and of the version in force.
 */
void agent_ready_probe(struct agent *a);

/* ---- agent_map.c ---- */

/* Watches the fetch child (SIGCHLD). 0, or -1 with err. */
int agent_map_start(struct agent *a, char *err, size_t errlen);
/* Ends a fetch under way (its temp file goes with it) and stops the retry timer. */
void agent_map_stop(struct agent *a);
/* After each reply: starts a fetch when a director offers a newer map than ours. */
void agent_map_offered(struct agent *a);
/* The installed map's version, 0 when there is none or it does not open. */
uint64_t agent_map_installed(const struct agent *a);
/* 1 when we have lagged behind the directors' map for longer than map_max_lag (why says). */
int agent_map_lagging(struct agent *a, char *why, size_t whylen);

/* ---- agent_main.c ---- */

/* A beat now (readiness probe and a datagram to every director), then every interval. */
void agent_beat_now(struct agent *a);

/* ---- agent_dr.c ---- */

/* Puts the VIPs on lo and sets arp_ignore/arp_announce. 0, or -1 with err (nothing left). */
int agent_dr_setup(struct agent *a, char *err, size_t errlen);
/* Undoes what setup did, and only that. */
void agent_dr_undo(struct agent *a);

#endif
