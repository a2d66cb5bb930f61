//! Push for group chats, on the MUC side (mod_muc_cloud_notify).
//!
//! Registrations are made against the MUC domain and keyed by the user's
//! real bare JID. A room message is pushed to members who are not joined:
//! under the `mentions` policy (the default) only to those it mentions
//! (XEP-0372 references of type `mention`, mapped to registered nicknames),
//! under `all` to every absent member holding a registration. A message the
//! room could not deliver to a (ghost) occupant is pushed to that occupant
//! under the same policy.

use crate::bounded::Fifo;
use crate::facts::StanzaFacts;

/// What gets pushed (`muc_push_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Only mentions of absent members with a registered nickname.
    #[default]
    Mentions,
    /// Every room message with a body, to absent members with a registration.
    All,
}

impl Policy {
    /// The policy an option value names (`mentions` or `all`).
    pub fn parse(s: &str) -> Option<Policy> {
        match s {
            "mentions" => Some(Policy::Mentions),
            "all" => Some(Policy::All),
            _ => None,
        }
    }
}

/// Whether an error bounced by an occupant's server shows a ghost: the
/// conditions on which Prosody's MUC kicks the occupant.
pub fn is_ghost_bounce(condition: &str) -> bool {
    matches!(
        condition,
        "gone"
            | "internal-server-error"
            | "item-not-found"
            | "jid-malformed"
            | "recipient-unavailable"
            | "redirect"
            | "remote-server-not-found"
            | "remote-server-timeout"
            | "service-unavailable"
            | "undefined-condition"
    )
}

/// References read from one message, at most.
pub const MAX_REFERENCES: usize = 32;
/// Longest nickname looked up, in characters.
const MAX_NICK_CHARS: usize = 1023;

/// An XEP-0372 `<reference/>`, as read from the stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The `type` attribute (`mention` counts).
    pub type_: Option<String>,
    /// The `begin` attribute (a character offset in the body).
    pub begin: Option<String>,
    /// The `end` attribute.
    pub end: Option<String>,
}

/// The nicknames a message's mentions point at, each once, in order.
/// `begin`/`end` count characters (not bytes), `end` exclusive. A mention
/// written as `@nick` yields both `@nick` and `nick`, for the room to
/// resolve whichever is registered.
pub fn mentioned_nicks(body: &str, refs: &[Reference]) -> Vec<String> {
    let chars: Vec<char> = body.chars().collect();
    let mut out: Vec<String> = Vec::new();
    for r in refs.iter().take(MAX_REFERENCES) {
        if r.type_.as_deref() != Some("mention") {
            continue;
        }
        let (Some(begin), Some(end)) = (
            r.begin.as_deref().and_then(|b| b.parse::<usize>().ok()),
            r.end.as_deref().and_then(|e| e.parse::<usize>().ok()),
        ) else {
            continue;
        };
        if begin >= end || end > chars.len() || end - begin > MAX_NICK_CHARS {
            continue;
        }
        let nick: String = chars[begin..end].iter().collect();
        let mut push = |n: String| {
            if !n.is_empty() && !out.contains(&n) {
                out.push(n);
            }
        };
        if let Some(stripped) = nick.strip_prefix('@') {
            push(stripped.to_owned());
        }
        push(nick);
    }
    out
}

/// What the room must tell the core about a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Wants {
    /// Nothing to push (no body, not a groupchat message).
    Nothing,
    /// The registered JIDs (and whether joined) of these nicknames.
    Nicks(Vec<String>),
    /// Every member with an affiliation, and whether joined.
    Members,
    /// The same, found the other way round: the room is asked for the
    /// affiliation of each user of this host with registrations (few),
    /// instead of walking all of its members ([`KNOWN_WALK`]).
    Known,
}

/// Most users with registrations on a MUC host for which a message under
/// `muc_push_policy = "all"` asks the room about each of them rather than
/// walking the room's members: the work then follows the members with
/// registrations, not the room's size.
pub const KNOWN_WALK: usize = 1000;

/// Whether a room message can lead to pushes, and what the room must look up.
pub fn wants(policy: Policy, facts: &StanzaFacts, refs: &[Reference]) -> Wants {
    let body = match facts.body.as_deref() {
        Some(b) if !b.is_empty() && facts.type_.as_deref() == Some("groupchat") => b,
        _ => return Wants::Nothing,
    };
    match policy {
        Policy::All => Wants::Members,
        Policy::Mentions => {
            let nicks = mentioned_nicks(body, refs);
            if nicks.is_empty() {
                Wants::Nothing
            } else {
                Wants::Nicks(nicks)
            }
        }
    }
}

/// A member the room knows, as the room reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// Real bare JID.
    pub jid: String,
    /// Currently joined (under any nickname).
    pub joined: bool,
    /// Banned from the room: never pushed.
    pub outcast: bool,
    /// Their XEP-0492 setting for the room (a local user's bookmark), if any.
    pub setting: Option<crate::chat_settings::Level>,
    /// Their nickname in the room (registered), for mentions by name.
    pub nick: Option<String>,
}

/// The members a message goes to: absent ones, each once (in linear time,
/// however many members a room lists).
pub fn recipients(members: &[Member]) -> Vec<&Member> {
    let mut seen = std::collections::HashSet::with_capacity(members.len());
    let mut out: Vec<&Member> = Vec::new();
    for m in members {
        if !m.joined && !m.outcast && seen.insert(m.jid.as_str()) {
            out.push(m);
        }
    }
    out
}

/// Recent room messages, so that an error bounce (which carries the id
/// but not always the payload) can be pushed as the message it bounced.
///
/// Only what the rules need is kept, bounded in bytes as well as in
/// entries: the sender (occupant JID), the nicknames the message
/// mentioned, and a digest of the body, never the body itself. A bounce
/// that echoes the body (RFC 6120 §8.3.1 asks it to) gets it back only when
/// the digest matches, so the occupant's server can't make the push say
/// anything the sender did not write.
pub struct Recent {
    map: Fifo<(String, String), Remembered>,
    /// Bytes held, by [`Remembered::bytes`].
    bytes: usize,
    max_bytes: usize,
}

/// What is kept of one room message.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    /// The occupant JID it came from.
    pub from: Option<String>,
    /// Digest of the body ([`body_digest`]).
    pub body_digest: u64,
    /// The nicknames it mentioned (for the `mentions` policy).
    pub mentioned: Vec<String>,
}

/// Bytes an entry counts for beyond its strings.
const ENTRY_OVERHEAD: usize = 96;

/// A digest of a message body, to recognise it in a bounce.
pub fn body_digest(body: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    h.finish()
}

impl Remembered {
    /// Bytes this entry holds, its key included.
    pub fn bytes(&self, room: &str, id: &str) -> usize {
        ENTRY_OVERHEAD
            + room.len()
            + id.len()
            + self.from.as_ref().map_or(0, String::len)
            + self.mentioned.iter().map(String::len).sum::<usize>()
    }
}

impl Recent {
    /// At most `capacity` messages and `max_bytes` bytes.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Recent {
            map: Fifo::new(capacity),
            bytes: 0,
            max_bytes,
        }
    }

    /// Room messages remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Remembers a room message that could lead to pushes (it has a body).
    pub fn remember(&mut self, room: &str, id: &str, facts: &StanzaFacts, mentioned: Vec<String>) {
        let Some(body) = facts.body.as_deref() else {
            return;
        };
        let entry = Remembered {
            from: facts.from.clone(),
            body_digest: body_digest(body),
            mentioned,
        };
        let size = entry.bytes(room, id);
        if size > self.max_bytes {
            return;
        }
        let key = (room.to_owned(), id.to_owned());
        if let Some(old) = self.map.remove(&key) {
            self.bytes -= old.bytes(room, id);
        }
        while self.bytes + size > self.max_bytes || self.map.len() >= self.map.capacity() {
            let Some(((r, i), old)) = self.map.pop_oldest() else {
                break;
            };
            self.bytes -= old.bytes(&r, &i);
        }
        self.bytes += size;
        self.map.insert(key, entry);
    }

    /// A remembered room message, by room and id.
    pub fn get(&self, room: &str, id: &str) -> Option<&Remembered> {
        self.map.get(&(room.to_owned(), id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn mention(begin: usize, end: usize) -> Reference {
        Reference {
            type_: Some("mention".into()),
            begin: Some(begin.to_string()),
            end: Some(end.to_string()),
        }
    }

    #[test]
    fn xep_0372_mention_offsets_count_characters() {
        // XEP-0372 §3 example: "Hello Juliet" mentions begin=6 end=12.
        assert_eq!(
            mentioned_nicks("Hello Juliet", &[mention(6, 12)]),
            ["Juliet"]
        );
        // Non-ASCII before and inside the nick: characters, not bytes.
        let body = "Grüße, Jürgen und Zoë!";
        assert_eq!(
            mentioned_nicks(body, &[mention(7, 13), mention(18, 21)]),
            ["Jürgen", "Zoë"]
        );
        // Several mentions of one member: once.
        assert_eq!(
            mentioned_nicks("Zoë, Zoë", &[mention(0, 3), mention(5, 8)]),
            ["Zoë"]
        );
        // "@nick" offers both spellings.
        assert_eq!(
            mentioned_nicks("@Zoë hi", &[mention(0, 4)]),
            ["Zoë", "@Zoë"]
        );
    }

    #[test]
    fn bad_references_are_ignored() {
        let body = "short";
        let refs = [
            mention(3, 2),
            mention(0, 99),
            Reference {
                type_: Some("data".into()),
                begin: Some("0".into()),
                end: Some("5".into()),
            },
            Reference {
                type_: Some("mention".into()),
                begin: Some("x".into()),
                end: None,
            },
        ];
        assert!(mentioned_nicks(body, &refs).is_empty());
    }

    #[test]
    fn what_the_room_must_look_up() {
        let msg = |xml: &str| StanzaFacts::from_element(&xml.parse::<Element>().unwrap());
        let chat = msg(
            "<message xmlns='jabber:client' type='groupchat'><body>Hello Juliet</body></message>",
        );
        let subject =
            msg("<message xmlns='jabber:client' type='groupchat'><subject>x</subject></message>");
        assert_eq!(
            wants(Policy::Mentions, &chat, &[mention(6, 12)]),
            Wants::Nicks(vec!["Juliet".into()])
        );
        assert_eq!(wants(Policy::Mentions, &chat, &[]), Wants::Nothing);
        assert_eq!(wants(Policy::All, &chat, &[]), Wants::Members);
        assert_eq!(wants(Policy::All, &subject, &[]), Wants::Nothing);
        assert_eq!(Policy::parse("all"), Some(Policy::All));
        assert_eq!(Policy::parse("everything"), None);
    }

    #[test]
    fn absent_members_once() {
        let member = |jid: &str, joined: bool, outcast: bool| Member {
            jid: jid.into(),
            joined,
            outcast,
            setting: None,
            nick: None,
        };
        let members = [
            member("a@x", false, false),
            member("b@x", true, false),
            member("a@x", false, false),
            member("c@x", false, true),
        ];
        let jids: Vec<&str> = recipients(&members)
            .iter()
            .map(|m| m.jid.as_str())
            .collect();
        assert_eq!(jids, ["a@x"]);
    }

    #[test]
    fn ghost_bounces() {
        assert!(is_ghost_bounce("service-unavailable"));
        assert!(is_ghost_bounce("recipient-unavailable"));
        assert!(!is_ghost_bounce("not-acceptable"));
        assert!(!is_ghost_bounce("forbidden"));
    }

    fn said(body: &str) -> StanzaFacts {
        StanzaFacts {
            from: Some("room@muc/Romeo".into()),
            body: Some(body.into()),
            ..Default::default()
        }
    }

    #[test]
    fn recent_is_bounded() {
        let mut r = Recent::new(2, 1 << 20);
        for i in 0..5 {
            r.remember("room@muc", &i.to_string(), &said("hi"), vec![]);
        }
        assert_eq!(r.len(), 2);
        assert!(r.get("room@muc", "4").is_some());
        assert!(r.get("room@muc", "0").is_none());
        // Nothing without a body is kept.
        r.remember("room@muc", "5", &StanzaFacts::default(), vec![]);
        assert!(r.get("room@muc", "5").is_none());
    }

    #[test]
    fn recent_keeps_no_body_and_is_bounded_in_bytes() {
        let mut r = Recent::new(4096, 64 * 1024);
        let big = "x".repeat(200_000);
        for i in 0..400 {
            r.remember(
                "room@muc",
                &format!("m{i}"),
                &said(&big),
                vec!["Jürgen".into()],
            );
        }
        // 400 messages of 200 kB: a few kB, not 80 MB.
        assert_eq!(r.len(), 400);
        assert!(r.bytes() < 400 * 200, "{}", r.bytes());
        let m = r.get("room@muc", "m7").unwrap();
        assert_eq!(m.body_digest, body_digest(&big));
        assert_eq!(m.mentioned, ["Jürgen"]);
        // Many mentions per message: the byte bound holds.
        let nicks: Vec<String> = (0..32).map(|i| format!("{i:01000}")).collect();
        for i in 0..1000 {
            r.remember("room@muc", &format!("n{i}"), &said("hi"), nicks.clone());
        }
        assert!(r.bytes() <= 64 * 1024, "{}", r.bytes());
        assert!(r.get("room@muc", "n999").is_some());
    }
}
