-- XEP-0357 push notifications for group chats, on the MUC side.
--
-- Enabled on a MUC component. Users enable and disable push against the
-- MUC domain (as Converse does with enable_muc_push); registrations are
-- keyed by their real bare JID. Room messages are pushed to members who
-- are not joined: by default only those a message mentions (XEP-0372
-- references to registered nicknames), with muc_push_policy = "all" every
-- absent member holding a registration. A message an occupant's server
-- bounces (a ghost occupant) is pushed to that occupant, and the room then
-- kicks it as usual. No smacks integration: a MUC can't see a remote
-- user's stream management queue.
--
-- A thin shim over the same Rust core as mod_cloud_notify (cloud_notify.so,
-- next to it); every decision is the core's.

local jid = require "util.jid";
local st = require "util.stanza";
local time_now = require "util.time".now;
local lib = module:require "cloud_notify";

local xmlns_push = "urn:xmpp:push:0";

local options = lib.options();
-- (no defaults here either: the core's apply to what is unset)
options.muc_push_policy = module:get_option_string("muc_push_policy");
-- What users of other servers may register (see the README's Security section).
options.muc_push_local_only = module:get_option_boolean("muc_push_local_only");
options.muc_push_max_users_per_domain = module:get_option_number("muc_push_max_users_per_domain");
options.muc_push_max_remote_users = module:get_option_number("muc_push_max_remote_users");
options.muc_push_enables_per_minute = module:get_option_number("muc_push_enables_per_minute");
options.muc_module = true; -- (unanswered pushes count: see the README's Security section)
local push = lib.new(options);
push.read_counts(); -- (the unread counts, as the last run left them)
local core, load_user, apply = push.core, push.load_user, push.apply;
-- Every handler fails open (see push.fail_open).
local hook = push.hook;

-- What the shared part handles, hooked here: pings (cloud-notify-ping),
-- app servers' answers, gauges, the unread counts' writes (a timer, and
-- at shutdown) and the sweep of pushes nobody answered.
hook("cloud-notify-ping", push.on_ping);
hook("iq/host", push.on_answer, 10);
module:hook_global("stats-update", push.update_gauges);
module:hook_global("server-stopping", push.on_server_stopping);
push.add_timer(push.counts_interval, push.counts_timer);
push.add_timer(push.sweep_interval, push.sweep_timer);

local mod_muc = module:depends("muc");

module:add_feature(xmlns_push);

-- Whether a bare JID is a user of one of this server's hosts (active, or
-- configured as a VirtualHost but not activated yet: at startup, hosts
-- come up one by one).
local configmanager = require "core.configmanager";
local function is_local(user)
	local name = jid.host(user);
	local host = name and prosody.hosts[name];
	if host then return host.type == "local"; end
	local config = name and rawget(configmanager.getconfig(), name);
	return type(config) == "table" and rawget(config, "component_module") == nil;
end

-- Remote users with registrations count against their domain's bound:
-- those already stored, then every change. And the users with
-- registrations, by bare JID (what the core's "known" walk asks the room
-- about: few users, however big the room).
local with_push = {};
function push.on_committed(user, had, has)
	with_push[user] = has or nil;
	if had ~= has and not is_local(user) then core:muc_note(user, had, has); end
end
-- (and which users have registrations at all: the others cost no read)
if push.store.users then
	local n = 0;
	for user in push.store:users() do
		core:note_known(user);
		with_push[user] = true;
		if not is_local(user) then
			core:muc_note(user, false, true);
			n = n + 1;
		end
	end
	core:known_complete();
	module:log("debug", "%d remote user(s) with push registrations", n);
end

-- Enable and disable, addressed to the MUC domain, keyed by the real bare JID.
local function domain_iq(handler, before)
	return function(event)
		local origin, stanza = event.origin, event.stanza;
		local node, host, resource = jid.prepped_split(stanza.attr.from);
		if not node then
			origin.send(st.error_reply(stanza, "cancel", "not-allowed",
				"Push notifications are for user accounts"));
			return true;
		end
		local user = node.."@"..host;
		-- Checked before anything is read: who may enable (a stranger
		-- refused costs no read), and a disable by someone without
		-- registrations (nothing to read, nothing to remove).
		if before and before(origin, stanza, user) then return true; end
		local handled = push.locked(user, function()
			if not load_user(user) then
				origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
				return true;
			end
			local who = { username = node, host = host, full_jid = stanza.attr.from, resource = resource };
			handler(origin, who, stanza, user);
			return true;
		end);
		if handled == nil then
			origin.send(st.error_reply(stanza, "wait", "resource-constraint", "Busy, try again"));
		end
		return true;
	end
end

-- Who may enable: asked before any read when the core knows who has
-- registrations (a stranger refused costs no read), else once the user's
-- registrations are loaded. True when refused (and answered).
local function refused(origin, stanza, user)
	local admitted, error_type, condition, text = core:muc_admit(user, is_local(user), time_now());
	if admitted then return false; end
	module:log("debug", "MUC push enable from %s refused: %s", user, text);
	origin.send(st.error_reply(stanza, error_type, condition, text));
	return true;
end

hook("iq-set/host/"..xmlns_push..":enable", domain_iq(function(origin, who, stanza, user)
	if not stanza._cloud_notify_admitted and refused(origin, stanza, user) then return; end
	local _, identifier = push.enable(origin, who, stanza, user);
	if identifier then
		module:log("info", "MUC push notifications enabled for %s (%s)", user, identifier);
	end
end, function(origin, stanza, user)
	if not core:muc_admit_ready(user) then return false; end -- (asked after the read)
	if refused(origin, stanza, user) then return true; end
	stanza._cloud_notify_admitted = true;
	return false;
end));

-- Looks up exactly what enable stored: the same key (the original looked
-- under another one, so its disable never removed anything).
hook("iq-set/host/"..xmlns_push..":disable", domain_iq(function(origin, _, stanza, user)
	push.disable(origin, stanza, user);
end, function(origin, stanza, user)
	if push.might_push(user) then return false; end
	origin.send(st.reply(stanza)); -- (nothing to disable)
	return true;
end));

-- XEP-0492: local members' chat settings, from their hosts' mod_cloud_notify.
local chat_settings = module:shared("/*/cloud_notify/chat_settings");

-- The real bare JIDs of the room's occupants.
local function joined_jids(room)
	local joined = {};
	for _, occupant in room:each_occupant() do
		joined[occupant.bare_jid] = true;
	end
	return joined;
end

-- A room message: the core says what it needs to know, the room tells it.
-- Who may get a push is gathered at once, without a store read (members
-- known to have no registration are passed over: no read, no cache slot),
-- and without yielding, so the room's tables can't change under the walk;
-- their registrations are read and the pushes sent after the broadcast,
-- which no store read delays.
hook("muc-broadcast-message", function(event)
	local room, stanza = event.room, event.stanza;
	local wants = core:muc_wants(room.jid, stanza);
	if not wants then return; end
	local candidates = {};
	local function add(member_jid, affiliation)
		if member_jid and push.might_push(member_jid) then
			candidates[#candidates+1] = { jid = member_jid, affiliation = affiliation or room:get_affiliation(member_jid) };
		end
	end
	if wants == "members" then
		for member_jid, affiliation in room:each_affiliation() do
			add(member_jid, affiliation);
		end
	elseif wants == "known" then
		for member_jid in pairs(with_push) do
			local affiliation = room:get_affiliation(member_jid);
			if affiliation then add(member_jid, affiliation); end
		end
	else
		for _, nick in ipairs(wants) do
			add(room:get_registered_jid(nick));
		end
	end
	if #candidates == 0 then return; end
	local joined = joined_jids(room);
	local room_jid, message, now = room.jid, st.clone(stanza), time_now();
	local public = not room:get_members_only();
	for _, c in ipairs(candidates) do c.nick = room:get_registered_nick(c.jid); end
	push.later(function()
		local members = {};
		for _, c in ipairs(candidates) do
			if load_user(c.jid) then
				-- XEP-0492: a local member's setting for this room, from
				-- their bookmarks (read by their host's module)
				local node, host = jid.split(c.jid);
				local setting_of = chat_settings[host];
				local setting, nick;
				if node and setting_of then setting, nick = setting_of(node, room_jid); end
				members[#members+1] = { jid = c.jid, joined = joined[c.jid] == true, affiliation = c.affiliation,
					setting = setting, nick = nick or c.nick };
			end
		end
		apply(core:muc_push(room_jid, message, members, now, public));
	end, "pushing a message of "..room_jid);
end, -1);

-- Ghost occupants: an error bounce from an occupant's real JID, to the room
-- or to an occupant JID. Pushed, then left to mod_muc, which kicks them.
local function bounced(event)
	local stanza = event.stanza;
	if stanza.attr.type ~= "error" then return; end
	local room = mod_muc.get_room_from_jid(jid.bare(stanza.attr.to));
	if not room then return; end
	local occupant = room:get_occupant_by_real_jid(stanza.attr.from);
	if not occupant then return; end
	local user = jid.bare(stanza.attr.from);
	if not push.might_push(user) or not load_user(user) then return; end
	local nicks = { select(3, jid.split(occupant.nick)) };
	nicks[#nicks+1] = room:get_registered_nick(user);
	-- (XEP-0492: the ghost's own setting for the room, if a local user's)
	local node, host = jid.split(user);
	local setting_of = chat_settings[host];
	local setting = node and setting_of and setting_of(node, room.jid) or nil;
	apply(core:muc_bounced(room.jid, stanza, user, nicks, time_now(), setting));
end
hook("message/bare", bounced, 10);
hook("message/full", bounced, 10);

module:log("info", "Module loaded (core %s, from %s)", push.version, module:get_directory());

function module.unload()
	local ok, err = pcall(push.write_counts); -- (what the timer has not written yet)
	if not ok then module:log("error", "Writing unread counts failed: %s", err); end
	push.close(); -- let every waiter for a user's lock go
end
