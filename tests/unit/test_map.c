/*
 * Unit tests of the map: the resolution contract (user > alias > rule > default, +detail,
 * case, bare names, not ours, unknown), every compile error with its file:line text, the
 * atomic replacement and version, dump round trip, and readers that follow a replaced map
 * while it is being recompiled.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <gdbm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "map.h"
#include "map_compile.h"
#include "map_source.h"
#include "util.h"

#define BASE                                                                                       \
	"backend alf   lmtp=10.1.0.11:24 imap=10.1.0.11:143 pop3=10.1.0.11:110 tls=off\n"          \
	"backend fritz smtp=[2001:db8::12]:25 imap=mail2.bigisp.com:143 tls=on\n"                  \
	"backend gw    imap=10.1.0.13:993 tls=implicit\n"

struct diag {
	char text[8192];
};

static void
diag_collect(void *arg, const char *msg)
{
	struct diag *d = arg;
	size_t len = strlen(d->text);

	(void)str_format(d->text + len, sizeof(d->text) - len, "%s\n", msg);
}

static char tmpdir[256];
static char dbpath[300];

static int
setup(void **state)
{
	(void)str_copy(tmpdir, sizeof(tmpdir), "/tmp/test_map.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	(void)str_format(dbpath, sizeof(dbpath), "%s/map.db", tmpdir);
	return 0;
}

static int
teardown(void **state)
{
	char cmd[400];

	(void)str_format(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Parses and compiles text into db; the diagnostics land in d. */
static int
compile_to(const char *text, const char *db, struct diag *d)
{
	struct map_compile_stats st;
	struct map_source *src;
	char err[512];
	int rc;

	d->text[0] = '\0';
	src = map_source_parse("t.map", text, strlen(text), diag_collect, d);
	if (src == NULL)
		return -1;
	rc = map_compile(src, "t.map", db, &st, err, sizeof(err));
	if (rc == -1)
		diag_collect(d, err);
	map_source_free(src);
	return rc;
}

static struct map *
open_text(const char *text)
{
	struct diag d;
	struct map *m;
	char err[512];

	if (compile_to(text, dbpath, &d) == -1)
		fail_msg("compile failed: %s", d.text);
	m = map_open(dbpath, err, sizeof(err));
	if (m == NULL)
		fail_msg("open: %s", err);
	return m;
}

/* Looks address up; expects one recipient routed with status st to backend (or NULL). */
static void
expect_one(struct map *m, const char *address, enum map_status st, const char *backend,
           enum map_via via)
{
	struct map_result res;

	(void)map_lookup(m, address, &res);
	if (res.status != st)
		fail_msg("%s: status %s, expected %s (%s)", address, map_status_name(res.status),
		         map_status_name(st), res.error);
	assert_int_equal(res.nrcpt, 1);
	assert_int_equal(res.rcpt[0].status, st);
	if (backend != NULL) {
		assert_non_null(res.rcpt[0].backend);
		assert_string_equal(res.rcpt[0].backend->name, backend);
	}
	assert_true(res.rcpt[0].nchain >= 1);
	assert_int_equal(res.rcpt[0].chain[res.rcpt[0].nchain - 1].via, via);
	map_result_free(&res);
}

static enum map_status
status_of(struct map *m, const char *address)
{
	struct map_result res;
	enum map_status st;

	(void)map_lookup(m, address, &res);
	st = res.status;
	map_result_free(&res);
	return st;
}

/* ---- the resolution contract ---- */

static const char order_src[] = BASE "domain bigisp.com default gw\n"
                                     "user john fritz\n"
                                     "alias john: bob\n"
                                     "alias kate: zed\n"
                                     "rule a-k alf\n"
                                     "rule l-z fritz domain bigisp.com\n";

static void
test_user_wins_over_alias_rule_and_default(void **state)
{
	struct map *m = open_text(order_src);

	/* john is a user, an alias, in a-k and in a domain with a default: the user wins. */
	expect_one(m, "john@bigisp.com", MAP_DELIVER, "fritz", MAP_VIA_USER);
	map_close(m);
}

static void
test_alias_wins_over_rule_and_default(void **state)
{
	struct map_result res;
	struct map *m = open_text(order_src);

	/* kate is in a-k (alf) but is an alias of zed, who is in l-z (fritz). */
	assert_int_equal(map_lookup(m, "kate", &res), 0);
	assert_int_equal(res.nrcpt, 1);
	assert_string_equal(res.rcpt[0].local, "zed");
	assert_string_equal(res.rcpt[0].backend->name, "fritz");
	assert_int_equal(res.rcpt[0].nchain, 2);
	assert_int_equal(res.rcpt[0].chain[0].via, MAP_VIA_ALIAS);
	assert_int_equal(res.rcpt[0].chain[0].line, 7);
	assert_int_equal(res.rcpt[0].chain[1].via, MAP_VIA_RULE);
	assert_int_equal(res.rcpt[0].chain[1].line, 9);
	map_result_free(&res);
	map_close(m);
}

static void
test_rule_wins_over_default_first_match(void **state)
{
	struct map *m = open_text(order_src);

	expect_one(m, "bob", MAP_DELIVER, "alf", MAP_VIA_RULE);
	expect_one(m, "zed", MAP_DELIVER, "fritz", MAP_VIA_RULE);
	map_close(m);
}

static void
test_default_when_nothing_else_matches(void **state)
{
	struct map *m = open_text(order_src);

	expect_one(m, "7up@bigisp.com", MAP_DELIVER, "gw", MAP_VIA_DEFAULT);
	map_close(m);
}

static void
test_a_to_k_split(void **state)
{
	struct map *m = open_text(BASE "domain bigisp.com\nrule a-k alf\nrule l-z fritz\n");

	expect_one(m, "alice", MAP_DELIVER, "alf", MAP_VIA_RULE);
	expect_one(m, "kurt", MAP_DELIVER, "alf", MAP_VIA_RULE);
	expect_one(m, "lena", MAP_DELIVER, "fritz", MAP_VIA_RULE);
	expect_one(m, "Zoe@BIGISP.com", MAP_DELIVER, "fritz", MAP_VIA_RULE);
	assert_int_equal(status_of(m, "_x"), MAP_UNKNOWN_USER);
	map_close(m);
}

static void
test_regex_rule_is_case_insensitive_on_the_local_part(void **state)
{
	struct map *m = open_text(BASE "domain bigisp.com\nrule /^sales-[a-z]+$/ gw\n");

	expect_one(m, "SALES-east+q3@bigisp.com", MAP_DELIVER, "gw", MAP_VIA_RULE);
	assert_int_equal(status_of(m, "sales-1"), MAP_UNKNOWN_USER);
	map_close(m);
}

static void
test_reject_carries_its_text(void **state)
{
	struct map_result res;
	struct map *m =
	    open_text(BASE "domain bigisp.com default alf\nuser mallory reject \"Closed; "
	                   "ask \\\"help\\\" \\\\ desk\"\n");

	assert_int_equal(map_lookup(m, "mallory", &res), 0);
	assert_int_equal(res.status, MAP_REJECT);
	assert_null(res.rcpt[0].backend);
	assert_string_equal(res.rcpt[0].text, "Closed; ask \"help\" \\ desk");
	map_result_free(&res);
	map_close(m);
}

static void
test_migrating_names_both_back_ends(void **state)
{
	struct map_result res;
	struct map *m = open_text(BASE "domain bigisp.com\nuser carol migrating alf -> fritz\n");

	assert_int_equal(map_lookup(m, "carol", &res), 0);
	assert_int_equal(res.status, MAP_MIGRATING);
	assert_string_equal(res.rcpt[0].old_backend->name, "alf");
	assert_string_equal(res.rcpt[0].backend->name, "fritz");
	assert_int_equal(res.rcpt[0].backend->deliver_proto, MAP_PROTO_SMTP);
	assert_string_equal(res.rcpt[0].backend->deliver.host, "2001:db8::12");
	assert_int_equal(res.rcpt[0].backend->tls, MAP_TLS_ON);
	map_result_free(&res);
	map_close(m);
}

static void
test_detail_is_stripped_for_routing_and_kept(void **state)
{
	struct map_result res;
	struct map *m = open_text(BASE "domain bigisp.com\nuser john fritz\nrule a-k alf\n");

	assert_int_equal(map_lookup(m, "john+lists@bigisp.com", &res), 0);
	assert_string_equal(res.local, "john");
	assert_string_equal(res.detail, "lists");
	assert_string_equal(res.rcpt[0].detail, "lists");
	assert_string_equal(res.rcpt[0].backend->name, "fritz");
	map_result_free(&res);
	/* The rule sees the local part without its detail. */
	assert_int_equal(map_lookup(m, "bob+zzz", &res), 0);
	assert_string_equal(res.rcpt[0].backend->name, "alf");
	assert_string_equal(res.rcpt[0].detail, "zzz");
	map_result_free(&res);
	map_close(m);
}

static void
test_literal_plus_user_is_tried_first(void **state)
{
	struct map_result res;
	struct map *m = open_text(BASE "domain bigisp.com\nuser a+b gw\nuser a alf\n");

	assert_int_equal(map_lookup(m, "a+b", &res), 0);
	assert_string_equal(res.rcpt[0].backend->name, "gw");
	assert_string_equal(res.rcpt[0].detail, "");
	map_result_free(&res);
	expect_one(m, "a+c", MAP_DELIVER, "alf", MAP_VIA_USER);
	map_close(m);
}

static void
test_upper_case_and_bare_user_are_normalized(void **state)
{
	struct map_result res;
	struct map *m = open_text(BASE "domain bigisp.com\ndomain b.net\nuser John fritz\n");

	assert_int_equal(map_lookup(m, "JOHN", &res), 0);
	assert_string_equal(res.local, "john");
	assert_string_equal(res.domain, "bigisp.com");
	assert_string_equal(res.rcpt[0].backend->name, "fritz");
	map_result_free(&res);
	expect_one(m, "jOhN@BigIsp.Com", MAP_DELIVER, "fritz", MAP_VIA_USER);
	map_close(m);
}

static void
test_other_domain_is_not_ours_and_served_unknown_is_unknown(void **state)
{
	struct map *m = open_text(BASE "domain bigisp.com\ndomain bigisp.net\nrule a-z alf\n");

	assert_int_equal(status_of(m, "john@example.org"), MAP_NOT_OURS);
	assert_int_equal(status_of(m, "john@bigisp.com.evil.org"), MAP_NOT_OURS);
	/* Rules cover the primary domain unless they name another. */
	assert_int_equal(status_of(m, "john@bigisp.net"), MAP_UNKNOWN_USER);
	assert_int_equal(status_of(m, "john@bigisp.com"), MAP_DELIVER);
	map_close(m);
}

static void
test_alias_one_to_many_and_nested(void **state)
{
	struct map_result res;
	struct map *m = open_text(BASE "domain bigisp.com\ndomain bigisp.net\n"
	                               "user john fritz\nuser alison alf\nuser ops@bigisp.net gw\n"
	                               "alias postmaster: john, alison\n"
	                               "alias abuse: postmaster, ops@bigisp.net, john\n");

	assert_int_equal(map_lookup(m, "abuse", &res), 0);
	assert_int_equal(res.status, MAP_DELIVER);
	/* john reached twice is delivered once. */
	assert_int_equal(res.nrcpt, 3);
	assert_string_equal(res.rcpt[0].local, "john");
	assert_int_equal(res.rcpt[0].nchain, 3);
	assert_string_equal(res.rcpt[0].chain[0].what, "abuse@bigisp.com");
	assert_string_equal(res.rcpt[0].chain[1].what, "postmaster@bigisp.com");
	assert_string_equal(res.rcpt[0].chain[2].what, "john@bigisp.com");
	assert_string_equal(res.rcpt[1].local, "alison");
	assert_string_equal(res.rcpt[1].backend->name, "alf");
	assert_string_equal(res.rcpt[2].domain, "bigisp.net");
	assert_string_equal(res.rcpt[2].backend->name, "gw");
	map_result_free(&res);
	map_close(m);
}

static void
test_eight_alias_levels_resolve(void **state)
{
	struct map_result res;
	struct map *m = open_text(BASE "domain d.org\nuser u alf\n"
	                               "alias a1: a2\nalias a2: a3\nalias a3: a4\nalias a4: a5\n"
	                               "alias a5: a6\nalias a6: a7\nalias a7: a8\nalias a8: u\n");

	assert_int_equal(map_lookup(m, "a1", &res), 0);
	assert_int_equal(res.rcpt[0].status, MAP_DELIVER);
	assert_int_equal(res.rcpt[0].nchain, 9);
	map_result_free(&res);
	map_close(m);
}

static void
test_overlong_and_malformed_addresses_are_errors(void **state)
{
	char local[70], domain[300], addr[400];
	struct map_result res;
	struct map *m = open_text(BASE "domain bigisp.com default alf\n");

	memset(local, 'a', 65);
	local[65] = '\0';
	(void)str_format(addr, sizeof(addr), "%s@bigisp.com", local);
	assert_int_equal(map_lookup(m, addr, &res), -1);
	assert_int_equal(res.status, MAP_ERROR);
	assert_string_equal(res.error, "local part longer than 64 bytes");
	map_result_free(&res);
	local[64] = '\0';
	(void)str_format(addr, sizeof(addr), "%s@bigisp.com", local);
	assert_int_equal(status_of(m, addr), MAP_DELIVER);
	memset(domain, 'd', 253);
	domain[253] = '\0';
	(void)str_format(addr, sizeof(addr), "x@%s", domain);
	assert_int_equal(status_of(m, addr), MAP_ERROR);
	assert_int_equal(status_of(m, ""), MAP_ERROR);
	assert_int_equal(status_of(m, "@bigisp.com"), MAP_ERROR);
	assert_int_equal(status_of(m, "a@b@bigisp.com"), MAP_ERROR);
	assert_int_equal(status_of(m, "a b@bigisp.com"), MAP_ERROR);
	assert_int_equal(status_of(m, "\"a\"@bigisp.com"), MAP_ERROR);
	assert_int_equal(status_of(m, "a@bigisp..com"), MAP_ERROR);
	map_close(m);
}

/* ---- compile errors: one test each, exact file:line text ---- */

static void
expect_error(const char *src, const char *msg)
{
	struct map_source *s;
	struct diag d;

	d.text[0] = '\0';
	s = map_source_parse("t.map", src, strlen(src), diag_collect, &d);
	if (s != NULL) {
		map_source_free(s);
		fail_msg("accepted; expected: %s", msg);
	}
	if (strstr(d.text, msg) == NULL)
		fail_msg("expected '%s' in:\n%s", msg, d.text);
}

#define ERROR_TEST(name, src, msg)                                                                 \
	static void name(void **state)                                                             \
	{                                                                                          \
		expect_error(src, msg);                                                            \
	}

ERROR_TEST(test_unterminated_quote_is_rejected, BASE "domain d.org\nuser x reject \"oops\n",
           "t.map:5: unterminated quoted string\n")
ERROR_TEST(test_unknown_directive_is_rejected, BASE "domain d.org\nmailbox x alf\n",
           "t.map:5: unknown directive 'mailbox'\n")
ERROR_TEST(test_bad_host_port_is_rejected, "backend x lmtp=10.1.0.11\ndomain d.org\n",
           "t.map:1: bad lmtp address: address '10.1.0.11': missing ':port'\n")
ERROR_TEST(test_bad_port_is_rejected, "backend x imap=10.1.0.11:99999\ndomain d.org\n",
           "t.map:1: bad imap address: address '10.1.0.11:99999': port must be a number "
           "0..65535\n")
ERROR_TEST(test_lmtp_and_smtp_together_are_rejected,
           "backend x lmtp=a.b:24 smtp=a.b:25\ndomain d.org\n",
           "t.map:1: one delivery protocol per backend (lmtp= or smtp=)\n")
ERROR_TEST(test_backend_without_protocol_is_rejected, "backend x tls=on\ndomain d.org\n",
           "t.map:1: backend 'x' serves no protocol")
ERROR_TEST(test_duplicate_user_is_rejected, BASE "domain d.org\nuser x alf\nuser X@D.org fritz\n",
           "t.map:6: duplicate user 'x@d.org' (first at line 5)\n")
ERROR_TEST(test_duplicate_alias_is_rejected,
           BASE "domain d.org\nuser u alf\nalias x: u\nalias x: u\n",
           "t.map:7: duplicate alias 'x@d.org' (first at line 6)\n")
ERROR_TEST(test_duplicate_backend_is_rejected, BASE "backend alf imap=h.d:143\ndomain d.org\n",
           "t.map:4: duplicate backend 'alf' (first at line 1)\n")
ERROR_TEST(test_duplicate_domain_is_rejected, BASE "domain d.org\ndomain D.ORG\n",
           "t.map:5: duplicate domain 'd.org' (first at line 4)\n")
ERROR_TEST(test_undefined_backend_is_rejected, BASE "domain d.org\nuser x nosuch\n",
           "t.map:5: undefined backend 'nosuch'\n")
ERROR_TEST(test_undefined_default_backend_is_rejected, BASE "domain d.org default nosuch\n",
           "t.map:4: undefined backend 'nosuch'\n")
ERROR_TEST(test_alias_loop_is_rejected, BASE "domain d.org\nalias a: b\nalias b: c\nalias c: a\n",
           "alias loop: a@d.org -> b@d.org -> c@d.org -> a@d.org\n")
ERROR_TEST(test_alias_deeper_than_bound_is_rejected,
           BASE "domain d.org\nuser u alf\nalias a1: a2\nalias a2: a3\nalias a3: a4\n"
                "alias a4: a5\nalias a5: a6\nalias a6: a7\nalias a7: a8\nalias a8: a9\n"
                "alias a9: u\n",
           "t.map:6: alias 'a1@d.org' nests deeper than 8 levels")
ERROR_TEST(test_alias_target_outside_served_domains_is_rejected,
           BASE "domain d.org\nalias a: x@gmail.com\n",
           "t.map:5: alias target 'x@gmail.com': domain 'gmail.com' is not served (no "
           "domain line)\n")
ERROR_TEST(test_alias_target_resolving_to_nothing_is_rejected,
           BASE "domain d.org\nalias a: ghost\n",
           "t.map:5: alias 'a@d.org': target 'ghost@d.org' resolves to nothing")
ERROR_TEST(test_rule_before_any_backend_is_rejected, "domain d.org\nrule a-k alf\n",
           "t.map:2: rule before any backend is defined\n")
ERROR_TEST(test_invalid_regex_is_rejected, BASE "domain d.org\nrule /a(b/ alf\n",
           "t.map:5: invalid regular expression /a(b/")
ERROR_TEST(test_expensive_regex_is_rejected, BASE "domain d.org\nrule /(a{99}){99}/ alf\n",
           "t.map:5: regular expression /(a{99}){99}/: repetition bounds too large\n")
ERROR_TEST(test_bad_range_is_rejected, BASE "domain d.org\nrule k-a alf\n",
           "t.map:5: bad letter range 'k-a'")
ERROR_TEST(test_user_in_unserved_domain_is_rejected, BASE "domain d.org\nuser x@e.org alf\n",
           "t.map:5: user 'x@e.org': domain 'e.org' is not served (no domain line)\n")
ERROR_TEST(test_no_domain_is_rejected, BASE "user x alf\n", "t.map:4: no domain declared")
ERROR_TEST(test_bad_escape_is_rejected, BASE "domain d.org\nuser x reject \"a\\nb\"\n",
           "t.map:5: bad escape in quoted string")
ERROR_TEST(test_missing_alias_colon_is_rejected, BASE "domain d.org\nalias a b\n",
           "t.map:5: expected ':' after the alias name\n")

static void
test_line_longer_than_bound_is_rejected(void **state)
{
	char *src = malloc(MAP_LINE_MAX + 200);

	assert_non_null(src);
	(void)str_format(src, MAP_LINE_MAX + 200, "domain d.org\n# %0*d\n", MAP_LINE_MAX, 0);
	expect_error(src, "t.map:2: line longer than 4096 bytes\n");
	free(src);
}

static void
test_too_many_alias_targets_are_rejected(void **state)
{
	size_t cap = 8192, i, o;
	char *src = malloc(cap);

	assert_non_null(src);
	(void)str_copy(src, cap, BASE "domain d.org default alf\nalias big: ");
	o = strlen(src);
	for (i = 0; i < 1001; i++) {
		src[o++] = 'a';
		src[o++] = ',';
	}
	src[o++] = '\n';
	src[o] = '\0';
	expect_error(src, "t.map:5: alias 'big' has more than 1000 targets\n");
	free(src);
}

static void
test_user_and_alias_of_one_name_warns_and_user_wins(void **state)
{
	struct map_source *s;
	struct diag d;
	const char *src = BASE "domain d.org\nalias x: y\nuser x alf\nuser y fritz\n";

	d.text[0] = '\0';
	s = map_source_parse("t.map", src, strlen(src), diag_collect, &d);
	assert_non_null(s);
	assert_string_equal(d.text,
	                    "t.map:5: warning: 'x@d.org' is both a user (line 6) and an alias; "
	                    "the user wins\n");
	map_source_free(s);
}

/* ---- compile: atomicity, versions, round trip ---- */

static char *
slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
test_failed_compile_leaves_old_map_byte_identical(void **state)
{
	char *before, *after, bad[300];
	size_t blen, alen;
	struct diag d;

	assert_int_equal(compile_to(BASE "domain d.org\nuser x alf\n", dbpath, &d), 0);
	before = slurp(dbpath, &blen);
	/* A source error: nothing is written. */
	assert_int_equal(compile_to(BASE "domain d.org\nuser x nosuch\n", dbpath, &d), -1);
	/* A write error after validation (target in a missing directory): no temp left. */
	(void)str_format(bad, sizeof(bad), "%s/nodir/map.db", tmpdir);
	assert_int_equal(compile_to(BASE "domain d.org\n", bad, &d), -1);
	assert_non_null(strstr(d.text, "nodir"));
	after = slurp(dbpath, &alen);
	assert_int_equal(alen, blen);
	assert_memory_equal(before, after, blen);
	free(before);
	free(after);
}

static void
test_version_strictly_increases(void **state)
{
	struct map *m;
	struct diag d;
	uint64_t v1, v2, v3;
	char err[256];

	assert_int_equal(compile_to(BASE "domain d.org\n", dbpath, &d), 0);
	assert_non_null(m = map_open(dbpath, err, sizeof(err)));
	v1 = map_version(m);
	map_close(m);
	assert_int_equal(compile_to(BASE "domain d.org\n", dbpath, &d), 0);
	assert_non_null(m = map_open(dbpath, err, sizeof(err)));
	v2 = map_version(m);
	map_close(m);
	/* Same second: still one more. */
	assert_int_equal(compile_to(BASE "domain d.org\n", dbpath, &d), 0);
	assert_non_null(m = map_open(dbpath, err, sizeof(err)));
	v3 = map_version(m);
	map_close(m);
	assert_true(v1 >= (uint64_t)time(NULL) - 60);
	assert_true(v2 > v1);
	assert_true(v3 > v2);
}

static char *
dump_text(const char *db)
{
	char *buf = NULL, err[256];
	size_t len = 0;
	struct map *m;
	FILE *f;

	assert_non_null(m = map_open(db, err, sizeof(err)));
	assert_non_null(f = open_memstream(&buf, &len));
	assert_int_equal(map_dump(m, f, err, sizeof(err)), 0);
	fclose(f);
	map_close(m);
	return buf;
}

static void
test_dump_compiles_back_to_the_same_map(void **state)
{
	const char *src = BASE "domain bigisp.com default gw\ndomain bigisp.net\n"
	                       "user john fritz\nuser mallory reject \"gone \\\"away\\\"\"\n"
	                       "user carol migrating alf -> fritz\nuser ops@bigisp.net gw\n"
	                       "alias abuse: postmaster, ops@bigisp.net\n"
	                       "alias postmaster: john\n"
	                       "rule a-k alf\nrule /^[0-9]/ fritz\nrule l-z gw domain bigisp.net\n";
	char db2[320], *d1, *d2;
	struct diag d;

	assert_int_equal(compile_to(src, dbpath, &d), 0);
	d1 = dump_text(dbpath);
	(void)str_format(db2, sizeof(db2), "%s/map2.db", tmpdir);
	assert_int_equal(compile_to(d1, db2, &d), 0);
	d2 = dump_text(db2);
	/* Equal after the header line (it names the file and the version). */
	assert_string_equal(strchr(d1, '\n'), strchr(d2, '\n'));
	assert_non_null(strstr(d1, "user mallory@bigisp.com reject \"gone \\\"away\\\"\"\n"));
	assert_non_null(strstr(d1, "backend fritz smtp=[2001:db8::12]:25"));
	assert_non_null(strstr(d1, "rule l-z gw domain bigisp.net\n"));
	free(d1);
	free(d2);
}

static void
test_corrupt_record_is_an_error_result(void **state)
{
	struct map_result res;
	struct map *m;
	GDBM_FILE db;
	datum k, v;
	char err[256];
	struct diag d;

	assert_int_equal(compile_to(BASE "domain d.org\nuser x alf\nalias y: x\n", dbpath, &d), 0);
	assert_non_null(db = gdbm_open(dbpath, 0, GDBM_WRITER | GDBM_NOLOCK, 0, NULL));
	k.dptr = (char *)"x@d.org";
	k.dsize = 7;
	v.dptr = (char *)"U\t5\tD\t99";
	v.dsize = 8;
	assert_int_equal(gdbm_store(db, k, v, GDBM_REPLACE), 0);
	gdbm_close(db);
	assert_non_null(m = map_open(dbpath, err, sizeof(err)));
	assert_int_equal(map_lookup(m, "x", &res), -1);
	assert_int_equal(res.status, MAP_ERROR);
	assert_string_equal(res.rcpt[0].text, "corrupt record for x@d.org");
	map_result_free(&res);
	assert_int_equal(status_of(m, "y"), MAP_ERROR);
	map_close(m);
}

/* ---- readers follow a replaced map ---- */

#define RECOMPILES 20

static void
source_version(char *buf, size_t len, int i)
{
	/* Each generation moves john and adds one user, so a half state would show. */
	(void)str_format(buf, len, BASE "domain d.org\nuser john %s\nuser gen%d alf\n",
	                 i % 2 ? "fritz" : "alf", i);
}

static int
child_loop(int rfd)
{
	struct map_result res;
	char err[256];
	uint64_t final = 0;
	struct map *m;
	long n = 0;
	ssize_t r;

	if ((m = map_open(dbpath, err, sizeof(err))) == NULL)
		return 10;
	map_set_check_interval(m, 0);
	for (;;) {
		if (map_lookup(m, "john", &res) == -1 || res.status != MAP_DELIVER ||
		    res.nrcpt != 1 || res.rcpt[0].backend == NULL) {
			fprintf(stderr, "child: bad lookup: %s\n", res.error);
			map_result_free(&res);
			return 11;
		}
		map_result_free(&res);
		n++;
		if (final == 0) {
			r = read(rfd, &final, sizeof(final));
			if (r == -1 && errno != EAGAIN)
				return 12;
			if (r != -1 && r != (ssize_t)sizeof(final))
				return 13;
		}
		if (final != 0 && map_version(m) == final)
			break;
	}
	if (status_of(m, "gen19") != MAP_DELIVER || status_of(m, "gen18") != MAP_UNKNOWN_USER)
		return 14;
	map_close(m);
	return n > 0 ? 0 : 15;
}

static void
test_reader_follows_replacement_during_recompiles(void **state)
{
	char src[1024], err[256];
	struct diag d;
	struct map *m;
	uint64_t final;
	int pfd[2], status, i;
	pid_t pid;

	source_version(src, sizeof(src), 0);
	assert_int_equal(compile_to(src, dbpath, &d), 0);
	assert_int_equal(pipe2(pfd, O_NONBLOCK), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(pfd[1]);
		_exit(child_loop(pfd[0]));
	}
	close(pfd[0]);
	for (i = 1; i < RECOMPILES; i++) {
		source_version(src, sizeof(src), i);
		assert_int_equal(compile_to(src, dbpath, &d), 0);
	}
	assert_non_null(m = map_open(dbpath, err, sizeof(err)));
	final = map_version(m);
	map_close(m);
	assert_int_equal(write(pfd[1], &final, sizeof(final)), (ssize_t)sizeof(final));
	close(pfd[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void
test_unusable_replacement_keeps_the_old_map(void **state)
{
	char tmp[320], err[256];
	struct diag d;
	struct map *m;
	uint64_t v;
	FILE *f;

	assert_int_equal(compile_to(BASE "domain d.org\nuser x alf\n", dbpath, &d), 0);
	assert_non_null(m = map_open(dbpath, err, sizeof(err)));
	v = map_version(m);
	(void)str_format(tmp, sizeof(tmp), "%s/junk", tmpdir);
	assert_non_null(f = fopen(tmp, "w"));
	fputs("not a gdbm file\n", f);
	fclose(f);
	assert_int_equal(rename(tmp, dbpath), 0);
	assert_int_equal(map_reopen_if_changed(m, 1), -1);
	assert_int_equal(map_version(m), v);
	assert_int_equal(status_of(m, "x"), MAP_DELIVER);
	/* Then a good one is picked up. */
	assert_int_equal(compile_to(BASE "domain d.org\nuser y alf\n", dbpath, &d), 0);
	assert_int_equal(map_reopen_if_changed(m, 1), 1);
	assert_int_equal(status_of(m, "x"), MAP_UNKNOWN_USER);
	assert_int_equal(status_of(m, "y"), MAP_DELIVER);
	map_close(m);
}

static void
test_result_outlives_a_swap(void **state)
{
	struct map_result res;
	char err[256];
	struct diag d;
	struct map *m;

	assert_int_equal(compile_to(BASE "domain d.org\nuser x alf\n", dbpath, &d), 0);
	assert_non_null(m = map_open(dbpath, err, sizeof(err)));
	assert_int_equal(map_lookup(m, "x", &res), 0);
	assert_int_equal(compile_to(BASE "domain d.org\nuser x fritz\n", dbpath, &d), 0);
	assert_int_equal(map_reopen_if_changed(m, 1), 1);
	/* The old result's back end is still readable (ASan would catch a dangling one). */
	assert_string_equal(res.rcpt[0].backend->name, "alf");
	map_result_free(&res);
	expect_one(m, "x", MAP_DELIVER, "fritz", MAP_VIA_USER);
	map_close(m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_user_wins_over_alias_rule_and_default, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_alias_wins_over_rule_and_default, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rule_wins_over_default_first_match, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_default_when_nothing_else_matches, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_a_to_k_split, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_regex_rule_is_case_insensitive_on_the_local_part,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_reject_carries_its_text, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_migrating_names_both_back_ends, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_detail_is_stripped_for_routing_and_kept, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_literal_plus_user_is_tried_first, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_upper_case_and_bare_user_are_normalized, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(
	        test_other_domain_is_not_ours_and_served_unknown_is_unknown, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_alias_one_to_many_and_nested, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_eight_alias_levels_resolve, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_overlong_and_malformed_addresses_are_errors, setup,
	                                    teardown),
	    cmocka_unit_test(test_unterminated_quote_is_rejected),
	    cmocka_unit_test(test_unknown_directive_is_rejected),
	    cmocka_unit_test(test_bad_host_port_is_rejected),
	    cmocka_unit_test(test_bad_port_is_rejected),
	    cmocka_unit_test(test_lmtp_and_smtp_together_are_rejected),
	    cmocka_unit_test(test_backend_without_protocol_is_rejected),
	    cmocka_unit_test(test_duplicate_user_is_rejected),
	    cmocka_unit_test(test_duplicate_alias_is_rejected),
	    cmocka_unit_test(test_duplicate_backend_is_rejected),
	    cmocka_unit_test(test_duplicate_domain_is_rejected),
	    cmocka_unit_test(test_undefined_backend_is_rejected),
	    cmocka_unit_test(test_undefined_default_backend_is_rejected),
	    cmocka_unit_test(test_alias_loop_is_rejected),
	    cmocka_unit_test(test_alias_deeper_than_bound_is_rejected),
	    cmocka_unit_test(test_alias_target_outside_served_domains_is_rejected),
	    cmocka_unit_test(test_alias_target_resolving_to_nothing_is_rejected),
	    cmocka_unit_test(test_rule_before_any_backend_is_rejected),
	    cmocka_unit_test(test_invalid_regex_is_rejected),
	    cmocka_unit_test(test_expensive_regex_is_rejected),
	    cmocka_unit_test(test_bad_range_is_rejected),
	    cmocka_unit_test(test_user_in_unserved_domain_is_rejected),
	    cmocka_unit_test(test_no_domain_is_rejected),
	    cmocka_unit_test(test_bad_escape_is_rejected),
	    cmocka_unit_test(test_missing_alias_colon_is_rejected),
	    cmocka_unit_test(test_line_longer_than_bound_is_rejected),
	    cmocka_unit_test(test_too_many_alias_targets_are_rejected),
	    cmocka_unit_test(test_user_and_alias_of_one_name_warns_and_user_wins),
	    cmocka_unit_test_setup_teardown(test_failed_compile_leaves_old_map_byte_identical,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_version_strictly_increases, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dump_compiles_back_to_the_same_map, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_record_is_an_error_result, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_reader_follows_replacement_during_recompiles,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_unusable_replacement_keeps_the_old_map, setup,
	                                    teardown),
	    cmocka_unit_test_setup_teardown(test_result_outlives_a_swap, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
