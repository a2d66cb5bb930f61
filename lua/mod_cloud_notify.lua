-- XEP-0357: Push Notifications, for Prosody.
--
-- This file is the thin shim around the Rust core (cloud_notify.so, next to
-- it): it reads options, hooks events, reads and writes the store, sends
-- stanzas and fires the events other modules use. Every decision (what is
-- important, who gets a push, error counting, the device cap) is taken by
-- the core. What mod_muc_cloud_notify shares with it is in
-- cloud_notify.lib.lua.
--
-- Drop-in for the prosody-modules mod_cloud_notify: same module name,
-- options, store layout and events.

local st = require "util.stanza";
local time_now = require "util.time".now;
local watchdog = require "util.watchdog";
local lib = module:require "cloud_notify";

local xmlns_push = "urn:xmpp:push:0";
local xmlns_push2 = "urn:xmpp:push2:0";

local options = lib.options();
local push = lib.new(options);
push.scan_known(); -- (which users have registrations: the others cost no read)
push.read_counts(); -- (the unread counts, as the last run left them)
local core, load_user, write_plan, apply, ask = push.core, push.load_user, push.write_plan, push.apply, push.ask;
-- (the question every message asks, looked up once; the quick one, which
-- never raises, is asked before a handler's protected call: most messages
-- cost only that)
local might_push, quick_might_push = push.might_push, push.quick_might_push;
local fail_open = push.fail_open;
local push_store = push.store;
-- Every handler fails open (see push.fail_open).
local hook = push.hook;
-- (none on a component: mod_cloud_notify_encrypted depends on this module,
-- so loading it on a MUC component loads this one there too)
local host_sessions = prosody.hosts[module.host].sessions or {};
local jid_node = require "util.jid".node;

-- What the shared part handles, hooked here: pings (cloud-notify-ping),
-- app servers' answers, gauges, the unread counts' writes (a timer, and
-- at shutdown) and the sweep of pushes nobody answered.
hook("cloud-notify-ping", push.on_ping);
hook("iq/host", push.on_answer, 10);
-- (Push 2.0 notifications are messages: only errors answer them)
hook("message/host", function(event)
	if event.stanza.attr.type ~= "error" then return; end
	return push.on_answer(event);
end, 10);
module:hook_global("stats-update", push.update_gauges);
module:hook_global("server-stopping", push.on_server_stopping);
push.add_timer(push.counts_interval, push.counts_timer);
push.add_timer(push.sweep_interval, push.sweep_timer);

-- The extended hibernation and the last wake-up: at each moment of a
-- push session's hibernation, the core says what to do to its watchdog
-- and wake-up timer (src/hibernation.rs). The fields are those of the
-- reference module, so either can take over a session.
local function stop_wake(session)
	if session.cloud_notify_wake_timer then
		session.cloud_notify_wake_timer:stop();
		session.cloud_notify_wake_timer = nil;
	end
end

-- The last wake-up, in `delay` seconds (`left` before the hibernation
-- ends): one unimportant push, so the app can reconnect and resume before
-- its queue is dropped.
local function start_wake(session, delay, left)
	stop_wake(session);
	session.cloud_notify_wake_timer = module:add_timer(delay, function()
		session.cloud_notify_wake_timer = nil;
		local user, identifier = session.username, session.push_identifier;
		local function gone()
			return session.destroyed or not session.hibernating or session.cloud_notify_woken
				or not identifier or session.push_identifier ~= identifier;
		end
		if gone() then return; end
		-- (the store may yield: the session may have resumed, or lost its
		-- registration, meanwhile)
		if not load_user(user) or gone() then return; end
		session.cloud_notify_woken = true;
		session.log("debug", "Hibernation ends in %gs: waking the device", left);
		apply(core:wake(user, identifier, time_now()));
	end);
end

-- Keeps smacks' own watchdog aside and hibernates `timeout` seconds.
local function extend(session, timeout)
	local dog = session.hibernating_watchdog;
	local original_callback, original_timeout = dog.callback, dog.timeout;
	session.original_smacks_callback, session.original_smacks_timeout = original_callback, original_timeout;
	dog:cancel();
	session.hibernating_watchdog = watchdog.new(timeout, function(this_dog)
		session.log("debug", "Push-extended smacks watchdog triggered");
		-- mod_smacks (0.12.4+, 13) ignores a call for any watchdog but the
		-- session's current one: hand it this one, or the session leaks.
		return original_callback(this_dog);
	end);
	session.log("debug", "Hibernation extended to %gs until the first push", timeout);
end

-- Back to smacks' own watchdog, counting from now.
local function restore(session)
	session.hibernating_watchdog:cancel();
	local timeout = session.original_smacks_timeout;
	session.hibernating_watchdog = watchdog.new(timeout, session.original_smacks_callback);
	session.log("debug", "Hibernation timeout back to %gs", timeout);
end

-- Carries out what the core says to do to a session at `moment`
-- ("start", "pushed", "resumed", "released").
local function hibernation(session, moment)
	local dog = session.hibernating_watchdog;
	-- (session.hibernating: when it began, in mod_smacks)
	local step = core:hibernation(moment, session.push_identifier ~= nil, not not session.hibernating,
		session.original_smacks_callback ~= nil, not not session.cloud_notify_woken,
		session.first_hibernated_push ~= nil, dog and (dog.timeout or 0), session.original_smacks_timeout);
	if not step then return; end
	if step.reset then session.first_hibernated_push, session.cloud_notify_woken = nil, nil; end
	if step.stop_wake then stop_wake(session); end
	if step.extend then extend(session, step.extend); end
	if step.restore then restore(session); end
	if step.forget_original then session.original_smacks_callback, session.original_smacks_timeout = nil, nil; end
	if step.first_push then session.first_hibernated_push = os.time(); end
	if step.wake_in then start_wake(session, step.wake_in, step.wake_left); end
end

-- Drops a session's coalescing timer and its waiting batch.
local function stop_batch(session)
	if session.cloud_notify_timer then
		session.cloud_notify_timer:stop();
		session.cloud_notify_timer = nil;
	end
	if session.full_jid then
		core:smacks_cancel(session.full_jid);
	end
end

-- A session no longer pushes (its registration is gone, or we unload).
local function release_session(session)
	stop_batch(session);
	hibernation(session, "released");
end

-- Sessions of removed registrations stop pushing, from every path.
function push.on_removed(user, removed)
	local user_sessions = host_sessions[user];
	if not user_sessions then return; end
	for _, session in pairs(user_sessions.sessions) do
		if session.push2_identifier and removed[session.push2_identifier] then
			session.push2_identifier = nil;
		end
		if session.push_identifier and removed[session.push_identifier] then
			session.log("debug", "Push registration %s removed", session.push_identifier);
			session.push_identifier = nil;
			session.push_settings = nil;
			session.first_hibernated_push = nil;
			release_session(session);
		end
	end
end

-- https://xmpp.org/extensions/xep-0357.html#disco
hook("account-disco-info", function(event)
	local reply = event.reply or event.stanza;
	reply:tag("feature", { var = xmlns_push }):up();
	if core:push2() then
		reply:tag("feature", { var = xmlns_push2 }):up();
		reply:tag("feature", { var = "urn:xmpp:push2:send:notify-only:0" }):up();
		reply:tag("feature", { var = "urn:xmpp:push2:send:sce+rfc8291+rfc8292:0" }):up();
	end
end);

-- Runs an IQ handler once the user's registrations are loaded (under
-- the user's lock: user_iq).
local function run_user_iq(handler, origin, stanza, user)
	if not load_user(user) then
		origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
		return true;
	end
	handler(origin, stanza, user);
	return true;
end

-- An IQ handler that runs holding the user's lock, once the user's
-- registrations are loaded (no closure per IQ: Conversations and Monal
-- enable on every connection).
local function user_iq(handler)
	return function(event)
		local origin, stanza = event.origin, event.stanza;
		local user = origin.username;
		local handled = push.locked(user, run_user_iq, handler, origin, stanza, user);
		if handled == nil then
			origin.send(st.error_reply(stanza, "wait", "resource-constraint", "Busy, try again"));
		end
		return true;
	end
end

local function push_enable(origin, stanza, user)
	local push_info, identifier = push.enable(origin, origin, stanza, user);
	if push_info then
		core:device_here(user, identifier); -- (no retry, nothing unread or held)
		origin.push_identifier = identifier;
		origin.push_settings = push_info;
		origin.first_hibernated_push = nil;
		origin.log("info", "Push notifications enabled for %s (%s)", origin.full_jid, identifier);
	end
	return true;
end
hook("iq-set/self/"..xmlns_push..":enable", user_iq(push_enable));

hook("iq-set/self/"..xmlns_push..":disable", user_iq(function(origin, stanza, user)
	push.disable(origin, stanza, user);
	return true;
end));

-- Push 2.0 (urn:xmpp:push2:0): one registration per device (SASL2
-- client_id, else resource), in mod_push2's store. The session pushes
-- through it unless it enabled XEP-0357 too (one push per device).
if core:push2() then
	hook("iq-set/self/"..xmlns_push2..":enable", user_iq(function(origin, stanza, user)
		local identifier = push.enable2(origin, stanza, user);
		if identifier then
			core:device_here(user, identifier);
			origin.push2_identifier = identifier;
			if core:push2_session(origin.push_identifier) then
				origin.push_identifier, origin.push_settings = identifier, nil;
				origin.first_hibernated_push = nil;
			end
			origin.log("info", "Push 2.0 notifications enabled for %s (%s)", origin.full_jid, identifier);
		end
		return true;
	end));
	hook("iq-set/self/"..xmlns_push2..":disable", user_iq(function(origin, stanza, user)
		if push.disable2(origin, stanza, user) then
			if origin.push_identifier == origin.push2_identifier then
				origin.push_identifier, origin.push_settings = nil, nil;
				release_session(origin);
			end
			origin.push2_identifier = nil;
		end
		return true;
	end));
end

-- XEP-0357 §7: an app server ends a registration by setting the user's
-- affiliation with its node to none. The core checks that it comes from
-- that registration's own app server.
local xmlns_pubsub_event = "http://jabber.org/protocol/pubsub#event";
local remote_ends = fail_open("message/bare", function(event)
	local stanza = event.stanza;
	local user = jid_node(stanza.attr.to);
	-- (a stranger's events for users without registrations read nothing)
	if not user or not might_push(user) or not core:remote_ends(user, stanza) then return; end
	-- Handled (and not delivered) when it ends a registration.
	local function disable()
		if not load_user(user) then return nil; end
		local plan = core:remote_disable(user, stanza);
		if not plan then
			module:log("debug", "Ignoring pubsub affiliations from %s for '%s'", stanza.attr.from, user);
			return nil;
		end
		if not write_plan(user, plan) then return nil; end
		for identifier in pairs(plan.removed) do
			module:log("info", "Push notifications disabled by the app server for %s (%s)", user, identifier);
		end
		push.count_remote_disable(plan.removed);
		return true;
	end
	local handled, busy = push.locked(user, disable);
	if handled == nil and busy and core:loaded(user) then
		-- (no async runner here: done once the lock is free; queued only
		-- when it names real registrations, once per registration set)
		local plan = core:remote_disable(user, stanza);
		if plan then
			local ids = {};
			for identifier in pairs(plan.removed) do ids[#ids+1] = identifier; end
			table.sort(ids);
			push.soon(user, disable, "remote disable "..table.concat(ids, " "));
		end
	end
	return handled or nil;
end);
module:hook("message/bare", function(event)
	if not event.stanza:get_child("event", xmlns_pubsub_event) then return; end
	return remote_ends(event);
end, 10);

-- A device that reconnects without enabling again gets its stored
-- registration back (same SASL2 client_id, else same resource), so the
-- smacks paths and the extended hibernation work for it as if it had.
hook("resource-bind", function(event)
	local session = event.session;
	local user = session.username;
	if not user or session.push_identifier or not might_push(user) then return; end
	if not load_user(user) then return; end
	-- (the store may yield: the session may have enabled, or closed, meanwhile)
	if session.destroyed or session.push_identifier then return; end
	-- (the identifier only: `push_settings` is an enable's, rule 118)
	local identifier = core:reattach(user, session.client_id, session.resource);
	-- (Push 2.0: the device's registration, also when it pushes by XEP-0357)
	session.push2_identifier = core:reattach2(user, session.client_id, session.resource);
	if identifier then
		-- The device's older session (still hibernating, say) no longer pushes.
		for _, other in pairs(host_sessions[user] and host_sessions[user].sessions or {}) do
			if other ~= session and other.push_identifier == identifier then
				other.push_identifier, other.push_settings = nil, nil;
				release_session(other);
			end
		end
		session.push_identifier = identifier;
		session.first_hibernated_push = nil;
		core:device_here(user, identifier);
		session.log("debug", "Push registration %s re-attached to this session", identifier);
	end
end);

-- Offline messages: one push per registration of the recipient.
hook("message/offline/handle", function(event)
	local stanza = event.stanza;
	local user = jid_node(stanza.attr.to);
	if not user then return; end
	ask(core.offline, user, stanza, time_now());
end, 1);

-- Bare groupchat messages to the user (a MUC with no joined device of
-- theirs): pushed like offline messages. Not handled here: the sender still
-- gets mod_message's error.
hook("message/bare/groupchat", function(event)
	local stanza = event.stanza;
	local user = jid_node(stanza.attr.to);
	if not user then return; end
	-- (XEP-0492: the user's setting for the room, from their bookmarks)
	if might_push(user) and load_user(user) then push.read_bookmarks(user); end
	ask(core.offline, user, stanza, time_now(), true);
end, 1);

-- A waking push (important, or any where importance is not told apart)
-- went to a registration, by whatever path (a smacks batch, a grace
-- period's release, a retry): the first one ends its hibernated session's
-- extended timeout.
function push.on_woken(user, identifier)
	local user_sessions = host_sessions[user];
	for _, session in pairs(user_sessions and user_sessions.sessions or {}) do
		if session.push_identifier == identifier then hibernation(session, "pushed"); end
	end
end

-- Sends a session's coalesced batch.
local function send_batch(session)
	session.cloud_notify_timer = nil;
	apply(core:smacks_flush(session.full_jid, time_now()));
end

-- Stanzas in a session's smacks queue: pushed to that session's
-- registration, coalesced (or at once, at the start of hibernation).
local function smacks_stanzas(session, stanzas, at_once)
	local identifier, user = session.push_identifier, session.username;
	if not identifier or not user or not session.full_jid then return; end
	if not load_user(user) then return; end
	-- (the store may yield: the registration may have gone meanwhile)
	local function gone()
		return session.destroyed or session.push_identifier ~= identifier or not session.full_jid;
	end
	if gone() then return; end
	local outcome = core:smacks_add(session.full_jid, user, identifier, stanzas, false, at_once);
	if outcome and outcome.bookmarks then -- (XEP-0492: rooms' messages follow the user's settings)
		push.read_bookmarks(user);
		if gone() then return; end
		outcome = core:smacks_add(session.full_jid, user, identifier, stanzas, true, at_once);
	end
	local delay = outcome and outcome.batch_in;
	if not delay then return; end
	if delay == 0 then
		if session.cloud_notify_timer then session.cloud_notify_timer:stop(); end
		send_batch(session);
	elseif not session.cloud_notify_timer then
		session.cloud_notify_timer = module:add_timer(delay, function() send_batch(session); end);
	end
end

hook("smacks-hibernation-start", function(event)
	local session = event.origin;
	hibernation(session, "start");
	smacks_stanzas(session, event.queue, true);
end);

hook("smacks-hibernation-stanza-queued", function(event)
	smacks_stanzas(event.origin, { event.stanza });
end);

hook("smacks-ack-delayed", function(event)
	smacks_stanzas(event.origin, event.stanza and { event.stanza } or event.queue);
end);

-- A session that is gone (closed, replaced, timed out) keeps no timer
-- (its watchdog is smacks' business now: nothing is restored).
hook("resource-unbind", function(event)
	local session = event.session;
	if not session then return; end
	stop_batch(session);
	stop_wake(session);
end);

hook("smacks-hibernation-end", function(event)
	local session = event.resumed;
	if not session then return; end
	stop_batch(session);
	hibernation(session, "resumed"); -- (mod_smacks has let our watchdog go)
	local user, identifier = session.username, session.push_identifier;
	if identifier and user then
		core:retry_cancel(user, identifier); -- the device is back
		-- (its user may have left the cache during a long hibernation; the
		-- store may yield, and the registration go, meanwhile)
		if load_user(user) and session.push_identifier == identifier then
			core:connected(user, identifier);
		end
	end
end);

-- What the user does on one device changes the pushes to the others: a
-- message sent (the grace period), a chat read (displayed marker: the
-- unread count drops), a call answered or declined (the others stop
-- ringing). The core decides; this hands it each message once.
local function outgoing(event)
	local session = event.origin;
	local user = session.username;
	if not might_push(user) then return; end
	ask(core.outgoing, user, session.push_identifier, event.stanza, time_now(), session.push2_identifier);
end
for _, name in ipairs({ "pre-message/full", "pre-message/bare", "pre-message/host" }) do
	local guarded = fail_open(name, outgoing);
	module:hook(name, function(event)
		local session = event.origin;
		local user = session and session.type == "c2s" and session.username;
		-- (a user known to have no registration has no other device to
		-- hold, stop ringing or clear: most senders cost this question)
		if not user or quick_might_push(user) == false then return; end
		return guarded(event);
	end, 1);
end

-- XEP-0490 (Message Displayed Synchronization): a chat read, published to
-- the user's own PEP service.
local xmlns_pubsub = "http://jabber.org/protocol/pubsub";
hook("pre-iq/bare", function(event)
	local session, stanza = event.origin, event.stanza;
	local user = session.username;
	if not user or not event.to_self or stanza.attr.type ~= "set" then return; end
	local publish = stanza:get_child("pubsub", xmlns_pubsub);
	publish = publish and publish:get_child("publish");
	local item = publish and publish:get_child("item");
	local node, item_id = publish and publish.attr.node, item and item.attr.id;
	if not node or not item_id then return; end
	ask(core.published, user, session.push_identifier, node, item_id, time_now(), session.push2_identifier);
end, 1);

-- XEP-0492: each user's PEP service (mod_pep) tells when a bookmark is
-- published or retracted, or the node purged or deleted, whoever did it (a
-- client, mod_bookmarks' XEP-0048 sync), once it was accepted; the user's
-- settings follow (once they were read).
local followed = {};
local function follow_bookmarks(service)
	local user = service.config and service.config.pep_username;
	if not user or followed[service] then return; end
	local xmlns = push.xmlns_bookmarks;
	local handlers = {
		["item-published/"..xmlns] = function(event)
			core:bookmark(user, event.id, event.item and event.item:get_child("conference", xmlns) or false);
		end;
		["item-retracted"] = function(event)
			if event.node == xmlns then core:bookmark(user, event.id, nil); end
		end;
		["node-purged"] = function(event)
			if event.node == xmlns then core:bookmarks(user, {}); end
		end;
		["node-deleted"] = function(event)
			if event.node == xmlns then core:bookmarks(user, {}); end
		end;
	};
	for name, handler in pairs(handlers) do
		handlers[name] = push.fail_open("pep "..name, handler);
		service.events.add_handler(name, handlers[name]);
	end
	followed[service] = handlers;
end
module:handle_items("pep-service", function(event)
	follow_bookmarks(event.item.service);
end, function(event)
	local service = event.item.service;
	local handlers = followed[service];
	if not handlers then return; end
	for name, handler in pairs(handlers) do service.events.remove_handler(name, handler); end
	followed[service] = nil;
end, true);

-- XEP-0492 for mod_muc_cloud_notify: a local member's setting for a room
-- (their bookmarks read once, if they were not).
local chat_settings = module:shared("/*/cloud_notify/chat_settings");
chat_settings[module.host] = function(user, room)
	push.read_bookmarks(user, true);
	return core:chat_setting(user, room);
end

-- A presence subscription request: an unimportant push that says how many
-- wait (XEP-0357 pending-subscription-count), before mod_presence records it.
local rostermanager = require "core.rostermanager";
local jid_bare = require "util.jid".bare;
hook("presence/bare", function(event)
	local stanza = event.stanza;
	if stanza.attr.type ~= "subscribe" then return; end
	local user = jid_node(stanza.attr.to);
	if not user or not might_push(user) then return; end
	if not load_user(user) then return; end
	local roster = rostermanager.load_roster(user, module.host);
	if not roster then return; end
	local from = jid_bare(stanza.attr.from);
	local pending = roster[false] and roster[false].pending or {};
	local waiting = 0;
	for _ in pairs(pending) do waiting = waiting + 1; end
	local item = roster[from];
	local user_sessions = host_sessions[user];
	-- (the roster read may have yielded, and the user left the cache: handle loads them again)
	ask(core.subscription_request, user, stanza, waiting, pending[from] ~= nil,
		item and item.subscription, user_sessions and user_sessions.sessions, time_now());
end, 1);

-- Archived messages: pushed to the registrations of devices with no live
-- (or hibernated) session; urgent ones to all.
local archived = fail_open("archive-message-added", function(event)
	local for_user = event.for_user;
	if not might_push(for_user) then return; end
	local user_sessions = host_sessions[for_user];
	local sessions = user_sessions and user_sessions.sessions;
	local origin_user = event.origin and event.origin.username;
	ask(core.archived, for_user, event.stanza, event.id, sessions, origin_user, time_now());
end);
module:hook("archive-message-added", function(event)
	local for_user = event.id and event.for_user;
	-- (most archived messages are for users without push: this question)
	if not for_user or quick_might_push(for_user) == false then return; end
	return archived(event);
end);

-- A deleted account keeps no registration and no error count (Prosody
-- purges its stores as well; this covers backends that keep data).
module:hook_global("user-deleted", function(event)
	if event.host ~= module.host then return; end
	local user = event.username;
	push.soon(user, function()
		core:forget_user(user);
		push.note_commit(user);
		for _, store in ipairs({ push_store, push.store2 }) do
			local ok, err = store:set(user, nil);
			if not ok and err then
				module:log("error", "Error removing push registrations of deleted user '%s': %s", user, err);
			end
		end
		module:log("debug", "Push registrations of deleted user '%s' removed", user);
	end, "account deleted");
end);

-- Admin commands (prosodyctl shell): push:list(jid), push:remove(jid[, identifier]),
-- push:ping(jid). Prosody 13 takes them as "shell-command" items, routed to
-- the JID's host; 0.12's mod_admin_shell has one shared environment, so
-- there each host registers its handlers and a small dispatcher picks one.
local jid_split = require "util.jid".prepped_split;

local admin = {};

-- push:list(host): per app server, the registrations held in memory and
-- what came of the pushes since the module loaded.
function admin.services(print)
	local view = core:service_totals();
	for _, t in ipairs(view) do
		print(("%s\tregistrations_loaded=%d sent=%d delivered=%d wait=%d errors=%d timeouts=%d route=%d rtt=%s"):format(
			t.service, t.registrations, t.sent, t.delivered, t.wait, t.errors, t.timeouts, t.route,
			t.rtt_count > 0 and ("%.3fs"):format(t.rtt_sum / t.rtt_count) or "-"));
	end
	return true, ("%d app server(s)"):format(#view);
end

function admin.list(print, user)
	if not user then return admin.services(print); end
	if not load_user(user) then return false, "Could not read the registrations"; end
	local now = time_now();
	local attached = {};
	local user_sessions = host_sessions[user];
	for _, session in pairs(user_sessions and user_sessions.sessions or {}) do
		if session.push_identifier then
			attached[session.push_identifier] = session.hibernating and "hibernated" or "live";
		end
	end
	local view = core:admin_view(user, now) or {};
	for _, r in ipairs(view) do
		local last_error = r.last_error and ("%s %ds ago"):format(r.last_error, math.floor(now - r.last_error_at)) or "none";
		local retry = r.retry_in and ("attempt %d in %ds"):format(r.retry_attempt, math.ceil(r.retry_in)) or "none";
		print(("%s\tjid=%s node=%s age=%ds errors=%d last_error=%s retry=%s session=%s client=%s"):format(
			r.identifier, r.jid, tostring(r.node), math.floor(now - (r.timestamp or now)), r.errors,
			last_error, retry, attached[r.identifier] or "none", tostring(r.client)));
	end
	return true, ("%d registration(s)"):format(#view);
end

function admin.remove(_, user, identifier)
	local ok, message = push.locked(user, function()
		if not load_user(user) then return false, "Could not read the registrations"; end
		local plan;
		if identifier then
			plan = core:plan_drop(user, identifier);
		else
			plan = core:plan_remove_all(user);
		end
		if not plan then return false, "No such registration"; end
		if not write_plan(user, plan) then return false, "Could not write the registrations"; end
		local n = 0;
		for _ in pairs(plan.removed) do n = n + 1; end
		return true, ("%d registration(s) removed"):format(n);
	end);
	if ok == nil then return false, "The user's registrations are being changed, try again"; end
	return ok, message;
end

function admin.ping(_, user)
	module:fire_event("cloud-notify-ping", { user = user });
	return true, "Ping pushed to every registration";
end

local admin_commands = {
	{ name = "list", desc = "List a user's push registrations (identifier, app server, node, age, errors, client);"
		.." for a host, its app servers (registrations, pushes, answers, round-trip time)" };
	{ name = "remove", desc = "Remove one push registration of a user (by identifier), or all of them" };
	{ name = "ping", desc = "Send a test push (cloud-notify-ping) to every registration of a user" };
};

local function user_of(self, user_jid, command)
	local user, host = jid_split(user_jid);
	if command == "list" and not user and host == module.host then
		return false, self and self.session and self.session.print or print;
	end
	if not user or host ~= module.host then
		return nil, "Not a user of "..module.host..": "..tostring(user_jid);
	end
	return user, self and self.session and self.session.print or print;
end

if not prosody.version or not prosody.version:match("^0%.") then
	for _, command in ipairs(admin_commands) do
		local name = command.name;
		local args = { { name = "jid"; type = "string" } };
		if name == "remove" then args[2] = { name = "identifier"; type = "string" }; end
		module:add_item("shell-command", {
			section = "push"; section_desc = "Push notification registrations (XEP-0357)";
			name = name; desc = command.desc; args = args; host_selector = "jid";
			handler = function(self, user_jid, ...)
				local user, out = user_of(self, user_jid, name);
				if user == nil then return false, out; end
				return admin[name](out, user or nil, ...);
			end;
		});
	end
else
	local hosts_admin = module:shared("/*/cloud_notify/admin_hosts");
	hosts_admin[module.host] = admin;
	local env = module:shared("/*/admin_shell/env");
	local section = env.push or {};
	env.push = section;
	for _, command in ipairs(admin_commands) do
		local name = command.name;
		section[name] = function(self, user_jid, ...)
			local _, host = jid_split(user_jid or "");
			local host_admin = host and hosts_admin[host];
			if not host_admin then return false, "Push notifications are not enabled for "..tostring(host); end
			local user = jid_split(user_jid);
			if not user and name ~= "list" then return false, "Not a user's JID: "..tostring(user_jid); end
			return host_admin[name](self.session.print, user, ...);
		end;
	end
	admin.unregister = function() hosts_admin[module.host] = nil; end;
end

module:log("info", "Module loaded (core %s, from %s)", push.version, module:get_directory());

function module.unload()
	module:log("info", "Unloading module");
	push.release_held(); -- (what the grace period held)
	local ok, err = pcall(push.write_counts); -- (what the timer has not written yet)
	if not ok then module:log("error", "Writing unread counts failed: %s", err); end
	push.close();
	if admin.unregister then admin.unregister(); end
	chat_settings[module.host] = nil;
	for service, handlers in pairs(followed) do
		for name, handler in pairs(handlers) do service.events.remove_handler(name, handler); end
	end
	-- Sessions go on without us: timers stopped, smacks' watchdog restored.
	for _, user_sessions in pairs(host_sessions) do
		for _, session in pairs(user_sessions.sessions) do
			release_session(session);
			session.first_hibernated_push = nil;
		end
	end
end
