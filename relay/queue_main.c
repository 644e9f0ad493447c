/*
 * mailplex-queue: runs mailplex-smtpd's queue runner on its own, in the foreground (tests,
 * debugging), and puts a message read from stdin into the spool the way a receiver does.
 * Not installed: mailplex-smtpd's master forks the runner in production.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mailplex_conf.h"
#include "queue.h"
#include "spool.h"
#include "util.h"

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: mailplex-queue [-d] [-f CONFIG] run\n"
	                "       mailplex-queue [-f CONFIG] inject SENDER RECIPIENT... <MESSAGE\n");
	exit(2);
}

/* The message on stdin, LF or CRLF lines, into queue/ (as if a receiver took it). */
static int
queue_inject(const struct mailplex_conf *conf, int argc, char **argv)
{
	struct spool_envelope env;
	struct spool_writer *w;
	struct spool *sp;
	char err[512], buf[65536];
	size_t n, i;
	int tempfail = 0;

	if (argc < 2)
		usage();
	memset(&env, 0, sizeof(env));
	if (str_copy(env.sender, sizeof(env.sender), strcmp(argv[0], "<>") == 0 ? "" : argv[0]) ==
	    -1)
		usage();
	str_copy(env.client_addr, sizeof(env.client_addr), "127.0.0.1");
	str_copy(env.helo, sizeof(env.helo), "mailplex-queue");
	env.arrival = (uint64_t)time(NULL);
	env.body_type = SPOOL_BODY_8BITMIME;
	env.nrcpt = (size_t)argc - 1;
	if ((env.rcpt = calloc(env.nrcpt, sizeof(*env.rcpt))) == NULL)
		fatal("calloc");
	for (i = 0; i < env.nrcpt; i++)
		if (str_copy(env.rcpt[i].addr, sizeof(env.rcpt[i].addr), argv[i + 1]) == -1 ||
		    str_copy(env.rcpt[i].orig, sizeof(env.rcpt[i].orig), argv[i + 1]) == -1)
			usage();
	if ((sp = spool_open(conf->smtpd.spool, err, sizeof(err))) == NULL)
		fatalx("spool %s: %s", conf->smtpd.spool, err);
	if ((w = spool_writer_new(sp, &env, &tempfail, err, sizeof(err))) == NULL)
		fatalx("spool: %s", err);
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		if (spool_writer_body(w, buf, n, &tempfail, err, sizeof(err)) == -1)
			fatalx("spool: %s", err);
	if (ferror(stdin))
		fatal("stdin");
	if (spool_writer_commit(w, &tempfail, err, sizeof(err)) == -1)
		fatalx("spool: %s", err);
	printf("%s\n", env.qid);
	free(env.rcpt);
	spool_close(sp);
	return 0;
}

int
main(int argc, char **argv)
{
	struct mailplex_conf conf;
	const char *conf_path = NULL;
	char err[CONF_ERR_MAX];
	int ch, debug = 0, rc;

	while ((ch = getopt(argc, argv, "df:")) != -1) {
		switch (ch) {
		case 'd':
			debug = 1;
			break;
		case 'f':
			conf_path = optarg;
			break;
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		usage();
	log_init("mailplex-queue", 1, LOG_LEVEL_INFO);
	if (mailplex_conf_load(conf_path, &conf, err, sizeof(err)) == -1)
		fatalx("%s", err);
	log_set_level(debug ? LOG_LEVEL_DEBUG : (enum log_level)conf.log_level);
	if (strcmp(argv[0], "run") == 0 && argc == 1)
		rc = queue_runner_main(&conf, conf_path != NULL ? conf_path : MAILPLEX_CONF_PATH);
	else if (strcmp(argv[0], "inject") == 0)
		rc = queue_inject(&conf, argc - 1, argv + 1);
	else
		usage();
	mailplex_conf_free(&conf);
	return rc;
}
