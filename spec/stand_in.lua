-- A small stand-in for Prosody's module API, enough to load the shim and
-- the compiled core under Lua 5.4 with Prosody's real util.stanza.

package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/prosody/?.so;" .. package.cpath;

local st = require "util.stanza";

local stand_in = {};

-- util.watchdog needs Prosody's event loop; this one only records.
stand_in.watchdogs = {};
stand_in.push_mismatches, stand_in.pushes_checked = {}, 0;
package.loaded["util.watchdog"] = {
	new = function(timeout, callback)
		local dog = { timeout = timeout, callback = callback, cancelled = false };
		function dog:cancel() self.cancelled = true; end
		stand_in.watchdogs[#stand_in.watchdogs+1] = dog;
		return dog;
	end;
};

-- Rosters, by user (core.rostermanager needs a running Prosody).
stand_in.rosters = {};
package.loaded["core.rostermanager"] = {
	load_roster = function(user) return stand_in.rosters[user] or { [false] = { pending = {} } }; end;
};

local DIST = os.getenv("CLOUD_NOTIFY_DIST") or "dist/mod_cloud_notify";

-- A store in memory; `fail` makes every write fail. The host's own
-- record (user nil) is kept under `false`.
local function new_store()
	local store = { data = {}, fail = false, reads = 0 };
	function store:get(user)
		if user == nil then user = false; end
		self.reads = self.reads + 1;
		if self.raise_reads then error("store exploded"); end
		if self.fail_reads then return nil, self.fail_reads; end
		return self.data[user];
	end
	function store:set(user, value)
		if user == nil then user = false; end
		if self.fail then return nil, "disk on fire"; end
		self.data[user] = value;
		return true;
	end
	return store;
end

-- The stand-in's stores: one per name, as Prosody's.
local function add_stores(m, options)
	-- (one store per name, as Prosody's; the module's own by default;
	-- `options.stores`: another run's, as after a restart)
	m.stores = options.stores or {};
	if options.stores then m.store = options.stores[m.name]; end
	m.stores[m.name] = m.store;
	-- Stores that list their users, as Prosody's internal and SQL ones do
	-- (with `stored`: the module's store's records, there when it loads).
	local function lists(store)
		if options.store_lists_users then
			function store:users() return next, self.data, nil; end
		end
		return store;
	end
	function m:open_store(name)
		if name == nil or name == self.name then return self.store; end
		self.stores[name] = self.stores[name] or lists(new_store());
		return self.stores[name];
	end
	if options.store_lists_users then
		for user, record in pairs(options.stored or {}) do m.store.data[user] = record; end
		lists(m.store);
	end
end

-- The stand-in's hooks, events, metrics, sending, timers and log.
local function add_events(m)
	function m:hook(name, fn, priority)
		local list = self.handlers[name] or {};
		self.handlers[name] = list;
		list[#list+1] = { fn = fn, priority = priority or 0 };
		table.sort(list, function(a, b) return a.priority > b.priority; end);
	end
	local shared = {};
	function m:shared(path) shared[path] = shared[path] or {}; return shared[path]; end
	function m:add_item() end
	-- (no item is ever added here: no PEP service to follow)
	function m:handle_items() end
	m.metrics = {};
	function m:metric(type_, name)
		local family = { type = type_, values = {} };
		family.with_labels = function(fam, ...)
			local key = table.concat({ ... }, "/");
			local values = fam.values;
			return {
				add = function(_, n) values[key] = (values[key] or 0) + n; end;
				set = function(_, n) values[key] = n; end;
				sample = function(_, n) values[key] = n; end;
			};
		end
		self.metrics[name] = family;
		return family;
	end
	function m:hook_global(name, fn, priority) self:hook("global/" .. name, fn, priority); end
	function m:fire_event(name, data)
		if name == "cloud_notify/push" then
			-- Every push the specs and the fuzzer make: its publish IQ (written
			-- raw by the binding) is the core's publish_iq of its parts.
			-- (a lean event, while nothing hooks it: against the host's core)
			local same, expected, got = package.loaded["cloud_notify"].check_push(data, stand_in.cores[self.host]);
			if not same then
				stand_in.push_mismatches[#stand_in.push_mismatches+1] = { expected = expected, got = got };
				error(("publish IQ differs from the core's:\n%s\n%s"):format(expected, got));
			end
			stand_in.pushes_checked = stand_in.pushes_checked + 1;
			stand_in.last_push_event = data;
		end
		for _, h in ipairs(self.handlers[name] or {}) do
			local ret = h.fn(data);
			if ret ~= nil then return ret; end
		end
	end
	function m:send(stanza) self.sent[#self.sent+1] = stanza; end
	function m:add_timer(delay, fn)
		local timer = { delay = delay, fn = fn };
		timer.stop = function(t) t.stopped = true; end
		self.timers[#self.timers+1] = timer;
		return timer;
	end
	function m:log(level, fmt, ...)
		self.logs[#self.logs+1] = { level = level, text = fmt:format(...) };
	end
	function m:handler_count()
		local n = 0;
		for _, list in pairs(self.handlers) do n = n + #list; end
		return n;
	end
end

-- Loads the shim for `host` with `options`; returns the stand-in module.
-- Each host's core, as cloud_notify.new made it (to check lean push
-- events against its registrations).
stand_in.cores = {};
local function record_cores()
	local loaded = package.loaded["cloud_notify"];
	if not loaded then
		loaded = assert(package.loadlib(DIST .. "/cloud_notify.so", "luaopen_cloud_notify"))();
		package.loaded["cloud_notify"] = loaded;
	end
	if stand_in.new then return; end
	stand_in.new = loaded.new;
	loaded.new = function(host, ...)
		local core, problems = stand_in.new(host, ...);
		stand_in.cores[host] = core;
		return core, problems;
	end
end

function stand_in.load(host, options)
	record_cores();
	_G.prosody = _G.prosody or { hosts = {}, version = "0.12.3" };
	local m = {
		host = host; name = "cloud_notify"; handlers = {}; sent = {}; timers = {}; logs = {};
		store = new_store();
	};
	-- As util.events: the handler list of an event, nil if none.
	prosody.hosts[host] = { sessions = {}, events = {
		get_handlers = function(name) return m.handlers[name]; end;
	} };
	options = options or {};
	local function getter(name, default)
		local v = options[name];
		if v == nil then return default; end
		return v;
	end
	m.get_option_boolean = function(_, name, default) return getter(name, default); end
	m.get_option_string = m.get_option_boolean;
	m.get_option_number = m.get_option_boolean;
	m.get_option_array = m.get_option_boolean;
	function m:get_directory() return DIST; end
	function m:require(name)
		return assert(loadfile(DIST .. "/" .. name .. ".lib.lua", "t", self.environment))();
	end
	add_stores(m, options);
	add_events(m);
	-- Like Prosody, run the module in its own environment where `module` is its API.
	local env = setmetatable({ module = m }, { __index = _G });
	m.environment = env;
	local chunk = assert(loadfile(DIST .. "/mod_cloud_notify.lua", "t", env));
	chunk();
	return m;
end

-- A c2s session of `user` on `host`, recording what it is sent.
function stand_in.session(m, user, resource)
	local s = {
		username = user; host = m.host; resource = resource or "phone";
		full_jid = user .. "@" .. m.host .. "/" .. (resource or "phone");
		type = "c2s"; replies = {};
	};
	s.send = function(stanza) s.replies[#s.replies+1] = stanza; return true; end
	s.log = function() end
	local host_sessions = prosody.hosts[m.host].sessions;
	host_sessions[user] = host_sessions[user] or { sessions = {} };
	host_sessions[user].sessions[s.resource] = s;
	return s;
end

function stand_in.enable_iq(session, jid, node, form)
	local iq = st.iq({ type = "set", id = "e1", from = session.full_jid, ["xml:lang"] = "en" })
		:tag("enable", { xmlns = "urn:xmpp:push:0", jid = jid, node = node });
	if form then iq:add_child(form); end
	return iq;
end

function stand_in.enable(m, session, jid, node, form)
	local stanza = stand_in.enable_iq(session, jid, node, form);
	m:fire_event("iq-set/self/urn:xmpp:push:0:enable", { origin = session, stanza = stanza });
	return session.replies[#session.replies];
end

function stand_in.disable(m, session, jid, node)
	local stanza = st.iq({ type = "set", id = "d1", from = session.full_jid })
		:tag("disable", { xmlns = "urn:xmpp:push:0", jid = jid, node = node });
	m:fire_event("iq-set/self/urn:xmpp:push:0:disable", { origin = session, stanza = stanza });
	return session.replies[#session.replies];
end

local message_ids = 0;
function stand_in.offline(m, to, body)
	message_ids = message_ids + 1;
	local msg = st.message({ to = to, from = "juliet@example.com/balcony", type = "chat", id = "m"..message_ids });
	if body then msg:text_tag("body", body); end
	m:fire_event("message/offline/handle", { stanza = msg, username = to:match("^[^@]+") });
	return msg;
end

function stand_in.answer(m, push, kind, err_type, condition)
	local reply = st.reply(push);
	if kind == "error" then
		reply = st.error_reply(push, err_type, condition);
	end
	return m:fire_event("iq/host", { stanza = reply, origin = {} });
end

-- Makes the stand-in store's `method` ("get" or "set") wait, when
-- `should_pause()` says so, until the caller lets it go on: it yields
-- inside util.async runners, as a networked store does. A read answers
-- what was stored when it was asked; a write lands when it is let go.
-- Returns the list of `done` functions of the calls waiting.
function stand_in.pausing_store(m, method, should_pause, paused)
	local async = require "util.async";
	paused = paused or {};
	local plain = m.store[method];
	m.store[method] = function(self, ...)
		if not should_pause() then return plain(self, ...); end
		local wait, done = async.waiter();
		paused[#paused+1] = done;
		if method == "get" then
			local value = plain(self, ...);
			wait();
			return value;
		end
		wait();
		return plain(self, ...);
	end;
	return paused;
end

function stand_in.publish_options(secret)
	return st.stanza("x", { xmlns = "jabber:x:data", type = "submit" })
		:tag("field", { var = "FORM_TYPE" })
			:text_tag("value", "http://jabber.org/protocol/pubsub#publish-options"):up()
		:tag("field", { var = "secret" }):text_tag("value", secret):up();
end

return stand_in;
