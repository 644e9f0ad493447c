/*
 * mailplex-proxy: arguments, configuration, TLS contexts, binding every listener once per
 * worker (SO_REUSEPORT), dropping privileges, and the master that starts, restarts and
 * stops the workers. Workers run one event loop each (proxy_listen.c, proxy_session.c).
 * The master never talks to a client; nothing here runs after a peer could cause it.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/resource.h>
#include <sys/wait.h>

#include "log.h"
#include "proxy.h"
#include "tls.h"
#include "util.h"

#define LISTEN_BACKLOG 511
#define RESPAWN_MIN_MS 1000 /* a worker that dies sooner is restarted no faster */
#define WORKERS_MAX    256

struct proxy_master {
	const struct mailplex_conf *conf;
	struct ev_loop *loop;
	size_t nworkers;
	pid_t pids[WORKERS_MAX];
	uint64_t started_ms[WORKERS_MAX];
	struct proxy_listener *sets[WORKERS_MAX]; /* one listener set per worker */
	size_t nlisteners;
	SSL_CTX *tls_server;
	SSL_CTX *tls_client;
	int stopping;
};

static void
usage(void)
{
	fprintf(stderr, "usage: mailplex-proxy [-dnv] [-f file]\n");
	exit(2);
}

static size_t
count_listeners(const struct mailplex_conf_proxy *pc)
{
	return pc->imap.n + pc->imaps.n + pc->pop3.n + pc->pop3s.n;
}

/* Binds one full set of listeners (one per worker: the kernel spreads connections). */
static struct proxy_listener *
bind_set(const struct mailplex_conf_proxy *pc, size_t n)
{
	const struct {
		const struct conf_strlist *list;
		enum proxy_proto proto;
		int tls;
	} kinds[] = {
	    {&pc->imap, PROXY_IMAP, 0},
	    {&pc->imaps, PROXY_IMAP, 1},
	    {&pc->pop3, PROXY_POP3, 0},
	    {&pc->pop3s, PROXY_POP3, 1},
	};
	struct proxy_listener *set = calloc(n, sizeof(*set));
	struct sockaddr_storage ss;
	socklen_t sslen;
	char err[256];
	size_t k, i, j = 0;

	if (set == NULL)
		fatal("calloc");
	for (k = 0; k < ARRAY_LEN(kinds); k++) {
		for (i = 0; i < kinds[k].list->n; i++, j++) {
			const char *a = kinds[k].list->v[i];

			if (sock_addr_parse(a, &ss, &sslen, err, sizeof(err)) == -1)
				fatalx("listener %s: %s", a, err);
			set[j].fd = sock_listen(&ss, sslen, LISTEN_BACKLOG, SOCK_F_REUSEPORT, err,
			                        sizeof(err));
			if (set[j].fd == -1)
				fatalx("listener %s: %s", a, err);
			set[j].proto = kinds[k].proto;
			set[j].implicit_tls = kinds[k].tls;
			str_copy(set[j].addr, sizeof(set[j].addr), a);
		}
	}
	return set;
}

static void
drop_privileges(const char *user)
{
	struct passwd *pw;

	if (geteuid() != 0) {
		log_info("not running as root: keeping uid %u", (unsigned)geteuid());
		return;
	}
	if ((pw = getpwnam(user)) == NULL)
		fatalx("user %s: no such user", user);
	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("dropping privileges to %s", user);
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	/* Each logged-in session holds two sockets and, with splice, two pipes. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit NOFILE");
	}
}

/* ---- worker ---- */

static void
worker_signal(struct ev_loop *loop, int signo, void *arg)
{
	struct proxy_ctx *ctx = arg;

	if (signo == SIGHUP) {
		/* TODO: configuration and certificates; the map is reread now. */
		if (map_reopen_if_changed(ctx->map, 1) == 1)
			log_info("map reloaded (version %llu)",
			         (unsigned long long)map_version(ctx->map));
		return;
	}
	ev_stop(loop);
}

static void __attribute__((noreturn)) worker_run(struct proxy_master *m, size_t idx)
{
	struct proxy_ctx ctx;
	char err[256];
	size_t i, j;

	for (i = 0; i < m->nworkers; i++)
		if (i != idx)
			for (j = 0; j < m->nlisteners; j++)
				close(m->sets[i][j].fd);
	memset(&ctx, 0, sizeof(ctx));
	ctx.conf = m->conf;
	ctx.tls_server = m->tls_server;
	ctx.tls_client = m->tls_client;
	ctx.listeners = m->sets[idx];
	ctx.nlisteners = m->nlisteners;
	ctx.worker = idx;
	if ((ctx.loop = ev_loop_new()) == NULL)
		fatal("ev_loop_new");
	if ((ctx.map = map_open(m->conf->map.db, err, sizeof(err))) == NULL)
		fatalx("map %s: %s", m->conf->map.db, err);
	map_set_check_interval(ctx.map, m->conf->map.reload_check_ms);
	if (ev_signal_add(ctx.loop, SIGTERM, worker_signal, &ctx) == -1 ||
	    ev_signal_add(ctx.loop, SIGINT, worker_signal, &ctx) == -1 ||
	    ev_signal_add(ctx.loop, SIGHUP, worker_signal, &ctx) == -1)
		fatal("ev_signal_add");
	proxy_listeners_start(&ctx);
	proxy_control_start(&ctx);
	log_debug("worker %zu: running", idx);
	if (ev_run(ctx.loop) == -1)
		log_warn("worker %zu: event loop", idx);
	while (ctx.sessions != NULL) {
		proxy_session_close(ctx.sessions, "shutdown");
		proxy_session_run(ctx.sessions);
	}
	proxy_control_stop(&ctx);
	map_close(ctx.map);
	ev_loop_free(ctx.loop);
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
		ev_loop_free(m->loop);
		worker_run(m, idx);
	}
	m->pids[idx] = pid;
	m->started_ms[idx] = time_mono_ms();
}

static void
master_signal(struct ev_loop *loop, int signo, void *arg)
{
	struct proxy_master *m = arg;
	size_t i;
	pid_t pid;
	int status, alive = 0;

	if (signo == SIGCHLD) {
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			for (i = 0; i < m->nworkers; i++) {
				if (m->pids[i] != pid)
					continue;
				m->pids[i] = 0;
				if (m->stopping)
					break;
				log_warnx("worker %zu (pid %d) exited (status %d): restarting", i,
				          (int)pid, status);
				if (time_mono_ms() - m->started_ms[i] < RESPAWN_MIN_MS)
					usleep(RESPAWN_MIN_MS * 1000);
				master_spawn(m, i);
			}
		}
		for (i = 0; i < m->nworkers; i++)
			alive |= m->pids[i] != 0;
		if (m->stopping && !alive)
			ev_stop(loop);
		return;
	}
	for (i = 0; i < m->nworkers; i++)
		if (m->pids[i] != 0)
			kill(m->pids[i], signo == SIGHUP ? SIGHUP : SIGTERM);
	if (signo != SIGHUP) {
		m->stopping = 1;
		for (i = 0; i < m->nworkers; i++)
			alive |= m->pids[i] != 0;
		if (!alive)
			ev_stop(loop);
	}
}

int
main(int argc, char **argv)
{
	static struct mailplex_conf conf;
	struct proxy_master m;
	struct tls_client_opts copts;
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
	log_init("mailplex-proxy", 1, LOG_LEVEL_INFO);
	if (mailplex_conf_load(path, &conf, err, sizeof(err)) == -1)
		fatalx("%s", err);
	log_init("mailplex-proxy", foreground, verbose ? LOG_LEVEL_DEBUG : conf.log_level);

	memset(&m, 0, sizeof(m));
	m.conf = &conf;
	m.nlisteners = count_listeners(&conf.proxy);
	if (m.nlisteners == 0)
		fatalx("proxy: no listeners configured (imap, imaps, pop3, pop3s)");
	if ((conf.proxy.imaps.n > 0 || conf.proxy.pop3s.n > 0) && conf.proxy.tls_cert == NULL)
		fatalx("proxy: imaps/pop3s listeners need tls_cert and tls_key");
	if ((conf.proxy.tls_cert == NULL) != (conf.proxy.tls_key == NULL))
		fatalx("proxy: tls_cert and tls_key go together");
	if (conf.proxy.tls_cert != NULL) {
		m.tls_server =
		    tls_server_ctx_new(conf.proxy.tls_cert, conf.proxy.tls_key, err, sizeof(err));
		if (m.tls_server == NULL)
			fatalx("proxy: %s", err);
		if (conf.proxy.tls_ciphers != NULL &&
		    SSL_CTX_set_cipher_list(m.tls_server, conf.proxy.tls_ciphers) != 1)
			fatalx("proxy: tls_ciphers '%s' selects no cipher", conf.proxy.tls_ciphers);
	} else if (!conf.proxy.allow_plaintext_login) {
		log_warnx(
		    "proxy: no TLS and allow_plaintext_login = false: every login is refused");
	}
	memset(&copts, 0, sizeof(copts));
	copts.verify = conf.proxy.backend_tls_verify;
	copts.ca_file = conf.proxy.backend_ca_file;
	if ((m.tls_client = tls_client_ctx_new(&copts, err, sizeof(err))) == NULL)
		fatalx("proxy: back-end TLS: %s", err);
	if (check_only) {
		printf("configuration OK\n");
		return 0;
	}

	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	m.nworkers = conf.proxy.workers > 0 ? (size_t)conf.proxy.workers
	             : ncpu > 0             ? (size_t)ncpu
	                                    : 1;
	if (m.nworkers > WORKERS_MAX)
		m.nworkers = WORKERS_MAX;
	raise_nofile();
	for (i = 0; i < m.nworkers; i++)
		m.sets[i] = bind_set(&conf.proxy, m.nlisteners);
	signal(SIGPIPE, SIG_IGN);
	drop_privileges(conf.user);
	if (!foreground && daemon(0, 0) == -1)
		fatal("daemon");

	if ((m.loop = ev_loop_new()) == NULL)
		fatal("ev_loop_new");
	if (ev_signal_add(m.loop, SIGCHLD, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGTERM, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGINT, master_signal, &m) == -1 ||
	    ev_signal_add(m.loop, SIGHUP, master_signal, &m) == -1)
		fatal("ev_signal_add");
	for (i = 0; i < m.nworkers; i++)
		master_spawn(&m, i);
	log_info("started: %zu worker(s), %zu listener(s) each, user %s", m.nworkers, m.nlisteners,
	         conf.user);
	ev_run(m.loop);
	ev_loop_free(m.loop);
	for (i = 0; i < m.nworkers; i++) {
		size_t j;

		for (j = 0; j < m.nlisteners; j++)
			close(m.sets[i][j].fd);
		free(m.sets[i]);
	}
	tls_ctx_free(m.tls_server);
	tls_ctx_free(m.tls_client);
	mailplex_conf_free(&conf);
	log_info("stopped");
	return 0;
}
