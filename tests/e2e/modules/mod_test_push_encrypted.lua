-- Test extension: what prosody-modules' mod_cloud_notify_encrypted does,
-- written for these tests (talking to mod_cloud_notify only through its
-- events). An <encrypt xmlns='tigase:push:encrypt:0' alg='aes-128-gcm'>KEY</encrypt>
-- in <enable/> puts push_info.encryption = { algorithm, key_base64 };
-- every push then carries <encrypted iv=…>…</encrypted> instead of the
-- summary form. The cipher is a test stand-in (a SHA-256 keystream the
-- tests undo), not AES: what is tested is the contract, not the crypto.
local st = require "util.stanza";
local base64 = require "util.encodings".base64;
local sha256 = require "util.hashes".sha256;
local json = require "util.json";
local jid = require "util.jid";

local xmlns_push = "urn:xmpp:push:0";
local xmlns_encrypt = "tigase:push:encrypt:0";

module:hook("account-disco-info", function(event)
	(event.reply or event.stanza):tag("feature", { var = xmlns_encrypt }):up();
end);

module:hook("cloud_notify/registration", function(event)
	local enable = event.stanza:get_child("enable", xmlns_push);
	local encrypt = enable and enable:get_child("encrypt", xmlns_encrypt);
	if not encrypt then return; end
	if encrypt.attr.alg ~= "aes-128-gcm" then
		event.origin.send(st.error_reply(event.stanza, "modify", "feature-not-implemented", "Unknown encryption algorithm"));
		return false;
	end
	local key_base64 = encrypt:get_text();
	local key = base64.decode(key_base64);
	if not key or #key ~= 16 then
		event.origin.send(st.error_reply(event.stanza, "modify", "bad-request", "Invalid encryption key"));
		return false;
	end
	event.push_info.encryption = { algorithm = encrypt.attr.alg; key_base64 = key_base64 };
end);

local function keystream_xor(key, iv, text)
	local out, block = {}, nil;
	for i = 1, #text do
		local n = (i - 1) // 32;
		if (i - 1) % 32 == 0 then block = sha256(key..iv..tostring(n)); end
		out[i] = string.char(text:byte(i) ~ block:byte((i - 1) % 32 + 1));
	end
	return table.concat(out);
end

module:hook("cloud_notify/push", function(event)
	local encryption = event.push_info.encryption;
	if not encryption then return; end
	if encryption.algorithm ~= "aes-128-gcm" then
		event.reason = "Unsupported encryption algorithm";
		return true;
	end
	local original = event.original_stanza;
	local payload = { unread = tonumber(event.push_summary["message-count"]) or 1 };
	local call = false;
	if original then
		payload.sender = jid.bare(original.attr.from);
		payload.message = original:get_child_text("body");
		if original.attr.type == "groupchat" then
			payload.type = "groupchat";
			payload.nickname = jid.resource(original.attr.from);
		elseif original:get_child("propose", "urn:xmpp:jingle-message:0") then
			payload.type, call = "call", true;
		else
			payload.type = "chat";
		end
	end
	local iv = sha256(tostring(event.push_info.node)..tostring(os.clock())):sub(1, 12);
	local key = base64.decode(encryption.key_base64);
	local encrypted = st.stanza("encrypted", { xmlns = xmlns_encrypt; iv = base64.encode(iv); type = call and "voip" or nil })
		:text(base64.encode(keystream_xor(key, iv, json.encode(payload))));
	event.notification_payload:remove_children("x", "jabber:x:data"):add_child(encrypted);
end);
