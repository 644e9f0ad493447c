/*
 * mailplexctl: sends one request to a mailplex daemon's control socket and prints the
 * reply. Owns argument checking and exit codes only: 0 the daemon said ok, 1 it said
 * error, 2 usage, config or connection trouble. It never changes anything by itself, except
 * `move`, a workflow of its own (move.c).
 * The proxy's and mailplex-smtpd's workers each serve <control>.<index>: their commands go
 * to all of them.
 */
#include <getopt.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "control.h"
#include "log.h"
#include "mailplex_conf.h"
#include "move.h"
#include "util.h"

#define CTL_EXIT_OK    0
#define CTL_EXIT_ERROR 1
#define CTL_EXIT_USAGE 2
#define CTL_TIMEOUT_MS 10000

struct ctl_command {
	const char *daemon;
	const char *name;
	int min_args;
	int max_args;
	const char *usage;
};

static const struct ctl_command ctl_commands[] = {
    {"director", "status", 0, 0, "director status"},
    {"director", "health", 0, 0, "director health"},
    {"director", "drain", 1, 2, "director drain RELAY [SERVICE]"},
    {"director", "undrain", 1, 2, "director undrain RELAY [SERVICE]"},
    {"map", "publish", 0, 0, "map publish"},
    {"map", "status", 0, 0, "map status"},
    {"proxy", "status", 0, 0, "proxy status"},
    {"proxy", "kick", 1, 1, "proxy kick USER"},
    {"queue", "status", 0, 0, "queue status"},
    {"queue", "list", 0, 4, "queue list [backend NAME] [rcpt ADDRESS]"},
    {"queue", "show", 1, 1, "queue show QID"},
    {"queue", "flush", 0, 1, "queue flush [QID]"},
    {"queue", "hold", 1, 1, "queue hold QID"},
    {"queue", "release", 1, 1, "queue release QID"},
    {"queue", "delete", 1, 1, "queue delete QID"},
    {"smtp", "status", 0, 0, "smtp status"},
};

static void __attribute__((noreturn)) ctl_usage(const char *why)
{
	if (why != NULL)
		fprintf(stderr, "mailplexctl: %s\n", why);
	fprintf(stderr, "usage: mailplexctl [-f CONFIG] [-s SOCKET] [-t TIMEOUT] COMMAND\n"
	                "commands:\n");
	for (size_t i = 0; i < ARRAY_LEN(ctl_commands); i++)
		fprintf(stderr, "  %s\n", ctl_commands[i].usage);
	fprintf(stderr, "  move USER --to BACKEND | move --batch FILE | move status [USER] | "
	                "move config\n");
	exit(CTL_EXIT_USAGE);
}

/* The socket a daemon listens on, from the config (its default if the file has none). */
static int
ctl_socket_path(const char *conf_path, const char *daemon, char *path, size_t len)
{
	struct mailplex_conf conf;
	char err[CONF_ERR_MAX];
	int r;

	if (mailplex_conf_load(conf_path, &conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailplexctl: %s\n", err);
		return -1;
	}
	/* The map is published by the director that holds its source. */
	if (strcmp(daemon, "director") == 0 || strcmp(daemon, "map") == 0)
		r = str_copy(path, len, conf.director.control);
	else if (strcmp(daemon, "proxy") == 0)
		r = str_copy(path, len, conf.proxy.control);
	else if (strcmp(daemon, "queue") == 0)
		r = str_copy(path, len, conf.smtpd.queue_control);
	else if (strcmp(daemon, "smtp") == 0)
		r = str_copy(path, len, conf.smtpd.control);
	else
		r = -1;
	mailplex_conf_free(&conf);
	if (r == -1)
		fprintf(stderr, "mailplexctl: no control socket known for %s\n", daemon);
	return r;
}

/* One request to one socket; prints the reply's body. Returns the exit code. */
static int
ctl_ask(const char *sock, const struct ctl_command *cmd, const char *line, uint64_t timeout_ms,
        unsigned long *kicked)
{
	const char *message, *body, *k;
	char err[CONTROL_ERR_MAX], *reply;
	size_t replylen, messagelen;
	int ok;

	if (control_client_request(sock, line, timeout_ms, &reply, &replylen, err, sizeof(err)) ==
	    -1) {
		fprintf(stderr, "mailplexctl: %s: %s\n", sock, err);
		return CTL_EXIT_USAGE;
	}
	if (control_reply_parse(reply, &ok, &message, &messagelen, &body) == -1) {
		fprintf(stderr, "mailplexctl: %s: not a control reply\n", sock);
		free(reply);
		return CTL_EXIT_USAGE;
	}
	if (!ok) {
		fprintf(stderr, "mailplexctl: %s: error: %.*s\n", cmd->daemon, (int)messagelen,
		        message);
		free(reply);
		return CTL_EXIT_ERROR;
	}
	fputs(body, stdout);
	/* A proxy worker's kick answer: "worker N pid P: kicked C session(s) of USER". */
	if (kicked != NULL && (k = strstr(body, ": kicked ")) != NULL)
		*kicked += strtoul(k + 9, NULL, 10);
	free(reply);
	return CTL_EXIT_OK;
}

/*
 * The proxy: every worker's socket (base.0, base.1, ..., and base.N.old-PID of a worker
 * finishing its sessions after a reload: the glob matches both), or base itself when
 * there are none (-s naming one worker's socket). The worst exit code wins; kick adds a
 * total.
 */
static int
ctl_fan_out(const char *base, const struct ctl_command *cmd, const char *line,
            uint64_t timeout_ms)
{
	char pattern[CONTROL_REQUEST_MAX_BYTES + 8];
	unsigned long kicked = 0;
	glob_t g;
	int rc = CTL_EXIT_OK, r, gr;

	if (str_format(pattern, sizeof(pattern), "%s.[0-9]*", base) == -1) {
		fprintf(stderr, "mailplexctl: socket path too long\n");
		return CTL_EXIT_USAGE;
	}
	memset(&g, 0, sizeof(g));
	gr = glob(pattern, GLOB_NOESCAPE, NULL, &g);
	if (gr != 0 && gr != GLOB_NOMATCH) {
		fprintf(stderr, "mailplexctl: %s: cannot list the worker sockets\n", pattern);
		globfree(&g);
		return CTL_EXIT_USAGE;
	}
	if (g.gl_pathc == 0) {
		rc = ctl_ask(base, cmd, line, timeout_ms, &kicked);
	} else {
		for (size_t i = 0; i < g.gl_pathc; i++)
			if ((r = ctl_ask(g.gl_pathv[i], cmd, line, timeout_ms, &kicked)) > rc)
				rc = r;
	}
	globfree(&g);
	if (strcmp(cmd->name, "kick") == 0 && rc == CTL_EXIT_OK)
		printf("kicked %lu session(s) in total\n", kicked);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *conf_path = NULL, *sock = NULL;
	const struct ctl_command *cmd = NULL;
	char path[CONTROL_REQUEST_MAX_BYTES], line[CONTROL_REQUEST_MAX_BYTES];
	uint64_t timeout_ms = CTL_TIMEOUT_MS;
	static char director_word[] = "director";
	char *alias[6];
	int ch, nargs, rc;

	log_init("mailplexctl", 1, LOG_LEVEL_WARN);
	while ((ch = getopt(argc, argv, "+f:s:t:h")) != -1) {
		switch (ch) {
		case 'f':
			conf_path = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 't':
			if (conf_parse_duration(optarg, &timeout_ms) == -1 || timeout_ms == 0)
				ctl_usage("bad timeout");
			break;
		case 'h':
			ctl_usage(NULL);
		default:
			ctl_usage(NULL);
		}
	}
	argc -= optind;
	argv += optind;
	/* "mailplexctl move ...": a workflow of its own (move.c), not one request. */
	if (argc >= 1 && strcmp(argv[0], "move") == 0)
		return move_main(conf_path, argc - 1, argv + 1);
	/* "mailplexctl drain RELAY [SERVICE]": drain and undrain are the director's. */
	if (argc >= 1 && argc < (int)ARRAY_LEN(alias) &&
	    (strcmp(argv[0], "drain") == 0 || strcmp(argv[0], "undrain") == 0)) {
		alias[0] = director_word;
		for (int i = 0; i < argc; i++)
			alias[i + 1] = argv[i];
		argv = alias;
		argc++;
	}
	if (argc < 2)
		ctl_usage("need a daemon and a command");
	nargs = argc - 2;
	for (size_t i = 0; i < ARRAY_LEN(ctl_commands) && cmd == NULL; i++)
		if (strcmp(argv[0], ctl_commands[i].daemon) == 0 &&
		    strcmp(argv[1], ctl_commands[i].name) == 0)
			cmd = &ctl_commands[i];
	if (cmd == NULL)
		ctl_usage("unknown command");
	if (nargs < cmd->min_args || nargs > cmd->max_args) {
		fprintf(stderr, "mailplexctl: usage: mailplexctl %s\n", cmd->usage);
		return CTL_EXIT_USAGE;
	}
	/* The request is words separated by one blank: a word with a blank cannot be sent. */
	if (str_format(line, sizeof(line), "%s%s", strcmp(cmd->daemon, "map") == 0 ? "map-" : "",
	               cmd->name) == -1)
		ctl_usage("request too long");
	for (int i = 2; i < argc; i++) {
		size_t l = strlen(line);

		if (argv[i][0] == '\0' || strpbrk(argv[i], " \t\r\n") != NULL)
			ctl_usage("an argument is empty or has a blank");
		if (str_format(line + l, sizeof(line) - l, " %s", argv[i]) == -1)
			ctl_usage("request too long");
	}
	if (sock == NULL) {
		if (ctl_socket_path(conf_path, cmd->daemon, path, sizeof(path)) == -1)
			return CTL_EXIT_USAGE;
		sock = path;
	}
	if (strcmp(cmd->daemon, "proxy") == 0 || strcmp(cmd->daemon, "smtp") == 0)
		rc = ctl_fan_out(sock, cmd, line, timeout_ms);
	else
		rc = ctl_ask(sock, cmd, line, timeout_ms, NULL);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "mailplexctl: cannot write the reply\n");
		return CTL_EXIT_USAGE;
	}
	return rc;
}
