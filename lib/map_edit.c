/*
 * One user's entry in the map source, edited in place of the operator's file: find it with
 * the parser the compiler uses (so "where is the line" means what compile means), splice
 * one line, validate the whole result, replace the file by rename. Never touches any other
 * line and never writes a source that does not compile.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "map_edit.h"
#include "util.h"

/* The first error of a parse; warnings do not make a source fail. */
struct edit_diag {
	char first[512];
};

static void
edit_diag(void *arg, const char *msg)
{
	struct edit_diag *d = arg;

	if (d->first[0] == '\0' && strstr(msg, ": warning: ") == NULL)
		(void)str_copy(d->first, sizeof(d->first), msg);
}

struct map_source *
map_edit_parse(const char *name, const char *buf, size_t len, char *err, size_t errlen)
{
	struct edit_diag d = {.first = ""};
	struct map_source *src;

	if ((src = map_source_parse(name, buf, len, edit_diag, &d)) == NULL)
		err_set(err, errlen, "%s",
		        d.first[0] != '\0' ? d.first : "the source does not compile");
	return src;
}

static int
edit_locate_in(const struct map_source *src, const char *user, struct map_edit_user *out, char *err,
               size_t errlen)
{
	const struct map_tables *t = src->tables;
	char local[MAP_LOCAL_MAX + 1], domain[MAP_DOMAIN_MAX + 1], why[256];
	struct map_hit_info hit;
	struct map_fetcher fe;
	long d, b = -1;

	memset(out, 0, sizeof(*out));
	if (map_addr_split(user, strlen(user), t->domains[0].name, local, domain, why,
	                   sizeof(why)) == -1) {
		err_set(err, errlen, "%s: %s", user, why);
		return -1;
	}
	if ((d = map_tables_find_domain(t, domain)) < 0) {
		err_set(err, errlen, "%s: domain %s is not served by the map", user, domain);
		return -1;
	}
	(void)str_format(out->key, sizeof(out->key), "%s@%s", local, domain);
	map_source_fetcher((struct map_source *)(uintptr_t)src, &fe);
	why[0] = '\0';
	map_resolve_one(t, &fe, local, domain, d, &hit, why, sizeof(why));
	free(hit.val.owned);
	if (hit.detail[0] != '\0') {
		err_set(err, errlen, "%s: an address with a +detail; name the user itself", user);
		return -1;
	}
	switch (hit.hit) {
	case MAP_HIT_ERROR:
		err_set(err, errlen, "%s: %s", user, why);
		return -1;
	case MAP_HIT_NONE:
		err_set(err, errlen, "%s: unknown user (no user line, rule or default)", user);
		return -1;
	case MAP_HIT_ENTRY:
		if (hit.rec.kind != 'U') {
			err_set(err, errlen, "%s is an alias (line %u); move its targets", out->key,
			        hit.rec.line);
			return -1;
		}
		out->via = MAP_EDIT_VIA_USER;
		out->line = hit.rec.line;
		out->state = hit.rec.state;
		if (hit.rec.state == 'D' || hit.rec.state == 'M')
			b = (long)hit.rec.backend;
		if (hit.rec.state == 'M')
			(void)str_copy(out->old_backend, sizeof(out->old_backend),
			               t->backends[hit.rec.old_backend].name);
		break;
	case MAP_HIT_RULE:
		out->via = MAP_EDIT_VIA_RULE;
		out->state = 'D';
		b = (long)t->rules[hit.rule].backend;
		break;
	case MAP_HIT_DEFAULT:
		out->via = MAP_EDIT_VIA_DEFAULT;
		out->state = 'D';
		b = t->domains[d].default_backend;
		break;
	}
	if (b >= 0)
		(void)str_copy(out->backend, sizeof(out->backend), t->backends[b].name);
	return 0;
}

int
map_edit_locate(const char *name, const char *buf, size_t len, const char *user,
                struct map_edit_user *out, char *err, size_t errlen)
{
	struct map_source *src;
	int rc;

	if ((src = map_edit_parse(name, buf, len, err, errlen)) == NULL)
		return -1;
	rc = edit_locate_in(src, user, out, err, errlen);
	map_source_free(src);
	return rc;
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/*
 * The new text of a user line: indentation and "user NAME" as written, then state, then
 * the line's comment with the blanks before it. -1 if the line is not a user line.
 */
static int
edit_user_line(const char *c, size_t cl, const char *state, char *out, size_t outlen)
{
	size_t i = 0, name_end, cpos, ws;
	int quoted = 0;

	while (i < cl && is_blank(c[i]))
		i++;
	if (cl - i < 5 || memcmp(c + i, "user", 4) != 0 || !is_blank(c[i + 4]))
		return -1;
	i += 4;
	while (i < cl && is_blank(c[i]))
		i++;
	if (i == cl || c[i] == '"' || c[i] == '#')
		return -1;
	while (i < cl && !is_blank(c[i]) && c[i] != '#' && c[i] != '"')
		i++;
	name_end = i;
	for (cpos = name_end; cpos < cl; cpos++) {
		if (c[cpos] == '\\' && quoted && cpos + 1 < cl)
			cpos++;
		else if (c[cpos] == '"')
			quoted = !quoted;
		else if (c[cpos] == '#' && !quoted)
			break;
	}
	for (ws = cpos; ws > name_end && is_blank(c[ws - 1]); ws--)
		;
	if (cpos == cl)
		ws = cl;
	return str_format(out, outlen, "%.*s %s%.*s", (int)name_end, c, state, (int)(cl - ws),
	                  c + ws);
}

/* Start and end (before LF) of line n, or -1. */
static int
line_find(const char *buf, size_t len, unsigned int line, const char **start, const char **stop)
{
	const char *p = buf, *end = buf + len, *nl;
	unsigned int n = 0;

	for (; p < end && line > 0; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if (++n == line) {
			*start = p;
			*stop = nl;
			return 0;
		}
		if (nl == end)
			break;
	}
	return -1;
}

int
map_edit_line_text(const char *buf, size_t len, unsigned int line, char *out, size_t outlen)
{
	const char *start, *stop;
	size_t cl;

	if (line_find(buf, len, line, &start, &stop) == -1)
		return -1;
	cl = (size_t)(stop - start);
	if (cl > 0 && start[cl - 1] == '\r')
		cl--;
	if (memchr(start, '\0', cl) != NULL)
		return -1;
	return str_copy_n(out, outlen, start, cl);
}

int
map_edit_splice(const char *buf, size_t len, unsigned int line, const char *key, const char *state,
                int whole, char **out, size_t *outlen, char *err, size_t errlen)
{
	char repl[MAP_LINE_MAX + 2];
	const char *end = buf + len, *start = NULL, *stop = NULL;
	size_t cl, rl = 0, o = 0;
	char *r;
	int cr = 0;

	if (line == 0) {
		if (state == NULL ||
		    str_format(repl, sizeof(repl), "user %s %s\n", key, state) == -1) {
			err_set(err, errlen, "nothing to append, or the line is too long");
			return -1;
		}
		rl = strlen(repl);
		start = stop = end;
	} else {
		if (line_find(buf, len, line, &start, &stop) == -1) {
			err_set(err, errlen, "the source has no line %u", line);
			return -1;
		}
		cl = (size_t)(stop - start);
		if (cl > 0 && start[cl - 1] == '\r') {
			cl--;
			cr = 1;
		}
		if (state != NULL && whole) {
			if (str_copy(repl, sizeof(repl) - 1, state) == -1 ||
			    strchr(state, '\n') != NULL) {
				err_set(err, errlen, "a line too long or with a newline");
				return -1;
			}
			rl = strlen(repl);
			if (cr)
				repl[rl++] = '\r';
			stop = start + cl + cr;
		} else if (state != NULL) {
			if (cl > MAP_LINE_MAX ||
			    edit_user_line(start, cl, state, repl, sizeof(repl) - 1) == -1) {
				err_set(err, errlen,
				        "line %u is not a user line this tool can edit", line);
				return -1;
			}
			rl = strlen(repl);
			if (cr)
				repl[rl++] = '\r';
			stop = start + cl + cr;
		} else {
			/* Removal takes the line terminator with it. */
			stop = stop < end ? stop + 1 : stop;
		}
	}
	if ((r = malloc(len + rl + 2)) == NULL) {
		err_set(err, errlen, "out of memory");
		return -1;
	}
	memcpy(r, buf, (size_t)(start - buf));
	o = (size_t)(start - buf);
	/* Appending after a last line without its newline: end that line first. */
	if (line == 0 && len > 0 && buf[len - 1] != '\n')
		r[o++] = '\n';
	memcpy(r + o, repl, rl);
	o += rl;
	memcpy(r + o, stop, (size_t)(end - stop));
	o += (size_t)(end - stop);
	*out = r;
	*outlen = o;
	return 0;
}

char *
map_edit_read(const char *path, size_t *lenp, char *err, size_t errlen)
{
	struct stat sb;
	char *buf;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1 || fstat(fd, &sb) == -1) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		if (fd != -1)
			(void)close(fd);
		return NULL;
	}
	if (!S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > MAP_EDIT_SOURCE_MAX) {
		err_set(err, errlen, "%s: not a regular file of at most %lu bytes", path,
		        MAP_EDIT_SOURCE_MAX);
		(void)close(fd);
		return NULL;
	}
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL) {
		err_set(err, errlen, "out of memory");
		(void)close(fd);
		return NULL;
	}
	while (len < (size_t)sb.st_size) {
		n = read(fd, buf + len, (size_t)sb.st_size - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			err_set(err, errlen, "%s: %s", path,
			        n == 0 ? "shrank while read" : strerror(errno));
			free(buf);
			(void)close(fd);
			return NULL;
		}
		len += (size_t)n;
	}
	(void)close(fd);
	buf[len] = '\0';
	*lenp = len;
	return buf;
}

int
map_edit_write(const char *path, const char *buf, size_t len, char *err, size_t errlen)
{
	char dcopy[4096], bcopy[4096], tmp[4096 + 32];
	const char *dir, *base;
	struct stat sb;
	size_t o = 0;
	ssize_t n;
	int fd, dfd;

	if (stat(path, &sb) == -1) {
		err_set(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (str_copy(dcopy, sizeof(dcopy), path) == -1 ||
	    str_copy(bcopy, sizeof(bcopy), path) == -1) {
		err_set(err, errlen, "%s: path too long", path);
		return -1;
	}
	dir = dirname(dcopy);
	base = basename(bcopy);
	if (str_format(tmp, sizeof(tmp), "%s/.%s.edit-XXXXXX", dir, base) == -1) {
		err_set(err, errlen, "%s: path too long", path);
		return -1;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		err_set(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	if (fchmod(fd, sb.st_mode & 07777) == -1 ||
	    (geteuid() == 0 && fchown(fd, sb.st_uid, sb.st_gid) == -1))
		goto fail;
	while (o < len) {
		n = write(fd, buf + o, len - o);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			goto fail;
		o += (size_t)n;
	}
	if (fsync(fd) == -1)
		goto fail;
	if (close(fd) == -1) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1)
		goto fail;
	/* The rename is durable only once the directory is. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		err_set(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	if (fsync(dfd) == -1) {
		err_set(err, errlen, "fsync %s: %s", dir, strerror(errno));
		(void)close(dfd);
		return -1;
	}
	(void)close(dfd);
	return 0;
fail:
	err_set(err, errlen, "%s: %s", tmp, strerror(errno));
	if (fd != -1)
		(void)close(fd);
	(void)unlink(tmp);
	return -1;
}

static int
edit_user(const char *path, const char *user, const char *state, int whole,
          struct map_source **srcp, char *err, size_t errlen)
{
	struct map_source *src = NULL;
	struct map_edit_user u;
	char *buf, *nbuf = NULL;
	size_t len, nlen;
	int rc = -1;

	if (srcp != NULL)
		*srcp = NULL;
	if ((buf = map_edit_read(path, &len, err, errlen)) == NULL)
		return -1;
	if ((src = map_edit_parse(path, buf, len, err, errlen)) == NULL)
		goto out;
	if (edit_locate_in(src, user, &u, err, errlen) == -1)
		goto out;
	map_source_free(src);
	src = NULL;
	if (state == NULL && u.via != MAP_EDIT_VIA_USER) {
		/* Nothing to remove: the source stays as it is. */
		if ((src = map_edit_parse(path, buf, len, err, errlen)) == NULL)
			goto out;
		rc = 0;
		goto out;
	}
	if (whole && u.via != MAP_EDIT_VIA_USER) {
		err_set(err, errlen, "%s has no user line to replace", u.key);
		goto out;
	}
	if (map_edit_splice(buf, len, u.via == MAP_EDIT_VIA_USER ? u.line : 0, u.key, state, whole,
	                    &nbuf, &nlen, err, errlen) == -1)
		goto out;
	if ((src = map_edit_parse(path, nbuf, nlen, err, errlen)) == NULL)
		goto out;
	if (map_edit_write(path, nbuf, nlen, err, errlen) == -1)
		goto out;
	rc = 0;
out:
	if (rc == 0 && srcp != NULL)
		*srcp = src;
	else
		map_source_free(src);
	free(nbuf);
	free(buf);
	return rc;
}

int
map_edit_user(const char *path, const char *user, const char *state, struct map_source **srcp,
              char *err, size_t errlen)
{
	return edit_user(path, user, state, 0, srcp, err, errlen);
}

int
map_edit_user_line(const char *path, const char *user, const char *text, struct map_source **srcp,
                   char *err, size_t errlen)
{
	return edit_user(path, user, text, 1, srcp, err, errlen);
}
