/*
 * mailplex-smtpd: arguments, configuration, TLS context, binding every listener once per
 * receiver worker (SO_REUSEPORT), preparing and recovering the spool, dropping privileges,
 * and the master that starts, restarts and stops the receivers and the queue runner, and
 * passes SIGHUP on once the new configuration proved valid. The master never talks SMTP.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "daemon.h"
#include "log.h"
#include "queue.h"
#include "smtpd.h"
#include "tls.h"
#include "util.h"

#define LISTEN_BACKLOG 511
#define RESPAWN_MIN_MS 1000 /* a child that dies sooner is restarted no faster */
#define WORKERS_MAX    256
#define DEFAULT_LISTEN "*:25"
#define RUNNER_SLOT    WORKERS_MAX /* pids[] index of the queue runner */

struct smtpd_master {
	struct mailplex_conf *conf;
	const char *conf_path;
	struct ev_loop *loop;
	size_t nworkers;
	pid_t pids[WORKERS_MAX + 1];
	uint64_t started_ms[WORKERS_MAX + 1];
	struct ev_timer respawn[WORKERS_MAX + 1]; /* back-off before restarting a child */
	struct smtpd_listener *sets[WORKERS_MAX];
	size_t nlisteners;
	SSL_CTX *tls;
	struct spool *spool; /* the master's handle: removes a dead receiver's tmp/ files */
	char hostname[SMTPD_HOSTNAME_MAX + 1];
	int stopping;
};

static void
usage(void)
{
	fprintf(stderr, "usage: mailplex-smtpd [-dnv] [-f file]\n");
	exit(2);
}

static const char *
listen_addr(const struct mailplex_conf *conf, size_t i)
{
	return conf->smtpd.listen.n > 0 ? conf->smtpd.listen.v[i] : DEFAULT_LISTEN;
}

static size_t
listen_count(const struct mailplex_conf *conf)
{
	return conf->smtpd.listen.n > 0 ? conf->smtpd.listen.n : 1;
}

static struct smtpd_listener *
bind_set(const struct mailplex_conf *conf, size_t n)
{
	struct smtpd_listener *set = calloc(n, sizeof(*set));
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[256];
	size_t i;

	if (set == NULL)
		fatal("calloc");
	for (i = 0; i < n; i++) {
		const char *a = listen_addr(conf, i);

		if (sock_addr_parse(a, &ss, &sslen, err, sizeof(err)) == -1)
			fatalx("smtpd.listen %s: %s", a, err);
		set[i].fd =
		    sock_listen(&ss, sslen, LISTEN_BACKLOG, SOCK_F_REUSEPORT, err, sizeof(err));
		if (set[i].fd == -1)
			fatalx("smtpd.listen %s: %s", a, err);
		str_copy(set[i].addr, sizeof(set[i].addr), a);
	}
	return set;
}

/* The server context from the config; NULL without a certificate. Exits only at start. */
static int
tls_load(const struct mailplex_conf *conf, SSL_CTX **out, char *err, size_t errlen)
{
	const struct mailplex_conf_smtpd *c = &conf->smtpd;
	SSL_CTX *ctx;

	*out = NULL;
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		err_set(err, errlen, "smtpd: tls_cert and tls_key go together");
		return -1;
	}
	if (c->tls_cert == NULL)
		return 0;
	if ((ctx = tls_server_ctx_new(c->tls_cert, c->tls_key, err, errlen)) == NULL)
		return -1;
	if (c->tls_ciphers != NULL && SSL_CTX_set_cipher_list(ctx, c->tls_ciphers) != 1) {
		err_set(err, errlen, "smtpd: tls_ciphers '%s' selects no cipher", c->tls_ciphers);
		tls_ctx_free(ctx);
		return -1;
	}
	*out = ctx;
	return 0;
}

/* What a configuration must hold beyond its schema; the same check at start and reload. */
static int
conf_check(const struct mailplex_conf *conf, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	size_t i;

	for (i = 0; i < listen_count(conf); i++)
		if (sock_addr_parse(listen_addr(conf, i), &ss, &sslen, err, errlen) == -1)
			return -1;
	return 0;
}

static void
hostname_set(const struct mailplex_conf *conf, char *buf, size_t len)
{
	if (conf->smtpd.hostname != NULL) {
		str_copy(buf, len, conf->smtpd.hostname);
		return;
	}
	if (gethostname(buf, len) == -1 || buf[0] == '\0')
		str_copy(buf, len, "localhost");
	buf[len - 1] = '\0';
}

/* As root: create the spool, give it to the unprivileged user, remove what a crash left. */
static void
spool_prepare(const struct mailplex_conf *conf)
{
	static const char *const subs[] = {"", "/tmp", "/queue", "/state", "/free"};
	struct spool *sp;
	char err[512], path[1100];
	uid_t uid = 0;
	gid_t gid = 0;
	size_t i;
	int n;

	if ((sp = spool_open(conf->smtpd.spool, err, sizeof(err))) == NULL)
		fatalx("smtpd.spool %s: %s", conf->smtpd.spool, err);
	if (geteuid() == 0) {
		if (daemon_user_lookup(conf->user, &uid, &gid, err, sizeof(err)) == -1)
			fatalx("%s", err);
		for (i = 0; i < ARRAY_LEN(subs); i++) {
			if (str_format(path, sizeof(path), "%s%s", conf->smtpd.spool, subs[i]) ==
			    -1)
				fatalx("smtpd.spool: path too long");
			if (chown(path, uid, gid) == -1 || chmod(path, 0700) == -1)
				fatal("smtpd.spool: %s", path);
		}
	}
	if ((n = spool_recover(sp, err, sizeof(err))) == -1)
		fatalx("smtpd.spool: %s", err);
	if (n > 0)
		log_info("spool %s: removed %d incomplete message(s) from tmp/", conf->smtpd.spool,
		         n);
	spool_close(sp);
}

/* ---- worker ---- */

/*
 * nginx-style reload inside a worker: parse into a fresh config, load its certificate and
 * map, and swap only when all of them are good; otherwise log why (file:line) and keep the
 * old ones. Sessions never hold pointers into the config, so the swap is safe mid-session.
 */
static void
worker_reload(struct smtpd_ctx *ctx)
{
	struct mailplex_conf *nc;
	struct map *nmap = NULL;
	SSL_CTX *ntls;
	char err[CONF_ERR_MAX];

	if ((nc = calloc(1, sizeof(*nc))) == NULL) {
		log_warnx("reload: out of memory");
		return;
	}
	if (mailplex_conf_load(ctx->conf_path, nc, err, sizeof(err)) == -1 ||
	    conf_check(nc, err, sizeof(err)) == -1) {
		log_warnx("reload refused, configuration unchanged: %s", err);
		mailplex_conf_free(nc);
		free(nc);
		return;
	}
	if (tls_load(nc, &ntls, err, sizeof(err)) == -1) {
		log_warnx("reload refused, configuration unchanged: %s", err);
		mailplex_conf_free(nc);
		free(nc);
		return;
	}
	if (strcmp(nc->map.db, ctx->conf->map.db) != 0 || ctx->map == NULL) {
		if ((nmap = map_open(nc->map.db, err, sizeof(err))) == NULL)
			log_warnx("reload: map %s: %s (recipients get 451 until it opens)",
			          nc->map.db, err);
		if (ctx->map != NULL)
			map_close(ctx->map);
		ctx->map = nmap;
		if (nmap != NULL)
			map_set_check_interval(nmap, nc->map.reload_check_ms);
	} else if (map_reopen_if_changed(ctx->map, 1) == 1) {
		log_info("map reloaded (version %llu)", (unsigned long long)map_version(ctx->map));
	}
	if (strcmp(nc->smtpd.spool, ctx->conf->smtpd.spool) != 0)
		log_warnx("reload: smtpd.spool changes at the next restart");
	/* SSL objects hold a reference on their context: sessions in TLS keep the old one */
	tls_ctx_free(ctx->tls);
	ctx->tls = ntls;
	mailplex_conf_free(ctx->conf);
	free(ctx->conf);
	ctx->conf = nc;
	hostname_set(nc, ctx->hostname, sizeof(ctx->hostname));
	log_set_level((enum log_level)nc->log_level);
	log_info("worker %zu: configuration reloaded", ctx->worker);
}

static void
worker_signal(struct ev_loop *loop, int signo, void *arg)
{
	if (signo == SIGHUP) {
		worker_reload(arg);
		return;
	}
	ev_stop(loop);
}

static struct mailplex_conf *
conf_dup(const char *path)
{
	struct mailplex_conf *c = calloc(1, sizeof(*c));
	char err[CONF_ERR_MAX];

	if (c == NULL)
		fatal("calloc");
	if (mailplex_conf_load(path, c, err, sizeof(err)) == -1)
		fatalx("%s", err);
	return c;
}

static void __attribute__((noreturn)) worker_run(struct smtpd_master *m, size_t idx)
{
	static struct smtpd_ctx ctx; /* large (read buffers): not on the stack */
	char err[512];
	size_t i, j;

	for (i = 0; i < m->nworkers; i++)
		if (i != idx)
			for (j = 0; j < m->nlisteners; j++)
				close(m->sets[i][j].fd);
	memset(&ctx, 0, sizeof(ctx));
	/* the worker owns its own copy: a reload replaces it without the master */
	ctx.conf = conf_dup(m->conf_path);
	ctx.conf_path = m->conf_path;
	ctx.tls = m->tls;
	ctx.listeners = m->sets[idx];
	ctx.nlisteners = m->nlisteners;
	ctx.worker = idx;
	str_copy(ctx.hostname, sizeof(ctx.hostname), m->hostname);
	if ((ctx.loop = ev_loop_new()) == NULL)
		fatal("ev_loop_new");
	if ((ctx.spool = spool_open(ctx.conf->smtpd.spool, err, sizeof(err))) == NULL)
		fatalx("worker %zu: spool %s: %s", idx, ctx.conf->smtpd.spool, err);
	/* Fail closed but keep serving: a missing map makes RCPT answer 451 (smtpd_map). */
	if ((ctx.map = map_open(ctx.conf->map.db, err, sizeof(err))) == NULL)
		log_warnx("worker %zu: map %s: %s: recipients get 451", idx, ctx.conf->map.db, err);
	else
		map_set_check_interval(ctx.map, ctx.conf->map.reload_check_ms);
	ev_timer_init(&ctx.commit_timer);
	/* Threads only after the fork: a child of a threaded process inherits just one. */
	if ((ctx.fsync = spool_fsync_new(SMTPD_FSYNC_THREADS, err, sizeof(err))) == NULL)
		fatalx("worker %zu: %s", idx, err);
	if (ev_io_set(ctx.loop, spool_fsync_eventfd(ctx.fsync), EV_READ, smtpd_commit_io, &ctx) ==
	    -1)
		fatal("ev_io_set");
	if (ev_signal_add(ctx.loop, SIGTERM, worker_signal, &ctx) == -1 ||
	    ev_signal_add(ctx.loop, SIGINT, worker_signal, &ctx) == -1 ||
	    ev_signal_add(ctx.loop, SIGHUP, worker_signal, &ctx) == -1)
		fatal("ev_signal_add");
	smtpd_listeners_start(&ctx);
	smtpd_control_start(&ctx);
	log_debug("worker %zu: running", idx);
	if (ev_run(ctx.loop) == -1)
		log_warn("worker %zu: event loop", idx);
	/* Answer what is on its way to disk, then close; unacknowledged messages' tmp files go. */
	smtpd_commit_drain(&ctx);
	while (ctx.sessions != NULL) {
		smtpd_session_close(ctx.sessions, "shutdown");
		smtpd_session_free(ctx.sessions);
	}
	smtpd_commit_drain(&ctx); /* files of the sessions just closed: removed */
	ev_timer_stop(ctx.loop, &ctx.commit_timer);
	(void)ev_io_del(ctx.loop, spool_fsync_eventfd(ctx.fsync));
	spool_fsync_free(ctx.fsync);
	smtpd_control_stop(&ctx);
	if (ctx.map != NULL)
		map_close(ctx.map);
	spool_close(ctx.spool);
	ipcount_free(&ctx.ips);
	smtpd_verify_cache_free(&ctx);
	ev_loop_free(ctx.loop);
	_exit(0);
}

/* ---- master ---- */

static void
master_close_listeners(struct smtpd_master *m)
{
	size_t i, j;

	for (i = 0; i < m->nworkers; i++)
		for (j = 0; j < m->nlisteners; j++)
			close(m->sets[i][j].fd);
}

static void
master_spawn(struct smtpd_master *m, size_t idx)
{
	pid_t pid = fork();

	if (pid == -1) {
		log_warn("fork");
		return;
	}
	if (pid == 0) {
		/* A child must not outlive a master killed with -9: nobody would stop it. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
			log_warn("prctl PR_SET_PDEATHSIG");
		if (getppid() == 1)
			_exit(0);
		ev_loop_free(m->loop);
		spool_close(m->spool);
		m->spool = NULL;
		if (idx == RUNNER_SLOT) {
			master_close_listeners(m);
			_exit(queue_runner_main(m->conf, m->conf_path));
		}
		worker_run(m, idx);
	}
	m->pids[idx] = pid;
	m->started_ms[idx] = time_mono_ms();
}

/* A receiver that died mid-message left a tmp/ file no one will finish. */
static void
master_clean_tmp(struct smtpd_master *m, size_t idx, pid_t pid)
{
	char err[512];
	int n;

	if (idx == RUNNER_SLOT || m->spool == NULL)
		return;
	if ((n = spool_recover_pid(m->spool, pid, err, sizeof(err))) == -1)
		log_warnx("spool: %s", err);
	else if (n > 0)
		log_info("spool: removed %d incomplete message(s) of worker %zu (pid %d)", n, idx,
		         (int)pid);
}

struct respawn_arg {
	struct smtpd_master *m;
	size_t idx;
};

static struct respawn_arg respawn_args[WORKERS_MAX + 1];

static void
master_respawn(struct ev_loop *loop, void *arg)
{
	struct respawn_arg *ra = arg;

	if (!ra->m->stopping && ra->m->pids[ra->idx] == 0)
		master_spawn(ra->m, ra->idx);
}

static int
master_alive(const struct smtpd_master *m)
{
	size_t i;

	for (i = 0; i <= RUNNER_SLOT; i++)
		if (m->pids[i] != 0)
			return 1;
	return 0;
}

static void
master_reload(struct smtpd_master *m)
{
	struct mailplex_conf *nc;
	SSL_CTX *ntls;
	char err[CONF_ERR_MAX];
	size_t i;

	/* Validate first: a bad file must not reach the children (they would refuse it too,
	 * but the operator reads the reason here once). */
	if ((nc = calloc(1, sizeof(*nc))) == NULL)
		return;
	if (mailplex_conf_load(m->conf_path, nc, err, sizeof(err)) == -1 ||
	    conf_check(nc, err, sizeof(err)) == -1 || tls_load(nc, &ntls, err, sizeof(err)) == -1) {
		log_warnx("reload refused, configuration unchanged: %s", err);
		mailplex_conf_free(nc);
		free(nc);
		return;
	}
	/* respawned workers start from the new configuration and certificate */
	tls_ctx_free(m->tls);
	m->tls = ntls;
	mailplex_conf_free(m->conf);
	free(m->conf);
	m->conf = nc;
	hostname_set(nc, m->hostname, sizeof(m->hostname));
	for (i = 0; i <= RUNNER_SLOT; i++)
		if (m->pids[i] != 0)
			kill(m->pids[i], SIGHUP);
	log_info("reload: configuration valid, passed to the workers");
}

static void
master_signal(struct ev_loop *loop, int signo, void *arg)
{
	struct smtpd_master *m = arg;
	size_t i;
	pid_t pid;
	int status;

	if (signo == SIGCHLD) {
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (i = 0; i <= RUNNER_SLOT; i++) {
				if (m->pids[i] != pid)
					continue;
				m->pids[i] = 0;
				master_clean_tmp(m, i, pid);
				if (m->stopping)
					break;
				if (i == RUNNER_SLOT)
					log_warnx(
					    "queue runner (pid %d) exited (status %d): restarting",
					    (int)pid, status);
				else
					log_warnx(
					    "worker %zu (pid %d) exited (status %d): restarting", i,
					    (int)pid, status);
				/* a timer, not a sleep: SIGTERM must still be heard meanwhile */
				respawn_args[i].m = m;
				respawn_args[i].idx = i;
				if (time_mono_ms() - m->started_ms[i] < RESPAWN_MIN_MS)
					ev_timer_start(loop, &m->respawn[i], RESPAWN_MIN_MS,
					               master_respawn, &respawn_args[i]);
				else
					master_spawn(m, i);
			}
		}
		if (m->stopping && !master_alive(m))
			ev_stop(loop);
		return;
	}
	if (signo == SIGHUP) {
		master_reload(m);
		return;
	}
	m->stopping = 1;
	for (i = 0; i <= RUNNER_SLOT; i++) {
		ev_timer_stop(loop, &m->respawn[i]);
		if (m->pids[i] != 0)
			kill(m->pids[i], SIGTERM);
	}
	if (!master_alive(m))
		ev_stop(loop);
}

int
main(int argc, char **argv)
{
	static struct smtpd_master m;
	const char *path = NULL;
	char err[CONF_ERR_MAX];
	int ch, foreground = 0, verbose = 0, check_only = 0;
	long ncpu;
	size_t i;

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
			verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	m.conf_path = path != NULL ? path : MAILPLEX_CONF_PATH;
	log_init("mailplex-smtpd", 1, LOG_LEVEL_INFO);
	m.conf = conf_dup(m.conf_path);
	if (conf_check(m.conf, err, sizeof(err)) == -1 ||
	    tls_load(m.conf, &m.tls, err, sizeof(err)) == -1)
		fatalx("%s", err);
	log_init("mailplex-smtpd", foreground, verbose ? LOG_LEVEL_DEBUG : m.conf->log_level);
	if (check_only) {
		printf("configuration OK\n");
		return 0;
	}
	hostname_set(m.conf, m.hostname, sizeof(m.hostname));
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	m.nworkers = m.conf->smtpd.workers > 0 ? (size_t)m.conf->smtpd.workers
	             : ncpu > 0                ? (size_t)ncpu
	                                       : 1;
	if (m.nworkers > WORKERS_MAX)
		m.nworkers = WORKERS_MAX;
	m.nlisteners = listen_count(m.conf);
	if (daemon_raise_nofile(err, sizeof(err)) == -1)
		log_warnx("%s", err);
	for (i = 0; i < m.nworkers; i++)
		m.sets[i] = bind_set(m.conf, m.nlisteners);
	spool_prepare(m.conf);
	signal(SIGPIPE, SIG_IGN);
	switch (daemon_drop_privileges(m.conf->user, err, sizeof(err))) {
	case -1:
		fatalx("%s", err);
	case 1:
		log_info("not running as root: keeping uid %u", (unsigned)geteuid());
		break;
	default:
		break;
	}
	if ((m.spool = spool_open(m.conf->smtpd.spool, err, sizeof(err))) == NULL)
		fatalx("smtpd.spool %s: %s", m.conf->smtpd.spool, err);
	if (!foreground && daemon(0, 0) == -1)
		fatal("daemon");

	if ((m.loop = ev_loop_new()) == NULL)
		fatal("ev_loop_new");
	for (i = 0; i <= RUNNER_SLOT; i++)
		ev_timer_init(&m.respawn[i]);
	if (ev_signal_add(m.loop, SIGCHLD, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGTERM, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGINT, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGHUP, master_signal, &m) == -1)
		fatal("ev_signal_add");
	for (i = 0; i < m.nworkers; i++)
		master_spawn(&m, i);
	master_spawn(&m, RUNNER_SLOT);
	log_info("started: %zu receiver(s), %zu listener(s) each, spool %s, user %s", m.nworkers,
	         m.nlisteners, m.conf->smtpd.spool, m.conf->user);
	ev_run(m.loop);
	ev_loop_free(m.loop);
	master_close_listeners(&m);
	for (i = 0; i < m.nworkers; i++)
		free(m.sets[i]);
	tls_ctx_free(m.tls);
	spool_close(m.spool);
	mailplex_conf_free(m.conf);
	free(m.conf);
	log_info("stopped");
	return 0;
}
