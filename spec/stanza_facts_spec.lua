-- The raw stanza reader (one protected call of lua_* reads) and the
-- mlua table reader must see the same facts in every stanza.

require "spec.stand_in";
local st = require "util.stanza";

local DIST = os.getenv("CLOUD_NOTIFY_DIST") or "dist/mod_cloud_notify";
package.cpath = DIST .. "/?.so;" .. package.cpath;
local core = require "cloud_notify";

local function carbon(direction, inner)
	inner.attr.xmlns = inner.attr.xmlns or "jabber:client"; -- as mod_carbons copies it
	return st.message({ to = "romeo@example.com/phone", from = "romeo@example.com", type = "chat" })
		:tag(direction, { xmlns = "urn:xmpp:carbons:2" })
			:tag("forwarded", { xmlns = "urn:xmpp:forward:0" })
				:add_child(inner):up():up();
end

local function chat(body)
	local m = st.message({ to = "romeo@example.com", from = "juliet@example.com/balcony", type = "chat", id = "m1" });
	if body then m:text_tag("body", body); end
	return m;
end

local cases = {
	chat("hello"),
	chat(nil),
	chat("two"):tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "romeo@example.com", id = "a1" }):up()
		:tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "muc.example.com", id = "a2" }):up(),
	chat(nil):tag("encrypted", { xmlns = "eu.siacs.conversations.axolotl" }):up(),
	chat(nil):tag("propose", { xmlns = "urn:xmpp:jingle-message:0", id = "call" }):up(),
	chat(nil):text_tag("subject", "topic"),
	-- a body in another namespace is no body
	chat(nil):text_tag("body", "not a body", { xmlns = "urn:example" }),
	-- a body in pieces
	chat(nil):tag("body"):text("one "):text("two"):up(),
	carbon("sent", chat("mine")),
	carbon("received", chat("theirs"):tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "x", id = "y" }):up()),
	-- a forwarded message in the wrong namespace
	carbon("received", st.message({ xmlns = "urn:example", to = "a@b" }):text_tag("body", "x")),
	-- more children than the raw reader records
	(function()
		local m = chat("many");
		for i = 1, 12 do m:text_tag("subject", "s" .. i); end
		return m;
	end)(),
	st.presence({ from = "juliet@example.com/balcony" }),
	st.iq({ type = "get", id = "q1" }):tag("query", { xmlns = "jabber:iq:version" }):up(),
	st.message({ type = "groupchat", from = "room@muc.example.com/nick", to = "romeo@example.com" })
		:text_tag("body", "room talk"),
};

describe("stanza facts", function()
	it("are the same through both readers", function()
		for i, stanza in ipairs(cases) do
			local fast, slow = core.stanza_facts(stanza), core.stanza_facts(stanza, true);
			assert.equal(slow, fast, "case " .. i .. ": " .. tostring(stanza));
		end
	end);

	it("see the body, the stanza-ids and the forwarded message", function()
		local facts = core.stanza_facts(cases[3]);
		assert.truthy(facts:find('body: Some("two")', 1, true));
		assert.truthy(facts:find('("romeo@example.com", "a1")', 1, true));
		assert.truthy(core.stanza_facts(cases[8]):find('body: Some("one two")', 1, true));
		assert.truthy(core.stanza_facts(cases[9]):find('Sent', 1, true));
		assert.truthy(core.stanza_facts(cases[9]):find('body: Some("mine")', 1, true));
	end);
end);
