-- The shim and the compiled core together, under Lua 5.4, with Prosody's
-- real util.stanza and a stand-in for the module API.

local stand_in = require "spec.stand_in";
local st = require "util.stanza";
local async = require "util.async";

local function pubsub_parts(iq)
	local pubsub = iq:get_child("pubsub", "http://jabber.org/protocol/pubsub");
	local publish = pubsub:get_child("publish");
	local notification = publish:get_child("item"):get_child("notification", "urn:xmpp:push:0");
	local form = notification:get_child("x", "jabber:x:data");
	local fields = {};
	for field in form:childtags("field") do
		fields[field.attr.var] = field:get_child_text("value");
	end
	return pubsub, publish, notification, fields;
end

-- An error reply's type and condition.
local function error_of(reply)
	local err_type, condition = reply:get_error();
	return err_type, condition;
end

local m, romeo;
local host_counter = 0;

-- A host of its own for each test, with romeo's session.
local function fresh_host()
	host_counter = host_counter + 1;
	m = stand_in.load("host" .. host_counter .. ".example", { push_max_errors = 3 });
	romeo = stand_in.session(m, "romeo");
end

-- Every call of the store's `method` waits until the test lets it go on.
local function pausing_store(method)
	return stand_in.pausing_store(m, method, function() return true; end);
end

local function in_runner(fn)
	async.runner(function(f) f(); end):run(fn);
end

-- Runs the timers due (the lock hands over from the event loop).
local function run_timers()
	while #m.timers > 0 do
		local timers = m.timers;
		m.timers = {};
		for _, timer in ipairs(timers) do
			if not timer.stopped and timer.delay == 0 then timer.fn(); end
		end
	end
end

describe("mod_cloud_notify (1 of 14)", function()
	before_each(fresh_host);

	it("advertises urn:xmpp:push:0 in account disco", function()
		local disco = "http://jabber.org/protocol/disco#info";
		local reply = st.reply(st.iq({ type = "get", id = "d", from = romeo.full_jid })):query(disco);
		m:fire_event("account-disco-info", { reply = reply });
		local feature = reply:get_child("query", disco):get_child("feature");
		assert.equal("urn:xmpp:push:0", feature.attr.var);
	end);

	it("stores the reference layout and marks the session", function()
		local reply = stand_in.enable(m, romeo, "push.example", "node1", stand_in.publish_options("s3"));
		assert.equal("result", reply.attr.type);
		local stored = m.store.data.romeo["push.example<node1"];
		assert.equal("push.example", stored.jid);
		assert.equal("node1", stored.node);
		assert.equal("phone", stored.resource);
		assert.equal("en", stored.language);
		assert.equal("number", type(stored.timestamp));
		assert.equal("x", stored.options.name);
		assert.equal("jabber:x:data", stored.options.attr.xmlns);
		assert.equal("push.example<node1", romeo.push_identifier);
		assert.equal("push.example", romeo.push_settings.jid);
	end);

	it("builds a util.stanza publish for an offline message", function()
		stand_in.enable(m, romeo, "push.example", "node1", stand_in.publish_options("s3"));
		stand_in.offline(m, "romeo@" .. m.host, "secret words");
		assert.equal(1, #m.sent);
		local iq = m.sent[1];
		assert.truthy(st.is_stanza(iq));
		assert.equal("set", iq.attr.type);
		assert.equal(m.host, iq.attr.from);
		assert.equal("push.example", iq.attr.to);
		local pubsub, publish, _, fields = pubsub_parts(iq);
		assert.equal("node1", publish.attr.node);
		assert.same({ FORM_TYPE = "urn:xmpp:push:summary", ["message-count"] = "1",
			["last-message-body"] = "New Message!" }, fields);
		local options = pubsub:get_child("publish-options"):get_child("x", "jabber:x:data");
		assert.truthy(tostring(options):find("s3", 1, true));
		assert.falsy(tostring(iq):find("secret words", 1, true));
		assert.falsy(tostring(iq):find("juliet", 1, true));
	end);

	it("ships the publish IQ the core builds (stand_in checks every push)", function()
		local checked = stand_in.pushes_checked;
		stand_in.enable(m, romeo, "push.example", "node1", stand_in.publish_options("s3"));
		-- (another device: one device enabling again replaces its own)
		stand_in.enable(m, stand_in.session(m, "romeo", "tablet"), "push.example", nil);
		stand_in.offline(m, "romeo@" .. m.host, "one");
		stand_in.offline(m, "romeo@" .. m.host, "two"); -- (the shared payload, from the cache)
		assert.equal(4, #m.sent);
		assert.equal(checked + 4, stand_in.pushes_checked);
		assert.same({}, stand_in.push_mismatches);
		-- The check can fail: a payload changed after the fact is told apart.
		local core = package.loaded["cloud_notify"];
		local event;
		m:hook("cloud_notify/push", function(e) event = e; end);
		stand_in.offline(m, "romeo@" .. m.host, "three");
		assert.is_true((core.check_push(event)));
		event.notification_payload:tag("extra", { xmlns = "urn:example" }):up();
		local same, expected, got = core.check_push(event);
		assert.is_false(same);
		assert.falsy(expected:find("extra", 1, true));
		assert.truthy(got:find("extra", 1, true));
	end);
end);

describe("mod_cloud_notify (2 of 14)", function()
	before_each(fresh_host);

	it("lets cloud_notify/push handlers change or block a push", function()
		stand_in.enable(m, romeo, "push.example", "node1");
		local seen;
		m:hook("cloud_notify/push", function(event)
			seen = event;
			event.notification_payload:tag("extra", { xmlns = "urn:example" }):up();
		end, 10);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		assert.equal("romeo", seen.username);
		assert.equal(true, seen.important);
		assert.equal("New Message!", seen.push_summary["last-message-body"]);
		assert.equal("push.example", seen.push_info.jid);
		assert.equal("hi", seen.original_stanza:get_child_text("body"));
		assert.truthy(m.sent[1]:find("{http://jabber.org/protocol/pubsub}pubsub/publish/item/{urn:xmpp:push:0}notification/{urn:example}extra"));
		m:hook("cloud_notify/push", function(event) event.reason = "test"; return true; end, 20);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		assert.equal(1, #m.sent);
	end);

	it("hands every push an original_stanza, a ping a bodiless message from the host", function()
		stand_in.enable(m, romeo, "push.example", "node1");
		local seen = {};
		m:hook("cloud_notify/push", function(event) seen[#seen+1] = event.original_stanza; end);
		m:fire_event("cloud-notify-ping", { user = "romeo" });
		assert.equal(1, #seen);
		local ping = seen[1];
		assert.equal("message", ping.name);
		assert.same({ from = m.host, type = "headline" }, ping.attr);
		assert.is_nil(ping:get_child("body"));
		assert.equal(0, #ping.tags);
	end);

	it("shares a notification payload between pushes only while nothing hooks cloud_notify/push", function()
		-- (one message, two registrations: one summary, each with its count 1)
		stand_in.enable(m, romeo, "push.example", "node1");
		stand_in.enable(m, stand_in.session(m, "romeo", "tablet"), "push.example", "node2");
		stand_in.offline(m, "romeo@" .. m.host, "one");
		local _, _, first = pubsub_parts(m.sent[1]);
		local _, _, second = pubsub_parts(m.sent[2]);
		assert.equal(first, second);
		assert.are_not.equal(m.sent[1], m.sent[2]);
		-- A handler may change one push's payload: from then on, each its own.
		local calls = 0;
		m:hook("cloud_notify/push", function(event)
			calls = calls + 1;
			if calls == 1 then
				event.notification_payload:tag("extra", { xmlns = "urn:example" }):up();
			end
		end);
		stand_in.offline(m, "romeo@" .. m.host, "two");
		local _, _, third = pubsub_parts(m.sent[3]);
		local _, _, fourth = pubsub_parts(m.sent[4]);
		assert.are_not.equal(third, fourth);
		assert.truthy(third:get_child("extra", "urn:example"));
		assert.falsy(fourth:get_child("extra", "urn:example"));
		assert.falsy(first:get_child("extra", "urn:example"));
		-- (the second message: the count is 2 for both)
		assert.equal(tostring(first):gsub(">1<", ">2<"), tostring(fourth));
	end);

	it("shares publish-options and leaves push_info out only while nothing hooks cloud_notify/push", function()
		-- (two registrations with the same form, one with another)
		stand_in.enable(m, romeo, "push.example", "node1", stand_in.publish_options("s1"));
		stand_in.enable(m, stand_in.session(m, "romeo", "tablet"), "push.example", "node2",
			stand_in.publish_options("s1"));
		stand_in.enable(m, stand_in.session(m, "romeo", "laptop"), "push.example", "node3",
			stand_in.publish_options("s2"));
		stand_in.offline(m, "romeo@" .. m.host, "one");
		assert.equal(3, #m.sent);
		local function options(iq)
			return (pubsub_parts(iq)):get_child("publish-options");
		end
		local by_node = {};
		for _, iq in ipairs(m.sent) do by_node[(select(2, pubsub_parts(iq))).attr.node] = options(iq); end
		assert.equal(by_node.node1, by_node.node2);
		assert.are_not.equal(by_node.node1, by_node.node3);
		assert.truthy(tostring(by_node.node3):find("s2", 1, true));
		assert.falsy(tostring(by_node.node3):find("s1", 1, true));
		-- (the event is the shim's alone: what only handlers read is left out)
		assert.is_nil(stand_in.last_push_event.push_info);
		assert.is_nil(stand_in.last_push_event.original_stanza);
		-- Pushed again: the same element; hooked, each push its own, whole event.
		stand_in.offline(m, "romeo@" .. m.host, "two");
		assert.equal(by_node.node1, options(m.sent[4]));
		local events = {};
		m:hook("cloud_notify/push", function(event) events[#events+1] = event; end);
		stand_in.offline(m, "romeo@" .. m.host, "three");
		assert.equal(3, #events);
		for i = 7, 9 do
			local own = options(m.sent[i]);
			for _, shared in pairs(by_node) do assert.are_not.equal(shared, own); end
		end
		assert.equal("push.example", events[1].push_info.jid);
		assert.truthy(events[1].original_stanza);
		assert.truthy(events[1].push_summary);
	end);

	it("lets cloud_notify/registration handlers veto", function()
		m:hook("cloud_notify/registration", function(event)
			event.origin.send(st.error_reply(event.stanza, "cancel", "not-allowed"));
			return false;
		end);
		local reply = stand_in.enable(m, romeo, "push.example", "node1");
		assert.equal("error", reply.attr.type);
		assert.is_nil(m.store.data.romeo);
		assert.is_nil(romeo.push_identifier);
	end);
end);

describe("mod_cloud_notify (3 of 14)", function()
	before_each(fresh_host);

	it("keeps what cloud_notify/registration handlers put on push_info, nested, for every push", function()
		m:hook("cloud_notify/registration", function(event)
			event.push_info.encryption = { algorithm = "aes-128-gcm", key_base64 = "a2V5" };
			event.push_info.muted_jids = { ["spam@example.org"] = true };
			event.push_info.groupchat_rules = { ["room@muc.example"] = { when = "mentioned", nick = "romeo" } };
			event.push_info.list = { 1, 2.5, "three", { deep = { deeper = true } } };
		end);
		assert.equal("result", stand_in.enable(m, romeo, "push.example", "node1").attr.type);
		local stored = m.store.data.romeo["push.example<node1"];
		assert.same({ algorithm = "aes-128-gcm", key_base64 = "a2V5" }, stored.encryption);
		assert.same({ ["spam@example.org"] = true }, stored.muted_jids);
		assert.same({ ["room@muc.example"] = { when = "mentioned", nick = "romeo" } }, stored.groupchat_rules);
		assert.same({ 1, 2.5, "three", { deep = { deeper = true } } }, stored.list);
		assert.equal("integer", math.type(stored.list[1]));
		assert.equal("float", math.type(stored.list[2]));
		local seen = {};
		m:hook("cloud_notify/push", function(event) seen[#seen+1] = event.push_info; end);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		-- A new user object reads the store again (as after a restart).
		local m2 = stand_in.load("again." .. m.host, {});
		m2.store.data.romeo = m.store.data.romeo;
		m2:hook("cloud_notify/push", function(event) seen[#seen+1] = event.push_info; end);
		stand_in.offline(m2, "romeo@again." .. m.host, "hi");
		assert.equal(2, #seen);
		for _, push_info in ipairs(seen) do
			assert.same(stored.encryption, push_info.encryption);
			assert.same(stored.groupchat_rules, push_info.groupchat_rules);
			assert.same(stored.list, push_info.list);
		end
	end);

	it("keeps stored registrations with large other fields, and their bytes as they are", function()
		local muted = {};
		for i = 1, 1000 do muted["someone" .. i .. "@example.org"] = true; end
		m.store.data.romeo = {
			["push.example<old"] = { jid = "push.example", node = "old", timestamp = 100,
				muted_jids = muted, raw = "\255\0\128" };
		};
		local tablet = stand_in.session(m, "romeo", "tablet");
		assert.equal("result", stand_in.enable(m, tablet, "push.example", "tablet").attr.type);
		local old = m.store.data.romeo["push.example<old"];
		assert.truthy(old, "dropped from the store");
		assert.same(muted, old.muted_jids);
		assert.equal("\255\0\128", old.raw);
	end);

	it("refuses a registration its handlers grew past the bounds, and one holding a function", function()
		local grow;
		m:hook("cloud_notify/registration", function(event) grow(event.push_info); end);
		grow = function(push_info)
			local blob = {};
			for i = 1, 1000 do blob[i] = ("%020d"):format(i); end
			push_info.blob = blob;
		end;
		local reply = stand_in.enable(m, romeo, "push.example", "big");
		assert.same({ "modify", "not-acceptable" }, { error_of(reply) });
		grow = function(push_info)
			local t = {};
			t.self = t; -- a table inside itself: too deep, never a stack overflow
			push_info.loop = t;
		end;
		reply = stand_in.enable(m, romeo, "push.example", "loop");
		assert.same({ "modify", "not-acceptable" }, { error_of(reply) });
		grow = function(push_info) push_info.callback = print; end;
		reply = stand_in.enable(m, romeo, "push.example", "fn");
		assert.same({ "modify", "not-acceptable" }, { error_of(reply) });
		assert.is_nil(m.store.data.romeo);
		assert.is_nil(romeo.push_identifier);
	end);
end);

describe("mod_cloud_notify (4 of 14)", function()
	before_each(fresh_host);

	it("sends the other pushes when a cloud_notify/push handler raises", function()
		for _, node in ipairs({ "a", "raise", "b" }) do
			stand_in.enable(m, stand_in.session(m, "romeo", "device-"..node), "push.example", node);
		end
		m.sent = {};
		m:hook("cloud_notify/push", function(event)
			if event.push_info.node == "raise" then error("on purpose"); end
		end);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		local nodes = {};
		for _, iq in ipairs(m.sent) do
			local _, publish = pubsub_parts(iq);
			nodes[#nodes+1] = publish.attr.node;
		end
		table.sort(nodes);
		assert.same({ "a", "b" }, nodes);
		m:fire_event("global/stats-update", {});
		assert.equal(2, m.metrics.outstanding.values[""]);
		assert.equal(1, m.metrics.handler_errors.values["offline"]);
	end);

	it("serialises a user's changes when store writes yield", function()
		local paused = pausing_store("set");
		local tablet = stand_in.session(m, "romeo", "tablet");
		in_runner(function() stand_in.enable(m, romeo, "push.example", "phone"); end);
		in_runner(function() stand_in.enable(m, tablet, "push.example", "tablet"); end);
		-- The phone's write is under way; the tablet waits for it.
		assert.equal(1, #paused);
		paused[1]();
		run_timers();
		assert.equal(2, #paused);
		paused[2]();
		run_timers();
		assert.equal("result", romeo.replies[1].attr.type);
		assert.equal("result", tablet.replies[1].attr.type);
		assert.truthy(m.store.data.romeo["push.example<phone"]);
		assert.truthy(m.store.data.romeo["push.example<tablet"]);
		m.sent = {};
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		assert.equal(2, #m.sent);
	end);

	it("lets every waiter go at unload, the one the lock was being handed to too", function()
		local paused = pausing_store("set");
		local tablet = stand_in.session(m, "romeo", "tablet");
		in_runner(function() stand_in.enable(m, romeo, "push.example", "phone"); end);
		in_runner(function() stand_in.enable(m, tablet, "push.example", "tablet"); end);
		paused[1](); -- the phone's write lands; the lock is handed to the tablet's enable...
		assert.equal(0, #tablet.replies);
		m.unload(); -- ... but the module unloads before that tick
		assert.equal(1, #tablet.replies, "the tablet's enable was never answered");
		assert.equal("error", tablet.replies[1].attr.type);
		run_timers(); -- (the hand-over's timer, if it ever ran, does nothing)
		assert.equal(1, #tablet.replies);
	end);
end);

describe("mod_cloud_notify (5 of 14)", function()
	before_each(fresh_host);

	it("hands the lock down a long line of waiters without nesting", function()
		local paused = pausing_store("set");
		local devices = {};
		for i = 1, 300 do
			devices[i] = stand_in.session(m, "romeo", "d" .. i);
			in_runner(function() stand_in.enable(m, devices[i], "push.example", "n" .. (i % 3)); end);
		end
		-- Each write lands; the next enable gets the lock from the event loop.
		local done = 0;
		while done < #paused do
			done = done + 1;
			paused[done]();
			run_timers();
		end
		for i = 1, 300 do
			assert.equal("result", devices[i].replies[1] and devices[i].replies[1].attr.type, "device " .. i);
		end
		-- And the lock is free: the next enable goes straight to its write.
		in_runner(function() stand_in.enable(m, romeo, "push.example", "last"); end);
		assert.equal(301, #paused);
		paused[301]();
		assert.equal("result", romeo.replies[1].attr.type);
	end);

	it("never loads a read older than a commit made meanwhile, even once evicted", function()
		local m1 = stand_in.load("stale." .. m.host, { push_registration_cache_size = 1 });
		m = m1; -- (for pausing_store)
		local phone = stand_in.session(m1, "romeo", "phone");
		local tablet = stand_in.session(m1, "romeo", "tablet");
		local paused = pausing_store("get");
		in_runner(function() stand_in.offline(m1, "romeo@" .. m1.host, "hi"); end); -- B: its read is under way
		in_runner(function() stand_in.enable(m1, phone, "push.example", "phone"); end); -- A
		assert.equal(2, #paused);
		paused[2](); -- A reads, writes, commits
		assert.equal("result", phone.replies[1].attr.type);
		m1.store.get = function(self, user) return self.data[user]; end; -- no more pauses
		stand_in.offline(m1, "juliet@" .. m1.host, "x"); -- evicts romeo (cache of one)
		paused[1](); -- B's old read lands: read again, not loaded as it was
		stand_in.enable(m1, tablet, "push.example", "tablet");
		assert.truthy(m1.store.data.romeo["push.example<tablet"]);
		assert.truthy(m1.store.data.romeo["push.example<phone"], "phone lost from the store");
	end);

	it("re-checks a resumed session after its user's read yielded (its registration gone meanwhile)", function()
		local m1 = stand_in.load("resume." .. m.host, { push_registration_cache_size = 1 });
		m = m1; -- (for pausing_store)
		local phone = stand_in.session(m1, "romeo", "phone");
		stand_in.enable(m1, phone, "push.example", "phone");
		stand_in.offline(m1, "juliet@" .. m1.host, "x"); -- evicts romeo (cache of one)
		local paused = pausing_store("get");
		local ok, err;
		async.runner(function()
			ok, err = pcall(m1.fire_event, m1, "smacks-hibernation-end", { resumed = phone, origin = phone });
		end):run(true);
		assert.equal(1, #paused); -- romeo's read is under way
		phone.push_identifier = nil; -- disabled meanwhile (another device, the app server)
		paused[1]();
		assert.is_true(ok, err);
		assert.is_nil(phone.push_identifier);
	end);
end);

describe("mod_cloud_notify (6 of 14)", function()
	before_each(fresh_host);

	it("fails open: a stanza goes on when a handler fails, counted and logged once a minute", function()
		stand_in.enable(m, romeo, "push.example", "phone");
		romeo.push_identifier = {}; -- a session field another module broke: the core refuses it
		local logged = 0;
		local plain_log = m.log;
		m.log = function(self, level, message, ...)
			if level == "error" and message:find("goes on without push", 1, true) then logged = logged + 1; end
			return plain_log(self, level, message, ...);
		end;
		local msg = st.message({ to = "juliet@example.com", type = "chat" }):text_tag("body", "hi");
		for _ = 1, 3 do
			assert.is_nil(m:fire_event("pre-message/bare", { origin = romeo, stanza = msg }));
		end
		assert.equal(3, m.metrics.hook_errors.values["pre-message/bare"]);
		assert.equal(1, logged);
		-- An IQ handler that fails answers the request.
		local enable = stand_in.enable_iq(romeo, "push.example", "node2");
		romeo.username = {}; -- (as broken)
		assert.is_true(m:fire_event("iq-set/self/urn:xmpp:push:0:enable", { origin = romeo, stanza = enable }));
		assert.equal("error", romeo.replies[#romeo.replies].attr.type);
		m.log = plain_log;
	end);

	it("writes no record per app-server answer: error counts go with the counts' write-back", function()
		stand_in.enable(m, romeo, "push.example", "phone");
		local writes = 0;
		local plain_set = m.store.set;
		m.store.set = function(...) writes = writes + 1; return plain_set(...); end;
		for i = 1, 20 do -- a flapping app server: error, result, error…
			stand_in.offline(m, "romeo@" .. m.host, "hi " .. i);
			local kind = i % 2 == 1 and "error" or "result";
			stand_in.answer(m, m.sent[#m.sent], kind, "cancel", "item-not-found");
		end
		assert.equal(0, writes);
		m:fire_event("global/server-stopping", {}); -- (and what is owed is written)
		assert.equal(1, writes);
		assert.is_nil(m.store.data.romeo["push.example<phone"].error_count);
		m.store.set = plain_set;
	end);

	it("never loads a read older than a commit, whatever reads began after it", function()
		local m1 = stand_in.load("stale3." .. m.host, { push_registration_cache_size = 1 });
		m = m1; -- (for pausing_store)
		local phone = stand_in.session(m1, "romeo", "phone");
		stand_in.enable(m1, phone, "push.example", "phone");
		stand_in.offline(m1, "juliet@" .. m1.host, "x"); -- evicts romeo
		local paused = pausing_store("get");
		in_runner(function() stand_in.offline(m1, "romeo@" .. m1.host, "a"); end); -- A: reads the phone
		m1.store.get = function(self, user) return self.data[user]; end;
		stand_in.disable(m1, phone, "push.example", "phone"); -- the phone is lost: disabled
		assert.is_nil(next(m1.store.data.romeo or {}));
		stand_in.offline(m1, "juliet@" .. m1.host, "y"); -- evicts romeo again
		local pause = true;
		stand_in.pausing_store(m1, "get", function() return pause; end, paused);
		in_runner(function() stand_in.offline(m1, "romeo@" .. m1.host, "b"); end); -- C: begins after
		assert.equal(2, #paused);
		pause = false;
		paused[2](); -- C lands first, and is loaded
		stand_in.offline(m1, "juliet@" .. m1.host, "z"); -- evicts romeo
		m1.sent = {};
		paused[1](); -- A's read, from before the disable, lands: read again
		assert.equal(0, #m1.sent, "the disabled phone came back");
		stand_in.offline(m1, "romeo@" .. m1.host, "c");
		assert.equal(0, #m1.sent, "the disabled phone came back");
	end);
end);

describe("mod_cloud_notify (7 of 14)", function()
	before_each(fresh_host);

	it("queues one error-count write per user however long the store hangs", function()
		local m1 = stand_in.load("hang." .. m.host, { push_counts_write_interval = 1 });
		m = m1; -- (for pausing_store)
		local phone = stand_in.session(m1, "romeo", "phone");
		stand_in.enable(m1, phone, "push.example", "phone");
		local paused = pausing_store("set"); -- every write hangs from now on
		stand_in.offline(m1, "romeo@" .. m1.host, "hi");
		stand_in.answer(m1, m1.sent[#m1.sent], "error", "cancel", "item-not-found"); -- an error count to write
		local counts_timer;
		for _, timer in ipairs(m1.timers) do
			if timer.delay == 1 then counts_timer = timer; end
		end
		for _ = 1, 8 do
			local t0 = os.clock(); while os.clock() - t0 < 0.3 do end
			counts_timer.fn(); -- listed again and again: the store never answers
		end
		assert.equal(1, #paused);
		paused[1](); -- the store answers at last
		assert.equal(1, m1.store.data.romeo["push.example<phone"].error_count);
		-- Nothing was queued behind it meanwhile.
		assert.equal(1, #paused, "a write queued again while one was under way");
	end);

	it("keeps unread counts in one record for the host, never in a write of the user's", function()
		local m1 = stand_in.load("record." .. m.host, { push_registration_cache_size = 1 });
		local phone = stand_in.session(m1, "romeo", "phone");
		stand_in.enable(m1, phone, "push.example", "phone");
		local juliet = stand_in.session(m1, "juliet", "phone");
		stand_in.enable(m1, juliet, "push.example", "j");
		local writes = 0;
		local plain_set = m1.store.set;
		m1.store.set = function(...) writes = writes + 1; return plain_set(...); end;
		for i = 1, 5 do -- (romeo and juliet take turns in a cache of one)
			stand_in.offline(m1, "romeo@" .. m1.host, "hi " .. i);
			stand_in.offline(m1, "juliet@" .. m1.host, "hi " .. i);
		end
		assert.equal(0, writes);
		m1:fire_event("global/server-stopping", {});
		assert.equal(0, writes);
		local stored = m1.stores.cloud_notify_counts.data[false];
		assert.equal(1, stored.parts);
		local record = stored.part1;
		assert.is_string(record);
		assert.truthy(record:match("\nromeo\t") and record:match("\njuliet\t"));
		-- The next run reads it: the counts go on.
		m1.store.set = plain_set;
		local m2 = stand_in.load("record." .. m.host, { stores = m1.stores });
		local count_of = function(push)
			local form = push:find("{http://jabber.org/protocol/pubsub}pubsub/publish/item/{urn:xmpp:push:0}notification/{jabber:x:data}x");
			for field in form:childtags("field") do
				if field.attr.var == "message-count" then return field:get_child_text("value"); end
			end
		end
		m2.sent = {};
		stand_in.offline(m2, "romeo@" .. m2.host, "again");
		assert.equal("6", count_of(m2.sent[1]));
	end);
end);

describe("mod_cloud_notify (8 of 14)", function()
	before_each(fresh_host);

	it("reads nothing for a stranger's stanzas to users known to have no registration", function()
		local stored = { romeo = { ["push.example<phone"] = { jid = "push.example", node = "phone", timestamp = 1 } } };
		local m1 = stand_in.load("known." .. m.host, { store_lists_users = true, stored = stored });
		local function reads() return m1.store.reads; end
		for i = 1, 2000 do
			local user = "nobody" .. i;
			m1:fire_event("presence/bare", { stanza = st.presence({ to = user .. "@" .. m1.host,
				from = "mallory@evil.example", type = "subscribe" }) });
			m1:fire_event("message/bare", { stanza = st.message({ to = user .. "@" .. m1.host,
				from = "push.example" }):tag("event", { xmlns = "http://jabber.org/protocol/pubsub#event" })
				:tag("affiliations", { node = "phone" }):tag("affiliation", { jid = user .. "@" .. m1.host,
				affiliation = "none" }) });
			stand_in.offline(m1, user .. "@" .. m1.host, "hi");
			if i <= 20 then -- (and what they send: a marker, a call's answer)
				local session = stand_in.session(m1, user, "laptop");
				m1:fire_event("pre-message/bare", { origin = session, stanza = st.message({ to = "juliet@capulet.lit" })
					:tag("displayed", { xmlns = "urn:xmpp:chat-markers:0", id = "m1" }):up() });
			end
		end
		assert.equal(0, reads());
		m1:fire_event("global/stats-update", {});
		assert.equal(0, m1.metrics.users_loaded.values[""]); -- nor a cache slot
		-- The one user with registrations is read, and pushed.
		stand_in.offline(m1, "romeo@" .. m1.host, "hi");
		assert.equal(1, reads());
		assert.equal(1, #m1.sent);
		-- Someone enabling for the first time is not read either.
		local juliet = stand_in.session(m1, "juliet", "phone");
		assert.equal("result", stand_in.enable(m1, juliet, "push.example", "j").attr.type);
		assert.equal(1, reads());
		m1.sent = {};
		stand_in.offline(m1, "juliet@" .. m1.host, "hi");
		assert.equal(1, #m1.sent);
	end);

	it("re-reads only for a commit of the same user, not of another", function()
		local paused = pausing_store("get");
		local juliet = stand_in.session(m, "juliet", "phone");
		in_runner(function() stand_in.offline(m, "romeo@" .. m.host, "hi"); end); -- romeo's read waits
		m.store.get = function(self, user) return self.data[user]; end;
		stand_in.enable(m, juliet, "push.example", "j"); -- juliet's commit meanwhile
		paused[1]();
		-- romeo once, juliet once: no re-read (each load reads the module's
		-- store and mod_push2's: these stores list no users)
		assert.equal(4, m.metrics.store_reads.values[""]);
	end);
end);

describe("mod_cloud_notify (9 of 14)", function()
	before_each(fresh_host);

	it("keeps sending retries after a send failed, and a re-attached device's old session stops pushing", function()
		local m1 = stand_in.load("retry." .. m.host, { push_retry_delays = { 0.001 } });
		local phone = stand_in.session(m1, "romeo", "phone");
		stand_in.enable(m1, phone, "push.example", "phone");
		stand_in.offline(m1, "romeo@retry." .. m.host, "hi");
		local plain_send = m1.send;
		m1.send = function() error("routing failed"); end;
		stand_in.answer(m1, m1.sent[1], "error", "wait", "resource-constraint");
		local timer = m1.timers[#m1.timers];
		local t0 = os.clock(); while os.clock() - t0 < 0.005 do end -- the retry is due
		timer.fn(); -- the retry's send raised: logged, and the timer set again
		assert.truthy(m1.logs[#m1.logs].text:find("Sending retries failed", 1, true));
		m1.send = plain_send;
		-- The next throttled push is retried again (the timer is not stuck).
		stand_in.offline(m1, "romeo@retry." .. m.host, "again");
		stand_in.answer(m1, m1.sent[#m1.sent], "error", "wait", "resource-constraint");
		local before = #m1.sent;
		t0 = os.clock(); while os.clock() - t0 < 0.005 do end
		m1.timers[#m1.timers].fn();
		assert.equal(before + 1, #m1.sent);
		-- A new session of the phone's resource takes its registration over.
		local new = stand_in.session(m1, "romeo", "phone2");
		new.resource = "phone";
		m1:fire_event("resource-bind", { session = new });
		assert.equal("push.example<phone", new.push_identifier);
		assert.is_nil(phone.push_identifier);
	end);

	it("keeps what was loaded meanwhile when a store read yields", function()
		local paused = pausing_store("get");
		in_runner(function() stand_in.enable(m, romeo, "push.example", "phone"); end);
		-- A message arrives while the enable's read is under way: its own read waits too.
		in_runner(function() stand_in.offline(m, "romeo@" .. m.host, "hi"); end);
		assert.equal(2, #paused);
		paused[1](); -- the enable reads nothing, stores the phone
		assert.equal("result", romeo.replies[1].attr.type);
		m.sent = {};
		paused[2](); -- the message's older read must not undo it
		assert.equal(1, #m.sent);
	end);

	it("trims registrations beyond a lowered push_max_devices in the store, and their sessions stop pushing", function()
		local m1 = stand_in.load("trim." .. m.host, { push_max_devices = 1 });
		m1.store.data.romeo = {
			["push.example<old"] = { jid = "push.example", node = "old", timestamp = 100 };
			["push.example<new"] = { jid = "push.example", node = "new", timestamp = 200 };
		};
		local phone = stand_in.session(m1, "romeo", "phone");
		phone.push_identifier = "push.example<old";
		stand_in.offline(m1, "romeo@trim." .. m.host, "hi");
		assert.equal(1, #m1.sent);
		assert.is_nil(m1.store.data.romeo["push.example<old"]);
		assert.truthy(m1.store.data.romeo["push.example<new"]);
		assert.is_nil(phone.push_identifier);
	end);

	it("answers internal-server-error and changes nothing when the store fails", function()
		m.store.fail = true;
		local reply = stand_in.enable(m, romeo, "push.example", "node1");
		assert.equal("error", reply.attr.type);
		local err_type, condition = reply:get_error();
		assert.equal("wait", err_type);
		assert.equal("internal-server-error", condition);
		assert.is_nil(romeo.push_identifier);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		assert.equal(0, #m.sent);
	end);
end);

describe("mod_cloud_notify (10 of 14)", function()
	before_each(fresh_host);

	it("pushes nothing, answers internal-server-error and changes nothing when the store can't be read", function()
		local record = { jid = "push.example", node = "n", timestamp = 1 };
		m.store.data.romeo = { ["push.example<n"] = record };
		local function logged(text)
			for _, entry in ipairs(m.logs) do
				if entry.level == "error" and entry.text:find(text, 1, true) then return true; end
			end
			return false;
		end
		for _, failure in ipairs({ "fail_reads", "raise_reads" }) do
			m.store[failure] = failure == "fail_reads" and "disk unreadable" or true;
			stand_in.offline(m, "romeo@" .. m.host, "hi");
			assert.equal(0, #m.sent);
			local _, condition = stand_in.enable(m, romeo, "push.example", "other"):get_error();
			assert.equal("internal-server-error", condition);
			assert.same({ ["push.example<n"] = record }, m.store.data.romeo);
			m.store[failure] = nil;
		end
		assert.is_true(logged("Error reading push registrations of 'romeo': disk unreadable"));
		assert.is_true(logged("Error reading push registrations of 'romeo': "));
		-- Readable again: loaded on the next message, and pushed.
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		assert.equal(1, #m.sent);
		assert.equal("n", m.sent[1].tags[1].tags[1].attr.node);
	end);

	it("disable from another session clears every session of that registration", function()
		stand_in.enable(m, romeo, "push.example", "node1");
		local laptop = stand_in.session(m, "romeo", "laptop");
		assert.equal("result", stand_in.disable(m, laptop, "push.example").attr.type);
		assert.is_nil(romeo.push_identifier);
		assert.is_nil(romeo.push_settings);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		assert.equal(0, #m.sent);
	end);

	it("registers no handler per push and removes a registration at push_max_errors", function()
		stand_in.enable(m, romeo, "push.example", "node1");
		local handlers = m:handler_count();
		for _ = 1, 100 do
			stand_in.offline(m, "romeo@" .. m.host, "hi");
			assert.equal(true, stand_in.answer(m, m.sent[#m.sent], "result"));
		end
		assert.equal(handlers, m:handler_count());
		-- wait errors do not count, others do
		for _ = 1, 5 do
			stand_in.offline(m, "romeo@" .. m.host, "hi");
			stand_in.answer(m, m.sent[#m.sent], "error", "wait", "resource-constraint");
		end
		assert.truthy(m.store.data.romeo["push.example<node1"]);
		for _ = 1, 3 do
			stand_in.offline(m, "romeo@" .. m.host, "hi");
			stand_in.answer(m, m.sent[#m.sent], "error", "cancel", "item-not-found");
		end
		assert.is_nil(m.store.data.romeo["push.example<node1"]);
		assert.is_nil(romeo.push_identifier);
		local sent = #m.sent;
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		assert.equal(sent, #m.sent);
	end);

	it("passes on IQ answers that are not for a push", function()
		local unrelated = st.iq({ type = "result", id = "not-a-push", from = "push.example", to = m.host });
		assert.is_nil(m:fire_event("iq/host", { stanza = unrelated }));
	end);
end);

describe("mod_cloud_notify (11 of 14)", function()
	before_each(fresh_host);

	it("keeps hosts apart", function()
		local other = stand_in.load("other.example", {});
		local romeo_other = stand_in.session(other, "romeo");
		stand_in.enable(m, romeo, "push.example", "node1");
		assert.equal("result", stand_in.enable(other, romeo_other, "push.other", "n2").attr.type);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		stand_in.offline(other, "romeo@other.example", "hi");
		assert.equal("push.example", m.sent[1].attr.to);
		assert.equal(1, #m.sent);
		assert.equal("push.other", other.sent[1].attr.to);
		assert.equal(1, #other.sent);
	end);

	it("reads the store once per user", function()
		stand_in.offline(m, "nobody@" .. m.host, "hi");
		stand_in.offline(m, "nobody@" .. m.host, "hi");
		stand_in.offline(m, "nobody@" .. m.host, "hi");
		assert.equal(1, m.store.reads);
	end);

	it("pings all or the given registrations with an empty push", function()
		stand_in.enable(m, romeo, "push.example", "a");
		stand_in.enable(m, stand_in.session(m, "romeo", "tablet"), "push.example", "b");
		m:fire_event("cloud-notify-ping", { user = "romeo" });
		assert.equal(2, #m.sent);
		local _, _, _, fields = pubsub_parts(m.sent[1]);
		assert.is_nil(fields["last-message-body"]);
		m:fire_event("cloud-notify-ping", { user = "romeo",
			push_services = { ["push.example<b"] = m.store.data.romeo["push.example<b"] } });
		assert.equal(3, #m.sent);
		local _, publish = pubsub_parts(m.sent[3]);
		assert.equal("b", publish.attr.node);
	end);

	it("loads registrations the reference module stored", function()
		m.store.data.juliet = {
			["push.example<abc"] = {
				jid = "push.example"; node = "abc"; timestamp = 1600000000; resource = "balcony";
				options = st.preserialize(stand_in.publish_options("ref-secret"));
			};
		};
		stand_in.offline(m, "juliet@" .. m.host, "hi");
		assert.equal(1, #m.sent);
		assert.truthy(tostring(m.sent[1]):find("ref-secret", 1, true));
	end);
end);

describe("mod_cloud_notify (12 of 14)", function()
	before_each(fresh_host);

	it("refuses malformed forms with an error, never a Lua error", function()
		local deep = st.stanza("x", { xmlns = "jabber:x:data", type = "submit" });
		for _ = 1, 100 do deep:tag("field", { var = "v" }); end
		local weird = st.stanza("x", { xmlns = "jabber:x:data", type = "submit" })
			:tag("field", { var = "FORM_TYPE" })
				:text_tag("value", "http://jabber.org/protocol/pubsub#publish-options"):up();
		-- util.stanza refuses such names, so poke them into the tables directly
		weird.tags[1].attr["bad attr"] = "1";
		weird.tags[1].attr[5] = "x";
		weird.attr.type = 42;
		local nameless = st.stanza("x", { xmlns = "jabber:x:data", type = "submit" });
		table.insert(nameless, { attr = {} });
		local badname = st.stanza("x", { xmlns = "jabber:x:data", type = "submit" }):tag("field");
		badname.tags[1].name = "no good";
		for _, form in ipairs({ deep, weird, nameless, badname }) do
			local ok, reply = pcall(stand_in.enable, m, romeo, "push.example", "n", form);
			assert.is_true(ok, tostring(reply));
			assert.equal("error", reply.attr.type);
			local err_type, condition = reply:get_error();
			assert.equal("modify", err_type);
			assert.equal("bad-request", condition);
		end
		assert.is_nil(m.store.data.romeo);
		-- stanzas without the usual parts do not upset the offline path either
		local ok = pcall(m.fire_event, m, "message/offline/handle",
			{ stanza = setmetatable({ name = "message", attr = {} }, st.stanza_mt) });
		assert.is_true(ok);
	end);

	it("extends a hibernated push session until its first important push", function()
		stand_in.enable(m, romeo, "push.example", "node1");
		local destroyed_with;
		local function smacks_callback(dog) destroyed_with = dog; end
		local smacks_dog = package.loaded["util.watchdog"].new(600, smacks_callback);
		romeo.hibernating, romeo.hibernating_watchdog = os.time(), smacks_dog;
		m:fire_event("smacks-hibernation-start", { origin = romeo, queue = {} });
		assert.is_true(smacks_dog.cancelled);
		local extended = romeo.hibernating_watchdog;
		assert.equal(259200, extended.timeout);
		-- The extended watchdog hands itself to smacks' callback (0.12.4+/13
		-- ignore a call for any other watchdog).
		extended:callback();
		assert.equal(extended, destroyed_with);
		-- An unimportant stanza does not end the extension, an important one does.
		m:fire_event("smacks-hibernation-stanza-queued", { origin = romeo,
			stanza = st.message({ to = romeo.full_jid, from = "juliet@example.com/b", id = "cs1" })
				:tag("active", { xmlns = "http://jabber.org/protocol/chatstates" }) });
		m.timers[#m.timers].fn();
		assert.equal(1, #m.sent);
		assert.equal(extended, romeo.hibernating_watchdog);
		m:fire_event("smacks-hibernation-stanza-queued", { origin = romeo,
			stanza = st.message({ to = romeo.full_jid, from = "juliet@example.com/b", id = "b1" }):text_tag("body", "hi") });
		m.timers[#m.timers].fn();
		assert.equal(2, #m.sent);
		assert.is_true(extended.cancelled);
		assert.equal(600, romeo.hibernating_watchdog.timeout);
		assert.equal(smacks_callback, romeo.hibernating_watchdog.callback);
		assert.truthy(romeo.first_hibernated_push);
	end);
end);

describe("mod_cloud_notify (13 of 14)", function()
	before_each(fresh_host);

	it("ends the extension on a grace period's release, and sends what is held at unload", function()
		local m1 = stand_in.load("grace." .. m.host, { push_grace_period = 1 });
		local phone = stand_in.session(m1, "romeo", "phone");
		local laptop = stand_in.session(m1, "romeo", "laptop");
		stand_in.enable(m1, phone, "push.example", "phone");
		phone.hibernating = os.time();
		phone.hibernating_watchdog = package.loaded["util.watchdog"].new(600, function() end);
		m1:fire_event("smacks-hibernation-start", { origin = phone, queue = {} });
		local extended = phone.hibernating_watchdog;
		local function active()
			m1:fire_event("pre-message/bare", { origin = laptop,
				stanza = st.message({ to = "juliet@example.com", type = "chat" }):text_tag("body", "typing") });
		end
		local function queued(id)
			m1:fire_event("smacks-hibernation-stanza-queued", { origin = phone,
				stanza = st.message({ to = phone.full_jid, from = "juliet@example.com/b", id = id }):text_tag("body", "hi") });
			m1.timers[#m1.timers].fn(); -- the coalescing delay
		end
		m1.sent = {};
		active(); -- Romeo types on the laptop: the phone's push is held
		queued("g1");
		assert.equal(0, #m1.sent);
		assert.equal(extended, phone.hibernating_watchdog);
		local t0 = os.clock(); while os.clock() - t0 < 1.05 do end -- the window ends
		m1.timers[#m1.timers].fn(); -- the release
		assert.equal(1, #m1.sent);
		assert.is_true(extended.cancelled, "a released push did not end the extension");
		assert.equal(600, phone.hibernating_watchdog.timeout);
		active();
		queued("g2");
		assert.equal(1, #m1.sent);
		m1.unload(); -- held: sent now, not lost
		assert.equal(2, #m1.sent);
	end);

	it("restores smacks' watchdog and stops timers on unload", function()
		stand_in.enable(m, romeo, "push.example", "node1");
		local function smacks_callback() end
		romeo.hibernating = os.time();
		romeo.hibernating_watchdog = package.loaded["util.watchdog"].new(600, smacks_callback);
		m:fire_event("smacks-hibernation-start", { origin = romeo, queue = {} });
		m:fire_event("smacks-hibernation-stanza-queued", { origin = romeo,
			stanza = st.message({ to = romeo.full_jid, id = "u1" }):text_tag("body", "hi") });
		local timer = m.timers[#m.timers];
		m.unload();
		assert.is_true(timer.stopped);
		assert.equal(600, romeo.hibernating_watchdog.timeout);
		assert.equal(smacks_callback, romeo.hibernating_watchdog.callback);
		assert.equal(0, m.sent and #m.sent);
	end);
end);

describe("mod_cloud_notify (14 of 14)", function()
	before_each(fresh_host);

	it("enables Push 2.0 in mod_push2's store and sends a notification message", function()
		local enable = st.iq({ type = "set", id = "p2", from = romeo.full_jid })
			:tag("enable", { xmlns = "urn:xmpp:push2:0" })
			:text_tag("service", "push2.example"):text_tag("client", "https://p.example/1")
			:tag("match", { profile = "urn:xmpp:push2:match:important" })
			:tag("send", { xmlns = "urn:xmpp:push2:send:notify-only:0" }):up():up();
		m:fire_event("iq-set/self/urn:xmpp:push2:0:enable", { origin = romeo, stanza = enable });
		assert.equal("result", romeo.replies[#romeo.replies].attr.type);
		local stored = m.stores.push2_registrations.data.romeo.phone;
		assert.equal("push2.example", stored.service);
		assert.equal("urn:xmpp:push2:match:important", stored.matches[1].match);
		assert.is_nil(m.store.data.romeo); -- (the module's own store: untouched)
		assert.equal("push2:phone", romeo.push_identifier);
		stand_in.offline(m, "romeo@" .. m.host, "hi");
		local sent = m.sent[#m.sent];
		assert.equal("message", sent.name);
		local n = sent:get_child("notification", "urn:xmpp:push2:0");
		assert.equal("https://p.example/1", n:get_child_text("client"));
		assert.equal("normal", n:get_child_text("priority"));
		-- (a message error answers it; a disable removes it from the store)
		m:fire_event("iq-set/self/urn:xmpp:push2:0:disable", { origin = romeo,
			stanza = st.iq({ type = "set", id = "d2", from = romeo.full_jid }):tag("disable", { xmlns = "urn:xmpp:push2:0" }) });
		assert.equal("result", romeo.replies[#romeo.replies].attr.type);
		assert.is_nil(m.stores.push2_registrations.data.romeo);
		assert.is_nil(romeo.push_identifier);
	end);

	it("re-attaches a reconnecting device by its identifier alone, building no record (rule 118)", function()
		stand_in.enable(m, romeo, "push.example", "node1", stand_in.publish_options("s3"));
		local identifier = romeo.push_identifier;
		assert.equal("push.example", romeo.push_settings.jid); -- (an enable's: rule 7)
		local again = stand_in.session(m, "romeo", "again");
		again.resource = romeo.resource;
		-- (what the Lua heap grows by, the collector stopped: 1,930 bytes
		-- when the record was built, with this form; 376 without it, the
		-- session's own fields among them)
		collectgarbage("collect");
		collectgarbage("stop");
		local before = collectgarbage("count");
		m:fire_event("resource-bind", { session = again });
		local grew = (collectgarbage("count") - before) * 1024;
		collectgarbage("restart");
		assert.equal(identifier, again.push_identifier);
		assert.is_nil(again.push_settings);
		assert.is_true(grew < 1024, ("the re-attach allocated %d bytes"):format(grew));
	end);

	it("enables again without tables it does not need (rule 119)", function()
		stand_in.enable(m, romeo, "push.example", "node1", stand_in.publish_options("s3"));
		local iq = stand_in.enable_iq(romeo, "push.example", "node1", stand_in.publish_options("s3"));
		-- (the Lua heap's growth for the same enable again, the collector
		-- stopped: 3,258 bytes with a lock's two lists, a closure per IQ,
		-- the results packed in a table and the registration event's table
		-- for nobody; 2,634 without; most of the rest is push_info, rule 7,
		-- and the reply)
		collectgarbage("collect");
		collectgarbage("stop");
		local before = collectgarbage("count");
		m:fire_event("iq-set/self/urn:xmpp:push:0:enable", { origin = romeo, stanza = iq });
		local grew = (collectgarbage("count") - before) * 1024;
		collectgarbage("restart");
		assert.equal("result", romeo.replies[#romeo.replies].attr.type);
		assert.is_true(grew < 2950, ("the enable allocated %d bytes"):format(grew));
		-- Hooked, the event comes with its table.
		local seen;
		m:hook("cloud_notify/registration", function(event) seen = event.push_info; end);
		stand_in.enable(m, romeo, "push.example", "node1", stand_in.publish_options("s3"));
		assert.equal("push.example", seen.jid);
	end);

	it("pushes a stanza once across the smacks, MAM and offline paths", function()
		stand_in.enable(m, romeo, "push.example", "node1");
		romeo.push_identifier = nil; -- the phone's session is gone; another stays
		local msg = st.message({ to = "romeo@" .. m.host, from = "juliet@example.com/b", type = "chat", id = "x1" })
			:text_tag("body", "hi");
		m:fire_event("archive-message-added", { origin = {}, stanza = msg, for_user = "romeo", id = "arch-1" });
		assert.equal(1, #m.sent);
		local delivered = st.clone(msg):tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "romeo@" .. m.host, id = "arch-1" }):up();
		m:fire_event("message/offline/handle", { stanza = delivered, username = "romeo" });
		assert.equal(1, #m.sent);
	end);
end);
