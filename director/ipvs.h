/*
 * The director's client of kernel IPVS over generic netlink: services, destinations,
 * timeouts, sync daemons and their counters, one socket, requests pipelined and matched
 * to their ACKs by sequence number. It never flushes the table, never blocks without a
 * timeout, and reports every failure with the kernel's errno and a message in IPVS terms.
 */
#ifndef MAILPLEX_IPVS_H
#define MAILPLEX_IPVS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define IPVS_SCHED_NAME_MAX     16 /* IP_VS_SCHEDNAME_MAXLEN, terminator included */
#define IPVS_IFNAME_MAX         16 /* IP_VS_IFNAME_MAXLEN, terminator included */
#define IPVS_ERROR_MAX          160
#define IPVS_TIMEOUT_MS_DEFAULT 2000
/* A dump larger than this is refused rather than grown without end. */
#define IPVS_DUMP_MAX_ENTRIES (1u << 20)

/* Forwarding methods: the kernel's IP_VS_CONN_F_* values. */
enum ipvs_fwd {
	IPVS_FWD_MASQ = 0,  /* NAT */
	IPVS_FWD_LOCAL = 1, /* reported only, for a local real server */
	IPVS_FWD_TUN = 2,
	IPVS_FWD_DR = 3,
};

enum ipvs_daemon_state {
	IPVS_DAEMON_MASTER = 1, /* IP_VS_STATE_MASTER */
	IPVS_DAEMON_BACKUP = 2, /* IP_VS_STATE_BACKUP */
};

/* Every kind of request; a batch result and an error message name the one that failed. */
enum ipvs_op {
	IPVS_OP_OPEN = 0,
	IPVS_OP_INFO_GET,
	IPVS_OP_SERVICE_ADD,
	IPVS_OP_SERVICE_EDIT,
	IPVS_OP_SERVICE_DEL,
	IPVS_OP_SERVICES_DUMP,
	IPVS_OP_DEST_ADD,
	IPVS_OP_DEST_EDIT,
	IPVS_OP_DEST_DEL,
	IPVS_OP_DESTS_DUMP,
	IPVS_OP_TIMEOUTS_GET,
	IPVS_OP_TIMEOUTS_SET,
	IPVS_OP_DAEMON_ADD,
	IPVS_OP_DAEMON_DEL,
	IPVS_OP_DAEMONS_DUMP,
};

union ipvs_addr {
	struct in_addr in;
	struct in6_addr in6;
};

/* code is the errno the kernel (or the transport) gave, 0 on success. */
struct ipvs_error {
	int code;
	char msg[IPVS_ERROR_MAX];
};

/* 64-bit counters and rates (IPVS_*_ATTR_STATS64); filled by dumps only. */
struct ipvs_stats {
	uint64_t conns;
	uint64_t inpkts;
	uint64_t outpkts;
	uint64_t inbytes;
	uint64_t outbytes;
	uint64_t cps;
	uint64_t inpps;
	uint64_t outpps;
	uint64_t inbps;
	uint64_t outbps;
};

struct ipvs_info {
	uint32_t version; /* 0x010201 is 1.2.1 */
	uint32_t conn_tab_size;
};

/*
 * A virtual service, identified by (af, protocol, addr, port) or, when fwmark is not 0,
 * by (af, fwmark). persistence_s > 0 makes it persistent; netmask_len is the prefix
 * that groups persistent clients (0 means the whole address: 32 or 128).
 */
struct ipvs_service {
	int af;            /* AF_INET or AF_INET6 */
	uint16_t protocol; /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP */
	union ipvs_addr addr;
	uint16_t port; /* host order */
	uint32_t fwmark;
	char sched[IPVS_SCHED_NAME_MAX];
	uint32_t flags; /* IP_VS_SVC_F_ONEPACKET, SCHED1..3; never HASHED */
	uint32_t persistence_s;
	uint8_t netmask_len;
	struct ipvs_stats stats;
};

/* A real server of a service. The counts and stats are filled by dumps only. */
struct ipvs_dest {
	int af; /* may differ from the service's only with TUN */
	union ipvs_addr addr;
	uint16_t port;
	enum ipvs_fwd fwd;
	int32_t weight; /* >= 0; 0 takes no new connections (drain) */
	uint32_t u_threshold;
	uint32_t l_threshold;
	uint8_t tun_type;  /* IP_VS_CONN_F_TUNNEL_TYPE_*, TUN only */
	uint16_t tun_port; /* GUE port, host order, TUN only */
	uint16_t tun_flags;
	uint32_t active_conns;
	uint32_t inactive_conns;
	uint32_t persist_conns;
	struct ipvs_stats stats;
};

/* Seconds; on set, a 0 field leaves the kernel's value unchanged. */
struct ipvs_timeouts {
	uint32_t tcp_s;
	uint32_t tcp_fin_s;
	uint32_t udp_s;
};

/* A connection sync daemon; optional fields are sent only when not 0. */
struct ipvs_daemon {
	enum ipvs_daemon_state state;
	char mcast_ifname[IPVS_IFNAME_MAX];
	uint32_t syncid; /* 0..255 */
	uint16_t sync_maxlen;
	uint16_t mcast_port; /* host order */
	uint8_t mcast_ttl;
	int mcast_af; /* 0: the kernel's default group */
	union ipvs_addr mcast_group;
};

struct ipvs;
struct ipvs_batch;

/*
 * Opens the netlink socket and resolves the "IPVS" family once. NULL with err set if the
 * kernel has no IPVS (code EPROTONOSUPPORT) or the socket cannot be made.
 */
struct ipvs *ipvs_open(struct ipvs_error *err);
void ipvs_close(struct ipvs *h);
/* The longest any single wait for the kernel may take; default IPVS_TIMEOUT_MS_DEFAULT. */
void ipvs_set_timeout(struct ipvs *h, int timeout_ms);
int ipvs_family(const struct ipvs *h);

/* All of these return 0, or -1 with err (which may be NULL) filled. */
int ipvs_get_info(struct ipvs *h, struct ipvs_info *info, struct ipvs_error *err);
int ipvs_service_add(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_error *err);
int ipvs_service_edit(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_error *err);
int ipvs_service_del(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_error *err);
int ipvs_dest_add(struct ipvs *h, const struct ipvs_service *svc, const struct ipvs_dest *dest,
                  struct ipvs_error *err);
int ipvs_dest_edit(struct ipvs *h, const struct ipvs_service *svc, const struct ipvs_dest *dest,
                   struct ipvs_error *err);
int ipvs_dest_del(struct ipvs *h, const struct ipvs_service *svc, const struct ipvs_dest *dest,
                  struct ipvs_error *err);
/* *out is a malloc'd array of *n entries (NULL when 0) the caller frees. */
int ipvs_services_dump(struct ipvs *h, struct ipvs_service **out, size_t *n,
                       struct ipvs_error *err);
/* A service that does not exist has no destinations: the kernel dumps it empty. */
int ipvs_dests_dump(struct ipvs *h, const struct ipvs_service *svc, struct ipvs_dest **out,
                    size_t *n, struct ipvs_error *err);
int ipvs_timeouts_get(struct ipvs *h, struct ipvs_timeouts *t, struct ipvs_error *err);
int ipvs_timeouts_set(struct ipvs *h, const struct ipvs_timeouts *t, struct ipvs_error *err);
int ipvs_daemon_add(struct ipvs *h, const struct ipvs_daemon *d, struct ipvs_error *err);
/* Only d->state identifies the daemon to stop. */
int ipvs_daemon_del(struct ipvs *h, const struct ipvs_daemon *d, struct ipvs_error *err);
int ipvs_daemon_dump(struct ipvs *h, struct ipvs_daemon **out, size_t *n, struct ipvs_error *err);

/*
 * Batch mode: queue changes, then send them pipelined (a bounded window in flight) and
 * collect one ACK per op, matched by sequence number. Queue functions return the op's
 * index, or -1 if it could not be queued (invalid arguments or no memory: err says which,
 * the batch stays usable). Commit returns the number of failed ops (0: all applied), or -1
 * if the transport failed (unanswered ops then carry that error). Results stay readable
 * until ipvs_batch_free.
 */
struct ipvs_batch *ipvs_batch_begin(struct ipvs *h);
int ipvs_batch_service_add(struct ipvs_batch *b, const struct ipvs_service *svc,
                           struct ipvs_error *err);
int ipvs_batch_service_edit(struct ipvs_batch *b, const struct ipvs_service *svc,
                            struct ipvs_error *err);
int ipvs_batch_service_del(struct ipvs_batch *b, const struct ipvs_service *svc,
                           struct ipvs_error *err);
int ipvs_batch_dest_add(struct ipvs_batch *b, const struct ipvs_service *svc,
                        const struct ipvs_dest *dest, struct ipvs_error *err);
int ipvs_batch_dest_edit(struct ipvs_batch *b, const struct ipvs_service *svc,
                         const struct ipvs_dest *dest, struct ipvs_error *err);
int ipvs_batch_dest_del(struct ipvs_batch *b, const struct ipvs_service *svc,
                        const struct ipvs_dest *dest, struct ipvs_error *err);
int ipvs_batch_timeouts_set(struct ipvs_batch *b, const struct ipvs_timeouts *t,
                            struct ipvs_error *err);
int ipvs_batch_daemon_add(struct ipvs_batch *b, const struct ipvs_daemon *d,
                          struct ipvs_error *err);
int ipvs_batch_daemon_del(struct ipvs_batch *b, const struct ipvs_daemon *d,
                          struct ipvs_error *err);
int ipvs_batch_commit(struct ipvs_batch *b, struct ipvs_error *err);
size_t ipvs_batch_count(const struct ipvs_batch *b);
enum ipvs_op ipvs_batch_op(const struct ipvs_batch *b, size_t i);
/* The op's outcome: code 0 if applied. NULL if i is out of range. */
const struct ipvs_error *ipvs_batch_result(const struct ipvs_batch *b, size_t i);
void ipvs_batch_free(struct ipvs_batch *b);

/* Pure helpers (no kernel): names and formats for logs and status tables. */
const char *ipvs_op_name(enum ipvs_op op);
const char *ipvs_fwd_name(enum ipvs_fwd fwd); /* "Masq", "Local", "Tunnel", "Route" */
/* "TCP 10.0.0.1:25", "TCP [2001:db8::1]:143", "FWM 7"; -1 if buf is too small. */
int ipvs_service_format(const struct ipvs_service *svc, char *buf, size_t len);
/* "10.0.0.2:25", "[2001:db8::2]:143". */
int ipvs_addr_format(int af, const union ipvs_addr *addr, uint16_t port, char *buf, size_t len);
/* Fills err->msg for op and errno code in IPVS terms ("no such service", ...). */
void ipvs_error_set(struct ipvs_error *err, enum ipvs_op op, int code);

#endif
