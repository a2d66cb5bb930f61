#!/bin/sh
# Unpacks Prosody 13.0.x from Debian bookworm-backports into a private prefix
# (default .work/prosody13), beside the system's Prosody 0.12.3, without
# installing or replacing any package. The launchers are patched to look for
# their sources and plugins in that prefix. The Lua libraries Debian 12 ships
# for 0.12 (lua-expat, lua-filesystem, lua-sec, lua-socket...) serve 13 too.
#
# The backports index is fetched into a private APT state directory, so the
# system's sources and package lists are left as they were.
set -eu
prefix=$(realpath -m "${1:-.work/prosody13}")
if [ -x "$prefix/usr/bin/prosody" ] && [ -f "$prefix/usr/lib/prosody/prosody.version" ]; then
	exit 0
fi
apt_dir=$(mktemp -d)
trap 'rm -rf "$apt_dir"' EXIT
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
cat >"$apt_dir/backports.sources" <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
set -- -o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$apt_dir" \
	-o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$apt_dir/archives" \
	-o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache="" -o APT::Sandbox::User=root
apt-get "$@" -qq update
version=$(apt-cache "$@" show prosody | sed -n 's/^Version: \(13\..*\)/\1/p' | head -n 1)
[ -n "$version" ] || { echo "no Prosody 13 in bookworm-backports" >&2; exit 1; }
(cd "$apt_dir" && apt-get "$@" -qq download "prosody=$version")
rm -rf "$prefix"
mkdir -p "$prefix"
dpkg -x "$apt_dir"/prosody_*.deb "$prefix"
for f in prosody prosodyctl; do
	sed -i \
		-e "s|^CFG_SOURCEDIR=.*|CFG_SOURCEDIR='$prefix/usr/lib/prosody';|" \
		-e "s|^CFG_CONFIGDIR=.*|CFG_CONFIGDIR='$prefix/etc/prosody';|" \
		-e "s|^CFG_PLUGINDIR=.*|CFG_PLUGINDIR='$prefix/usr/lib/prosody/modules/';|" \
		-e "s|^CFG_DATADIR=.*|CFG_DATADIR='$prefix/var/lib/prosody';|" \
		"$prefix/usr/bin/$f"
done
mkdir -p "$prefix/var/lib/prosody"
echo "Prosody $(cat "$prefix/usr/lib/prosody/prosody.version") unpacked in $prefix"
