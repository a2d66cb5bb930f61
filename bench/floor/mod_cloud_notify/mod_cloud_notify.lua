-- W1's floor (bench/README.md): the four handlers ours runs for a message
-- between users without registrations, each asking a Lua set (empty here)
-- the question ours asks the core. Measured in the reference's place:
--   BENCH_BEFORE=$PWD/bench/floor BENCH_VARIANTS=ref BENCH_WORKLOADS=w1 \
--   BENCH_CPU=0 .venv/bin/python bench/bench.py
-- Not a push module: it pushes nothing.
local users = {};
local xmlns_pubsub_event = "http://jabber.org/protocol/pubsub#event";

local function might_push(user) return users[user] ~= nil; end

module:hook("message/bare", function(event)
	if not event.stanza:get_child("event", xmlns_pubsub_event) then return; end
end, 10);

for _, name in ipairs({ "pre-message/full", "pre-message/bare", "pre-message/host" }) do
	module:hook(name, function(event)
		local session = event.origin;
		local user = session and session.type == "c2s" and session.username;
		if not user or might_push(user) == false then return; end
	end, 1);
end

module:hook("archive-message-added", function(event)
	local for_user = event.id and event.for_user;
	if not for_user or might_push(for_user) == false then return; end
end);
