#!/bin/sh
# make deps: install every build and test dependency from Debian packages, non-interactively.
# Idempotent: when every package is already installed it changes nothing (and does not
# need the network); otherwise it runs apt-get update and installs what is missing.
set -eu

PACKAGES="
build-essential pkg-config clang libclang-rt-14-dev
libgdbm-dev libconfig-dev libnl-3-dev libnl-genl-3-dev libssl-dev libcmocka-dev
python3 time openssl iproute2 procps kmod
user-mode-linux ipvsadm keepalived
lintian adduser systemd man-db
dovecot-imapd dovecot-pop3d dovecot-lmtpd postfix swaks curl
"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	"install ok installed") ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	echo "make deps: all Debian packages present"
	exit 0
fi

echo "make deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "make deps: need root to install packages (run: sudo make deps)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Daemons installed only as test peers must not start on the host's default ports.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' > "$policy"
	chmod 0755 "$policy"
	created_policy=1
fi
# Postfix is a test peer with a private config directory: no system-wide setup.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
rc=0
apt-get install -y -q --no-install-recommends $missing || rc=$?
[ "$created_policy" -eq 1 ] && rm -f "$policy"
exit $rc
