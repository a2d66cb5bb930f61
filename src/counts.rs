//! Unread counts: how many important messages each registration was told
//! of since its device last had a session, per chat.
//!
//! The `message-count` of a push is the registration's total. A device
//! that connects (binds or resumes with its registration) is back at 0;
//! a chat marked read on any device of the user (a XEP-0333 `displayed`
//! marker, a XEP-0490 MDS update) drops that chat's messages.
//!
//! Bounded: [`MAX_CHATS`] chats per registration, each named by at most
//! [`MAX_CHAT_LEN`] bytes; beyond that, the least recently counted chat is
//! folded into one "other chats" entry (named `""`), which only a new
//! session clears. The counts are stored with the registration
//! (`message_counts`, a map chat → count, absent when empty).

/// Chats counted apart per registration.
pub const MAX_CHATS: usize = 32;
/// Longest chat JID counted apart (bytes); a longer one counts as "other".
pub const MAX_CHAT_LEN: usize = 512;
/// Highest count kept per chat.
pub const MAX_COUNT: u32 = 99_999;
/// The entry the chats beyond [`MAX_CHATS`] are folded into.
pub const OTHER: &str = "";

/// One registration's unread counts, least recently counted chat first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    chats: Vec<(String, u32)>,
}

impl Counts {
    /// Counts as stored (`(chat, count)` pairs); bounded as [`Counts::add`] is.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, u32)>) -> Counts {
        let mut counts = Counts::default();
        for (chat, n) in pairs {
            if n > 0 {
                counts.add_n(&chat, n);
            }
        }
        counts
    }

    /// The total: a push's `message-count`.
    pub fn total(&self) -> u32 {
        self.chats
            .iter()
            .fold(0u32, |sum, (_, n)| sum.saturating_add(*n))
    }

    pub fn is_empty(&self) -> bool {
        self.chats.is_empty()
    }

    /// The chats and their counts.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.chats.iter().map(|(c, n)| (c.as_str(), *n))
    }

    /// One more message in `chat`; returns the new total.
    pub fn add(&mut self, chat: &str) -> u32 {
        self.add_n(chat, 1);
        self.total()
    }

    fn add_n(&mut self, chat: &str, n: u32) {
        let chat = if chat.len() > MAX_CHAT_LEN {
            OTHER
        } else {
            chat
        };
        // The chat moves to the end (most recently counted), keeping its String.
        let entry = match self.chats.iter().position(|(c, _)| c == chat) {
            Some(i) => {
                let (c, m) = self.chats.remove(i);
                (c, m.saturating_add(n))
            }
            None => (chat.to_owned(), n),
        };
        self.chats.push((entry.0, entry.1.min(MAX_COUNT)));
        while self.chats.len() > MAX_CHATS {
            self.fold_oldest();
        }
    }

    /// Folds the least recently counted chat (other than "other") into "other".
    fn fold_oldest(&mut self) {
        let Some(i) = self.chats.iter().position(|(c, _)| c != OTHER) else {
            return;
        };
        let (_, n) = self.chats.remove(i);
        match self.chats.iter_mut().find(|(c, _)| c == OTHER) {
            Some((_, other)) => *other = other.saturating_add(n).min(MAX_COUNT),
            None => self.chats.insert(0, (OTHER.to_owned(), n)),
        }
    }

    /// The chat was read: its messages no longer count. Whether anything changed.
    pub fn read(&mut self, chat: &str) -> bool {
        let before = self.chats.len();
        self.chats.retain(|(c, _)| c != chat || c == OTHER);
        self.chats.len() != before
    }

    /// The device connected: nothing is unread for it. Whether anything changed.
    pub fn reset(&mut self) -> bool {
        let changed = !self.chats.is_empty();
        self.chats.clear();
        changed
    }
}

/// Users whose counts changed since their registrations were last written.
pub const MAX_DIRTY: usize = 65_536;

/// The users whose counts are to be written (bounded: beyond
/// [`MAX_DIRTY`], a change is written with the user's next write).
#[derive(Debug, Default)]
pub struct Dirty(std::collections::HashSet<String>);

impl Dirty {
    /// The user's counts changed.
    pub fn mark(&mut self, user: &str) {
        if self.0.len() < MAX_DIRTY && !self.0.contains(user) {
            self.0.insert(user.to_owned());
        }
    }

    /// The user's registrations were written.
    pub fn clear(&mut self, user: &str) {
        self.0.remove(user);
    }

    pub fn contains(&self, user: &str) -> bool {
        self.0.contains(user)
    }

    /// All users to write, forgotten here.
    pub fn take(&mut self) -> Vec<String> {
        let mut users: Vec<String> = self.0.drain().collect();
        users.sort();
        users
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_chat_and_in_total() {
        let mut c = Counts::default();
        assert_eq!(c.add("juliet@capulet.lit"), 1);
        assert_eq!(c.add("juliet@capulet.lit"), 2);
        assert_eq!(c.add("nurse@capulet.lit"), 3);
        assert!(c.read("juliet@capulet.lit"));
        assert_eq!(c.total(), 1);
        assert!(!c.read("juliet@capulet.lit"));
        assert!(c.reset());
        assert_eq!(c.total(), 0);
        assert!(!c.reset());
    }

    #[test]
    fn chats_beyond_the_bound_fold_into_other_and_keep_the_total() {
        let mut c = Counts::default();
        for i in 0..(MAX_CHATS + 10) {
            c.add(&format!("user{i}@example.com"));
        }
        assert_eq!(c.iter().count(), MAX_CHATS);
        assert_eq!(c.total() as usize, MAX_CHATS + 10);
        // Reading a folded chat changes nothing; "other" is never read.
        assert!(!c.read("user0@example.com"));
        assert!(!c.read(OTHER));
        let long = "x".repeat(MAX_CHAT_LEN + 1);
        c.add(&long);
        assert!(c.iter().all(|(chat, _)| chat.len() <= MAX_CHAT_LEN));
        assert_eq!(c.total() as usize, MAX_CHATS + 11);
    }

    #[test]
    fn stored_counts_are_bounded_too() {
        let c = Counts::from_pairs((0..100).map(|i| (format!("u{i}@example.com"), u32::MAX)));
        assert_eq!(c.iter().count(), MAX_CHATS);
        assert!(c.iter().all(|(_, n)| n <= MAX_COUNT));
        assert!(Counts::from_pairs([("a@b".to_owned(), 0)]).is_empty());
    }
}
