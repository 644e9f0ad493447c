/*
 * The queue runner's shared types: the runner context, one queued message with its
 * delivery state, one back end with its connections and waiting jobs, one delivery job
 * (the recipients of one message that go to one back end). Internal to relay/queue_*.c;
 * the public face is queue.h.
 */
#ifndef MAILPLEX_QUEUE_RUNNER_H
#define MAILPLEX_QUEUE_RUNNER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "control.h"
#include "event.h"
#include "linebuf.h"
#include "mailplex_conf.h"
#include "map.h"
#include "queue_body.h"
#include "queue_reply.h"
#include "queue_state.h"
#include "sock.h"
#include "spool.h"
#include "spool_fsync.h"

#define QUEUE_TICK_MS         1000  /* due messages are looked for this often */
#define QUEUE_SCAN_MS         60000 /* full scan of queue/ besides inotify */
#define QUEUE_ACTIVE_MAX      200   /* messages in delivery at once (memory, descriptors) */
#define QUEUE_CONN_IDLE_MS    10000 /* an idle back-end connection is closed after this */
#define QUEUE_DNS_TTL_MS      60000 /* a back end's resolved addresses are reused this long */
#define QUEUE_DNS_NEG_TTL_MS  5000  /* ... and a failed resolution */
#define QUEUE_CONN_OUT_MAX    65536 /* body bytes buffered towards a back end */
#define QUEUE_BODY_CHUNK      16384 /* read from the queue file at a time */
#define QUEUE_SHOW_HEADER_MAX 4096  /* queue show: header bytes shown at most */
#define QUEUE_BOUNCE_RELAY    "bounce-relay" /* the back-end name of smtpd.bounce_relay */

struct queue_ctx;
struct queue_backend;

/* Queue ids whose state log goes once the removal of their queue file is durable. */
struct queue_qids {
	char (*v)[SPOOL_QID_MAX + 1];
	size_t n, cap;
};

/* Per recipient, what the runner knows beyond the log: where it was last sent. */
struct queue_rcpt_route {
	char backend[MAP_NAME_MAX + 1]; /* the map's back end at the last attempt */
	int in_job;                     /* part of a job now */
};

struct queue_msg {
	struct queue_msg *next;
	char qid[SPOOL_QID_MAX + 1];
	struct spool_envelope env;
	off_t body_off;
	uint64_t size;         /* bytes of the queue file */
	struct queue_state st; /* replayed from state/QID, kept in step with it */
	struct queue_rcpt_route *route;
	int fd;            /* queue/QID while an attempt runs, else -1 */
	unsigned int jobs; /* jobs of the running attempt not finished */
	int active;        /* an attempt runs */
	int deleted;       /* delete asked while active: removed when it ends */
	int removed;       /* files gone; freed before the loop sleeps, so that no
	                      walk of the list meets a freed message */
	int has_log;       /* state/QID exists (created by the first record) */
	uint64_t attempt_start_ms;
	uint64_t attempt_map_version; /* the map the running attempt was routed with */
};

/* One message's recipients for one back end, in one LMTP/SMTP transaction. */
struct queue_job {
	struct queue_job *next;
	struct queue_msg *msg;
	struct queue_backend *be;
	size_t n;
	size_t *idx;                         /* recipient indexes into msg->env.rcpt */
	int *accepted;                       /* per idx: RCPT got 2xx (a reply after DATA is due) */
	char (*reply)[QUEUE_REPLY_TEXT_MAX]; /* per idx: the reply that decided it */
	enum queue_rcpt_state *result;       /* per idx: delivered, failed or pending */
};

enum queue_conn_state {
	QC_CONNECTING,
	QC_GREETING,
	QC_HELO,
	QC_STARTTLS,
	QC_TLS_HANDSHAKE,
	QC_HELO_TLS,
	QC_IDLE,
	QC_RSET,
	QC_MAIL,
	QC_RCPT,
	QC_DATA,
	QC_BODY,
	QC_DOT,
	QC_QUIT,
	QC_DEAD,
};

struct queue_conn {
	struct queue_conn *next;
	struct queue_backend *be;
	enum queue_conn_state state;
	int fd;
	unsigned addr_try; /* which of the host's addresses fd is connected (connecting) to */
	int io_events;     /* what the loop watches fd for: ev_io_set on change only */
	SSL *ssl;
	int want_write; /* TLS wants writability to go on */
	struct linebuf in;
	char *out;
	size_t out_len, out_off;
	struct queue_reply reply;
	struct ev_timer timer;
	unsigned int ext; /* QUEUE_EXT_* of the LHLO/EHLO reply */
	int used;         /* a transaction may be open: RSET before the next */
	struct queue_job *job;
	size_t rcpt_pos;           /* RCPT sent for job->idx[rcpt_pos] */
	size_t naccepted, dot_pos; /* LMTP: accepted recipients, replies read after DATA */
	off_t body_pos;
	struct queue_body_enc body; /* dot-stuffing state across chunks */
	char addr[SOCK_ADDR_STRLEN];
};

struct queue_backend {
	struct queue_backend *next;
	struct queue_ctx *ctx;
	char name[MAP_NAME_MAX + 1];
	enum map_deliver_proto proto;
	char host[MAP_HOST_MAX];
	uint16_t port;
	enum map_tls tls;
	struct queue_conn *conns;
	unsigned int nconns;
	struct queue_job *wait_head, *wait_tail;
	int resolving; /* host's lookup is out: its waiting jobs wait for the answer */
};

struct queue_ctx {
	const struct mailplex_conf *conf;
	struct mailplex_conf *own_conf; /* loaded by a SIGHUP reload; NULL: the caller's */
	const char *conf_path;
	struct ev_loop *loop;
	struct map *map;
	struct spool *spool;
	struct resolver *resolver; /* back ends named by host name (made at first use) */
	char queue_dir[4096];
	char state_dir[4096];
	char hostname[256];
	int inotify_fd;
	struct ev_timer tick;
	struct ev_timer scan;
	struct queue_msg *msgs;
	unsigned int nactive;
	int starved;  /* the last tick left due messages for want of QUEUE_ACTIVE_MAX slots */
	int removals; /* queue/ files unlinked since the last fsync of queue/ started */
	/*
	 * That fsync runs on a thread (spool_fsync.h) so that deliveries go on meanwhile; one
	 * at a time. rm_wait: state logs for the next one, rm_sync: for the one out.
	 */
	struct spool_fsync *fsync; /* NULL: on the loop */
	struct spool_fsync_job rm_job;
	int rm_syncing;
	struct queue_qids rm_wait, rm_sync;
	struct queue_backend *backends;
	struct queue_conn *dead; /* closed connections, freed before the loop sleeps */
	SSL_CTX *tls_client;
	struct control_server *control;
	int have_bounce_relay;
	char bounce_relay_host[SOCK_HOST_MAX];
	uint16_t bounce_relay_port;
};

/* queue_conn.c: hands a job to the back end (starts or reuses a connection as allowed). */
void queue_backend_submit(struct queue_ctx *ctx, struct queue_job *job);
/* Closes every connection (shutdown); their jobs finish as deferred. */
void queue_backend_close_all(struct queue_ctx *ctx);

/* queue_runner.c: a job's recipients are decided; records them and frees the job. */
void queue_job_done(struct queue_ctx *ctx, struct queue_job *job);
void queue_job_free(struct queue_job *job);
struct queue_msg *queue_msg_find(struct queue_ctx *ctx, const char *qid);
/* Appends records to state/QID and fsyncs; -1 logged. */
int queue_msg_record(struct queue_ctx *ctx, struct queue_msg *m, const char *recs, size_t len);
/* Removes queue/QID and state/QID (or marks it for removal when its attempt ends). */
void queue_msg_delete(struct queue_ctx *ctx, struct queue_msg *m, const char *why);
/* Next look for due messages at once (flush, a new message). */
void queue_kick(struct queue_ctx *ctx);
const char *queue_rcpt_state_name(enum queue_rcpt_state s);
/*
 * The oldest map version a running attempt was routed with, or the open map's when none
 * runs: no delivery routed by an older map can still be under way (mailbox moves).
 */
uint64_t queue_map_in_force(const struct queue_ctx *ctx);

/* queue_control.c */
void queue_control_handle(const struct control_request *req, struct control_reply *reply,
                          void *arg);

#endif
