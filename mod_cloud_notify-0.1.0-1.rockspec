-- `luarocks --lua-version=5.4 make` builds the module with the Makefile
-- (Rust core + Lua shim) and installs the folder mod_cloud_notify/ into the
-- tree's Lua directory (e.g. /usr/local/share/lua/5.4), the layout of
-- Prosody's own `prosodyctl install` trees: add that directory to
-- plugin_paths. Needs cargo (Rust 1.88+).
rockspec_format = "3.0"
package = "mod_cloud_notify"
version = "0.1.0-1"
source = {
	url = "git+file://.";
}
description = {
	summary = "XEP-0357 push notifications for Prosody, with a Rust core";
	detailed = [[
A drop-in replacement for prosody-modules' mod_cloud_notify (in Prosody's
core since 13): same module name, options, storage and events.
]];
	license = "MIT";
	labels = { "prosody-module" };
}
dependencies = {
	"lua >= 5.4";
}
build = {
	type = "make";
	build_target = "dist";
	install_target = "install";
	install_variables = {
		MODULEDIR = "$(LUADIR)";
		DESTDIR = "";
	};
	copy_directories = {};
}
