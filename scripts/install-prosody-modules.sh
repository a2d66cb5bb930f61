#!/bin/sh
# Unpacks Debian's prosody-modules 0.0~hg20250402 (bookworm-backports; the
# same snapshot trixie ships) into a private prefix (default
# .work/prosody-modules): the real mod_cloud_notify_extensions, _encrypted,
# _filters and _priority_tag the e2e tests load beside our module, unchanged
# (tests/e2e/harness.py: EXTENSIONS_DIR). Nothing is installed system-wide.
set -eu
prefix=$(realpath -m "${1:-.work/prosody-modules}")
modules="$prefix/usr/lib/prosody/modules"
if [ -f "$modules/mod_cloud_notify_extensions/mod_cloud_notify_extensions.lua" ]; then
	exit 0
fi
"$(dirname "$0")/unpack-backport.sh" prosody-modules '0\.0~hg20250402\.' "$prefix"
