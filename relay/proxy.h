/*
 * mailplex-proxy's shared types: the per-worker context, one client session with its
 * back-end connection, and the entry points between the proxy's files. Internal to
 * relay/proxy_*.c; nothing outside the proxy includes it.
 */
#ifndef MAILPLEX_PROXY_H
#define MAILPLEX_PROXY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "event.h"
#include "imap_cmd.h"
#include "ipcount.h"
#include "linebuf.h"
#include "mailplex_conf.h"
#include "map.h"
#include "pop3_cmd.h"
#include "sock.h"

#define PROXY_PIPE_BUF_BYTES    16384 /* per direction, allocated while bytes are in flight */
#define PROXY_SPLICE_BYTES      65536 /* a pipe's default capacity (F_SETPIPE_SZ refused) */
#define PROXY_PIPE_BYTES        262144 /* splice pipe asked for with F_SETPIPE_SZ */
#define PROXY_SCRATCH_BYTES     16384 /* per worker: a read that fills it starts a splice pipe */
#define PROXY_PIPE_IDLE_MS      200   /* an empty pipe unused this long is closed */
#define PROXY_BE_LINE_MAX       65536 /* back-end greeting and login reply lines */
#define PROXY_CLIENT_OUT_MAX    65536 /* pre-login replies queued before we stop reading */
#define PROXY_FAIL_DELAY_MAX_MS 30000 /* ceiling of the doubled login-failure delay */
#define PROXY_DNS_TTL_MS        60000 /* a back end's resolved addresses are reused this long */
#define PROXY_DNS_NEG_TTL_MS    5000  /* ... and a failed resolution */

enum proxy_proto {
	PROXY_IMAP,
	PROXY_POP3,
};

struct proxy_listener {
	int fd;
	enum proxy_proto proto;
	int implicit_tls;
	char addr[SOCK_ADDR_STRLEN];
};

/* A back end's recent connect failures, so that logins fail fast while it is down. */
struct proxy_be_health {
	char name[MAP_NAME_MAX + 1];
	unsigned fails;
	uint64_t down_until_ms;
	struct proxy_be_health *next;
};


struct proxy_session;
struct control_server;
struct resolver;

/* One per worker process. */
struct proxy_ctx {
	struct ev_loop *loop;
	size_t worker;                  /* index: its control socket is <proxy.control>.<worker> */
	struct control_server *control; /* NULL if it could not be set up */
	const struct mailplex_conf *conf;
	struct map *map;
	SSL_CTX *tls_server; /* NULL: no STARTTLS/STLS, no imaps/pop3s */
	SSL_CTX *tls_client; /* toward back ends with tls=on|implicit */
	struct proxy_listener *listeners;
	size_t nlisteners;
	int accept_paused;
	struct ev_timer accept_timer;
	uint64_t next_id;
	unsigned nsessions;
	struct proxy_session *sessions; /* every live session (status, kick) */
	struct proxy_be_health *health;
	struct resolver *resolver; /* back-end host names; made at the first name */
	struct ipcount ips;
	char *scratch; /* PROXY_SCRATCH_BYTES, shared by every plain session; made at first use */

	/*
	 * The map version every session of this worker agrees with (0: none open): it becomes
	 * a new map's version only once a sweep closed the sessions that map sends elsewhere.
	 */
	uint64_t map_in_force;
	struct ev_timer map_timer; /* every map.reload_check_ms */

	/*
	 * Reload (SIGHUP to the master): which configuration this worker runs, and whether a
	 * newer one took over (no accepting; the worker exits after its last session).
	 */
	unsigned long generation;
	int retiring;
};

/* Bytes queued toward one peer. */
struct proxy_obuf {
	char *data;
	size_t off, len, cap;
};

/* One side of a session: a socket, its TLS session if any, what is queued toward it. */
struct proxy_conn {
	int fd;
	SSL *ssl;
	int events;  /* registered with the loop */
	int rd_want; /* extra readiness the last TLS read asked for (EV_WRITE) */
	int wr_want; /* extra readiness the last TLS write asked for (EV_READ) */
	int eof;     /* the peer closed its sending side */
	struct proxy_obuf out;
	int ready;      /* plain: readiness epoll reported and no EAGAIN or short read since */
	int pipefd[2];  /* splice pipe toward this side, -1 until a bulk transfer needs it */
	size_t inpipe;  /* bytes in pipefd waiting to be written to this side */
	size_t pipecap; /* what pipefd holds at most, as F_SETPIPE_SZ left it */
	int pipe_full;  /* a splice into the non-empty pipe met EAGAIN: wait for it to drain */
	uint64_t pipe_ms; /* last time bytes went into pipefd (ev_now_ms) */
	uint64_t bytes; /* bytes written to this side after login */
};

enum proxy_state {
	PS_CLIENT_TLS,      /* implicit TLS handshake before the greeting */
	PS_PRELOGIN,        /* reading commands */
	PS_CLIENT_STARTTLS, /* STARTTLS/STLS answered; handshake once the answer is out */
	PS_BE_RESOLVE, /* waiting for the back end's host name to resolve */
	PS_BE_CONNECT,
	PS_BE_TLS, /* back-end handshake (implicit, or after STARTTLS) */
	PS_BE_GREETING,
	PS_BE_STARTTLS, /* waiting for the back end's STARTTLS/STLS answer */
	PS_BE_ADDR,     /* telling it the client's address: IMAP ID, POP3 CAPA/XCLIENT */
	PS_BE_LOGIN,    /* login command sent, waiting for its answer */
	PS_FAIL_DELAY,  /* holding a failed login's answer */
	PS_PIPE,        /* logged in: copying bytes */
	PS_CLOSING,     /* flushing the last answer to the client */
	PS_DEAD,
};

struct proxy_session {
	struct proxy_ctx *ctx;
	struct proxy_session *prev, *next;
	uint64_t id;
	enum proxy_state state;
	enum proxy_proto proto;
	const struct proxy_listener *listener;
	char peer[SOCK_ADDR_STRLEN];
	struct sockaddr_storage peer_ss;
	uint64_t start_ms;
	struct ev_timer timer;
	const char *close_reason;

	struct proxy_conn client;
	struct proxy_conn be;

	/* Pre-login only (freed at PS_PIPE). */
	struct linebuf lb;    /* client lines */
	struct linebuf be_lb; /* back-end lines during login */
	struct imap_cmd *imap;
	struct pop3_cmd *pop3;
	int imap_st;              /* the IMAP parser's last status (enum imap_cmd_status) */
	struct sasl_creds *creds; /* copied from the parser for the back-end login */
	char tag[IMAP_TAG_MAX + 1];
	int client_tls; /* TLS is up toward the client */
	unsigned failures;
	char *held_reply; /* PS_FAIL_DELAY: the answer to send when the delay ends */
	int held_close;   /* close after the held answer */

	/* The back end of the login in progress / the session. */
	char user[SASL_USER_MAX + 1];
	char mailbox[MAP_LOCAL_MAX + MAP_DOMAIN_MAX + 2]; /* the map's "local@domain" (kick) */
	char be_name[MAP_NAME_MAX + 1];
	char be_addr[SOCK_ADDR_STRLEN];
	char be_host[MAP_HOST_MAX]; /* as the map names it: SNI and certificate check */
	uint16_t be_port;
	unsigned be_try; /* which of the name's addresses is being connected to */
	enum map_tls be_tls;
	int be_literal_plus; /* the greeting advertised LITERAL+ */
	int be_xclient;      /* POP3: its CAPA listed XCLIENT */
	int be_step;         /* position inside the login exchange */
	int be_unconfirmed;  /* connect not yet known to have worked: the first read tells */
};

/* proxy_session.c */
void proxy_session_new(struct proxy_ctx *ctx, int fd, const struct proxy_listener *l,
                       const struct sockaddr_storage *peer);
void proxy_session_run(struct proxy_session *s);
void proxy_session_set_state(struct proxy_session *s, enum proxy_state st);
/* Restarts the session's timer: its state's timeout, ms from now. */
void proxy_session_rearm(struct proxy_session *s, uint64_t ms);
void proxy_session_close(struct proxy_session *s, const char *reason);
void proxy_session_login_result(struct proxy_session *s, int ok, int auth_failure, const char *line,
                                size_t len);
void proxy_session_temp_fail(struct proxy_session *s, const char *why);
const char *proxy_state_name(enum proxy_state st);

/* proxy_backend.c */
void proxy_backend_start(struct proxy_session *s, const struct map_endpoint *ep, const char *name,
                         enum map_tls tls);
int proxy_backend_step(struct proxy_session *s);
/* PS_BE_CONNECT: the readiness to wait for, and what to do when it is reported. */
int proxy_backend_connect_events(const struct proxy_session *s);
void proxy_backend_connect_done(struct proxy_session *s);
void proxy_backend_timeout(struct proxy_session *s);
int proxy_backend_is_down(struct proxy_ctx *ctx, const char *name);

/* proxy_pipe.c: the I/O of one side, and the copy after login */
void proxy_conn_init(struct proxy_conn *c);
void proxy_conn_tls_lean(SSL *ssl);
void proxy_conn_close(struct proxy_ctx *ctx, struct proxy_conn *c);
int proxy_obuf_add(struct proxy_obuf *b, const void *data, size_t len);
int proxy_obuf_vprintf(struct proxy_obuf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
int proxy_obuf_printf(struct proxy_obuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void proxy_obuf_free(struct proxy_obuf *b);
/* Writes what is queued: 1 progress, 0 nothing possible now, -1 error. */
int proxy_conn_flush(struct proxy_conn *c);
/*
 * Reads up to len bytes: > 0, 0 EOF, -1 error, -2 nothing now. A plain socket is read only
 * while ready says EV_READ: its owner must keep EV_READ registered while it wants bytes.
 */
ssize_t proxy_conn_read(struct proxy_conn *c, void *buf, size_t len);
/* One handshake step: 0 done, 1 in progress, -1 failed (err set). */
int proxy_conn_handshake(struct proxy_conn *c, char *err, size_t errlen);
/* Copies in both directions: 1 progress, 0 none, -1 error or both done (reason set). */
int proxy_pipe_step(struct proxy_session *s, const char **reason);
void proxy_pipe_events(struct proxy_session *s, int *cev, int *bev);
void proxy_pipe_start(struct proxy_session *s);

/* proxy_control.c */
int proxy_mailbox_key(struct map *map, const char *user, char *key, size_t len, char *err,
                      size_t errlen);
int proxy_control_start(struct proxy_ctx *ctx, char *err, size_t errlen);
void proxy_control_retire(struct proxy_ctx *ctx);
void proxy_control_stop(struct proxy_ctx *ctx);

/* proxy_mapsweep.c: notices a new map and sweeps the sessions it moves (map_in_force). */
void proxy_map_watch_start(struct proxy_ctx *ctx);
void proxy_map_watch_stop(struct proxy_ctx *ctx);
void proxy_map_check(struct proxy_ctx *ctx);

/* proxy_listen.c */
int proxy_listeners_start(struct proxy_ctx *ctx);
void proxy_listeners_stop(struct proxy_ctx *ctx);
void proxy_accept_resume(struct proxy_ctx *ctx);

#endif
