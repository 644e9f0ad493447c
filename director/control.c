/*
 * The director's control commands (status, drain, undrain, map-publish, map-status) on
 * lib/control's socket, and the status tables operators read. Parsing is table-driven and has no side effect; a
 * command only changes the desired state and asks for a pass, never the kernel directly.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "director.h"
#include "log.h"
#include "util.h"

#define STATUS_COLS_MAX 10
#define STATUS_CELL_MAX 128

struct director_cmd_def {
	const char *name;
	enum director_cmd_type type;
	int min_args;
	int max_args;
	const char *usage;
};

static const struct director_cmd_def director_cmds[] = {
    {"status", DIRECTOR_CMD_STATUS, 0, 0, "status"},
    {"drain", DIRECTOR_CMD_DRAIN, 1, 2, "drain RELAY [SERVICE]"},
    {"undrain", DIRECTOR_CMD_UNDRAIN, 1, 2, "undrain RELAY [SERVICE]"},
    {"health", DIRECTOR_CMD_HEALTH, 0, 0, "health"},
    {"map-publish", DIRECTOR_CMD_MAP_PUBLISH, 0, 0, "map-publish"},
    {"map-status", DIRECTOR_CMD_MAP_STATUS, 0, 0, "map-status"},
};

int
director_cmd_parse(const struct control_request *req, struct director_cmd *cmd, char *err,
                   size_t errlen)
{
	const struct director_cmd_def *def = NULL;
	int nargs = req->argc - 1;

	memset(cmd, 0, sizeof(*cmd));
	for (size_t i = 0; i < ARRAY_LEN(director_cmds) && def == NULL; i++)
		if (strcmp(req->argv[0], director_cmds[i].name) == 0)
			def = &director_cmds[i];
	if (def == NULL) {
		(void)str_format(err, errlen,
		                 "unknown command '%.32s' (status, drain, undrain, map-publish, "
		                 "map-status)",
		                 req->argv[0]);
		return -1;
	}
	if (nargs < def->min_args || nargs > def->max_args) {
		(void)str_format(err, errlen, "usage: %s", def->usage);
		return -1;
	}
	cmd->type = def->type;
	cmd->relay = nargs >= 1 ? req->argv[1] : NULL;
	cmd->service = nargs >= 2 ? req->argv[2] : NULL;
	return 0;
}

/* ---- status ---- */

/* Rows of text cells printed with every column as wide as its widest cell. */
struct status_table {
	size_t ncols;
	size_t nrows;
	size_t cap;
	char (*cells)[STATUS_CELL_MAX];
};

static char *
status_cell(struct status_table *t, size_t row, size_t col)
{
	return t->cells[row * t->ncols + col];
}

/* Adds a row; returns its index or -1 (out of memory: the table shows fewer rows). */
static int
status_row(struct status_table *t)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap == 0 ? 8 : t->cap * 2;
		void *c = reallocarray(t->cells, cap * t->ncols, STATUS_CELL_MAX);

		if (c == NULL)
			return -1;
		t->cells = c;
		t->cap = cap;
	}
	memset(t->cells[t->nrows * t->ncols], 0, t->ncols * STATUS_CELL_MAX);
	return (int)t->nrows++;
}

static void
status_print(struct status_table *t, struct control_reply *r, const char *indent)
{
	size_t w[STATUS_COLS_MAX] = {0};

	for (size_t i = 0; i < t->nrows; i++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t l = strlen(status_cell(t, i, c));

			if (l > w[c])
				w[c] = l;
		}
	for (size_t i = 0; i < t->nrows; i++) {
		control_reply_printf(r, "%s", indent);
		for (size_t c = 0; c < t->ncols; c++) {
			if (c + 1 == t->ncols)
				control_reply_printf(r, "%s\n", status_cell(t, i, c));
			else
				control_reply_printf(r, "%-*s  ", (int)w[c], status_cell(t, i, c));
		}
	}
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

static void status_set(struct status_table *t, int row, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
status_set(struct status_table *t, int row, size_t col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(status_cell(t, (size_t)row, col), STATUS_CELL_MAX, fmt, ap);
	va_end(ap);
}

static void
status_duration(char *buf, size_t len, uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (s >= 3600)
		(void)str_format(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
		                 (unsigned long long)(s % 3600 / 60));
	else if (s >= 60)
		(void)str_format(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
		                 (unsigned long long)(s % 60));
	else
		(void)str_format(buf, len, "%llus", (unsigned long long)s);
}

static const char *const status_fwd_names[] = {"dr", "nat", "tun"};
static const char *const status_check_names[] = {"tcp",   "smtp", "smtps", "imap",
                                                 "imaps", "pop3", "pop3s"};

static const struct plan_kernel_service *
status_kernel_service(const struct director *d, const struct ipvs_service *svc)
{
	for (size_t i = 0; i < d->nkernel; i++)
		if (plan_service_same(&d->kernel[i].svc, svc))
			return &d->kernel[i];
	return NULL;
}

static void
status_member_row(struct director *d, struct status_table *t, struct director_member *m)
{
	uint64_t now = ev_now_ms(d->loop);
	char addr[64], note[STATUS_CELL_MAX], left[32];
	struct ipvs_dest dest;
	int row;

	if ((row = status_row(t)) == -1)
		return;
	state_dest_ipvs(m->svc, m->relay, &dest);
	if (ipvs_addr_format(dest.af, &dest.addr, dest.port, addr, sizeof(addr)) == -1)
		(void)str_copy(addr, sizeof(addr), m->relay->address.str);
	status_set(t, row, 0, "%s", m->relay->name);
	status_set(t, row, 1, "%s", addr);
	if (m->in_kernel)
		status_set(t, row, 2, "%d", m->kernel.weight);
	else
		status_set(t, row, 2, "-");
	status_set(t, row, 3, "%s", state_member_label(m));
	if (m->check != NULL) {
		hc_check_state_string(m->check, status_cell(t, (size_t)row, 4), STATUS_CELL_MAX);
		if (m->check->nruns > 0)
			status_set(t, row, 5, "%llu ms",
			           (unsigned long long)m->check->last.latency_ms);
		else
			status_set(t, row, 5, "-");
	} else {
		status_set(t, row, 4, "-");
		status_set(t, row, 5, "-");
	}
	if (m->in_kernel) {
		status_set(t, row, 6, "%u", m->kernel.active_conns);
		status_set(t, row, 7, "%u", m->kernel.inactive_conns);
	} else {
		status_set(t, row, 6, "-");
		status_set(t, row, 7, "-");
	}
	/* Joined relays are told apart from listed ones here; their details are above. */
	(void)str_copy(note, sizeof(note), m->joined != NULL ? "joined" : "");
	if (m->in_kernel && m->draining) {
		size_t l = strlen(note);

		status_duration(left, sizeof(left),
		                m->drain_deadline_ms > now ? m->drain_deadline_ms - now : 0);
		(void)str_format(note + l, sizeof(note) - l,
		                 "%s%s drain, deleted when idle or in %s", l > 0 ? "; " : "",
		                 m->drained                                ? "operator"
		                 : m->joined != NULL && m->joined->leaving ? m->joined->why
		                                                           : "check",
		                 left);
	} else if (m->drained) {
		size_t l = strlen(note);

		(void)str_format(note + l, sizeof(note) - l, "%soperator drain", l > 0 ? "; " : "");
	}
	if (m->check != NULL && m->check->nruns > 0 && m->check->last.reason[0] != '\0') {
		size_t l = strlen(note);

		(void)str_format(note + l, sizeof(note) - l, "%s%s", l > 0 ? "; " : "",
		                 m->check->last.reason);
	}
	status_set(t, row, 8, "%s", note[0] != '\0' ? note : "-");
}

/* Destinations in one of our services that no configured relay stands for. */
static void
status_unlisted_rows(struct director *d, struct status_table *t, size_t s,
                     const struct plan_kernel_service *ks)
{
	for (size_t i = 0; ks != NULL && i < ks->ndests; i++) {
		const struct ipvs_dest *kd = &ks->dests[i];
		int known = 0, row;
		char addr[64];

		for (size_t r = 0; r < d->state.nrelays && !known; r++) {
			struct ipvs_dest dest;

			if (state_member(&d->state, s, r)->absent)
				continue;
			state_dest_ipvs(state_member(&d->state, s, r)->svc,
			                state_member(&d->state, s, r)->relay, &dest);
			known = plan_dest_same(&dest, kd);
		}
		if (known || (row = status_row(t)) == -1)
			continue;
		if (ipvs_addr_format(kd->af, &kd->addr, kd->port, addr, sizeof(addr)) == -1)
			(void)str_copy(addr, sizeof(addr), "?");
		status_set(t, row, 0, "(unlisted)");
		status_set(t, row, 1, "%s", addr);
		status_set(t, row, 2, "%d", kd->weight);
		status_set(t, row, 3, "draining");
		status_set(t, row, 4, "-");
		status_set(t, row, 5, "-");
		status_set(t, row, 6, "%u", kd->active_conns);
		status_set(t, row, 7, "%u", kd->inactive_conns);
		status_set(t, row, 8, "not in the config: deleted when idle");
	}
}

/* keepalived's states from the notify FIFO and the sync daemons of the last pass. */
static void
status_cluster(struct director *d, struct control_reply *r)
{
	char dur[32];

	if (d->conf.director.vrrp.interface == NULL)
		control_reply_printf(r, "vrrp: not configured\n");
	else if (d->vrrp.ninstances == 0)
		control_reply_printf(r, "vrrp: no state from keepalived yet (%s)\n",
		                     d->conf.director.vrrp.fifo);
	for (size_t i = 0; i < d->vrrp.ninstances; i++) {
		const struct vrrp_instance *in = &d->vrrp.instances[i];

		status_duration(dur, sizeof(dur), ev_now_ms(d->loop) - in->since_ms);
		control_reply_printf(r, "vrrp: %s %s %s, priority %d, for %s\n",
		                     strcmp(in->kind, "GROUP") == 0 ? "group" : "instance", in->name,
		                     vrrp_state_name(in->state), in->priority, dur);
	}
	if (d->sync_error[0] != '\0')
		control_reply_printf(r, "sync: %s\n", d->sync_error);
	else if (d->nsync == 0)
		control_reply_printf(r, "sync: no daemon running\n");
	for (size_t i = 0; i < d->nsync; i++)
		control_reply_printf(r, "sync: %s daemon, syncid %u on %s\n",
		                     d->sync[i].state == IPVS_DAEMON_MASTER ? "master" : "backup",
		                     d->sync[i].syncid, d->sync[i].mcast_ifname);
}

void
director_status(struct director *d, struct control_reply *r)
{
	const struct mailplex_conf_service *svcs = d->conf.director.services.v;
	static const char *const head[] = {"RELAY",   "ADDRESS", "WEIGHT",   "STATE", "CHECK",
	                                   "LATENCY", "ACTIVE",  "INACTIVE", "NOTE"};
	char dur[32];

	if (d->timeouts_known)
		control_reply_printf(r, "ipvs timeouts: tcp %us, tcpfin %us, udp %us\n",
		                     d->timeouts.tcp_s, d->timeouts.tcp_fin_s, d->timeouts.udp_s);
	else
		control_reply_printf(r, "ipvs timeouts: unknown\n");
	if (d->last_pass_ms == 0) {
		control_reply_printf(r, "last pass: none yet\n");
	} else {
		status_duration(dur, sizeof(dur), ev_now_ms(d->loop) - d->last_pass_ms);
		if (d->last_error[0] != '\0')
			control_reply_printf(r, "last pass: %s ago, failed: %s\n", dur,
			                     d->last_error);
		else
			control_reply_printf(r, "last pass: %s ago, %zu changes, %zu failed\n", dur,
			                     d->last_ops, d->last_failed);
	}
	status_cluster(d, r);
	mapserve_status(d, r);
	members_status(d, r);
	for (size_t s = 0; s < d->state.nservices; s++) {
		const struct mailplex_conf_service *svc = &svcs[s];
		struct status_table t = {.ncols = ARRAY_LEN(head)};
		const struct plan_kernel_service *ks;
		struct ipvs_service is;
		char vip[96];
		int row;

		state_service_ipvs(svc, &is);
		if (ipvs_service_format(&is, vip, sizeof(vip)) == -1)
			(void)str_copy(vip, sizeof(vip), svc->vip.host);
		ks = status_kernel_service(d, &is);
		if (svc->persistence_ms > 0)
			status_duration(dur, sizeof(dur), svc->persistence_ms);
		else
			(void)str_copy(dur, sizeof(dur), "none");
		control_reply_printf(
		    r,
		    "\nservice %s: %s, scheduler %s, forwarding %s, persistence %s, check %s%s%s\n",
		    svc->name, vip, svc->scheduler,
		    status_fwd_names[svc->forwarding < 3 ? svc->forwarding : 0], dur,
		    status_check_names[svc->check.type < 7 ? svc->check.type : 0],
		    svc->check.starttls ? "+starttls" : "",
		    ks != NULL ? "" : " (not in the kernel)");
		if ((row = status_row(&t)) == -1)
			continue;
		for (size_t c = 0; c < ARRAY_LEN(head); c++)
			status_set(&t, row, c, "%s", head[c]);
		for (size_t rl = 0; rl < d->state.nrelays; rl++)
			if (!state_member(&d->state, s, rl)->absent)
				status_member_row(d, &t, state_member(&d->state, s, rl));
		status_unlisted_rows(d, &t, s, ks);
		status_print(&t, r, "  ");
	}
	if (d->state.nservices == 0)
		control_reply_printf(r, "\nno services configured\n");
}

/* ---- commands ---- */

static void
director_drain_cmd(struct director *d, const struct director_cmd *cmd, struct control_reply *r)
{
	int on = cmd->type == DIRECTOR_CMD_DRAIN, n;
	char err[CONTROL_ERR_MAX];

	if ((n = state_set_drained(&d->state, cmd->relay, cmd->service, on, err, sizeof(err))) ==
	    -1) {
		control_reply_error(r, "%s", err);
		return;
	}
	log_info("control: %s %s in %s%s", on ? "drain" : "undrain", cmd->relay,
	         cmd->service != NULL ? cmd->service : "every service",
	         n == 0 ? " (no change)" : "");
	if (n == 0)
		control_reply_printf(r, "relay %s was already %s in %s\n", cmd->relay,
		                     on ? "drained" : "undrained",
		                     cmd->service != NULL ? cmd->service : "every service");
	else if (on)
		control_reply_printf(r,
		                     "relay %s draining in %s: weight 0 now, deleted when idle "
		                     "or after the drain timeout\n",
		                     cmd->relay,
		                     cmd->service != NULL ? cmd->service : "every service");
	else
		control_reply_printf(r, "relay %s undrained in %s: back in once its check is up\n",
		                     cmd->relay,
		                     cmd->service != NULL ? cmd->service : "every service");
	if (n > 0)
		reconcile_soon(d);
}

void
director_control_handle(const struct control_request *req, struct control_reply *reply, void *arg)
{
	struct director *d = arg;
	struct director_cmd cmd;
	char err[CONTROL_ERR_MAX];

	if (director_cmd_parse(req, &cmd, err, sizeof(err)) == -1) {
		control_reply_error(reply, "%s", err);
		return;
	}
	switch (cmd.type) {
	case DIRECTOR_CMD_STATUS:
		director_status(d, reply);
		break;
	case DIRECTOR_CMD_DRAIN:
	case DIRECTOR_CMD_UNDRAIN:
		director_drain_cmd(d, &cmd, reply);
		break;
	case DIRECTOR_CMD_MAP_PUBLISH:
		log_info("control: map publish");
		(void)mapserve_publish(d, reply);
		break;
	case DIRECTOR_CMD_MAP_STATUS:
		mapserve_map_status(d, reply);
		break;
	case DIRECTOR_CMD_HEALTH:
		if (!director_healthy(d))
			control_reply_error(reply, "unhealthy: %s",
			                    d->last_pass_ms == 0 ? "no pass yet" : d->last_error);
		else
			control_reply_printf(reply, "healthy\n");
		break;
	}
}
