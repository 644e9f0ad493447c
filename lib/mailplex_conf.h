/*
 * The schema and struct of /etc/mailplex/mailplex.conf, shared by every program. A new
 * section is a new struct member here and a new table in mailplex_conf.c; the loading,
 * checking and error wording stay in conf.c.
 */
#ifndef MAILPLEX_MAILPLEX_CONF_H
#define MAILPLEX_MAILPLEX_CONF_H

#include <stdint.h>

#include "conf.h"

#define MAILPLEX_CONF_PATH MAILPLEX_SYSCONFDIR "/mailplex.conf"

struct mailplex_conf_map {
	char *source;             /* text source compiled by mailplex-map */
	char *db;                 /* compiled GDBM file readers open */
	uint64_t reload_check_ms; /* how often readers look for a new inode */
};

/* Same order as the names in mailplex_conf.c. */
enum mailplex_fwd {
	MAILPLEX_FWD_DR = 0,
	MAILPLEX_FWD_NAT,
	MAILPLEX_FWD_TUN,
};

enum mailplex_check_type {
	MAILPLEX_CHECK_TCP = 0,
	MAILPLEX_CHECK_SMTP,
	MAILPLEX_CHECK_SMTPS,
	MAILPLEX_CHECK_IMAP,
	MAILPLEX_CHECK_IMAPS,
	MAILPLEX_CHECK_POP3,
	MAILPLEX_CHECK_POP3S,
};

/* How the director health-checks one service on every relay. */
struct mailplex_conf_check {
	int type; /* enum mailplex_check_type */
	int starttls;
	uint64_t interval_ms;
	uint64_t timeout_ms;
	int64_t rise;
	int64_t fall;
	int verify;        /* verify the relay's certificate */
	char *ca_file;     /* NULL: the system's trust store */
	int64_t cert_days; /* WARNING when the certificate expires sooner; 0: off */
	char *helo;
};

/* One virtual service: VIP:port balanced over every relay that passes its check. */
struct mailplex_conf_service {
	char *name;
	struct conf_address vip; /* IP literal and port */
	char *scheduler;
	int forwarding;          /* enum mailplex_fwd */
	uint64_t persistence_ms; /* 0: none */
	int64_t relay_port;      /* 0: the VIP's port (required for DR and TUN) */
	struct mailplex_conf_check check;
};

/* A relay listed statically (relays may also join at run time). */
struct mailplex_conf_relay {
	char *name;
	struct conf_ip address;
	int64_t weight;
};

/* keepalived VRRPv3 for the VIPs (mailplex-director --keepalived-conf). */
struct mailplex_conf_vrrp {
	char *interface;    /* NULL: no VRRP configured */
	int64_t router_id;  /* virtual_router_id, shared by both directors */
	int64_t priority;   /* the higher one is master */
	uint64_t advert_ms; /* VRRPv3: centiseconds, 10 ms .. 40.95 s */
	int preempt;        /* a returning higher priority takes the VIPs back */
	char *fifo;         /* vrrp_notify_fifo the director reads */
};

/* IPVS connection sync: a master and a backup daemon on every director. */
struct mailplex_conf_sync {
	char *interface;     /* NULL: the director runs no sync daemons */
	int64_t syncid;      /* this director's master daemon */
	int64_t peer_syncid; /* the peer's master, followed by our backup; 0: any */
};

struct mailplex_conf_director {
	char *control;                /* control socket path */
	struct mailplex_conf_vrrp vrrp;
	struct mailplex_conf_sync sync;
	uint64_t reconcile_ms;        /* full kernel-table comparison at least this often */
	uint64_t drain_timeout_ms;    /* a drained relay is deleted after this at the latest */
	uint64_t ipvs_tcp_timeout_ms; /* IMAP IDLE: RFC 2177 clients stay silent 29 min */
	uint64_t ipvs_tcpfin_timeout_ms;
	struct conf_list services; /* struct mailplex_conf_service */
	struct conf_list relays;   /* struct mailplex_conf_relay */
	/* Membership: relays that join with mailplex-relay (lib/cluster_msg.h). */
	char *cluster_listen;        /* UDP "host:port" for JOIN/HEARTBEAT/LEAVE; NULL: none */
	char *cluster_key;           /* hex key file, owner-only */
	uint64_t cluster_window_ms;  /* accepted clock difference, and the replay memory */
	uint64_t relay_dead_after_ms; /* no heartbeat for this long: drain the joined relay */
	uint64_t rejoin_grace_ms;    /* after a start, unclaimed kernel entries stay this long */
	char *map_listen;            /* TCP "host:port" serving the published map; NULL: none */
};

/* How the proxy tells a back end the client's address; same order as the names. */
enum mailplex_client_addr {
	MAILPLEX_CLIENT_ADDR_NONE = 0,
	MAILPLEX_CLIENT_ADDR_PROXY_V2, /* PROXY protocol v2 header before anything else */
	MAILPLEX_CLIENT_ADDR_ID,       /* IMAP ID x-originating-*, POP3 XCLIENT */
};

/* mailplex-proxy: the POP3/IMAP4 proxy on every relay node. */
struct mailplex_conf_proxy {
	struct conf_strlist imap;  /* "host:port" listeners, IMAP with STARTTLS */
	struct conf_strlist imaps; /* implicit TLS */
	struct conf_strlist pop3;  /* POP3 with STLS */
	struct conf_strlist pop3s;
	int64_t workers; /* 0: one per online CPU */
	char *tls_cert;  /* PEM chain; NULL: no STARTTLS/STLS and no imaps/pop3s */
	char *tls_key;
	char *tls_ciphers;         /* TLS 1.2 cipher list; NULL: OpenSSL's default */
	int allow_plaintext_login; /* LOGIN/USER/AUTH before TLS */
	char *control;             /* control socket path */
	uint64_t line_max;         /* longest pre-login command line */
	uint64_t literal_max;      /* largest IMAP literal before login */
	uint64_t prelogin_timeout_ms;
	uint64_t idle_timeout_ms;        /* after login: >= 30 min for IMAP IDLE (RFC 2177) */
	int64_t login_failures_max;      /* per connection; the connection closes after that */
	uint64_t login_failure_delay_ms; /* doubles with each failure */
	int64_t max_connections;         /* per worker process */
	int64_t max_connections_per_ip;  /* per worker process */
	uint64_t backend_connect_timeout_ms;
	uint64_t backend_login_timeout_ms;
	uint64_t backend_down_ms;     /* first down time after a failed connect; doubles */
	uint64_t backend_down_max_ms; /* ceiling of the down time */
	int backend_tls_verify;       /* verify back-end certificates (tls=on|implicit) */
	char *backend_ca_file;        /* NULL: the system's trust store */
	int backend_client_address;   /* enum mailplex_client_addr */
};

/* mailplex-smtpd: the inbound SMTP receivers, the spool and the queue runner. */
struct mailplex_conf_smtpd {
	struct conf_strlist listen; /* "host:port" listeners; default "*:25" */
	char *hostname;             /* banner, EHLO and Received:; NULL: gethostname() */
	int64_t workers;            /* receiver processes; 0: one per online CPU */
	char *spool;                /* spool directory, owned by the unprivileged user */
	char *control;              /* receivers serve control.N, N = worker index */
	char *tls_cert;             /* PEM chain; NULL: no STARTTLS */
	char *tls_key;
	char *tls_ciphers;               /* TLS 1.2 cipher list; NULL: OpenSSL's default */
	uint64_t max_message_size;       /* SIZE announced and enforced (bytes) */
	int64_t max_recipients;          /* per message (RFC 5321 4.5.3.1.8: at least 100) */
	int64_t max_connections;         /* per worker process */
	int64_t max_connections_per_ip;  /* per worker process */
	uint64_t error_delay_ms;         /* pause before answering after each error reply */
	int64_t max_errors;              /* errors in one session before it is closed */
	uint64_t greeting_timeout_ms;    /* RFC 5321 4.5.3.2: the server's command timeout */
	uint64_t command_timeout_ms;     /* RFC 5321 4.5.3.2.7: at least 5 minutes */
	uint64_t data_timeout_ms;        /* RFC 5321 4.5.3.2.6: between DATA blocks, 3 min */
	int verify_recipients;           /* RCPT-time check against the recipient's back end */
	uint64_t verify_timeout_ms;      /* one verification: connect + LHLO/EHLO + RCPT */
	uint64_t verify_cache_positive_ms;
	uint64_t verify_cache_negative_ms;
	/* the queue runner's keys */
	uint64_t queue_min_backoff_ms;
	uint64_t queue_max_backoff_ms;
	uint64_t queue_lifetime_ms;      /* then a bounce (RFC 3464) */
	int64_t backend_concurrency;     /* deliveries in flight per back end */
	uint64_t delivery_timeout_ms;    /* one delivery attempt, connect to final reply */
	char *queue_control;             /* the queue runner's control socket */
	char *bounce_relay;              /* "ip:port" SMTP smarthost for bounces to foreign
	                                    senders; NULL: such bounces are logged and dropped */
	int backend_tls_verify;          /* verify back ends with tls=on|implicit (delivery) */
	char *backend_ca_file;           /* NULL: the system's trust store */
};

/* mailplex-relay: the node agent that joins this relay to the directors' pool. */
struct mailplex_conf_relay_agent {
	char *name;                 /* the node's name in the pool; NULL: the host name */
	struct conf_ip address;     /* where the directors send traffic and checks */
	int64_t weight;
	struct conf_strlist directors; /* "host:port" of every director's cluster_listen */
	uint64_t heartbeat_ms;
	char *key;                     /* the cluster key file, as the directors' */
	struct conf_strlist services;  /* "name" or "name:port", as the directors name them */
	char *smtpd_control;           /* NULL: readiness does not ask mailplex-smtpd */
	char *proxy_control;           /* NULL: readiness does not ask mailplex-proxy */
	char *spool;                   /* NULL: no free-space test */
	uint64_t spool_min_free;       /* bytes */
	struct conf_strlist dr_vips;   /* put on lo as /32 (/128) with the ARP sysctls for DR */
	uint64_t stop_timeout_ms;      /* at stop, wait this long at most for the drain to end */
	int64_t map_port;              /* each director's map_listen port */
	uint64_t map_max_lag_ms;       /* behind the directors' map longer: report not ready */
};

/* Same order as the names in mailplex_conf.c. */
enum mailplex_move_mode {
	MAILPLEX_MOVE_CLUSTER = 0, /* on a director: publish through its control socket */
	MAILPLEX_MOVE_LOCAL,       /* one relay host without directors: compile map.db here */
};

/* mailplexctl move: a user's mailbox moved between back ends. */
struct mailplex_conf_move {
	int mode;                    /* enum mailplex_move_mode */
	char *state_dir;             /* one state file and one lock per move */
	char *copy_command;          /* /bin/sh -c, with MAILPLEX_* in its environment */
	uint64_t copy_timeout_ms;    /* then the copy is killed and the step fails */
	char *master_user;           /* the back ends' master user (copy and verify) */
	char *master_password_file;  /* its password, first line; never logged */
	uint64_t barrier_timeout_ms; /* wait this long for every daemon to use the new map */
	int64_t concurrency;         /* moves in parallel with --batch */
	int verify;                  /* compare message counts per folder after the copy */
	uint64_t imap_timeout_ms;    /* one verify connection, every read and write */
};

struct mailplex_conf {
	int log_level; /* enum log_level */
	char *user;    /* unprivileged user daemons drop to */
	struct mailplex_conf_map map;
	struct mailplex_conf_director director;
	struct mailplex_conf_proxy proxy;
	struct mailplex_conf_smtpd smtpd;
	struct mailplex_conf_relay_agent relay;
	struct mailplex_conf_move move;
};

extern const struct conf_schema mailplex_conf_schema;

/* path NULL: MAILPLEX_CONF_PATH. See conf_load_file for the contract. */
int mailplex_conf_load(const char *path, struct mailplex_conf *conf, char *err, size_t errlen);
int mailplex_conf_load_string(const char *text, const char *name, struct mailplex_conf *conf,
                              char *err, size_t errlen);
void mailplex_conf_free(struct mailplex_conf *conf);

#endif
