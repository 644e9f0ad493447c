/*
 * mailplexctl move: a user's mailbox moved from one back end to another as a resumable
 * sequence of steps recorded in a state file. This header is the shared face of move*.c:
 * the state (move_state.c), publishing and the barrier (move_publish.c), the copy command
 * (move_copy.c) and the IMAP check (move_verify.c). Nothing here talks to a terminal.
 */
#ifndef MAILPLEX_MOVE_H
#define MAILPLEX_MOVE_H

#include <stddef.h>
#include <stdint.h>

#include "mailplex_conf.h"
#include "map.h"
#include "map_source.h"

#define MOVE_ERR_MAX      1024
#define MOVE_PASSWORD_MAX 256

/* In order: a move goes down this list; a resumed one starts after the last recorded. */
enum move_step {
	MOVE_STEP_START = 0,       /* nothing done yet */
	MOVE_STEP_MIGRATING,       /* "migrating OLD -> NEW" published */
	MOVE_STEP_SESSIONS_CLOSED, /* every proxy uses that map: no session on OLD */
	MOVE_STEP_QUEUE_DRAINED,   /* no delivery towards OLD in flight or to come */
	MOVE_STEP_COPIED,          /* the copy command succeeded */
	MOVE_STEP_VERIFIED,        /* message counts per folder equal */
	MOVE_STEP_DONE,            /* the user published on NEW */
};

enum move_status {
	MOVE_RUNNING = 0, /* in progress, or interrupted: run again to resume */
	MOVE_FAILED,      /* a step failed; the user was put back on OLD */
	MOVE_DONE,
};

struct move_state {
	char user[MAP_ADDR_MAX + 2]; /* local@domain */
	char old[MAP_NAME_MAX + 1];
	char new[MAP_NAME_MAX + 1];
	int via_user;                /* the user had a user line before (else a rule or default) */
	int step;                    /* enum move_step: the last one completed */
	int status;                  /* enum move_status */
	int failed_step;             /* MOVE_FAILED: the step that failed */
	uint64_t version;            /* the map version that made the user migrating */
	uint64_t started, updated;   /* unix time */
	char error[MOVE_ERR_MAX];    /* MOVE_FAILED: why, and how the rollback went */
	char orig[MAP_LINE_MAX + 1]; /* the user's line as it was, restored by a rollback */
};

/* One move's context: the config, the master password, the batch prefix. */
struct move_ctx {
	const struct mailplex_conf *conf;
	char password[MOVE_PASSWORD_MAX]; /* the master user's; never printed */
	int have_password;
};

/* mailplexctl move ARGS (after the word "move"); returns the exit code. */
int move_main(const char *conf_path, int argc, char **argv);

const char *move_step_name(int step);
/* The action that leads to a step ("copy" for copied): failures name it. */
const char *move_step_action(int step);
int move_step_parse(const char *name);
const char *move_status_name(int status);

/* move_state.c: files under move.state_dir, one per user; writes are atomic. */
int move_state_dir(const struct mailplex_conf *conf, char *err, size_t errlen);
int move_state_path(const struct mailplex_conf *conf, const char *user, const char *suffix,
                    char *path, size_t pathlen);
/* 1 read, 0 no state for that user, -1 error. */
int move_state_load(const struct mailplex_conf *conf, const char *user, struct move_state *st,
                    char *err, size_t errlen);
int move_state_save(const struct mailplex_conf *conf, struct move_state *st, char *err,
                    size_t errlen);
/* Parses a state file's text (bounded; fuzz-safe). 0 or -1. */
int move_state_parse(const char *buf, size_t len, struct move_state *st);
/* An exclusive lock held until the descriptor is closed; -1 with err if someone holds it. */
int move_lock(const struct mailplex_conf *conf, const char *name, int wait, char *err,
              size_t errlen);
/* Prints the table of every recorded move (or one user's). Returns an exit code. */
int move_status_print(const struct mailplex_conf *conf, const char *user);

/* move_publish.c: the map goes out, and the barrier waits until it is in force. */
/* The user's entry set to state (see map_edit_user; whole: map_edit_user_line), published. */
int move_publish(const struct mailplex_conf *conf, const char *user, const char *state, int whole,
                 uint64_t *version, char *err, size_t errlen);
int move_barrier(const struct mailplex_conf *conf, const char *user, uint64_t version,
                 int *reached_step, char *err, size_t errlen);
/* Local mode: asks the queue runner to try deferred mail now (best effort). */
void move_queue_flush(const struct mailplex_conf *conf);
/* Parsers of the daemons' replies (no I/O). */
int move_parse_in_force(const char *body, uint64_t *version);
/*
 * The director's map-status body: 1 if every member that may still deliver or hold
 * sessions has map_in_force >= version, 0 if not (lagging names the first), -1 malformed.
 */
int move_parse_map_status(const char *body, uint64_t version, char *lagging, size_t laglen);

/* move_copy.c: runs move.copy_command; its stderr tail goes into err on failure. */
int move_copy(const struct move_ctx *ctx, const struct move_state *st,
              const struct map_backend *oldb, const struct map_backend *newb, char *err,
              size_t errlen);

/* move_verify.c: folder by folder message counts on OLD and NEW over IMAP. */
int move_verify(const struct move_ctx *ctx, const char *user, const struct map_backend *oldb,
                const struct map_backend *newb, char *summary, size_t sumlen, char *err,
                size_t errlen);

#endif
