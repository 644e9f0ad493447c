/*
 * mailplex-map: compile, check, look up, dump and import the per-user map. Owns the
 * command line and the file reads; parsing is map_source's, writing map_compile's,
 * reading map's. Never writes a map except through map_compile's rename.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "import.h"
#include "log.h"
#include "map.h"
#include "map_compile.h"
#include "map_source.h"
#include "util.h"

/* A 1,000,000-user source is about 30 MB; this only guards against a wrong file. */
#define SOURCE_MAX_BYTES (1024UL * 1024 * 1024)

enum { EXIT_ROUTED = 0, EXIT_NOT_ROUTED = 1, EXIT_TROUBLE = 2 };

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: mailplex-map compile SOURCE DB\n"
	                "       mailplex-map check SOURCE\n"
	                "       mailplex-map lookup DB ADDRESS...\n"
	                "       mailplex-map dump DB\n"
	                "       mailplex-map import popmap|aliases|usermap FILE "
	                "[--domain DOMAIN]\n");
	exit(EXIT_TROUBLE);
}

/* Reads a whole file ("-" is stdin). NULL with a message on stderr. */
static char *
read_file(const char *path, size_t *lenp)
{
	size_t len = 0, cap = 65536;
	char *buf, *nb;
	ssize_t n;
	int fd;

	if (strcmp(path, "-") == 0)
		fd = STDIN_FILENO;
	else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		fprintf(stderr, "mailplex-map: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if ((buf = malloc(cap)) == NULL) {
		fprintf(stderr, "mailplex-map: out of memory\n");
		goto fail;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= SOURCE_MAX_BYTES) {
				fprintf(stderr, "mailplex-map: %s: larger than %lu bytes\n", path,
				        SOURCE_MAX_BYTES);
				goto fail;
			}
			if ((nb = realloc(buf, cap * 2)) == NULL) {
				fprintf(stderr, "mailplex-map: out of memory\n");
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fprintf(stderr, "mailplex-map: %s: %s\n", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (fd != STDIN_FILENO)
		close(fd);
	*lenp = len;
	return buf;
fail:
	free(buf);
	if (fd != STDIN_FILENO)
		close(fd);
	return NULL;
}

static void
diag_stderr(void *arg, const char *msg)
{
	fprintf(stderr, "%s\n", msg);
}

static struct map_source *
load_source(const char *path)
{
	struct map_source *src;
	size_t len;
	char *buf;

	if ((buf = read_file(path, &len)) == NULL)
		return NULL;
	src = map_source_parse(strcmp(path, "-") == 0 ? "<stdin>" : path, buf, len, diag_stderr,
	                       NULL);
	free(buf);
	return src;
}

static int
cmd_check(int argc, char **argv)
{
	struct map_source *src;

	if (argc != 1)
		usage();
	if ((src = load_source(argv[0])) == NULL)
		return EXIT_TROUBLE;
	printf("%s: ok: %zu backends, %zu domains, %zu users, %zu aliases, %zu rules\n", argv[0],
	       src->tables->nbackends, src->tables->ndomains, src->nusers, src->naliases,
	       src->tables->nrules);
	map_source_free(src);
	return 0;
}

static int
cmd_compile(int argc, char **argv)
{
	struct map_compile_stats st;
	struct map_source *src;
	uint64_t start = time_mono_ms();
	char err[1024], abs[4096];
	const char *srcpath = argv[0];

	if (argc != 2)
		usage();
	if ((src = load_source(argv[0])) == NULL)
		return EXIT_TROUBLE;
	/* The metadata names the source so that lookup can say where a line is. */
	if (strcmp(argv[0], "-") != 0 && realpath(argv[0], abs) != NULL)
		srcpath = abs;
	if (map_compile(src, srcpath, argv[1], &st, err, sizeof(err)) == -1) {
		fprintf(stderr, "mailplex-map: %s\n", err);
		map_source_free(src);
		return EXIT_TROUBLE;
	}
	map_source_free(src);
	printf("%s: version %llu: %zu backends, %zu domains, %zu users, %zu aliases, %zu rules, "
	       "%llu bytes, %.3f s\n",
	       argv[1], (unsigned long long)st.version, st.backends, st.domains, st.users,
	       st.aliases, st.rules, (unsigned long long)st.db_bytes,
	       (double)(time_mono_ms() - start) / 1000.0);
	return 0;
}

static void
endpoint_print(const char *proto, const struct map_endpoint *e)
{
	if (e->host[0] == '\0')
		return;
	if (strchr(e->host, ':') != NULL)
		printf(" %s=[%s]:%u", proto, e->host, e->port);
	else
		printf(" %s=%s:%u", proto, e->host, e->port);
}

static void
backend_print(const char *label, const struct map_backend *b)
{
	printf("  %s %s", label, b->name);
	endpoint_print(map_proto_name(b->deliver_proto), &b->deliver);
	endpoint_print("imap", &b->imap);
	endpoint_print("pop3", &b->pop3);
	printf(" tls=%s\n", map_tls_name(b->tls));
}

static int
lookup_one(struct map *m, const struct map_info *info, const char *address)
{
	struct map_result res;
	const struct map_recipient *r;
	size_t i, j;
	int rc;

	rc = map_lookup(m, address, &res);
	printf("address %s\n", address);
	if (rc == -1 && res.nrcpt == 0) {
		printf("result error: %s\n\n", res.error);
		map_result_free(&res);
		return EXIT_TROUBLE;
	}
	printf("normalized %s@%s", res.local, res.domain);
	if (res.detail[0] != '\0')
		printf(" detail %s", res.detail);
	printf("\nresult %s\n",
	       rc == -1 && res.error[0] != '\0' ? res.error : map_status_name(res.status));
	for (i = 0; i < res.nrcpt; i++) {
		r = &res.rcpt[i];
		printf("recipient %s@%s", r->local, r->domain);
		if (r->detail[0] != '\0')
			printf(" detail %s", r->detail);
		printf("\n");
		for (j = 0; j < r->nchain; j++)
			printf("  via %s %s (%s:%u)\n", map_via_name(r->chain[j].via),
			       r->chain[j].what, info->source, r->chain[j].line);
		switch (r->status) {
		case MAP_DELIVER:
			printf("  deliver %s\n", r->backend->name);
			backend_print("backend", r->backend);
			break;
		case MAP_MIGRATING:
			printf("  migrating %s -> %s\n", r->old_backend->name, r->backend->name);
			backend_print("from", r->old_backend);
			backend_print("to", r->backend);
			break;
		case MAP_REJECT:
			printf("  reject \"%s\"\n", r->text);
			break;
		case MAP_ERROR:
			printf("  error %s\n", r->text);
			break;
		default:
			printf("  %s\n", map_status_name(r->status));
			break;
		}
	}
	printf("\n");
	rc = res.status == MAP_DELIVER || res.status == MAP_MIGRATING ? EXIT_ROUTED
	     : res.status == MAP_ERROR                                ? EXIT_TROUBLE
	                                                              : EXIT_NOT_ROUTED;
	map_result_free(&res);
	return rc;
}

static int
cmd_lookup(int argc, char **argv)
{
	struct map_info info;
	struct map *m;
	char err[1024];
	int i, rc, worst = EXIT_ROUTED;

	if (argc < 2)
		usage();
	if ((m = map_open(argv[0], err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailplex-map: %s\n", err);
		return EXIT_TROUBLE;
	}
	map_get_info(m, &info);
	printf("map %s version %llu\n\n", argv[0], (unsigned long long)info.version);
	for (i = 1; i < argc; i++)
		if ((rc = lookup_one(m, &info, argv[i])) > worst)
			worst = rc;
	map_close(m);
	if (fflush(stdout) == EOF)
		return EXIT_TROUBLE;
	return worst;
}

static int
cmd_dump(int argc, char **argv)
{
	struct map *m;
	char err[1024];
	int rc;

	if (argc != 1)
		usage();
	if ((m = map_open(argv[0], err, sizeof(err))) == NULL) {
		fprintf(stderr, "mailplex-map: %s\n", err);
		return EXIT_TROUBLE;
	}
	rc = map_dump(m, stdout, err, sizeof(err));
	map_close(m);
	if (rc == -1) {
		fprintf(stderr, "mailplex-map: dump: %s\n", err);
		return EXIT_TROUBLE;
	}
	return 0;
}

static int
cmd_import(int argc, char **argv)
{
	const char *domain = NULL;
	size_t len;
	char *buf;
	int rc;

	if (argc == 4 && strcmp(argv[2], "--domain") == 0)
		domain = argv[3];
	else if (argc != 2)
		usage();
	if (strcmp(argv[0], "popmap") != 0 && strcmp(argv[0], "aliases") != 0 &&
	    strcmp(argv[0], "usermap") != 0)
		usage();
	if ((buf = read_file(argv[1], &len)) == NULL)
		return EXIT_TROUBLE;
	rc = import_run(argv[0], argv[1], buf, len, domain, stdout, stderr);
	free(buf);
	if (fflush(stdout) == EOF)
		return EXIT_TROUBLE;
	return rc == -1 ? EXIT_TROUBLE : 0;
}

int
main(int argc, char **argv)
{
	log_init("mailplex-map", 1, LOG_LEVEL_WARN);
	if (argc < 2)
		usage();
	if (strcmp(argv[1], "compile") == 0)
		return cmd_compile(argc - 2, argv + 2);
	if (strcmp(argv[1], "check") == 0)
		return cmd_check(argc - 2, argv + 2);
	if (strcmp(argv[1], "lookup") == 0)
		return cmd_lookup(argc - 2, argv + 2);
	if (strcmp(argv[1], "dump") == 0)
		return cmd_dump(argc - 2, argv + 2);
	if (strcmp(argv[1], "import") == 0)
		return cmd_import(argc - 2, argv + 2);
	usage();
}
