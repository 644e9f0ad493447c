/*
 * mailplex-smtpd's receiving side inside one worker process: the worker context, the SMTP
 * session (per-connection state) and its transaction (per-message state, kept apart as
 * OpenSMTPD does), and the functions the worker's files share. The master (smtpd_main.c)
 * only binds, forks and reaps; it never sees a session.
 */
#ifndef MAILPLEX_SMTPD_H
#define MAILPLEX_SMTPD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "control.h"
#include "event.h"
#include "ipcount.h"
#include "linebuf.h"
#include "mailplex_conf.h"
#include "map.h"
#include "smtp_cmd.h"
#include "sock.h"
#include "spool.h"
#include "spool_fsync.h"

#define SMTPD_HOSTNAME_MAX  255
#define SMTPD_LINEBUF_BYTES (16 * 1024) /* command lines and DATA pass through it */
#define SMTPD_OUT_MAX       (64 * 1024) /* replies held: stop reading a client past this */
/*
 * fsync threads per receiver: enough that the files of one group are fsynced together
 * (the journal commits them at once); more only wait in the same commit.
 */
#define SMTPD_FSYNC_THREADS 4

struct smtpd_listener {
	int fd;
	char addr[SOCK_ADDR_STRLEN];
};

enum smtpd_state {
	SS_CMD,     /* waiting for a command (the greeting is out or queued) */
	SS_TLS,     /* STARTTLS: handshake in progress */
	SS_DATA,    /* DATA: body bytes until CRLF.CRLF */
	SS_BDAT,    /* BDAT: bdat_left raw bytes */
	SS_DELAY,   /* an error reply is held for error_delay; input is not read */
	SS_VERIFY,  /* RCPT waits for the back end's answer; input is buffered, not parsed */
	SS_COMMIT,  /* the message is complete; its 250 waits for its fsyncs (file, queue/) */
	SS_CLOSING, /* the last reply goes out, then a lingering close */
	SS_DEAD,
	SS_NSTATES,
};

/* One message being received (MAIL FROM to the final reply). */
struct smtpd_tx {
	int active; /* MAIL FROM accepted */
	char sender[MAP_ADDR_MAX + 1];
	int smtputf8;
	enum smtp_body body;
	struct spool_rcpt *rcpt; /* after alias expansion */
	size_t nrcpt, rcpt_cap;
	size_t rcpt_cmds; /* accepted RCPT commands, for max_recipients */
	struct spool_writer *writer;
	struct smtp_data data;
	uint64_t body_bytes;
	int too_big;
	int failed;      /* the spool refused a write: answer 451/452 at the end */
	int tempfail;    /* failed with a full disk */
	int bdat_failed; /* this BDAT sequence is refused; chunks are read and dropped */
	char qid[SPOOL_QID_MAX + 1];
};

struct smtpd_ctx;
struct smtpd_commit;
struct smtpd_verify;
struct smtpd_verify_cache;

enum smtpd_verify_result {
	SMTPD_VERIFY_OK,      /* the back end accepted the recipient */
	SMTPD_VERIFY_UNKNOWN, /* it refused it with a 5xx */
	SMTPD_VERIFY_TEMP,    /* no answer, a 4xx, a timeout: the recipient is accepted */
};

struct smtpd_session {
	struct smtpd_ctx *ctx;
	struct smtpd_session *prev, *next;
	uint64_t id;
	enum smtpd_state state;
	enum smtpd_state delayed_state; /* SS_DELAY: where to return */
	int fd;
	int io_events; /* what the loop watches fd for: ev_io_set on change only */
	SSL *ssl;
	int tls;                     /* TLS is up */
	int tls_want_write;          /* the handshake waits for the socket to take bytes */
	char peer[SOCK_ADDR_STRLEN]; /* "192.0.2.1" */
	struct sockaddr_storage peer_ss;
	uint64_t start_ms;
	struct ev_timer timer;
	const char *close_reason;
	struct linebuf lb;
	char *out; /* replies not yet written */
	size_t out_len, out_off, out_cap;
	int helo_done, esmtp;
	char helo[SMTP_ARG_MAX + 1];
	unsigned errors;
	uint64_t bdat_left;
	int bdat_last;
	struct smtpd_tx tx;
	struct smtpd_commit *commit;       /* SS_COMMIT: the file's fsync is out */
	struct smtpd_session *commit_next; /* SS_COMMIT, renamed: ctx->names_wait or names_sync */
	int commit_list;                   /* which of the two lists holds it (0: none) */
	struct smtpd_verify *verify;       /* SS_VERIFY: the check in flight */
	size_t verify_before;              /* tx->nrcpt before the recipient being verified */
	char verify_addr[MAP_ADDR_MAX + 1];
};

struct smtpd_ctx {
	struct mailplex_conf *conf; /* replaced whole on reload: never keep pointers into it */
	const char *conf_path;
	struct ev_loop *loop;
	size_t worker;
	struct smtpd_listener *listeners;
	size_t nlisteners;
	SSL_CTX *tls;
	struct map *map; /* NULL while the map cannot be opened: RCPT gets 451 */
	uint64_t map_retry_ms;
	struct spool *spool;
	struct control_server *control;
	char hostname[SMTPD_HOSTNAME_MAX + 1];
	struct smtpd_session *sessions;
	unsigned nsessions;
	uint64_t next_id;
	uint64_t accepted; /* messages acknowledged with 250 */
	struct ipcount ips;
	struct smtpd_verify_cache *verify_cache;
	/*
	 * Group commit, pipelined: each finished message's file is fsynced by the pool; once
	 * back, it is renamed into queue/ and waits in names_wait. One fsync of queue/ at a
	 * time covers every name renamed before it started (names_sync); the next one starts
	 * as soon as it is back, for whatever gathered meanwhile.
	 */
	struct spool_fsync *fsync;
	struct spool_fsync_job queue_job;  /* the fsync of queue/ */
	struct spool_fsync_job src_job[2]; /* and of tmp/, free/, best effort (spool_source_fds) */
	int queue_syncing;                 /* of those jobs, how many are out */
	struct smtpd_session *names_wait, *names_sync;
	struct spool_fsync_job *inline_done; /* fsynced on the loop (pool full): answered soon */
	struct ev_timer commit_timer;        /* runs inline_done */
	struct ev_timer accept_timer;
	int accept_paused;
	uint8_t rbuf[SMTPD_LINEBUF_BYTES]; /* one read buffer per worker */
	uint8_t dbuf[SMTPD_LINEBUF_BYTES + 1];
};

/* smtpd_session.c */
/* The pool's eventfd is readable: finished fsyncs move their messages on (group commit). */
void smtpd_commit_io(struct ev_loop *loop, int fd, int events, void *arg);
/* Shutdown: waits for the fsyncs out and answers their messages (bounded rounds). */
void smtpd_commit_drain(struct smtpd_ctx *ctx);
void smtpd_session_new(struct smtpd_ctx *ctx, int fd, const struct sockaddr_storage *peer);
void smtpd_session_close(struct smtpd_session *s, const char *reason);
void smtpd_session_free(struct smtpd_session *s);
const char *smtpd_state_name(enum smtpd_state st);

void smtpd_verify_finished(struct smtpd_session *s, enum smtpd_verify_result r, const char *text);

/* smtpd_verify.c */
/* NULL: the check could not start (the caller accepts the recipient). */
struct smtpd_verify *smtpd_verify_start(struct smtpd_session *s, const struct map_backend *be,
                                        const char *rcpt);
void smtpd_verify_cancel(struct smtpd_verify *v);
/* -1 not cached, else SMTPD_VERIFY_OK or SMTPD_VERIFY_UNKNOWN with the back end's text. */
int smtpd_verify_cached(struct smtpd_ctx *ctx, const char *backend, const char *addr, char *text,
                        size_t textlen);
void smtpd_verify_cache_free(struct smtpd_ctx *ctx);

/* smtpd_listen.c */
int smtpd_listeners_start(struct smtpd_ctx *ctx);
void smtpd_accept_resume(struct smtpd_ctx *ctx);

/* smtpd_control.c */
void smtpd_control_start(struct smtpd_ctx *ctx);
void smtpd_control_stop(struct smtpd_ctx *ctx);

#endif
