-- What mod_cloud_notify and mod_muc_cloud_notify share: loading the Rust
-- core (cloud_notify.so, in the module's own directory), options, metrics,
-- the registration store and its cache, sending pushes (with the
-- cloud_notify/push event), enable/disable, and the app servers' answers.
-- Loaded with module:require("cloud_notify"), in the module's environment.
-- As in the shims, every decision is the core's.
--
-- lib.new() hooks nothing and starts no timer: it returns the handlers
-- and timer functions (push.on_ping, push.on_answer, push.update_gauges,
-- push.on_server_stopping, push.counts_timer, push.sweep_timer), and each shim
-- hooks every event it handles itself, visibly.

local st = require "util.stanza";
local async = require "util.async";
local time_now = require "util.time".now;

local lib = {};

-- A plain list of numbers (what is not one becomes -1, which the core
-- rejects with a message); nil stays nil.
local function numbers(list)
	if list == nil then return nil; end
	local out = {};
	for i, v in ipairs(list) do out[i] = tonumber(v) or -1; end
	return out;
end

-- The options both modules read, with typed getters and no default: an
-- option left unset is nil here, and the core's default applies
-- (src/config.rs, the one place defaults are written; the core also checks
-- ranges, logging what it rejected).
function lib.options()
	return {
		push_notification_with_body = module:get_option_boolean("push_notification_with_body");
		push_notification_with_sender = module:get_option_boolean("push_notification_with_sender");
		push_notification_important_body = module:get_option_string("push_notification_important_body");
		push_notification_with_counts = module:get_option_boolean("push_notification_with_counts");
		push_max_devices = module:get_option_number("push_max_devices");
		push_max_errors = module:get_option_number("push_max_errors");
		push_max_hibernation_timeout = module:get_option_number("push_max_hibernation_timeout");
		push_registration_cache_size = module:get_option_number("push_registration_cache_size");
		push_response_timeout = module:get_option_number("push_response_timeout");
		push_max_pending = module:get_option_number("push_max_pending");
		push_wake_before_expiry = module:get_option_number("push_wake_before_expiry");
		push_retry_delays = numbers(module:get_option_array("push_retry_delays"));
		push_max_retries = module:get_option_number("push_max_retries");
		push_grace_period = module:get_option_number("push_grace_period");
		push_counts_write_interval = module:get_option_number("push_counts_write_interval");
		push_chat_settings_defaults = module:get_option_boolean("push_chat_settings_defaults");
		push2 = module:get_option_boolean("push2");
		contact_uri = module:get_option_string("contact_uri");
		push2_forward_content = module:get_option_boolean("push2_forward_content");
	};
end

-- Loads the core from this module's directory, without touching package.cpath.
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

-- Labelled metrics, looked up once per label set (the label values come
-- from fixed sets).
local function labelled(family)
	local cache = {};
	return function(a, b)
		local by_a = cache[a or ""];
		if not by_a then
			by_a = {};
			cache[a or ""] = by_a;
		end
		local metric = by_a[b or ""];
		if not metric then
			if b then metric = family:with_labels(a, b);
			elseif a then metric = family:with_labels(a);
			else metric = family:with_labels(); end
			by_a[b or ""] = metric;
		end
		return metric;
	end
end

local function log_all(level, messages)
	for _, message in ipairs(messages) do
		module:log(level, "%s", message);
	end
end

-- The module's metrics; returns them by name.
local function add_metrics(push)
	local metrics = {};
	-- Metrics (Prosody's statistics API; e.g. mod_http_openmetrics shows them).
	metrics.count_push = labelled(module:metric("counter", "pushes", "",
		"Pushes sent to app servers, by path and importance", { "kind", "importance" }));
	metrics.count_blocked = labelled(module:metric("counter", "blocked", "",
		"Pushes blocked by a cloud_notify/push handler, by path", { "kind" }));
	metrics.count_handler_error = labelled(module:metric("counter", "handler_errors", "",
		"Pushes not sent because a cloud_notify/push handler raised an error, by path", { "kind" }));
	metrics.count_error = labelled(module:metric("counter", "app_server_errors", "",
		"Error answers from app servers, by error type", { "type" }));
	metrics.count_remote_disabled = labelled(module:metric("counter", "remote_disabled", "",
		"Registrations the app server ended (XEP-0357 affiliation none)", {}));
	function push.count_remote_disable(removed)
		for _ in pairs(removed) do metrics.count_remote_disabled():add(1); end
	end
	metrics.count_route_failure = labelled(module:metric("counter", "route_failures", "",
		"Pushes our own server could not route to the app server (an s2s bounce): retried, never counted (counted on the MUC module)", {}));
	metrics.count_unanswered = labelled(module:metric("counter", "unanswered", "",
		"Pushes the app server did not answer within push_response_timeout (retried; counted as errors on the MUC module)", {}));
	metrics.count_given_up = labelled(module:metric("counter", "retries_given_up", "",
		"Pushes given up after every retry got a wait error", {}));
	metrics.count_disabled = labelled(module:metric("counter", "auto_disabled", "",
		"Registrations removed after push_max_errors errors", {}));
	metrics.sample_rtt = labelled(module:metric("histogram", "response_time", "seconds",
		"Time from a push to the app server's answer", {},
		{ buckets = { 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120 } }));
	metrics.gauge_outstanding = labelled(module:metric("gauge", "outstanding", "",
		"Pushes awaiting an answer", {}));
	metrics.gauge_registrations = labelled(module:metric("gauge", "registrations_loaded", "",
		"Registrations held in memory", {}));
	metrics.gauge_users = labelled(module:metric("gauge", "users_loaded", "",
		"Users whose registrations are held in memory (with or without any)", {}));
	metrics.gauge_kept = labelled(module:metric("gauge", "kept_stanza_bytes", "bytes",
		"Bytes of stanza copies kept for held and retried pushes (1 MiB per host, then bodiless copies)", {}));
	metrics.gauge_counts_kept = labelled(module:metric("gauge", "kept_counts_bytes", "bytes",
		"Bytes of unread counts kept for users not in memory (8 MiB at most)", {}));
	metrics.gauge_counts_dropped = labelled(module:metric("gauge", "counts_dropped", "",
		"Users whose unread counts were dropped for room since the module loaded", {}));
	-- Per app server (the first 32 by name, the rest as "other"; error
	-- conditions RFC 6120's or "other": bounded label sets).
	metrics.count_service_push = labelled(module:metric("counter", "service_pushes", "",
		"Pushes sent, by app server", { "service" }));
	metrics.count_service_answer = labelled(module:metric("counter", "service_answers", "",
		"What came of the pushes, by app server: delivered, wait, errors, timeouts, route (our server could not reach it)",
		{ "service", "result" }));
	metrics.service_errors = module:metric("counter", "service_errors", "",
		"Error answers by app server, error type and condition", { "service", "type", "condition" });
	metrics.gauge_service_rtt = labelled(module:metric("gauge", "service_response_time", "seconds",
		"Mean time from a push to its result since the last collection, by app server", { "service" }));
	metrics.count_store_read = labelled(module:metric("counter", "store_reads", "",
		"Reads of the registration store (cache misses)", {}));
	metrics.count_hook_error = labelled(module:metric("counter", "hook_errors", "",
		"Errors in this module's handlers (the stanza went on without it), by event", { "event" }));
	-- The counters an event's outcome names (the core's Counter).
	push.counters = {
		app_server_errors = metrics.count_error;
		route_failures = metrics.count_route_failure;
		unanswered = metrics.count_unanswered;
		retries_given_up = metrics.count_given_up;
		auto_disabled = metrics.count_disabled;
	};
	return metrics;
end

-- Handlers that fail open.
local function add_fail_open(push, metrics)
	-- Every handler fails open: an error in one (a bug, or a wedged core)
	-- is counted and logged (at most once a minute per event, here and not
	-- in the core, which may be what fails), and the stanza goes on as if
	-- this module were not loaded. An IQ handler answers the request with
	-- `wait/internal-server-error`. (Lua 5.4's pcall lets the handler's
	-- store calls yield through it.)
	local hook_logged = {};
	function push.fail_open(name, handler)
		return function(event)
			local ok, ret = pcall(handler, event);
			if ok then return ret; end
			metrics.count_hook_error(name):add(1);
			local now = time_now();
			if (hook_logged[name] or -math.huge) <= now - 60 then
				hook_logged[name] = now;
				module:log("error", "Error in the %s handler (the stanza goes on without push): %s", name, ret);
			end
			if name:match("^iq%-set/") and event.origin and event.stanza then
				event.origin.send(st.error_reply(event.stanza, "wait", "internal-server-error"));
				return true;
			end
			return nil;
		end
	end

	-- module:hook, failing open.
	function push.hook(name, handler, priority)
		module:hook(name, push.fail_open(name, handler), priority);
	end
end

-- Whether a user might push: the core's answer. Most come from a C
-- function over the core's sets of users with registrations, which never
-- raises and is no method call (every message asks it, for its sender and
-- its recipient); when it can't tell (nil), the core's method answers.
-- A handler that matters only to a user who might push asks the quick one
-- (push.quick_might_push) before its protected call: most events cost
-- only that.
local function add_might_push(push, core)
	local quick, method = core:might_push_fn(), core.might_push;
	push.quick_might_push = quick;
	function push.might_push(user)
		local might = quick(user);
		if might == nil then return method(core, user); end
		return might;
	end
end

-- Timers that run on (the unread counts, the sweep, retries): stopped
-- when the module unloads (push.close). Prosody drops an unloaded
-- module's timer only when it next fires, which would keep this host's
-- core, and what it holds, alive until then.
local function add_timers(push)
	local timers = setmetatable({}, { __mode = "k" }); -- (a timer that ran out is gone)
	function push.add_timer(delay, fn)
		local timer = module:add_timer(delay, fn);
		timers[timer] = true;
		return timer;
	end
	function push.stop_timers()
		for timer in pairs(timers) do timer:stop(); end
	end
end

-- The per-user locks.
local function new_locks()
	-- Per-user write lock. Storage may yield (handlers run in util.async
	-- runners), so every change of a user's registrations (plan, write,
	-- commit) runs holding the user's lock, planned from what the core
	-- holds once the lock is taken: two devices enabling at once, or an
	-- enable during an error-count write, never lose one another.
	-- locks[user] = { owner = coroutine, depth = n,
	--   waiting = { { thread, done }… } or nil, later = { [key] = fn… } or nil }
	-- (the lists made only when something waits or is queued: most locks
	-- are taken and let go with nobody else asking)
	local locks = {};

	local function acquire(user)
		local me = coroutine.running();
		local lock = locks[user];
		if not lock then
			locks[user] = { owner = me, depth = 1 };
			return true;
		end
		if lock.owner == me then
			lock.depth = lock.depth + 1;
			return true;
		end
		if not async.ready() then return false; end -- can't wait here
		local wait, done = async.waiter();
		local waiting = lock.waiting or {};
		lock.waiting = waiting;
		waiting[#waiting+1] = { thread = me, done = done };
		wait(); -- resumed by hand_over(), which gave the lock to this thread
		return not lock.closed; -- (or by close(): the module is going away)
	end

	local release;

	-- Gives the free lock to the next waiter, from the event loop rather
	-- than from the releaser's stack (a chain of waiters must not nest
	-- resumes); with none left, runs the writes queued for later.
	local function hand_over(user, lock)
		local next_waiter = lock.waiting and table.remove(lock.waiting, 1);
		if not next_waiter then
			locks[user] = nil;
			for key, later in pairs(lock.later or {}) do
				local ok, err = pcall(later);
				if not ok then
					module:log("error", "A queued change of '%s' (%s) failed: %s", user, tostring(key), err);
				end
			end
			return;
		end
		lock.owner, lock.depth = next_waiter.thread, 1; -- reserved for it
		lock.handing = next_waiter; -- (until the timer runs: close() lets it go too)
		module:add_timer(0, function()
			if lock.handing == next_waiter then lock.handing = nil; end
			if locks[user] ~= lock or lock.owner ~= next_waiter.thread then return; end
			if coroutine.status(next_waiter.thread) ~= "suspended" then
				release(user); -- it is gone: the next one
				return;
			end
			next_waiter.done();
		end);
	end

	function release(user)
		local lock = locks[user];
		if not lock or lock.closed then return; end
		lock.depth = lock.depth - 1;
		if lock.depth > 0 then return; end
		hand_over(user, lock);
	end

	return acquire, release, locks;
end

-- Running changes under a user's lock.
local function add_locked(push, acquire, release, locks)
	-- The module unloads: its timers will not run, so every waiter is let
	-- go now, without the lock (its change is answered as busy).
	function push.close()
		push.stop_timers();
		for user, lock in pairs(locks) do
			locks[user] = nil;
			lock.closed = true;
			-- (the waiter the lock was being handed to, whose timer will
			-- not run now, and those in line)
			local waiters = { lock.handing };
			for _, waiter in ipairs(lock.waiting or {}) do waiters[#waiters+1] = waiter; end
			lock.handing = nil;
			for _, waiter in ipairs(waiters) do
				if coroutine.status(waiter.thread) == "suspended" then pcall(waiter.done); end
			end
		end
	end

	-- Lets the lock go, then returns fn's results or raises its error
	-- (varargs: no table per call).
	local function let_go(user, ok, ...)
		release(user);
		if not ok then error((...), 0); end
		return ...;
	end

	-- Runs fn(...) holding the user's lock; returns its results, or nil,
	-- "busy" where the lock is held elsewhere and this context can't wait.
	function push.locked(user, fn, ...)
		if not acquire(user) then return nil, "busy"; end
		return let_go(user, pcall(fn, ...));
	end

	-- Runs fn() holding the user's lock: now if the lock is free (or
	-- ours), else once it is free — never waiting, so that an app server's
	-- answers (one s2s or component stream for all its users) are never
	-- held up by one user's store. Queued changes with the same `key`
	-- are done once, so what waits per user is bounded by the keys a
	-- caller uses (each names a change of that user's registrations).
	function push.soon(user, fn, key)
		local lock = locks[user];
		if lock and lock.owner ~= coroutine.running() then
			local later = lock.later or {};
			lock.later = later;
			later[key] = function() push.locked(user, fn); end;
			return;
		end
		acquire(user);
		local ok, err = pcall(fn);
		release(user);
		if not ok then error(err, 0); end
	end
end

-- Loading users' registrations into the core.
local function add_loading(push, core, metrics)
	-- Reads under way, by user: `commits` counts that user's commits
	-- while any read is under way; a read that saw a commit land after it
	-- began may be older than what was committed (and maybe evicted since),
	-- whatever other reads began or ended meanwhile. Kept only while reads
	-- are under way.
	local reading = {};
	function push.note_commit(user)
		local marks = reading[user];
		if marks then marks.commits = marks.commits + 1; end
	end

	-- Reads a user's table from `store` (may yield). Returns the table
	-- (nil: none), false when a commit of this user landed meanwhile (read
	-- again), or nil, error.
	local function read_store(store, user)
		metrics.count_store_read():add(1);
		local marks = reading[user] or { readers = 0, commits = 0 };
		reading[user], marks.readers = marks, marks.readers + 1;
		local commits_before = marks.commits;
		local ok, value, err = pcall(store.get, store, user);
		marks.readers = marks.readers - 1;
		if marks.readers == 0 then reading[user] = nil; end
		if not ok then value, err = nil, value; end
		if value == nil and err ~= nil then return nil, err; end
		if marks.commits ~= commits_before then return false; end
		return value;
	end

	-- Makes sure the core has the user's registrations; false on a store error.
	-- A user known to have none (see push.scan_known) is loaded empty, unread.
	-- Push 2.0 registrations are in mod_push2's store, read when the user
	-- may have some.
	function push.load_user(user)
		if core:loaded(user) then return true; end
		local want, want2 = core:stores_to_read(user);
		if not push.store2 then want2 = false; end
		if not want and not want2 then
			local _, _, due = core:load(user, nil, nil);
			push.write_users(due);
			return true;
		end
		local stored, stored2 = false, false;
		for _ = 1, 3 do
			module:log("debug", "Loading push registrations of '%s'", user);
			local err;
			stored, stored2 = nil, nil;
			if want then stored, err = read_store(push.store, user); end
			if err == nil and want2 and stored ~= false then stored2, err = read_store(push.store2, user); end
			if err ~= nil then
				module:log("error", "Error reading push registrations of '%s': %s", user, err);
				return false;
			end
			-- The read may have yielded: what another handler loaded (and
			-- maybe changed) meanwhile is newer than what was read, and a
			-- commit of this user's meanwhile may have made it old: read again.
			if core:loaded(user) then return true; end
			if stored ~= false and stored2 ~= false then break; end
		end
		if stored == false or stored2 == false then
			module:log("warn", "Push registrations of '%s' kept changing while being read", user);
			return false;
		end
		local load_problems, trimmed, due = core:load(user, stored, stored2);
		log_all("warn", load_problems);
		push.write_users(due);
		if trimmed then
			-- Beyond push_max_devices (the admin lowered it): the store
			-- follows, and sessions of trimmed registrations stop pushing.
			push.soon(user, function()
				local plan = core:plan_current(user);
				if plan then push.write_plan(user, plan, trimmed); end
			end, "trim");
		end
		return true;
	end

end

-- Which users have registrations.
local function add_scan(push, core)
	-- Which users have registrations: listed once, when the module loads,
	-- so that a stanza for a user known to have none costs no read (a
	-- store without `users()` is read as before). About 10 bytes per user
	-- with registrations.
	function push.scan_known()
		local function scan(store, note, complete, what)
			if not store or not store.users then return; end
			local ok, err = pcall(function()
				local n = 0;
				for user in store:users() do
					note(core, user);
					n = n + 1;
				end
				complete(core);
				module:log("debug", "%d user(s) with %s registrations", n, what);
			end);
			if not ok then module:log("warn", "Could not list the users with %s registrations: %s", what, err); end
		end
		scan(push.store, core.note_known, core.known_complete, "push");
		scan(push.store2, core.note_known2, core.known2_complete, "Push 2.0");
	end
end

-- Writing users' registrations.
local function add_writing(push, core)
	-- Writes a plan (see src/lua/replies.rs, Planned), then lets the core
	-- adopt it. `released`: identifiers already gone from the core whose
	-- sessions must stop pushing as well.
	-- The user's Push 2.0 registrations, when they change (`services2`),
	-- go to mod_push2's store first, then the module's own unless `xep` is
	-- false (it did not change). A failure leaves both stores as they were
	-- (mod_push2's is written back) and the core unchanged.
	function push.write_plan(user, plan, released)
		local had = push.on_committed and core:has_push(user);
		local services2 = plan.services2;
		local ok, err;
		-- (what mod_push2's store holds now, to write back if the second write fails)
		local before;
		if services2 and push.store2 and plan.xep ~= false then
			local current = core:plan_current(user);
			before = current and current.services2;
		end
		if services2 and push.store2 then
			ok, err = push.store2:set(user, next(services2) ~= nil and services2 or nil);
			if not ok then
				module:log("error", "Error writing Push 2.0 registrations of '%s': %s", user, err);
				return false;
			end
		end
		if plan.xep ~= false then
			ok, err = push.store:set(user, plan.services);
			if not ok then
				module:log("error", "Error writing push registrations of '%s': %s", user, err);
				if before then
					local restored, restore_err = push.store2:set(user, next(before) ~= nil and before or nil);
					if not restored then
						module:log("error", "Error writing back the Push 2.0 registrations of '%s': %s", user, restore_err);
					end
				end
				return false;
			end
		end
		log_all("warn", core:commit(user, plan));
		push.note_commit(user);
		if push.on_committed then push.on_committed(user, had, core:has_push(user)); end
		local removed = plan.removed;
		if released then
			for identifier in pairs(released) do removed[identifier] = true; end
		end
		if push.on_removed and next(removed) ~= nil then
			push.on_removed(user, removed);
		end
		return true;
	end

	-- Writes a user's registrations as the core holds them (error counts).
	function push.write_current(user)
		push.soon(user, function()
			local plan = core:plan_current(user);
			if plan then push.write_plan(user, plan); end
		end, "error counts");
	end
end

-- Sending pushes.
local function add_sending(push, core, metrics)
	-- Sends the pushes the core built, unless a cloud_notify/push handler
	-- objects. A handler that raises costs its own push only: it is logged
	-- and not sent, and the others go on. Returns whether a waking push was
	-- sent.
	function push.dispatch(pushes)
		local woke = false;
		if not pushes then return woke; end
		for i = 1, #pushes do
			local push_event = pushes[i];
			-- (a Push 2.0 push is no XEP-0357 publish: no handler sees it)
			local ok, blocked = true, nil;
			if not push_event.push2 then
				ok, blocked = pcall(module.fire_event, module, "cloud_notify/push", push_event);
			end
			if not ok then
				-- (counted each time; logged at most once a minute per kind)
				local unlogged = core:handler_failed(push_event.push_kind, time_now());
				if unlogged then
					module:log("error", "A cloud_notify/push handler failed for %s of '%s', push not sent: %s%s",
						push_event.push_identifier, push_event.username, blocked, unlogged > 0
						and (" (and %d more %s push(es) in the last minute, not logged)"):format(unlogged, push_event.push_kind)
						or "");
				end
				core:cancel(push_event.push_id);
				metrics.count_handler_error(push_event.push_kind):add(1);
			elseif blocked then
				module:log("debug", "Push was blocked by event handler: %s", push_event.reason or "Unknown reason");
				core:cancel(push_event.push_id);
				metrics.count_blocked(push_event.push_kind):add(1);
			else
				metrics.count_push(push_event.push_kind, push_event.important and "important" or "unimportant"):add(1);
				if push_event.push2 then
					module:log("debug", "Sending Push 2.0 notification (%s priority) for %s@%s to %s",
						push_event.priority, push_event.username, module.host, push_event.service);
				else
					-- (push_info: only while a handler hooks the event)
					module:log("debug", "Sending %s push notification for %s@%s to %s",
						push_event.important and "important" or "unimportant",
						push_event.username, module.host, push_event.push_identifier);
				end
				module:send(push_event.notification_stanza);
				woke = woke or push_event.wakes;
				if push_event.wakes and push.on_woken then
					push.on_woken(push_event.username, push_event.push_identifier);
				end
			end
		end
		return woke;
	end

end

-- Carrying out the core's outcomes.
local function add_outcomes(push, core, metrics)
	-- Carries out what the core answered for an event, its outcome (see
	-- src/lua/outcome.rs; nil: nothing to do): the pushes, the retries'
	-- timer, the registrations to remove, log lines, counters. Returns
	-- whether a waking push was sent.
	-- `deferred`: called from a timer, where a change of registrations
	-- (its store may yield) must run in a runner of its own.
	function push.apply(outcome, deferred)
		if not outcome then return false; end
		local woke = push.dispatch(outcome);
		if outcome.timer then push.schedule_retries(outcome.timer); end
		-- (each list only when there is one: no table made for none)
		local logs, counts, drops = outcome.logs, outcome.counts, outcome.drops;
		if logs then -- (level, text, …)
			for i = 1, #logs, 2 do module:log(logs[i], "%s", logs[i+1]); end
		end
		if counts then -- (metric, label or false, n, …)
			for i = 1, #counts, 3 do push.counters[counts[i]](counts[i+1] or nil):add(counts[i+2]); end
		end
		if outcome.rtt then metrics.sample_rtt():sample(outcome.rtt); end
		if drops then -- (user, identifier, …)
			for i = 1, #drops, 2 do
				local user, identifier = drops[i], drops[i+1];
				if deferred then push.later(function() push.drop(user, identifier); end, "removing "..identifier);
				else push.drop(user, identifier); end
			end
		end
		return woke;
	end

	-- Hands an event to the core: `ask(core, ...)` is one of the core's
	-- event methods, answering its outcome. When it says to load a user's
	-- registrations, they are loaded (here: storage may yield, which the
	-- core can't) and the core asked again. Returns whether a waking push
	-- was sent, and the outcome.
	function push.ask(ask, ...)
		local outcome = ask(core, ...);
		if outcome and outcome.load then
			if not push.load_user(outcome.load) then return false, outcome; end
			outcome = ask(core, ...);
			if outcome and outcome.load then return false, outcome; end -- (gone again meanwhile)
		end
		return push.apply(outcome), outcome;
	end
end

-- XEP-0492 bookmarks.
local function add_bookmarks(push, core)
	-- XEP-0492: the user's bookmarks (XEP-0402, in their PEP service), read
	-- once when the core wants them (may yield: storage). Without mod_pep,
	-- there are none.
	push.xmlns_bookmarks = "urn:xmpp:bookmarks:1";
	function push.read_bookmarks(user, any)
		if not core:bookmarks_wanted(user, any) then return; end
		local items = {};
		local host = prosody.hosts[module.host];
		local pep = host and host.modules and host.modules.pep; -- (the module's environment)
		if pep and pep.get_pep_service then
			local ok, found, data = pcall(function()
				return pep.get_pep_service(user):get_items(push.xmlns_bookmarks, true);
			end);
			if not ok then
				-- (not read: asked again next time, rather than taken as none)
				module:log("debug", "Could not read the bookmarks of '%s': %s", user, found);
				return;
			elseif found and type(data) == "table" then
				for _, id in ipairs(data) do
					local item = data[id];
					items[#items+1] = { id, item and item:get_child("conference", push.xmlns_bookmarks) or false };
				end
			end
		end
		core:bookmarks(user, items);
	end
end

-- XEP-0357 enable and disable.
local function add_requests(push, core)
	-- https://xmpp.org/extensions/xep-0357.html#enabling
	-- `who` describes the requester to the core (username, host, full_jid,
	-- client_id, resource); replies go through `origin`. Returns the new
	-- registration and its identifier once stored and answered.
	function push.enable(origin, who, stanza, user)
		-- (refused: nil, type, condition, text; else the record, its
		-- identifier, and whether to announce it: the core says whether
		-- anything hooks cloud_notify/registration, so that no event table
		-- is made for nobody, rule 119)
		local push_info, identifier, announce, text = core:enable(who, stanza, os.time());
		if not push_info then
			local error_type, condition = identifier, announce;
			module:log("debug", "Push enable refused: %s: %s", condition, text);
			origin.send(st.error_reply(stanza, error_type, condition, text));
			return;
		end
		if announce and module:fire_event("cloud_notify/registration", {
			origin = origin, stanza = stanza, push_info = push_info;
		}) == false then
			return; -- the handler replied
		end
		-- (handlers may have yielded, and the user left the cache meanwhile)
		if not push.load_user(user) then
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
			return;
		end
		local plan, error_type, error_condition, error_text = core:plan_enable(user, identifier, push_info, who.resource);
		if not plan then
			-- (e.g. cloud_notify/registration handlers grew the record past its bounds)
			module:log("warn", "Push registration %s of '%s' refused: %s", identifier, user, tostring(error_text));
			origin.send(st.error_reply(stanza, error_type, error_condition, error_text));
			return;
		end
		if not push.write_plan(user, plan) then
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
			return;
		end
		origin.send(st.reply(stanza));
		return push_info, identifier;
	end

	-- https://xmpp.org/extensions/xep-0357.html#disabling
	function push.disable(origin, stanza, user)
		-- (refused: nil, type, condition, text; nothing matched: nothing to write)
		local plan, error_type, condition, text = core:plan_disable(user, stanza);
		if not plan then
			origin.send(st.error_reply(stanza, error_type, condition, text));
			return;
		end
		if plan.held and not push.write_plan(user, plan) then
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
			return;
		end
		for identifier in pairs(plan.removed) do
			module:log("info", "Push notifications disabled for %s (%s)", user, identifier);
		end
		origin.send(st.reply(stanza));
	end
end

-- Push 2.0 enable and disable.
local function add_requests2(push, core)
	-- Push 2.0: enables the session's device; its identifier, or nil (an
	-- error was sent).
	function push.enable2(origin, stanza, user)
		local plan, error_type, condition, text = core:enable2(origin, stanza, os.time());
		if not plan then
			module:log("debug", "Push 2.0 enable refused: %s: %s", condition, text);
			origin.send(st.error_reply(stanza, error_type, condition, text));
			return nil;
		end
		if not push.write_plan(user, plan) then
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
			return nil;
		end
		origin.send(st.reply(stanza));
		return core:reattach2(user, origin.client_id, origin.resource);
	end

	-- Push 2.0: disables the session's device; whether it had a registration.
	function push.disable2(origin, stanza, user)
		local plan = core:disable2(user, origin);
		if plan and not push.write_plan(user, plan) then
			origin.send(st.error_reply(stanza, "wait", "internal-server-error"));
			return false;
		end
		if plan then
			module:log("info", "Push 2.0 notifications disabled for %s (%s)", user, next(plan.removed));
		end
		origin.send(st.reply(stanza));
		return plan ~= nil;
	end
end

-- Pings, answers, removals and retries.
local function add_answers(push, core)
	-- cloud-notify-ping: an empty push to all (or the given) registrations.
	function push.on_ping(event)
		local user = event.user;
		module:log("debug", "Handling event 'cloud-notify-ping' for user '%s'", user);
		push.ask(core.ping, user, event.push_services, time_now());
	end

	-- Answers of app servers (iq/host): one handler for all pushes, no hook
	-- per push.
	-- (Prosody's s2s bounces come from a dummy session: our own server's
	-- errors about the route, which never count against a registration)
	function push.on_answer(event)
		local bounced = event.origin ~= nil and event.origin.dummy == true;
		local _, outcome = push.ask(core.response, event.stanza, time_now(), bounced);
		-- (ours: no other handler gets it, also when its user could not be loaded)
		if outcome and (outcome.handled or outcome.load) then return true; end
	end

	-- Runs fn() after this event, in an async runner of its own (storage
	-- may yield), its errors logged.
	function push.later(fn, what)
		module:add_timer(0, function()
			async.runner(function()
				local ok, err = pcall(fn);
				if not ok then module:log("error", "Error %s: %s", what, err); end
			end):run(true);
		end);
	end

	-- A registration removed for its errors (or unanswered pushes).
	function push.drop(user, identifier)
		push.soon(user, function()
			if not push.load_user(user) then return; end
			local plan = core:plan_drop(user, identifier);
			if plan then push.write_plan(user, plan); end
		end, "disable "..identifier);
	end

	-- Retries of pushes answered with a wait error: one timer for all of
	-- them, set for the next one due.
	local retry_timer, retry_timer_at;
	function push.schedule_retries(delay)
		local now = time_now();
		-- (a timer whose time is long past has died: start another)
		if retry_timer and retry_timer_at <= now + delay and retry_timer_at > now - 5 then return; end
		if retry_timer then retry_timer:stop(); end
		retry_timer_at = now + delay;
		retry_timer = push.add_timer(delay, function()
			-- (the outcome sets the next one: the core says when)
			retry_timer, retry_timer_at = nil, nil;
			local ok, err = pcall(function() push.apply(core:retries_due(time_now())); end);
			if not ok then
				module:log("error", "Sending retries failed: %s", err);
				push.schedule_retries(1);
			end
		end);
	end
end

-- Gauges.
local function add_gauges(push, core, metrics)
	-- Gauges are read when statistics are collected (stats-update).
	function push.update_gauges()
		local stats = core:stats();
		metrics.gauge_outstanding():set(stats.pending);
		metrics.gauge_registrations():set(stats.registrations);
		metrics.gauge_users():set(stats.users);
		metrics.gauge_kept():set(stats.kept_bytes);
		metrics.gauge_counts_kept():set(stats.counts_kept_bytes);
		metrics.gauge_counts_dropped():set(stats.counts_dropped);
		for _, t in ipairs(core:service_changes()) do
			local service = t.service;
			if t.sent > 0 then metrics.count_service_push(service):add(t.sent); end
			for _, result in ipairs({ "delivered", "wait", "errors", "timeouts", "route" }) do
				if t[result] > 0 then metrics.count_service_answer(service, result):add(t[result]); end
			end
			for _, c in ipairs(t.conditions) do metrics.service_errors:with_labels(service, c[1], c[2]):add(c[3]); end
			if t.rtt_count > 0 then metrics.gauge_service_rtt(service):set(t.rtt_sum / t.rtt_count); end
		end
	end
end

-- Writes of users' error counts.
local function add_count_writes(push)
	-- App-server error counts are written back with the user's
	-- registrations, push_counts_write_interval after their first change
	-- (a tick writes those due, so the writes are spread as the changes
	-- were), and at shutdown; never once per answer (unread counts: the
	-- host's record, below). In a runner of their own, as
	-- storage may yield. A user stays listed (and in memory) until a write
	-- of theirs commits.
	-- One write queued or in flight per user: the core lists a write that
	-- never committed again an interval later, but a user whose write is
	-- still queued or under way (a store that hangs) is not queued again,
	-- so the queue holds each listed user once at most; a write under way
	-- for longer than a minute is logged, once.
	local queued, current = {}, nil;
	local count_writer = async.runner(function(user)
		current = { user = user, since = time_now() };
		local ok, err = pcall(push.write_current, user);
		current, queued[user] = nil, nil;
		if not ok then module:log("error", "Writing the counts of '%s' failed: %s", user, err); end
	end);
	function push.write_users(users)
		if not users then return; end
		for _, user in ipairs(users) do
			if not queued[user] then
				queued[user] = true;
				count_writer:run(user);
			end
		end
	end
	function push.check_writer(now)
		if current and not current.logged and now - current.since > 60 then
			current.logged = true;
			module:log("warn", "Writing the counts of '%s' has not finished after %ds; the other writes wait",
				current.user, math.floor(now - current.since));
		end
	end
end

-- The host's unread counts record.
local function add_counts_record(push, core)
	-- Unread counts are one record for the host (every user's: those in
	-- memory and those the core keeps for users who left it), in a store
	-- of their own: read when the module loads, written when they changed,
	-- once a push_counts_write_interval at most, and at shutdown and
	-- unload. Never a write of a user's registrations for a count.
	-- The record is the host's (user nil), a table of text parts of at
	-- most 1 MiB (what every SQL column type holds): `parts` = n, `part1`…
	local counts_store = module:open_store(module.name.."_counts");
	local part_size = 1024 * 1024;
	function push.read_counts()
		local ok, stored, err = pcall(counts_store.get, counts_store, nil);
		if not ok or (stored == nil and err) then
			module:log("warn", "Could not read the unread counts (they start from the registrations' records): %s",
				ok and err or stored);
			stored = nil;
		end
		local record;
		if type(stored) == "table" and math.type(tonumber(stored.parts)) == "integer" then
			local parts = {};
			for i = 1, tonumber(stored.parts) do
				parts[i] = type(stored["part"..i]) == "string" and stored["part"..i] or "";
			end
			record = table.concat(parts);
		end
		local n = core:read_counts_record(record);
		module:log("debug", "Unread counts of %d user(s) read", n);
	end
	local record_writer = async.runner(function(job)
		local value = { parts = 0 };
		for at = 1, #job.record, part_size do
			value.parts = value.parts + 1;
			value["part"..value.parts] = job.record:sub(at, at + part_size - 1);
		end
		local ok, err = counts_store:set(nil, value);
		if ok then
			core:counts_record_written(job.serial);
		else
			module:log("error", "Writing the unread counts failed: %s", err);
		end
	end);
	local function write_record(force)
		local record, serial = core:counts_record(time_now(), force);
		if record then record_writer:run({ record = record, serial = serial }); end
	end
	function push.write_counts()
		push.write_users(core:counts_to_write());
		write_record(true);
	end
	function push.write_counts_logged()
		local ok, err = pcall(push.write_counts);
		if not ok then module:log("error", "Writing unread counts failed: %s", err); end
	end
	push.counts_interval = core:counts_tick();
	function push.counts_timer()
		push.check_writer(time_now());
		local ok, err = pcall(function()
			push.write_users(core:counts_aged(time_now()));
			write_record(false);
		end);
		if not ok then module:log("error", "Writing unread counts failed: %s", err); end
		return push.counts_interval;
	end
end

-- What goes out at shutdown, and the sweep.
local function add_upkeep(push, core)
	-- What the grace period holds goes out now (unload, shutdown): nothing
	-- held is lost.
	function push.release_held()
		local ok, err = pcall(function() push.apply(core:release_held(time_now())); end);
		if not ok then module:log("error", "Sending held pushes failed: %s", err); end
	end
	function push.on_server_stopping()
		push.release_held();
		push.write_counts_logged();
	end

	-- Pushes nobody answered (an answer after that is not ours): retried
	-- like a wait error and never counted; on the MUC module they count as
	-- errors instead: registrations whose app server never answers age out.
	push.sweep_interval = core:sweep_interval();
	function push.sweep_timer()
		push.apply(core:expire(time_now()), true);
		return push.sweep_interval;
	end
end

-- The host's push service: the object both shims call `push` (the core's
-- object, in it and in the shims, is `core`). `push.on_removed(user, removed)`, if set, is
-- called after registrations were removed (to release sessions).
function lib.new(options)
	local cloud_notify = load_core();
	-- get_handlers: the core shares notification payloads between pushes
	-- only while nothing hooks cloud_notify/push.
	local host_events = prosody.hosts[module.host].events;
	local core, problems = cloud_notify.new(module.host, options, st.stanza_mt, host_events.get_handlers);
	log_all("error", problems);
	local push = { core = core, version = cloud_notify.version };
	push.store = module:open_store();
	-- Push 2.0 registrations: mod_push2's store and layout (not on MUC).
	push.store2 = core:push2() and module:open_store("push2_registrations") or nil;
	local metrics = add_metrics(push);
	add_might_push(push, core);
	add_timers(push);
	add_fail_open(push, metrics);
	add_locked(push, new_locks());
	add_loading(push, core, metrics);
	add_scan(push, core);
	add_writing(push, core);
	add_sending(push, core, metrics);
	add_outcomes(push, core, metrics);
	add_bookmarks(push, core);
	add_requests(push, core);
	add_requests2(push, core);
	add_answers(push, core);
	add_gauges(push, core, metrics);
	add_count_writes(push);
	add_counts_record(push, core);
	add_upkeep(push, core);
	return push;
end

return lib;
