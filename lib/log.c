/*
 * The log_* / fatal family (OpenBSD daemons' log.c is the model). Messages are formatted
 * into a bounded stack buffer; control characters are replaced so that a peer's bytes
 * can never forge a second log line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define LOG_LINE_BYTES 2048

static int log_to_stderr = 1;
static enum log_level log_max_level = LOG_LEVEL_INFO;
static const char *log_ident = "mailplex";

void
log_init(const char *ident, int to_stderr, enum log_level level)
{
	log_ident = ident;
	log_to_stderr = to_stderr;
	log_max_level = level;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_level(enum log_level level)
{
	log_max_level = level;
}

enum log_level
log_get_level(void)
{
	return log_max_level;
}

int
log_level_parse(const char *name)
{
	static const char *const names[] = {"err", "warn", "info", "debug"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return (int)i;
	return -1;
}

static void
log_emit(enum log_level level, const char *line)
{
	static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};

	if (level > log_max_level)
		return;
	if (log_to_stderr) {
		fprintf(stderr, "%s: %s\n", log_ident, line);
		fflush(stderr);
	} else {
		syslog(prio[level], "%s", line);
	}
}

static void __attribute__((format(printf, 3, 0)))
log_format(char *out, size_t outlen, const char *fmt, va_list ap, int errnum)
{
	int n = vsnprintf(out, outlen, fmt, ap);

	if (n < 0) {
		snprintf(out, outlen, "(unformattable log message)");
		n = (int)strlen(out);
	}
	if ((size_t)n >= outlen)
		n = (int)outlen - 1;
	if (errnum != 0)
		snprintf(out + n, outlen - (size_t)n, ": %s", strerror(errnum));
	for (char *p = out; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
}

void
vlog(enum log_level level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_BYTES];

	if (level > log_max_level)
		return;
	log_format(line, sizeof(line), fmt, ap, 0);
	log_emit(level, line);
}

#define LOG_BODY(level, errnum)                                                                   \
	do {                                                                                      \
		char line[LOG_LINE_BYTES];                                                        \
		va_list ap;                                                                       \
		if ((level) > log_max_level)                                                      \
			return;                                                                   \
		va_start(ap, fmt);                                                                \
		log_format(line, sizeof(line), fmt, ap, (errnum));                                \
		va_end(ap);                                                                       \
		log_emit((level), line);                                                          \
	} while (0)

void
log_warn(const char *fmt, ...)
{
	int saved = errno;

	LOG_BODY(LOG_LEVEL_WARN, saved);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_WARN, 0);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_INFO, 0);
}

void
log_debug(const char *fmt, ...)
{
	LOG_BODY(LOG_LEVEL_DEBUG, 0);
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	char line[LOG_LINE_BYTES];
	va_list ap;

	va_start(ap, fmt);
	log_format(line, sizeof(line), fmt, ap, saved);
	va_end(ap);
	log_emit(LOG_LEVEL_ERR, line);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	char line[LOG_LINE_BYTES];
	va_list ap;

	va_start(ap, fmt);
	log_format(line, sizeof(line), fmt, ap, 0);
	va_end(ap);
	log_emit(LOG_LEVEL_ERR, line);
	exit(1);
}
