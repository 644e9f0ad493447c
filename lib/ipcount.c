/*
 * Per-client-address connection counters (ipcount.h): a hash of address -> count whose
 * entries live only while the count is above zero, so memory follows the clients present.
 */
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "ipcount.h"

struct ipcount_entry {
	struct ipcount_entry *next;
	struct sockaddr_storage addr; /* family and address only; port and the rest zero */
	unsigned n;
};

static void
ipcount_key(const struct sockaddr_storage *ss, struct sockaddr_storage *key)
{
	memset(key, 0, sizeof(*key));
	key->ss_family = ss->ss_family;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)key)->sin_addr = ((const struct sockaddr_in *)ss)->sin_addr;
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)key)->sin6_addr =
		    ((const struct sockaddr_in6 *)ss)->sin6_addr;
}

static unsigned
ipcount_hash(const struct sockaddr_storage *key)
{
	const unsigned char *p = (const unsigned char *)key;
	unsigned h = 2166136261u;
	size_t i;

	for (i = 0; i < sizeof(*key); i++)
		h = (h ^ p[i]) * 16777619u;
	return h % IPCOUNT_BUCKETS;
}

static struct ipcount_entry **
ipcount_find(struct ipcount *t, const struct sockaddr_storage *key)
{
	struct ipcount_entry **pp;

	for (pp = &t->b[ipcount_hash(key)]; *pp != NULL; pp = &(*pp)->next)
		if (memcmp(&(*pp)->addr, key, sizeof(*key)) == 0)
			break;
	return pp;
}

int
ipcount_add(struct ipcount *t, const struct sockaddr_storage *ss, unsigned max)
{
	struct sockaddr_storage key;
	struct ipcount_entry **pp, *e;

	ipcount_key(ss, &key);
	pp = ipcount_find(t, &key);
	if ((e = *pp) == NULL) {
		if (max == 0 || (e = calloc(1, sizeof(*e))) == NULL)
			return -1;
		e->addr = key;
		*pp = e;
	}
	if (e->n >= max)
		return -1;
	e->n++;
	return 0;
}

void
ipcount_del(struct ipcount *t, const struct sockaddr_storage *ss)
{
	struct sockaddr_storage key;
	struct ipcount_entry **pp, *e;

	ipcount_key(ss, &key);
	pp = ipcount_find(t, &key);
	if ((e = *pp) == NULL)
		return;
	if (--e->n == 0) {
		*pp = e->next;
		free(e);
	}
}

unsigned
ipcount_get(const struct ipcount *t, const struct sockaddr_storage *ss)
{
	struct sockaddr_storage key;
	struct ipcount_entry **pp;

	ipcount_key(ss, &key);
	pp = ipcount_find((struct ipcount *)t, &key);
	return *pp != NULL ? (*pp)->n : 0;
}

void
ipcount_free(struct ipcount *t)
{
	struct ipcount_entry *e, *next;
	size_t i;

	for (i = 0; i < IPCOUNT_BUCKETS; i++) {
		for (e = t->b[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
		t->b[i] = NULL;
	}
}
