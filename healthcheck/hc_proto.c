/*
 * The protocol checks, written as step tables for the engine in hc_engine.c. Owns what
 * each protocol sends and expects; it must never do I/O itself. After a TLS upgrade the
 * session is exercised once more (EHLO, LOGOUT, QUIT) so a broken TLS layer fails here.
 */
#include <string.h>

#include "hc.h"
#include "util.h"

#define CONNECT                                                                                    \
	{                                                                                          \
		HC_OP_CONNECT, "connect", NULL, NULL, 0, 0                                         \
	}
#define TLS_IMPLICIT                                                                               \
	{                                                                                          \
		HC_OP_TLS, "TLS handshake", NULL, NULL, 0, 0                                       \
	}
#define TLS_UPGRADE                                                                                \
	{                                                                                          \
		HC_OP_TLS, "TLS handshake", NULL, NULL, 0, HC_STEP_AFTER_STARTTLS                  \
	}
#define SEND(t, ph)                                                                                \
	{                                                                                          \
		HC_OP_SEND, ph, t, NULL, 0, 0                                                      \
	}
#define SEND_HELO(t)                                                                               \
	{                                                                                          \
		HC_OP_SEND, t, t, NULL, 0, HC_STEP_HELO                                            \
	}
#define SMTP(c, ph, f)                                                                             \
	{                                                                                          \
		HC_OP_EXPECT_SMTP, ph, NULL, NULL, c, f                                            \
	}
#define LINE(w, s, ph, f)                                                                          \
	{                                                                                          \
		HC_OP_EXPECT_LINE, ph, w, s, 0, f                                                  \
	}
#define CLOSE                                                                                      \
	{                                                                                          \
		HC_OP_CLOSE, "close", NULL, NULL, 0, 0                                             \
	}

static const struct hc_step hc_tcp[] = {CONNECT, CLOSE};

static const struct hc_step hc_smtp[] = {
    CONNECT,
    SMTP(220, "banner", HC_STEP_GREETING),
    SEND_HELO("EHLO"),
    SMTP(250, "EHLO", 0),
    SEND("QUIT", "QUIT"),
    SMTP(221, "QUIT", 0),
    CLOSE,
};

/* RFC 3207: after the upgrade the client forgets what it knew and says EHLO again. */
static const struct hc_step hc_smtp_starttls[] = {
    CONNECT,
    SMTP(220, "banner", HC_STEP_GREETING),
    SEND_HELO("EHLO"),
    SMTP(250, "EHLO", HC_STEP_NEED_STARTTLS),
    SEND("STARTTLS", "STARTTLS"),
    SMTP(220, "STARTTLS", 0),
    TLS_UPGRADE,
    SEND_HELO("EHLO"),
    SMTP(250, "EHLO", 0),
    SEND("QUIT", "QUIT"),
    SMTP(221, "QUIT", 0),
    CLOSE,
};

static const struct hc_step hc_smtps[] = {
    CONNECT,
    TLS_IMPLICIT,
    SMTP(220, "banner", HC_STEP_GREETING),
    SEND_HELO("EHLO"),
    SMTP(250, "EHLO", 0),
    SEND("QUIT", "QUIT"),
    SMTP(221, "QUIT", 0),
    CLOSE,
};

/* RFC 3501 7.1: a greeting of PREAUTH or BYE is not a usable server. */
static const struct hc_step hc_imap[] = {
    CONNECT,
    LINE("* OK", NULL, "greeting", HC_STEP_GREETING),
    SEND("a1 LOGOUT", "LOGOUT"),
    LINE("a1 OK", "* ", "LOGOUT", 0),
    CLOSE,
};

static const struct hc_step hc_imap_starttls[] = {
    CONNECT,
    LINE("* OK", NULL, "greeting", HC_STEP_GREETING),
    SEND("a1 STARTTLS", "STARTTLS"),
    LINE("a1 OK", "* ", "STARTTLS", 0),
    TLS_UPGRADE,
    SEND("a2 LOGOUT", "LOGOUT"),
    LINE("a2 OK", "* ", "LOGOUT", 0),
    CLOSE,
};

static const struct hc_step hc_imaps[] = {
    CONNECT,
    TLS_IMPLICIT,
    LINE("* OK", NULL, "greeting", HC_STEP_GREETING),
    SEND("a1 LOGOUT", "LOGOUT"),
    LINE("a1 OK", "* ", "LOGOUT", 0),
    CLOSE,
};

static const struct hc_step hc_pop3[] = {
    CONNECT,
    LINE("+OK", NULL, "greeting", HC_STEP_GREETING),
    SEND("QUIT", "QUIT"),
    LINE("+OK", NULL, "QUIT", 0),
    CLOSE,
};

/* RFC 2595 4: STLS, then the session starts over inside TLS. */
static const struct hc_step hc_pop3_starttls[] = {
    CONNECT,
    LINE("+OK", NULL, "greeting", HC_STEP_GREETING),
    SEND("STLS", "STLS"),
    LINE("+OK", NULL, "STLS", 0),
    TLS_UPGRADE,
    SEND("QUIT", "QUIT"),
    LINE("+OK", NULL, "QUIT", 0),
    CLOSE,
};

static const struct hc_step hc_pop3s[] = {
    CONNECT,
    TLS_IMPLICIT,
    LINE("+OK", NULL, "greeting", HC_STEP_GREETING),
    SEND("QUIT", "QUIT"),
    LINE("+OK", NULL, "QUIT", 0),
    CLOSE,
};

struct hc_proto {
	enum hc_type type;
	const char *name;
	const struct hc_step *plain;
	size_t nplain;
	const struct hc_step *upgrade; /* NULL: no STARTTLS for this type */
	size_t nupgrade;
	int implicit_tls;
};

#define T(x) x, ARRAY_LEN(x)
static const struct hc_proto hc_protos[] = {
    {HC_TCP, "tcp", T(hc_tcp), NULL, 0, 0},
    {HC_SMTP, "smtp", T(hc_smtp), T(hc_smtp_starttls), 0},
    {HC_SMTPS, "smtps", T(hc_smtps), NULL, 0, 1},
    {HC_IMAP, "imap", T(hc_imap), T(hc_imap_starttls), 0},
    {HC_IMAPS, "imaps", T(hc_imaps), NULL, 0, 1},
    {HC_POP3, "pop3", T(hc_pop3), T(hc_pop3_starttls), 0},
    {HC_POP3S, "pop3s", T(hc_pop3s), NULL, 0, 1},
};
#undef T

static const struct hc_proto *
hc_proto_get(enum hc_type type)
{
	size_t i;

	for (i = 0; i < ARRAY_LEN(hc_protos); i++)
		if (hc_protos[i].type == type)
			return &hc_protos[i];
	return NULL;
}

int
hc_type_parse(const char *name, enum hc_type *type)
{
	size_t i;

	if (strcmp(name, "pops") == 0) /* monitoring-plugins' and Perdition's spelling */
		name = "pop3s";
	for (i = 0; i < ARRAY_LEN(hc_protos); i++) {
		if (strcmp(name, hc_protos[i].name) == 0) {
			*type = hc_protos[i].type;
			return 0;
		}
	}
	return -1;
}

const char *
hc_type_name(enum hc_type type)
{
	const struct hc_proto *p = hc_proto_get(type);

	return p != NULL ? p->name : "unknown";
}

const struct hc_step *
hc_proto_steps(enum hc_type type, int starttls, size_t *nsteps)
{
	const struct hc_proto *p = hc_proto_get(type);

	if (p == NULL || (starttls && p->upgrade == NULL))
		return NULL;
	*nsteps = starttls ? p->nupgrade : p->nplain;
	return starttls ? p->upgrade : p->plain;
}

int
hc_spec_uses_tls(const struct hc_spec *spec)
{
	const struct hc_proto *p = hc_proto_get(spec->type);

	return p != NULL && (p->implicit_tls || spec->starttls);
}

int
hc_spec_check(const struct hc_spec *spec, char *err, size_t errlen)
{
	size_t n;

	if (hc_proto_steps(spec->type, spec->starttls, &n) == NULL) {
		(void)str_format(err, errlen, "%s has no STARTTLS", hc_type_name(spec->type));
		return -1;
	}
	if (hc_spec_uses_tls(spec) && spec->ssl_ctx == NULL) {
		(void)str_copy(err, errlen, "TLS check without a TLS context");
		return -1;
	}
	if (spec->addrlen == 0 || spec->timeout_ms == 0) {
		(void)str_copy(err, errlen, "check without address or timeout");
		return -1;
	}
	return 0;
}

const char *
hc_status_name(enum hc_status status)
{
	switch (status) {
	case HC_OK:
		return "OK";
	case HC_WARNING:
		return "WARNING";
	case HC_CRITICAL:
		return "CRITICAL";
	default:
		return "UNKNOWN";
	}
}
