-- Test extension: marks each push with the kind the cloud_notify/push event
-- gives it (<kind xmlns='urn:example:kind' value='call'/> in the payload),
-- the way a module that treats calls as VoIP pushes would read it.
module:hook("cloud_notify/push", function(event)
	event.notification_payload:tag("kind", { xmlns = "urn:example:kind", value = event.push_kind }):up();
end);
