/*
 * The durable spool of mailplex-smtpd: the receivers write messages into it, the queue
 * runner reads and delivers them. A message becomes visible to the runner only by rename()
 * into queue/ after the file is fsynced, and queue/ is fsynced before the 250:
 * whatever was acknowledged survives kill -9 and a power cut. Nothing here talks to the
 * network or decides routing.
 *
 * Layout under smtpd.spool (default /var/spool/mailplex):
 *   tmp/QID     being received; never read by the runner; removed by spool_recover()
 *   free/QID    delivered messages' files kept for reuse: a writer takes one its own
 *               process wrote (the QID names its pid) by renaming it to tmp/NEWQID and
 *               overwrites it instead of creating a file. Creating and unlinking a file
 *               per message is most of the kernel's work per message on ext4 (inode
 *               allocation scans past every recently freed inode when there is no
 *               journal); rewriting blocks the file already has is not. Bounded (256
 *               files of <= 256 KiB); emptied by spool_recover(); never read by the runner.
 *   queue/QID   a complete message: envelope, then the body (with our Received: header)
 *               to end of file; immutable once renamed here
 *   state/QID   the runner's own per-recipient delivery log (see queue.h); never touched
 *               by the receivers
 *
 * The envelope is encoded so that no byte a client sent can forge a record: every field
 * is length-prefixed, never one field per line (see spool.c for the exact encoding).
 */
#ifndef MAILPLEX_SPOOL_H
#define MAILPLEX_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "map.h"
#include "sock.h"

#define SPOOL_QID_MAX       32   /* queue ids: [0-9A-F], unique per spool */
#define SPOOL_HELO_MAX      255  /* the EHLO/HELO argument as the client sent it */
#define SPOOL_RCPT_MAX      1000 /* hard ceiling; smtpd.max_recipients is below it */
#define SPOOL_ENVELOPE_MAX  (1024 * 1024) /* an encoded envelope larger than this is corrupt */

enum spool_body_type {
	SPOOL_BODY_7BIT,
	SPOOL_BODY_8BITMIME,
	SPOOL_BODY_BINARYMIME, /* only through BDAT */
};

/* One recipient after alias expansion: one back end, one address. */
struct spool_rcpt {
	char addr[MAP_ADDR_MAX + 1];       /* deliver to this: local[+detail]@domain */
	char orig[MAP_ADDR_MAX + 1];       /* as the client gave it in RCPT TO (DSN ORCPT) */
	char backend[MAP_NAME_MAX + 1];    /* the map's back end when the message was accepted */
};

struct spool_envelope {
	char qid[SPOOL_QID_MAX + 1];
	char sender[MAP_ADDR_MAX + 1];         /* "" for the null sender <> */
	char client_addr[SOCK_ADDR_STRLEN];    /* "192.0.2.1" / "2001:db8::1" */
	char helo[SPOOL_HELO_MAX + 1];
	uint64_t arrival;                      /* unix seconds */
	enum spool_body_type body_type;
	int smtputf8;                          /* MAIL FROM ... SMTPUTF8 */
	size_t nrcpt;
	struct spool_rcpt *rcpt;               /* nrcpt entries, malloc'ed */
};

struct spool;        /* an open spool directory */
struct spool_writer; /* one message being received */

/* Opens (and creates the subdirectories of) a spool. NULL with err on failure. */
struct spool *spool_open(const char *dir, char *err, size_t errlen);
void spool_close(struct spool *sp);
const char *spool_dir(const struct spool *sp);

/* Start-up: removes everything in tmp/ (never acknowledged). Returns the count, -1 on error. */
int spool_recover(struct spool *sp, char *err, size_t errlen);
/*
 * After a receiver died: removes the tmp/ files of that process only (a queue id carries
 * its writer's pid), so a crash-looping worker cannot fill the disk between restarts.
 */
int spool_recover_pid(struct spool *sp, pid_t pid, char *err, size_t errlen);

/*
 * Receiving one message: writer_new creates tmp/QID and buffers the envelope (env->qid is
 * filled in); body appends; commit fsyncs the file, renames it into queue/ and fsyncs
 * queue/ - only then may the receiver answer 250. abort removes the temp file.
 * A full disk (ENOSPC, EDQUOT) is reported with *tempfail = 1: the client gets a 452/451.
 */
struct spool_writer *spool_writer_new(struct spool *sp, struct spool_envelope *env,
                                      int *tempfail, char *err, size_t errlen);
int spool_writer_body(struct spool_writer *w, const void *buf, size_t len, int *tempfail,
                      char *err, size_t errlen);
int spool_writer_commit(struct spool_writer *w, int *tempfail, char *err, size_t errlen);
/*
 * Group commit, the same in steps, for a caller that does its fsyncs elsewhere (threads,
 * spool_fsync.h) and gathers many messages under one fsync of queue/:
 *   spool_writer_finish writes the buffered bytes and returns the descriptor whose fsync
 *     must succeed next (w keeps it open until synced); -1: w is gone.
 *   spool_writer_synced takes that fsync's result (0 or errno) and on success closes the
 *     file and renames it into queue/; w is gone either way.
 *   an fsync of spool_queue_fd, started after the rename, makes the new name durable;
 *     spool_queue_synced turns its result into the answer.
 * A message may be answered 250 only after both of its fsyncs succeeded. (The runner may
 * see a renamed file before the fsync of queue/; a failed one means no 250, so at worst a
 * duplicate, never a loss.) spool_writer_publish is finish + fsync + synced in one call,
 * spool_sync_queue the fsyncs of queue/ and tmp/ with the answer.
 */
int spool_writer_finish(struct spool_writer *w, int *tempfail, char *err, size_t errlen);
int spool_writer_synced(struct spool_writer *w, int sync_error, int *tempfail, char *err,
                        size_t errlen);
int spool_queue_fd(const struct spool *sp);
/*
 * The directories whose names moved on towards queue/: tmp/, and free/ when a file was
 * taken from the pool since the last call. fds[] gets them (1 or 2, the count returned),
 * to be fsynced together with queue/ before the 250, best effort: on a file system without
 * a journal a crash could otherwise leave an old name next to the new one with one link,
 * and spool_recover's removal of the old name would free the acknowledged message.
 */
int spool_source_fds(struct spool *sp, int fds[2]);
int spool_queue_synced(struct spool *sp, int sync_error, int *tempfail, char *err,
                       size_t errlen);
int spool_writer_publish(struct spool_writer *w, int *tempfail, char *err, size_t errlen);
int spool_sync_queue(struct spool *sp, int *tempfail, char *err, size_t errlen);
void spool_writer_abort(struct spool_writer *w);

/*
 * The runner, a message done with: queue/QID goes into the pool (free/) when the file is
 * small and the pool not full, else it is unlinked. Either way the name leaves queue/ and
 * the caller fsyncs queue/ as for an unlink. 0, or -1 with errno (ENOENT: already gone).
 */
int spool_remove(struct spool *sp, const char *qid, uint64_t size);

/*
 * Reading: decodes an envelope from the start of a queue file (bounded: refuses anything
 * malformed, truncated or over the limits). *body_off is where the body starts.
 * spool_envelope_decode is the pure parser (fuzzed); spool_envelope_read reads from fd.
 */
int spool_envelope_decode(const uint8_t *buf, size_t len, struct spool_envelope *env,
                          size_t *used, char *err, size_t errlen);
int spool_envelope_read(int fd, struct spool_envelope *env, off_t *body_off, char *err,
                        size_t errlen);
void spool_envelope_free(struct spool_envelope *env);

#endif
