-- Test probe: marks each push with what its cloud_notify/push event gives
-- handlers, for what no real extension module shows:
-- <kind xmlns='urn:example:kind' value='call' original='message'
--   original-type='chat' original-from='…' original-to='…' body='yes|no'/>
-- in the payload: the push's kind (as a module that treats calls as VoIP
-- pushes would read it) and the original_stanza every push carries.
module:hook("cloud_notify/push", function(event)
	local original = event.original_stanza;
	event.notification_payload:tag("kind", {
		xmlns = "urn:example:kind";
		value = event.push_kind;
		original = original and original.name or "none";
		["original-type"] = original and original.attr.type or nil;
		["original-from"] = original and original.attr.from or nil;
		["original-to"] = original and original.attr.to or nil;
		body = original and (original:get_child("body") and "yes" or "no") or nil;
	}):up();
end);
