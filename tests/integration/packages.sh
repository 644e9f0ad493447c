#!/bin/sh
# The Debian packages (`make deb`, lintian clean) install, configure, join and purge in a
# throwaway root: a private mount namespace with an overlay of / whose writes go to a
# tmpfs, chrooted into. The host's packages, users, units and files never change; all of
# it vanishes with the namespace. Inside, the packages' dependencies come from the host's
# own installed packages (make deps), so dpkg -i needs no --force option.
# Usage: packages.sh BINDIR (unused: the packages are built here with their own O= dir).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
fail() {
	echo "FAIL: $*" >&2
	exit 1
}
[ "$(id -u)" -eq 0 ] || fail "packages.sh needs root (mount namespace, chroot, dpkg)"
for c in unshare chroot dpkg-deb lintian openssl systemd-analyze; do
	command -v "$c" >/dev/null || fail "no $c (make deps)"
done
T=$(mktemp -d /tmp/mailplex-deb.XXXXXX)
trap 'rm -rf "$T"' EXIT

# 1. Build, lintian included (build-deb.sh fails on any tag not overridden). Not with the
# variables of the make that runs this test (make check passes SAN=1 down).
unset MAKEFLAGS MFLAGS MAKELEVEL
if ! make -s -j2 -C "$TOP" O="$T/build" SAN=0 FUZZ=0 deb >"$T/build.log" 2>&1; then
	cat "$T/build.log" >&2
	fail "make deb"
fi
grep -q 'lintian is not installed' "$T/build.log" && fail "lintian did not run"
n=$(ls "$T"/build/deb/*.deb | wc -l)
[ "$n" -eq 3 ] || fail "make deb wrote $n packages, not 3"
echo "ok: make deb built 3 packages, lintian clean"

# 2. What runs inside the throwaway root (as / there).
cat >"$T/inroot.sh" <<'EOF'
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
cd /tmp/debs || fail "no /tmp/debs"
WANTS=/etc/systemd/system/multi-user.target.wants
LOG=/tmp/invoked

# The host may have a mailplex user (an earlier manual install): not in here.
if getent passwd mailplex >/dev/null; then userdel mailplex >/dev/null 2>&1; fi
if getent group mailplex >/dev/null; then groupdel mailplex >/dev/null 2>&1; fi
getent passwd mailplex >/dev/null && fail "could not remove a pre-existing mailplex user"
# Nor what a `make install` on the host may have left: these must come from the packages.
rm -rf /var/spool/mailplex /var/lib/mailplex /etc/mailplex

# Pretend systemd is the running init so that the maintainer scripts decide what to
# start; deb-systemd-invoke only records what it was asked, systemctl passes through
# except daemon-reload (no manager to talk to).
mkdir -p /run/systemd/system
cat >/usr/local/sbin/deb-systemd-invoke <<'STUB'
#!/bin/sh
echo "$*" >>/tmp/invoked
STUB
cat >/usr/local/sbin/systemctl <<'STUB'
#!/bin/sh
case " $* " in *" daemon-reload "*) exit 0 ;; esac
exec /usr/bin/systemctl "$@"
STUB
chmod 0755 /usr/local/sbin/deb-systemd-invoke /usr/local/sbin/systemctl
: >"$LOG"

# --- an unconfigured node: everything installs and is enabled, nothing starts ---
dpkg -i mailplex-common_*.deb mailplex-director_*.deb mailplex-relay_*.deb \
	>/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -i"; }
ok "dpkg -i mailplex-common mailplex-director mailplex-relay"
uid=$(getent passwd mailplex | cut -d: -f3)
[ -n "$uid" ] || fail "no mailplex user"
[ "$uid" -lt 1000 ] || fail "mailplex user uid $uid is not a system uid"
getent group mailplex >/dev/null || fail "no mailplex group"
[ "$(getent passwd mailplex | cut -d: -f6)" = /var/lib/mailplex ] || fail "mailplex home"
ok "system user mailplex (uid $uid) and group"
[ "$(stat -c '%U:%G %a' /var/spool/mailplex)" = "mailplex:mailplex 700" ] ||
	fail "spool is $(stat -c '%U:%G %a' /var/spool/mailplex)"
ok "/var/spool/mailplex is mailplex:mailplex 0700"
[ "$(stat -c '%U:%G' /var/lib/mailplex)" = "mailplex:mailplex" ] || fail "/var/lib/mailplex owner"
[ -s /var/lib/mailplex/mailplex.db ] || fail "postinst compiled no map"
mailplex-map lookup /var/lib/mailplex/mailplex.db john@bigisp.com 2>&1 | grep -q fritz ||
	fail "the compiled map does not send john@bigisp.com to fritz"
ok "/var/lib/mailplex/mailplex.db compiled from the shipped map"
for u in director proxy smtpd relay; do
	[ -L "$WANTS/mailplex-$u.service" ] || fail "mailplex-$u.service not enabled"
	[ "$(readlink -f "$WANTS/mailplex-$u.service")" = "/lib/systemd/system/mailplex-$u.service" ] ||
	[ "$(readlink -f "$WANTS/mailplex-$u.service")" = "/usr/lib/systemd/system/mailplex-$u.service" ] ||
		fail "mailplex-$u.service links to $(readlink "$WANTS/mailplex-$u.service")"
done
ok "4 units enabled in multi-user.target.wants"
grep -q '^start' "$LOG" && { cat "$LOG" >&2; fail "a unit was started on an unconfigured node"; }
ok "nothing started before the node is configured"
for u in /lib/systemd/system/mailplex-*.service; do
	if ! systemd-analyze verify "$u" >/tmp/verify.out 2>&1 || [ -s /tmp/verify.out ]; then
		cat /tmp/verify.out >&2
		fail "systemd-analyze verify $u"
	fi
done
ok "systemd-analyze verify passes on the 4 installed units"
mailplex-director -n >/dev/null 2>&1 || fail "mailplex-director -n on the shipped config"
mailplex-check -h >/dev/null 2>&1; [ $? -le 3 ] || fail "mailplex-check does not run"
mailplexctl -h >/dev/null 2>&1; [ $? -le 2 ] || fail "mailplexctl does not run"
ok "mailplex-director -n accepts the shipped config"

# --- purge the relay package: its units are forgotten, the spool without mail goes ---
# (free/ is mailplex-smtpd's pool of delivered messages' files: not mail, no reason to stay)
mkdir -p /var/spool/mailplex/free /var/spool/mailplex/queue &&
	echo delivered >/var/spool/mailplex/free/0000000000000000000000A
dpkg --purge mailplex-relay >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg --purge mailplex-relay"; }
[ -e /usr/sbin/mailplex-smtpd ] && fail "mailplex-smtpd left after purge"
[ -e /var/spool/mailplex ] && fail "spool without mail left after purge"
ls /etc/systemd/system/*/mailplex-relay.service /etc/systemd/system/mailplex-relay.service \
	>/dev/null 2>&1 && fail "mailplex-relay.service links left after purge"
[ -L "$WANTS/mailplex-director.service" ] || fail "purging the relay disabled the director"
grep -qx 'stop mailplex-relay.service' "$LOG" || fail "prerm did not stop the agent"
ok "dpkg --purge mailplex-relay: binaries, units, links and the spool without mail gone"

# --- a configured node: TLS certificate, a relay section and the cluster key ---
mkdir -p /etc/mailplex/tls
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=relay4.test \
	-keyout /etc/mailplex/tls/key.pem -out /etc/mailplex/tls/cert.pem >/dev/null 2>&1 ||
	fail "openssl req"
cat >>/etc/mailplex/mailplex.conf <<'CONF'
relay = {
	name = "relay4";
	address = "127.0.0.1";
	directors = [ "127.0.0.1:7945" ];
	services = [ "smtp", "imap" ];
	dr_vips = [ "192.0.2.10" ];
};
CONF
: >"$LOG"
dpkg -i mailplex-relay_*.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -i mailplex-relay without the key"; }
grep -qx 'start mailplex-smtpd.service' "$LOG" || { cat "$LOG" >&2; fail "smtpd not started on a configured node"; }
grep -q 'start mailplex-relay.service' "$LOG" && fail "the agent started without the cluster key"
dpkg --purge mailplex-relay >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg --purge mailplex-relay"; }
ok "without the cluster key the daemons start but the agent does not"
(umask 077 && openssl rand -hex 32 >/etc/mailplex/cluster.key)
: >"$LOG"
dpkg -i mailplex-relay_*.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -i mailplex-relay on a configured node"; }
for u in proxy smtpd relay; do
	grep -qx "start mailplex-$u.service" "$LOG" || { cat "$LOG" >&2; fail "postinst did not start mailplex-$u"; }
done
ok "installing mailplex-relay on a configured node starts proxy, smtpd and the agent (joins)"
mailplex-smtpd -n >/dev/null 2>&1 || fail "mailplex-smtpd -n on the node's config"
mailplex-proxy -n >/dev/null 2>&1 || fail "mailplex-proxy -n on the node's config"
mailplex-relay -n >/dev/null 2>&1 || fail "mailplex-relay -n on the node's config"
ok "mailplex-smtpd -n, mailplex-proxy -n, mailplex-relay -n accept the node's config"
: >"$LOG"
dpkg -i mailplex-director_*.deb >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -i mailplex-director again"; }
grep -qx 'start mailplex-director.service' "$LOG" || { cat "$LOG" >&2; fail "director not started on an edited config"; }
ok "the director starts once mailplex.conf is the operator's"

# --- remove, then purge everything; queued mail in the spool is kept ---
dpkg -r mailplex-relay mailplex-director >/tmp/dpkg.log 2>&1 || { cat /tmp/dpkg.log >&2; fail "dpkg -r"; }
for b in director check proxy smtpd relay; do
	[ -e /usr/sbin/mailplex-$b ] && fail "mailplex-$b left after dpkg -r"
done
[ -e /lib/systemd/system/mailplex-director.service ] && fail "unit left after dpkg -r"
ok "dpkg -r mailplex-relay mailplex-director removes programs and units"
mkdir -p /var/spool/mailplex/queue && echo queued >/var/spool/mailplex/queue/m1
dpkg --purge mailplex-relay mailplex-director mailplex-common >/tmp/dpkg.log 2>&1 ||
	{ cat /tmp/dpkg.log >&2; fail "dpkg --purge"; }
left=$(find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
	/var/lib/systemd/deb-systemd-helper-masked -name 'mailplex*' 2>/dev/null)
[ -z "$left" ] || fail "left after purge: $left"
for f in /usr/sbin/mailplexctl /usr/sbin/mailplex-map /etc/mailplex/mailplex.conf \
	/etc/mailplex/mailplex.map /var/lib/mailplex; do
	[ -e "$f" ] && fail "$f left after purge"
done
[ -f /var/spool/mailplex/queue/m1 ] || fail "purge threw away a spool holding mail"
dpkg-query -W 'mailplex-*' 2>/dev/null | grep -q . && fail "packages still known to dpkg"
ok "dpkg --purge: units, links, state and conffiles gone; a spool holding mail is kept"
EOF

# 3. The namespace: overlay of / (upper on a tmpfs), /proc, /dev, a private /run and /tmp.
cat >"$T/ns.sh" <<'EOF'
set -eu
T=$1
mount --make-rprivate /
mkdir -p "$T/ovl"
mount -t tmpfs -o size=512m tmpfs "$T/ovl"
mkdir "$T/ovl/upper" "$T/ovl/work" "$T/ovl/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$T/ovl/upper,workdir=$T/ovl/work" "$T/ovl/root"
R=$T/ovl/root
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir "$R/tmp/debs"
cp "$T"/build/deb/*.deb "$R/tmp/debs/"
cp "$T/inroot.sh" "$R/tmp/inroot.sh"
exec chroot "$R" /bin/sh /tmp/inroot.sh
EOF
host_state() {
	dpkg-query -W 'mailplex-*' 2>/dev/null
	getent passwd mailplex
	ls -a /usr/local/sbin /etc/systemd/system/multi-user.target.wants /var/spool 2>/dev/null
}
host_state >"$T/host.before"
timeout 300 unshare --mount --fork /bin/sh "$T/ns.sh" "$T"
rc=$?
[ "$rc" -eq 0 ] || fail "in the throwaway root (rc $rc)"
# The namespace is gone; the host's packages, user, stubs, enabled units, spool are as before.
host_state >"$T/host.after"
cmp -s "$T/host.before" "$T/host.after" || {
	diff "$T/host.before" "$T/host.after" >&2
	fail "the host changed"
}
echo "ok: host unchanged (packages, mailplex user, /usr/local/sbin, enabled units, spool)"
