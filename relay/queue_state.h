/*
 * The queue runner's per-message delivery log, SPOOL/state/QID: append-only records, each
 * one line with its own checksum, fsynced before the runner moves on, so that a restart
 * never delivers a delivered recipient again. A torn last record (kill -9, power cut in
 * the middle of a write) is detected, ignored and cut off. Also the back-off schedule.
 * The parser (queue_state_replay) is pure; the I/O functions only open, append and fsync.
 */
#ifndef MAILPLEX_QUEUE_STATE_H
#define MAILPLEX_QUEUE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "queue_reply.h"

#define QUEUE_STATE_RECORD_MAX (QUEUE_REPLY_TEXT_MAX + 64) /* one line, LF included */
#define QUEUE_STATE_FILE_MAX   (4 * 1024 * 1024)           /* larger is corrupt: never replayed */

enum queue_rcpt_state {
	QUEUE_RCPT_PENDING = 0, /* not delivered yet: tried again at the next attempt */
	QUEUE_RCPT_DELIVERED,   /* a back end said 2xx: never again */
	QUEUE_RCPT_FAILED,      /* 5xx, unknown user or expired: waits for its bounce */
	QUEUE_RCPT_BOUNCED,     /* failed and the bounce is in the spool (or none is due) */
};

struct queue_rcpt_status {
	enum queue_rcpt_state state;
	char reply[QUEUE_REPLY_TEXT_MAX]; /* the last reply or reason: "550 5.1.1 ..." */
};

struct queue_state {
	size_t nrcpt;
	struct queue_rcpt_status *rcpt; /* nrcpt entries, calloc'ed */
	uint64_t attempts;              /* delivery attempts so far */
	uint64_t next_try;              /* unix milliseconds; 0: now */
	int held;                       /* mailplexctl queue hold */
	size_t valid_len;               /* bytes of whole, valid records */
	size_t torn;                    /* 1 if a torn or corrupt tail was ignored */
};

/* Allocates rcpt for nrcpt recipients, all pending. 0, or -1 (ENOMEM). */
int queue_state_init(struct queue_state *st, size_t nrcpt);
void queue_state_free(struct queue_state *st);

/*
 * Applies the records in buf to st (initialised for the envelope's recipient count).
 * Stops at the first record that is incomplete, fails its checksum, or names a recipient
 * out of range: everything from there is a torn write and is ignored (st->torn = 1);
 * st->valid_len is where it starts. Never fails otherwise.
 */
void queue_state_replay(struct queue_state *st, const char *buf, size_t len);

/*
 * Record formatting: one line into rec (QUEUE_STATE_RECORD_MAX bytes). Returns the
 * length, or -1 if it does not fit (cannot happen for the bounded inputs used).
 */
int queue_state_fmt_rcpt(char *rec, size_t reclen, size_t idx, enum queue_rcpt_state state,
                         const char *reply);
int queue_state_fmt_attempt(char *rec, size_t reclen, uint64_t attempts, uint64_t next_try);
int queue_state_fmt_hold(char *rec, size_t reclen, int held);

/*
 * Opens (creating) dir/qid, replays it into st, and cuts a torn tail off so the next
 * append starts on a record boundary. Returns the descriptor (O_APPEND), or -1 with err.
 */
int queue_state_open(const char *dir, const char *qid, struct queue_state *st, char *err,
                     size_t errlen);
/* Writes the records (whole lines) in one write and fsyncs. 0, or -1 with err. */
int queue_state_append(int fd, const char *recs, size_t len, char *err, size_t errlen);

/*
 * The wait after the n-th failed attempt (n >= 1): min doubled n-1 times, at most max.
 */
uint64_t queue_backoff_ms(uint64_t n, uint64_t min_ms, uint64_t max_ms);

#endif
