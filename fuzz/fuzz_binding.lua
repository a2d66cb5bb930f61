-- Fuzzes the shipped module through the real binding and core: the shim
-- (dist/mod_cloud_notify) and cloud_notify.so under Lua 5.4, with Prosody's
-- own util.stanza and the spec's stand-in module API. Random and mutated
-- stanzas (seeded from XEP examples and what real clients send), <enable/>
-- and <disable/> IQs, smacks events, archived messages and app-server
-- answers, each fired as Prosody would. Any Lua error (from the shim or
-- the binding) or panic is a failure.
--
--   lua5.4 fuzz/fuzz_binding.lua [inputs] [seed]
package.path = "./?.lua;" .. package.path;
local stand_in = require "spec.stand_in";
local st = require "util.stanza";

local inputs = tonumber(arg[1]) or 100000;
local seed = tonumber(arg[2]) or 1;
math.randomseed(seed);
local random = math.random;

local function pick(t) return t[random(#t)]; end

local NAMES = { "body", "subject", "received", "sent", "forwarded", "message", "encrypted", "propose",
	"retract", "stanza-id", "x", "field", "value", "reference", "delay", "active", "markable",
	"displayed", "openpgp", "store", "no-store", "error", "enable", "disable", "encrypt", "item", "junk" };
local NAMESPACES = { "urn:xmpp:carbons:2", "urn:xmpp:forward:0", "jabber:client", "jabber:x:data",
	"urn:xmpp:push:0", "eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2", "urn:xmpp:jingle-message:0",
	"urn:xmpp:sid:0", "urn:xmpp:reference:0", "urn:xmpp:hints", "urn:xmpp:chat-markers:0",
	"http://jabber.org/protocol/chatstates", "urn:ietf:params:xml:ns:xmpp-stanzas", "tigase:push:encrypt:0",
	"urn:xmpp:openpgp:0", "jabber:x:encrypted", "", nil };
local TYPES = { "chat", "groupchat", "normal", "headline", "error", "result", "set", "get", "", "💥", nil };
-- Strings as Prosody's parser hands them over: any valid UTF-8 without
-- control characters (util.stanza refuses anything else).
local WORDS = { "", "hi", "Wherefore art thou, Romeo?", "Grüße, Jürgen!", "romeo@localhost",
	"romeo@localhost/phone", "juliet@capulet.example/balcony", "push.example", "a@@b", "@", "/", "<",
	"0", "-1", "99999999999999999999", "1e309", "localhost", "conference.localhost", "romeo@fuzz.example",
	"http://jabber.org/protocol/pubsub#publish-options", "FORM_TYPE", "secret", "mention", "7", "13" };
local CHARS = { "a", "Z", "0", " ", "@", "/", "<", ">", "&", "'", "\"", "é", "ü", "💥", "\u{10FFFF}",
	"\u{202E}", "\t", "\n" };

local function word()
	local r = random(20);
	if r == 1 then return string.rep(pick(WORDS), random(300)); end
	if r == 2 then
		local t = {};
		for i = 1, random(40) do t[i] = pick(CHARS); end
		return table.concat(t);
	end
	return pick(WORDS);
end

local function attrs()
	local a = {};
	if random(3) == 1 then a.xmlns = pick(NAMESPACES); end
	for _, k in ipairs({ "from", "to", "id", "type", "by", "jid", "node", "var", "begin", "end", "uri",
		"alg", "include_payload", "xml:lang" }) do
		if random(5) == 1 then a[k] = (k == "type") and pick(TYPES) or word(); end
	end
	return a;
end

local function tree(depth)
	local el = st.stanza(pick(NAMES), attrs());
	if depth > 0 then
		for _ = 1, random(0, 4) do
			if random(3) == 1 then el:text(word()); else el:add_child(tree(depth - 1)); end
		end
	end
	return el;
end

-- Seeds: shapes real traffic has (XEP-0357, XEP-0280, XEP-0384, XEP-0353,
-- XEP-0359, XEP-0372), completed with random parts.
local function seeded_message(to)
	local m = st.message({ to = to, from = pick({ "juliet@localhost/balcony", "romeo@localhost", word() }),
		type = pick(TYPES), id = random(3) == 1 and word() or tostring(random(50)) });
	local r = random(8);
	if r == 1 then m:text_tag("body", word());
	elseif r == 2 then
		m:tag(pick({ "received", "sent" }), { xmlns = "urn:xmpp:carbons:2" })
			:tag("forwarded", { xmlns = "urn:xmpp:forward:0" })
				:tag("message", { from = word(), type = pick(TYPES) }):text_tag("body", word()):up():up():up();
	elseif r == 3 then m:tag("encrypted", { xmlns = pick(NAMESPACES) }):up();
	elseif r == 4 then m:tag("propose", { xmlns = "urn:xmpp:jingle-message:0", id = word() }):up();
	elseif r == 5 then m:tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = pick({ to, word() }), id = word() }):up();
	elseif r == 6 then
		m:text_tag("body", word()):tag("reference", { xmlns = "urn:xmpp:reference:0", type = "mention",
			begin = word(), ["end"] = word(), uri = word() }):up();
	end
	for _ = 1, random(0, 3) do m:add_child(tree(random(0, 4))); end
	-- The shipped raw reader and the core's walk of the same stanza as XML
	-- agree (one rule set, two walks: see src/lua/raw/read.rs).
	local core = package.loaded["cloud_notify"];
	if core then
		local raw, parsed = core.stanza_facts(m), core.parsed_stanza_facts(m);
		if raw ~= parsed then
			error(("stanza facts differ for %s:\nraw:    %s\nparsed: %s"):format(tostring(m), raw, parsed));
		end
	end
	return m;
end

local function enable_iq(session, kind)
	local iq = st.iq({ type = "set", id = "e" .. random(1000), from = session.full_jid,
		["xml:lang"] = random(4) == 1 and word() or "en" });
	local attr = { xmlns = "urn:xmpp:push:0" };
	if random(6) ~= 1 then attr.jid = pick({ "push.example", "push2.example", word() }); end
	if random(3) ~= 1 then attr.node = pick({ "n1", "n2", "n3", word() }); end
	if random(5) == 1 then attr.include_payload = word(); end
	iq:tag(kind, attr);
	if random(2) == 1 then
		iq:tag("x", { xmlns = "jabber:x:data", type = pick({ "submit", "form", "result", word() }) });
		for _ = 1, random(0, 6) do
			iq:tag("field", { var = pick(WORDS), type = random(3) == 1 and "hidden" or nil })
				:text_tag("value", word()):up();
		end
		if random(4) == 1 then iq:add_child(tree(random(0, 6))); end
		iq:up();
	end
	if random(4) == 1 then iq:add_child(tree(random(0, 3))); end
	return iq;
end

-- A Push 2.0 enable: usable keys (RFC 8291's example, a generated PKCS#8
-- key) or words, profiles known and not, filters, grace.
local UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
local JWT_KEY = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg9hJRHTOJhmXXMzJ6"
	.. "Be1Oh/qdxu8U9VIfwft3UP5zPJehRANCAATVZNuKsWThVawbNoZf2h8q3v8DB00p"
	.. "NJp1m2mCCvAsfHWJ+fkTjoPmIku9UlWrOj0UnB9tYkQAvCjCpxIOe+VN";
local function enable2_iq(session, kind)
	local iq = st.iq({ type = "set", id = "p" .. random(1000), from = session.full_jid });
	iq:tag(kind, { xmlns = "urn:xmpp:push2:0" });
	if kind == "disable" then return iq; end
	if random(8) ~= 1 then iq:text_tag("service", pick({ "push.example", "push2.example", word() })); end
	if random(8) ~= 1 then iq:text_tag("client", pick({ "https://p.example/1", word() })); end
	for _ = 1, random(0, 3) do
		iq:tag("match", { profile = pick({ "urn:xmpp:push2:match:all", "urn:xmpp:push2:match:important",
			"urn:xmpp:push2:match:archived", "urn:xmpp:push2:match:archived-with-body", word() }) });
		if random(3) == 1 then iq:text_tag("grace", pick({ "30", "0", "-1", word() })); end
		if random(3) == 1 then
			iq:tag("filter", { jid = pick({ "juliet@" .. session.host, word() }) }):tag("mention"):up():up();
		end
		if random(3) == 1 then
			iq:tag("send", { xmlns = "urn:xmpp:push2:send:notify-only:0" }):up();
		else
			iq:tag("send", { xmlns = "urn:xmpp:push2:send:sce+rfc8291+rfc8292:0" })
				:text_tag("ua-public", random(4) == 1 and word() or UA_PUBLIC)
				:text_tag("auth-secret", random(4) == 1 and word() or "BTBZMqHH6r4Tts7J_aSIgg");
			if random(2) == 1 then
				iq:text_tag("jwt-alg", random(4) == 1 and word() or "ES256")
					:text_tag("jwt-key", random(4) == 1 and word() or JWT_KEY)
					:tag("jwt-claim", { name = pick({ "aud", "sub", "exp", word() }) }):text(word()):up();
			end
			iq:up();
		end
		if random(4) == 1 then iq:add_child(tree(random(0, 3))); end
		iq:up();
	end
	return iq;
end

-- Two hosts, one with push_notification_with_body and one without, the
-- inputs going to one then the other, 1000 at a time: every option is
-- fuzzed in every run, whatever the seed.
local users = { "romeo", "juliet", "nurse", "tybalt", "benvolio", "mercutio" };
local instances = {};
for i, with_body in ipairs({ true, false }) do
	local host = i == 1 and "fuzz.example" or "fuzz2.example";
	local inst = stand_in.load(host, { push_max_devices = 3, push_max_errors = 4,
		push_notification_with_body = with_body, push_notification_with_sender = i == 1,
		push_registration_cache_size = 4, push_grace_period = i == 2 and 1 or nil });
	inst.with_body, inst.with_sender = with_body, i == 1;
	local inst_sessions = {};
	for _, u in ipairs(users) do
		inst_sessions[#inst_sessions+1] = stand_in.session(inst, u, "phone");
		inst_sessions[#inst_sessions+1] = stand_in.session(inst, u, "laptop");
	end
	instances[i] = { m = inst, sessions = inst_sessions };
end
local m, sessions = instances[1].m, instances[1].sessions;

local failures, counts = 0, {};
local function count(kind) counts[kind] = (counts[kind] or 0) + 1; end
local function fail(message)
	failures = failures + 1;
	if failures <= 5 then io.stderr:write(message .. "\n"); end
end

-- A store that, inside async runners, now and then yields until a later
-- step lets it go on (as a networked one would).
local async = require "util.async";
local paused = {};
for _, inst in ipairs(instances) do
	for _, method in ipairs({ "get", "set" }) do
		stand_in.pausing_store(inst.m, method, function()
			return async.ready() and random(3) == 1 and #paused < 64;
		end, paused);
	end
end

-- A cloud_notify/registration handler, as extension modules have: random
-- nested push_info fields (any bytes), now and then too large or deep.
local function value(depth)
	local r = random(7);
	if r == 1 and depth < 20 then
		local t = {};
		for i = 1, random(0, 6) do
			if random(2) == 1 then t[i] = value(depth + 1); else t[word()] = value(depth + 1); end
		end
		return t;
	elseif r == 2 then
		local b = {};
		for i = 1, random(0, 12) do b[i] = string.char(random(0, 255)); end
		return table.concat(b);
	elseif r == 3 then return random(-1000, 1000);
	elseif r == 4 then return random() * 1e10;
	elseif r == 5 then return random(2) == 1;
	elseif r == 6 then return string.rep("x", random(0, 40000));
	end
	return word();
end
local handlers_on = true;
-- The privacy oracle, on every push: it says what the options let out,
-- never more, and never a body the sender did not write.
local function private(inst, event)
	local summary = event.push_summary;
	if summary["last-message-sender"] and not inst.with_sender then
		fail("a sender without push_notification_with_sender: " .. tostring(event.notification_stanza));
	end
	local body = summary["last-message-body"];
	if not body or body == "New Message!" then return; end
	if not inst.with_body then
		fail("a body without push_notification_with_body: " .. tostring(event.notification_stanza));
	elseif #body > 256 then
		fail("a body past its bound: " .. #body .. " bytes");
	else
		-- (the text a body holds, as the module reads it: its text nodes)
		local written = {};
		local function collect(stanza)
			for _, b in ipairs(stanza and stanza.tags or {}) do
				-- (in the stanza's namespace, implicit or spelled out)
				if b.name == "body" and (b.attr.xmlns == nil or b.attr.xmlns == "jabber:client") then
					for _, node in ipairs(b) do
						if type(node) == "string" then written[#written+1] = node; end
					end
				end
			end
		end
		local original = event.original_stanza;
		collect(original);
		for carbon in (original and original.childtags and original:childtags() or function() end) do
			local forwarded = carbon:get_child("forwarded", "urn:xmpp:forward:0");
			collect(forwarded and forwarded:get_child("message", "jabber:client"));
		end
		local text = table.concat(written);
		if text:sub(1, #body) ~= body and not text:find(body, 1, true) then
			fail(("a body the sender did not write: %q (text %q) in %s"):format(body, text, tostring(original)));
		end
	end
end
for _, inst in ipairs(instances) do
	inst.m:hook("cloud_notify/registration", function(event)
		if not handlers_on then return; end
		if random(2) == 1 then event.push_info[word()] = value(1); end
		if random(20) == 1 then event.push_info.callback = print; end
	end);
	inst.m:hook("cloud_notify/push", function(event)
		if event.original_stanza == nil then fail("a push without original_stanza: " .. event.push_kind); end
		private(inst.m, event);
		if handlers_on and random(200) == 1 then error("a handler failing on purpose"); end
	end, 100);
end

-- Errors inside runners reach their error watcher, not pcall.
local function in_runner(fn)
	local runner = async.runner(function(f) f(); end, {
		error = function(_, err)
			failures = failures + 1;
			if failures <= 5 then io.stderr:write("in a runner: " .. tostring(err) .. "\n"); end
		end;
	});
	runner:run(fn);
end

-- Each step builds its input, then returns what fires it: only firing
-- runs under pcall (the input itself is always valid util.stanza).
local function fire(name, data)
	return function() m:fire_event(name, data); end
end

local steps = {
	function() -- an enable or disable
		local s = pick(sessions);
		local kind = random(3) == 1 and "disable" or "enable";
		count(kind);
		return fire("iq-set/self/urn:xmpp:push:0:" .. kind, { origin = s, stanza = enable_iq(s, kind) });
	end,
	function() -- a Push 2.0 enable or disable
		local s = pick(sessions);
		local kind = random(3) == 1 and "disable" or "enable";
		count(kind .. "2");
		return fire("iq-set/self/urn:xmpp:push2:0:" .. kind, { origin = s, stanza = enable2_iq(s, kind) });
	end,
	function() -- an offline message (or a bare groupchat one)
		local to = pick(users) .. "@" .. m.host;
		local msg = random(2) == 1 and seeded_message(to) or tree(random(0, 5));
		msg.attr.to = random(8) == 1 and word() or to;
		count("offline");
		return fire(random(4) == 1 and "message/bare/groupchat" or "message/offline/handle",
			{ stanza = msg, username = pick(users) });
	end,
	function() -- an archived message
		local user = pick(users);
		count("archive");
		return fire("archive-message-added", { for_user = random(8) == 1 and word() or user,
			stanza = seeded_message(user .. "@" .. m.host), id = random(5) ~= 1 and word() or nil,
			origin = random(2) == 1 and pick(sessions) or nil });
	end,
	function() -- smacks: hibernation, queued stanzas, delayed acks, resumption, timers
		local s = pick(sessions);
		if random(2) == 1 then s.push_identifier = s.push_identifier or ("push.example<" .. pick({ "n1", "n2" })); end
		local r = random(5);
		count("smacks");
		if r == 1 then
			s.hibernating = os.time();
			s.hibernating_watchdog = package.loaded["util.watchdog"].new(30, function() end);
			return fire("smacks-hibernation-start", { origin = s, queue = { seeded_message(s.full_jid), tree(2) } });
		elseif r == 2 then
			return fire("smacks-hibernation-stanza-queued", { origin = s, stanza = seeded_message(s.full_jid) });
		elseif r == 3 then
			return fire("smacks-ack-delayed", { origin = s,
				stanza = random(2) == 1 and seeded_message(s.full_jid) or nil, queue = { tree(3) } });
		elseif r == 4 then
			s.hibernating = nil;
			return fire("smacks-hibernation-end", { origin = s, resumed = s });
		end
		local timers = m.timers;
		m.timers = {};
		return function()
			for _, timer in ipairs(timers) do
				if not timer.stopped then timer.fn(); end
			end
		end;
	end,
	function() -- an app server's answer: to a push we sent, or anything
		count("answer");
		local push = m.sent[random(math.max(1, #m.sent))];
		local reply;
		if push and random(4) ~= 1 then
			reply = random(2) == 1 and st.reply(push) or st.error_reply(push, pick(TYPES) or "cancel",
				pick(NAMES), word());
			if random(6) == 1 then reply.attr.from = word(); end
			if random(6) == 1 then reply:add_child(tree(3)); end
		else
			reply = st.iq({ type = pick(TYPES) or "result", id = word(), from = word(), to = m.host });
			if random(2) == 1 then reply:add_child(tree(4)); end
		end
		return fire("iq/host", { stanza = reply, origin = {} });
	end,
	function() -- a ping
		count("ping");
		return fire("cloud-notify-ping", { user = pick(users), push_services = random(3) == 1 and {} or nil });
	end,
	function() -- store calls that were waiting go on, in some order
		count("resume");
		local n = #paused;
		return function()
			for _ = 1, random(0, n) do
				local done = table.remove(paused, random(#paused));
				if done then done(); end
			end
		end;
	end,
};

local pushed, pushed2 = 0, 0;
-- (what was sent: Push 2.0 notifications counted apart)
local function take_sent(inst_m)
	for _, sent in ipairs(inst_m.sent) do
		if sent.name == "message" and sent:get_child("notification", "urn:xmpp:push2:0") then
			pushed2 = pushed2 + 1;
		end
	end
	pushed = pushed + #inst_m.sent;
	inst_m.sent = {};
end
local started = os.clock();
for i = 1, inputs do
	if i % 1000 == 0 then -- the other host
		take_sent(m);
		local next_one = instances[(i // 1000) % #instances + 1];
		m, sessions = next_one.m, next_one.sessions;
	end
	local step = pick(steps)();
	if random(2) == 1 then -- half of them as Prosody runs stanza handlers: in an async runner
		local run = step;
		step = function() in_runner(run); end;
	end
	local ok, err = pcall(step);
	if not ok then
		failures = failures + 1;
		if failures <= 5 then io.stderr:write(("input %d: %s\n"):format(i, tostring(err))); end
	end
	if #m.sent > 200 then take_sent(m); end
	if i % 5000 == 0 then m:fire_event("global/stats-update", {}); end
end
local elapsed = os.clock() - started;

local parts = {};
for k, v in pairs(counts) do parts[#parts+1] = k .. "=" .. v; end
table.sort(parts);
-- Let everything waiting finish, then every lock must be free: an enable
-- from each user goes through.
handlers_on = false;
local function handovers(inst)
	local ran = false;
	local timers = inst.timers;
	inst.timers = {};
	for _, timer in ipairs(timers) do
		if not timer.stopped and timer.delay == 0 then timer.fn(); ran = true; end
	end
	return ran;
end
repeat
	local progress = #paused > 0;
	while #paused > 0 do table.remove(paused)(); end
	for _, inst in ipairs(instances) do progress = handovers(inst.m) or progress; end
until not progress
for _, inst in ipairs(instances) do
	for _, s in ipairs(inst.sessions) do
		s.replies = {};
		inst.m:fire_event("iq-set/self/urn:xmpp:push:0:enable", { origin = s,
			stanza = st.iq({ type = "set", id = "final", from = s.full_jid })
				:tag("enable", { xmlns = "urn:xmpp:push:0", jid = "push.example", node = "final" }) });
		local reply = s.replies[1];
		if not (reply and reply.attr.type == "result") then
			fail(("final enable of %s: %s (a lock never freed?)"):format(s.full_jid,
				reply and tostring(reply) or "no answer"));
		end
	end
	take_sent(inst.m);
	-- Every handler fails open (a stanza goes on): an error one swallowed
	-- is a failure here all the same.
	local hook_errors = inst.m.metrics.hook_errors;
	for event, n in pairs(hook_errors and hook_errors.values or {}) do
		fail(("%d error(s) in the %s handler"):format(n, event));
		for _, line in ipairs(inst.m.logs) do
			if line.text:find("goes on without push", 1, true) then io.stderr:write(line.text .. "\n"); break; end
		end
	end
end
if pushed == 0 then fail("no push in " .. inputs .. " inputs: the fuzzer tests nothing"); end
if pushed2 == 0 then fail("no Push 2.0 notification in " .. inputs .. " inputs"); end
-- Every push's publish IQ was checked against the core's (spec/stand_in.lua).
for i, mismatch in ipairs(stand_in.push_mismatches) do
	failures = failures + 1;
	if i <= 3 then
		io.stderr:write(("publish IQ differs:\n  core:    %s\n  shipped: %s\n"):format(mismatch.expected, mismatch.got));
	end
end
print(("binding fuzz: %d inputs (%s), %d stanzas sent (%d publish IQs checked against the core's, "
	.. "%d Push 2.0 notifications), %d Lua errors, %.1f s, %.1f µs/input, seed %d"):format(
	inputs, table.concat(parts, " "), pushed, stand_in.pushes_checked, pushed2, failures, elapsed,
	elapsed * 1e6 / inputs, seed));
os.exit(failures == 0 and 0 or 1);
