/*
 * keepalived next to the director: the keepalived.conf printed from mailplex.conf
 * (VRRPv3 for the VIPs, a track_script on the director's health) and the reader of the
 * vrrp_notify_fifo keepalived writes its state changes to. The FIFO is opened O_RDWR so
 * it never reports EOF; lines longer than VRRP_LINE_MAX are dropped whole.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "director.h"
#include "log.h"
#include "util.h"

static const char *const vrrp_state_names[] = {"UNKNOWN", "BACKUP", "MASTER", "FAULT", "STOP"};

const char *
vrrp_state_name(enum vrrp_state s)
{
	return (size_t)s < ARRAY_LEN(vrrp_state_names) ? vrrp_state_names[s] : "UNKNOWN";
}

/* ---- keepalived.conf ---- */

static int
vrrp_conf_word_ok(const char *s)
{
	return s[0] != '\0' && strpbrk(s, "\"' \t\r\n#!{}") == NULL;
}

/* One instance per address family: keepalived cannot mix them in one. */
static void
vrrp_conf_instance(FILE *out, const struct mailplex_conf_director *conf, int af,
                   const char *name)
{
	const struct mailplex_conf_service *svcs = conf->services.v;
	const struct mailplex_conf_vrrp *v = &conf->vrrp;
	int any = 0;

	for (size_t s = 0; s < conf->services.n; s++)
		if ((af == AF_INET6) == (strchr(svcs[s].vip.host, ':') != NULL))
			any = 1;
	if (!any)
		return;
	fprintf(out,
	        "\nvrrp_instance %s {\n"
	        "    state BACKUP\n"
	        "    interface %s\n"
	        "    virtual_router_id %lld\n"
	        "    priority %lld\n"
	        "    advert_int %llu.%02llu\n",
	        name, v->interface, (long long)v->router_id, (long long)v->priority,
	        (unsigned long long)(v->advert_ms / 1000),
	        (unsigned long long)(v->advert_ms % 1000 / 10));
	if (!v->preempt)
		fprintf(out, "    nopreempt\n");
	fprintf(out, "    virtual_ipaddress {\n");
	for (size_t s = 0; s < conf->services.n; s++) {
		int dup = 0;

		if ((af == AF_INET6) != (strchr(svcs[s].vip.host, ':') != NULL))
			continue;
		for (size_t p = 0; p < s && !dup; p++)
			dup = strcmp(svcs[p].vip.host, svcs[s].vip.host) == 0;
		if (!dup)
			fprintf(out, "        %s/%d dev %s\n", svcs[s].vip.host, af == AF_INET6 ? 128 : 32,
			        v->interface);
	}
	fprintf(out,
	        "    }\n"
	        "    track_script {\n"
	        "        mailplex_director\n"
	        "    }\n"
	        "}\n");
}

int
vrrp_keepalived_conf(FILE *out, const struct mailplex_conf_director *conf, const char *exe,
                     const char *conf_path, char *err, size_t errlen)
{
	const struct mailplex_conf_vrrp *v = &conf->vrrp;

	if (v->interface == NULL) {
		(void)str_copy(err, errlen, "director.vrrp.interface is not set");
		return -1;
	}
	if (conf->services.n == 0) {
		(void)str_copy(err, errlen, "no director services: no VIP to hold");
		return -1;
	}
	if (v->advert_ms % 10 != 0) {
		(void)str_copy(err, errlen,
		               "director.vrrp.advert_interval: VRRPv3 counts in steps of 10ms");
		return -1;
	}
	if (!vrrp_conf_word_ok(v->interface) || !vrrp_conf_word_ok(v->fifo) ||
	    !vrrp_conf_word_ok(exe) || !vrrp_conf_word_ok(conf_path)) {
		(void)str_copy(err, errlen,
		               "an interface or path has a blank, a quote or a keepalived "
		               "special character");
		return -1;
	}
	fprintf(out,
	        "# keepalived.conf written by mailplex-director --keepalived-conf from %s\n"
	        "global_defs {\n"
	        "    vrrp_version 3\n"
	        "    vrrp_notify_fifo %s\n"
	        "    script_user root\n"
	        "    enable_script_security\n"
	        "}\n"
	        "\n"
	        "# The VIPs go when the director is dead or its last pass failed.\n"
	        "vrrp_script mailplex_director {\n"
	        "    script \"%s --health -f %s\"\n"
	        "    interval 1\n"
	        "    timeout 2\n"
	        "    fall 2\n"
	        "    rise 1\n"
	        "}\n",
	        conf_path, v->fifo, exe, conf_path);
	vrrp_conf_instance(out, conf, AF_INET, "mailplex_v4");
	vrrp_conf_instance(out, conf, AF_INET6, "mailplex_v6");
	if (fflush(out) == EOF || ferror(out)) {
		(void)str_format(err, errlen, "write: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- the notify FIFO ---- */

/* `INSTANCE "VI_1" MASTER 150` or `GROUP "G" BACKUP`; 0, or -1 for anything else. */
int
vrrp_line_parse(const char *line, size_t len, struct vrrp_event *ev)
{
	static const char *const kinds[] = {"INSTANCE", "GROUP"};
	const char *p = line, *end = line + len, *q;
	size_t l;

	memset(ev, 0, sizeof(*ev));
	ev->priority = -1;
	for (size_t k = 0; k < ARRAY_LEN(kinds) && !ev->kind[0]; k++) {
		l = strlen(kinds[k]);
		if ((size_t)(end - p) > l && memcmp(p, kinds[k], l) == 0 && p[l] == ' ') {
			(void)str_copy(ev->kind, sizeof(ev->kind), kinds[k]);
			p += l + 1;
		}
	}
	if (!ev->kind[0] || p == end || *p != '"')
		return -1;
	p++;
	for (q = p; q < end && *q != '"'; q++)
		if (*q <= ' ' || *q > '~')
			return -1;
	if (q == end || q == p || (size_t)(q - p) >= sizeof(ev->name))
		return -1;
	memcpy(ev->name, p, (size_t)(q - p));
	ev->name[q - p] = '\0';
	p = q + 1;
	if (p == end || *p != ' ')
		return -1;
	p++;
	for (q = p; q < end && *q != ' '; q++)
		;
	ev->state = VRRP_UNKNOWN;
	for (size_t s = 1; s < ARRAY_LEN(vrrp_state_names); s++)
		if ((size_t)(q - p) == strlen(vrrp_state_names[s]) &&
		    memcmp(p, vrrp_state_names[s], (size_t)(q - p)) == 0)
			ev->state = (enum vrrp_state)s;
	if (ev->state == VRRP_UNKNOWN)
		return -1;
	if (q < end) {
		int prio = 0;

		for (p = q + 1; p < end && *p >= '0' && *p <= '9' && prio <= 255; p++)
			prio = prio * 10 + (*p - '0');
		if (p != end || p == q + 1 || prio > 255)
			return -1;
		ev->priority = prio;
	}
	return 0;
}

static void
vrrp_event_apply(struct vrrp_fifo *f, const struct vrrp_event *ev, uint64_t now_ms)
{
	struct vrrp_instance *in = NULL;

	for (size_t i = 0; i < f->ninstances && in == NULL; i++)
		if (strcmp(f->instances[i].kind, ev->kind) == 0 &&
		    strcmp(f->instances[i].name, ev->name) == 0)
			in = &f->instances[i];
	if (in == NULL) {
		if (f->ninstances == VRRP_INSTANCES_MAX) {
			log_warnx("vrrp: more than %d instances, %s \"%s\" not tracked",
			          VRRP_INSTANCES_MAX, ev->kind, ev->name);
			return;
		}
		in = &f->instances[f->ninstances++];
		memset(in, 0, sizeof(*in));
		(void)str_copy(in->kind, sizeof(in->kind), ev->kind);
		(void)str_copy(in->name, sizeof(in->name), ev->name);
	}
	if (in->state != ev->state)
		log_info("vrrp: %s \"%s\": %s -> %s (priority %d)", in->kind, in->name,
		         vrrp_state_name(in->state), vrrp_state_name(ev->state), ev->priority);
	if (in->state != ev->state || in->since_ms == 0)
		in->since_ms = now_ms;
	in->state = ev->state;
	in->priority = ev->priority;
	in->changes++;
}

void
vrrp_fifo_feed(struct vrrp_fifo *f, const char *data, size_t n, uint64_t now_ms)
{
	for (size_t i = 0; i < n; i++) {
		struct vrrp_event ev;

		if (data[i] != '\n') {
			if (f->len < sizeof(f->buf))
				f->buf[f->len++] = data[i];
			else
				f->overlong = 1;
			continue;
		}
		if (f->overlong)
			log_warnx("vrrp: notify line longer than %zu bytes dropped", sizeof(f->buf));
		else if (vrrp_line_parse(f->buf, f->len, &ev) == 0)
			vrrp_event_apply(f, &ev, now_ms);
		else if (f->len > 0)
			log_debug("vrrp: notify line ignored: %.*s", (int)f->len, f->buf);
		f->len = 0;
		f->overlong = 0;
	}
}

static void
vrrp_fifo_readable(struct ev_loop *loop, int fd, int events, void *arg)
{
	struct director *d = arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		vrrp_fifo_feed(&d->vrrp, buf, (size_t)n, ev_now_ms(loop));
	if (n == -1 && errno != EAGAIN && errno != EINTR)
		log_warn("vrrp: read %s", d->conf.director.vrrp.fifo);
}

int
vrrp_fifo_open(struct director *d, char *err, size_t errlen)
{
	const char *path = d->conf.director.vrrp.fifo;
	struct stat st;

	d->vrrp.fd = -1;
	if (d->conf.director.vrrp.interface == NULL)
		return 0;
	if (mkfifo(path, 0600) == -1 && errno != EEXIST) {
		(void)str_format(err, errlen, "vrrp fifo %s: %s", path, strerror(errno));
		return -1;
	}
	if ((d->vrrp.fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)) == -1) {
		(void)str_format(err, errlen, "vrrp fifo %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(d->vrrp.fd, &st) == -1 || !S_ISFIFO(st.st_mode)) {
		(void)str_format(err, errlen, "vrrp fifo %s: not a FIFO", path);
		vrrp_fifo_close(d);
		return -1;
	}
	if (ev_io_set(d->loop, d->vrrp.fd, EV_READ, vrrp_fifo_readable, d) == -1) {
		(void)str_format(err, errlen, "vrrp fifo %s: %s", path, strerror(errno));
		vrrp_fifo_close(d);
		return -1;
	}
	(void)str_copy(d->vrrp.path, sizeof(d->vrrp.path), path);
	return 0;
}

void
vrrp_fifo_close(struct director *d)
{
	if (d->vrrp.fd < 0)
		return;
	if (d->loop != NULL)
		(void)ev_io_del(d->loop, d->vrrp.fd);
	(void)close(d->vrrp.fd);
	d->vrrp.fd = -1;
}
