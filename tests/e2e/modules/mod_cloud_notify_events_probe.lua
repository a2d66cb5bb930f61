-- Test helper: another module using mod_cloud_notify's events, as a real
-- one (e.g. a push filter or an admin tool) would.
--   cloud_notify/registration: vetoes the node "veto" with an error.
--   cloud_notify/push: blocks the node "blocked"; on the node "rewrite"
--     adds <probe xmlns='urn:example:probe'/> to the notification payload
--     and records the original stanza's body in the summary.
--   <iq type='set'><ping xmlns='urn:example:probe' node='…'/></iq> to the
--     account fires cloud-notify-ping for the sender, for all registrations or
--     only those with that node (push_services as read from the store).
local st = require "util.stanza";

module:hook("cloud_notify/registration", function(event)
	if event.push_info.node == "veto" then
		event.origin.send(st.error_reply(event.stanza, "cancel", "not-allowed", "Vetoed by probe"));
		return false;
	end
end);

module:hook("cloud_notify/push", function(event)
	local node = event.push_info.node;
	if node == "blocked" then
		event.reason = "blocked by probe";
		return true;
	elseif node == "rewrite" then
		event.notification_payload:tag("probe", { xmlns = "urn:example:probe";
			kind = event.original_stanza and event.original_stanza.name or "none" }):up();
	end
end);

local push_store = module:open_store("cloud_notify");

module:hook("iq-set/self/urn:example:probe:ping", function(event)
	local origin, stanza = event.origin, event.stanza;
	local node = stanza.tags[1].attr.node;
	local services;
	if node then
		services = {};
		for identifier, push_info in pairs(push_store:get(origin.username) or {}) do
			if push_info.node == node then
				services[identifier] = push_info;
			end
		end
	end
	module:fire_event("cloud-notify-ping", { user = origin.username, push_services = services });
	origin.send(st.reply(stanza));
	return true;
end);
