/*
 * The queue runner of mailplex-smtpd: a child of the master, unprivileged, that delivers
 * what the receivers committed to SPOOL/queue/ to each recipient's back end (LMTP or SMTP),
 * retries with back-off, bounces (RFC 3464) what fails for good, and serves the queue
 * control socket. It never modifies queue/QID; its own progress is SPOOL/state/QID.
 */
#ifndef MAILPLEX_QUEUE_H
#define MAILPLEX_QUEUE_H

struct mailplex_conf;

/*
 * Runs the queue runner's event loop until SIGTERM (or SIGINT). conf_path is kept for
 * messages and a reload. Returns an exit status (0 after a clean stop, 1 on a start-up
 * failure: spool, control socket or map cannot be opened).
 */
int queue_runner_main(const struct mailplex_conf *conf, const char *conf_path);

#endif
