//! Which stanzas are important (worth waking the user for) and which are
//! urgent (worth pushing even to devices that look connected).

use crate::facts::{Direction, Kind, StanzaFacts};

/// An important stanza gets a `last-message-body` in its push, which app
/// servers turn into a visible, high-priority notification.
///
/// Important: a message with a non-empty body, an encrypted payload (OMEMO,
/// legacy PGP, OX) or a Jingle call proposal. Never important: presences,
/// IQs, headlines, carbon copies of the user's own outgoing messages, and
/// group chat subject changes.
pub fn is_important(facts: &StanzaFacts) -> bool {
    if facts.kind != Kind::Message {
        return false;
    }
    if let Some((Direction::Sent, _)) = facts.carbon {
        return false;
    }
    let msg = facts.effective();
    let type_ = msg.type_.as_deref();
    if type_ == Some("headline") {
        return false;
    }
    if msg.encrypted || msg.propose {
        return true;
    }
    if type_ == Some("groupchat") && msg.has_subject {
        return false;
    }
    msg.body_withheld || msg.body.as_deref().is_some_and(|b| !b.is_empty())
}

/// Urgent stanzas are time-critical (an incoming call): they are pushed to
/// every registration, even one whose device seems to have a live session,
/// since that session may well be a dead connection.
pub fn is_urgent(facts: &StanzaFacts) -> bool {
    facts.kind == Kind::Message && facts.propose
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn facts(xml: &str) -> StanzaFacts {
        StanzaFacts::from_element(&xml.parse::<Element>().unwrap())
    }

    #[test]
    fn chat_with_body_is_important() {
        assert!(is_important(&facts(
            "<message xmlns='jabber:client' type='chat'><body>Hi</body></message>"
        )));
    }

    #[test]
    fn empty_or_missing_body_is_not() {
        assert!(!is_important(&facts(
            "<message xmlns='jabber:client' type='chat'><body></body></message>"
        )));
        assert!(!is_important(&facts(
            "<message xmlns='jabber:client'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )));
    }

    #[test]
    fn encrypted_without_body_is_important() {
        for xml in [
            "<message xmlns='jabber:client'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
            "<message xmlns='jabber:client'><encrypted xmlns='urn:xmpp:omemo:0'/></message>",
            "<message xmlns='jabber:client'><x xmlns='jabber:x:encrypted'>qANQ</x></message>",
            "<message xmlns='jabber:client'><openpgp xmlns='urn:xmpp:openpgp:0'>BASE64</openpgp></message>",
        ] {
            assert!(is_important(&facts(xml)), "{xml}");
        }
    }

    #[test]
    fn jingle_propose_is_important_and_urgent() {
        let f = facts(
            "<message xmlns='jabber:client' type='chat'><propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894'>\
             <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose></message>",
        );
        assert!(is_important(&f));
        assert!(is_urgent(&f));
        assert!(!is_urgent(&facts(
            "<message xmlns='jabber:client'><body>x</body></message>"
        )));
    }

    #[test]
    fn headlines_subjects_and_presences_are_not() {
        assert!(!is_important(&facts(
            "<message xmlns='jabber:client' type='headline'><body>news</body></message>"
        )));
        assert!(!is_important(&facts(
            "<message xmlns='jabber:client' type='groupchat'><subject>Topic</subject><body>x</body></message>"
        )));
        assert!(!is_important(&facts(
            "<presence xmlns='jabber:client'><status>away</status></presence>"
        )));
    }

    #[test]
    fn carbons_follow_direction() {
        let sent = facts(
            "<message xmlns='jabber:client'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' type='chat'><body>mine</body></message></forwarded></sent></message>",
        );
        assert!(!is_important(&sent));
        let received = facts(
            "<message xmlns='jabber:client'><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' type='chat'><body>theirs</body></message></forwarded></received></message>",
        );
        assert!(is_important(&received));
    }
}
