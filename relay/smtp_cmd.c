/*
 * SMTP command lines and DATA/BDAT bodies, parsed from bytes only (see smtp_cmd.h).
 * Nothing here reads a socket, logs or allocates; every error is a static reply line, so
 * a session answers exactly what the parser decided. Paths follow RFC 5321 4.1.2 with
 * the RFC 6531 UTF-8 extension; anything that could route mail elsewhere is flagged.
 */
#include <string.h>
#include <strings.h>

#include "smtp_cmd.h"
#include "util.h"

#define R_SYNTAX    "500 5.5.2 Syntax error, command unrecognized"
#define R_TOO_LONG  "500 5.5.2 Line too long"
#define R_BAD_BYTE  "500 5.5.2 Invalid character in command"
#define R_EHLO      "501 5.5.4 Syntax: EHLO hostname"
#define R_HELO      "501 5.5.4 Syntax: HELO hostname"
#define R_MAIL      "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8]"
#define R_RCPT      "501 5.5.4 Syntax: RCPT TO:<address>"
#define R_PATH      "553 5.1.3 Bad address syntax"
#define R_PATH_LONG "553 5.1.3 Address too long"
#define R_NO_ARGS   "501 5.5.4 No parameters allowed"
#define R_PARAM     "555 5.5.4 Unsupported parameter"
#define R_BDAT      "501 5.5.4 Syntax: BDAT size [LAST]"
#define R_VRFY      "501 5.5.4 Syntax: VRFY address"
#define R_RCPT_NULL "553 5.1.3 The null path is not a recipient"
#define R_ROUTE     "550 5.7.1 Source routes are not accepted"

static const struct {
	const char *name;
	enum smtp_verb verb;
} smtp_verbs[] = {
    {"EHLO", SMTP_EHLO}, {"HELO", SMTP_HELO}, {"MAIL", SMTP_MAIL},         {"RCPT", SMTP_RCPT},
    {"DATA", SMTP_DATA}, {"BDAT", SMTP_BDAT}, {"RSET", SMTP_RSET},         {"NOOP", SMTP_NOOP},
    {"QUIT", SMTP_QUIT}, {"VRFY", SMTP_VRFY}, {"STARTTLS", SMTP_STARTTLS},
};

static enum smtp_cmd_status
smtp_err(struct smtp_cmd *cmd, const char *reply)
{
	cmd->reply = reply;
	return SMTP_CMD_ERR;
}

/* RFC 5322 atext, and the UTF-8 octets RFC 6531 adds (checked for form by the map). */
static int
smtp_is_atext(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static int
smtp_is_domain_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c >= 0x80;
}

/* Case-insensitive prefix match; advances *p past it. */
static int
smtp_eat(const char **p, const char *end, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(end - *p) < n || strncasecmp(*p, word, n) != 0)
		return 0;
	*p += n;
	return 1;
}

/*
 * "<...>" at *p: fills cmd->addr. is_rcpt: a source route or an address literal is a
 * relay trick there. Advances *p past '>'.
 */
static enum smtp_cmd_status
smtp_parse_path(const char **pp, const char *end, struct smtp_cmd *cmd, int is_rcpt)
{
	const char *p = *pp, *start, *at = NULL, *q;
	size_t local_len, dom_len, n;
	int quoted = 0;

	if (p >= end || *p != '<')
		return smtp_err(cmd, is_rcpt ? R_RCPT : R_MAIL);
	if ((q = memchr(p, '>', (size_t)(end - p))) == NULL)
		return smtp_err(cmd, R_PATH);
	if ((size_t)(q - p) + 1 > SMTP_PATH_MAX)
		return smtp_err(cmd, R_PATH_LONG);
	p++;
	/* A-d-l (RFC 5321 4.1.2): "@one,@two:" - obsolete, and a way to relay. */
	if (p < q && *p == '@') {
		if (is_rcpt)
			return smtp_err(cmd, R_ROUTE);
		while (p < q && *p != ':') {
			if (!smtp_is_domain_char((unsigned char)*p) && *p != '@' && *p != ',' &&
			    *p != '[' && *p != ']')
				return smtp_err(cmd, R_PATH);
			p++;
		}
		if (p >= q)
			return smtp_err(cmd, R_PATH);
		p++;
	}
	start = p;
	if (p == q) { /* <> */
		if (is_rcpt)
			return smtp_err(cmd, R_RCPT_NULL);
		cmd->addr[0] = '\0';
		*pp = q + 1;
		return SMTP_CMD_OK;
	}
	if (*p == '"') {
		quoted = 1;
		for (p++; p < q && *p != '"'; p++) {
			unsigned char c = (unsigned char)*p;

			if (c == '\\') {
				if (++p >= q || (unsigned char)*p < 0x20 ||
				    (unsigned char)*p == 0x7f)
					return smtp_err(cmd, R_PATH);
				continue;
			}
			if (c < 0x20 || c == 0x7f)
				return smtp_err(cmd, R_PATH);
		}
		if (p >= q)
			return smtp_err(cmd, R_PATH);
		p++;
	} else {
		/* dot-string: atoms separated by single dots */
		if (*p == '.')
			return smtp_err(cmd, R_PATH);
		for (; p < q && *p != '@'; p++) {
			if (*p == '.' && (p[1] == '.' || p + 1 == q || p[1] == '@'))
				return smtp_err(cmd, R_PATH);
			if (*p != '.' && !smtp_is_atext((unsigned char)*p))
				return smtp_err(cmd, R_PATH);
		}
	}
	local_len = (size_t)(p - start);
	if (local_len == 0 || local_len > MAP_LOCAL_MAX)
		return smtp_err(cmd, local_len == 0 ? R_PATH : R_PATH_LONG);
	if (p < q && *p == '@') {
		at = p++;
		dom_len = (size_t)(q - p);
		if (dom_len == 0 || dom_len > SMTP_DOMAIN_MAX)
			return smtp_err(cmd, dom_len == 0 ? R_PATH : R_PATH_LONG);
		if (*p == '[') {
			/* address literal: "[192.0.2.1]", "[IPv6:...]" */
			if (q[-1] != ']')
				return smtp_err(cmd, R_PATH);
			for (n = 1; n + 1 < dom_len; n++)
				if ((unsigned char)p[n] <= 0x20 || (unsigned char)p[n] >= 0x7f ||
				    p[n] == '[' || p[n] == ']' || p[n] == '\\')
					return smtp_err(cmd, R_PATH);
			if (is_rcpt)
				cmd->relay_trick = 1;
		} else {
			for (n = 0; n < dom_len; n++)
				if (!smtp_is_domain_char((unsigned char)p[n]) ||
				    (p[n] == '.' &&
				     (n == 0 || n + 1 == dom_len || p[n + 1] == '.')))
					return smtp_err(cmd, R_PATH);
		}
	} else if (p != q) {
		return smtp_err(cmd, R_PATH);
	} else if (!is_rcpt || local_len != 10 || strncasecmp(start, "postmaster", 10) != 0) {
		/* RFC 5321 4.5.1: only <postmaster> may come without a domain */
		return smtp_err(cmd, R_PATH);
	}
	if (str_copy_n(cmd->addr, sizeof(cmd->addr), start, (size_t)(q - start)) == -1)
		return smtp_err(cmd, R_PATH_LONG);
	for (n = 0; cmd->addr[n] != '\0'; n++)
		if ((unsigned char)cmd->addr[n] >= 0x80)
			cmd->utf8 = 1;
	if (is_rcpt) {
		/* "user%other@us", "host!user@us", "\"user@other\"@us": relaying by the back door
		 */
		if (quoted || memchr(start, '%', local_len) != NULL ||
		    memchr(start, '!', local_len) != NULL)
			cmd->relay_trick = 1;
	}
	(void)at;
	*pp = q + 1;
	return SMTP_CMD_OK;
}

/* MAIL parameters (RFC 1869 esmtp-param), separated by single spaces. */
static enum smtp_cmd_status
smtp_parse_mail_params(const char *p, const char *end, struct smtp_cmd *cmd)
{
	char word[64];
	const char *w;
	size_t n;

	while (p < end) {
		if (*p != ' ')
			return smtp_err(cmd, R_MAIL);
		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		for (w = p; p < end && *p != ' '; p++)
			;
		n = (size_t)(p - w);
		if (str_copy_n(word, sizeof(word), w, n) == -1)
			return smtp_err(cmd, R_PARAM);
		if (strncasecmp(word, "SIZE=", 5) == 0) {
			if (cmd->has_size ||
			    parse_u64(word + 5, 0, UINT64_MAX / 2, &cmd->size) == -1)
				return smtp_err(cmd, R_MAIL);
			cmd->has_size = 1;
		} else if (strcasecmp(word, "BODY=7BIT") == 0 && cmd->body == SMTP_BODY_NONE) {
			cmd->body = SMTP_BODY_7BIT;
		} else if (strcasecmp(word, "BODY=8BITMIME") == 0 && cmd->body == SMTP_BODY_NONE) {
			cmd->body = SMTP_BODY_8BITMIME;
		} else if (strcasecmp(word, "BODY=BINARYMIME") == 0 &&
		           cmd->body == SMTP_BODY_NONE) {
			cmd->body = SMTP_BODY_BINARYMIME;
		} else if (strcasecmp(word, "SMTPUTF8") == 0 && !cmd->smtputf8) {
			cmd->smtputf8 = 1;
		} else {
			return smtp_err(cmd, R_PARAM);
		}
	}
	return SMTP_CMD_OK;
}

enum smtp_cmd_status
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd)
{
	const char *p = line, *end = line + len, *w;
	size_t i, n;

	memset(cmd, 0, sizeof(*cmd));
	if (len > SMTP_CMD_LINE_MAX + SMTP_CMD_LINE_EXT)
		return smtp_err(cmd, R_TOO_LONG);
	for (i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			return smtp_err(cmd, R_BAD_BYTE);
	for (w = p; p < end && *p != ' '; p++)
		;
	n = (size_t)(p - w);
	for (i = 0; i < ARRAY_LEN(smtp_verbs); i++)
		if (strlen(smtp_verbs[i].name) == n && strncasecmp(w, smtp_verbs[i].name, n) == 0)
			cmd->verb = smtp_verbs[i].verb;
	if (cmd->verb == SMTP_NONE)
		return smtp_err(cmd, R_SYNTAX);

	switch (cmd->verb) {
	case SMTP_EHLO:
	case SMTP_HELO:
	case SMTP_VRFY: {
		const char *bad = cmd->verb == SMTP_EHLO   ? R_EHLO
		                  : cmd->verb == SMTP_HELO ? R_HELO
		                                           : R_VRFY;

		while (p < end && *p == ' ')
			p++;
		/* trailing blanks are common; the argument itself is one word (VRFY: any) */
		while (end > p && end[-1] == ' ')
			end--;
		n = (size_t)(end - p);
		if (n == 0 || n > SMTP_ARG_MAX)
			return smtp_err(cmd, bad);
		if (cmd->verb != SMTP_VRFY && memchr(p, ' ', n) != NULL)
			return smtp_err(cmd, bad);
		for (i = 0; i < n; i++)
			if ((unsigned char)p[i] >= 0x7f && cmd->verb != SMTP_VRFY)
				return smtp_err(cmd, bad);
		(void)str_copy_n(cmd->arg, sizeof(cmd->arg), p, n);
		return SMTP_CMD_OK;
	}
	case SMTP_MAIL:
		if (!smtp_eat(&p, end, " FROM:"))
			return smtp_err(cmd, R_MAIL);
		while (p < end && *p == ' ') /* "MAIL FROM: <a@b>" is common; be lenient */
			p++;
		if (smtp_parse_path(&p, end, cmd, 0) != SMTP_CMD_OK)
			return SMTP_CMD_ERR;
		return smtp_parse_mail_params(p, end, cmd);
	case SMTP_RCPT:
		if (!smtp_eat(&p, end, " TO:"))
			return smtp_err(cmd, R_RCPT);
		while (p < end && *p == ' ')
			p++;
		if (smtp_parse_path(&p, end, cmd, 1) != SMTP_CMD_OK)
			return SMTP_CMD_ERR;
		while (p < end && *p == ' ')
			p++;
		if (p != end) /* no RCPT parameters are announced (no DSN) */
			return smtp_err(cmd, R_PARAM);
		return SMTP_CMD_OK;
	case SMTP_BDAT: {
		char num[24];

		if (!smtp_eat(&p, end, " "))
			return smtp_err(cmd, R_BDAT);
		for (w = p; p < end && *p != ' '; p++)
			;
		if (str_copy_n(num, sizeof(num), w, (size_t)(p - w)) == -1 ||
		    parse_u64(num, 0, UINT64_MAX / 2, &cmd->chunk) == -1)
			return smtp_err(cmd, R_BDAT);
		if (p < end) {
			if (!smtp_eat(&p, end, " LAST") || p != end)
				return smtp_err(cmd, R_BDAT);
			cmd->last = 1;
		}
		return SMTP_CMD_OK;
	}
	case SMTP_NOOP:
		return SMTP_CMD_OK; /* RFC 5321 4.1.1.9: a parameter is ignored */
	default:
		while (end > p && end[-1] == ' ')
			end--;
		if (p != end)
			return smtp_err(cmd, R_NO_ARGS);
		return SMTP_CMD_OK;
	}
}

/* ---- DATA / BDAT ---- */

void
smtp_data_init(struct smtp_data *d, enum smtp_data_mode mode)
{
	memset(d, 0, sizeof(*d));
	d->mode = mode;
	d->state = SMTP_DS_BOL;
}

/* The bytes before the first CR or LF: in the middle of a line they pass unchanged. */
static size_t
smtp_data_span(const uint8_t *p, size_t n)
{
	const uint8_t *cr = memchr(p, '\r', n), *lf;

	if (cr != NULL)
		n = (size_t)(cr - p);
	lf = memchr(p, '\n', n);
	return lf != NULL ? (size_t)(lf - p) : n;
}

/*
 * One transition per input byte, except that the middle of a line is copied in one go up
 * to its CR or LF (most of a body: byte-wise it cost more CPU than anything else for
 * 100 KiB messages). CR and LF are legal only as the pair CR LF; a lone one anywhere (also
 * in "\n.\r\n" or "\r\n.\n") ends the message as BARE, so no reading of the stream can find
 * an end of data that another MTA would not find (CVE-2023-51764).
 */
size_t
smtp_data_feed(struct smtp_data *d, const uint8_t *in, size_t len, uint8_t *out, size_t *produced)
{
	size_t i, o = 0, n;

	for (i = 0; i < len; i++) {
		uint8_t c;

		if (d->state == SMTP_DS_MID) {
			n = smtp_data_span(in + i, len - i);
			memcpy(out + o, in + i, n);
			o += n;
			i += n;
			if (i == len)
				break;
		}
		c = in[i];
		switch (d->state) {
		case SMTP_DS_BOL:
			if (c == '.' && d->mode == SMTP_DATA_DOT) {
				d->state = SMTP_DS_DOT;
				break;
			}
			/* fall through */
		case SMTP_DS_MID:
			if (c == '\r') {
				d->state = SMTP_DS_CR;
			} else if (c == '\n') {
				d->state = SMTP_DS_BARE;
			} else {
				out[o++] = c;
				d->state = SMTP_DS_MID;
			}
			break;
		case SMTP_DS_CR:
			if (c != '\n') {
				d->state = SMTP_DS_BARE;
				break;
			}
			out[o++] = '\r';
			out[o++] = '\n';
			d->state = SMTP_DS_BOL;
			break;
		case SMTP_DS_DOT:
			if (c == '\r') {
				d->state = SMTP_DS_DOTCR;
			} else if (c == '\n') {
				d->state = SMTP_DS_BARE;
			} else {
				out[o++] = c; /* RFC 5321 4.5.2: the leading dot is dropped */
				d->state = SMTP_DS_MID;
			}
			break;
		case SMTP_DS_DOTCR:
			d->state = c == '\n' ? SMTP_DS_END : SMTP_DS_BARE;
			break;
		case SMTP_DS_END:
		case SMTP_DS_BARE:
			*produced = o;
			d->bytes += o;
			return i;
		}
		if (d->state == SMTP_DS_END || d->state == SMTP_DS_BARE) {
			i++;
			break;
		}
	}
	*produced = o;
	d->bytes += o;
	return i;
}

int
smtp_data_finish(struct smtp_data *d)
{
	if (d->state == SMTP_DS_CR)
		d->state = SMTP_DS_BARE;
	return d->state == SMTP_DS_BARE ? -1 : 0;
}
