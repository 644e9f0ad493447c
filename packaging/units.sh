# Unit helpers shared by the maintainer scripts; build-deb.sh puts this text where a
# script says #MAILPLEX_UNIT_HELPERS#. deb-systemd-helper (init-system-helpers, Essential)
# records which units it enabled, so an operator's disable or mask survives upgrades.

# Units are started and stopped only where systemd is the running init: not in a chroot,
# an image being built, or a container without it.
mp_systemd_running() {
	[ -d /run/systemd/system ]
}

# Enable on first installation; on upgrades keep whatever the operator chose.
mp_units_enable() {
	for mp_u in "$@"; do
		deb-systemd-helper unmask "$mp_u" >/dev/null || true
		if deb-systemd-helper --quiet was-enabled "$mp_u"; then
			deb-systemd-helper enable "$mp_u" >/dev/null || true
		else
			deb-systemd-helper update-state "$mp_u" >/dev/null || true
		fi
	done
}

# mp_units_invoke ACTION UNIT...: start, stop or try-restart, if systemd runs. A unit
# that fails to start does not fail the installation: its log says why.
mp_units_invoke() {
	mp_systemd_running || return 0
	mp_action=$1
	shift
	deb-systemd-invoke "$mp_action" "$@" >/dev/null ||
		echo "mailplex: systemctl $mp_action $* failed; see journalctl -u $1" >&2
}

mp_daemon_reload() {
	if mp_systemd_running; then
		systemctl --system daemon-reload >/dev/null || true
	fi
}

# postrm: on remove keep the enablement state (a reinstall restores it); purge forgets it.
mp_units_postrm() {
	mp_what=$1
	shift
	command -v deb-systemd-helper >/dev/null || return 0
	case "$mp_what" in
	remove)
		deb-systemd-helper mask "$@" >/dev/null || true
		;;
	purge)
		deb-systemd-helper purge "$@" >/dev/null || true
		deb-systemd-helper unmask "$@" >/dev/null || true
		;;
	esac
}
