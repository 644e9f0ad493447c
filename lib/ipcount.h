/*
 * Connections per client address, for the per-address caps of the daemons that accept
 * clients (mailplex-smtpd, mailplex-proxy). Counts
 * only: it never closes or refuses anything itself. IPv4 and IPv6 by address, not port.
 */
#ifndef MAILPLEX_IPCOUNT_H
#define MAILPLEX_IPCOUNT_H

#include <sys/socket.h>

#define IPCOUNT_BUCKETS 1024

struct ipcount_entry;

struct ipcount {
	struct ipcount_entry *b[IPCOUNT_BUCKETS];
};

/* Counts one more connection from ss unless it already has max. 0 counted, -1 refused. */
int ipcount_add(struct ipcount *t, const struct sockaddr_storage *ss, unsigned max);
void ipcount_del(struct ipcount *t, const struct sockaddr_storage *ss);
unsigned ipcount_get(const struct ipcount *t, const struct sockaddr_storage *ss);
void ipcount_free(struct ipcount *t);

#endif
