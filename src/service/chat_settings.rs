//! XEP-0492: the users' chat notification settings, read from their bookmarks.

use super::*;

impl PushService {
    /// XEP-0492: whether the user's bookmarks are to be read: not read
    /// since they were loaded, and they have registrations here (or `any`:
    /// a MUC module asks for a local member with registrations there).
    pub fn bookmarks_wanted(&self, user: &str, any: bool) -> bool {
        !self.settings.is_read(user)
            && (any
                || self
                    .registry
                    .peek(user)
                    .is_some_and(|regs| !regs.is_empty()))
    }

    /// XEP-0492: the user's bookmarks, as read (room JID and what its
    /// bookmark says).
    pub fn bookmarks_read(&mut self, user: &str, rooms: Vec<(String, Option<RoomSetting>)>) {
        self.settings.read(
            user,
            rooms.iter().map(|(room, s)| (room.as_str(), s.clone())),
        );
    }

    /// XEP-0492: one of the user's bookmarks published (`Some`) or
    /// retracted (`None`), followed for users whose bookmarks were read.
    pub fn bookmark_changed(&mut self, user: &str, room: &str, setting: Option<RoomSetting>) {
        self.settings.set(user, room, setting);
    }

    /// XEP-0492: the user's setting for `room`, if their bookmarks were
    /// read and it has one.
    pub fn chat_setting(&self, user: &str, room: &str) -> Option<&RoomSetting> {
        self.settings.get(user, room)
    }

    /// XEP-0492: whether a bare groupchat message to the user is pushed
    /// at all, by their setting for the room it came from.
    pub fn groupchat_wanted(&self, user: &str, facts: &StanzaFacts, pings: &Pings) -> bool {
        let Some(room) = facts.from.as_deref() else {
            return true;
        };
        let Some(setting) = self.settings.get(user, room) else {
            return true;
        };
        let user_jid = bare_jid(&self.host, user);
        wants_push(
            Some(setting.level),
            facts,
            pings,
            &user_jid,
            setting.nick.as_deref(),
            room,
        )
    }

    /// Bytes of chat settings kept.
    pub fn chat_settings_bytes(&self) -> usize {
        self.settings.bytes()
    }
}
