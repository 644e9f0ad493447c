/*
 * Tables describing mailplex.conf: names, types, defaults and bounds of every key.
 * Nothing here parses or reports errors (conf.c does); the enum lists must follow the
 * order of the C enums they fill.
 */
#include <stddef.h>

#include "log.h"
#include "mailplex_conf.h"

/* Same order as enum log_level in log.h. */
static const char *const mailplex_log_levels[] = {"err", "warn", "info", "debug", NULL};

static const struct conf_key mailplex_map_keys[] = {
    {.name = "source",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_map, source),
     .def = MAILPLEX_SYSCONFDIR "/mailplex.map",
     .min = 1,
     .max = 1024},
    {.name = "db",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_map, db),
     .def = MAILPLEX_STATEDIR "/mailplex.db",
     .min = 1,
     .max = 1024},
    {.name = "reload_check",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_map, reload_check_ms),
     .def = "1s",
     .min = 100,
     .max = 3600 * 1000},
    {.name = NULL},
};

/* Same order as enum mailplex_fwd and enum mailplex_check_type. */
static const char *const mailplex_fwd_names[] = {"dr", "nat", "tun", NULL};
static const char *const mailplex_client_addr_names[] = {"none", "proxy-v2", "id", NULL};
static const char *const mailplex_check_names[] = {"tcp",   "smtp", "smtps", "imap",
                                                   "imaps", "pop3", "pop3s", NULL};

static const struct conf_key mailplex_check_keys[] = {
    {.name = "type",
     .type = CONF_T_ENUM,
     .offset = offsetof(struct mailplex_conf_check, type),
     .def = "tcp",
     .names = mailplex_check_names},
    {.name = "starttls",
     .type = CONF_T_BOOL,
     .offset = offsetof(struct mailplex_conf_check, starttls),
     .def = "false"},
    {.name = "interval",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_check, interval_ms),
     .def = "5s",
     .min = 100,
     .max = 3600 * 1000},
    {.name = "timeout",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_check, timeout_ms),
     .def = "3s",
     .min = 50,
     .max = 600 * 1000},
    {.name = "rise",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_check, rise),
     .def = "2",
     .min = 1,
     .max = 100},
    {.name = "fall",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_check, fall),
     .def = "3",
     .min = 1,
     .max = 100},
    {.name = "verify",
     .type = CONF_T_BOOL,
     .offset = offsetof(struct mailplex_conf_check, verify),
     .def = "false"},
    {.name = "ca_file",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_check, ca_file),
     .min = 1,
     .max = 1024},
    {.name = "cert_days",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_check, cert_days),
     .def = "14",
     .min = 0,
     .max = 3650},
    {.name = "helo",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_check, helo),
     .def = "mailplex-director",
     .min = 1,
     .max = 255},
    {.name = NULL},
};

static const struct conf_key mailplex_service_keys[] = {
    {.name = "name",
     .type = CONF_T_STRING,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct mailplex_conf_service, name),
     .min = 1,
     .max = 32},
    {.name = "vip",
     .type = CONF_T_ADDRESS,
     .flags = CONF_REQUIRED | CONF_NUMERIC,
     .offset = offsetof(struct mailplex_conf_service, vip)},
    {.name = "scheduler",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_service, scheduler),
     .def = "wlc",
     .min = 1,
     .max = 15}, /* IP_VS_SCHEDNAME_MAXLEN - 1 */
    {.name = "forwarding",
     .type = CONF_T_ENUM,
     .offset = offsetof(struct mailplex_conf_service, forwarding),
     .def = "dr",
     .names = mailplex_fwd_names},
    {.name = "persistence",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_service, persistence_ms),
     .def = "0s",
     .max = 86400 * 1000},
    {.name = "relay_port",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_service, relay_port),
     .def = "0",
     .min = 0,
     .max = 65535},
    {.name = "check",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf_service, check),
     .sub = mailplex_check_keys},
    {.name = NULL},
};

static const struct conf_key mailplex_relay_keys[] = {
    {.name = "name",
     .type = CONF_T_STRING,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct mailplex_conf_relay, name),
     .min = 1,
     .max = 63},
    {.name = "address",
     .type = CONF_T_IP,
     .flags = CONF_REQUIRED,
     .offset = offsetof(struct mailplex_conf_relay, address)},
    {.name = "weight",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_relay, weight),
     .def = "100",
     .min = 1,
     .max = 65535},
    {.name = NULL},
};

static const struct conf_key mailplex_vrrp_keys[] = {
    {.name = "interface",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_vrrp, interface),
     .min = 1,
     .max = 15}, /* IFNAMSIZ - 1 */
    {.name = "router_id",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_vrrp, router_id),
     .def = "51",
     .min = 1,
     .max = 255},
    {.name = "priority",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_vrrp, priority),
     .def = "100",
     .min = 1,
     .max = 254}, /* 255 belongs to an address owner */
    {.name = "advert_interval",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_vrrp, advert_ms),
     .def = "1s",
     .min = 10,
     .max = 40950},
    {.name = "preempt",
     .type = CONF_T_BOOL,
     .offset = offsetof(struct mailplex_conf_vrrp, preempt),
     .def = "true"},
    {.name = "fifo",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_vrrp, fifo),
     .def = MAILPLEX_RUNDIR "/vrrp.fifo",
     .min = 1,
     .max = 1024},
    {.name = NULL},
};

static const struct conf_key mailplex_sync_keys[] = {
    {.name = "interface",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_sync, interface),
     .min = 1,
     .max = 15},
    {.name = "syncid",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_sync, syncid),
     .def = "51",
     .min = 1,
     .max = 255},
    {.name = "peer_syncid",
     .type = CONF_T_INT,
     .offset = offsetof(struct mailplex_conf_sync, peer_syncid),
     .def = "0",
     .min = 0,
     .max = 255},
    {.name = NULL},
};

static const struct conf_key mailplex_director_keys[] = {
    {.name = "control",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_director, control),
     .def = MAILPLEX_RUNDIR "/director.sock",
     .min = 1,
     .max = 107}, /* sun_path */
    {.name = "vrrp",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf_director, vrrp),
     .sub = mailplex_vrrp_keys},
    {.name = "sync",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf_director, sync),
     .sub = mailplex_sync_keys},
    {.name = "reconcile_interval",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_director, reconcile_ms),
     .def = "5s",
     .min = 100,
     .max = 3600 * 1000},
    {.name = "drain_timeout",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_director, drain_timeout_ms),
     .def = "15m",
     .min = 0,
     .max = 7 * 86400 * 1000ULL},
    {.name = "ipvs_tcp_timeout",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_director, ipvs_tcp_timeout_ms),
     .def = "1860s",
     .min = 1000,
     .max = 7 * 86400 * 1000ULL},
    {.name = "ipvs_tcpfin_timeout",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_director, ipvs_tcpfin_timeout_ms),
     .def = "2m",
     .min = 1000,
     .max = 86400 * 1000},
    {.name = "services",
     .type = CONF_T_GROUPLIST,
     .offset = offsetof(struct mailplex_conf_director, services),
     .sub = mailplex_service_keys,
     .elem_size = sizeof(struct mailplex_conf_service),
     .max = 64},
    {.name = "relays",
     .type = CONF_T_GROUPLIST,
     .offset = offsetof(struct mailplex_conf_director, relays),
     .sub = mailplex_relay_keys,
     .elem_size = sizeof(struct mailplex_conf_relay),
     .max = 1024},
    {.name = "cluster_listen",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_director, cluster_listen),
     .min = 1,
     .max = SOCK_ADDR_STRLEN - 1},
    {.name = "cluster_key",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_director, cluster_key),
     .def = MAILPLEX_SYSCONFDIR "/cluster.key",
     .min = 1,
     .max = 1024},
    {.name = "cluster_window",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_director, cluster_window_ms),
     .def = "30s",
     .min = 1000,
     .max = 600 * 1000},
    {.name = "relay_dead_after",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_director, relay_dead_after_ms),
     .def = "10s",
     .min = 100,
     .max = 3600 * 1000},
    {.name = "rejoin_grace",
     .type = CONF_T_DURATION,
     .offset = offsetof(struct mailplex_conf_director, rejoin_grace_ms),
     .def = "20s",
     .min = 0,
     .max = 3600 * 1000},
    {.name = "map_listen",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf_director, map_listen),
     .min = 1,
     .max = SOCK_ADDR_STRLEN - 1},
    {.name = NULL},
};

#define PROXY_KEY(n, t, field)                                                                     \
	.name = n, .type = t, .offset = offsetof(struct mailplex_conf_proxy, field)

static const struct conf_key mailplex_proxy_keys[] = {
    {PROXY_KEY("imap", CONF_T_STRLIST, imap), .max = 16},
    {PROXY_KEY("imaps", CONF_T_STRLIST, imaps), .max = 16},
    {PROXY_KEY("pop3", CONF_T_STRLIST, pop3), .max = 16},
    {PROXY_KEY("pop3s", CONF_T_STRLIST, pop3s), .max = 16},
    {PROXY_KEY("workers", CONF_T_INT, workers), .def = "0", .min = 0, .max = 256},
    {PROXY_KEY("tls_cert", CONF_T_STRING, tls_cert), .min = 1, .max = 1024},
    {PROXY_KEY("tls_key", CONF_T_STRING, tls_key), .min = 1, .max = 1024},
    {PROXY_KEY("tls_ciphers", CONF_T_STRING, tls_ciphers), .min = 1, .max = 1024},
    {PROXY_KEY("allow_plaintext_login", CONF_T_BOOL, allow_plaintext_login), .def = "false"},
    {PROXY_KEY("control", CONF_T_STRING, control), .def = MAILPLEX_RUNDIR "/proxy.sock", .min = 1,
     .max = 107}, /* sun_path */
    {PROXY_KEY("line_max", CONF_T_SIZE, line_max), .def = "8k", .min = 512, .max = 65536},
    {PROXY_KEY("literal_max", CONF_T_SIZE, literal_max), .def = "4k", .min = 256, .max = 65536},
    {PROXY_KEY("prelogin_timeout", CONF_T_DURATION, prelogin_timeout_ms), .def = "60s", .min = 1000,
     .max = 3600 * 1000},
    {PROXY_KEY("idle_timeout", CONF_T_DURATION, idle_timeout_ms), .def = "31m",
     .min = 30 * 60 * 1000, /* RFC 2177: IDLE clients re-issue every 29 minutes */
     .max = 7 * 86400 * 1000ULL},
    {PROXY_KEY("login_failures_max", CONF_T_INT, login_failures_max), .def = "3", .min = 1,
     .max = 100},
    {PROXY_KEY("login_failure_delay", CONF_T_DURATION, login_failure_delay_ms), .def = "1s",
     .min = 0, .max = 60 * 1000},
    {PROXY_KEY("max_connections", CONF_T_INT, max_connections), .def = "20000", .min = 1,
     .max = 1000000},
    {PROXY_KEY("max_connections_per_ip", CONF_T_INT, max_connections_per_ip), .def = "100",
     .min = 1, .max = 1000000},
    {PROXY_KEY("backend_connect_timeout", CONF_T_DURATION, backend_connect_timeout_ms), .def = "5s",
     .min = 100, .max = 600 * 1000},
    {PROXY_KEY("backend_login_timeout", CONF_T_DURATION, backend_login_timeout_ms), .def = "30s",
     .min = 100, .max = 600 * 1000},
    {PROXY_KEY("backend_down", CONF_T_DURATION, backend_down_ms), .def = "2s", .min = 0,
     .max = 3600 * 1000},
    {PROXY_KEY("backend_down_max", CONF_T_DURATION, backend_down_max_ms), .def = "60s", .min = 0,
     .max = 3600 * 1000},
    {PROXY_KEY("backend_tls_verify", CONF_T_BOOL, backend_tls_verify), .def = "true"},
    {PROXY_KEY("backend_ca_file", CONF_T_STRING, backend_ca_file), .min = 1, .max = 1024},
    {PROXY_KEY("backend_client_address", CONF_T_ENUM, backend_client_address), .def = "none",
     .names = mailplex_client_addr_names},
    {.name = NULL},
};

#define SMTPD_KEY(n, t, field)                                                                     \
	.name = n, .type = t, .offset = offsetof(struct mailplex_conf_smtpd, field)

static const struct conf_key mailplex_smtpd_keys[] = {
    {SMTPD_KEY("listen", CONF_T_STRLIST, listen), .max = 16}, /* empty: "*:25" */
    {SMTPD_KEY("hostname", CONF_T_STRING, hostname), .min = 1, .max = 255},
    {SMTPD_KEY("workers", CONF_T_INT, workers), .def = "0", .min = 0, .max = 256},
    {SMTPD_KEY("spool", CONF_T_STRING, spool), .def = MAILPLEX_SPOOLDIR, .min = 1, .max = 900},
    {SMTPD_KEY("control", CONF_T_STRING, control), .def = MAILPLEX_RUNDIR "/smtpd.sock", .min = 1,
     .max = 103}, /* sun_path, with room for ".NNN" */
    {SMTPD_KEY("tls_cert", CONF_T_STRING, tls_cert), .min = 1, .max = 1024},
    {SMTPD_KEY("tls_key", CONF_T_STRING, tls_key), .min = 1, .max = 1024},
    {SMTPD_KEY("tls_ciphers", CONF_T_STRING, tls_ciphers), .min = 1, .max = 1024},
    {SMTPD_KEY("max_message_size", CONF_T_SIZE, max_message_size), .def = "50M", .min = 1024,
     .max = 4LL * 1024 * 1024 * 1024},
    /* RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients */
    {SMTPD_KEY("max_recipients", CONF_T_INT, max_recipients), .def = "1000", .min = 1,
     .max = 1000}, /* SPOOL_RCPT_MAX */
    {SMTPD_KEY("max_connections", CONF_T_INT, max_connections), .def = "10000", .min = 1,
     .max = 1000000},
    {SMTPD_KEY("max_connections_per_ip", CONF_T_INT, max_connections_per_ip), .def = "50",
     .min = 1, .max = 1000000},
    {SMTPD_KEY("error_delay", CONF_T_DURATION, error_delay_ms), .def = "1s", .min = 0,
     .max = 60 * 1000},
    {SMTPD_KEY("max_errors", CONF_T_INT, max_errors), .def = "20", .min = 1, .max = 1000},
    {SMTPD_KEY("greeting_timeout", CONF_T_DURATION, greeting_timeout_ms), .def = "5m",
     .min = 1000, .max = 3600 * 1000},
    {SMTPD_KEY("command_timeout", CONF_T_DURATION, command_timeout_ms), .def = "5m", .min = 1000,
     .max = 3600 * 1000},
    {SMTPD_KEY("data_timeout", CONF_T_DURATION, data_timeout_ms), .def = "10m", .min = 1000,
     .max = 3600 * 1000},
    {SMTPD_KEY("verify_recipients", CONF_T_BOOL, verify_recipients), .def = "false"},
    {SMTPD_KEY("verify_timeout", CONF_T_DURATION, verify_timeout_ms), .def = "10s", .min = 100,
     .max = 600 * 1000},
    {SMTPD_KEY("verify_cache_positive", CONF_T_DURATION, verify_cache_positive_ms), .def = "1h",
     .min = 0, .max = 7 * 86400 * 1000ULL},
    {SMTPD_KEY("verify_cache_negative", CONF_T_DURATION, verify_cache_negative_ms), .def = "5m",
     .min = 0, .max = 7 * 86400 * 1000ULL},
    {SMTPD_KEY("queue_min_backoff", CONF_T_DURATION, queue_min_backoff_ms), .def = "5m",
     .min = 100, .max = 86400 * 1000},
    {SMTPD_KEY("queue_max_backoff", CONF_T_DURATION, queue_max_backoff_ms), .def = "1h",
     .min = 100, .max = 7 * 86400 * 1000ULL},
    {SMTPD_KEY("queue_lifetime", CONF_T_DURATION, queue_lifetime_ms), .def = "5d", .min = 1000,
     .max = 60 * 86400 * 1000ULL},
    {SMTPD_KEY("backend_concurrency", CONF_T_INT, backend_concurrency), .def = "10", .min = 1,
     .max = 10000},
    {SMTPD_KEY("delivery_timeout", CONF_T_DURATION, delivery_timeout_ms), .def = "5m", .min = 1000,
     .max = 3600 * 1000},
    {SMTPD_KEY("queue_control", CONF_T_STRING, queue_control),
     .def = MAILPLEX_RUNDIR "/queue.sock", .min = 1, .max = 107}, /* sun_path */
    {SMTPD_KEY("bounce_relay", CONF_T_STRING, bounce_relay), .min = 1, .max = 270},
    {SMTPD_KEY("backend_tls_verify", CONF_T_BOOL, backend_tls_verify), .def = "true"},
    {SMTPD_KEY("backend_ca_file", CONF_T_STRING, backend_ca_file), .min = 1, .max = 1024},
    {.name = NULL},
};

#define AGENT_KEY(n, t, field)                                                                     \
	.name = n, .type = t, .offset = offsetof(struct mailplex_conf_relay_agent, field)

/* No key is required here: only mailplex-relay needs the section, and it says what lacks. */
static const struct conf_key mailplex_relay_agent_keys[] = {
    {AGENT_KEY("name", CONF_T_STRING, name), .min = 1, .max = 63},
    {AGENT_KEY("address", CONF_T_IP, address)},
    {AGENT_KEY("weight", CONF_T_INT, weight), .def = "100", .min = 1, .max = 65535},
    {AGENT_KEY("directors", CONF_T_STRLIST, directors), .max = 16},
    {AGENT_KEY("heartbeat", CONF_T_DURATION, heartbeat_ms), .def = "3s", .min = 100,
     .max = 600 * 1000},
    {AGENT_KEY("key", CONF_T_STRING, key), .def = MAILPLEX_SYSCONFDIR "/cluster.key", .min = 1,
     .max = 1024},
    {AGENT_KEY("services", CONF_T_STRLIST, services), .max = 16},
    {AGENT_KEY("smtpd_control", CONF_T_STRING, smtpd_control), .min = 1, .max = 107},
    {AGENT_KEY("proxy_control", CONF_T_STRING, proxy_control), .min = 1, .max = 107},
    {AGENT_KEY("spool", CONF_T_STRING, spool), .min = 1, .max = 1024},
    {AGENT_KEY("spool_min_free", CONF_T_SIZE, spool_min_free), .def = "100M"},
    {AGENT_KEY("dr_vips", CONF_T_STRLIST, dr_vips), .max = 64},
    {AGENT_KEY("stop_timeout", CONF_T_DURATION, stop_timeout_ms), .def = "15m", .min = 0,
     .max = 7 * 86400 * 1000ULL},
    {AGENT_KEY("map_port", CONF_T_INT, map_port), .def = "7946", .min = 1, .max = 65535},
    {AGENT_KEY("map_max_lag", CONF_T_DURATION, map_max_lag_ms), .def = "60s", .min = 0,
     .max = 7 * 86400 * 1000ULL},
    {.name = NULL},
};

#define MOVE_KEY(n, t, field)                                                                      \
	.name = n, .type = t, .offset = offsetof(struct mailplex_conf_move, field)

/* Same order as enum mailplex_move_mode. */
static const char *const mailplex_move_modes[] = {"cluster", "local", NULL};

/*
 * Dovecot's dsync pulling OLD over IMAP into NEW's store (doveadm-backup(1), -R: from the
 * remote side), run where NEW's mail store and dovecot.conf are. The master password
 * reaches doveadm through a config file that includes dovecot.conf and reads the password
 * from mailplexctl's private 0600 file ("<file"), never through an argument: imapc_password
 * is not variable-expanded, and arguments are world-readable in /proc.
 */
#define MOVE_COPY_DEFAULT                                                                          \
	"printf '!include %s\\nimapc_password = <%s\\n' "                                          \
	"\"${DOVECOT_CONF:-/etc/dovecot/dovecot.conf}\" \"$MAILPLEX_MASTER_PASSWORD_FILE\" "       \
	">\"$MAILPLEX_TMPDIR/dovecot.conf\" && "                                                   \
	"doveadm -c \"$MAILPLEX_TMPDIR/dovecot.conf\" -o imapc_host=\"$MAILPLEX_OLD_HOST\" "       \
	"-o imapc_port=\"$MAILPLEX_OLD_IMAP_PORT\" -o imapc_ssl=\"$MAILPLEX_OLD_IMAPC_SSL\" "      \
	"-o imapc_user=\"$MAILPLEX_USER\" -o imapc_master_user=\"$MAILPLEX_MASTER_USER\" "         \
	"-o imapc_features=\"rfc822.size fetch-headers\" -o mail_prefetch_count=20 "               \
	"backup -R -u \"$MAILPLEX_USER\" imapc:"

static const struct conf_key mailplex_move_keys[] = {
    {MOVE_KEY("mode", CONF_T_ENUM, mode), .def = "cluster", .names = mailplex_move_modes},
    {MOVE_KEY("state_dir", CONF_T_STRING, state_dir), .def = MAILPLEX_STATEDIR "/moves", .min = 1,
     .max = 1024},
    {MOVE_KEY("copy_command", CONF_T_STRING, copy_command), .def = MOVE_COPY_DEFAULT, .min = 1,
     .max = 4096},
    {MOVE_KEY("copy_timeout", CONF_T_DURATION, copy_timeout_ms), .def = "2h", .min = 1000,
     .max = 7 * 86400 * 1000ULL},
    {MOVE_KEY("master_user", CONF_T_STRING, master_user), .min = 1, .max = 255},
    {MOVE_KEY("master_password_file", CONF_T_STRING, master_password_file),
     .def = MAILPLEX_SYSCONFDIR "/move-master.pass", .min = 1, .max = 1024},
    {MOVE_KEY("barrier_timeout", CONF_T_DURATION, barrier_timeout_ms), .def = "10m", .min = 1000,
     .max = 86400 * 1000},
    {MOVE_KEY("concurrency", CONF_T_INT, concurrency), .def = "4", .min = 1, .max = 64},
    {MOVE_KEY("verify", CONF_T_BOOL, verify), .def = "true"},
    {MOVE_KEY("imap_timeout", CONF_T_DURATION, imap_timeout_ms), .def = "60s", .min = 100,
     .max = 3600 * 1000},
    {.name = NULL},
};

static const struct conf_key mailplex_keys[] = {
    {.name = "log_level",
     .type = CONF_T_ENUM,
     .offset = offsetof(struct mailplex_conf, log_level),
     .def = "info",
     .names = mailplex_log_levels},
    {.name = "user",
     .type = CONF_T_STRING,
     .offset = offsetof(struct mailplex_conf, user),
     .def = "mailplex",
     .min = 1,
     .max = 32},
    {.name = "map",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf, map),
     .sub = mailplex_map_keys},
    {.name = "director",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf, director),
     .sub = mailplex_director_keys},
    {.name = "proxy",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf, proxy),
     .sub = mailplex_proxy_keys},
    {.name = "smtpd",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf, smtpd),
     .sub = mailplex_smtpd_keys},
    {.name = "relay",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf, relay),
     .sub = mailplex_relay_agent_keys},
    {.name = "move",
     .type = CONF_T_GROUP,
     .offset = offsetof(struct mailplex_conf, move),
     .sub = mailplex_move_keys},
    {.name = NULL},
};

const struct conf_schema mailplex_conf_schema = {
    .keys = mailplex_keys,
    .size = sizeof(struct mailplex_conf),
};

int
mailplex_conf_load(const char *path, struct mailplex_conf *conf, char *err, size_t errlen)
{
	return conf_load_file(&mailplex_conf_schema, path != NULL ? path : MAILPLEX_CONF_PATH, conf,
	                      err, errlen);
}

int
mailplex_conf_load_string(const char *text, const char *name, struct mailplex_conf *conf, char *err,
                          size_t errlen)
{
	return conf_load_string(&mailplex_conf_schema, text, name, conf, err, errlen);
}

void
mailplex_conf_free(struct mailplex_conf *conf)
{
	conf_free(&mailplex_conf_schema, conf);
}
