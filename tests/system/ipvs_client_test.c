/*
 * System-test driver for director/ipvs: runs inside user-mode Linux (or any kernel with
 * IPVS) and drives every call of the client against the real kernel, checking each result
 * against what it asked for and against `ipvsadm` output. It also carries the tiny echo
 * and relay-identity servers and clients the traffic tests need, and records raw kernel
 * replies for the unit tests' fixtures. Test only: never run it on a production
 * director (it adds and deletes services and changes global timeouts).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/ip_vs.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/socket.h>

#include "ipvs.h"
#include "ipvs_msg.h"
#include "log.h"
#include "util.h"

#define IO_TIMEOUT_MS  5000
#define SERVER_IDLE_MS 30000
#define MAX_LINES      4096
#define LINE_BYTES     256
#define BATCH_DESTS    100
#define STATS_WAIT_MS  6000 /* the kernel folds per-cpu counters in every 2 s */

static int failures;
static int checks;

static void check(int ok, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
check(int ok, const char *name, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(detail, sizeof(detail), fmt, ap) < 0)
		detail[0] = '\0';
	va_end(ap);
	checks++;
	if (!ok)
		failures++;
	printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name, detail[0] ? ": " : "", detail);
	fflush(stdout);
}

/* The op failed with exactly this errno and a message containing text. */
static void
check_err(int rc, const struct ipvs_error *err, int code, const char *text, const char *name)
{
	check(rc == -1 && err->code == code && strstr(err->msg, text) != NULL, name,
	      "rc=%d errno=%d (want %d) msg=\"%s\" (want \"%s\")", rc, err->code, code, err->msg,
	      text);
}

static void
check_ok(int rc, const struct ipvs_error *err, const char *name)
{
	check(rc == 0 && err->code == 0, name, "rc=%d %s", rc, rc == 0 ? "" : err->msg);
}

static void
addr_set(int af, const char *s, union ipvs_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(af, s, a) != 1)
		fatalx("bad address in test: %s", s);
}

static struct ipvs_service
svc_make(int af, uint16_t proto, const char *addr, uint16_t port, const char *sched)
{
	struct ipvs_service s;

	memset(&s, 0, sizeof(s));
	s.af = af;
	s.protocol = proto;
	if (addr != NULL)
		addr_set(af, addr, &s.addr);
	s.port = port;
	if (str_copy(s.sched, sizeof(s.sched), sched) == -1)
		fatalx("scheduler name too long");
	return s;
}

static struct ipvs_dest
dest_make(int af, const char *addr, uint16_t port, enum ipvs_fwd fwd, int32_t weight)
{
	struct ipvs_dest d;

	memset(&d, 0, sizeof(d));
	d.af = af;
	addr_set(af, addr, &d.addr);
	d.port = port;
	d.fwd = fwd;
	d.weight = weight;
	return d;
}

static size_t
alen(int af)
{
	return af == AF_INET6 ? 16 : 4;
}

static int
svc_same_key(const struct ipvs_service *a, const struct ipvs_service *b)
{
	if (a->af != b->af || a->fwmark != b->fwmark)
		return 0;
	if (a->fwmark != 0)
		return 1;
	return a->protocol == b->protocol && a->port == b->port &&
	       memcmp(&a->addr, &b->addr, alen(a->af)) == 0;
}

static int
svc_same(const struct ipvs_service *a, const struct ipvs_service *b)
{
	return svc_same_key(a, b) && strcmp(a->sched, b->sched) == 0 &&
	       a->persistence_s == b->persistence_s && a->flags == b->flags &&
	       (a->persistence_s == 0 || a->netmask_len == b->netmask_len);
}

static int
dest_same(const struct ipvs_dest *a, const struct ipvs_dest *b)
{
	return a->af == b->af && a->port == b->port &&
	       memcmp(&a->addr, &b->addr, alen(a->af)) == 0 && a->fwd == b->fwd &&
	       a->weight == b->weight && a->u_threshold == b->u_threshold &&
	       a->l_threshold == b->l_threshold;
}

static const struct ipvs_service *
svc_find(const struct ipvs_service *v, size_t n, const struct ipvs_service *key)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (svc_same_key(&v[i], key))
			return &v[i];
	}
	return NULL;
}

static const struct ipvs_dest *
dest_find(const struct ipvs_dest *v, size_t n, const struct ipvs_dest *key)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (v[i].af == key->af && v[i].port == key->port &&
		    memcmp(&v[i].addr, &key->addr, alen(key->af)) == 0)
			return &v[i];
	}
	return NULL;
}

/* ---------------------------------------------------------------- ipvsadm cross-checks */

struct lines {
	char *v[MAX_LINES];
	size_t n;
};

static void
lines_free(struct lines *l)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

static void
lines_add(struct lines *l, const char *s)
{
	if (l->n == MAX_LINES)
		fatalx("too many lines");
	if ((l->v[l->n] = strdup(s)) == NULL)
		fatal("strdup");
	l->n++;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs cmd (a fixed string of this file), returns its stdout lines, blanks squeezed. */
static int
run_lines(const char *cmd, struct lines *out)
{
	char buf[LINE_BYTES * 2], norm[LINE_BYTES * 2];
	FILE *f;
	char *tok, *save;
	size_t used;
	int st;

	out->n = 0;
	if ((f = popen(cmd, "r")) == NULL) {
		log_warn("popen %s", cmd);
		return -1;
	}
	while (fgets(buf, sizeof(buf), f) != NULL) {
		norm[0] = '\0';
		used = 0;
		for (tok = strtok_r(buf, " \t\r\n", &save); tok != NULL;
		     tok = strtok_r(NULL, " \t\r\n", &save)) {
			if (str_format(norm + used, sizeof(norm) - used, "%s%s", used ? " " : "",
			               tok) == -1)
				break;
			used = strlen(norm);
		}
		lines_add(out, norm);
	}
	st = pclose(f);
	if (st != 0) {
		log_warnx("%s: exit status %d", cmd, st);
		return -1;
	}
	return 0;
}

/* The service heading ipvsadm -Ln prints (print_service_entry in ipvsadm.c). */
static void
ipvsadm_service_line(const struct ipvs_service *s, char *buf, size_t len, char *key, size_t keylen)
{
	char a[INET6_ADDRSTRLEN + 8], extra[96] = "", mask[INET_ADDRSTRLEN];
	struct in_addr m;
	const char *proto = s->protocol == IPPROTO_UDP    ? "UDP"
	                    : s->protocol == IPPROTO_SCTP ? "SCTP"
	                                                  : "TCP";

	if (s->fwmark != 0)
		(void)str_format(key, keylen, "FWM %u%s", s->fwmark,
		                 s->af == AF_INET6 ? " IPv6" : "");
	else {
		(void)ipvs_addr_format(s->af, &s->addr, s->port, a, sizeof(a));
		(void)str_format(key, keylen, "%s %s", proto, a);
	}
	if (s->persistence_s > 0) {
		if (s->af == AF_INET && s->netmask_len != 0 && s->netmask_len != 32) {
			m.s_addr = htonl(~((1u << (32 - s->netmask_len)) - 1));
			(void)inet_ntop(AF_INET, &m, mask, sizeof(mask));
			(void)str_format(extra, sizeof(extra), " persistent %u mask %s",
			                 s->persistence_s, mask);
		} else if (s->af == AF_INET6 && s->netmask_len != 0 && s->netmask_len != 128)
			(void)str_format(extra, sizeof(extra), " persistent %u mask %u",
			                 s->persistence_s, s->netmask_len);
		else
			(void)str_format(extra, sizeof(extra), " persistent %u", s->persistence_s);
	}
	(void)str_format(buf, len, "%s %s%s", key, s->sched, extra);
}

/* Our dumps rendered as ipvsadm -Ln lines, each destination prefixed by its service. */
static int
render_table(struct ipvs *h, struct lines *out)
{
	struct ipvs_service *svcs;
	struct ipvs_dest *dests;
	struct ipvs_error err;
	char line[LINE_BYTES], key[LINE_BYTES], a[INET6_ADDRSTRLEN + 8], full[LINE_BYTES * 2];
	size_t ns, nd, i, j;

	out->n = 0;
	if (ipvs_services_dump(h, &svcs, &ns, &err) == -1) {
		log_warnx("%s", err.msg);
		return -1;
	}
	for (i = 0; i < ns; i++) {
		ipvsadm_service_line(&svcs[i], line, sizeof(line), key, sizeof(key));
		lines_add(out, line);
		if (ipvs_dests_dump(h, &svcs[i], &dests, &nd, &err) == -1) {
			log_warnx("%s", err.msg);
			free(svcs);
			return -1;
		}
		for (j = 0; j < nd; j++) {
			(void)ipvs_addr_format(dests[j].af, &dests[j].addr, dests[j].port, a,
			                       sizeof(a));
			(void)str_format(full, sizeof(full), "%s -> %s %s %d %u %u", key, a,
			                 ipvs_fwd_name(dests[j].fwd), dests[j].weight,
			                 dests[j].active_conns, dests[j].inactive_conns);
			lines_add(out, full);
		}
		free(dests);
	}
	free(svcs);
	return 0;
}

/* ipvsadm -Ln in the same shape: headers dropped, "-> ..." lines prefixed by their service. */
static int
ipvsadm_table(struct lines *out)
{
	struct lines raw;
	char key[LINE_BYTES] = "", full[LINE_BYTES * 2], *sp;
	size_t i;

	if (run_lines("ipvsadm -Ln", &raw) == -1)
		return -1;
	out->n = 0;
	for (i = 0; i < raw.n; i++) {
		const char *l = raw.v[i];

		if (strncmp(l, "IP Virtual Server", 17) == 0 || strncmp(l, "Prot ", 5) == 0 ||
		    strncmp(l, "-> RemoteAddress", 16) == 0 || l[0] == '\0')
			continue;
		if (strncmp(l, "-> ", 3) == 0) {
			(void)str_format(full, sizeof(full), "%s %s", key, l);
			lines_add(out, full);
			continue;
		}
		lines_add(out, l);
		/* The key is the first two words, three for an IPv6 firewall mark. */
		(void)str_copy(key, sizeof(key), l);
		if ((sp = strchr(key, ' ')) != NULL && (sp = strchr(sp + 1, ' ')) != NULL) {
			if (strncmp(key, "FWM ", 4) == 0 && strncmp(sp, " IPv6 ", 6) == 0)
				sp = strchr(sp + 1, ' ');
			if (sp != NULL)
				*sp = '\0';
		}
	}
	lines_free(&raw);
	return 0;
}

static void
check_against_ipvsadm(struct ipvs *h, const char *name)
{
	struct lines ours, theirs;
	size_t i, n;
	int same;

	if (render_table(h, &ours) == -1 || ipvsadm_table(&theirs) == -1) {
		check(0, name, "could not read one of the tables");
		return;
	}
	qsort(ours.v, ours.n, sizeof(ours.v[0]), cmp_str);
	qsort(theirs.v, theirs.n, sizeof(theirs.v[0]), cmp_str);
	same = ours.n == theirs.n;
	for (i = 0; same && i < ours.n; i++)
		same = strcmp(ours.v[i], theirs.v[i]) == 0;
	check(same, name, "%zu lines from our dumps, %zu from ipvsadm -Ln", ours.n, theirs.n);
	if (!same) {
		n = ours.n > theirs.n ? ours.n : theirs.n;
		for (i = 0; i < n; i++)
			printf("    ours: %-60s | ipvsadm: %s\n", i < ours.n ? ours.v[i] : "",
			       i < theirs.n ? theirs.v[i] : "");
	}
	lines_free(&ours);
	lines_free(&theirs);
}

static int
lines_have(const struct lines *l, const char *needle)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		if (strstr(l->v[i], needle) != NULL)
			return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- the API scenario */

static void
test_info(struct ipvs *h)
{
	struct ipvs_info info;
	struct ipvs_error err;
	struct lines l;
	char want[96];
	int rc;

	rc = ipvs_get_info(h, &info, &err);
	check(rc == 0 && info.version >= 0x010200 && info.conn_tab_size > 0, "get_info",
	      "version %u.%u.%u conn table %u", info.version >> 16, (info.version >> 8) & 0xff,
	      info.version & 0xff, info.conn_tab_size);
	(void)str_format(want, sizeof(want), "IP Virtual Server version %u.%u.%u (size=%u)",
	                 info.version >> 16, (info.version >> 8) & 0xff, info.version & 0xff,
	                 info.conn_tab_size);
	rc = run_lines("ipvsadm -Ln", &l);
	check(rc == 0 && l.n > 0 && strcmp(l.v[0], want) == 0, "get_info_matches_ipvsadm",
	      "ipvsadm says \"%s\"", l.n > 0 ? l.v[0] : "");
	lines_free(&l);
}

static void
test_services(struct ipvs *h)
{
	struct ipvs_error err;
	struct ipvs_service s4, s6, sfw, bad, edited, *svcs;
	struct ipvs_dest d4[3], d6[3], dfw, *dests;
	const struct ipvs_service *got;
	const struct ipvs_dest *gd;
	size_t n, nd, i;
	int rc, ok;

	rc = ipvs_services_dump(h, &svcs, &n, &err);
	check(rc == 0 && n == 0 && svcs == NULL, "empty_table_dumps_empty", "%zu services", n);
	free(svcs);

	s4 = svc_make(AF_INET, IPPROTO_TCP, "10.0.0.1", 25, "rr");
	s6 = svc_make(AF_INET6, IPPROTO_TCP, "2001:db8::1", 143, "wlc");
	s6.persistence_s = 300;
	s6.netmask_len = 64;
	sfw = svc_make(AF_INET, 0, NULL, 0, "rr");
	sfw.fwmark = 7;
	rc = ipvs_service_add(h, &s4, &err);
	check_ok(rc, &err, "service_add_v4");
	rc = ipvs_service_add(h, &s6, &err);
	check_ok(rc, &err, "service_add_v6_persistent");
	rc = ipvs_service_add(h, &sfw, &err);
	check_ok(rc, &err, "service_add_fwmark");

	d4[0] = dest_make(AF_INET, "10.0.1.1", 25, IPVS_FWD_DR, 1);
	d4[1] = dest_make(AF_INET, "10.0.1.2", 25, IPVS_FWD_MASQ, 2);
	d4[2] = dest_make(AF_INET, "10.0.1.3", 25, IPVS_FWD_TUN, 3);
	d4[2].u_threshold = 1000;
	d4[2].l_threshold = 500;
	d6[0] = dest_make(AF_INET6, "2001:db8::11", 143, IPVS_FWD_DR, 1);
	d6[1] = dest_make(AF_INET6, "2001:db8::12", 143, IPVS_FWD_MASQ, 2);
	d6[2] = dest_make(AF_INET6, "2001:db8::13", 143, IPVS_FWD_TUN, 3);
	dfw = dest_make(AF_INET, "10.0.1.4", 0, IPVS_FWD_DR, 1);
	ok = 1;
	for (i = 0; i < 3; i++) {
		ok &= ipvs_dest_add(h, &s4, &d4[i], &err) == 0;
		ok &= ipvs_dest_add(h, &s6, &d6[i], &err) == 0;
	}
	ok &= ipvs_dest_add(h, &sfw, &dfw, &err) == 0;
	check(ok, "dest_add_dr_nat_tun_v4_v6_fwmark", "%s", ok ? "" : err.msg);

	rc = ipvs_services_dump(h, &svcs, &n, &err);
	check(rc == 0 && n == 3, "services_dump_count", "%zu services", n);
	got = svc_find(svcs, n, &s4);
	check(got != NULL && svc_same(got, &s4), "services_dump_v4_matches", "sched %s",
	      got ? got->sched : "-");
	got = svc_find(svcs, n, &s6);
	check(got != NULL && svc_same(got, &s6), "services_dump_v6_matches",
	      "persistence %u netmask /%u", got ? got->persistence_s : 0,
	      got ? got->netmask_len : 0);
	got = svc_find(svcs, n, &sfw);
	check(got != NULL && svc_same(got, &sfw), "services_dump_fwmark_matches", "%s", "");
	free(svcs);

	rc = ipvs_dests_dump(h, &s4, &dests, &nd, &err);
	ok = rc == 0 && nd == 3;
	for (i = 0; ok && i < 3; i++)
		ok = (gd = dest_find(dests, nd, &d4[i])) != NULL && dest_same(gd, &d4[i]) &&
		     gd->active_conns == 0 && gd->inactive_conns == 0;
	check(ok, "dests_dump_v4_matches", "%zu dests", nd);
	free(dests);
	rc = ipvs_dests_dump(h, &s6, &dests, &nd, &err);
	ok = rc == 0 && nd == 3;
	for (i = 0; ok && i < 3; i++)
		ok = (gd = dest_find(dests, nd, &d6[i])) != NULL && dest_same(gd, &d6[i]);
	check(ok, "dests_dump_v6_matches", "%zu dests", nd);
	free(dests);
	check_against_ipvsadm(h, "table_matches_ipvsadm_after_add");

	/* The reconciler's contract: these errnos are what it tolerates or acts on. */
	rc = ipvs_service_add(h, &s4, &err);
	check_err(rc, &err, EEXIST, "service exists", "service_add_twice_is_eexist");
	rc = ipvs_dest_add(h, &s4, &d4[0], &err);
	check_err(rc, &err, EEXIST, "destination exists", "dest_add_twice_is_eexist");
	bad = svc_make(AF_INET, IPPROTO_TCP, "10.0.0.99", 25, "rr");
	rc = ipvs_dest_add(h, &bad, &d4[0], &err);
	check_err(rc, &err, ESRCH, "no such service", "dest_add_to_missing_service_is_esrch");
	bad.sched[0] = '\0';
	(void)str_copy(bad.sched, sizeof(bad.sched), "nosuchsched");
	rc = ipvs_service_add(h, &bad, &err);
	check_err(rc, &err, ENOENT, "scheduler not found", "service_add_unknown_scheduler");
	rc = ipvs_dest_add(h, &s4, &d6[0], &err);
	check_err(rc, &err, EINVAL, "needs TUN", "dest_add_mixed_family_dr_refused_locally");

	/* Drain: weight 0, then back; and a service edit that changes scheduler and persistence. */
	d4[0].weight = 0;
	rc = ipvs_dest_edit(h, &s4, &d4[0], &err);
	check_ok(rc, &err, "dest_edit_weight_0");
	d4[0].weight = 5;
	rc = ipvs_dest_edit(h, &s4, &d4[0], &err);
	check_ok(rc, &err, "dest_edit_weight_5");
	rc = ipvs_dests_dump(h, &s4, &dests, &nd, &err);
	gd = rc == 0 ? dest_find(dests, nd, &d4[0]) : NULL;
	check(gd != NULL && gd->weight == 5, "dest_edit_weight_visible_in_dump", "weight %d",
	      gd ? gd->weight : -1);
	free(dests);
	edited = s4;
	(void)str_copy(edited.sched, sizeof(edited.sched), "wlc");
	edited.persistence_s = 600;
	edited.netmask_len = 24;
	rc = ipvs_service_edit(h, &edited, &err);
	check_ok(rc, &err, "service_edit_sched_persistence");
	rc = ipvs_services_dump(h, &svcs, &n, &err);
	got = rc == 0 ? svc_find(svcs, n, &edited) : NULL;
	check(got != NULL && svc_same(got, &edited), "service_edit_visible_in_dump",
	      "sched %s persistence %u /%u", got ? got->sched : "-", got ? got->persistence_s : 0,
	      got ? got->netmask_len : 0);
	free(svcs);
	check_against_ipvsadm(h, "table_matches_ipvsadm_after_edit");

	rc = ipvs_dest_del(h, &s4, &d4[1], &err);
	check_ok(rc, &err, "dest_del");
	rc = ipvs_dest_del(h, &s4, &d4[1], &err);
	check_err(rc, &err, ENOENT, "no such destination", "dest_del_twice_is_enoent");
	rc = ipvs_dest_edit(h, &s4, &d4[1], &err);
	check_err(rc, &err, ENOENT, "no such destination", "dest_edit_missing_is_enoent");
	rc = ipvs_service_del(h, &sfw, &err);
	check_ok(rc, &err, "service_del_fwmark");
	rc = ipvs_service_del(h, &sfw, &err);
	check_err(rc, &err, ESRCH, "no such service", "service_del_twice_is_esrch");
	rc = ipvs_dests_dump(h, &sfw, &dests, &nd, &err);
	check(rc == 0 && nd == 0, "dests_dump_of_missing_service_is_empty", "%zu dests", nd);
	free(dests);
	check_against_ipvsadm(h, "table_matches_ipvsadm_after_delete");

	rc = ipvs_service_del(h, &s4, &err);
	check_ok(rc, &err, "service_del_v4");
	rc = ipvs_service_del(h, &s6, &err);
	check_ok(rc, &err, "service_del_v6");
	rc = ipvs_services_dump(h, &svcs, &n, &err);
	check(rc == 0 && n == 0, "table_empty_after_deletes", "%zu services", n);
	free(svcs);
}

static void
test_timeouts(struct ipvs *h)
{
	struct ipvs_timeouts t0, t, set;
	struct ipvs_error err;
	struct lines l;
	char want[96];
	int rc;

	rc = ipvs_timeouts_get(h, &t0, &err);
	check(rc == 0 && t0.tcp_s > 0 && t0.tcp_fin_s > 0 && t0.udp_s > 0, "timeouts_get",
	      "tcp %u tcpfin %u udp %u", t0.tcp_s, t0.tcp_fin_s, t0.udp_s);
	memset(&set, 0, sizeof(set));
	set.tcp_s = 1860; /* RFC 2177: an IDLE client may be silent for 29 minutes */
	rc = ipvs_timeouts_set(h, &set, &err);
	check_ok(rc, &err, "timeouts_set_tcp_1860");
	rc = ipvs_timeouts_get(h, &t, &err);
	check(rc == 0 && t.tcp_s == 1860 && t.tcp_fin_s == t0.tcp_fin_s && t.udp_s == t0.udp_s,
	      "timeouts_get_reads_back_1860_others_unchanged", "tcp %u tcpfin %u udp %u", t.tcp_s,
	      t.tcp_fin_s, t.udp_s);
	(void)str_format(want, sizeof(want), "Timeout (tcp tcpfin udp): %u %u %u", t.tcp_s,
	                 t.tcp_fin_s, t.udp_s);
	rc = run_lines("ipvsadm -L --timeout", &l);
	check(rc == 0 && lines_have(&l, want), "timeouts_match_ipvsadm", "want \"%s\"", want);
	lines_free(&l);
	memset(&set, 0, sizeof(set));
	rc = ipvs_timeouts_set(h, &set, &err);
	check_err(rc, &err, EINVAL, "no timeout given", "timeouts_set_nothing_refused_locally");
}

static void
test_daemons(struct ipvs *h, const char *ifname)
{
	struct ipvs_daemon m, b, *ds;
	struct ipvs_error err;
	struct lines l;
	char want[128];
	size_t n, i;
	int rc, seen_m = 0, seen_b = 0;

	rc = ipvs_daemon_dump(h, &ds, &n, &err);
	check(rc == 0 && n == 0, "daemons_none_at_start", "%zu", n);
	free(ds);
	memset(&m, 0, sizeof(m));
	m.state = IPVS_DAEMON_MASTER;
	(void)str_copy(m.mcast_ifname, sizeof(m.mcast_ifname), ifname);
	m.syncid = 7;
	b = m;
	b.state = IPVS_DAEMON_BACKUP;
	b.syncid = 8;
	rc = ipvs_daemon_add(h, &m, &err);
	check_ok(rc, &err, "daemon_add_master");
	rc = ipvs_daemon_add(h, &b, &err);
	check_ok(rc, &err, "daemon_add_backup");
	rc = ipvs_daemon_add(h, &m, &err);
	check_err(rc, &err, EEXIST, "sync daemon already running", "daemon_add_twice_is_eexist");
	rc = ipvs_daemon_dump(h, &ds, &n, &err);
	for (i = 0; rc == 0 && i < n; i++) {
		if (ds[i].state == IPVS_DAEMON_MASTER && ds[i].syncid == 7 &&
		    strcmp(ds[i].mcast_ifname, ifname) == 0)
			seen_m = 1;
		if (ds[i].state == IPVS_DAEMON_BACKUP && ds[i].syncid == 8 &&
		    strcmp(ds[i].mcast_ifname, ifname) == 0)
			seen_b = 1;
	}
	check(rc == 0 && n == 2 && seen_m && seen_b, "daemon_dump_master_and_backup",
	      "%zu daemons, port %u ttl %u maxlen %u", n, n ? ds[0].mcast_port : 0,
	      n ? ds[0].mcast_ttl : 0, n ? ds[0].sync_maxlen : 0);
	free(ds);
	rc = run_lines("ipvsadm -L --daemon", &l);
	(void)str_format(want, sizeof(want), "master sync daemon (mcast=%s, syncid=7", ifname);
	seen_m = rc == 0 && lines_have(&l, want);
	(void)str_format(want, sizeof(want), "backup sync daemon (mcast=%s, syncid=8", ifname);
	seen_b = rc == 0 && lines_have(&l, want);
	check(seen_m && seen_b, "daemons_match_ipvsadm", "%zu lines", l.n);
	lines_free(&l);
	rc = ipvs_daemon_del(h, &m, &err);
	check_ok(rc, &err, "daemon_del_master");
	rc = ipvs_daemon_del(h, &b, &err);
	check_ok(rc, &err, "daemon_del_backup");
	rc = ipvs_daemon_del(h, &m, &err);
	check_err(rc, &err, ESRCH, "no such sync daemon", "daemon_del_twice_is_esrch");
	rc = ipvs_daemon_dump(h, &ds, &n, &err);
	check(rc == 0 && n == 0, "daemons_none_after_del", "%zu", n);
	free(ds);
}

static void
test_batch(struct ipvs *h)
{
	struct ipvs_service s;
	struct ipvs_dest d[BATCH_DESTS], extra, *dests;
	struct ipvs_batch *b;
	struct ipvs_error err;
	const struct ipvs_error *res;
	const struct ipvs_dest *gd;
	char a[INET_ADDRSTRLEN];
	uint64_t t0, t1;
	size_t i, nd;
	int rc, ok, dup_at = -1, miss_at = -1;

	s = svc_make(AF_INET, IPPROTO_TCP, "10.0.2.1", 80, "wrr");
	for (i = 0; i < BATCH_DESTS; i++) {
		(void)str_format(a, sizeof(a), "10.0.3.%zu", i + 1);
		d[i] = dest_make(AF_INET, a, 80, IPVS_FWD_DR, (int32_t)(i + 1));
	}
	if ((b = ipvs_batch_begin(h)) == NULL)
		fatalx("batch");
	ok = ipvs_batch_service_add(b, &s, &err) == 0;
	for (i = 0; i < BATCH_DESTS; i++) {
		/* A duplicate in the middle: exactly its ACK, and no other, must say EEXIST. */
		if (i == BATCH_DESTS / 2)
			dup_at = ipvs_batch_dest_add(b, &s, &d[10], &err);
		ok &= ipvs_batch_dest_add(b, &s, &d[i], &err) > 0;
	}
	check(ok && dup_at > 0 && ipvs_batch_count(b) == BATCH_DESTS + 2, "batch_queue_102_ops",
	      "%zu queued", ipvs_batch_count(b));
	t0 = time_mono_ms();
	rc = ipvs_batch_commit(b, &err);
	t1 = time_mono_ms();
	check(rc == 1, "batch_commit_one_failure", "rc=%d in %llu ms %s", rc,
	      (unsigned long long)(t1 - t0), rc == -1 ? err.msg : "");
	ok = 1;
	for (i = 0; i < ipvs_batch_count(b); i++) {
		res = ipvs_batch_result(b, i);
		if (res == NULL)
			ok = 0;
		else if ((int)i == dup_at)
			ok &= res->code == EEXIST && strstr(res->msg, "destination exists") != NULL;
		else
			ok &= res->code == 0;
	}
	check(ok, "batch_acks_matched_per_op", "op %d is the EEXIST", dup_at);
	ipvs_batch_free(b);
	printf("TIMING batch_102_ops_ms=%llu\n", (unsigned long long)(t1 - t0));

	rc = ipvs_dests_dump(h, &s, &dests, &nd, &err);
	ok = rc == 0 && nd == BATCH_DESTS;
	for (i = 0; ok && i < BATCH_DESTS; i++)
		ok = (gd = dest_find(dests, nd, &d[i])) != NULL && dest_same(gd, &d[i]);
	check(ok, "batch_dests_all_in_dump_with_weights", "%zu dests", nd);
	free(dests);
	check_against_ipvsadm(h, "table_matches_ipvsadm_after_batch");

	if ((b = ipvs_batch_begin(h)) == NULL)
		fatalx("batch");
	for (i = 0; i < BATCH_DESTS; i++)
		(void)ipvs_batch_dest_del(b, &s, &d[i], &err);
	extra = dest_make(AF_INET, "10.0.4.1", 80, IPVS_FWD_DR, 1);
	miss_at = ipvs_batch_dest_del(b, &s, &extra, &err);
	(void)ipvs_batch_service_del(b, &s, &err);
	rc = ipvs_batch_commit(b, &err);
	res = ipvs_batch_result(b, (size_t)miss_at);
	check(rc == 1 && res != NULL && res->code == ENOENT,
	      "batch_del_missing_dest_enoent_at_its_index", "rc=%d op %d: %s", rc, miss_at,
	      res ? res->msg : "-");
	res = ipvs_batch_result(b, ipvs_batch_count(b) - 1);
	check(res != NULL && res->code == 0, "batch_service_del_after_dests", "%s",
	      res ? res->msg : "-");
	ipvs_batch_free(b);
	rc = ipvs_dests_dump(h, &s, &dests, &nd, &err);
	check(rc == 0 && nd == 0, "batch_deleted_everything", "%zu", nd);
	free(dests);
}

static int
cmd_api(const char *ifname)
{
	struct ipvs_error err;
	struct ipvs *h;
	uint64_t t0 = time_mono_ms();

	if ((h = ipvs_open(&err)) == NULL) {
		check(0, "open", "%s", err.msg);
		return 1;
	}
	check(ipvs_family(h) > 0, "open_resolves_family", "IPVS family id %d", ipvs_family(h));
	test_info(h);
	test_services(h);
	test_timeouts(h);
	test_daemons(h, ifname);
	test_batch(h);
	ipvs_close(h);
	printf("TIMING api_ms=%llu\n", (unsigned long long)(time_mono_ms() - t0));
	printf("%d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}

/* No IPVS in the kernel (module not loaded, no autoload): open must say so plainly. */
static int
cmd_unavailable(void)
{
	struct ipvs_error err;
	struct ipvs *h;

	h = ipvs_open(&err);
	check(h == NULL && err.code == EPROTONOSUPPORT &&
	          strstr(err.msg, "IPVS not available in this kernel") != NULL,
	      "open_without_ipvs_says_not_available", "errno %d: %s", err.code, err.msg);
	ipvs_close(h);
	return failures ? 1 : 0;
}

/* Without CAP_NET_ADMIN every IPVS command is refused (GENL_ADMIN_PERM). */
static int
cmd_eperm(void)
{
	struct ipvs_error err;
	struct ipvs_info info;
	struct ipvs_service s = svc_make(AF_INET, IPPROTO_TCP, "10.0.0.1", 25, "rr");
	struct ipvs *h;
	int rc;

	if ((h = ipvs_open(&err)) == NULL) {
		check(0, "open_unprivileged", "%s", err.msg);
		return 1;
	}
	rc = ipvs_get_info(h, &info, &err);
	check_err(rc, &err, EPERM, "permission denied (need CAP_NET_ADMIN)",
	          "get_info_unprivileged_is_eperm");
	rc = ipvs_service_add(h, &s, &err);
	check_err(rc, &err, EPERM, "permission denied (need CAP_NET_ADMIN)",
	          "service_add_unprivileged_is_eperm");
	ipvs_close(h);
	return failures ? 1 : 0;
}

static int
parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (parse_u64(s, 1, 65535, &v) == -1)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

static int
nat_args(char **argv, struct ipvs_service *s, struct ipvs_dest *d)
{
	uint16_t vport, rport;

	if (parse_port(argv[1], &vport) == -1 || parse_port(argv[3], &rport) == -1)
		return -1;
	*s = svc_make(AF_INET, IPPROTO_TCP, argv[0], vport, "rr");
	*d = dest_make(AF_INET, argv[2], rport, IPVS_FWD_MASQ, 1);
	return 0;
}

static int
cmd_nat_setup(char **argv)
{
	struct ipvs_service s;
	struct ipvs_dest d;
	struct ipvs_error err;
	struct ipvs *h;
	int rc;

	if (nat_args(argv, &s, &d) == -1 || (h = ipvs_open(&err)) == NULL) {
		check(0, "nat_setup", "bad arguments or %s", err.msg);
		return 1;
	}
	rc = ipvs_service_add(h, &s, &err);
	check_ok(rc, &err, "nat_service_add");
	rc = ipvs_dest_add(h, &s, &d, &err);
	check_ok(rc, &err, "nat_dest_add");
	ipvs_close(h);
	return failures ? 1 : 0;
}

/* ipvsadm -Ln --stats --exact: the five counters of the service line for key. */
static int
ipvsadm_stats(const char *key, uint64_t v[5])
{
	struct lines l;
	size_t i, klen = strlen(key);
	int found = 0;
	unsigned long long a, b, c, d, e;

	if (run_lines("ipvsadm -Ln --stats --exact", &l) == -1)
		return -1;
	for (i = 0; i < l.n && !found; i++) {
		if (strncmp(l.v[i], key, klen) == 0 && l.v[i][klen] == ' ' &&
		    sscanf(l.v[i] + klen, "%llu %llu %llu %llu %llu", &a, &b, &c, &d, &e) == 5) {
			v[0] = a, v[1] = b, v[2] = c, v[3] = d, v[4] = e;
			found = 1;
		}
	}
	lines_free(&l);
	return found ? 0 : -1;
}

static int
svc_stats(struct ipvs *h, const struct ipvs_service *key, struct ipvs_stats *st)
{
	struct ipvs_service *svcs;
	const struct ipvs_service *got;
	struct ipvs_error err;
	size_t n;

	if (ipvs_services_dump(h, &svcs, &n, &err) == -1)
		return -1;
	got = svc_find(svcs, n, key);
	if (got != NULL)
		*st = got->stats;
	free(svcs);
	return got != NULL ? 0 : -1;
}

static int
cmd_nat_check(char **argv)
{
	struct ipvs_service s;
	struct ipvs_dest d, *dests;
	const struct ipvs_dest *gd;
	struct ipvs_stats st, st2;
	struct ipvs_error err;
	struct ipvs *h;
	char key[LINE_BYTES], a[INET6_ADDRSTRLEN + 8];
	uint64_t want_conns, want_bytes, want_active, deadline, v[5];
	size_t nd;
	int rc, same = 0, tries;

	if (nat_args(argv, &s, &d) == -1 || parse_u64(argv[4], 1, 1000000, &want_conns) == -1 ||
	    parse_u64(argv[5], 1, UINT64_MAX, &want_bytes) == -1 ||
	    parse_u64(argv[6], 0, 1000, &want_active) == -1 || (h = ipvs_open(&err)) == NULL) {
		check(0, "nat_check", "bad arguments or cannot open");
		return 1;
	}
	/* The kernel folds its per-cpu counters into what it reports every 2 s: wait for it. */
	deadline = time_mono_ms() + STATS_WAIT_MS;
	do {
		rc = svc_stats(h, &s, &st);
		if (rc == 0 && st.conns >= want_conns && st.inbytes >= want_bytes &&
		    st.outbytes >= want_bytes)
			break;
		usleep(200 * 1000);
	} while (time_mono_ms() < deadline);
	check(rc == 0 && st.conns >= want_conns && st.inpkts > 0 && st.outpkts > 0 &&
	          st.inbytes >= want_bytes && st.outbytes >= want_bytes,
	      "nat_service_stats64_after_traffic",
	      "conns %llu inpkts %llu outpkts %llu inbytes %llu outbytes %llu cps %llu",
	      (unsigned long long)st.conns, (unsigned long long)st.inpkts,
	      (unsigned long long)st.outpkts, (unsigned long long)st.inbytes,
	      (unsigned long long)st.outbytes, (unsigned long long)st.cps);
	rc = ipvs_dests_dump(h, &s, &dests, &nd, &err);
	gd = rc == 0 ? dest_find(dests, nd, &d) : NULL;
	check(gd != NULL && gd->stats.conns >= want_conns && gd->stats.inbytes >= want_bytes &&
	          gd->fwd == IPVS_FWD_MASQ,
	      "nat_dest_stats64_and_conn_counts", "conns %llu inbytes %llu active %u inactive %u",
	      gd ? (unsigned long long)gd->stats.conns : 0,
	      gd ? (unsigned long long)gd->stats.inbytes : 0, gd ? gd->active_conns : 0,
	      gd ? gd->inactive_conns : 0);
	/*
	 * The held connections are ESTABLISHED: active. The closed ones linger in FIN or
	 * TIME_WAIT states: inactive, never active.
	 */
	check(gd != NULL && gd->active_conns == want_active &&
	          gd->inactive_conns <= gd->stats.conns - want_active,
	      "nat_dest_active_and_inactive_counts", "active %u (want %llu) inactive %u",
	      gd ? gd->active_conns : 0, (unsigned long long)want_active,
	      gd ? gd->inactive_conns : 0);
	free(dests);

	/* Same counters as ipvsadm, read between two equal reads of ours (no estimator tick). */
	(void)ipvs_addr_format(s.af, &s.addr, s.port, a, sizeof(a));
	(void)str_format(key, sizeof(key), "TCP %s", a);
	for (tries = 0; tries < 5 && !same; tries++) {
		if (svc_stats(h, &s, &st) == -1 || ipvsadm_stats(key, v) == -1 ||
		    svc_stats(h, &s, &st2) == -1)
			break;
		if (memcmp(&st, &st2, sizeof(st)) != 0)
			continue;
		same = v[0] == st.conns && v[1] == st.inpkts && v[2] == st.outpkts &&
		       v[3] == st.inbytes && v[4] == st.outbytes;
		if (!same)
			break;
	}
	check(same, "nat_stats_match_ipvsadm", "ipvsadm %llu %llu %llu %llu %llu",
	      (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
	      (unsigned long long)v[3], (unsigned long long)v[4]);
	rc = ipvs_service_del(h, &s, &err);
	check_ok(rc, &err, "nat_service_del");
	ipvs_close(h);
	return failures ? 1 : 0;
}

/* ---------------------------------------------------------------- traffic helpers */

static int
wait_fd(int fd, short ev, int ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	int r;

	while ((r = poll(&p, 1, ms)) == -1 && errno == EINTR)
		;
	return r;
}

/*
 * Echoes each connection until EOF in a child of its own (a held connection must not block
 * the next); exits after SERVER_IDLE_MS without a new connection.
 */
static int
cmd_echo_server(char **argv)
{
	struct sockaddr_in sin;
	char buf[4096];
	uint16_t port;
	ssize_t n;
	pid_t pid;
	int ls, c, one = 1;
	FILE *f;

	/* Children that outlive us are reaped by init; the idle timeout bounds them. */

	if (parse_port(argv[0], &port) == -1)
		fatalx("bad port");
	if ((ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		fatal("socket");
	if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		fatal("setsockopt");
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (bind(ls, (struct sockaddr *)&sin, sizeof(sin)) == -1 || listen(ls, 16) == -1)
		fatal("bind/listen");
	if ((f = fopen(argv[1], "w")) == NULL || fclose(f) != 0)
		fatal("%s", argv[1]);
	while (wait_fd(ls, POLLIN, SERVER_IDLE_MS) == 1) {
		if ((c = accept4(ls, NULL, NULL, SOCK_CLOEXEC)) == -1)
			continue;
		if ((pid = fork()) == -1)
			fatal("fork");
		if (pid == 0) {
			close(ls);
			while (wait_fd(c, POLLIN, SERVER_IDLE_MS) == 1 &&
			       (n = read(c, buf, sizeof(buf))) > 0) {
				if (write(c, buf, (size_t)n) != n)
					break;
			}
			_exit(0);
		}
		close(c);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	return 0;
}

/* COUNT connections, each sends BYTES and must read the same bytes back. */
static int
cmd_echo_client(char **argv)
{
	struct sockaddr_in sin;
	char out[4096], in[4096];
	uint64_t bytes, count, i;
	size_t sent, got, k;
	uint16_t port;
	ssize_t n;
	int fd, ok = 1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, argv[0], &sin.sin_addr) != 1 || parse_port(argv[1], &port) == -1 ||
	    parse_u64(argv[2], 1, sizeof(out), &bytes) == -1 ||
	    parse_u64(argv[3], 1, 100, &count) == -1)
		fatalx("usage: echo-client ADDR PORT BYTES COUNT");
	sin.sin_port = htons(port);
	for (k = 0; k < sizeof(out); k++)
		out[k] = (char)('a' + k % 26);
	for (i = 0; i < count && ok; i++) {
		if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1)
			fatal("socket");
		if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 &&
		    errno != EINPROGRESS) {
			ok = 0;
			break;
		}
		if (wait_fd(fd, POLLOUT, IO_TIMEOUT_MS) != 1) {
			ok = 0;
			break;
		}
		sent = got = 0;
		while (got < bytes) {
			if (sent < bytes) {
				n = write(fd, out + sent, bytes - sent);
				if (n > 0)
					sent += (size_t)n;
				else if (n == -1 && errno != EAGAIN)
					break;
			}
			if (wait_fd(fd, POLLIN, IO_TIMEOUT_MS) != 1)
				break;
			n = read(fd, in + got, bytes - got);
			if (n <= 0 && !(n == -1 && errno == EAGAIN))
				break;
			if (n > 0)
				got += (size_t)n;
		}
		ok = got == bytes && memcmp(in, out, bytes) == 0;
		close(fd);
	}
	check(ok, "echo_through_vip", "%llu of %llu connections echoed %llu bytes",
	      (unsigned long long)i, (unsigned long long)count, (unsigned long long)bytes);
	return ok ? 0 : 1;
}

/* One echoed line, then the connection stays ESTABLISHED for HOLD_MS (an idle IMAP client). */
static int
cmd_echo_hold(char **argv)
{
	struct sockaddr_in sin;
	char in[8];
	uint64_t hold_ms;
	uint16_t port;
	ssize_t n;
	size_t got = 0;
	FILE *f;
	int fd;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, argv[0], &sin.sin_addr) != 1 || parse_port(argv[1], &port) == -1 ||
	    parse_u64(argv[2], 1, 60000, &hold_ms) == -1)
		fatalx("usage: echo-hold ADDR PORT HOLD_MS READYFILE");
	sin.sin_port = htons(port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		fatal("socket");
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		fatal("connect");
	if (write(fd, "hold\r\n", 6) != 6)
		fatal("write");
	while (got < 6 && wait_fd(fd, POLLIN, IO_TIMEOUT_MS) == 1 &&
	       (n = read(fd, in + got, 6 - got)) > 0)
		got += (size_t)n;
	if (got != 6 || memcmp(in, "hold\r\n", 6) != 0)
		fatalx("no echo on the held connection");
	if ((f = fopen(argv[3], "w")) == NULL || fclose(f) != 0)
		fatal("%s", argv[3]);
	(void)wait_fd(fd, POLLIN, (int)hold_ms);
	close(fd);
	return 0;
}

/* ---------------------------------------------------------------- relay identity traffic */

/* Reads one '\n'-terminated line (without it) within IO_TIMEOUT_MS; 0, or -1. */
static int
read_line(int fd, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	while (got + 1 < len) {
		if (wait_fd(fd, POLLIN, IO_TIMEOUT_MS) != 1)
			return -1;
		n = read(fd, buf + got, 1);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return -1;
		if (buf[got] == '\n') {
			buf[got] = '\0';
			return 0;
		}
		got++;
	}
	return -1;
}

static int
write_all(int fd, const char *p, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			if (wait_fd(fd, POLLOUT, IO_TIMEOUT_MS) != 1)
				return -1;
			continue;
		}
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Blocking connect bounded by IO_TIMEOUT_MS; the socket stays non-blocking. */
static int
connect_to(const char *addr, const char *port_s)
{
	struct sockaddr_in sin;
	uint16_t port;
	socklen_t sl = sizeof(int);
	int fd, soerr = 0;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, addr, &sin.sin_addr) != 1 || parse_port(port_s, &port) == -1)
		fatalx("bad address %s:%s", addr, port_s);
	sin.sin_port = htons(port);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1)
		fatal("socket");
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 && errno != EINPROGRESS)
		goto fail;
	if (wait_fd(fd, POLLOUT, IO_TIMEOUT_MS) != 1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1 || soerr != 0)
		goto fail;
	return fd;
fail:
	close(fd);
	return -1;
}

/* A file written whole or not at all (the scenario polls for it). */
static void
write_file(const char *dir, const char *name, const char *text)
{
	char tmp[512], path[512];
	FILE *f;

	if (str_format(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) == -1 ||
	    str_format(path, sizeof(path), "%s/%s", dir, name) == -1)
		fatalx("path too long");
	if ((f = fopen(tmp, "w")) == NULL || fputs(text, f) == EOF || fclose(f) != 0)
		fatal("%s", tmp);
	if (rename(tmp, path) == -1)
		fatal("rename %s", path);
}

/*
 * Like echo-server, but every connection first gets "ID\n": a client can tell which relay
 * answered through the VIP. Exits after SERVER_IDLE_MS without a new connection.
 */
static int
cmd_id_server(char **argv)
{
	struct sockaddr_in sin;
	char buf[4096], banner[64];
	uint16_t port;
	ssize_t n;
	pid_t pid;
	int ls, c, one = 1;
	FILE *f;

	if (parse_port(argv[0], &port) == -1 ||
	    str_format(banner, sizeof(banner), "%s\n", argv[1]) == -1)
		fatalx("usage: id-server PORT ID READYFILE");
	if ((ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		fatal("socket");
	if (setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1)
		fatal("setsockopt");
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	if (bind(ls, (struct sockaddr *)&sin, sizeof(sin)) == -1 || listen(ls, 64) == -1)
		fatal("bind/listen");
	if ((f = fopen(argv[2], "w")) == NULL || fclose(f) != 0)
		fatal("%s", argv[2]);
	while (wait_fd(ls, POLLIN, SERVER_IDLE_MS) == 1) {
		if ((c = accept4(ls, NULL, NULL, SOCK_CLOEXEC)) == -1)
			continue;
		if ((pid = fork()) == -1)
			fatal("fork");
		if (pid == 0) {
			close(ls);
			if (write_all(c, banner, strlen(banner)) == -1)
				_exit(1);
			while (wait_fd(c, POLLIN, SERVER_IDLE_MS) == 1 &&
			       (n = read(c, buf, sizeof(buf))) > 0) {
				if (write_all(c, buf, (size_t)n) == -1)
					break;
			}
			_exit(0);
		}
		close(c);
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
	return 0;
}

#define ID_MAX 8

/*
 * COUNT sequential connections to ADDR:PORT (an id-server behind the VIP): each reads the
 * relay's id, sends a line and must get it echoed. Prints "ids NAME=N ..." for the scenario.
 */
static int
cmd_id_count(char **argv)
{
	char names[ID_MAX][32], line[64], want[32], out[512];
	unsigned counts[ID_MAX] = {0};
	uint64_t count, i;
	size_t nid = 0, k, used = 0;
	int fd, ok = 1;

	if (parse_u64(argv[2], 1, 1000, &count) == -1)
		fatalx("usage: id-count ADDR PORT COUNT");
	for (i = 0; i < count && ok; i++) {
		ok = 0;
		if ((fd = connect_to(argv[0], argv[1])) == -1)
			break;
		(void)str_format(want, sizeof(want), "n%llu\n", (unsigned long long)i);
		if (read_line(fd, line, sizeof(line)) == 0 && line[0] != '\0' &&
		    write_all(fd, want, strlen(want)) == 0 &&
		    read_line(fd, want, sizeof(want)) == 0) {
			for (k = 0; k < nid && strcmp(names[k], line) != 0; k++)
				;
			if (k == nid && nid < ID_MAX &&
			    str_copy(names[nid], sizeof(names[nid]), line) == 0)
				nid++;
			if (k < nid) {
				counts[k]++;
				ok = 1;
			}
		}
		close(fd);
	}
	out[0] = '\0';
	for (k = 0; k < nid; k++) {
		if (str_format(out + used, sizeof(out) - used, " %s=%u", names[k], counts[k]) == -1)
			break;
		used = strlen(out);
	}
	printf("ids%s\n", out);
	check(ok, "id_count", "%llu of %llu connections answered and echoed",
	      (unsigned long long)i, (unsigned long long)count);
	return ok ? 0 : 1;
}

/*
 * A connection the scenario steers: connects, writes the relay's id to DIR/id, then obeys
 * lines written to the FIFO DIR/ctl: "ping N" sends a line and logs "pong N" to DIR/log
 * once it is echoed (or "noecho N"), "close" closes it and logs "closed". The peer closing
 * logs "eof". Exits after MAX_MS in any case.
 */
static int
cmd_conn_hold(char **argv)
{
	char path[512], id[64], cmd[64], msg[80], back[80], logl[96];
	struct pollfd p[2];
	uint64_t max_ms, deadline, now;
	size_t cl = 0;
	ssize_t n;
	int fd, ctl, logfd, rc = 1;
	char *nl;
	const char *dir = argv[3];

	if (parse_u64(argv[2], 1, 600000, &max_ms) == -1)
		fatalx("usage: conn-hold ADDR PORT MAX_MS DIR");
	deadline = time_mono_ms() + max_ms;
	if (str_format(path, sizeof(path), "%s/ctl", dir) == -1)
		fatalx("path too long");
	if (mkfifo(path, 0600) == -1 && errno != EEXIST)
		fatal("mkfifo %s", path);
	/* Read-write: never sees EOF when a writer goes, never blocks the opening. */
	if ((ctl = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)) == -1)
		fatal("open %s", path);
	if (str_format(path, sizeof(path), "%s/log", dir) == -1)
		fatalx("path too long");
	if ((logfd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) == -1)
		fatal("open %s", path);
	if ((fd = connect_to(argv[0], argv[1])) == -1 || read_line(fd, id, sizeof(id)) == -1) {
		(void)write_all(logfd, "connect-failed\n", 15);
		return 1;
	}
	(void)str_format(msg, sizeof(msg), "%s\n", id);
	write_file(dir, "id", msg);
	while ((now = time_mono_ms()) < deadline) {
		p[0].fd = ctl;
		p[0].events = POLLIN;
		p[1].fd = fd;
		p[1].events = POLLIN;
		if (poll(p, 2, (int)(deadline - now)) <= 0)
			continue;
		if (p[1].revents != 0) {
			/* Nothing is expected from the peer between pings: this is its close. */
			(void)write_all(logfd, "eof\n", 4);
			break;
		}
		if (!(p[0].revents & POLLIN))
			continue;
		n = read(ctl, cmd + cl, sizeof(cmd) - 1 - cl);
		if (n <= 0)
			continue;
		cl += (size_t)n;
		cmd[cl] = '\0';

		while ((nl = strchr(cmd, '\n')) != NULL) {
			*nl = '\0';
			if (strncmp(cmd, "ping ", 5) == 0) {
				(void)str_format(msg, sizeof(msg), "%s\n", cmd);
				if (write_all(fd, msg, strlen(msg)) == 0 &&
				    read_line(fd, back, sizeof(back)) == 0 &&
				    strcmp(back, cmd) == 0)
					(void)str_format(logl, sizeof(logl), "pong %s\n", cmd + 5);
				else
					(void)str_format(logl, sizeof(logl), "noecho %s\n",
					                 cmd + 5);
				(void)write_all(logfd, logl, strlen(logl));
			} else if (strcmp(cmd, "close") == 0) {
				close(fd);
				fd = -1;
				(void)write_all(logfd, "closed\n", 7);
				rc = 0;
				break;
			}
			cl -= (size_t)(nl + 1 - cmd);
			memmove(cmd, nl + 1, cl + 1);
		}
		if (fd == -1)
			break;
		if (cl == sizeof(cmd) - 1)
			cl = 0; /* a line too long for any command: dropped */
	}
	if (fd != -1)
		close(fd);
	close(ctl);
	close(logfd);
	return rc;
}

/* ---------------------------------------------------------------- recording kernel replies */

#define RECORD_MAX_BYTES (1 << 20)

/*
 * Sends req on a socket of its own and writes every datagram of the kernel's answer, as
 * received, to DIR/NAME until the ACK or NLMSG_DONE of that request. These files are the
 * unit tests' fixtures (tests/unit/fixtures/ipvs): replies recorded from a real kernel.
 */
static int
record_one(struct nl_sock *sk, int family, const struct ipvs_req *req, const char *dir,
           const char *name)
{
	struct ipvs_error err;
	struct ipvs_reply r;
	struct nl_msg *msg;
	struct pollfd p;
	char path[512];
	uint8_t *buf;
	uint32_t seq;
	size_t off, total = 0;
	ssize_t n;
	FILE *f;
	int fd = nl_socket_get_fd(sk), done = 0, rc, waits;

	if (ipvs_msg_build(req, family, &msg, &err) == -1) {
		check(0, name, "build: %s", err.msg);
		return -1;
	}
	if (nl_send_auto(sk, msg) < 0) {
		nlmsg_free(msg);
		check(0, name, "send failed");
		return -1;
	}
	seq = nlmsg_hdr(msg)->nlmsg_seq;
	nlmsg_free(msg);
	if (str_format(path, sizeof(path), "%s/%s", dir, name) == -1 ||
	    (f = fopen(path, "wb")) == NULL)
		fatal("%s/%s", dir, name);
	if ((buf = malloc(RECORD_MAX_BYTES)) == NULL)
		fatal("malloc");
	for (waits = 0; !done && waits < 100; waits++) {
		p.fd = fd;
		p.events = POLLIN;
		if (poll(&p, 1, IO_TIMEOUT_MS) != 1)
			break;
		if ((n = recv(fd, buf, RECORD_MAX_BYTES, MSG_TRUNC)) <= 0 || n > RECORD_MAX_BYTES)
			break;
		if (fwrite(buf, 1, (size_t)n, f) != (size_t)n)
			fatal("write %s", path);
		total += (size_t)n;
		off = 0;
		while ((rc = ipvs_reply_next(buf, (size_t)n, &off, &r)) == 1) {
			if (r.seq == seq && (r.kind == IPVS_REPLY_ACK || r.kind == IPVS_REPLY_DONE))
				done = 1;
		}
		if (rc == -1)
			break;
	}
	free(buf);
	if (fclose(f) != 0)
		fatal("close %s", path);
	check(done, name, "%zu bytes recorded, seq %u", total, seq);
	return done ? 0 : -1;
}

/*
 * Sets up a known table in an empty IPVS (this network namespace's), records the replies
 * to every dump and get the director uses, and one error, into DIR. The values set here
 * are what test_ipvs_msg.c checks the decoded fixtures against: change both together.
 */
static int
cmd_record(const char *ifname, const char *dir)
{
	struct ipvs_service s4, s6, sfw, su;
	struct ipvs_dest d4[3], d6, dfw;
	struct ipvs_timeouts t = {.tcp_s = 1860, .tcp_fin_s = 7, .udp_s = 300};
	struct ipvs_daemon m;
	struct ipvs_error err;
	struct ipvs_req req;
	struct nl_sock *sk;
	struct ipvs *h;
	int family, ok = 1;
	size_t i;

	if ((h = ipvs_open(&err)) == NULL) {
		check(0, "record_open", "%s", err.msg);
		return 1;
	}
	s4 = svc_make(AF_INET, IPPROTO_TCP, "10.0.0.1", 25, "rr");
	s6 = svc_make(AF_INET6, IPPROTO_TCP, "2001:db8::1", 143, "wlc");
	s6.persistence_s = 300;
	s6.netmask_len = 64;
	sfw = svc_make(AF_INET, 0, NULL, 0, "rr");
	sfw.fwmark = 7;
	su = svc_make(AF_INET, IPPROTO_UDP, "10.0.0.2", 53, "wrr");
	d4[0] = dest_make(AF_INET, "10.0.1.1", 25, IPVS_FWD_DR, 1);
	d4[1] = dest_make(AF_INET, "10.0.1.2", 2525, IPVS_FWD_MASQ, 2);
	d4[2] = dest_make(AF_INET, "10.0.1.3", 25, IPVS_FWD_TUN, 3);
	d4[2].u_threshold = 1000;
	d4[2].l_threshold = 500;
	d6 = dest_make(AF_INET6, "2001:db8::11", 143, IPVS_FWD_DR, 7);
	dfw = dest_make(AF_INET, "10.0.1.4", 0, IPVS_FWD_DR, 0);
	ok &= ipvs_service_add(h, &s4, &err) == 0;
	ok &= ipvs_service_add(h, &s6, &err) == 0;
	ok &= ipvs_service_add(h, &sfw, &err) == 0;
	ok &= ipvs_service_add(h, &su, &err) == 0;
	for (i = 0; i < 3; i++)
		ok &= ipvs_dest_add(h, &s4, &d4[i], &err) == 0;
	ok &= ipvs_dest_add(h, &s6, &d6, &err) == 0;
	ok &= ipvs_dest_add(h, &sfw, &dfw, &err) == 0;
	ok &= ipvs_timeouts_set(h, &t, &err) == 0;
	memset(&m, 0, sizeof(m));
	m.state = IPVS_DAEMON_MASTER;
	(void)str_copy(m.mcast_ifname, sizeof(m.mcast_ifname), ifname);
	m.syncid = 5;
	ok &= ipvs_daemon_add(h, &m, &err) == 0;
	check(ok, "record_table_set_up", "%s", ok ? "" : err.msg);
	family = ipvs_family(h);

	if ((sk = nl_socket_alloc()) == NULL || genl_connect(sk) < 0)
		fatalx("netlink socket");
	nl_socket_disable_auto_ack(sk);
	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_SERVICES_DUMP;
	ok &= record_one(sk, family, &req, dir, "services_dump.bin") == 0;
	req.op = IPVS_OP_DESTS_DUMP;
	req.svc = s4;
	ok &= record_one(sk, family, &req, dir, "dests_dump_v4.bin") == 0;
	req.svc = s6;
	ok &= record_one(sk, family, &req, dir, "dests_dump_v6.bin") == 0;
	req.svc = sfw;
	ok &= record_one(sk, family, &req, dir, "dests_dump_fwmark.bin") == 0;
	req.svc = su;
	ok &= record_one(sk, family, &req, dir, "dests_dump_empty.bin") == 0;
	memset(&req, 0, sizeof(req));
	req.op = IPVS_OP_INFO_GET;
	ok &= record_one(sk, family, &req, dir, "info.bin") == 0;
	req.op = IPVS_OP_TIMEOUTS_GET;
	ok &= record_one(sk, family, &req, dir, "config.bin") == 0;
	req.op = IPVS_OP_DAEMONS_DUMP;
	ok &= record_one(sk, family, &req, dir, "daemons_dump.bin") == 0;
	req.op = IPVS_OP_SERVICE_ADD;
	req.svc = s4;
	ok &= record_one(sk, family, &req, dir, "service_add_eexist.bin") == 0;
	nl_socket_free(sk);

	(void)ipvs_daemon_del(h, &m, &err);
	(void)ipvs_service_del(h, &s4, &err);
	(void)ipvs_service_del(h, &s6, &err);
	(void)ipvs_service_del(h, &sfw, &err);
	(void)ipvs_service_del(h, &su, &err);
	ipvs_close(h);
	return ok ? 0 : 1;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: ipvs_client_test api IFNAME\n"
	        "       ipvs_client_test unavailable | eperm\n"
	        "       ipvs_client_test nat-setup VIP VPORT RIP RPORT\n"
	        "       ipvs_client_test nat-check VIP VPORT RIP RPORT MIN_CONNS MIN_BYTES\n"
	        "       ipvs_client_test echo-server PORT READYFILE\n"
	        "       ipvs_client_test echo-client ADDR PORT BYTES COUNT\n"
	        "       ipvs_client_test echo-hold ADDR PORT HOLD_MS READYFILE\n"
	        "       ipvs_client_test id-server PORT ID READYFILE\n"
	        "       ipvs_client_test id-count ADDR PORT COUNT\n"
	        "       ipvs_client_test conn-hold ADDR PORT MAX_MS DIR\n"
	        "       ipvs_client_test record IFNAME DIR\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	log_init("ipvs_client_test", 1,
	         getenv("IPVS_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "api") == 0)
		return cmd_api(argv[2]);
	if (argc == 2 && strcmp(argv[1], "unavailable") == 0)
		return cmd_unavailable();
	if (argc == 2 && strcmp(argv[1], "eperm") == 0)
		return cmd_eperm();
	if (argc == 6 && strcmp(argv[1], "nat-setup") == 0)
		return cmd_nat_setup(argv + 2);
	if (argc == 9 && strcmp(argv[1], "nat-check") == 0)
		return cmd_nat_check(argv + 2);
	if (argc == 4 && strcmp(argv[1], "echo-server") == 0)
		return cmd_echo_server(argv + 2);
	if (argc == 6 && strcmp(argv[1], "echo-client") == 0)
		return cmd_echo_client(argv + 2);
	if (argc == 6 && strcmp(argv[1], "echo-hold") == 0)
		return cmd_echo_hold(argv + 2);
	if (argc == 5 && strcmp(argv[1], "id-server") == 0)
		return cmd_id_server(argv + 2);
	if (argc == 5 && strcmp(argv[1], "id-count") == 0)
		return cmd_id_count(argv + 2);
	if (argc == 6 && strcmp(argv[1], "conn-hold") == 0)
		return cmd_conn_hold(argv + 2);
	if (argc == 4 && strcmp(argv[1], "record") == 0)
		return cmd_record(argv[2], argv[3]);
	usage();
}
