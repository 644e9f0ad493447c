/*
 * mailplex-check: one health check from the command line, for keepalived's MISC_CHECK
 * and monitoring systems. Owns argument parsing and the one status line; the check
 * itself is the director's code (hc_engine.c). Exit codes are Nagios': 0 OK,
 * 1 WARNING, 2 CRITICAL, 3 UNKNOWN (bad usage too). It never prints a second line.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "hc.h"
#include "log.h"
#include "tls.h"
#include "util.h"

#define CHECK_DEFAULT_TIMEOUT_MS 10000 /* monitoring-plugins' default */
#define CHECK_MAX_TIMEOUT_MS     3600000

struct check_ctx {
	struct hc_spec spec;
	struct hc_result result;
	int done;
	int verify;
	const char *ca_file;
};

static const char check_usage[] =
    "usage: mailplex-check tcp|smtp|smtps|imap|imaps|pop3|pop3s HOST:PORT [--starttls] "
    "[--timeout S] [--cert-days N] [--verify] [--ca-file F] [--servername NAME] "
    "[--helo NAME]";

static void __attribute__((noreturn, format(printf, 1, 2))) check_usage_error(const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	printf("CHECK UNKNOWN - %s; %s\n", why, check_usage);
	exit(HC_UNKNOWN);
}

static void
check_label(enum hc_type type, char *buf, size_t len)
{
	size_t i;

	(void)str_copy(buf, len, hc_type_name(type));
	for (i = 0; buf[i] != '\0'; i++)
		if (buf[i] >= 'a' && buf[i] <= 'z')
			buf[i] = (char)(buf[i] - 'a' + 'A');
}

static void
check_done(struct hc_session *s, const struct hc_result *r, void *arg)
{
	struct check_ctx *ctx = arg;

	ctx->result = *r;
	ctx->done = 1;
	ev_stop(s->loop);
}

/* Appends ", text" to the status line under construction. */
static void
check_note(char *line, size_t len, const char *text)
{
	size_t used = strlen(line);

	if (used < len)
		(void)str_format(line + used, len - used, "%s%s", used > 0 ? ", " : "", text);
}

static void
check_print(const struct check_ctx *ctx)
{
	const struct hc_result *r = &ctx->result;
	char label[16], body[512], note[64];

	check_label(ctx->spec.type, label, sizeof(label));
	body[0] = '\0';
	if (r->reason[0] != '\0')
		check_note(body, sizeof(body), r->reason);
	if (r->status <= HC_WARNING) {
		if (r->greeting[0] != '\0' && r->reason[0] == '\0')
			check_note(body, sizeof(body), r->greeting);
		else if (r->reason[0] == '\0')
			check_note(body, sizeof(body), "connected");
		if (r->starttls)
			check_note(body, sizeof(body),
			           ctx->spec.type == HC_POP3 ? "STLS ok" : "STARTTLS ok");
		else if (r->tls)
			check_note(body, sizeof(body), "TLS ok");
		if (ctx->spec.cert_warn_days > 0 && r->cert_days != HC_CERT_DAYS_NONE &&
		    r->status == HC_OK) {
			(void)str_format(note, sizeof(note), "certificate valid for %d days",
			                 r->cert_days);
			check_note(body, sizeof(body), note);
		}
	}
	(void)str_format(note, sizeof(note), "%llu ms", (unsigned long long)r->latency_ms);
	check_note(body, sizeof(body), note);
	printf("%s %s - %s %s\n", label, hc_status_name(r->status), ctx->spec.addr_str, body);
}

static void
check_parse_args(struct check_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"starttls", no_argument, NULL, 'S'},
	    {"timeout", required_argument, NULL, 't'},
	    {"cert-days", required_argument, NULL, 'D'},
	    {"verify", no_argument, NULL, 'V'},
	    {"ca-file", required_argument, NULL, 'C'},
	    {"servername", required_argument, NULL, 'n'},
	    {"helo", required_argument, NULL, 'e'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct hc_spec *spec = &ctx->spec;
	char host[SOCK_HOST_MAX], err[256];
	uint64_t u;
	uint16_t port;
	int ch;

	opterr = 0; /* our one line, not getopt's */
	while ((ch = getopt_long(argc, argv, "St:D:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'S':
			spec->starttls = 1;
			break;
		case 't':
			if (conf_parse_duration(optarg, &u) == -1 || u == 0 ||
			    u > CHECK_MAX_TIMEOUT_MS)
				check_usage_error("bad --timeout '%s'", optarg);
			spec->timeout_ms = u;
			break;
		case 'D':
			if (parse_u64(optarg, 1, 100000, &u) == -1)
				check_usage_error("bad --cert-days '%s'", optarg);
			spec->cert_warn_days = (int)u;
			break;
		case 'V':
			ctx->verify = 1;
			break;
		case 'C':
			ctx->ca_file = optarg;
			break;
		case 'n':
			if (str_copy(spec->servername, sizeof(spec->servername), optarg) == -1)
				check_usage_error("--servername too long");
			break;
		case 'e':
			if (str_copy(spec->helo, sizeof(spec->helo), optarg) == -1 ||
			    strpbrk(optarg, " \r\n") != NULL || *optarg == '\0')
				check_usage_error("bad --helo '%s'", optarg);
			break;
		case 'h':
			printf("%s\n", check_usage);
			exit(HC_OK);
		default:
			check_usage_error("unknown or incomplete option '%s'", argv[optind - 1]);
		}
	}
	if (argc - optind != 2)
		check_usage_error("need TYPE and HOST:PORT");
	if (hc_type_parse(argv[optind], &spec->type) == -1)
		check_usage_error("unknown check type '%s'", argv[optind]);
	if (sock_addr_split(argv[optind + 1], host, sizeof(host), &port, err, sizeof(err)) == -1)
		check_usage_error("%s", err);
	if (port == 0 || strcmp(host, "*") == 0)
		check_usage_error("'%s' is not a peer address", argv[optind + 1]);
	/* A name is looked up once, before the run: blocking is fine in a one-shot tool. */
	if (sock_resolve(argv[optind + 1], &spec->addr, &spec->addrlen, err, sizeof(err)) == -1)
		check_usage_error("%s", err);
	if (sock_addr_format((struct sockaddr *)&spec->addr, spec->addr_str,
	                     sizeof(spec->addr_str)) == -1)
		check_usage_error("cannot format '%s'", argv[optind + 1]);
	if (spec->servername[0] == '\0')
		(void)str_copy(spec->servername, sizeof(spec->servername), host);
	if (spec->starttls && hc_proto_steps(spec->type, 1, &(size_t){0}) == NULL)
		check_usage_error("%s has no STARTTLS (use it on smtp, imap or pop3)",
		                  hc_type_name(spec->type));
	if ((ctx->verify || ctx->ca_file != NULL || spec->cert_warn_days > 0) &&
	    !hc_spec_uses_tls(spec))
		check_usage_error(
		    "TLS options need a TLS check (smtps, imaps, pop3s or --starttls)");
	if (spec->helo[0] == '\0' &&
	    (gethostname(spec->helo, sizeof(spec->helo)) == -1 || spec->helo[0] == '\0'))
		(void)str_copy(spec->helo, sizeof(spec->helo), "localhost");
	spec->helo[sizeof(spec->helo) - 1] = '\0';
}

int
main(int argc, char **argv)
{
	struct tls_client_opts topts;
	struct check_ctx ctx;
	struct ev_loop *loop;
	char err[TLS_ERR_MAX];

	memset(&ctx, 0, sizeof(ctx));
	ctx.spec.timeout_ms = CHECK_DEFAULT_TIMEOUT_MS;
	log_init("mailplex-check", 1, LOG_LEVEL_ERR);
	/* A peer closing while we write must be a CRITICAL line, not a silent death. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		printf("CHECK UNKNOWN - cannot ignore SIGPIPE\n");
		return HC_UNKNOWN;
	}
	check_parse_args(&ctx, argc, argv);
	if (hc_spec_uses_tls(&ctx.spec)) {
		topts.verify = ctx.verify;
		topts.ca_file = ctx.ca_file;
		if ((ctx.spec.ssl_ctx = tls_client_ctx_new(&topts, err, sizeof(err))) == NULL) {
			printf("CHECK UNKNOWN - %s\n", err);
			return HC_UNKNOWN;
		}
	}
	if ((loop = ev_loop_new()) == NULL) {
		printf("CHECK UNKNOWN - cannot create the event loop\n");
		tls_ctx_free(ctx.spec.ssl_ctx);
		return HC_UNKNOWN;
	}
	{
		struct hc_session sess;

		hc_session_init(&sess);
		if (hc_session_start(&sess, loop, &ctx.spec, check_done, &ctx) == -1 ||
		    ev_run(loop) == -1 || !ctx.done) {
			hc_session_abort(&sess);
			printf("CHECK UNKNOWN - %s: the check could not run\n", ctx.spec.addr_str);
			ev_loop_free(loop);
			tls_ctx_free(ctx.spec.ssl_ctx);
			return HC_UNKNOWN;
		}
	}
	check_print(&ctx);
	ev_loop_free(loop);
	tls_ctx_free(ctx.spec.ssl_ctx);
	return (int)ctx.result.status;
}
