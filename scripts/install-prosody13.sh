#!/bin/sh
# Unpacks Prosody 13.0.x from Debian bookworm-backports into a private prefix
# (default .work/prosody13), beside the system's Prosody 0.12.3, without
# installing or replacing any package. The launchers are patched to look for
# their sources and plugins in that prefix. The Lua libraries Debian 12 ships
# for 0.12 (lua-expat, lua-filesystem, lua-sec, lua-socket...) serve 13 too.
set -eu
prefix=$(realpath -m "${1:-.work/prosody13}")
if [ -x "$prefix/usr/bin/prosody" ] && [ -f "$prefix/usr/lib/prosody/prosody.version" ]; then
	exit 0
fi
"$(dirname "$0")/unpack-backport.sh" prosody '13\.' "$prefix" >/dev/null
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
