/*
 * The spool's fsyncs off the event loop: a few threads that do nothing but fsync(2) the
 * descriptors they are handed, and report back through an eventfd the loop watches. Run
 * in parallel, the fsyncs of one group reach the file system's journal together and are
 * committed together; run on the loop, one after another, each waited for its own commit.
 * A thread never sees more than a job's descriptor and result: sessions, writers and the
 * spool's names stay the loop's alone.
 */
#ifndef MAILPLEX_SPOOL_FSYNC_H
#define MAILPLEX_SPOOL_FSYNC_H

#include <stddef.h>

#define SPOOL_FSYNC_THREADS_MAX 64
#define SPOOL_FSYNC_QUEUE_MAX   4096 /* jobs queued or running at once */

/* Owned by the caller, lent to the pool from submit until it comes back from done. */
struct spool_fsync_job {
	struct spool_fsync_job *next; /* the pool's while lent; then the caller's */
	int fd;                       /* kept open by the caller until the job is back */
	int error;                    /* 0, or the errno of fsync */
	void *arg;                    /* the caller's */
};

struct spool_fsync;

/* Starts nthreads threads (1..SPOOL_FSYNC_THREADS_MAX). NULL with err on failure. */
struct spool_fsync *spool_fsync_new(unsigned nthreads, char *err, size_t errlen);
/*
 * Stops the threads once the jobs already queued are done, joins them, frees the pool.
 * Jobs not collected with spool_fsync_done are not returned: collect them first.
 */
void spool_fsync_free(struct spool_fsync *p);
/* Readable when finished jobs wait for spool_fsync_done (watch it with EV_READ). */
int spool_fsync_eventfd(const struct spool_fsync *p);
/* Lends job to the pool. 0, or -1 when SPOOL_FSYNC_QUEUE_MAX jobs are out already. */
int spool_fsync_submit(struct spool_fsync *p, struct spool_fsync_job *job);
/* The jobs finished since the last call, oldest first, as a list on next; NULL if none. */
struct spool_fsync_job *spool_fsync_done(struct spool_fsync *p);
/* Jobs lent and not yet returned by spool_fsync_done. */
size_t spool_fsync_pending(const struct spool_fsync *p);
/* Blocks until every lent job is finished (shutdown; then collect them with done). */
void spool_fsync_wait(struct spool_fsync *p);

#endif
