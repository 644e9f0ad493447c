# tests/integration/lib.sh: the setup the integration tests share. Sourced, never run on
# its own (tests/run-integration.sh skips it):
#	HERE=$(cd "$(dirname "$0")" && pwd)
#	. "$HERE/lib.sh"
#	lib_init NAME.sh TAG	# $T (a fresh /tmp/mailplex-TAG.XXXXXX), PIDS, fail=0, traps
# POSIX sh. Names it uses for itself start with an underscore; the ones a script sets:
#	DIE_LOGS	"FILE:LINES ..." (below $T; FILE may be a pattern such as *.log) whose
#			tails die() prints, if they exist
#	WAIT_FOR_TRIES	how many 0.2 s rounds wait_for makes (default 150: 30 s)
#	on_cleanup()	if defined, run first by the EXIT trap (e.g. to stop a daemon or to add
#			pids to $PIDS, which are sent SIGTERM, then SIGKILL)

# ---- reporting ----
lib_init() { # NAME TAG
	ME=$1
	T=$(mktemp -d "/tmp/mailplex-$2.XXXXXX") || { echo "$ME: mktemp failed" >&2; exit 1; }
	chmod 755 "$T"
	PIDS=""
	DOVECOTS=""
	fail=0
	DIE_LOGS=${DIE_LOGS:-}
	WAIT_FOR_TRIES=${WAIT_FOR_TRIES:-150}
	trap lib_cleanup EXIT
	trap 'exit 2' INT TERM HUP
}

die() { # MESSAGE...: the message and the tails of $DIE_LOGS on stderr, exit 1
	echo "$ME: $*" >&2
	_dl_list=$DIE_LOGS
	set -f # the patterns are matched below $T, not here
	set -- $_dl_list
	set +f
	for _dl in "$@"; do
		for _f in "$T"/${_dl%:*}; do
			[ -f "$_f" ] && { echo "--- $_f" >&2; tail -"${_dl##*:}" "$_f" >&2; }
		done
	done
	exit 1
}

check() { # check WHAT COMMAND...: "ok: WHAT" or "FAIL: WHAT" (then fail=1), one line each
	# The description is kept in its own variable: COMMAND may be wait_for or anything
	# else that sets variables, and the line must name this check.
	_ck_what=$1
	shift
	if "$@"; then
		echo "ok: $_ck_what"
	else
		echo "FAIL: $_ck_what" >&2
		fail=1
	fi
}

wait_for() { # DESCRIPTION COMMAND...: retries COMMAND every 0.2 s, $WAIT_FOR_TRIES times
	_wf_what=$1
	shift
	_wf_i=0
	while [ $_wf_i -lt "$WAIT_FOR_TRIES" ]; do
		"$@" >/dev/null 2>&1 && return 0
		_wf_i=$((_wf_i + 1))
		sleep 0.2
	done
	echo "$ME: timed out waiting for: $_wf_what" >&2
	return 1
}

wait_port() { # ADDR PORT [SECONDS]: until a TCP connect succeeds, bounded (default 10 s)
	python3 - "$1" "$2" "${3:-10}" <<'PY'
import socket, sys, time
for _ in range(int(sys.argv[3]) * 10):
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

need_tools() { # TOOL...: die unless each is on PATH
	for _t in "$@"; do
		command -v "$_t" >/dev/null 2>&1 || die "$_t missing (make deps)"
	done
}

need_bins() { # PROGRAM...: die unless each is an executable in $BIN
	for _p in "$@"; do
		[ -x "$BIN/$_p" ] || die "no $BIN/$_p"
	done
}

# ---- cleanup ----
lib_cleanup() {
	command -v on_cleanup >/dev/null 2>&1 && on_cleanup
	for _p in $PIDS; do kill "$_p" 2>/dev/null; done
	for _d in $DOVECOTS; do
		[ -f "$T/$_d/run/master.pid" ] && kill "$(cat "$T/$_d/run/master.pid")" 2>/dev/null
	done
	sleep 0.3
	for _p in $PIDS; do kill -9 "$_p" 2>/dev/null; done
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}

# ---- mailplex ----
map_compile() { # SOURCE DB: mailplex-map compile (its output in DB's name with .out
	# instead of .db), dies with that output; DB readable by all (the daemons run as nobody)
	"$BIN/mailplex-map" compile "$1" "$2" >"${2%.db}.out" 2>&1 || die "map compile: $(cat "${2%.db}.out")"
	chmod 644 "$2"
}

ctl_dir() { # $T/ctl for the daemons' control sockets, created after they drop to nobody
	mkdir "$T/ctl"
	chown nobody "$T/ctl" 2>/dev/null || chmod 777 "$T/ctl"
}

# ---- certificates ----
make_cert() { # CN SUBJECT-ALT-NAMES [BASENAME]: a self-signed $T/BASENAME{key,cert}.pem
	# (default $T/key.pem and $T/cert.pem), readable by all
	openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$1" -addext "subjectAltName=$2" \
		-keyout "$T/${3:-}key.pem" -out "$T/${3:-}cert.pem" >/dev/null 2>&1 || die "openssl req failed"
	chmod 644 "$T/${3:-}key.pem" "$T/${3:-}cert.pem"
}

# ---- Dovecot ----
# dovecot_dir NAME: D=$T/NAME with run/, state/, home/ and an empty users file
dovecot_dir() {
	D=$T/$1
	mkdir -p "$D/run" "$D/state" "$D/home"
	: >"$D/users"
}

# dovecot_user [-n] USER PASSWORD [USERDB-EXTRA-FIELDS]: a passwd-file line in $D/users (uid
# and gid 65534, home $D/home/USER) and an empty Maildir there; with -n the home only, no
# Maildir (Dovecot makes one itself, with its own INBOX: what doveadm backup/dsync needs)
dovecot_user() {
	_du_maildir=yes
	[ "$1" = -n ] && { _du_maildir=no; shift; }
	printf '%s:{PLAIN}%s:65534:65534::%s/home/%s::%s\n' "$1" "$2" "$D" "$1" "${3:-}" >>"$D/users"
	mkdir -p "$D/home/$1"
	[ $_du_maildir = no ] || mkdir -p "$D/home/$1/Maildir/new" "$D/home/$1/Maildir/cur" "$D/home/$1/Maildir/tmp"
}

# dovecot_conf NAME ADDR [OPTION...]: writes $T/NAME/dovecot.conf (after dovecot_dir NAME):
# passwd-file users from $D/users, plaintext logins allowed, maildir:~/Maildir. Options:
#	lmtp=PORT imap=PORT pop3=PORT	listeners on ADDR (imaps and pop3s off); protocols
#					are these unless protocols="..." is given
#	ssl=yes				ssl with $T/cert.pem and $T/key.pem (default ssl = no)
#	master=USER:PASSWORD		a master user (passwd-file $D/masters), LOGIN as
#					user*USER
#	userdb=static			uid/gid 65534, home $D/home/%u (default: the passwd-file)
#	username_format=FORMAT		auth_username_format (default %Ln; "" for none)
#	extra="LINES"			appended at the end
dovecot_conf() {
	_dc_name=$1 _dc_addr=$2
	shift 2
	_dc_lmtp="" _dc_imap="" _dc_pop3="" _dc_ssl=no _dc_master="" _dc_userdb=passwd-file
	_dc_extra="" _dc_protocols="" _dc_fmt=%Ln
	for _a in "$@"; do
		case $_a in
		lmtp=*) _dc_lmtp=${_a#*=} ;;
		imap=*) _dc_imap=${_a#*=} ;;
		pop3=*) _dc_pop3=${_a#*=} ;;
		ssl=*) _dc_ssl=${_a#*=} ;;
		master=*) _dc_master=${_a#*=} ;;
		userdb=*) _dc_userdb=${_a#*=} ;;
		username_format=*) _dc_fmt=${_a#*=} ;;
		protocols=*) _dc_protocols=${_a#*=} ;;
		extra=*) _dc_extra=${_a#*=} ;;
		*) die "dovecot_conf: unknown option $_a" ;;
		esac
	done
	if [ -z "$_dc_protocols" ]; then
		[ -n "$_dc_lmtp" ] && _dc_protocols="lmtp"
		[ -n "$_dc_imap" ] && _dc_protocols="$_dc_protocols imap"
		[ -n "$_dc_pop3" ] && _dc_protocols="$_dc_protocols pop3"
	fi
	D=$T/$_dc_name
	{
		echo "instance_name = mailplex-${ME%.sh}-$_dc_name-$$"
		echo "base_dir = $D/run"
		echo "state_dir = $D/state"
		echo "protocols = $_dc_protocols"
		echo "listen = $_dc_addr"
		echo "disable_plaintext_auth = no"
		echo "ssl = $_dc_ssl"
		if [ "$_dc_ssl" != no ]; then
			echo "ssl_cert = <$T/cert.pem"
			echo "ssl_key = <$T/key.pem"
		fi
		echo "log_path = $D/dovecot.log"
		echo "mail_location = maildir:~/Maildir"
		[ -n "$_dc_fmt" ] && echo "auth_username_format = $_dc_fmt"
		if [ -n "$_dc_master" ]; then
			printf '%s:{PLAIN}%s::::::\n' "${_dc_master%%:*}" "${_dc_master#*:}" >"$D/masters"
			printf 'auth_master_user_separator = *\n'
			printf 'passdb {\n  driver = passwd-file\n  args = %s/masters\n  master = yes\n  pass = yes\n}\n' "$D"
		fi
		printf 'passdb {\n  driver = passwd-file\n  args = %s/users\n}\n' "$D"
		if [ "$_dc_userdb" = static ]; then
			printf 'userdb {\n  driver = static\n  args = uid=65534 gid=65534 home=%s/home/%%u\n}\n' "$D"
		else
			printf 'userdb {\n  driver = passwd-file\n  args = %s/users\n}\n' "$D"
		fi
		[ -n "$_dc_lmtp" ] &&
			printf 'service lmtp {\n  inet_listener lmtp {\n    address = %s\n    port = %s\n  }\n}\n' "$_dc_addr" "$_dc_lmtp"
		[ -n "$_dc_imap" ] &&
			printf 'service imap-login {\n  inet_listener imap {\n    port = %s\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}\n' "$_dc_imap"
		[ -n "$_dc_pop3" ] &&
			printf 'service pop3-login {\n  inet_listener pop3 {\n    port = %s\n  }\n  inet_listener pop3s {\n    port = 0\n  }\n}\n' "$_dc_pop3"
		[ -n "$_dc_extra" ] && printf '%s\n' "$_dc_extra"
	} >"$D/dovecot.conf"
	chown -R 65534:65534 "$D/home"
}

# dovecot_run NAME [ADDR PORT]: starts $T/NAME/dovecot.conf in the foreground (its pid in
# $PIDS, its master.pid killed on exit too); with ADDR PORT, waits until that port answers
# or dies with Dovecot's output
dovecot_run() {
	D=$T/$1
	dovecot -F -c "$D/dovecot.conf" >"$D/stdout" 2>&1 &
	PIDS="$PIDS $!"
	DOVECOTS="$DOVECOTS $1"
	if [ $# -ge 3 ]; then
		wait_port "$2" "$3" || die "dovecot $1 did not start: $(cat "$D/stdout" "$D/dovecot.log" 2>/dev/null)"
	fi
}

# ---- Postfix's smtp-sink ----
# sink_start [-n] NAME ADDR:PORT [OPTIONS...]: an smtp-sink as nobody dumping each message
# into $T/NAME/ (with -n: no dump, for a sink that refuses), its output in $T/NAME.out,
# backlog $SINK_BACKLOG (default 100); its pid in $PIDS and in SINKPID_NAME
sink_start() {
	_sk_dump=yes
	[ "$1" = -n ] && { _sk_dump=no; shift; }
	_sk_name=$1 _sk_where=$2
	shift 2
	if [ $_sk_dump = yes ]; then
		mkdir -p "$T/$_sk_name"
		chown nobody "$T/$_sk_name" 2>/dev/null || chmod 777 "$T/$_sk_name"
		set -- -d "$T/$_sk_name/%M." "$@"
	fi
	smtp-sink -u nobody "$@" "$_sk_where" "${SINK_BACKLOG:-100}" >"$T/$_sk_name.out" 2>&1 &
	PIDS="$PIDS $!"
	eval "SINKPID_$_sk_name=\$!"
}
