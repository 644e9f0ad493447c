/*
 * Health checks of mail services: one send/expect engine (a check is a table of steps),
 * the protocol tables written in it (tcp, smtp, imap, pop3, STARTTLS and implicit TLS),
 * and the scheduler with rise/fall the director runs many of in one event loop.
 * Nothing here blocks, resolves names or exits the process.
 */
#ifndef MAILPLEX_HC_H
#define MAILPLEX_HC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "event.h"
#include "hc_reply.h"
#include "linebuf.h"
#include "sock.h"

/* Nagios plugin exit codes, in order of severity. */
enum hc_status {
	HC_OK = 0,
	HC_WARNING = 1,
	HC_CRITICAL = 2,
	HC_UNKNOWN = 3,
};

enum hc_type {
	HC_TCP,
	HC_SMTP,
	HC_SMTPS,
	HC_IMAP,
	HC_IMAPS,
	HC_POP3,
	HC_POP3S,
};

#define HC_LINE_MAX_BYTES 2048 /* RFC 5321 4.5.3.1.5 allows 512; servers pad banners */
#define HC_OUT_MAX_BYTES  (16 + SOCK_HOST_MAX + 2)
#define HC_REASON_MAX     256

enum hc_step_op {
	HC_OP_CONNECT,
	HC_OP_TLS,         /* TLS handshake: at once for implicit TLS, after STARTTLS/STLS */
	HC_OP_SEND,        /* text + CRLF */
	HC_OP_EXPECT_SMTP, /* a (multi-line) SMTP reply with code */
	HC_OP_EXPECT_LINE, /* a line starting with text, lines starting with skip passed */
	HC_OP_CLOSE,       /* the check passed */
};

#define HC_STEP_HELO           0x01 /* SEND: the spec's HELO name follows the text */
#define HC_STEP_GREETING       0x02 /* EXPECT: its first line is the result's greeting */
#define HC_STEP_NEED_STARTTLS  0x04 /* EXPECT_SMTP: the EHLO reply must offer STARTTLS */
#define HC_STEP_AFTER_STARTTLS 0x08 /* TLS: upgrading a plaintext session */

struct hc_step {
	enum hc_step_op op;
	const char *phase; /* where a run was when it ended: "banner", "EHLO", "STARTTLS" */
	const char *text;  /* SEND: command; EXPECT_LINE: wanted prefix */
	const char *skip;  /* EXPECT_LINE: prefix of lines to pass over */
	int code;          /* EXPECT_SMTP: wanted code */
	unsigned flags;
};

/* What to check. Filled by the caller; the engine only reads it. */
struct hc_spec {
	enum hc_type type;
	int starttls; /* smtp, imap, pop3: upgrade with STARTTLS/STLS */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char addr_str[SOCK_ADDR_STRLEN]; /* for reasons and logs */
	char servername[SOCK_HOST_MAX];  /* SNI and certificate name; "" for none */
	char helo[SOCK_HOST_MAX];        /* EHLO argument */
	uint64_t timeout_ms;             /* whole run */
	int cert_warn_days;              /* WARNING below this many days; 0: not checked */
	SSL_CTX *ssl_ctx;                /* borrowed; required when hc_spec_uses_tls */
};

struct hc_result {
	enum hc_status status;
	uint64_t latency_ms;
	int code;          /* last SMTP reply code seen, 0 if none */
	int tls;           /* a TLS handshake completed */
	int starttls;      /* ... as an upgrade (STARTTLS/STLS) */
	int cert_days;     /* days the peer certificate has left; HC_CERT_DAYS_NONE if no TLS */
	const char *phase; /* step running at the end */
	char greeting[HC_TEXT_MAX];
	char reason[HC_REASON_MAX]; /* why not OK; empty when OK */
};

#define HC_CERT_DAYS_NONE (-100000)

/* "tcp", "smtp", ... ("pops" is taken for "pop3s"). 0, or -1 if unknown. */
int hc_type_parse(const char *name, enum hc_type *type);
const char *hc_type_name(enum hc_type type);
/* The step table of a type with or without STARTTLS; NULL if the pair makes no sense. */
const struct hc_step *hc_proto_steps(enum hc_type type, int starttls, size_t *nsteps);
/* 1 if a run of spec does a TLS handshake (implicit TLS or STARTTLS). */
int hc_spec_uses_tls(const struct hc_spec *spec);
/* 0 if spec can run; -1 with err otherwise (STARTTLS on tcp/smtps, TLS without ctx...). */
int hc_spec_check(const struct hc_spec *spec, char *err, size_t errlen);
const char *hc_status_name(enum hc_status status);

/* ---- one run ---- */

struct hc_session;
/* Called exactly once per started run, last: the session may be restarted or freed. */
typedef void hc_done_fn(struct hc_session *s, const struct hc_result *r, void *arg);

/* Embedded in its owner; fields are the engine's. */
struct hc_session {
	struct ev_loop *loop;
	const struct hc_spec *spec;
	const struct hc_step *steps;
	size_t nsteps;
	size_t step;
	int entered; /* the current step's set-up ran */
	int fd;
	int io_events;
	SSL *ssl;
	struct linebuf in;
	char out[HC_OUT_MAX_BYTES];
	size_t outlen;
	size_t outoff;
	union {
		struct hc_smtp_reply smtp;
		struct hc_line_reply line;
	} reply;
	struct ev_timer timer;
	uint64_t start_ms;
	int running;
	struct hc_result result;
	hc_done_fn *done;
	void *arg;
};

void hc_session_init(struct hc_session *s);
/*
 * Starts a run of spec (which must outlive it). done is always called later from the
 * loop, never from inside this call. -1 only if spec is unusable (hc_spec_check).
 */
int hc_session_start(struct hc_session *s, struct ev_loop *loop, const struct hc_spec *spec,
                     hc_done_fn *done, void *arg);
/* Ends a run without calling done; harmless when none is running. */
void hc_session_abort(struct hc_session *s);
int hc_session_running(const struct hc_session *s);

/* ---- the scheduler ---- */

struct hc_params {
	uint64_t interval_ms; /* between the end of a run and the start of the next, ±10% */
	unsigned rise;        /* passing runs that bring a down check up */
	unsigned fall;        /* failing runs that take an up check down */
	int initially_up;     /* a restarted director keeps what is in the kernel */
};

/* Rise/fall counters, kept apart from I/O so the arithmetic is testable alone. */
struct hc_health {
	int up;
	unsigned nok;   /* consecutive passing runs while down */
	unsigned nfail; /* consecutive failing runs while up */
};

/*
 * OK and WARNING pass, CRITICAL fails, UNKNOWN (our own trouble, e.g. out of
 * descriptors) changes nothing. Returns 1 if up/down flipped.
 */
int hc_health_update(struct hc_health *h, enum hc_status status, unsigned rise, unsigned fall);
/* interval_ms moved by (rnd mapped onto) -10% .. +10%. */
uint64_t hc_jitter_ms(uint64_t interval_ms, uint32_t rnd);

struct hc_check;
/* After every run; changed: the state flipped. The check may be freed inside. */
typedef void hc_check_fn(struct hc_check *c, const struct hc_result *r, int changed, void *arg);

struct hc_check {
	struct ev_loop *loop;
	struct hc_spec spec;
	struct hc_params params;
	struct hc_health health;
	struct hc_session sess;
	struct ev_timer timer;
	struct hc_result last;
	uint64_t nruns;
	uint32_t rng; /* xorshift32: jitter without the process's rand() */
	hc_check_fn *cb;
	void *arg;
};

/* Copies spec and params; up-refs spec->ssl_ctx. NULL with err if unusable. */
struct hc_check *hc_check_new(struct ev_loop *loop, const struct hc_spec *spec,
                              const struct hc_params *params, hc_check_fn *cb, void *arg, char *err,
                              size_t errlen);
/* First run at a random point within one interval, so that many checks spread out. */
int hc_check_start(struct hc_check *c);
void hc_check_free(struct hc_check *c);
int hc_check_is_up(const struct hc_check *c);
/* "UP", "UP 1/3 failed", "DOWN 1/2 passed": the x/y for status displays and logs. */
void hc_check_state_string(const struct hc_check *c, char *buf, size_t len);

#endif
