-- Test extension: what prosody-modules' mod_cloud_notify_filters does,
-- written for these tests. Filters chosen in <enable/> are kept on
-- push_info as tables (muted_jids = { [jid] = true }, groupchat_rules =
-- { [room] = { when, nick } }) or booleans (filter_unknown), and read back
-- at every push.
local jid = require "util.jid";
local is_contact_subscribed = require "core.rostermanager".is_contact_subscribed;

local xmlns_push = "urn:xmpp:push:0";
local xmlns_unknown = "tigase:push:filter:ignore-unknown:0";
local xmlns_muted = "tigase:push:filter:muted:0";
local xmlns_groupchat = "tigase:push:filter:groupchat:0";
local xmlns_reference = "urn:xmpp:reference:0";

module:hook("cloud_notify/registration", function(event)
	local enable = event.stanza:get_child("enable", xmlns_push);
	if enable:get_child("ignore-unknown", xmlns_unknown) then
		event.push_info.filter_unknown = true;
	end
	local muted = enable:get_child("muted", xmlns_muted);
	if muted then
		local muted_jids = {};
		for item in muted:childtags("item") do
			local muted_jid = jid.prep(item.attr.jid);
			if muted_jid then muted_jids[muted_jid] = true; end
		end
		event.push_info.muted_jids = muted_jids;
	end
	local groupchat = enable:get_child("groupchat", xmlns_groupchat);
	if groupchat then
		local rules = {};
		for room in groupchat:childtags("room") do
			local room_jid = jid.prep(room.attr.jid);
			if room_jid then rules[room_jid] = { when = room.attr.allow; nick = room.attr.nick }; end
		end
		event.push_info.groupchat_rules = rules;
	end
end);

local function mentions(stanza, rule)
	local ours = "xmpp:"..jid.bare(stanza.attr.to);
	local our_nick = rule.nick and "xmpp:"..jid.bare(stanza.attr.from).."/"..rule.nick;
	for reference in stanza:childtags("reference", xmlns_reference) do
		if reference.attr.type == "mention" and (reference.attr.uri == ours or reference.attr.uri == our_nick) then
			return true;
		end
	end
	return false;
end

module:hook("cloud_notify/push", function(event)
	local push_info, stanza = event.push_info, event.original_stanza;
	if not stanza then return; end
	local sender = jid.bare(stanza.attr.from);
	if push_info.filter_unknown then
		local user, host = jid.split(stanza.attr.to);
		if host == module.host and not is_contact_subscribed(user, host, sender) then
			event.reason = "Filtering: unknown sender";
			return true;
		end
	end
	if push_info.muted_jids and push_info.muted_jids[sender] then
		event.reason = "Filtering: muted";
		return true;
	end
	local rule = stanza.attr.type == "groupchat" and push_info.groupchat_rules and push_info.groupchat_rules[sender];
	if rule then
		if rule.when == "never" then
			event.reason = "Filtering: muted group chat";
			return true;
		elseif rule.when == "mentioned" and not mentions(stanza, rule) then
			event.reason = "Filtering: not mentioned";
			return true;
		end
	end
end);
