/*
 * The fsync threads of spool_fsync.h. Shared between the threads and the loop: two job
 * lists (queued, finished), a running count and a stop flag, all under one mutex, and the
 * eventfd. A thread takes a job, fsyncs its descriptor, puts it on the finished list and
 * bumps the eventfd; it calls nothing else, so it cannot touch the loop's state.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/eventfd.h>

#include "spool_fsync.h"
#include "util.h"

struct spool_fsync {
	pthread_mutex_t mu;
	pthread_cond_t work; /* a job was queued, or stop */
	pthread_cond_t idle; /* queued and running both reached zero */
	struct spool_fsync_job *queued_head, *queued_tail;
	struct spool_fsync_job *done_head, *done_tail;
	unsigned running;
	unsigned long wake_errors; /* eventfd writes that failed (never expected) */
	int stop;
	int efd;
	size_t lent; /* the loop's own count: submitted, not yet returned by done */
	unsigned nthreads;
	pthread_t threads[SPOOL_FSYNC_THREADS_MAX];
};

static void
spool_fsync_append(struct spool_fsync_job **head, struct spool_fsync_job **tail,
                   struct spool_fsync_job *job)
{
	job->next = NULL;
	if (*tail != NULL)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

static void *
spool_fsync_thread(void *arg)
{
	struct spool_fsync *p = arg;
	struct spool_fsync_job *job;
	uint64_t one = 1;
	int e;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->queued_head == NULL && !p->stop)
			pthread_cond_wait(&p->work, &p->mu);
		if ((job = p->queued_head) == NULL)
			break; /* stop, and nothing left to do */
		if ((p->queued_head = job->next) == NULL)
			p->queued_tail = NULL;
		p->running++;
		pthread_mutex_unlock(&p->mu);

		/* Linux never interrupts fsync for a blocked signal; EINTR is left to the owner. */
		e = fsync(job->fd) == -1 ? errno : 0;

		pthread_mutex_lock(&p->mu);
		job->error = e;
		spool_fsync_append(&p->done_head, &p->done_tail, job);
		p->running--;
		if (p->running == 0 && p->queued_head == NULL)
			pthread_cond_broadcast(&p->idle);
		/*
		 * Written under the mutex so that done() cannot drain the counter between the
		 * append and this. An eventfd counter refuses 1 only near 2^64: count it anyway.
		 */
		if (write(p->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
			p->wake_errors++;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct spool_fsync *
spool_fsync_new(unsigned nthreads, char *err, size_t errlen)
{
	struct spool_fsync *p;
	sigset_t all, old;
	unsigned i;
	int r;

	if (nthreads == 0 || nthreads > SPOOL_FSYNC_THREADS_MAX) {
		err_set(err, errlen, "fsync threads: %u, want 1 to %d", nthreads,
		        SPOOL_FSYNC_THREADS_MAX);
		return NULL;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		err_set(err, errlen, "out of memory");
		return NULL;
	}
	if ((p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1) {
		err_set(err, errlen, "eventfd: %s", strerror(errno));
		free(p);
		return NULL;
	}
	if ((r = pthread_mutex_init(&p->mu, NULL)) != 0 ||
	    (r = pthread_cond_init(&p->work, NULL)) != 0 ||
	    (r = pthread_cond_init(&p->idle, NULL)) != 0) {
		err_set(err, errlen, "pthread init: %s", strerror(r));
		close(p->efd);
		free(p);
		return NULL;
	}
	/* Signals stay the loop's (signalfd): the threads start with all of them blocked. */
	sigfillset(&all);
	if ((r = pthread_sigmask(SIG_SETMASK, &all, &old)) != 0) {
		err_set(err, errlen, "pthread_sigmask: %s", strerror(r));
		spool_fsync_free(p);
		return NULL;
	}
	for (i = 0; i < nthreads; i++) {
		if ((r = pthread_create(&p->threads[i], NULL, spool_fsync_thread, p)) != 0) {
			err_set(err, errlen, "pthread_create: %s", strerror(r));
			break;
		}
		p->nthreads++;
	}
	(void)pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (p->nthreads != nthreads) {
		spool_fsync_free(p);
		return NULL;
	}
	return p;
}

void
spool_fsync_free(struct spool_fsync *p)
{
	unsigned i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->nthreads; i++)
		(void)pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->idle);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->mu);
	close(p->efd);
	free(p);
}

int
spool_fsync_eventfd(const struct spool_fsync *p)
{
	return p->efd;
}

int
spool_fsync_submit(struct spool_fsync *p, struct spool_fsync_job *job)
{
	if (p->lent >= SPOOL_FSYNC_QUEUE_MAX) {
		errno = EAGAIN;
		return -1;
	}
	p->lent++;
	job->error = 0;
	pthread_mutex_lock(&p->mu);
	spool_fsync_append(&p->queued_head, &p->queued_tail, job);
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

struct spool_fsync_job *
spool_fsync_done(struct spool_fsync *p)
{
	struct spool_fsync_job *list, *j;
	uint64_t v;

	pthread_mutex_lock(&p->mu);
	/*
	 * Reset under the mutex: a job finished after this bumps the counter again. EAGAIN
	 * (counter at zero) is normal when called without a wakeup (shutdown).
	 */
	if (read(p->efd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		p->wake_errors++;
	list = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->mu);
	for (j = list; j != NULL; j = j->next)
		p->lent--;
	return list;
}

size_t
spool_fsync_pending(const struct spool_fsync *p)
{
	return p->lent;
}

void
spool_fsync_wait(struct spool_fsync *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->queued_head != NULL || p->running > 0)
		pthread_cond_wait(&p->idle, &p->mu);
	pthread_mutex_unlock(&p->mu);
}
