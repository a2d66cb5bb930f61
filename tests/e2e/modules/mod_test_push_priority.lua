-- Test extension: what prosody-modules' mod_cloud_notify_priority_tag does,
-- written for these tests: <priority xmlns='tigase:push:priority:0'>high</priority>
-- in the payload of every push that is important when its turn comes (an
-- earlier handler may have made it so).
local xmlns_priority = "tigase:push:priority:0";

module:hook("account-disco-info", function(event)
	(event.reply or event.stanza):tag("feature", { var = xmlns_priority }):up();
end);

module:hook("cloud_notify/push", function(event)
	if event.important then
		event.notification_payload:text_tag("priority", "high", { xmlns = xmlns_priority });
	end
end);
