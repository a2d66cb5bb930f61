std = "lua54"
max_line_length = 150
-- Prosody gives each module a `module` API object and the `prosody` global.
globals = { "module" }
read_globals = { "prosody" }

files["spec/"] = {
	std = "+busted",
	globals = { "prosody" },
}
files["spec/stand_in.lua"] = { ignore = { "212/self" } }
