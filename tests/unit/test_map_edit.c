/*
 * Unit tests of map_edit: the user's line is found the way compile finds it (however the
 * name is written), replaced keeping its indentation, name and comment, appended when a
 * rule or default covers the user, removed again, and a source that would not compile is
 * refused with file:line and the file left byte for byte as it was.
 */
#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "map_edit.h"
#include "util.h"

#define SRC                                                                                        \
	"# the map\n"                                                                              \
	"backend alf   lmtp=10.1.0.11:24 imap=10.1.0.11:143 tls=off\n"                             \
	"backend fritz lmtp=10.1.0.12:24 imap=10.1.0.12:143 tls=on\n"                              \
	"domain bigisp.com default alf\n"                                                          \
	"domain bigisp.net\n"                                                                      \
	"  user John@BigISP.com   fritz   # pinned, \"quoted\" # twice\n"                          \
	"user mallory reject \"closed # not a comment\"\n"                                         \
	"user ops@bigisp.net fritz\n"                                                              \
	"alias postmaster: john\n"                                                                 \
	"rule a-k alf\n"

static char dir[64];
static char path[128];

static int
setup(void **state)
{
	FILE *f;

	(void)state;
	(void)str_copy(dir, sizeof(dir), "/tmp/test_map_edit.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	(void)str_format(path, sizeof(path), "%s/mailplex.map", dir);
	if ((f = fopen(path, "w")) == NULL)
		return -1;
	fputs(SRC, f);
	if (fclose(f) != 0)
		return -1;
	return chmod(path, 0640);
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	(void)str_format(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *
slurp(size_t *len)
{
	char err[256];
	char *b = map_edit_read(path, len, err, sizeof(err));

	assert_non_null(b);
	return b;
}

static void
test_locate_finds_the_user_line_however_written(void **state)
{
	struct map_edit_user u;
	char err[256];

	(void)state;
	assert_int_equal(map_edit_locate("m", SRC, strlen(SRC), "john", &u, err, sizeof(err)), 0);
	assert_string_equal(u.key, "john@bigisp.com");
	assert_int_equal(u.via, MAP_EDIT_VIA_USER);
	assert_int_equal(u.line, 6);
	assert_int_equal(u.state, 'D');
	assert_string_equal(u.backend, "fritz");
	assert_int_equal(map_edit_locate("m", SRC, strlen(SRC), "bob", &u, err, sizeof(err)), 0);
	assert_int_equal(u.via, MAP_EDIT_VIA_RULE);
	assert_string_equal(u.backend, "alf");
	assert_int_equal(map_edit_locate("m", SRC, strlen(SRC), "zed", &u, err, sizeof(err)), 0);
	assert_int_equal(u.via, MAP_EDIT_VIA_DEFAULT);
	assert_string_equal(u.backend, "alf");
}

static void
test_locate_refuses_aliases_unknown_and_details(void **state)
{
	struct map_edit_user u;
	char err[256];

	(void)state;
	assert_int_equal(map_edit_locate("m", SRC, strlen(SRC), "postmaster", &u, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "is an alias"));
	assert_int_equal(
	    map_edit_locate("m", SRC, strlen(SRC), "nobody@bigisp.net", &u, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown user"));
	assert_int_equal(map_edit_locate("m", SRC, strlen(SRC), "john+x", &u, err, sizeof(err)),
	                 -1);
	assert_non_null(strstr(err, "+detail"));
	assert_int_equal(
	    map_edit_locate("m", SRC, strlen(SRC), "a@example.org", &u, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not served"));
}

static void
test_replacing_keeps_every_other_byte_and_the_comment(void **state)
{
	struct map_edit_user u;
	char err[256], *b;
	size_t len;
	struct stat sb;

	(void)state;
	assert_int_equal(
	    map_edit_user(path, "john", "migrating fritz -> alf", NULL, err, sizeof(err)), 0);
	b = slurp(&len);
	assert_non_null(strstr(b, "\n  user John@BigISP.com migrating fritz -> alf   # pinned, "
	                          "\"quoted\" # twice\nuser mallory"));
	assert_int_equal(len, strlen(SRC) - strlen("fritz") + strlen("migrating fritz -> alf") - 2);
	assert_int_equal(map_edit_locate("m", b, len, "john", &u, err, sizeof(err)), 0);
	assert_int_equal(u.state, 'M');
	assert_string_equal(u.old_backend, "fritz");
	assert_string_equal(u.backend, "alf");
	free(b);
	assert_int_equal(map_edit_user(path, "JOHN@bigisp.com", "fritz", NULL, err, sizeof(err)),
	                 0);
	b = slurp(&len);
	/* Back to the original state: the very same bytes, spacing before the comment aside. */
	assert_non_null(strstr(b, "  user John@BigISP.com fritz   # pinned"));
	free(b);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0640);
}

static void
test_a_user_under_a_rule_is_appended_and_removed_again(void **state)
{
	struct map_source *src = NULL;
	char err[256], *b;
	size_t len;

	(void)state;
	assert_int_equal(
	    map_edit_user(path, "bob", "migrating alf -> fritz", &src, err, sizeof(err)), 0);
	assert_non_null(src);
	map_source_free(src);
	b = slurp(&len);
	assert_int_equal(len, strlen(SRC) + strlen("user bob@bigisp.com migrating alf -> fritz\n"));
	assert_memory_equal(b, SRC, strlen(SRC));
	assert_string_equal(b + strlen(SRC), "user bob@bigisp.com migrating alf -> fritz\n");
	free(b);
	assert_int_equal(map_edit_user(path, "bob", NULL, NULL, err, sizeof(err)), 0);
	b = slurp(&len);
	assert_int_equal(len, strlen(SRC));
	assert_memory_equal(b, SRC, len);
	free(b);
}

static void
test_append_after_a_last_line_without_newline(void **state)
{
	const char *s = "backend a lmtp=1.2.3.4:24 tls=off\ndomain x.org default a";
	char *out, err[256];
	size_t len;

	(void)state;
	assert_int_equal(
	    map_edit_splice(s, strlen(s), 0, "u@x.org", "a", 0, &out, &len, err, sizeof(err)), 0);
	assert_int_equal(len, strlen(s) + strlen("\nuser u@x.org a\n"));
	assert_memory_equal(out + strlen(s), "\nuser u@x.org a\n", len - strlen(s));
	free(out);
}

static void
test_crlf_line_keeps_its_cr(void **state)
{
	const char *s = "domain x.org\r\nuser u b # c\r\nrule a-k b\r\n";
	char *out, err[256];
	size_t len;

	(void)state;
	assert_int_equal(map_edit_splice(s, strlen(s), 2, "u@x.org", "migrating b -> c", 0, &out,
	                                 &len, err, sizeof(err)),
	                 0);
	assert_int_equal(len,
	                 strlen("domain x.org\r\nuser u migrating b -> c # c\r\nrule a-k b\r\n"));
	assert_memory_equal(out, "domain x.org\r\nuser u migrating b -> c # c\r\nrule a-k b\r\n",
	                    len);
	free(out);
}

static void
test_an_invalid_result_is_refused_and_nothing_changes(void **state)
{
	char err[256], *b;
	size_t len;

	(void)state;
	assert_int_equal(map_edit_user(path, "john", "nosuch", NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "mailplex.map:6: undefined backend 'nosuch'"));
	b = slurp(&len);
	assert_int_equal(len, strlen(SRC));
	assert_memory_equal(b, SRC, len);
	free(b);
	/* No temp file is left beside it. */
	{
		char cmd[160];

		(void)str_format(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) = 1", dir);
		assert_int_equal(system(cmd), 0);
	}
}

static void
test_a_broken_source_is_refused_with_file_and_line(void **state)
{
	FILE *f;
	char err[256];

	(void)state;
	assert_non_null(f = fopen(path, "a"));
	fputs("user broken\n", f);
	assert_int_equal(fclose(f), 0);
	assert_int_equal(map_edit_user(path, "john", "alf", NULL, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "mailplex.map:11: usage: user NAME"));
}

static void
test_a_saved_line_is_restored_exactly(void **state)
{
	char err[256], line[MAP_LINE_MAX + 1], *b;
	size_t len;

	(void)state;
	b = slurp(&len);
	assert_int_equal(map_edit_line_text(b, len, 6, line, sizeof(line)), 0);
	assert_string_equal(line, "  user John@BigISP.com   fritz   # pinned, \"quoted\" # twice");
	free(b);
	assert_int_equal(
	    map_edit_user(path, "john", "migrating fritz -> alf", NULL, err, sizeof(err)), 0);
	assert_int_equal(map_edit_user_line(path, "john", line, NULL, err, sizeof(err)), 0);
	b = slurp(&len);
	assert_int_equal(len, strlen(SRC));
	assert_memory_equal(b, SRC, len);
	free(b);
	/* Only a user line may be restored that way. */
	assert_int_equal(map_edit_user_line(path, "bob", "user bob alf", NULL, err, sizeof(err)),
	                 -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_locate_finds_the_user_line_however_written),
	    cmocka_unit_test(test_locate_refuses_aliases_unknown_and_details),
	    cmocka_unit_test_setup_teardown(test_replacing_keeps_every_other_byte_and_the_comment,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_user_under_a_rule_is_appended_and_removed_again,
	                                    setup, teardown),
	    cmocka_unit_test(test_append_after_a_last_line_without_newline),
	    cmocka_unit_test_setup_teardown(test_a_saved_line_is_restored_exactly, setup, teardown),
	    cmocka_unit_test(test_crlf_line_keeps_its_cr),
	    cmocka_unit_test_setup_teardown(test_an_invalid_result_is_refused_and_nothing_changes,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_broken_source_is_refused_with_file_and_line,
	                                    setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
