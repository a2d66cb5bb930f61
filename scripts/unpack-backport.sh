#!/bin/sh
# Unpacks one package from Debian bookworm-backports into a private prefix,
# without installing or replacing any package:
#   scripts/unpack-backport.sh PACKAGE VERSION-REGEX PREFIX
# picks the first version of PACKAGE matching VERSION-REGEX (a sed basic
# regular expression, anchored at the start) and `dpkg -x`es it into PREFIX.
# The backports index is fetched into a private APT state directory, so the
# system's sources and package lists are left as they were.
set -eu
package=$1
wanted=$2
prefix=$(realpath -m "$3")
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
version=$(apt-cache "$@" show "$package" | sed -n "s/^Version: \($wanted.*\)/\1/p" | head -n 1)
[ -n "$version" ] || { echo "no $package matching '$wanted' in bookworm-backports" >&2; exit 1; }
(cd "$apt_dir" && apt-get "$@" -qq download "$package=$version")
rm -rf "$prefix"
mkdir -p "$prefix"
dpkg -x "$apt_dir"/"$package"_*.deb "$prefix"
echo "$version" >"$prefix/.version"
echo "$package $version unpacked in $prefix"
