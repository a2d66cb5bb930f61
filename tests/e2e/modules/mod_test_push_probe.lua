-- Test extension: a module that builds on mod_cloud_notify's events the way
-- the prosody-modules extensions do, to show what each event carries.
-- In <enable/>, children in urn:example:ext:
--   <tag value='V'/>   push_info.ext = { tag = { value = V, list = { 1, 2, 3 } }, on = true, ratio = 0.5 }
--   <refuse/>          the registration is refused with this module's own error
--   <grow n='N'/>      push_info.blob = N strings of 20 bytes (past the bounds)
-- cloud_notify/push handlers, in this order:
--   priority 10:  <urgent xmlns='urn:example:ext'/> in the original stanza makes the push important
--   priority 5:   the node "raise" makes the handler raise an error
--   priority -10: with push_info.ext, adds <seen xmlns='urn:example:ext' …/> to the payload,
--                 describing push_info, the original stanza, importance and the payload as the
--                 earlier handlers left them
local st = require "util.stanza";

local xmlns_push = "urn:xmpp:push:0";
local xmlns_ext = "urn:example:ext";

module:hook("cloud_notify/registration", function(event)
	local enable = event.stanza:get_child("enable", xmlns_push);
	if enable:get_child("refuse", xmlns_ext) then
		event.origin.send(st.error_reply(event.stanza, "cancel", "not-allowed", "Refused by extension"));
		return false;
	end
	local tag = enable:get_child("tag", xmlns_ext);
	if tag then
		event.push_info.ext = { tag = { value = tag.attr.value, list = { 1, 2, 3 } }, on = true, ratio = 0.5 };
	end
	local grow = enable:get_child("grow", xmlns_ext);
	if grow then
		local blob = {};
		for i = 1, tonumber(grow.attr.n) or 0 do blob[i] = ("%020d"):format(i); end
		event.push_info.blob = blob;
	end
end);

module:hook("cloud_notify/push", function(event)
	local original = event.original_stanza;
	if original and original:get_child("urgent", xmlns_ext) then
		event.important = true;
	end
end, 10);

module:hook("cloud_notify/push", function(event)
	if event.push_info.node == "raise" then
		error("extension failure on purpose");
	end
end, 5);

module:hook("cloud_notify/push", function(event)
	local ext = event.push_info.ext;
	if type(ext) ~= "table" then return; end
	local original = event.original_stanza;
	local payload = event.notification_payload;
	event.notification_payload:tag("seen", {
		xmlns = xmlns_ext;
		value = type(ext.tag) == "table" and tostring(ext.tag.value) or "missing";
		list = type(ext.tag) == "table" and type(ext.tag.list) == "table" and table.concat(ext.tag.list, ",") or "missing";
		on = tostring(ext.on);
		ratio = tostring(ext.ratio);
		original = original and original.name or "none";
		["original-type"] = original and original.attr.type or nil;
		["original-from"] = original and original.attr.from or nil;
		["original-id"] = original and original.attr.id or nil;
		important = tostring(event.important);
		form = payload:get_child("x", "jabber:x:data") and "yes" or "no";
		count = tostring(event.push_summary["message-count"]);
		username = tostring(event.username);
		stanza = event.notification_stanza.name;
	}):up();
end, -10);
