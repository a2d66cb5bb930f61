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
//! only a new session clears. Kept in memory, also for users who left the
//! registration cache ([`Kept`]), and stored as one record for the host
//! ([`write_record`]); records of an earlier version that hold
//! `message_counts = { [16 hex digits] = count }` are read while no such
//! record exists.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

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
    String::from_utf8_lossy(&key_to_bytes(key)).into_owned()
}

/// [`key_to_string`] without allocating: 16 lowercase hex digits.
pub fn key_to_bytes(key: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((key >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
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
        // (exactly as many as counted: most registrations count one chat)
        self.chats.reserve_exact(1);
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

/// Users whose error counts changed since they were last written.
pub const MAX_DIRTY: usize = 65_536;

/// The users whose app-server error counts are to be written with their
/// registrations (bounded: beyond [`MAX_DIRTY`], a change is written with
/// the user's next write). Unread counts are not: see [`Kept`].
///
/// Write-back: a user's counts are written once, `interval` seconds after
/// the first change since their last write ([`Dirty::due_aged`]: the
/// writes are spread as the changes were, not one burst per interval),
/// at shutdown ([`Dirty::users`]), or earlier when the marked would
/// outgrow a bound of the caller's ([`Dirty::due_pressure`]: a marked
/// user stays in memory until written, and the registration cache's bound
/// must hold however many users get pushes). Each is written once, as
/// the interval's write would have.
///
/// The names are the registry's (`Rc<str>`): a marked user costs two
/// table slots, no allocation of its own.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Each marked user, with the number of its marking.
    users: HashMap<Rc<str>, u32>,
    /// Marking order, oldest first, with the second of each marking; may
    /// hold markings cleared since.
    order: VecDeque<(Rc<str>, u32, u32)>,
    marks: u32,
    /// Listed as due, not written yet, with the second of the listing: a
    /// write that never commits (the store failed) is listed again an
    /// interval later.
    writing: HashMap<Rc<str>, u32>,
}

impl Dirty {
    /// The user's counts changed, at `second` (the caller's clock, whole
    /// seconds). A user marked already keeps their place.
    pub fn mark(&mut self, user: Rc<str>, second: u32) {
        if self.users.len() < MAX_DIRTY && !self.users.contains_key(&user) {
            self.marks = self.marks.wrapping_add(1);
            self.users.insert(Rc::clone(&user), self.marks);
            self.order.push_back((user, self.marks, second));
        }
    }

    /// The user's registrations were written; `still` says whether their
    /// counts changed meanwhile (they are marked again, at `second`).
    pub fn written(&mut self, user: &str, still: Option<(Rc<str>, u32)>) {
        let listed = self.writing.remove(user).is_some();
        match still {
            Some((key, second)) if listed || !self.users.contains_key(user) => {
                self.users.remove(user);
                self.mark(key, second);
            }
            Some(_) => {}
            None => self.clear(user),
        }
    }

    /// The user's counts are written (or gone with the user).
    fn clear(&mut self, user: &str) {
        self.writing.remove(user);
        if self.users.remove(user).is_some() && self.order.len() > 2 * self.users.len() + 64 {
            let users = &self.users;
            self.order.retain(|(u, mark, _)| users.get(u) == Some(mark));
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
        let mut users: Vec<String> = self.users.keys().map(|u| u.to_string()).collect();
        users.sort();
        users
    }

    /// Drops the markings at the front that were cleared since, or whose
    /// user is being written; the oldest live marking, if any.
    fn front(&mut self) -> Option<u32> {
        while let Some((user, mark, second)) = self.order.front() {
            if self.users.get(user) == Some(mark) && !self.writing.contains_key(user) {
                return Some(*second);
            }
            self.order.pop_front();
        }
        None
    }

    fn list_front(&mut self, now: u32, due: &mut Vec<String>) {
        if let Some((user, _, _)) = self.order.pop_front() {
            due.push(user.to_string());
            self.writing.insert(user, now);
        }
    }

    /// The oldest marked users beyond `keep` (not being written): due now,
    /// each listed once and still marked until a write commits.
    pub fn due_pressure(&mut self, keep: usize, now: u32) -> Vec<String> {
        let mut due = Vec::new();
        while self.users.len() > keep + self.writing.len() && self.front().is_some() {
            self.list_front(now, &mut due);
        }
        due
    }

    /// The users marked at `before` or earlier (at most `max` of them,
    /// oldest first), and those listed at `before` or earlier whose write
    /// never committed: due now.
    pub fn due_aged(&mut self, before: u32, max: usize, now: u32) -> Vec<String> {
        let mut due = Vec::new();
        while due.len() < max && self.front().is_some_and(|second| second <= before) {
            self.list_front(now, &mut due);
        }
        for (user, listed) in self.writing.iter_mut() {
            if due.len() >= max {
                break;
            }
            if *listed <= before {
                *listed = now;
                due.push(user.to_string());
            }
        }
        due
    }
}

/// Most bytes the counts of users not in memory take ([`Kept`]), by
/// [`Kept::cost`]'s reckoning.
pub const MAX_KEPT_BYTES: usize = 8 << 20;

/// One chat's count of a registration: its identifier's digest
/// ([`chat_key`] of the identifier), the chat's key, the count.
pub type Entry = (u64, u64, u32);

/// The unread counts of users whose registrations left memory (the cache
/// is full): kept here, a few bytes per chat, rather than written to each
/// user's record. With the counts of the users in memory they make the
/// one counts record ([`write_record`]), written once an interval at
/// most, at shutdown and at unload, and read when the module loads: the
/// store sees one write per interval, not one per message, and a clean
/// restart loses nothing. Beyond [`MAX_KEPT_BYTES`] the users whose
/// counts were kept longest ago lose them (soft state: their next push
/// counts from 1).
pub struct Kept {
    users: crate::bounded::Fifo<Rc<str>, Box<[Entry]>>,
    bytes: usize,
    max_bytes: usize,
    dropped: u64,
}

impl Default for Kept {
    fn default() -> Self {
        Kept::new(MAX_KEPT_BYTES)
    }
}

impl Kept {
    /// Nothing kept; at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Kept {
            users: crate::bounded::Fifo::new(usize::MAX),
            bytes: 0,
            max_bytes,
            dropped: 0,
        }
    }

    /// What a user's counts cost: the name, the entries, the table slot.
    pub fn cost(user: &str, entries: usize) -> usize {
        user.len() + entries * std::mem::size_of::<Entry>() + 64
    }

    /// Keeps `user`'s counts (each registration's identifier and counts),
    /// replacing any kept before; nothing if none is counted.
    pub fn put<'a>(&mut self, user: Rc<str>, counts: impl Iterator<Item = (&'a str, &'a Counts)>) {
        let entries: Box<[Entry]> = counts
            .flat_map(|(identifier, c)| {
                let id = chat_key(identifier);
                c.iter().map(move |(chat, n)| (id, chat, n))
            })
            .collect();
        self.insert(user, entries);
    }

    /// Keeps `entries` as `user`'s (replacing any kept before; none kept
    /// when empty), then drops the longest kept beyond the bound.
    fn insert(&mut self, user: Rc<str>, entries: Box<[Entry]>) {
        self.take(&user);
        if entries.is_empty() {
            return;
        }
        self.bytes += Kept::cost(&user, entries.len());
        self.users.insert(user, entries);
        while self.bytes > self.max_bytes {
            let Some((user, entries)) = self.users.pop_oldest() else {
                break;
            };
            self.bytes -= Kept::cost(&user, entries.len());
            self.dropped += 1;
        }
    }

    /// Takes out what is kept for `user`.
    pub fn take(&mut self, user: &str) -> Option<Box<[Entry]>> {
        let entries = self.users.remove(user)?;
        self.bytes -= Kept::cost(user, entries.len());
        Some(entries)
    }

    /// The counts of the registration `identifier` among `entries`.
    pub fn counts_of(entries: &[Entry], identifier: &str) -> Counts {
        let id = chat_key(identifier);
        Counts::from_pairs(
            entries
                .iter()
                .filter(|(i, _, _)| *i == id)
                .map(|&(_, chat, n)| (chat, n)),
        )
    }

    /// Users kept.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Bytes kept, by [`Kept::cost`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Users whose counts were dropped for room since the module loaded.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Each user kept, with the entries.
    pub fn iter(&self) -> impl Iterator<Item = (&Rc<str>, &Box<[Entry]>)> {
        self.users.iter()
    }

    /// Keeps what a counts record holds ([`write_record`]'s text; lines
    /// that are not of its shape are skipped). Returns how many users.
    pub fn read_record(&mut self, text: &str) -> usize {
        let mut lines = text.lines();
        if lines.next() != Some(RECORD_HEADER) {
            return 0;
        }
        let mut n = 0;
        for line in lines {
            let mut fields = line.split('\t');
            let Some(user) = fields.next().filter(|u| !u.is_empty()) else {
                continue;
            };
            let entries: Box<[Entry]> = fields.filter_map(parse_entry).collect();
            if !entries.is_empty() {
                // (bounded as it is read: a record of any size costs at
                // most the bound)
                self.insert(Rc::from(user), entries);
                n += 1;
            }
        }
        n
    }
}

/// The first line of a counts record.
pub const RECORD_HEADER: &str = "cloud_notify unread counts 1";

fn parse_entry(field: &str) -> Option<Entry> {
    let mut parts = field.split(' ');
    let id = key_from_str(parts.next()?)?;
    let chat = key_from_str(parts.next()?)?;
    let n: u32 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && n > 0).then_some((id, chat, n.min(MAX_COUNT)))
}

/// Appends one user's line of a counts record: the name, then per chat
/// `identifier-digest chat count`, tab-separated (names never hold a tab
/// or a line end: nodeprep refuses control characters).
pub fn write_record_line(out: &mut String, user: &str, entries: impl Iterator<Item = Entry>) {
    use std::fmt::Write;
    let start = out.len();
    out.push_str(user);
    let mut any = false;
    for (id, chat, n) in entries {
        any = true;
        let _ = write!(out, "\t{} {} {}", key_to_string(id), key_to_string(chat), n);
    }
    if any {
        out.push('\n');
    } else {
        out.truncate(start);
    }
}

/// A counts record: the header, then a line per user ([`write_record_line`]).
pub fn write_record<'a>(users: impl Iterator<Item = (&'a str, Vec<Entry>)>) -> String {
    let mut out = String::from(RECORD_HEADER);
    out.push('\n');
    for (user, entries) in users {
        write_record_line(&mut out, user, entries.into_iter());
    }
    out
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
        for k in [0, 1, 0xabc, k, u64::MAX] {
            assert_eq!(key_to_string(k), format!("{k:016x}"));
        }
    }

    #[test]
    fn stored_counts_are_bounded_too() {
        let c = Counts::from_pairs((1..100).map(|i| (i, u32::MAX)));
        assert_eq!(c.iter().count(), MAX_CHATS);
        assert!(c.iter().all(|(_, n)| n <= MAX_COUNT));
        assert!(Counts::from_pairs([(5, 0)]).is_empty());
    }

    fn key(u: &str) -> Rc<str> {
        Rc::from(u)
    }

    #[test]
    fn the_oldest_marked_are_due_beyond_a_bound() {
        let mut d = Dirty::default();
        for u in ["a", "b", "c", "d"] {
            d.mark(key(u), 100);
        }
        d.mark(key("a"), 101); // (already marked: keeps its place)
        assert_eq!(d.due_pressure(4, 102), Vec::<String>::new());
        assert_eq!(d.due_pressure(2, 102), ["a", "b"]);
        // Listed once: still marked (pinned) until written.
        assert_eq!(d.due_pressure(2, 102), Vec::<String>::new());
        assert!(d.contains("a") && d.len() == 4);
        d.written("a", None);
        d.written("b", None);
        assert_eq!(d.due_pressure(2, 103), Vec::<String>::new());
        // A cleared user marked again goes to the back.
        d.written("c", None);
        d.mark(key("c"), 104);
        d.mark(key("e"), 104);
        assert_eq!(d.due_pressure(1, 105), ["d", "c"]);
        // A failed write (never committed) is not listed again at once,
        // but the write-back lists it an interval later, and shutdown has it.
        assert_eq!(d.due_pressure(0, 105), ["e"]);
        assert_eq!(d.users(), ["c", "d", "e"]);
        assert_eq!(d.due_aged(104, 10, 106), Vec::<String>::new());
        let mut again = d.due_aged(105, 10, 400);
        again.sort();
        assert_eq!(again, ["c", "d", "e"]);
    }

    #[test]
    fn counts_are_written_back_an_interval_after_they_changed() {
        let mut d = Dirty::default();
        d.mark(key("a"), 10);
        d.mark(key("b"), 20);
        d.mark(key("c"), 30);
        d.mark(key("a"), 35); // (no new place: written with its first change)
        assert_eq!(d.due_aged(9, 10, 309), Vec::<String>::new());
        assert_eq!(d.due_aged(20, 10, 320), ["a", "b"]);
        // At most `max` at a time.
        d.mark(key("d"), 31);
        assert_eq!(d.due_aged(100, 1, 400), ["c"]);
        // Changed again while being written: marked anew, written again later.
        d.written("a", Some((key("a"), 330)));
        d.written("b", None);
        assert!(d.contains("a") && !d.contains("b"));
        assert_eq!(d.due_aged(329, 10, 629), ["d"]);
        assert_eq!(d.due_aged(330, 10, 630), ["a"]);
        for u in ["a", "c", "d"] {
            d.written(u, None);
        }
        // A write that was no count write (an enable) of a marked user
        // that changed meanwhile keeps the user's place.
        d.mark(key("e"), 700);
        d.written("e", Some((key("e"), 800)));
        assert_eq!(d.due_aged(700, 10, 1000), ["e"]);
    }

    #[test]
    fn the_order_is_compacted() {
        let mut d = Dirty::default();
        for round in 0..100 {
            for i in 0..50 {
                d.mark(key(&format!("u{i}")), round);
            }
            for i in 0..50 {
                if i != round % 50 {
                    d.written(&format!("u{i}"), None);
                }
            }
        }
        assert_eq!(d.users(), ["u49"]);
        assert!(d.order.len() <= 2 * d.len() + 64 + 50, "{}", d.order.len());
    }

    #[test]
    fn counts_of_users_out_of_memory_are_kept_within_their_bytes() {
        let mut kept = Kept::new(Kept::cost("romeo", 2) + Kept::cost("juliet", 1));
        let mut phone = Counts::default();
        phone.add_n(juliet(), 2);
        phone.add_n(chat_key("nurse@capulet.lit"), 1);
        let empty = Counts::default();
        kept.put(
            Rc::from("romeo"),
            [("push<phone", &phone), ("push<tablet", &empty)].into_iter(),
        );
        assert_eq!(kept.len(), 1);
        let mut one = Counts::default();
        one.add_n(juliet(), 1);
        kept.put(Rc::from("juliet"), [("push<x", &one)].into_iter());
        kept.put(Rc::from("nobody"), [("push<y", &empty)].into_iter());
        assert_eq!((kept.len(), kept.dropped()), (2, 0));
        // One more user: the oldest goes.
        kept.put(Rc::from("nurse"), [("push<z", &one)].into_iter());
        assert_eq!((kept.len(), kept.dropped()), (2, 1));
        assert!(kept.take("romeo").is_none());
        let entries = kept.take("juliet").unwrap();
        assert_eq!(Kept::counts_of(&entries, "push<x"), one);
        assert!(Kept::counts_of(&entries, "push<other").is_empty());
        assert_eq!(kept.bytes(), Kept::cost("nurse", 1));
    }

    #[test]
    fn a_counts_record_round_trips_and_bad_lines_are_skipped() {
        let mut phone = Counts::default();
        phone.add_n(juliet(), 2);
        phone.add_n(chat_key("nurse@capulet.lit"), 1);
        let mut kept = Kept::default();
        kept.put(Rc::from("romeo"), [("push<phone", &phone)].into_iter());
        let record = write_record(kept.iter().map(|(u, e)| (&**u, e.to_vec())));
        assert!(record.starts_with(RECORD_HEADER));
        let mut back = Kept::default();
        let text = format!(
            "{record}bad line\nx\tzz 1 2\n\t{} {} 3\n",
            "1".repeat(16),
            "2".repeat(16)
        );
        assert_eq!(back.read_record(&text), 1);
        let entries = back.take("romeo").unwrap();
        assert_eq!(Kept::counts_of(&entries, "push<phone"), phone);
        // A record of any size costs at most the bound, as it is read.
        let mut big = String::from(RECORD_HEADER);
        for i in 0..1000 {
            big.push_str(&format!(
                "\nuser{i}\t{} {} 1",
                "1".repeat(16),
                "2".repeat(16)
            ));
        }
        let mut small = Kept::new(10 * Kept::cost("user999", 1));
        assert_eq!(small.read_record(&big), 1000);
        assert_eq!((small.len(), small.dropped()), (10, 990));
        assert!(small.take("user999").is_some(), "the newest are kept");
        // Another shape (or another version) is not read at all.
        assert_eq!(Kept::default().read_record("romeo\t1 2 3\n"), 0);
        // No line for a user without counts.
        let mut out = String::new();
        write_record_line(&mut out, "juliet", std::iter::empty());
        assert!(out.is_empty());
    }
}
