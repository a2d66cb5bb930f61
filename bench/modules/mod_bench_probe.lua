-- Benchmark helper, loaded in every variant (none, ref, ours):
--   <iq type='get'><stats xmlns='urn:example:bench'/></iq> to the host answers
--     with the Lua heap (KiB, after a full collection) and the number of
--     event handlers on the host;
--   <iq type='set'><ping xmlns='urn:example:bench' users='a b c' count='n'/></iq>
--     fires cloud-notify-ping n times, round-robin over the users (with
--     allocated='true' it answers with the KiB of Lua heap allocated while
--     firing, the collector stopped);
--   <iq type='set'><module xmlns='urn:example:bench' name='…' load='true|false'/></iq>
--     loads or unloads a module on the host (for in-process A/B runs);
--   <iq type='set'><fire xmlns='urn:example:bench' user='u' count='n'/></iq>
--     fires archive-message-added n times for a chat message to u (as
--     mod_mam does for every archived message) and answers with the CPU
--     seconds that took (os.clock), for a per-handler figure;
--   <iq type='set'><send xmlns='urn:example:bench' to='app' count='n'/></iq>
--     sends n publish IQs shaped like a push (empty notification form) from
--     the host to the app server: what routing a push costs Prosody
--     whichever module builds it;
--   <iq type='set'><get xmlns='urn:example:bench' users='a b c'/></iq>
--     reads each user's cloud_notify key-value store (a push module's
--     cache miss: the store's own get, nothing else) and answers with the
--     mean wall-clock µs per read (Prosody waits meanwhile: LuaDBI blocks);
--   <iq type='set'><profile xmlns='urn:example:bench' on='true|false'/></iq>
--     with bench_lua_profile = true: counts Lua VM instructions per
--     function (every coroutine's, sampled every 100), from on to off,
--     answered with the top 150 (bench/profile.py).
local st = require "util.stanza";
local monotonic = require "util.time".monotonic;

if module:get_option_boolean("bench_lua_profile", false) then
	local counts, on = {}, false;
	local getinfo = debug.getinfo;
	local function sample()
		if not on then return; end
		local info = getinfo(2, "S");
		local key = info and (info.short_src .. ":" .. info.linedefined) or "?";
		counts[key] = (counts[key] or 0) + 1;
	end
	local create, resume = coroutine.create, coroutine.resume;
	-- (every coroutine made from now on is sampled: load this module first)
	coroutine.create = function(f) -- luacheck: ignore 122
		local co = create(f);
		debug.sethook(co, sample, "", 100);
		return co;
	end
	coroutine.wrap = function(f) -- luacheck: ignore 122
		local co = coroutine.create(f);
		return function(...)
			local ret = table.pack(resume(co, ...));
			if not ret[1] then error(ret[2], 0); end
			return table.unpack(ret, 2, ret.n);
		end
	end
	-- util.async gives each runner's thread the hook of the thread that
	-- makes it (debug.gethook()): ours, wherever that is; and the main
	-- loop's own (a timer runs there).
	debug.gethook = function() return sample, "", 100; end -- luacheck: ignore 122
	module:add_timer(0, function() debug.sethook(sample, "", 100); end);
	debug.sethook(sample, "", 100);
	module:hook("iq-set/host/urn:example:bench:profile", function(event)
		local want = event.stanza.tags[1].attr.on == "true";
		local reply = st.reply(event.stanza):tag("profile", { xmlns = "urn:example:bench" });
		if want then
			counts, on = {}, true;
		else
			on = false;
			local keys = {};
			for key in pairs(counts) do keys[#keys+1] = key; end
			table.sort(keys, function(a, b) return counts[a] > counts[b]; end);
			for i = 1, math.min(150, #keys) do
				reply:tag("f", { at = keys[i], n = tostring(counts[keys[i]]) }):up();
			end
		end
		event.origin.send(reply);
		return true;
	end);
end

local function handler_count()
	local n = 0;
	for _, handlers in pairs(prosody.hosts[module.host].events._event_map) do
		for _ in pairs(handlers) do n = n + 1; end
	end
	return n;
end

module:hook("iq-get/host/urn:example:bench:stats", function(event)
	collectgarbage("collect");
	collectgarbage("collect");
	event.origin.send(st.reply(event.stanza):tag("stats", {
		xmlns = "urn:example:bench";
		heap = ("%.1f"):format(collectgarbage("count"));
		handlers = tostring(handler_count());
		-- ours: the bytes its Rust side holds (its allocator's count)
		core = package.loaded["cloud_notify"] and tostring(package.loaded["cloud_notify"].heap_bytes()) or nil;
	}));
	return true;
end);

module:hook("iq-set/host/urn:example:bench:ping", function(event)
	local ping = event.stanza.tags[1];
	local users = {};
	for user in (ping.attr.users or ""):gmatch("%S+") do users[#users+1] = user; end
	-- load_only: an empty push_services (no push; ours still loads the user)
	local services = ping.attr.load_only == "true" and {} or nil;
	-- allocated='true': the Lua heap allocated meanwhile (collector stopped)
	local measure = ping.attr.allocated == "true";
	if measure then collectgarbage("collect"); collectgarbage("stop"); end
	local before = collectgarbage("count");
	for i = 1, tonumber(ping.attr.count) or 0 do
		module:fire_event("cloud-notify-ping", { user = users[(i - 1) % #users + 1], push_services = services });
	end
	local allocated = collectgarbage("count") - before;
	if measure then collectgarbage("restart"); end
	event.origin.send(st.reply(event.stanza):tag("ping", { xmlns = "urn:example:bench";
		allocated = measure and ("%.1f"):format(allocated) or nil }));
	return true;
end);

module:hook("iq-set/host/urn:example:bench:module", function(event)
	local modulemanager = require "core.modulemanager";
	local spec = event.stanza.tags[1].attr;
	local ok, err;
	if spec.load == "true" then
		ok, err = modulemanager.load(module.host, spec.name);
	else
		ok, err = modulemanager.unload(module.host, spec.name);
	end
	if ok then
		event.origin.send(st.reply(event.stanza));
	else
		event.origin.send(st.error_reply(event.stanza, "cancel", "internal-server-error", tostring(err)));
	end
	return true;
end);

module:hook("iq-set/host/urn:example:bench:fire", function(event)
	local spec = event.stanza.tags[1].attr;
	local to = spec.user.."@"..module.host;
	local stanza = st.message({ to = to, from = "s0@"..module.host.."/load", type = "chat", id = "fire" })
		:tag("body"):text("Benchmark message"):up();
	local fired = { origin = event.origin, stanza = stanza, for_user = spec.user, id = "archive-id" };
	local count = tonumber(spec.count) or 0;
	local t0 = os.clock();
	for _ = 1, count do
		module:fire_event("archive-message-added", fired);
	end
	local elapsed = os.clock() - t0;
	event.origin.send(st.reply(event.stanza):tag("fire", { xmlns = "urn:example:bench"; cpu = ("%.6f"):format(elapsed) }));
	return true;
end);

module:hook("iq-set/host/urn:example:bench:get", function(event)
	local store = module:open_store("cloud_notify");
	local users = {};
	for user in (event.stanza.tags[1].attr.users or ""):gmatch("%S+") do users[#users+1] = user; end
	local t0 = monotonic();
	for _, user in ipairs(users) do
		local value, err = store:get(user);
		if value == nil and err ~= nil then -- (a failing get is quick: not a figure)
			event.origin.send(st.error_reply(event.stanza, "wait", "internal-server-error", tostring(err)));
			return true;
		end
	end
	local us = #users > 0 and (monotonic() - t0) / #users * 1e6 or 0;
	event.origin.send(st.reply(event.stanza):tag("get", { xmlns = "urn:example:bench"; us = ("%.1f"):format(us) }));
	return true;
end);

local sent = 0;
local function push_shaped(to)
	sent = sent + 1;
	return st.iq({ type = "set", from = module.host, to = to, id = "bench-send-"..sent })
		:tag("pubsub", { xmlns = "http://jabber.org/protocol/pubsub" })
			:tag("publish", { node = "bench-node" })
				:tag("item")
					:tag("notification", { xmlns = "urn:xmpp:push:0" })
						:tag("x", { xmlns = "jabber:x:data", type = "form" })
							:tag("field", { var = "FORM_TYPE" })
								:text_tag("value", "urn:xmpp:push:summary"):up()
							:tag("field", { var = "message-count" })
								:text_tag("value", "1"):up()
						:up()
					:up()
				:up()
			:up()
		:up();
end

module:hook("iq-set/host/urn:example:bench:send", function(event)
	local spec = event.stanza.tags[1].attr;
	-- reuse='true': one stanza object sent again and again (routing alone)
	local reused = spec.reuse == "true" and push_shaped(spec.to);
	for _ = 1, tonumber(spec.count) or 0 do
		module:send(reused or push_shaped(spec.to));
	end
	event.origin.send(st.reply(event.stanza));
	return true;
end);

module:log("info", "Module loaded (bench probe)");
