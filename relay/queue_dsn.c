/*
 * Composes RFC 3464 bounces (multipart/report; report-type=delivery-status, RFC 6522)
 * from the runner's per-recipient results. Quotes the original headers only, never the
 * body (nobody's message text travels back in a bounce or a log). Pure and bounded.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "queue_dsn.h"

struct dsn_buf {
	char *data;
	size_t len;
	size_t cap;
	int failed;
};

static void
dsn_put(struct dsn_buf *b, const char *s, size_t n)
{
	char *p;
	size_t cap;

	if (b->failed)
		return;
	if (b->len + n + 1 > QUEUE_DSN_MAX) {
		b->failed = 1;
		return;
	}
	if (b->len + n + 1 > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n + 1)
			cap *= 2;
		if ((p = realloc(b->data, cap)) == NULL) {
			b->failed = 1;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void dsn_printf(struct dsn_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
dsn_printf(struct dsn_buf *b, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->failed = 1;
		return;
	}
	/* Every piece is bounded well below the line size; a cut one is still a line. */
	dsn_put(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void
dsn_date(char *buf, size_t len, uint64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL ||
	    strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
		buf[0] = '\0';
}

/* The status a recipient reports: its own, the reply's enhanced code, or the class's. */
static void
dsn_status(const struct queue_dsn_rcpt *r, char *buf, size_t len)
{
	const char *p = r->reply;
	size_t n;

	if (r->status != NULL && r->status[0] != '\0') {
		snprintf(buf, len, "%s", r->status);
		return;
	}
	/* "550 5.1.1 ...": the enhanced code after the code, if it is one. */
	if (p != NULL && strlen(p) > 8 && p[3] == ' ' && p[4] == p[0] && p[5] == '.') {
		n = strcspn(p + 4, " ");
		if (n < len && n <= 9) {
			memcpy(buf, p + 4, n);
			buf[n] = '\0';
			return;
		}
	}
	snprintf(buf, len, "%c.0.0", (p != NULL && p[0] == '4') ? '4' : '5');
}

size_t
queue_dsn_header_len(const char *msg, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (msg[i] != '\n')
			continue;
		if (i + 1 < len && msg[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && msg[i + 1] == '\r' && msg[i + 2] == '\n')
			return i + 3;
	}
	return len;
}

/* Copies header lines with CRLF endings, no further than the last whole line. */
static void
dsn_put_headers(struct dsn_buf *b, const char *h, size_t len)
{
	size_t i = 0, start, end;

	if (len > QUEUE_DSN_HEADERS_MAX)
		len = QUEUE_DSN_HEADERS_MAX;
	while (i < len) {
		start = i;
		while (i < len && h[i] != '\n')
			i++;
		if (i >= len)
			break; /* a cut line is left out rather than sent half */
		end = i;
		if (end > start && h[end - 1] == '\r')
			end--;
		i++;
		if (end == start)
			break; /* the empty line ends the header block */
		dsn_put(b, h + start, end - start);
		dsn_put(b, "\r\n", 2);
	}
}

int
queue_dsn_compose(const struct queue_dsn *d, char **out, size_t *outlen)
{
	struct dsn_buf b = {0};
	char date[64], arrival[64], status[16], boundary[96];
	const struct queue_dsn_rcpt *r;
	size_t i;

	dsn_date(date, sizeof(date), d->now);
	dsn_date(arrival, sizeof(arrival), d->arrival);
	snprintf(boundary, sizeof(boundary), "%s/%llu/%s", d->qid, (unsigned long long)d->now,
	         d->hostname);
	dsn_printf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", d->hostname);
	dsn_printf(&b, "To: <%s>\r\n", d->sender);
	dsn_printf(&b, "Subject: Undelivered Mail Returned to Sender\r\n");
	dsn_printf(&b, "Date: %s\r\n", date);
	dsn_printf(&b, "Message-ID: <%llu.%s.bounce@%s>\r\n", (unsigned long long)d->now, d->qid,
	           d->hostname);
	dsn_printf(&b, "Auto-Submitted: auto-replied\r\n");
	dsn_printf(&b, "MIME-Version: 1.0\r\n");
	dsn_printf(&b,
	           "Content-Type: multipart/report; report-type=delivery-status;\r\n"
	           "\tboundary=\"%s\"\r\n\r\n",
	           boundary);
	dsn_printf(&b, "This is a MIME-encapsulated message.\r\n\r\n");

	dsn_printf(&b, "--%s\r\n", boundary);
	dsn_printf(&b, "Content-Description: Notification\r\n"
	               "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	dsn_printf(&b, "This is the mail system at host %s.\r\n\r\n", d->hostname);
	dsn_printf(&b, "Your message could not be delivered to one or more recipients.\r\n"
	               "The mail system's replies are below.\r\n\r\n");
	for (i = 0; i < d->nrcpt; i++) {
		r = &d->rcpt[i];
		dsn_printf(&b, "<%s>: %s\r\n", r->final, r->reply != NULL ? r->reply : "");
	}
	dsn_printf(&b, "\r\n");

	dsn_printf(&b, "--%s\r\n", boundary);
	dsn_printf(&b, "Content-Description: Delivery report\r\n"
	               "Content-Type: message/delivery-status\r\n\r\n");
	dsn_printf(&b, "Reporting-MTA: dns; %s\r\n", d->hostname);
	dsn_printf(&b, "X-Mailplex-Queue-ID: %s\r\n", d->qid);
	dsn_printf(&b, "Arrival-Date: %s\r\n", arrival);
	for (i = 0; i < d->nrcpt; i++) {
		r = &d->rcpt[i];
		dsn_status(r, status, sizeof(status));
		dsn_printf(&b, "\r\n");
		dsn_printf(&b, "Final-Recipient: rfc822; %s\r\n", r->final);
		if (r->orig != NULL && r->orig[0] != '\0')
			dsn_printf(&b, "Original-Recipient: rfc822; %s\r\n", r->orig);
		dsn_printf(&b, "Action: failed\r\n");
		dsn_printf(&b, "Status: %s\r\n", status);
		if (r->remote != NULL && r->remote[0] != '\0')
			dsn_printf(&b, "Remote-MTA: dns; %s\r\n", r->remote);
		if (r->reply != NULL && r->reply[0] != '\0')
			dsn_printf(&b, "Diagnostic-Code: smtp; %s\r\n", r->reply);
	}
	dsn_printf(&b, "\r\n");

	dsn_printf(&b, "--%s\r\n", boundary);
	dsn_printf(&b, "Content-Description: Undelivered Message Headers\r\n"
	               "Content-Type: text/rfc822-headers\r\n\r\n");
	dsn_put_headers(&b, d->headers, d->headers_len);
	dsn_printf(&b, "\r\n--%s--\r\n", boundary);

	if (b.failed) {
		free(b.data);
		errno = ENOMEM;
		return -1;
	}
	*out = b.data;
	*outlen = b.len;
	return 0;
}
