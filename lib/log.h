/*
 * Logging for every mailplex program: syslog (LOG_MAIL) in daemon mode, stderr in the
 * foreground. One line per event. Never pass a password or a message body to these.
 */
#ifndef MAILPLEX_LOG_H
#define MAILPLEX_LOG_H

#include <stdarg.h>

enum log_level {
	LOG_LEVEL_ERR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/* ident: program name; to_stderr: foreground mode; level: highest level emitted. */
void log_init(const char *ident, int to_stderr, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "err", "warn", "info", "debug" -> level; -1 if unknown. */
int log_level_parse(const char *name);

/* log_warn and fatal append ": strerror(errno)"; the x variants do not. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void vlog(enum log_level level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#endif
