#!/bin/sh
# Builds the Debian packages mailplex-common, mailplex-director and mailplex-relay into
# O/deb/ from a staged `make install` with Debian's paths: hand-written control files and
# maintainer scripts (packaging/PKG/), dependencies from dpkg-shlibdeps, stripped
# binaries, gzipped man pages and changelog, md5sums; then lintian when it is installed.
# Usage: build-deb.sh O MAKE   (run by `make deb` from the top of the tree)
set -eu

O=${1:?usage: build-deb.sh O MAKE}
MAKE=${2:-make}
TOP=$(pwd)
PKGDIR=$TOP/packaging
OUT=$TOP/$O/deb
case "$O" in /*) OUT=$O/deb ;; esac
STAGE=$OUT/stage
MAINTAINER=${DEB_MAINTAINER:-mailplex maintainers <maintainers@mailplex.example.org>}

# Version: VERSION, plus the commit count and id when built from git (each commit sorts
# after the one before it, so installing a newer build upgrades).
VERSION=$(cat "$TOP/VERSION")
if git -C "$TOP" rev-parse --git-dir >/dev/null 2>&1; then
	VERSION="$VERSION+git$(git -C "$TOP" rev-list --count HEAD).$(git -C "$TOP" rev-parse --short=7 HEAD)"
	: "${SOURCE_DATE_EPOCH:=$(git -C "$TOP" log -1 --format=%ct)}"
fi
: "${SOURCE_DATE_EPOCH:=$(date +%s)}"
export SOURCE_DATE_EPOCH
ARCH=$(dpkg --print-architecture)

rm -rf "$OUT"
mkdir -p "$STAGE"
$MAKE -s O="$O" install DESTDIR="$STAGE" PREFIX=/usr SBINDIR=/usr/sbin SYSCONFDIR=/etc \
	LOCALSTATEDIR=/var SYSTEMDUNITDIR=/lib/systemd/system \
	MODULESLOADDIR=/usr/lib/modules-load.d DOCDIR=/usr/share/doc/mailplex >/dev/null

# pkg_add PKG PATH...: move staged paths into the package's tree.
pkg_add() {
	p=$1
	shift
	for f in "$@"; do
		mkdir -p "$OUT/$p/$(dirname "$f")"
		mv "$STAGE/$f" "$OUT/$p/$f"
	done
}
man_add() {
	p=$1
	shift
	for m in "$@"; do
		pkg_add "$p" "usr/share/man/man${m##*.}/$m"
	done
}

pkg_add mailplex-common etc/mailplex/mailplex.conf etc/mailplex/mailplex.map \
	usr/sbin/mailplexctl usr/sbin/mailplex-map
man_add mailplex-common mailplexctl.8 mailplex-map.8 mailplex.conf.5 mailplex.map.5

pkg_add mailplex-director usr/sbin/mailplex-director usr/sbin/mailplex-check \
	lib/systemd/system/mailplex-director.service \
	usr/lib/modules-load.d/mailplex-director.conf
man_add mailplex-director mailplex-director.8 mailplex-check.8
mkdir -p "$OUT/mailplex-director/usr/share/doc/mailplex-director/examples"
mv "$STAGE/usr/share/doc/mailplex/examples/sysctl-director.conf" \
	"$STAGE/usr/share/doc/mailplex/examples/keepalived.conf.example" \
	"$OUT/mailplex-director/usr/share/doc/mailplex-director/examples/"

pkg_add mailplex-relay usr/sbin/mailplex-proxy usr/sbin/mailplex-smtpd usr/sbin/mailplex-relay \
	lib/systemd/system/mailplex-proxy.service lib/systemd/system/mailplex-smtpd.service \
	lib/systemd/system/mailplex-relay.service
man_add mailplex-relay mailplex-proxy.8 mailplex-smtpd.8 mailplex-relay.8
mkdir -p "$OUT/mailplex-relay/usr/share/doc/mailplex-relay/examples"
mv "$STAGE/usr/share/doc/mailplex/examples/sysctl-relay-dr.conf" \
	"$OUT/mailplex-relay/usr/share/doc/mailplex-relay/examples/"

# Everything staged must have found a package (the spool and state directories are made
# by the maintainer scripts, owned by the mailplex user).
rmdir "$STAGE/var/spool/mailplex" "$STAGE/var/spool" "$STAGE/var/lib/mailplex" "$STAGE/var/lib" \
	"$STAGE/var"
left=$(find "$STAGE" -type f)
if [ -n "$left" ]; then
	echo "build-deb.sh: staged files in no package:" >&2
	echo "$left" >&2
	exit 1
fi
rm -rf "$STAGE"

# One changelog entry for this build (a native package: changelog.gz).
CHANGELOG=$OUT/changelog
{
	echo "mailplex ($VERSION) unstable; urgency=medium"
	echo
	echo "  * Built by make deb from the mailplex source tree."
	echo
	echo " -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$CHANGELOG"

# dpkg-shlibdeps wants a debian/control to read; a minimal one in a scratch directory.
SHL=$OUT/shlibdeps
mkdir -p "$SHL/debian"
printf 'Source: mailplex\n\nPackage: mailplex-common\nArchitecture: any\n' >"$SHL/debian/control"

for p in mailplex-common mailplex-director mailplex-relay; do
	root=$OUT/$p
	doc=$root/usr/share/doc/$p
	mkdir -p "$doc" "$root/DEBIAN"
	install -m 0644 "$PKGDIR/copyright" "$doc/copyright"
	gzip -9n <"$CHANGELOG" >"$doc/changelog.gz"
	find "$root/usr/share/man" -type f -exec gzip -9n {} +
	for b in "$root"/usr/sbin/*; do
		strip --strip-unneeded --remove-section=.comment --remove-section=.note "$b"
	done
	if [ -e "$PKGDIR/$p/lintian-overrides" ]; then
		install -d "$root/usr/share/lintian/overrides"
		install -m 0644 "$PKGDIR/$p/lintian-overrides" "$root/usr/share/lintian/overrides/$p"
	fi
	shlibs=$(cd "$SHL" && dpkg-shlibdeps -O "$root"/usr/sbin/* 2>/dev/null |
		sed -n 's/^shlibs:Depends=//p')
	[ -n "$shlibs" ] || { echo "build-deb.sh: dpkg-shlibdeps found nothing for $p" >&2; exit 1; }

	{
		sed -e "s|@VERSION@|$VERSION|g" -e "s|@SHLIBS@|$shlibs|g" "$PKGDIR/$p/control.in" |
			sed -n '1p'
		echo "Version: $VERSION"
		echo "Architecture: $ARCH"
		echo "Maintainer: $MAINTAINER"
		echo "Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f 1)"
		sed -e "s|@VERSION@|$VERSION|g" -e "s|@SHLIBS@|$shlibs|g" "$PKGDIR/$p/control.in" |
			sed '1d'
	} >"$root/DEBIAN/control"
	[ -e "$PKGDIR/$p/conffiles" ] && install -m 0644 "$PKGDIR/$p/conffiles" "$root/DEBIAN/"
	for s in postinst prerm postrm; do
		[ -e "$PKGDIR/$p/$s" ] || continue
		awk -v helpers="$PKGDIR/units.sh" '
			$0 == "#MAILPLEX_UNIT_HELPERS#" { while ((getline l < helpers) > 0) print l; next }
			{ print }' "$PKGDIR/$p/$s" >"$root/DEBIAN/$s"
		chmod 0755 "$root/DEBIAN/$s"
	done
	(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
		sed 's|^\./||' | LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
	chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"
	find "$root" -type d -exec chmod 0755 {} +
	find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	dpkg-deb --root-owner-group -Zxz --build "$root" "$OUT/${p}_${VERSION}_$ARCH.deb" >/dev/null
	echo "  DEB     $O/deb/${p}_${VERSION}_$ARCH.deb"
	rm -rf "$root"
done
rm -rf "$SHL" "$CHANGELOG"

if command -v lintian >/dev/null; then
	lintian --fail-on error,warning,info --info \
		"$OUT"/*.deb || { echo "build-deb.sh: lintian complains (see above)" >&2; exit 1; }
else
	echo "build-deb.sh: lintian is not installed (make deps installs it); packages not checked" >&2
fi
