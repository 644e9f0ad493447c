/*
 * mailplex-director's one context struct and the faces of its files: state.c (desired
 * state), reconcile.c (kernel table), checks.c (health checks), sysctl.c (kernel
 * settings), control.c (control socket). Nothing outside director/ includes this.
 */
#ifndef MAILPLEX_DIRECTOR_H
#define MAILPLEX_DIRECTOR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "cluster_msg.h"
#include "control.h"
#include "event.h"
#include "hc.h"
#include "ipvs.h"
#include "mailplex_conf.h"
#include "plan.h"

#define DIRECTOR_ERR_MAX 512

struct director;

/* ---- membership: relays that joined with mailplex-relay (members.c) ---- */

#define MEMBERS_MAX             256
#define MEMBERS_LOG_PER_SECOND  10 /* refused datagrams logged; the rest are counted */

struct member_relay {
	struct mailplex_conf_relay relay; /* name points at name_buf: state.c treats it as static */
	char name_buf[CLUSTER_NAME_MAX];
	struct cluster_service services[CLUSTER_SERVICES_MAX];
	size_t nservices;
	uint8_t ready; /* CLUSTER_READY_* of the last JOIN or HEARTBEAT */
	uint64_t spool_free;
	uint64_t map_version;  /* installed on the relay */
	uint64_t map_in_force; /* the oldest its sessions and deliveries follow; 0: unknown */
	uint64_t joined_ms;    /* loop time */
	uint64_t heard_ms;  /* loop time of the last authentic datagram */
	int leaving;        /* drain it: LEAVE, no heartbeat, or not ready */
	int gone;           /* forgotten: freed once no state points at it */
	const char *why;    /* of leaving: "leave", "no heartbeat", "not ready" */
	char peer[SOCK_ADDR_STRLEN]; /* where its datagrams come from */
};

struct director_membership {
	int fd; /* UDP; -1: no cluster_listen */
	struct cluster_key key;
	struct cluster_replay replay;
	struct member_relay *v[MEMBERS_MAX];
	size_t n;
	struct ev_timer sweep;
	uint64_t grace_until_ms; /* loop time: unclaimed kernel entries stay until then */
	uint64_t accepted, refused;
	uint64_t log_second; /* rate limit of refusal log lines */
	unsigned log_count;
};

/* What one datagram did to the table (members_apply). */
#define MEMBERS_TABLE_CHANGED 0x01 /* a relay was added: the state must be rebuilt */
#define MEMBERS_STATE_CHANGED 0x02 /* a relay turned leaving or back: a reconcile pass */

/* ---- the published map and its transfers to relays (mapserve.c) ---- */

#define MAPSERVE_CONN_MAX 32 /* transfers at once; more connections are closed at once */

struct mapserve_conn;

struct director_mapserve {
	int fd;   /* TCP listener on map_listen; -1: none */
	int dbfd; /* the published map.db; -1: nothing published */
	uint64_t version;
	uint64_t size;
	uint8_t sha256[32];
	uint64_t published_ms; /* wall clock */
	struct mapserve_conn *conns[MAPSERVE_CONN_MAX];
	size_t nconns;
	uint64_t served, refused;
	uint64_t log_second; /* rate limit of refusal log lines */
	unsigned log_count;
};

/* One relay in one service: what the director wants for it and what it last saw. */
struct director_member {
	struct director *d; /* for the check callback */
	const struct mailplex_conf_service *svc;
	const struct mailplex_conf_relay *relay;
	int healthy;  /* the check is up (or the kernel had it, until checks say more) */
	int drained;  /* the operator asked for it to leave (mailplexctl drain) */
	int draining; /* wanted out: weight 0 now, deleted when idle or at the deadline */
	uint64_t drain_deadline_ms;
	struct hc_check *check; /* checks.c */
	int in_kernel;          /* from the last dump */
	struct ipvs_dest kernel;
	const struct member_relay *joined; /* NULL: listed in the config */
	int absent;                        /* a joined relay that does not offer this service */
};

/* Desired state: services × relays, and the plan inputs built from it. */
struct director_state {
	const struct mailplex_conf_director *conf;
	size_t nservices;
	size_t nrelays;
	struct director_member *members; /* service-major: [s * nrelays + r] */
	struct plan_service *want;       /* nservices, rebuilt by state_build */
	struct plan_dest *want_dests;    /* nservices * nrelays */
	struct plan_vip *vips;
	size_t nvips;
	SSL_CTX **tls; /* per service, checks.c: NULL where the check has no TLS */
	const struct mailplex_conf_relay **relays; /* nrelays: the config's, then joined ones */
	const struct member_relay **joined;        /* nrelays: NULL for the config's */
};

/* ---- keepalived's view, from its notify FIFO (vrrp.c) ---- */

#define VRRP_INSTANCES_MAX 16
#define VRRP_NAME_MAX      64
#define VRRP_LINE_MAX      256

enum vrrp_state { VRRP_UNKNOWN, VRRP_BACKUP, VRRP_MASTER, VRRP_FAULT, VRRP_STOP };

struct vrrp_event {
	char kind[12]; /* "INSTANCE" or "GROUP" */
	char name[VRRP_NAME_MAX];
	enum vrrp_state state;
	int priority; /* -1: not given */
};

struct vrrp_instance {
	char kind[12];
	char name[VRRP_NAME_MAX];
	enum vrrp_state state;
	int priority;
	uint64_t since_ms; /* loop time of the last change */
	uint64_t changes;  /* lines seen for it */
};

struct vrrp_fifo {
	int fd; /* -1: not open */
	char path[1025];
	char buf[VRRP_LINE_MAX];
	size_t len;
	int overlong; /* the current line is being dropped */
	struct vrrp_instance instances[VRRP_INSTANCES_MAX];
	size_t ninstances;
};

struct director {
	struct ev_loop *loop;
	const char *conf_path;
	const char *proc_root; /* "/proc"; tests point it at a fake tree */
	struct mailplex_conf conf;
	struct director_state state;
	struct ipvs *ipvs;
	struct control_server *control;
	struct ev_timer periodic; /* every reconcile_interval */
	struct ev_timer soon;     /* 0 ms: coalesces every change of one loop iteration */
	/* The last kernel dump: for status, and for the health a restart starts from. */
	struct plan_kernel_service *kernel;
	size_t nkernel;
	struct ipvs_timeouts timeouts;
	int timeouts_known;
	uint64_t last_pass_ms; /* loop time of the last pass, 0: none yet */
	size_t last_ops;
	size_t last_failed;
	char last_error[IPVS_ERROR_MAX]; /* why the last pass could not run; "" if it ran */
	struct vrrp_fifo vrrp;
	/* Sync daemons the kernel runs, from the last pass (reconcile_sync). */
	struct ipvs_daemon sync[2];
	size_t nsync;
	char sync_error[IPVS_ERROR_MAX]; /* "" if the last check of them went through */
	struct director_membership members;
	struct director_mapserve mapserve;
};

/* ---- state.c ---- */

/* Semantic checks the schema cannot express; 0, or -1 with err ("service smtp: ..."). */
int state_conf_check(const struct mailplex_conf_director *conf, char *err, size_t errlen);
/* Every member starts unhealthy and undrained. 0, or -1 (ENOMEM). */
int state_init(struct director_state *st, const struct mailplex_conf_director *conf);
/* The same with joined relays after the config's (they must outlive st). */
int state_init_joined(struct director_state *st, const struct mailplex_conf_director *conf,
                      struct member_relay *const *joined, size_t njoined);
/* Healthy, not drained by the operator, not leaving, offered: in IPVS with its weight. */
int state_member_wanted(const struct director_member *m);
void state_free(struct director_state *st);
struct director_member *state_member(struct director_state *st, size_t s, size_t r);
/* Index by name, or -1. */
int state_service_index(const struct director_state *st, const char *name);
int state_relay_index(const struct director_state *st, const char *name);
/*
 * Operator drain (on = 1) or undrain of a relay in one service (service NULL: all).
 * Returns how many members changed, or -1 with err when a name is unknown.
 */
int state_set_drained(struct director_state *st, const char *relay, const char *service, int on,
                      char *err, size_t errlen);
/* A member's health, the kernel's view and a reload's hand-over. */
void state_note_kernel(struct director_state *st, const struct plan_kernel_service *have,
                       size_t nhave);
/* Members the kernel holds with a weight start healthy: a restart keeps what is there. */
void state_health_from_kernel(struct director_state *st);
/* Carries health, drains and deadlines from old to st for members with the same names. */
void state_carry(struct director_state *st, const struct director_state *old);
/* Fills want/vips for plan_build; starts the drain deadline of members that turned. */
void state_build(struct director_state *st, uint64_t now_ms);
/* The IPVS identity of a service and a relay's destination in it. */
void state_service_ipvs(const struct mailplex_conf_service *svc, struct ipvs_service *out);
void state_dest_ipvs(const struct mailplex_conf_service *svc,
                     const struct mailplex_conf_relay *relay, struct ipvs_dest *out);
/* "active", "adding", "draining", "drained", "left" or "down". */
const char *state_member_label(const struct director_member *m);

/* ---- reconcile.c ---- */

/* Dump the kernel, plan, apply, log one line per op. 0, or -1 if the pass could not run. */
int reconcile_run(struct director *d);
/* A pass on the next loop iteration; several calls before it make one pass. */
void reconcile_soon(struct director *d);
/* Dump only (no change): at start and for status. 0, or -1 with d->last_error. */
int reconcile_dump(struct director *d);
void reconcile_kernel_free(struct director *d);
/* Starts the configured sync daemons the kernel lacks; never stops one. */
void reconcile_sync(struct director *d);
/* The health keepalived tracks: 1 when a pass ran and its dump and plan went through. */
int director_healthy(const struct director *d);

/* ---- members.c ---- */

/*
 * What an authentic datagram does to the table; reply_code gets the answer (REPLY code).
 * JOIN adds or refreshes (refused: a name or address the config or another relay holds,
 * or a full table); HEARTBEAT refreshes (REJOIN when unknown); LEAVE marks it leaving.
 * Returns MEMBERS_* flags. No I/O: the caller rebuilds the state and replies.
 */
int members_apply(struct director_membership *mb, const struct mailplex_conf_director *conf,
                  const struct cluster_msg *m, uint64_t now_ms, uint8_t *reply_code, char *why,
                  size_t whylen);
/* Marks relays silent for dead_after as leaving; returns how many turned. */
size_t members_sweep_dead(struct director_membership *mb, uint64_t now_ms, uint64_t dead_after_ms);
/* 1 when the kernel (as of the last dump) holds the relay in some service. */
int members_held(const struct director_state *st, const char *name);
/*
 * Marks gone the relays that left or fell silent and that the kernel no longer holds in
 * any service (not those merely not ready: they still heartbeat); returns how many.
 */
size_t members_forget(struct director_membership *mb, const struct director_state *st);
void members_clear(struct director_membership *mb);
/* Reload: marks gone the joined relays a new config lists by name or address. */
size_t members_yield(struct director_membership *mb, const struct mailplex_conf_director *conf);
/* Undoes the marks of a reload that failed. */
void members_unyield(struct director_membership *mb);
/* The relays not marked gone, in out (MEMBERS_MAX); returns how many. */
size_t members_live(const struct director_membership *mb, struct member_relay **out);
/* Frees the relays marked gone; only once no state points at them. */
void members_reap(struct director_membership *mb);
/* Opens the UDP socket and loads the key when cluster_listen is set. 0, or -1 with err. */
int members_open(struct director *d, char *err, size_t errlen);
void members_close(struct director *d);
/* A state for the current config and membership, carrying health from the running one. */
int members_state_rebuild(struct director *d, char *err, size_t errlen);
/*
 * During rejoin_grace after a start: a copy of the kernel's table without the destinations
 * of wanted services that no relay claims, so the plan leaves them as they are. Returns
 * how many it hid (0: *out NULL, plan from the kernel's table), or -1 (ENOMEM).
 */
int members_grace_filter(const struct director *d, struct plan_kernel_service **out,
                         size_t *nout);
void members_grace_free(struct plan_kernel_service *ks, size_t n);
void members_status(struct director *d, struct control_reply *r);
/*
 * One word for where a joined relay stands: "admitted" (in the pool as far as membership
 * goes), "draining" (it sent LEAVE), "not-ready" (its agent says so) or "silent" (no
 * heartbeat for relay_dead_after).
 */
const char *members_state_word(const struct member_relay *r);

/* ---- mapserve.c ---- */

/* Publishes an existing map.db and listens on map_listen (after members_open). 0, or -1. */
int mapserve_open(struct director *d, char *err, size_t errlen);
void mapserve_close(struct director *d);
/* Compiles map.source into map.db and publishes it; the reply says what happened. */
int mapserve_publish(struct director *d, struct control_reply *r);
/* The version heartbeat replies offer: the published one when map_listen serves it, or 0. */
uint64_t mapserve_offered(const struct director *d);
void mapserve_status(struct director *d, struct control_reply *r);
/*
 * map-status: "published N", then per relay "relay NAME map_installed N map_in_force N
 * state STATE" (members_state_word, or "static" for a relay the config lists: it sends no
 * heartbeat, both versions are 0).
 */
void mapserve_map_status(struct director *d, struct control_reply *r);

/* ---- checks.c ---- */

/* One hc_check per member of st, initially up where the member is healthy. */
int checks_start(struct director *d, struct director_state *st, char *err, size_t errlen);
void checks_stop(struct director_state *st);
/*
 * For a new state of the same config (a relay joined or was forgotten): members that were
 * in old keep their running check, with its rise/fall count, instead of the fresh one
 * checks_start gave them. Call after checks_start(st) succeeded, before checks_stop(old).
 */
void checks_carry(struct director_state *st, struct director_state *old);

/* ---- sysctl.c ---- */

typedef void sysctl_warn_fn(void *arg, const char *msg);
/* Reads a sysctl ("net.ipv4.ip_forward") under proc_root; 0, or -1 with errno. */
int sysctl_read(const char *proc_root, const char *name, long *value);
/* One warning per missing setting the configured services need; returns how many. */
size_t sysctl_check(const char *proc_root, const struct mailplex_conf_director *conf,
                    sysctl_warn_fn *warn, void *arg);
/* Sets the IPVS tcp/tcpfin timeouts from the config; logs old -> new. 0, or -1. */
int sysctl_timeouts_apply(struct director *d);

/* ---- vrrp.c ---- */

const char *vrrp_state_name(enum vrrp_state s);
/*
 * Writes the keepalived.conf for conf to out; exe and conf_path (absolute) make the
 * track_script's command. 0, or -1 with err (no VRRP interface, no VIP, a path keepalived
 * cannot quote).
 */
int vrrp_keepalived_conf(FILE *out, const struct mailplex_conf_director *conf, const char *exe,
                         const char *conf_path, char *err, size_t errlen);
/* One notify line without its newline; 0, or -1 if it is not an instance/group state. */
int vrrp_line_parse(const char *line, size_t len, struct vrrp_event *ev);
/* Bytes as read from the FIFO: complete lines update f->instances and log changes. */
void vrrp_fifo_feed(struct vrrp_fifo *f, const char *data, size_t n, uint64_t now_ms);
/* Creates (mkfifo) and watches the FIFO when VRRP is configured. 0, or -1 with err. */
int vrrp_fifo_open(struct director *d, char *err, size_t errlen);
void vrrp_fifo_close(struct director *d);

/* ---- control.c ---- */

enum director_cmd_type {
	DIRECTOR_CMD_STATUS,
	DIRECTOR_CMD_DRAIN,
	DIRECTOR_CMD_UNDRAIN,
	DIRECTOR_CMD_HEALTH,
	DIRECTOR_CMD_MAP_PUBLISH,
	DIRECTOR_CMD_MAP_STATUS,
};

struct director_cmd {
	enum director_cmd_type type;
	const char *relay;   /* DRAIN, UNDRAIN */
	const char *service; /* NULL: every service */
};

/* Validates words and counts; no side effect. 0, or -1 with err. */
int director_cmd_parse(const struct control_request *req, struct director_cmd *cmd, char *err,
                       size_t errlen);
void director_control_handle(const struct control_request *req, struct control_reply *reply,
                             void *arg);
void director_status(struct director *d, struct control_reply *r);

#endif
