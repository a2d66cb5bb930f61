//! Unread counts: how many important messages each registration was told
//! of since its device last had a session, per chat.
//!
//! The `message-count` of a push is the registration's total. A device
//! that connects (binds or resumes with its registration) is back at 0;
//! a chat marked read on any device of the user (a XEP-0333 `displayed`
//! marker, a XEP-0490 MDS update) drops that chat's messages.
//!
//! Chats are kept as 64-bit digests of their bare JID ([`chat_key`]), not
//! as JIDs: a registration's counts take at most [`MAX_CHATS`] × 12 bytes
//! however long the JIDs of those who write, and the store holds no list
//! of the user's contacts. Beyond [`MAX_CHATS`] chats, the least recently
//! counted one is folded into one "other chats" entry ([`OTHER`]), which
//! only a new session clears. Stored with the registration as
//! `message_counts = { [16 hex digits] = count }`, absent when empty.

/// Chats counted apart per registration.
pub const MAX_CHATS: usize = 32;
/// Highest count kept per chat.
pub const MAX_COUNT: u32 = 99_999;
/// The entry the chats beyond [`MAX_CHATS`] are folded into.
pub const OTHER: u64 = 0;

/// The key of a chat: FNV-1a (64 bits) of its bare JID, lowercased ASCII
/// (never [`OTHER`]). Stable across restarts and builds.
pub fn chat_key(bare_jid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bare_jid.bytes() {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    if h == OTHER {
        1
    } else {
        h
    }
}

/// A key as stored (16 hex digits).
pub fn key_to_string(key: u64) -> String {
    format!("{key:016x}")
}

/// A stored key, if it is one.
pub fn key_from_str(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?
}

/// One registration's unread counts, least recently counted chat first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    chats: Vec<(u64, u32)>,
}

impl Counts {
    /// Counts as stored; bounded as [`Counts::add_n`] is.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, u32)>) -> Counts {
        let mut counts = Counts::default();
        for (chat, n) in pairs {
            if n > 0 {
                counts.add_n(chat, n);
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

    /// Whether nothing is counted.
    pub fn is_empty(&self) -> bool {
        self.chats.is_empty()
    }

    /// The chats and their counts.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.chats.iter().copied()
    }

    /// `n` more messages in the chat `key`; returns the new total.
    pub fn add_n(&mut self, key: u64, n: u32) -> u32 {
        let n = match self.chats.iter().position(|(c, _)| *c == key) {
            Some(i) => self.chats.remove(i).1.saturating_add(n),
            None => n,
        };
        self.chats.push((key, n.min(MAX_COUNT)));
        while self.chats.len() > MAX_CHATS {
            self.fold_oldest();
        }
        self.total()
    }

    /// Folds the least recently counted chat (other than "other") into "other".
    fn fold_oldest(&mut self) {
        let Some(i) = self.chats.iter().position(|(c, _)| *c != OTHER) else {
            return;
        };
        let (_, n) = self.chats.remove(i);
        match self.chats.iter_mut().find(|(c, _)| *c == OTHER) {
            Some((_, other)) => *other = other.saturating_add(n).min(MAX_COUNT),
            None => self.chats.insert(0, (OTHER, n)),
        }
    }

    /// The chat was read: its messages no longer count. Whether anything changed.
    pub fn read(&mut self, key: u64) -> bool {
        let before = self.chats.len();
        self.chats.retain(|(c, _)| *c != key || *c == OTHER);
        self.chats.len() != before
    }

    /// The device connected: nothing is unread for it. Whether anything changed.
    pub fn reset(&mut self) -> bool {
        let changed = !self.chats.is_empty();
        self.chats.clear();
        changed
    }
}

/// Users whose counts changed since they were last written.
pub const MAX_DIRTY: usize = 65_536;

/// The users whose counts are to be written (bounded: beyond
/// [`MAX_DIRTY`], a change is written with the user's next write).
///
/// A marked user stays in memory until written (the cache may not evict
/// them), so beyond a bound of the caller's (a share of the cache) the
/// oldest marked are due for an early write: memory stays within the
/// cache's bound however many users get pushes, and each is written once,
/// as the interval's write would have.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Each marked user, with the number of its marking.
    users: std::collections::HashMap<String, u64>,
    /// Marking order, oldest first; may hold markings cleared since.
    order: std::collections::VecDeque<(String, u64)>,
    marks: u64,
    /// Listed as due by [`Dirty::due`], not written yet.
    writing: std::collections::HashSet<String>,
}

impl Dirty {
    /// The user's counts changed.
    pub fn mark(&mut self, user: &str) {
        if self.users.len() < MAX_DIRTY && !self.users.contains_key(user) {
            self.marks += 1;
            self.users.insert(user.to_owned(), self.marks);
            self.order.push_back((user.to_owned(), self.marks));
        }
    }

    /// The user's registrations were written.
    pub fn clear(&mut self, user: &str) {
        self.writing.remove(user);
        if self.users.remove(user).is_some() && self.order.len() > 2 * self.users.len() + 64 {
            let users = &self.users;
            self.order.retain(|(u, mark)| users.get(u) == Some(mark));
            // (and the room of a burst given back)
            self.order.shrink_to(2 * self.order.len());
            self.users.shrink_to(2 * self.users.len());
        }
    }

    /// Whether the user's counts are still to be written.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// How many users are marked.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is marked.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// All users to write (still marked until a write commits).
    pub fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.users.keys().cloned().collect();
        users.sort();
        users
    }

    /// The oldest marked users beyond `keep` not yet listed, each listed
    /// once: still marked until a write commits (one that fails waits for
    /// the interval's write, [`Dirty::users`]).
    pub fn due(&mut self, keep: usize) -> Vec<String> {
        let mut due = Vec::new();
        while self.users.len() > keep + self.writing.len() {
            let Some((user, mark)) = self.order.pop_front() else {
                break;
            };
            if self.users.get(&user) == Some(&mark) && self.writing.insert(user.clone()) {
                due.push(user);
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn juliet() -> u64 {
        chat_key("juliet@capulet.lit")
    }

    #[test]
    fn counts_per_chat_and_in_total() {
        let mut c = Counts::default();
        assert_eq!(c.add_n(juliet(), 1), 1);
        assert_eq!(c.add_n(chat_key("Juliet@Capulet.lit"), 1), 2, "one chat");
        assert_eq!(c.add_n(chat_key("nurse@capulet.lit"), 1), 3);
        assert!(c.read(juliet()));
        assert_eq!(c.total(), 1);
        assert!(!c.read(juliet()));
        assert!(c.reset());
        assert_eq!(c.total(), 0);
        assert!(!c.reset());
    }

    #[test]
    fn chats_beyond_the_bound_fold_into_other_and_keep_the_total() {
        let mut c = Counts::default();
        for i in 0..(MAX_CHATS + 10) {
            c.add_n(chat_key(&format!("user{i}@example.com")), 1);
        }
        assert_eq!(c.iter().count(), MAX_CHATS);
        assert_eq!(c.total() as usize, MAX_CHATS + 10);
        // Reading a folded chat changes nothing; "other" is never read.
        assert!(!c.read(chat_key("user0@example.com")));
        assert!(!c.read(OTHER));
        // However long the JIDs, a chat costs its key.
        c.add_n(chat_key(&"x".repeat(3000)), 1);
        assert_eq!(c.total() as usize, MAX_CHATS + 11);
    }

    #[test]
    fn keys_are_stable_and_round_trip() {
        assert_eq!(key_to_string(chat_key("")), "cbf29ce484222325");
        let k = chat_key("juliet@capulet.lit");
        assert_eq!(key_from_str(&key_to_string(k)), Some(k));
        assert_eq!(key_from_str("juliet@capulet.lit"), None);
        assert_eq!(key_from_str("zz"), None);
    }

    #[test]
    fn stored_counts_are_bounded_too() {
        let c = Counts::from_pairs((1..100).map(|i| (i, u32::MAX)));
        assert_eq!(c.iter().count(), MAX_CHATS);
        assert!(c.iter().all(|(_, n)| n <= MAX_COUNT));
        assert!(Counts::from_pairs([(5, 0)]).is_empty());
    }

    #[test]
    fn the_oldest_marked_are_due_beyond_a_bound() {
        let mut d = Dirty::default();
        for u in ["a", "b", "c", "d"] {
            d.mark(u);
        }
        d.mark("a"); // (already marked: keeps its place)
        assert_eq!(d.due(4), Vec::<String>::new());
        assert_eq!(d.due(2), ["a", "b"]);
        // Listed once: still marked (pinned) until written.
        assert_eq!(d.due(2), Vec::<String>::new());
        assert!(d.contains("a") && d.len() == 4);
        d.clear("a");
        d.clear("b");
        assert_eq!(d.due(2), Vec::<String>::new());
        // A cleared user marked again goes to the back.
        d.clear("c");
        d.mark("c");
        d.mark("e");
        assert_eq!(d.due(1), ["d", "c"]);
        // A failed write (never cleared) is not listed again, but the
        // interval's write still has it.
        assert_eq!(d.due(0), ["e"]);
        assert_eq!(d.users(), ["c", "d", "e"]);
    }

    #[test]
    fn the_order_is_compacted() {
        let mut d = Dirty::default();
        for round in 0..100 {
            for i in 0..50 {
                d.mark(&format!("u{i}"));
            }
            for i in 0..50 {
                if i != round % 50 {
                    d.clear(&format!("u{i}"));
                }
            }
        }
        assert_eq!(d.users(), ["u49"]);
        assert!(d.order.len() <= 2 * d.len() + 64 + 50, "{}", d.order.len());
    }
}
