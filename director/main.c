/*
 * mailplex-director: arguments, configuration and its reload, signals, capabilities and
 * the event loop. Stopping or reloading never flushes or rewrites the IPVS table by
 * itself: what is there stays until a reconcile pass decides otherwise. A bad config on
 * reload is logged and the running one kept.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "director.h"
#include "log.h"
#include "util.h"

static void __attribute__((noreturn)) director_usage(void)
{
	fprintf(stderr, "usage: mailplex-director [-dn] [-f CONFIG]\n"
	                "       mailplex-director --keepalived-conf [-f CONFIG]\n"
	                "       mailplex-director --health [-f CONFIG]\n");
	exit(1);
}

/* Loads and checks a config; 0, or -1 with err as "file:line: message" or "file: ...". */
static int
director_conf_load(const char *path, struct mailplex_conf *conf, char *err, size_t errlen)
{
	char why[DIRECTOR_ERR_MAX];

	if (mailplex_conf_load(path, conf, err, errlen) == -1)
		return -1;
	if (state_conf_check(&conf->director, why, sizeof(why)) == -1) {
		(void)str_format(err, errlen, "%s: %s", path, why);
		mailplex_conf_free(conf);
		return -1;
	}
	return 0;
}

/* Prints the keepalived.conf; its track_script runs this binary with --health. */
static int
director_print_keepalived(const struct director *d)
{
	char exe[PATH_MAX], conf[PATH_MAX], err[DIRECTOR_ERR_MAX];

	if (realpath("/proc/self/exe", exe) == NULL || realpath(d->conf_path, conf) == NULL) {
		fprintf(stderr, "mailplex-director: %s\n", strerror(errno));
		return 1;
	}
	if (vrrp_keepalived_conf(stdout, &d->conf.director, exe, conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailplex-director: %s: %s\n", d->conf_path, err);
		return 1;
	}
	return 0;
}

/* keepalived's track_script: 0 when the running director says it is healthy, else 1. */
static int
director_health(const struct director *d)
{
	const char *message, *body;
	char err[CONTROL_ERR_MAX], *reply;
	size_t replylen, messagelen;
	int ok = 0;

	if (control_client_request(d->conf.director.control, "health", 1000, &reply, &replylen,
	                           err, sizeof(err)) == -1) {
		fprintf(stderr, "mailplex-director: health: %s: %s\n", d->conf.director.control,
		        err);
		return 1;
	}
	if (control_reply_parse(reply, &ok, &message, &messagelen, &body) == -1)
		ok = 0;
	else if (!ok)
		fprintf(stderr, "mailplex-director: health: %.*s\n", (int)messagelen, message);
	free(reply);
	return ok ? 0 : 1;
}

static void
director_sysctl_warn(void *arg, const char *msg)
{
	log_warnx("%s", msg);
}

/*
 * Netlink checks CAP_NET_ADMIN when a message is sent, so the director keeps it for its
 * whole life; every other capability goes, from the bounding set too.
 */
static void
director_drop_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (geteuid() != 0)
		return;
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (cap != CAP_NET_ADMIN && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == -1 &&
		    errno != EINVAL) {
			log_warn("capabilities: cannot drop %d from the bounding set", cap);
			return;
		}
	memset(data, 0, sizeof(data));
	data[CAP_TO_INDEX(CAP_NET_ADMIN)].effective = CAP_TO_MASK(CAP_NET_ADMIN);
	data[CAP_TO_INDEX(CAP_NET_ADMIN)].permitted = CAP_TO_MASK(CAP_NET_ADMIN);
	if (syscall(SYS_capset, &hdr, data) == -1) {
		log_warn("capabilities: cannot keep only CAP_NET_ADMIN");
		return;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1)
		log_warn("capabilities: no_new_privs");
	log_debug("capabilities: only CAP_NET_ADMIN left");
}

static void
director_reload(struct director *d)
{
	struct mailplex_conf nc;
	struct director_state ns;
	struct member_relay *live[MEMBERS_MAX];
	char err[DIRECTOR_ERR_MAX];

	if (director_conf_load(d->conf_path, &nc, err, sizeof(err)) == -1) {
		log_warnx("reload: %s; keeping the running configuration", err);
		return;
	}
	/*
	 * Joined relays stay joined across a reload, their services matched anew; one the new
	 * config lists by name or address gives way to the listed one.
	 */
	(void)members_yield(&d->members, &nc.director);
	if (state_init_joined(&ns, &nc.director, live, members_live(&d->members, live)) == -1) {
		log_warnx("reload: out of memory; keeping the running configuration");
		members_unyield(&d->members);
		mailplex_conf_free(&nc);
		return;
	}
	/* Relays new to the config start from the kernel; known ones keep what they had. */
	state_note_kernel(&ns, d->kernel, d->nkernel);
	state_health_from_kernel(&ns);
	state_carry(&ns, &d->state);
	if (checks_start(d, &ns, err, sizeof(err)) == -1) {
		log_warnx("reload: %s; keeping the running configuration", err);
		members_unyield(&d->members);
		state_free(&ns);
		mailplex_conf_free(&nc);
		return;
	}
	if (strcmp(nc.director.control, d->conf.director.control) != 0)
		log_warnx("reload: the control socket stays %s until a restart",
		          d->conf.director.control);
	if ((nc.director.vrrp.interface == NULL) != (d->conf.director.vrrp.interface == NULL) ||
	    strcmp(nc.director.vrrp.fifo, d->conf.director.vrrp.fifo) != 0)
		log_warnx("reload: the vrrp notify FIFO stays as it was until a restart");
	if ((nc.director.cluster_listen == NULL) != (d->conf.director.cluster_listen == NULL) ||
	    (nc.director.cluster_listen != NULL &&
	     strcmp(nc.director.cluster_listen, d->conf.director.cluster_listen) != 0) ||
	    strcmp(nc.director.cluster_key, d->conf.director.cluster_key) != 0)
		log_warnx("reload: cluster_listen and cluster_key stay as they were until a restart");
	if ((nc.director.map_listen == NULL) != (d->conf.director.map_listen == NULL) ||
	    (nc.director.map_listen != NULL &&
	     strcmp(nc.director.map_listen, d->conf.director.map_listen) != 0))
		log_warnx("reload: map_listen stays as it was until a restart");
	checks_stop(&d->state);
	state_free(&d->state);
	members_reap(&d->members);
	mailplex_conf_free(&d->conf);
	d->conf = nc;
	d->state = ns;
	/* ns pointed at the struct on this stack; its members point into heap arrays. */
	d->state.conf = &d->conf.director;
	log_set_level((enum log_level)d->conf.log_level);
	(void)sysctl_timeouts_apply(d);
	(void)sysctl_check(d->proc_root, &d->conf.director, director_sysctl_warn, d);
	log_info("reload: %s: %zu services, %zu relays", d->conf_path, d->state.nservices,
	         d->state.nrelays);
	reconcile_soon(d);
}

static void
director_signal(struct ev_loop *loop, int signo, void *arg)
{
	struct director *d = arg;

	switch (signo) {
	case SIGHUP:
		director_reload(d);
		break;
	case SIGTERM:
	case SIGINT:
		log_info("signal %d: stopping, the IPVS table stays as it is", signo);
		ev_stop(loop);
		break;
	}
}

static int
director_start(struct director *d, char *err, size_t errlen)
{
	static const int signals[] = {SIGHUP, SIGTERM, SIGINT};

	if ((d->loop = ev_loop_new()) == NULL) {
		(void)str_copy(err, errlen, "cannot create the event loop");
		return -1;
	}
	for (size_t i = 0; i < ARRAY_LEN(signals); i++)
		if (ev_signal_add(d->loop, signals[i], director_signal, d) == -1) {
			(void)str_format(err, errlen, "signal %d: %s", signals[i], strerror(errno));
			return -1;
		}
	ev_timer_init(&d->periodic);
	ev_timer_init(&d->soon);
	(void)sysctl_timeouts_apply(d);
	(void)sysctl_check(d->proc_root, &d->conf.director, director_sysctl_warn, d);
	if (state_init(&d->state, &d->conf.director) == -1) {
		(void)str_copy(err, errlen, "out of memory");
		return -1;
	}
	/* A restarted director keeps what the kernel has until its checks say otherwise. */
	if (reconcile_dump(d) == -1) {
		(void)str_format(err, errlen, "cannot read the IPVS table: %s", d->last_error);
		return -1;
	}
	state_health_from_kernel(&d->state);
	if (checks_start(d, &d->state, err, errlen) == -1)
		return -1;
	if (vrrp_fifo_open(d, err, errlen) == -1)
		return -1;
	if (members_open(d, err, errlen) == -1)
		return -1;
	if (mapserve_open(d, err, errlen) == -1)
		return -1;
	d->control = control_server_new(d->loop, d->conf.director.control, director_control_handle,
	                                d, err, errlen);
	if (d->control == NULL)
		return -1;
	reconcile_soon(d);
	return 0;
}

static void
director_stop(struct director *d)
{
	control_server_free(d->control);
	vrrp_fifo_close(d);
	if (d->state.members != NULL)
		checks_stop(&d->state);
	state_free(&d->state);
	mapserve_close(d);
	members_close(d);
	reconcile_kernel_free(d);
	if (d->loop != NULL) {
		ev_timer_stop(d->loop, &d->periodic);
		ev_timer_stop(d->loop, &d->soon);
		ev_loop_free(d->loop);
	}
	ipvs_close(d->ipvs);
	mailplex_conf_free(&d->conf);
}

int
main(int argc, char **argv)
{
	struct director d;
	struct ipvs_error ierr;
	char err[DIRECTOR_ERR_MAX];
	int ch, foreground = 0, check_only = 0, rc = 0, mode = 0;
	static const struct option longopts[] = {
	    {"keepalived-conf", no_argument, NULL, 'K'},
	    {"health", no_argument, NULL, 'H'},
	    {NULL, 0, NULL, 0},
	};

	memset(&d, 0, sizeof(d));
	d.vrrp.fd = -1;
	d.members.fd = -1;
	d.mapserve.fd = -1;
	d.mapserve.dbfd = -1;
	d.conf_path = MAILPLEX_CONF_PATH;
	d.proc_root = "/proc";
	while ((ch = getopt_long(argc, argv, "df:n", longopts, NULL)) != -1) {
		switch (ch) {
		case 'K':
		case 'H':
			mode = ch;
			break;
		case 'd':
			foreground = 1;
			break;
		case 'f':
			d.conf_path = optarg;
			break;
		case 'n':
			check_only = 1;
			break;
		default:
			director_usage();
		}
	}
	if (optind != argc)
		director_usage();
	log_init("mailplex-director", foreground || check_only, LOG_LEVEL_INFO);
	if (director_conf_load(d.conf_path, &d.conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (mode != 0) {
		rc = mode == 'K' ? director_print_keepalived(&d) : director_health(&d);
		mailplex_conf_free(&d.conf);
		return rc;
	}
	if (check_only) {
		printf("%s: configuration OK (%zu services, %zu relays)\n", d.conf_path,
		       d.conf.director.services.n, d.conf.director.relays.n);
		mailplex_conf_free(&d.conf);
		return 0;
	}
	log_set_level((enum log_level)d.conf.log_level);
	/* A health check's peer may close while we write: that is a failed check, not death. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		fatal("SIGPIPE");
	if ((d.ipvs = ipvs_open(&ierr)) == NULL) {
		mailplex_conf_free(&d.conf);
		fatalx("cannot open IPVS: %s", ierr.msg);
	}
	if (!foreground && daemon(0, 0) == -1) {
		director_stop(&d);
		fatal("daemon");
	}
	if (director_start(&d, err, sizeof(err)) == -1) {
		director_stop(&d);
		fatalx("%s", err);
	}
	director_drop_caps();
	log_info("started: %s, %zu services, %zu relays, control %s", d.conf_path,
	         d.state.nservices, d.state.nrelays, d.conf.director.control);
	if (ev_run(d.loop) == -1) {
		log_warn("event loop");
		rc = 1;
	}
	director_stop(&d);
	return rc;
}
