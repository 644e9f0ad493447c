/*
 * mailplex-proxy: arguments, the master process and its configuration generations. A
 * generation is one whole, valid mailplex.conf with its TLS contexts and one listener set
 * per worker (SO_REUSEPORT). On SIGHUP the master builds the next one beside the running
 * one and swaps it in only when every part of it is ready (nginx's ngx_init_cycle); the
 * old workers then stop accepting and leave after their last session. The master stays
 * root to bind and read keys on reload; it never talks to a client. Workers drop to the
 * configured user right after fork and run one event loop each (proxy_listen.c, ...).
 */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "control.h"
#include "daemon.h"
#include "log.h"
#include "proxy.h"
#include "tls.h"
#include "util.h"

#define LISTEN_BACKLOG    511
#define RESPAWN_MIN_MS    1000 /* a worker that dies sooner is restarted no faster */
#define WORKERS_MAX       256
#define CONTROL_RETRY_MS  50  /* a new worker waits for its predecessor to free the name */
#define CONTROL_TRIES_MAX 100 /* ... for 5 s at most */
#define RELOAD_NOTE_MAX   768 /* the "what changed" part of the reload log line */

/* One configuration and everything built from it; the master holds the current one. */
struct proxy_gen {
	unsigned long id; /* 1 at start, +1 for each reload that took effect */
	struct mailplex_conf conf;
	SSL_CTX *tls_server; /* NULL: no STARTTLS/STLS, no imaps/pop3s */
	SSL_CTX *tls_client;
	uid_t uid; /* of conf.user; only used when the master runs as root */
	gid_t gid;
	size_t nworkers;
	size_t nlisteners;
	struct proxy_listener *sets[WORKERS_MAX]; /* one listener set per worker */
};

/* A worker of an older generation, finishing its sessions. */
struct proxy_retired {
	pid_t pid;
	size_t idx;
	unsigned long gen;
	struct proxy_retired *next;
};

struct proxy_master {
	const char *conf_path; /* absolute: daemon() moves to / and SIGHUP reads it again */
	int verbose;
	struct ev_loop *loop;
	struct proxy_gen *gen;
	pid_t pids[WORKERS_MAX]; /* the current generation's workers; 0: not running */
	uint64_t started_ms[WORKERS_MAX];
	struct proxy_retired *retired;
	int stopping;
};

/* What a worker adds to its context: retrying its control socket. */
struct proxy_worker {
	struct proxy_ctx ctx;
	struct ev_timer control_timer;
	unsigned control_tries;
};

static void
usage(void)
{
	fprintf(stderr, "usage: mailplex-proxy [-dnv] [-f file]\n");
	exit(2);
}

static const char *
kind_name(const struct proxy_listener *l)
{
	if (l->proto == PROXY_IMAP)
		return l->implicit_tls ? "imaps" : "imap";
	return l->implicit_tls ? "pop3s" : "pop3";
}

/* Whether two listener addresses name the same socket address (not the same spelling). */
static int
addr_same(const char *a, const char *b)
{
	struct sockaddr_storage sa, sb;
	socklen_t la, lb;
	char err[128];

	if (sock_addr_parse(a, &sa, &la, err, sizeof(err)) == -1 ||
	    sock_addr_parse(b, &sb, &lb, err, sizeof(err)) == -1 || sa.ss_family != sb.ss_family)
		return 0;
	if (sa.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)&sa, *y = (const void *)&sb;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (sa.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)&sa, *y = (const void *)&sb;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return 0;
}

static int
set_has_fd(const struct proxy_listener *set, size_t n, int fd)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (set[i].fd == fd)
			return 1;
	return 0;
}

/* ---- generations ---- */

/* Closes every descriptor the generation still owns (fd -1: handed on) and frees it. */
static void
gen_free(struct proxy_gen *g)
{
	size_t i, j;

	if (g == NULL)
		return;
	for (i = 0; i < g->nworkers; i++) {
		if (g->sets[i] == NULL)
			continue;
		for (j = 0; j < g->nlisteners; j++)
			if (g->sets[i][j].fd != -1)
				close(g->sets[i][j].fd);
		free(g->sets[i]);
	}
	tls_ctx_free(g->tls_server);
	tls_ctx_free(g->tls_client);
	mailplex_conf_free(&g->conf);
	free(g);
}

/* The checks the schema cannot express, the TLS contexts, the user and the map. */
static int
gen_prepare(struct proxy_gen *g, const char *path, char *err, size_t errlen)
{
	const struct mailplex_conf_proxy *pc = &g->conf.proxy;
	struct tls_client_opts copts;
	struct map *map;
	char e[CONF_ERR_MAX];
	long ncpu;

	g->nlisteners = pc->imap.n + pc->imaps.n + pc->pop3.n + pc->pop3s.n;
	if (g->nlisteners == 0) {
		err_set(err, errlen, "%s: proxy: no listeners (imap, imaps, pop3, pop3s)", path);
		return -1;
	}
	if ((pc->imaps.n > 0 || pc->pop3s.n > 0) && pc->tls_cert == NULL) {
		err_set(err, errlen, "%s: proxy: imaps/pop3s need tls_cert and tls_key", path);
		return -1;
	}
	if ((pc->tls_cert == NULL) != (pc->tls_key == NULL)) {
		err_set(err, errlen, "%s: proxy: tls_cert and tls_key go together", path);
		return -1;
	}
	if (pc->tls_cert != NULL) {
		if ((g->tls_server = tls_server_ctx_new(pc->tls_cert, pc->tls_key, e, sizeof(e))) ==
		    NULL) {
			err_set(err, errlen, "%s: proxy: %s", path, e);
			return -1;
		}
		if (pc->tls_ciphers != NULL &&
		    SSL_CTX_set_cipher_list(g->tls_server, pc->tls_ciphers) != 1) {
			tls_error_string(e, sizeof(e), "tls_ciphers"); /* empties OpenSSL's queue */
			err_set(err, errlen, "%s: proxy: tls_ciphers '%s' selects no cipher", path,
			        pc->tls_ciphers);
			return -1;
		}
	}
	memset(&copts, 0, sizeof(copts));
	copts.verify = pc->backend_tls_verify;
	copts.ca_file = pc->backend_ca_file;
	if ((g->tls_client = tls_client_ctx_new(&copts, e, sizeof(e))) == NULL) {
		err_set(err, errlen, "%s: proxy: back-end TLS: %s", path, e);
		return -1;
	}
	if (geteuid() == 0 &&
	    daemon_user_lookup(g->conf.user, &g->uid, &g->gid, e, sizeof(e)) == -1) {
		err_set(err, errlen, "%s: %s", path, e);
		return -1;
	}
	/* Workers open it themselves; a map they cannot open would only make them die. */
	if ((map = map_open(g->conf.map.db, e, sizeof(e))) == NULL) {
		err_set(err, errlen, "%s: map %s: %s", path, g->conf.map.db, e);
		return -1;
	}
	map_close(map);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	g->nworkers = pc->workers > 0 ? (size_t)pc->workers : ncpu > 0 ? (size_t)ncpu : 1;
	if (g->nworkers > WORKERS_MAX)
		g->nworkers = WORKERS_MAX;
	return 0;
}

/* A whole new generation without listeners, or NULL with err ("file:line: message"). */
static struct proxy_gen *
gen_load(const char *path, unsigned long id, char *err, size_t errlen)
{
	struct proxy_gen *g = calloc(1, sizeof(*g));

	if (g == NULL) {
		(void)str_format(err, errlen, "calloc: %s", strerror(errno));
		return NULL;
	}
	g->id = id;
	if (mailplex_conf_load(path, &g->conf, err, errlen) == -1) {
		free(g);
		return NULL;
	}
	if (gen_prepare(g, path, err, errlen) == -1) {
		gen_free(g);
		return NULL;
	}
	return g;
}

/*
 * Fills g's listener sets: worker i's socket for an address that worker i of old already
 * listens on is taken over (same descriptor: the backlog and the SO_REUSEPORT group stay);
 * every other one is bound now. On failure nothing of old is touched, what was bound here
 * is closed, and -1 comes back with err.
 */
static int
gen_bind(struct proxy_gen *g, const struct proxy_gen *old, char *err, size_t errlen)
{
	const struct {
		const struct conf_strlist *list;
		enum proxy_proto proto;
		int tls;
	} kinds[] = {
	    {&g->conf.proxy.imap, PROXY_IMAP, 0},
	    {&g->conf.proxy.imaps, PROXY_IMAP, 1},
	    {&g->conf.proxy.pop3, PROXY_POP3, 0},
	    {&g->conf.proxy.pop3s, PROXY_POP3, 1},
	};
	const struct proxy_listener *oset;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char e[256];
	size_t i, j, k, l;

	for (i = 0; i < g->nworkers; i++) {
		if ((g->sets[i] = calloc(g->nlisteners, sizeof(*g->sets[i]))) == NULL) {
			(void)str_format(err, errlen, "calloc: %s", strerror(errno));
			goto fail;
		}
		for (j = 0; j < g->nlisteners; j++)
			g->sets[i][j].fd = -1;
		oset = old != NULL && i < old->nworkers ? old->sets[i] : NULL;
		for (k = 0, j = 0; k < ARRAY_LEN(kinds); k++) {
			for (l = 0; l < kinds[k].list->n; l++, j++) {
				struct proxy_listener *n = &g->sets[i][j];
				const char *a = kinds[k].list->v[l];
				size_t o;

				n->proto = kinds[k].proto;
				n->implicit_tls = kinds[k].tls;
				(void)str_copy(n->addr, sizeof(n->addr), a);
				for (o = 0; oset != NULL && o < old->nlisteners; o++) {
					if (oset[o].fd != -1 && addr_same(oset[o].addr, a) &&
					    !set_has_fd(g->sets[i], j, oset[o].fd)) {
						n->fd = oset[o].fd;
						break;
					}
				}
				if (n->fd != -1)
					continue;
				if (sock_addr_parse(a, &ss, &sslen, e, sizeof(e)) == -1 ||
				    (n->fd = sock_listen(&ss, sslen, LISTEN_BACKLOG,
				                         SOCK_F_REUSEPORT, e, sizeof(e))) == -1) {
					(void)str_format(err, errlen, "listener %s: %s", a, e);
					goto fail;
				}
			}
		}
	}
	return 0;
fail:
	/* Descriptors taken over from old stay old's. */
	for (i = 0; i < g->nworkers && g->sets[i] != NULL; i++) {
		oset = old != NULL && i < old->nworkers ? old->sets[i] : NULL;
		for (j = 0; j < g->nlisteners; j++) {
			int fd = g->sets[i][j].fd;

			if (fd != -1 && oset != NULL && set_has_fd(oset, old->nlisteners, fd))
				g->sets[i][j].fd = -1;
		}
	}
	return -1;
}

/* Marks the descriptors g took over from old as handed on, so gen_free(old) keeps them. */
static void
gen_take_over(const struct proxy_gen *g, struct proxy_gen *old)
{
	size_t i, j;

	for (i = 0; i < old->nworkers && i < g->nworkers; i++)
		for (j = 0; j < old->nlisteners; j++)
			if (set_has_fd(g->sets[i], g->nlisteners, old->sets[i][j].fd))
				old->sets[i][j].fd = -1;
}

/* Appends to a bounded note; a note that does not fit ends in "...". */
static void __attribute__((format(printf, 3, 4)))
note_add(char *note, size_t len, const char *fmt, ...)
{
	size_t used = strlen(note);
	va_list ap;
	int n;

	if (used + 4 >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(note + used, len - used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= len - used)
		(void)str_copy(note + len - 4, 4, "...");
}

/* Listeners (kind and address) of a that b lacks, as " kind addr" words. */
static void
note_listeners(char *note, size_t len, const struct proxy_gen *a, const struct proxy_gen *b)
{
	size_t i, j;
	int found;

	for (i = 0; i < a->nlisteners; i++) {
		const struct proxy_listener *x = &a->sets[0][i];

		for (found = 0, j = 0; j < b->nlisteners && !found; j++) {
			const struct proxy_listener *y = &b->sets[0][j];

			found = x->proto == y->proto && x->implicit_tls == y->implicit_tls &&
			        addr_same(x->addr, y->addr);
		}
		if (!found)
			note_add(note, len, " %s %s", kind_name(x), x->addr);
	}
}

/* "workers 2 -> 3; user a -> b; listeners added: imap 127.0.0.1:143; removed: ..." */
static void
gen_describe_changes(const struct proxy_gen *old, const struct proxy_gen *g, char *note, size_t len)
{
	size_t mark;

	note[0] = '\0';
	note_add(note, len, "%zu worker(s) as %s", g->nworkers, g->conf.user);
	if (old->nworkers != g->nworkers)
		note_add(note, len, " (were %zu)", old->nworkers);
	if (strcmp(old->conf.user, g->conf.user) != 0)
		note_add(note, len, " (was %s)", old->conf.user);
	note_add(note, len, "; listeners added:");
	mark = strlen(note);
	note_listeners(note, len, g, old);
	if (strlen(note) == mark)
		note_add(note, len, " none");
	note_add(note, len, "; removed:");
	mark = strlen(note);
	note_listeners(note, len, old, g);
	if (strlen(note) == mark)
		note_add(note, len, " none");
}

/* ---- worker ---- */

static void
worker_drop_privileges(const struct proxy_gen *g)
{
	char err[256];

	if (daemon_drop_to(g->uid, g->gid, g->conf.user, err, sizeof(err)) == -1)
		fatalx("%s", err);
}

static void
worker_retire(struct proxy_ctx *ctx)
{
	if (ctx->retiring)
		return;
	ctx->retiring = 1;
	proxy_listeners_stop(ctx);
	proxy_control_retire(ctx);
	log_info("worker %zu (generation %lu): retired by a reload: %u session(s) left",
	         ctx->worker, ctx->generation, ctx->nsessions);
}

/* Runs before each sleep: a retired worker leaves once its last session has ended. */
static void
worker_check_done(struct ev_loop *loop, void *arg)
{
	struct proxy_ctx *ctx = arg;

	if (ctx->retiring && ctx->nsessions == 0)
		ev_stop(loop);
}

static void
worker_signal(struct ev_loop *loop, int signo, void *arg)
{
	struct proxy_ctx *ctx = arg;

	if (signo == SIGHUP) {
		/* The master reloads; a worker signalled on its own only rechecks its map. */
		if (map_reopen_if_changed(ctx->map, 1) == 1)
			log_info("map reloaded (version %llu)",
			         (unsigned long long)map_version(ctx->map));
		proxy_map_check(ctx);
		return;
	}
	if (signo == SIGQUIT) {
		worker_retire(ctx);
		return;
	}
	ev_stop(loop);
}

static void
worker_control_try(struct ev_loop *loop, void *arg)
{
	struct proxy_worker *w = arg;
	char err[CONTROL_ERR_MAX];

	if (w->ctx.retiring || proxy_control_start(&w->ctx, err, sizeof(err)) == 0)
		return;
	if (++w->control_tries < CONTROL_TRIES_MAX)
		ev_timer_start(loop, &w->control_timer, CONTROL_RETRY_MS, worker_control_try, w);
	else
		log_warnx("worker %zu: control socket: %s", w->ctx.worker, err);
}

static void __attribute__((noreturn)) worker_run(struct proxy_master *m, size_t idx)
{
	const struct proxy_gen *g = m->gen;
	struct proxy_worker w;
	struct proxy_ctx *ctx = &w.ctx;
	char err[256];
	size_t i, j;

	for (i = 0; i < g->nworkers; i++)
		if (i != idx)
			for (j = 0; j < g->nlisteners; j++)
				close(g->sets[i][j].fd);
	worker_drop_privileges(g);
	memset(&w, 0, sizeof(w));
	ctx->conf = &g->conf;
	ctx->tls_server = g->tls_server;
	ctx->tls_client = g->tls_client;
	ctx->listeners = g->sets[idx];
	ctx->nlisteners = g->nlisteners;
	ctx->worker = idx;
	ctx->generation = g->id;
	if ((ctx->loop = ev_loop_new()) == NULL)
		fatal("ev_loop_new");
	if ((ctx->map = map_open(g->conf.map.db, err, sizeof(err))) == NULL)
		fatalx("map %s: %s", g->conf.map.db, err);
	map_set_check_interval(ctx->map, g->conf.map.reload_check_ms);
	proxy_map_watch_start(ctx);
	if (ev_signal_add(ctx->loop, SIGTERM, worker_signal, ctx) == -1 ||
	    ev_signal_add(ctx->loop, SIGINT, worker_signal, ctx) == -1 ||
	    ev_signal_add(ctx->loop, SIGHUP, worker_signal, ctx) == -1 ||
	    ev_signal_add(ctx->loop, SIGQUIT, worker_signal, ctx) == -1)
		fatal("ev_signal_add");
	if (ev_before_sleep(ctx->loop, worker_check_done, ctx) == -1)
		fatal("ev_before_sleep");
	proxy_listeners_start(ctx);
	ev_timer_init(&w.control_timer);
	worker_control_try(ctx->loop, &w);
	log_debug("worker %zu (generation %lu): running", idx, g->id);
	if (ev_run(ctx->loop) == -1)
		log_warn("worker %zu: event loop", idx);
	if (ctx->retiring && ctx->nsessions == 0)
		log_info("worker %zu (generation %lu): last session ended, exiting", idx, g->id);
	while (ctx->sessions != NULL) {
		proxy_session_close(ctx->sessions, "shutdown");
		proxy_session_run(ctx->sessions);
	}
	ev_timer_stop(ctx->loop, &w.control_timer);
	proxy_map_watch_stop(ctx);
	proxy_control_stop(ctx);
	ipcount_free(&ctx->ips);
	free(ctx->scratch);
	map_close(ctx->map);
	ev_loop_free(ctx->loop);
	_exit(0);
}

/* ---- master ---- */

static void
master_spawn(struct proxy_master *m, size_t idx)
{
	pid_t pid = fork();

	if (pid == -1) {
		log_warn("fork");
		return;
	}
	if (pid == 0) {
		/*
		 * SIGTERM, SIGINT and SIGHUP are unblocked here until the worker's own loop
		 * takes them: a worker told to stop this early just dies, which is what
		 * it was told. SIGQUIT stays blocked (see main) and waits for the loop.
		 */
		ev_loop_free(m->loop);
		worker_run(m, idx);
	}
	m->pids[idx] = pid;
	m->started_ms[idx] = time_mono_ms();
}

static void
status_string(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		(void)str_format(buf, len, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		(void)str_format(buf, len, "signal %d", WTERMSIG(status));
	else
		(void)str_format(buf, len, "status %d", status);
}

static size_t
master_count_retired(const struct proxy_master *m)
{
	const struct proxy_retired *r;
	size_t n = 0;

	for (r = m->retired; r != NULL; r = r->next)
		n++;
	return n;
}

/* 1 if pid was a retired worker (now forgotten), 0 otherwise. */
static int
master_reap_retired(struct proxy_master *m, pid_t pid, int status)
{
	struct proxy_retired *r, **pp;
	char st[32];

	for (pp = &m->retired; (r = *pp) != NULL; pp = &r->next) {
		if (r->pid != pid)
			continue;
		status_string(status, st, sizeof(st));
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			log_info("worker %zu of generation %lu (pid %d) finished its sessions; "
			         "%zu retired worker(s) left",
			         r->idx, r->gen, (int)pid, master_count_retired(m) - 1);
		else
			log_warnx("worker %zu of generation %lu (pid %d) ended: %s", r->idx, r->gen,
			          (int)pid, st);
		*pp = r->next;
		free(r);
		return 1;
	}
	return 0;
}

static void
master_reap(struct proxy_master *m)
{
	char st[32];
	size_t i;
	pid_t pid;
	int status, alive = 0;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (master_reap_retired(m, pid, status))
			continue;
		for (i = 0; i < m->gen->nworkers; i++) {
			if (m->pids[i] != pid)
				continue;
			m->pids[i] = 0;
			if (m->stopping)
				break;
			status_string(status, st, sizeof(st));
			log_warnx("worker %zu (pid %d) exited (%s): restarting", i, (int)pid, st);
			if (time_mono_ms() - m->started_ms[i] < RESPAWN_MIN_MS)
				usleep(RESPAWN_MIN_MS * 1000);
			master_spawn(m, i);
		}
	}
	for (i = 0; i < m->gen->nworkers; i++)
		alive |= m->pids[i] != 0;
	if (m->stopping && !alive && m->retired == NULL)
		ev_stop(m->loop);
}

/*
 * SIGHUP. Everything of the next generation is built before anything of the running one
 * changes; a failure at any step leaves the running one exactly as it was.
 */
static void
master_reload(struct proxy_master *m)
{
	struct proxy_gen *old = m->gen, *g;
	struct proxy_retired *r;
	char err[CONF_ERR_MAX], note[RELOAD_NOTE_MAX];
	unsigned long old_id = old->id;
	size_t i, nretired = 0;

	if ((g = gen_load(m->conf_path, old->id + 1, err, sizeof(err))) == NULL) {
		log_warnx("reload refused, generation %lu keeps running: %s", old->id, err);
		return;
	}
	if (gen_bind(g, old, err, sizeof(err)) == -1) {
		log_warnx("reload refused, generation %lu keeps running: %s", old->id, err);
		gen_free(g);
		return;
	}
	gen_describe_changes(old, g, note, sizeof(note));

	/* From here on nothing can fail: the new generation takes over. */
	for (i = 0; i < old->nworkers; i++) {
		if (m->pids[i] == 0)
			continue;
		if (kill(m->pids[i], SIGQUIT) == -1)
			log_warn("worker %zu (pid %d): SIGQUIT", i, (int)m->pids[i]);
		if ((r = calloc(1, sizeof(*r))) == NULL) {
			/* Untracked, it is still reaped (waitpid -1) and still finishes. */
			log_warn("calloc");
		} else {
			r->pid = m->pids[i];
			r->idx = i;
			r->gen = old_id;
			r->next = m->retired;
			m->retired = r;
		}
		m->pids[i] = 0;
		nretired++;
	}
	gen_take_over(g, old);
	gen_free(old);
	m->gen = g;
	log_set_level(m->verbose ? LOG_LEVEL_DEBUG : (enum log_level)g->conf.log_level);
	for (i = 0; i < g->nworkers; i++)
		master_spawn(m, i);
	log_info("reload: generation %lu running: %s; %zu worker(s) of generation %lu retired, "
	         "%zu retired worker(s) finishing sessions",
	         g->id, note, nretired, old_id, master_count_retired(m));
}

static void
master_stop(struct proxy_master *m)
{
	const struct proxy_retired *r;
	size_t i;
	int alive = 0;

	m->stopping = 1;
	for (i = 0; i < m->gen->nworkers; i++) {
		if (m->pids[i] != 0) {
			kill(m->pids[i], SIGTERM);
			alive = 1;
		}
	}
	for (r = m->retired; r != NULL; r = r->next)
		kill(r->pid, SIGTERM);
	if (!alive && m->retired == NULL)
		ev_stop(m->loop);
}

static void
master_signal(struct ev_loop *loop, int signo, void *arg)
{
	struct proxy_master *m = arg;

	if (signo == SIGCHLD)
		master_reap(m);
	else if (signo == SIGHUP && !m->stopping)
		master_reload(m);
	else if (signo != SIGHUP)
		master_stop(m);
}

/*
 * path made absolute against the working directory, symbolic links left alone (a reload
 * follows a link switched to another file). malloc'd; NULL with errno.
 */
static char *
path_absolute(const char *path)
{
	char cwd[PATH_MAX], *abs;
	size_t len;

	if (path[0] == '/')
		return strdup(path);
	if (getcwd(cwd, sizeof(cwd)) == NULL)
		return NULL;
	len = strlen(cwd) + 1 + strlen(path) + 1;
	if ((abs = malloc(len)) == NULL)
		return NULL;
	if (str_format(abs, len, "%s/%s", cwd, path) == -1) {
		free(abs);
		errno = ENAMETOOLONG;
		return NULL;
	}
	return abs;
}

int
main(int argc, char **argv)
{
	struct proxy_master m;
	struct proxy_retired *r;
	const char *path = MAILPLEX_CONF_PATH;
	char err[CONF_ERR_MAX], *abspath;
	sigset_t early;
	int ch, foreground = 0, check_only = 0;

	/*
	 * SIGQUIT stays blocked for good: a worker's waits in its mask until its loop takes
	 * it (the master does not act on it). SIGHUP is blocked until the loop takes it, so
	 * that one sent while we start waits instead of killing the master.
	 */
	sigemptyset(&early);
	sigaddset(&early, SIGQUIT);
	sigaddset(&early, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &early, NULL) == -1)
		fatal("sigprocmask");
	memset(&m, 0, sizeof(m));
	while ((ch = getopt(argc, argv, "f:dnv")) != -1) {
		switch (ch) {
		case 'f':
			path = optarg;
			break;
		case 'd':
			foreground = 1;
			break;
		case 'n':
			check_only = 1;
			break;
		case 'v':
			m.verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	log_init("mailplex-proxy", 1, LOG_LEVEL_INFO);
	if ((m.gen = gen_load(path, 1, err, sizeof(err))) == NULL)
		fatalx("%s", err);
	if (check_only) {
		printf("configuration OK\n");
		gen_free(m.gen);
		return 0;
	}
	log_init("mailplex-proxy", foreground,
	         m.verbose ? LOG_LEVEL_DEBUG : (enum log_level)m.gen->conf.log_level);
	if (m.gen->tls_server == NULL && !m.gen->conf.proxy.allow_plaintext_login)
		log_warnx(
		    "proxy: no TLS and allow_plaintext_login = false: every login is refused");
	if ((abspath = path_absolute(path)) == NULL)
		fatal("%s", path);
	m.conf_path = abspath;
	/* Each logged-in session holds two sockets and, with splice, two pipes. */
	if (daemon_raise_nofile(err, sizeof(err)) == -1)
		log_warnx("%s", err);
	if (gen_bind(m.gen, NULL, err, sizeof(err)) == -1)
		fatalx("%s", err);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * The master keeps root (as nginx's does): a reload may bind a new privileged port
	 * and read a key file only root can read. It never reads a byte from a client; the
	 * workers, which do, drop to conf.user before anything else.
	 */
	if (geteuid() != 0)
		log_info("not running as root: workers keep uid %u", (unsigned)geteuid());
	if (!foreground && daemon(0, 0) == -1)
		fatal("daemon");

	if ((m.loop = ev_loop_new()) == NULL)
		fatal("ev_loop_new");
	if (ev_signal_add(m.loop, SIGCHLD, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGTERM, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGINT, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGHUP, master_signal, &m) == -1)
		fatal("ev_signal_add");
	for (size_t i = 0; i < m.gen->nworkers; i++)
		master_spawn(&m, i);
	log_info("started: generation 1: %zu worker(s), %zu listener(s) each, user %s",
	         m.gen->nworkers, m.gen->nlisteners, m.gen->conf.user);
	if (ev_run(m.loop) == -1)
		log_warn("event loop");
	ev_loop_free(m.loop);
	while ((r = m.retired) != NULL) {
		m.retired = r->next;
		free(r);
	}
	gen_free(m.gen);
	free(abspath);
	log_info("stopped");
	return 0;
}
