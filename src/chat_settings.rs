//! XEP-0492 (Chat notification settings): what the user asked, per group
//! chat, in the chat's XEP-0402 bookmark — notify `<always/>`,
//! `<on-mention/>` or `<never/>`, optionally per device identity — and what
//! that means for a push about one of its messages.
//!
//! A push device is a `client`/`phone` ([`PUSH_IDENTITY`]): the element most
//! specific to it wins (category and type, then category, then the fallback
//! without attributes). Both namespaces are read: v0.2's
//! `urn:xmpp:notification-settings:1` and v0.1's `…:0` (v0.2 wins when a
//! bookmark holds both).
//!
//! Kept per user, bounded: only rooms with a setting, at most
//! [`MAX_ROOMS`] per user, a nickname of at most [`MAX_NICK_BYTES`], and
//! [`MAX_BYTES`] per host in all: beyond it other users' settings are
//! forgotten (and read again when needed); beyond [`MAX_ROOMS`] a room's
//! setting is not kept, and its messages are pushed as without one.

use minidom::Element;
use std::collections::HashMap;

/// v0.2 (2025-10) of XEP-0492.
pub const NS_NOTIFY: &str = "urn:xmpp:notification-settings:1";
/// v0.1 (2024-07), still written by some clients.
pub const NS_NOTIFY_0: &str = "urn:xmpp:notification-settings:0";
/// XEP-0402 PEP Native Bookmarks.
pub const NS_BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
/// The identity a push device reads its setting for.
pub const PUSH_IDENTITY: (&str, &str) = ("client", "phone");
/// Rooms with a setting kept per user.
pub const MAX_ROOMS: usize = 1000;
/// Longest nickname kept (for "on-mention": the nickname in the body).
pub const MAX_NICK_BYTES: usize = 256;
/// Bytes of settings kept per host.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Bytes counted per room besides its nickname.
const ROOM_BYTES: usize = 48;
/// Bytes counted per user read (with or without settings).
const USER_BYTES: usize = 64;

/// When the user wants to be notified about a group chat's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Every message (as without a setting).
    Always,
    /// Only a message that mentions the user or replies to them.
    OnMention,
    /// No message (calls excepted).
    Never,
}

impl Level {
    /// The level of that XEP-0492 name (`always`, `on-mention`, `never`).
    pub fn of(name: &str) -> Option<Level> {
        match name {
            "always" => Some(Level::Always),
            "on-mention" => Some(Level::OnMention),
            "never" => Some(Level::Never),
            _ => None,
        }
    }

    /// Its name in XEP-0492.
    pub fn name(self) -> &'static str {
        match self {
            Level::Always => "always",
            Level::OnMention => "on-mention",
            Level::Never => "never",
        }
    }
}

/// The level a `<notify/>` element gives a device of identity
/// (`category`, `type_`): the most specific element wins.
pub fn resolve(notify: &Element, (category, type_): (&str, &str)) -> Option<Level> {
    let mut best: Option<(u8, Level)> = None;
    for child in notify.children().take(64) {
        let Some(level) = Level::of(child.name()) else {
            continue;
        };
        let rank = match (child.attr("identity-category"), child.attr("identity-type")) {
            (Some(c), Some(t)) if c == category && t == type_ => 3,
            (Some(c), None) if c == category => 2,
            (None, None) => 1,
            _ => continue,
        };
        if best.is_none_or(|(r, _)| rank > r) {
            best = Some((rank, level));
        }
    }
    best.map(|(_, level)| level)
}

/// The level that holds for a ghost occupant's bounce: only `never` (the
/// bounce is itself the mention the other levels would look for).
pub fn on_bounce(level: Option<Level>) -> Option<Level> {
    level.filter(|l| *l == Level::Never)
}

/// What a bookmark says for pushes: the level for a push device and the
/// user's nickname in the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSetting {
    /// The level.
    pub level: Level,
    /// The nickname (bounded), for mentions by name.
    pub nick: Option<Box<str>>,
}

/// A bookmark's `<conference/>` (XEP-0402) as a setting, if it has one.
pub fn from_conference(conference: &Element) -> Option<RoomSetting> {
    let extensions = conference.get_child("extensions", NS_BOOKMARKS)?;
    let notify = extensions
        .get_child("notify", NS_NOTIFY)
        .or_else(|| extensions.get_child("notify", NS_NOTIFY_0))?;
    let level = resolve(notify, PUSH_IDENTITY)?;
    let nick = conference
        .get_child("nick", NS_BOOKMARKS)
        .map(|n| n.text())
        .filter(|n| !n.is_empty() && n.len() <= MAX_NICK_BYTES)
        .map(String::into_boxed_str);
    Some(RoomSetting { level, nick })
}

/// A room's key: its bare JID, lower-cased (JIDs compare so), digested.
fn room_key(room: &str) -> u64 {
    let bare = crate::bare(room);
    crate::ids::digest(&[&bare.to_ascii_lowercase()])
}

fn bytes_of(setting: &RoomSetting) -> usize {
    ROOM_BYTES + setting.nick.as_ref().map_or(0, |n| n.len())
}

/// Every user's settings on one host.
#[derive(Debug, Default)]
pub struct ChatSettings {
    users: HashMap<String, HashMap<u64, RoomSetting>>,
    bytes: usize,
}

impl ChatSettings {
    /// Whether the user's bookmarks were read (and not forgotten since).
    pub fn is_read(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The user's bookmarks, as read: replaces what was kept.
    pub fn read<'a>(
        &mut self,
        user: &str,
        rooms: impl IntoIterator<Item = (&'a str, Option<RoomSetting>)>,
    ) {
        self.forget(user);
        self.make_room(user, USER_BYTES + user.len());
        self.bytes += USER_BYTES + user.len();
        self.users.insert(user.to_owned(), HashMap::new());
        for (room, setting) in rooms {
            self.set(user, room, setting);
        }
    }

    /// One bookmark published (`Some`, with or without a setting) or
    /// retracted (`None`); for a user whose bookmarks were read.
    pub fn set(&mut self, user: &str, room: &str, setting: Option<RoomSetting>) {
        let Some(rooms) = self.users.get_mut(user) else {
            return; // (read in full when needed)
        };
        let key = room_key(room);
        if let Some(old) = rooms.remove(&key) {
            self.bytes -= bytes_of(&old);
        }
        let Some(setting) = setting else { return };
        let bytes = bytes_of(&setting);
        if rooms.len() >= MAX_ROOMS {
            return; // (bounded: pushed as without a setting)
        }
        if !self.make_room(user, bytes) {
            return;
        }
        self.bytes += bytes;
        if let Some(rooms) = self.users.get_mut(user) {
            rooms.insert(key, setting);
        }
    }

    /// Room for `bytes` more: other users' settings go (read again when
    /// needed). False if `user`'s own fill the bound.
    fn make_room(&mut self, user: &str, bytes: usize) -> bool {
        while self.bytes + bytes > MAX_BYTES {
            let Some(other) = self.users.keys().find(|u| *u != user).cloned() else {
                return false;
            };
            self.forget(&other);
        }
        true
    }

    /// The user's setting for `room`, if any.
    pub fn get(&self, user: &str, room: &str) -> Option<&RoomSetting> {
        self.users.get(user)?.get(&room_key(room))
    }

    /// Forgets the user's settings (they left memory): read again when
    /// needed.
    pub fn forget(&mut self, user: &str) {
        if let Some(rooms) = self.users.remove(user) {
            let settings: usize = rooms.values().map(bytes_of).sum();
            self.bytes -= USER_BYTES + user.len() + settings;
        }
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What tells whether a group chat message is for the user: the
/// XEP-0372 mention references (their `uri`, or the text they cover), and
/// the `to` of an XEP-0461 reply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pings {
    /// The URIs of the mention references (`xmpp:user@host`,
    /// `xmpp:room@muc/nick`).
    pub uris: Vec<String>,
    /// The nicknames the mention references cover in the body.
    pub nicks: Vec<String>,
    /// The `to` of a reply (`room@muc/nick`, or a bare JID).
    pub reply_to: Option<String>,
}

/// Whether a group chat message from `room` mentions the user (`user_jid`
/// or `nick`) or replies to them: a mention reference to them, a reply to
/// them, or their nickname written in the body as a word.
pub fn mentions(
    body: Option<&str>,
    pings: &Pings,
    user_jid: &str,
    nick: Option<&str>,
    room: &str,
) -> bool {
    let occupant = nick.map(|n| format!("{}/{n}", crate::bare(room)));
    let is_them = |jid: &str| {
        let jid = jid.strip_prefix("xmpp:").unwrap_or(jid);
        jid.eq_ignore_ascii_case(user_jid) || occupant.as_deref() == Some(jid)
    };
    if pings.uris.iter().any(|u| is_them(u)) || pings.reply_to.as_deref().is_some_and(is_them) {
        return true;
    }
    let Some(nick) = nick else { return false };
    pings.nicks.iter().any(|n| n == nick) || body.is_some_and(|b| has_word(b, nick))
}

/// Whether `word` appears in `text` not inside a longer word. A word of
/// fewer than two letters or digits never does ("I", "a", ".", an emoji
/// would match nearly every message).
fn has_word(text: &str, word: &str) -> bool {
    if word.chars().filter(|c| c.is_alphanumeric()).count() < 2 {
        return false;
    }
    let lower_text = text.to_lowercase();
    let lower_word = word.to_lowercase();
    lower_text.match_indices(&lower_word).any(|(at, found)| {
        let before = lower_text[..at].chars().next_back();
        let after = lower_text[at + found.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    // XEP-0492 v0.2.0, Example 2 (by identity).
    const BY_IDENTITY: &str = "<notify xmlns='urn:xmpp:notification-settings:1'>\
        <never identity-category='client' identity-type='pc'/>\
        <on-mention identity-category='client' identity-type='phone'/>\
        <on-mention identity-category='gateway'/>\
        <always/></notify>";

    #[test]
    fn the_most_specific_element_wins() {
        let notify = el(BY_IDENTITY);
        assert_eq!(
            resolve(&notify, ("client", "phone")),
            Some(Level::OnMention)
        );
        assert_eq!(resolve(&notify, ("client", "pc")), Some(Level::Never));
        assert_eq!(resolve(&notify, ("gateway", "irc")), Some(Level::OnMention));
        assert_eq!(resolve(&notify, ("client", "web")), Some(Level::Always));
        // Example 1: the fallback alone.
        let basic = el("<notify xmlns='urn:xmpp:notification-settings:1'><never/></notify>");
        assert_eq!(resolve(&basic, PUSH_IDENTITY), Some(Level::Never));
        // Only for another identity: none for a phone.
        let other = el("<notify xmlns='urn:xmpp:notification-settings:1'>\
            <never identity-category='client' identity-type='pc'/></notify>");
        assert_eq!(resolve(&other, PUSH_IDENTITY), None);
    }

    fn conference(notify: &str) -> Element {
        el(&format!(
            "<conference xmlns='urn:xmpp:bookmarks:1' name='Orchard' autojoin='true'>\
             <nick>Romeo</nick><extensions>{notify}</extensions></conference>"
        ))
    }

    #[test]
    fn a_bookmark_gives_the_level_and_the_nickname_in_both_namespaces() {
        let one = from_conference(&conference(BY_IDENTITY)).unwrap();
        assert_eq!(one.level, Level::OnMention);
        assert_eq!(one.nick.as_deref(), Some("Romeo"));
        // v0.1 (slixmpp's plugin writes it).
        let zero = from_conference(&conference(
            "<notify xmlns='urn:xmpp:notification-settings:0'><never/></notify>",
        ))
        .unwrap();
        assert_eq!(zero.level, Level::Never);
        // Both: v0.2 wins.
        let both = from_conference(&conference(
            "<notify xmlns='urn:xmpp:notification-settings:0'><never/></notify>\
             <notify xmlns='urn:xmpp:notification-settings:1'><always/></notify>",
        ))
        .unwrap();
        assert_eq!(both.level, Level::Always);
        // None: as without a setting.
        assert_eq!(from_conference(&conference("")), None);
    }

    #[test]
    fn kept_per_user_bounded_and_forgotten() {
        let mut s = ChatSettings::default();
        let never = || {
            Some(RoomSetting {
                level: Level::Never,
                nick: None,
            })
        };
        s.set("romeo", "a@muc.example", never());
        assert!(
            s.get("romeo", "a@muc.example").is_none(),
            "not read yet: nothing kept"
        );
        s.read(
            "romeo",
            [("A@Muc.Example", never()), ("b@muc.example", None)],
        );
        assert_eq!(
            s.get("romeo", "a@muc.example/Romeo").unwrap().level,
            Level::Never
        );
        assert!(s.get("romeo", "b@muc.example").is_none());
        let rooms: Vec<String> = (0..MAX_ROOMS + 10)
            .map(|i| format!("r{i}@muc.example"))
            .collect();
        s.read("juliet", rooms.iter().map(|r| (r.as_str(), never())));
        assert!(s.get("juliet", "r0@muc.example").is_some());
        assert!(
            s.get("juliet", &rooms[MAX_ROOMS + 5]).is_none(),
            "beyond the bound"
        );
        s.set("romeo", "a@muc.example", None);
        assert!(s.get("romeo", "a@muc.example").is_none(), "retracted");
        s.forget("juliet");
        s.forget("romeo");
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn only_never_holds_for_a_ghosts_bounce() {
        assert_eq!(on_bounce(Level::of("never")), Some(Level::Never));
        assert_eq!(on_bounce(Level::of("on-mention")), None);
        assert_eq!(on_bounce(Level::of("always")), None);
        assert_eq!(Level::of("sometimes"), None);
    }

    #[test]
    fn mentions_by_reference_reply_or_name() {
        let room = "orchard@muc.example";
        let none = Pings::default();
        let by = |p: Pings, body: &str| {
            mentions(Some(body), &p, "romeo@example.com", Some("Romeo"), room)
        };
        assert!(!by(none.clone(), "the orchard wall is high"));
        assert!(by(none.clone(), "romeo, are you there?"));
        assert!(!by(none.clone(), "romeos everywhere"));
        // A nickname of one letter (or none) is not looked for in the body.
        let short = |nick| {
            mentions(
                Some("I think a . is fine"),
                &none,
                "i@example.com",
                Some(nick),
                room,
            )
        };
        assert!(!short("I") && !short(".") && !short("a"));
        let uri = Pings {
            uris: vec!["xmpp:romeo@example.com".into()],
            ..Pings::default()
        };
        assert!(by(uri, "hey you"));
        let reply = Pings {
            reply_to: Some("orchard@muc.example/Romeo".into()),
            ..Pings::default()
        };
        assert!(by(reply, "yes"));
        let other = Pings {
            reply_to: Some("orchard@muc.example/Tybalt".into()),
            nicks: vec!["Tybalt".into()],
            ..Pings::default()
        };
        assert!(!by(other, "draw"));
    }
}
