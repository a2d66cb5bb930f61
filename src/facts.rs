//! What the core needs to know about a stanza, and nothing more.
//!
//! Walking a whole stanza is costly, so the binding reads the top-level
//! attributes and, for each child, asks [`classify_child`] whether it
//! matters. The same walk over a minidom [`Element`] ([`StanzaFacts::from_element`])
//! serves the unit tests and any caller holding parsed XML; the specs feed
//! both walks the same stanzas and compare what they found.

/// XEP-0280 Message Carbons.
pub const NS_CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0297 Stanza Forwarding.
pub const NS_FORWARD: &str = "urn:xmpp:forward:0";
/// OMEMO as Conversations first shipped it.
pub const NS_OMEMO_LEGACY: &str = "eu.siacs.conversations.axolotl";
/// XEP-0384 OMEMO.
pub const NS_OMEMO: &str = "urn:xmpp:omemo:0";
/// XEP-0384 OMEMO, version 2.
pub const NS_OMEMO_2: &str = "urn:xmpp:omemo:2";
/// XEP-0027 legacy OpenPGP.
pub const NS_PGP_LEGACY: &str = "jabber:x:encrypted";
/// XEP-0373 OpenPGP for XMPP.
pub const NS_OX: &str = "urn:xmpp:openpgp:0";
/// XEP-0353 Jingle Message Initiation.
pub const NS_JINGLE_MESSAGE: &str = "urn:xmpp:jingle-message:0";
/// The namespace's next version (mod_mam archives both).
pub const NS_JINGLE_MESSAGE_1: &str = "urn:xmpp:jingle-message:1";
/// XEP-0359 Unique and Stable Stanza IDs.
pub const NS_STANZA_ID: &str = "urn:xmpp:sid:0";
/// XEP-0085 Chat State Notifications.
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0333 Chat Markers.
pub const NS_CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0444 Message Reactions.
pub const NS_REACTIONS: &str = "urn:xmpp:reactions:0";
/// XEP-0461 Message Replies.
pub const NS_REPLY: &str = "urn:xmpp:reply:0";
/// Longest reply `to` kept (bytes: a full JID's bound).
pub const MAX_REPLY_TO_LEN: usize = 3071;

/// Longest call id kept (bytes): a longer one is not tracked as a call.
pub const MAX_CALL_ID_LEN: usize = 256;

/// A Jingle Message Initiation (XEP-0353) signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallSignal {
    /// `<propose/>`: the caller rings the callee's devices.
    Propose,
    /// `<retract/>`: the caller hung up before anyone answered.
    Retract,
    /// `<accept/>`: one of the callee's devices answered (to its own account).
    Accept,
    /// `<proceed/>`: one of the callee's devices answered (to the caller).
    Proceed,
    /// `<reject/>`: one of the callee's devices declined.
    Reject,
}

impl CallSignal {
    fn from_name(name: &str) -> Option<CallSignal> {
        Some(match name {
            "propose" => CallSignal::Propose,
            "retract" => CallSignal::Retract,
            "accept" => CallSignal::Accept,
            "proceed" => CallSignal::Proceed,
            "reject" => CallSignal::Reject,
            _ => return None,
        })
    }
}

/// Namespaces a stanza's own children (body, subject) live in.
fn is_stanza_ns(ns: &str) -> bool {
    matches!(
        ns,
        "jabber:client" | "jabber:server" | "jabber:component:accept"
    )
}

/// The key of an archived message, from its archive id (as
/// `archive-message-added` gives it): equal to [`StanzaFacts::stable_key`]
/// of any copy carrying the matching `<stanza-id/>`.
pub fn archive_key(archive_id: &str) -> String {
    format!("a:{archive_id}")
}

/// The local part of a JID (`user` of `user@host/resource`), if any.
#[cfg(test)]
pub fn jid_node(jid: &str) -> Option<&str> {
    let bare = crate::bare(jid);
    bare.split_once('@')
        .map(|(node, _)| node)
        .filter(|n| !n.is_empty())
}

/// The stanza kind, from its element name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// `<message/>`.
    Message,
    /// `<presence/>`.
    Presence,
    /// `<iq/>`.
    Iq,
    /// Anything else.
    #[default]
    Other,
}

impl Kind {
    /// The kind of an element named `name`.
    pub fn from_name(name: &str) -> Kind {
        match name {
            "message" => Kind::Message,
            "presence" => Kind::Presence,
            "iq" => Kind::Iq,
            _ => Kind::Other,
        }
    }
}

/// What a child element means for push decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// `<body/>`: its text is needed.
    Body,
    /// `<subject/>`.
    Subject,
    /// OMEMO (legacy and current), legacy PGP or OX: content the server can't read.
    Encrypted,
    /// A Jingle Message Initiation signal (`<propose/>`: an incoming call).
    Call(CallSignal),
    /// A chat state that shows the user at work: active, composing, paused.
    ChatState,
    /// A XEP-0333 `<displayed/>` marker: the chat was read.
    Displayed,
    /// A carbon copy of a message the user sent.
    CarbonSent,
    /// A carbon copy of a message the user received.
    CarbonReceived,
    /// An XEP-0359 `<stanza-id by=… id=…/>`: a stable key for the message.
    StanzaId,
    /// An XEP-0444 `<reactions/>`: a reaction to an earlier message.
    Reactions,
    /// An XEP-0461 `<reply to=…/>`: its `to` is needed.
    Reply,
    /// Something push decisions do not look at.
    Ignored,
}

/// Classifies a child of a stanza by name and (resolved) namespace.
pub fn classify_child(name: &str, ns: &str) -> Child {
    match (name, ns) {
        ("body", ns) if is_stanza_ns(ns) => Child::Body,
        ("subject", ns) if is_stanza_ns(ns) => Child::Subject,
        ("encrypted", NS_OMEMO_LEGACY | NS_OMEMO | NS_OMEMO_2) => Child::Encrypted,
        ("x", NS_PGP_LEGACY) => Child::Encrypted,
        ("openpgp", NS_OX) => Child::Encrypted,
        (name, NS_JINGLE_MESSAGE | NS_JINGLE_MESSAGE_1) => match CallSignal::from_name(name) {
            Some(signal) => Child::Call(signal),
            None => Child::Ignored,
        },
        ("active" | "composing" | "paused", NS_CHATSTATES) => Child::ChatState,
        ("displayed", NS_CHAT_MARKERS) => Child::Displayed,
        ("sent", NS_CARBONS) => Child::CarbonSent,
        ("received", NS_CARBONS) => Child::CarbonReceived,
        ("stanza-id", NS_STANZA_ID) => Child::StanzaId,
        ("reactions", NS_REACTIONS) => Child::Reactions,
        ("reply", NS_REPLY) => Child::Reply,
        _ => Child::Ignored,
    }
}

/// Direction of a carbon copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `<sent/>`: the user's own outgoing message, copied.
    Sent,
    /// `<received/>`: an incoming message, copied.
    Received,
}

/// The facts push decisions are made on.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StanzaFacts {
    /// Message, presence, IQ or other.
    pub kind: Kind,
    /// The `type` attribute.
    pub type_: Option<String>,
    /// The `from` attribute.
    pub from: Option<String>,
    /// The `to` attribute.
    pub to: Option<String>,
    /// The `id` attribute.
    pub id: Option<String>,
    /// The first `<body/>`'s text.
    pub body: Option<String>,
    /// A (non-empty) body is known to be there but its text is not kept
    /// (a room message the MUC module remembers): important, and pushed
    /// with the placeholder body, never with text.
    pub body_withheld: bool,
    /// A `<subject/>` (a room topic change).
    pub has_subject: bool,
    /// Content the server can't read (OMEMO, PGP, OX).
    pub encrypted: bool,
    /// A call's `<propose/>` (XEP-0353).
    pub propose: bool,
    /// The first Jingle Message Initiation signal and its call id.
    pub call: Option<(CallSignal, Option<String>)>,
    /// An active, composing or paused chat state.
    pub chat_state: bool,
    /// A chat marker `<displayed/>`.
    pub displayed: bool,
    /// For a carbon copy: its direction and the forwarded message.
    pub carbon: Option<(Direction, Box<StanzaFacts>)>,
    /// The first few `<stanza-id/>`s, as `(by, id)`.
    pub stanza_ids: Vec<(String, String)>,
    /// An XEP-0444 reaction.
    pub reactions: bool,
    /// The `to` of an XEP-0461 reply (the first; at most
    /// [`MAX_REPLY_TO_LEN`] bytes).
    pub reply_to: Option<String>,
}

/// Stanza ids kept per stanza: one per archive that saw it is plenty.
pub const MAX_STANZA_IDS: usize = 4;

impl StanzaFacts {
    /// Records a reply's `to` (the first, if not too long).
    pub fn note_reply(&mut self, to: Option<String>) {
        if self.reply_to.is_none() {
            self.reply_to = to.filter(|t| t.len() <= MAX_REPLY_TO_LEN);
        }
    }

    /// Records a call signal with its `id` (the first signal only; an id
    /// longer than [`MAX_CALL_ID_LEN`] is not kept).
    pub fn note_call(&mut self, signal: CallSignal, id: Option<String>) {
        if signal == CallSignal::Propose {
            self.propose = true;
        }
        if self.call.is_none() {
            let id = id.filter(|id| !id.is_empty() && id.len() <= MAX_CALL_ID_LEN);
            self.call = Some((signal, id));
        }
    }

    /// The call this stanza signals about: its signal and id.
    pub fn call_signal(&self) -> Option<(CallSignal, &str)> {
        match &self.call {
            Some((signal, Some(id))) => Some((*signal, id.as_str())),
            _ => None,
        }
    }

    /// Records a `<stanza-id/>`.
    pub fn note_stanza_id(&mut self, by: Option<String>, id: Option<String>) {
        if let (Some(by), Some(id)) = (by, id) {
            if self.stanza_ids.len() < MAX_STANZA_IDS {
                self.stanza_ids.push((by, id));
            }
        }
    }

    /// A key naming this stanza stably across the copies Prosody makes of
    /// it (mod_mam hands `archive-message-added` one copy, the offline and
    /// smacks paths see others): the archive id of the user's own archive
    /// (`<stanza-id by='user@host'/>`), else the sender and the stanza's
    /// `id`. `None` for a stanza with neither.
    pub fn stable_key(&self, user_bare: &str) -> Option<String> {
        if let Some((_, id)) = self.stanza_ids.iter().find(|(by, _)| by == user_bare) {
            return Some(archive_key(id));
        }
        let id = self.id.as_deref().filter(|id| !id.is_empty())?;
        let from = self.from.as_deref().unwrap_or("");
        let kind = match self.kind {
            Kind::Message => 'm',
            Kind::Presence => 'p',
            Kind::Iq => 'i',
            Kind::Other => return None,
        };
        // Senders reuse ids (counters restarting per connection, bots):
        // the content takes part, so two different messages with one id
        // are never taken for copies of each other.
        Some(format!(
            "{kind}:{from}\u{1f}{id}\u{1f}{:016x}",
            self.content_digest()
        ))
    }

    /// A digest of what a push says about this stanza (type, body, flags,
    /// a carbon's direction and message): equal for the copies Prosody
    /// makes of one stanza, different for different messages.
    pub fn content_digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        fn feed(f: &StanzaFacts, h: &mut std::collections::hash_map::DefaultHasher) {
            f.type_.hash(h);
            f.body.hash(h);
            (f.has_subject, f.encrypted, f.propose, &f.call).hash(h);
            (f.chat_state, f.displayed, f.reactions, &f.reply_to).hash(h);
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        feed(self, &mut h);
        if let Some((dir, inner)) = &self.carbon {
            (*dir == Direction::Sent).hash(&mut h);
            inner.from.hash(&mut h);
            inner.id.hash(&mut h);
            feed(inner, &mut h);
        }
        h.finish()
    }

    /// Whether this stanza may be read as a carbon copy for `user_bare`:
    /// XEP-0280 §11, a copy counts only when it comes from the user's own
    /// bare JID, as the server sends it (anyone can wrap a forged
    /// `<received/>` around a message; a full JID of the user's is one of
    /// their clients, which sends no carbons).
    /// True for a stanza that is no carbon.
    pub fn carbon_trusted(&self, user_bare: &str) -> bool {
        self.carbon.is_none() || self.from.as_deref().is_some_and(|f| f == user_bare)
    }

    /// The stanza as `user_bare` gets it: a carbon copy not from their own
    /// bare JID is a plain message (its outer sender, body and flags).
    pub fn received_by(self, user_bare: &str) -> StanzaFacts {
        if self.carbon_trusted(user_bare) {
            self
        } else {
            StanzaFacts {
                carbon: None,
                ..self
            }
        }
    }

    /// The message the user would read: the forwarded one for a carbon copy.
    pub fn effective(&self) -> &StanzaFacts {
        match &self.carbon {
            Some((_, inner)) => inner,
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn parse(xml: &str) -> StanzaFacts {
        StanzaFacts::from_element(&xml.parse::<Element>().unwrap())
    }

    #[test]
    fn reads_body_and_attributes() {
        let f = parse(
            "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example' type='chat' id='m1'>\
             <body>Wherefore art thou, Romeo?</body><body xml:lang='de'>zweiter</body></message>",
        );
        assert_eq!(f.kind, Kind::Message);
        assert_eq!(f.type_.as_deref(), Some("chat"));
        assert_eq!(f.from.as_deref(), Some("juliet@capulet.example/balcony"));
        assert_eq!(f.body.as_deref(), Some("Wherefore art thou, Romeo?"));
        assert!(!f.encrypted && !f.propose && !f.has_subject);
    }

    #[test]
    fn body_in_another_namespace_is_not_a_body() {
        let f =
            parse("<message xmlns='jabber:client'><body xmlns='urn:example'>x</body></message>");
        assert_eq!(f.body, None);
    }

    #[test]
    fn reads_a_received_carbon() {
        let f = parse(
            "<message xmlns='jabber:client' from='romeo@montague.example' to='romeo@montague.example/garden'>\
             <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' from='juliet@capulet.example/balcony' type='chat'><body>hi</body></message>\
             </forwarded></received></message>",
        );
        let (dir, inner) = f.carbon.as_ref().unwrap();
        assert_eq!(*dir, Direction::Received);
        assert_eq!(inner.body.as_deref(), Some("hi"));
        assert_eq!(
            f.effective().from.as_deref(),
            Some("juliet@capulet.example/balcony")
        );
    }

    #[test]
    fn stable_keys() {
        // XEP-0359 example: the archive's stanza-id wins over the message id.
        let f = parse(
            "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' to='romeo@montague.example/orchard' id='m1'>\
             <body>hi</body><stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example' id='x'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@montague.example' id='5f3dbc5e'/></message>",
        );
        assert_eq!(
            f.stable_key("romeo@montague.example").as_deref(),
            Some("a:5f3dbc5e")
        );
        assert_eq!(archive_key("5f3dbc5e"), "a:5f3dbc5e");
        // Someone else's stanza-id is no key for this user: sender and id are.
        let key = f.stable_key("juliet@capulet.example").unwrap();
        assert!(
            key.starts_with("m:juliet@capulet.example/balcony\u{1f}m1\u{1f}"),
            "{key}"
        );
        let none = parse("<presence xmlns='jabber:client' from='a@b/c'/>");
        assert_eq!(none.stable_key("a@b"), None);
    }

    #[test]
    fn a_reused_id_is_not_a_copy() {
        // Clients whose counters restart per connection, bots: one sender,
        // one id, two messages.
        let first = parse(
            "<message xmlns='jabber:client' from='bot@example.org/x' type='chat' id='1'><body>Build failed</body></message>",
        );
        let second = parse(
            "<message xmlns='jabber:client' from='bot@example.org/x' type='chat' id='1'><body>Build fixed</body></message>",
        );
        let user = "romeo@montague.example";
        assert_ne!(first.stable_key(user), second.stable_key(user));
        // A copy of the same stanza (another path, another object) is one.
        let copy = parse(
            "<message xmlns='jabber:client' from='bot@example.org/x' type='chat' id='1' to='romeo@montague.example'>\
             <body>Build failed</body><delay xmlns='urn:xmpp:delay' stamp='2026-12-02T01:00:00Z'/></message>",
        );
        assert_eq!(first.stable_key(user), copy.stable_key(user));
    }

    #[test]
    fn forged_carbons_are_plain_messages() {
        // XEP-0280 §11: only the user's own bare JID sends carbons.
        let forged = parse(
            "<message xmlns='jabber:client' from='mallory@evil.example/x' to='romeo@montague.example' type='chat'>\
             <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' from='bank@trusted.example/web' type='chat'><body>Send money</body></message>\
             </forwarded></received></message>",
        );
        assert!(!forged.carbon_trusted("romeo@montague.example"));
        let plain = forged.clone().received_by("romeo@montague.example");
        assert!(plain.carbon.is_none());
        assert_eq!(
            plain.effective().from.as_deref(),
            Some("mallory@evil.example/x")
        );
        assert_eq!(plain.effective().body, None);
        let real = StanzaFacts {
            from: Some("romeo@montague.example".into()),
            ..forged
        };
        assert!(real.carbon_trusted("romeo@montague.example"));
        assert!(real
            .clone()
            .received_by("romeo@montague.example")
            .carbon
            .is_some());
        assert!(!real.carbon_trusted("juliet@capulet.example"));
        // One of the user's own clients is not the server: no carbons from it.
        let from_a_client = StanzaFacts {
            from: Some("romeo@montague.example/laptop".into()),
            ..real
        };
        assert!(!from_a_client.carbon_trusted("romeo@montague.example"));
    }

    #[test]
    fn jid_nodes() {
        assert_eq!(jid_node("romeo@example.com/orchard"), Some("romeo"));
        assert_eq!(jid_node("romeo@example.com"), Some("romeo"));
        assert_eq!(jid_node("example.com"), None);
        assert_eq!(jid_node("example.com/a@b"), None);
    }

    #[test]
    fn classifies_encryption_and_calls() {
        assert_eq!(
            classify_child("encrypted", NS_OMEMO_LEGACY),
            Child::Encrypted
        );
        assert_eq!(classify_child("encrypted", NS_OMEMO), Child::Encrypted);
        assert_eq!(classify_child("x", NS_PGP_LEGACY), Child::Encrypted);
        assert_eq!(classify_child("openpgp", NS_OX), Child::Encrypted);
        assert_eq!(
            classify_child("propose", NS_JINGLE_MESSAGE),
            Child::Call(CallSignal::Propose)
        );
        assert_eq!(classify_child("x", "jabber:x:data"), Child::Ignored);
    }
}
