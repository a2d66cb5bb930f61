-- What push decisions read from a stanza (the binding's raw reader), on
-- stanzas of every shape the decisions care about.

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

-- Pieces of the expected Debug text, per case.
local expected = {
	{ 'kind: Message', 'type_: Some("chat")', 'id: Some("m1")', 'body: Some("hello")', "carbon: None" },
	{ "body: None", "encrypted: false" },
	{ 'body: Some("two")', '[("romeo@example.com", "a1"), ("muc.example.com", "a2")]' },
	{ "body: None", "encrypted: true" },
	{ "propose: true" },
	{ "has_subject: true", "body: None" },
	{ "body: None" },
	{ 'body: Some("one two")' },
	{ 'carbon: Some((Sent, StanzaFacts { kind: Message', 'body: Some("mine")', 'to: Some("romeo@example.com/phone")' },
	{ 'carbon: Some((Received,', 'body: Some("theirs")', '[("x", "y")]' },
	{ "carbon: None" },
	{ 'body: Some("many")', "has_subject: true" },
	{ "kind: Presence", "body: None" },
	{ "kind: Iq", 'type_: Some("get")' },
	{ 'type_: Some("groupchat")', 'body: Some("room talk")' },
};

describe("stanza facts", function()
	it("are read from every kind of stanza", function()
		assert.equal(#cases, #expected);
		for i, stanza in ipairs(cases) do
			local facts = core.stanza_facts(stanza);
			for _, piece in ipairs(expected[i]) do
				assert.truthy(facts:find(piece, 1, true), ("case %d: %q not in %s"):format(i, piece, facts));
			end
		end
	end);

	it("are what the core's own walk of the same stanza, as XML, finds", function()
		-- One classification and one set of rules, two walks (the raw one
		-- ships): both must agree on every stanza.
		local function same(stanza, what)
			assert.equal(core.parsed_stanza_facts(stanza), core.stanza_facts(stanza), what);
		end
		for i, stanza in ipairs(cases) do same(stanza, "case " .. i); end
		local m = chat("first"):text_tag("body", "second");
		for i = 1, 6 do
			m:tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "b" .. i, id = "i" .. i }):up();
		end
		same(m, "bodies and stanza-ids");
		local two = carbon("received", chat("inner one"));
		two:tag("sent", { xmlns = "urn:xmpp:carbons:2" }):tag("forwarded", { xmlns = "urn:xmpp:forward:0" })
			:add_child(st.message({ xmlns = "jabber:client" }):text_tag("body", "inner two")):up():up();
		same(two, "two carbons");
		same(carbon("sent", carbon("received", chat("nested"))), "a carbon in a carbon");
		same(chat(nil):tag("propose", { xmlns = "urn:xmpp:jingle-message:0", id = ("x"):rep(300) }):up()
			:tag("retract", { xmlns = "urn:xmpp:jingle-message:1", id = "r" }):up(), "calls");
	end);

	it("keep the first body, the first carbon and the first four stanza-ids", function()
		local m = chat("first"):text_tag("body", "second");
		for i = 1, 6 do
			m:tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "b" .. i, id = "i" .. i }):up();
		end
		local facts = core.stanza_facts(m);
		assert.truthy(facts:find('body: Some("first")', 1, true));
		assert.truthy(facts:find('("b4", "i4")]', 1, true));
		assert.falsy(facts:find('"b5"', 1, true));
		local two = carbon("received", chat("inner one"));
		two:tag("sent", { xmlns = "urn:xmpp:carbons:2" }):tag("forwarded", { xmlns = "urn:xmpp:forward:0" })
			:add_child(st.message({ xmlns = "jabber:client" }):text_tag("body", "inner two")):up():up();
		facts = core.stanza_facts(two);
		assert.truthy(facts:find('carbon: Some((Received,', 1, true));
		assert.truthy(facts:find('"inner one"', 1, true));
		assert.falsy(facts:find('"inner two"', 1, true));
	end);
end);
