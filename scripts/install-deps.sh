#!/bin/sh
# Installs what the build, the demo and the tests need, if missing:
# Debian 12's Prosody 0.12.3 and prosody-modules (the reference module),
# Lua 5.4, busted and luacheck; luaossl (prosody-modules' mod_cloud_notify_encrypted
# needs it on 0.12, which has no util.crypto); the SQL drivers and a PostgreSQL server for the
# storage tests (started privately by the tests, on loopback); luarocks; and
# what is named on the command line (make bench: valgrind; make browser-deps:
# chromium, and nodejs npm where npm is missing). Needs root (or sudo) only
# when something is missing.
set -eu
packages="prosody prosody-modules lua5.4 lua-busted lua-check python3-venv lua-dbi-sqlite3 lua-dbi-postgresql postgresql luarocks liblua5.4-dev lua-luaossl"
# Extra packages for one target.
packages="$packages $*"
missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "Installing:$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The packaged Prosody starts a system instance; the demo and tests run their own.
if [ -x /etc/init.d/prosody ] && pgrep -x -f "lua5.4 /usr/bin/prosody.*" >/dev/null 2>&1; then
	/etc/init.d/prosody stop >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
