-- XEP-0357: Push Notifications, for Prosody.
--
-- This file is the thin shim around the Rust core (cloud_notify.so, next to
-- it): it reads options, hooks events, reads and writes the store, sends
-- stanzas and fires the events other modules use. Every decision (what is
-- important, who gets a push, error counting, the device cap) is taken by
-- the core.
--
-- Drop-in for the prosody-modules mod_cloud_notify: same module name,
-- options, store layout and events.

local st = require "util.stanza";
local time_now = require "util.time".now;
local watchdog = require "util.watchdog";

local xmlns_push = "urn:xmpp:push:0";

-- Stanzas queued for a hibernated (or unresponsive) smacks session within
-- this many seconds give one push (one important, one not).
local coalesce_delay = 1;

-- Configuration (typed getters; the core checks ranges and falls back to
-- the defaults, logging what it rejected).
local options = {
	push_notification_with_body = module:get_option_boolean("push_notification_with_body", false);
	push_notification_with_sender = module:get_option_boolean("push_notification_with_sender", false);
	push_notification_important_body = module:get_option_string("push_notification_important_body", "New Message!");
	push_max_devices = module:get_option_number("push_max_devices", 5);
	push_max_errors = module:get_option_number("push_max_errors", 16);
	push_max_hibernation_timeout = module:get_option_number("push_max_hibernation_timeout", 72*3600);
	push_registration_cache_size = module:get_option_number("push_registration_cache_size", 10000);
	push_response_timeout = module:get_option_number("push_response_timeout", 120);
	push_max_pending = module:get_option_number("push_max_pending", 10000);
};

-- Load the core from this module's directory, without touching package.cpath.
local function load_core()
	local loaded = package.loaded["cloud_notify"];
	if loaded then return loaded; end
	local path = module:get_directory().."/cloud_notify.so";
	local open, err = package.loadlib(path, "luaopen_cloud_notify");
	if not open then
		error("Could not load the cloud_notify core from "..path..": "..tostring(err));
	end
	loaded = open();
	package.loaded["cloud_notify"] = loaded;
	return loaded;
end

local cloud_notify = load_core();
local core, problems = cloud_notify.new(module.host, options, st.stanza_mt);
for _, problem in ipairs(problems) do
	module:log("error", "Configuration: %s", problem);
end

-- Metrics (Prosody's statistics API; e.g. mod_http_openmetrics shows them).
local metric_pushes = module:metric("counter", "pushes", "",
	"Pushes sent to app servers, by path and importance", { "kind", "importance" });
local metric_blocked = module:metric("counter", "blocked", "",
	"Pushes blocked by a cloud_notify/push handler, by path", { "kind" });
local metric_errors = module:metric("counter", "app_server_errors", "",
	"Error answers from app servers, by error type", { "type" });
local metric_disabled = module:metric("counter", "auto_disabled", "",
	"Registrations removed after push_max_errors errors", {});
local metric_rtt = module:metric("histogram", "response_time", "seconds",
	"Time from a push to the app server's answer", {},
	{ buckets = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120 } });
local metric_outstanding = module:metric("gauge", "outstanding", "",
	"Pushes awaiting an answer", {});
local metric_registrations = module:metric("gauge", "registrations_loaded", "",
	"Registrations held in memory", {});
local metric_users = module:metric("gauge", "users_loaded", "",
	"Users whose registrations are held in memory (with or without any)", {});
local metric_store_reads = module:metric("counter", "store_reads", "",
	"Reads of the registration store (cache misses)", {});

-- Labelled metrics, looked up once per label set (the label values come
-- from fixed sets).
local function labelled(family)
	local cache = {};
	return function(a, b)
		local key = (a or "").."\0"..(b or "");
		local metric = cache[key];
		if not metric then
			if b then metric = family:with_labels(a, b);
			elseif a then metric = family:with_labels(a);
			else metric = family:with_labels(); end
			cache[key] = metric;
		end
		return metric;
	end
end
local count_push, count_blocked, count_error = labelled(metric_pushes), labelled(metric_blocked), labelled(metric_errors);
local count_disabled, sample_rtt, count_store_read = labelled(metric_disabled), labelled(metric_rtt), labelled(metric_store_reads);

local push_store = module:open_store();
local host_sessions = prosody.hosts[module.host].sessions;

local function log_all(level, messages)
	for _, message in ipairs(messages) do
		module:log(level, "%s", message);
	end
end

-- Makes sure the core has the user's registrations; false on a store error.
local function load_user(user)
	if core:loaded(user) then return true; end
	module:log("debug", "Loading push registrations of '%s'", user);
	count_store_read():add(1);
	local stored, err = push_store:get(user);
	if stored == nil and err ~= nil then
		module:log("error", "Error reading push registrations of '%s': %s", user, err);
		return false;
	end
	log_all("warn", core:load(user, stored));
	return true;
end

-- Writes a planned set of registrations, then lets the core adopt it.
-- Extended hibernation: a hibernated session with push enabled is kept for
-- push_max_hibernation_timeout, until its first waking push. The fields are
-- those of the reference module, so either can take over a session.
local function extend_hibernation(session)
	local dog = session.hibernating_watchdog;
	if not dog or session.original_smacks_callback then return; end
	local timeout = core:extended_hibernation(dog.timeout or 0);
	if not timeout then return; end
	local original_callback, original_timeout = dog.callback, dog.timeout;
	session.original_smacks_callback, session.original_smacks_timeout = original_callback, original_timeout;
	dog:cancel();
	session.hibernating_watchdog = watchdog.new(timeout, function(this_dog)
		session.log("debug", "Push-extended smacks watchdog triggered");
		-- mod_smacks (0.12.4+, 13) ignores a call for any watchdog but the
		-- session's current one: hand it this one, or the session leaks.
		return original_callback(this_dog);
	end);
	session.log("debug", "Hibernation extended to %ds until the first push", timeout);
end

-- Back to smacks' own watchdog, counting from now.
local function end_extension(session)
	local original_callback, original_timeout = session.original_smacks_callback, session.original_smacks_timeout;
	session.original_smacks_callback, session.original_smacks_timeout = nil, nil;
	if not original_callback then return; end
	local dog = session.hibernating_watchdog;
	if dog and session.hibernating then
		dog:cancel();
		session.hibernating_watchdog = watchdog.new(original_timeout, original_callback);
		session.log("debug", "Hibernation timeout back to %ds", original_timeout);
	end
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
	end_extension(session);
end

local function write_plan(user, services, removed)
	local ok, err = push_store:set(user, services);
	if not ok then
		module:log("error", "Error writing push registrations of '%s': %s", user, err);
		return false;
	end
	log_all("warn", core:commit(user, services, removed));
	-- Sessions of removed registrations stop pushing, from every path.
	local user_sessions = host_sessions[user];
	if user_sessions and next(removed) ~= nil then
		for _, session in pairs(user_sessions.sessions) do
			if session.push_identifier and removed[session.push_identifier] then
				session.log("debug", "Push registration %s removed", session.push_identifier);
				session.push_identifier = nil;
				session.push_settings = nil;
				session.first_hibernated_push = nil;
				release_session(session);
			end
		end
	end
	return true;
end

-- Sends the pushes the core built, unless a cloud_notify/push handler
-- objects. Returns whether a waking push was sent.
local function dispatch(pushes)
	local woke = false;
	for i = 1, #pushes do
		local push_event = pushes[i];
		if module:fire_event("cloud_notify/push", push_event) then
			module:log("debug", "Push was blocked by event handler: %s", push_event.reason or "Unknown reason");
			core:cancel(push_event.push_id);
			count_blocked(push_event.push_kind):add(1);
		else
			count_push(push_event.push_kind, push_event.important and "important" or "unimportant"):add(1);
			module:log("debug", "Sending %s push notification for %s@%s to %s (%s)",
				push_event.important and "important" or "unimportant",
				push_event.username, module.host, push_event.push_info.jid, push_event.push_info.node);
			module:send(push_event.notification_stanza);
			woke = woke or push_event.wakes;
		end
	end
	return woke;
end

-- https://xmpp.org/extensions/xep-0357.html#disco
module:hook("account-disco-info", function(event)
	(event.reply or event.stanza):tag("feature", { var = xmlns_push }):up();
end);

-- An IQ handler that runs once the user's registrations are loaded.
local function user_iq(handler)
	return function(event)
		local origin, stanza = event.origin, event.stanza;
		if not load_user(origin.username) then
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
			return true;
		end
		return handler(origin, stanza, origin.username);
	end
end

-- https://xmpp.org/extensions/xep-0357.html#enabling
local function push_enable(origin, stanza, user)
	local push_info, identifier, condition, text = core:enable(origin, stanza, os.time());
	if not push_info then
		origin.log("debug", "Push enable refused: %s: %s", condition, text);
		origin.send(st.error_reply(stanza, identifier, condition, text));
		return true;
	end
	if module:fire_event("cloud_notify/registration", {
		origin = origin, stanza = stanza, push_info = push_info;
	}) == false then
		return true; -- the handler replied
	end
	local services, removed, error_condition, error_text = core:plan_enable(user, identifier, push_info);
	if not services then
		origin.send(st.error_reply(stanza, removed, error_condition, error_text));
		return true;
	end
	if not write_plan(user, services, removed) then
		origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
		return true;
	end
	origin.push_identifier = identifier;
	origin.push_settings = push_info;
	origin.first_hibernated_push = nil;
	origin.log("info", "Push notifications enabled for %s (%s)", origin.full_jid, identifier);
	origin.send(st.reply(stanza));
	return true;
end
module:hook("iq-set/self/"..xmlns_push..":enable", user_iq(push_enable));

-- https://xmpp.org/extensions/xep-0357.html#disabling
local function push_disable(origin, stanza, user)
	local services, removed, condition, text = core:plan_disable(user, stanza);
	if services == nil then
		origin.send(st.error_reply(stanza, removed, condition, text));
		return true;
	end
	if services and not write_plan(user, services, removed) then
		origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
		return true;
	end
	for identifier in pairs(removed) do
		origin.log("info", "Push notifications disabled (%s)", identifier);
	end
	origin.send(st.reply(stanza));
	return true;
end
module:hook("iq-set/self/"..xmlns_push..":disable", user_iq(push_disable));

-- Offline messages: one push per registration of the recipient.
module:hook("message/offline/handle", function(event)
	local stanza = event.stanza;
	local pushes, user = core:offline(stanza, time_now());
	if pushes == false then
		if not load_user(user) then return; end
		pushes = core:offline(stanza, time_now());
	end
	if pushes then dispatch(pushes); end
end, 1);

-- Bare groupchat messages to the user (a MUC with no joined device of
-- theirs): pushed like offline messages. Not handled here: the sender still
-- gets mod_message's error.
module:hook("message/bare/groupchat", function(event)
	local stanza = event.stanza;
	local pushes, user = core:offline(stanza, time_now(), true);
	if pushes == false then
		if not load_user(user) then return; end
		pushes = core:offline(stanza, time_now(), true);
	end
	if pushes then dispatch(pushes); end
end, 1);

-- Sends a session's coalesced batch.
local function send_batch(session)
	session.cloud_notify_timer = nil;
	local woke = dispatch(core:smacks_flush(session.full_jid, time_now()));
	if woke and session.hibernating and not session.first_hibernated_push then
		session.first_hibernated_push = os.time();
		end_extension(session);
	end
end

-- Stanzas in a session's smacks queue: pushed to that session's
-- registration, coalesced (or at once, at the start of hibernation).
local function smacks_stanzas(session, stanzas, at_once)
	local identifier, user = session.push_identifier, session.username;
	if not identifier or not user or not session.full_jid then return; end
	if not load_user(user) then return; end
	local outcome = core:smacks_add(session.full_jid, user, identifier, stanzas);
	if outcome == "nothing" then return; end
	if at_once or outcome == "flush" then
		if session.cloud_notify_timer then
			session.cloud_notify_timer:stop();
		end
		send_batch(session);
	elseif not session.cloud_notify_timer then
		session.cloud_notify_timer = module:add_timer(coalesce_delay, function()
			send_batch(session);
		end);
	end
end

module:hook("smacks-hibernation-start", function(event)
	local session = event.origin;
	session.first_hibernated_push = nil;
	if not session.push_identifier then return; end
	extend_hibernation(session);
	smacks_stanzas(session, event.queue, true);
end);

module:hook("smacks-hibernation-stanza-queued", function(event)
	smacks_stanzas(event.origin, { event.stanza });
end);

module:hook("smacks-ack-delayed", function(event)
	smacks_stanzas(event.origin, event.stanza and { event.stanza } or event.queue);
end);

module:hook("smacks-hibernation-end", function(event)
	local session = event.resumed;
	if not session then return; end
	stop_batch(session);
	session.first_hibernated_push = nil;
	-- mod_smacks has let our watchdog go.
	session.original_smacks_callback, session.original_smacks_timeout = nil, nil;
end);

-- Archived messages: pushed to the registrations of devices with no live
-- (or hibernated) session; urgent ones to all.
module:hook("archive-message-added", function(event)
	local for_user = event.for_user;
	if not for_user then return; end
	local user_sessions = host_sessions[for_user];
	local sessions = user_sessions and user_sessions.sessions;
	local origin_user = event.origin and event.origin.username;
	local pushes = core:archived(for_user, event.stanza, event.id, sessions, origin_user, time_now());
	if pushes == false then
		if not load_user(for_user) then return; end
		pushes = core:archived(for_user, event.stanza, event.id, sessions, origin_user, time_now());
	end
	if pushes then dispatch(pushes); end
end);

-- cloud-notify-ping: an empty push to all (or the given) registrations.
module:hook("cloud-notify-ping", function(event)
	local user = event.user;
	module:log("debug", "Handling event 'cloud-notify-ping' for user '%s'", user);
	if not load_user(user) then return; end
	dispatch(core:ping(user, event.push_services, time_now()));
end);

-- Answers of app servers: one handler for all pushes, no hook per push.
-- Writes a user's registrations as the core holds them (error counts).
local function write_current(user)
	local services, removed = core:plan_current(user);
	if services then write_plan(user, services, removed); end
end

local function push_response(event)
	local answer = core:response(event.stanza, time_now());
	if answer == nil then return; end -- not one of ours
	if answer.kind == "load" then
		if not load_user(answer.user) then return true; end
		answer = core:response(event.stanza, time_now());
		if answer == nil then return; end
	end
	local kind = answer.kind;
	if answer.error_type then
		count_error(answer.error_type):add(1);
	end
	if kind == "delivered" then
		module:log("debug", "Push delivered to %s in %.3fs", answer.from, answer.rtt);
		sample_rtt():sample(answer.rtt);
		if answer.reset then write_current(answer.user); end
	elseif kind == "temporary" then
		module:log("debug", "Push to %s failed temporarily (%s), not counted", answer.from, answer.condition);
	elseif kind == "wrong-sender" then
		module:log("warn", "Ignoring push answer from %s, expected %s", answer.from, answer.expected);
	elseif kind == "counted" then
		module:log("info", "Got error <%s:%s> for identifier '%s': error count is now %d",
			answer.error_type, answer.condition, answer.identifier, answer.count);
		write_current(answer.user);
	elseif kind == "disable" then
		module:log("warn", "Disabling push notifications for identifier '%s' after %d errors",
			answer.identifier, answer.count);
		count_disabled():add(1);
		if load_user(answer.user) then
			local services, removed = core:plan_drop(answer.user, answer.identifier);
			if services then write_plan(answer.user, services, removed); end
		end
	end
	return true;
end
module:hook("iq/host", push_response, 10);

-- Gauges are read when statistics are collected.
module:hook_global("stats-update", function()
	local stats = core:stats();
	metric_outstanding:with_labels():set(stats.pending);
	metric_registrations:with_labels():set(stats.registrations);
	metric_users:with_labels():set(stats.users);
end);

-- A deleted account keeps no registration and no error count (Prosody
-- purges its stores as well; this covers backends that keep data).
module:hook_global("user-deleted", function(event)
	if event.host ~= module.host then return; end
	local user = event.username;
	core:forget_user(user);
	local ok, err = push_store:set(user, nil);
	if not ok and err then
		module:log("error", "Error removing push registrations of deleted user '%s': %s", user, err);
	end
	module:log("debug", "Push registrations of deleted user '%s' removed", user);
end);

-- Admin commands (prosodyctl shell): push:list(jid), push:remove(jid[, identifier]),
-- push:ping(jid). Prosody 13 takes them as "shell-command" items, routed to
-- the JID's host; 0.12's mod_admin_shell has one shared environment, so
-- there each host registers its handlers and a small dispatcher picks one.
local jid_split = require "util.jid".prepped_split;

local admin = {};

function admin.list(print, user)
	if not load_user(user) then return false, "Could not read the registrations"; end
	local now, n = os.time(), 0;
	for identifier, r in pairs(core:registrations(user) or {}) do
		n = n + 1;
		print(("%s\tjid=%s node=%s age=%ds errors=%d client=%s"):format(identifier, r.jid, tostring(r.node),
			now - math.floor(r.timestamp or now), r.error_count or 0, tostring(r.client_id or r.resource)));
	end
	return true, ("%d registration(s)"):format(n);
end

function admin.remove(_, user, identifier)
	if not load_user(user) then return false, "Could not read the registrations"; end
	local services, removed;
	if identifier then
		services, removed = core:plan_drop(user, identifier);
	else
		services, removed = core:plan_remove_all(user);
	end
	if not services then return false, "No such registration"; end
	if not write_plan(user, services, removed) then return false, "Could not write the registrations"; end
	local n = 0;
	for _ in pairs(removed) do n = n + 1; end
	return true, ("%d registration(s) removed"):format(n);
end

function admin.ping(_, user)
	module:fire_event("cloud-notify-ping", { user = user });
	return true, "Ping pushed to every registration";
end

local admin_commands = {
	{ name = "list", desc = "List a user's push registrations (identifier, app server, node, age, errors, client)" };
	{ name = "remove", desc = "Remove one push registration of a user (by identifier), or all of them" };
	{ name = "ping", desc = "Send a test push (cloud-notify-ping) to every registration of a user" };
};

local function user_of(self, user_jid)
	local user, host = jid_split(user_jid);
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
				local user, out = user_of(self, user_jid);
				if not user then return false, out; end
				return admin[name](out, user, ...);
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
			return host_admin[name](self.session.print, (jid_split(user_jid)), ...);
		end;
	end
	admin.unregister = function() hosts_admin[module.host] = nil; end;
end

-- Forget pushes nobody answered.
module:add_timer(30, function()
	local expired = core:expire(time_now());
	if expired > 0 then
		module:log("debug", "%d push(es) got no answer in time", expired);
	end
	return 30;
end);

module:log("info", "Module loaded (core %s, from %s)", cloud_notify.version, module:get_directory());

function module.unload()
	module:log("info", "Unloading module");
	if admin.unregister then admin.unregister(); end
	-- Sessions go on without us: timers stopped, smacks' watchdog restored.
	for _, user_sessions in pairs(host_sessions) do
		for _, session in pairs(user_sessions.sessions) do
			release_session(session);
			session.first_hibernated_push = nil;
		end
	end
end
