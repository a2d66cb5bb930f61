//! Which stanza was already pushed to which registration.
//!
//! One stanza can reach the module several times and by several paths
//! (smacks queue, delayed ack, MAM, offline, a clean close that hands the
//! unacked queue to offline), each time as a different copy. They are
//! recognised by a stable key ([`crate::facts::StanzaFacts::stable_key`]),
//! and a registration gets at most one push per key.
//!
//! Bounded: the oldest keys are forgotten first.

use crate::bounded::Fifo;

/// Pushes remembered per host (one per stanza and registration).
pub const DEFAULT_CAPACITY: usize = 32_768;

/// One record: a 64-bit digest of (user, key, registration), keyed per
/// process ([`crate::ids::digest`]). Two triples sharing a digest (odds of
/// about 2^-50 among the keys kept, and no way to choose them) would cost
/// one push, never add one.
fn digest(user: &str, key: &str, identifier: &str) -> u64 {
    crate::ids::digest(&[user, key, identifier])
}

/// A bounded set of (user, stanza key, registration) triples, kept as
/// digests (16 bytes or so each, whatever the lengths).
pub struct Seen {
    map: Fifo<u64, ()>,
}

impl Seen {
    /// Nothing seen yet; at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Seen {
            map: Fifo::new(capacity),
        }
    }

    /// Entries remembered.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records a push; false if it was recorded already.
    pub fn insert(&mut self, user: &str, key: &str, identifier: &str) -> bool {
        let d = digest(user, key, identifier);
        if self.map.get(&d).is_some() {
            return false;
        }
        self.map.insert(d, ());
        true
    }

    /// Takes a record back (a coalesced push that was never sent).
    pub fn remove(&mut self, user: &str, key: &str, identifier: &str) {
        self.map.remove(&digest(user, key, identifier));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_key_and_registration() {
        let mut s = Seen::new(8);
        assert!(s.insert("romeo", "a:1", "push.example<n1"));
        assert!(!s.insert("romeo", "a:1", "push.example<n1"));
        assert!(s.insert("romeo", "a:1", "push.example<n2"));
        assert!(s.insert("juliet", "a:1", "push.example<n1"));
        s.remove("romeo", "a:1", "push.example<n1");
        assert!(s.insert("romeo", "a:1", "push.example<n1"));
        assert!(!s.insert("romeo", "a:1", "push.example<n2"));
    }

    #[test]
    fn bounded() {
        let mut s = Seen::new(3);
        for i in 0..10 {
            s.insert("u", &format!("k{i}"), "r");
        }
        assert_eq!(s.len(), 3);
        assert!(!s.insert("u", "k9", "r")); // kept
        assert!(s.insert("u", "k0", "r")); // forgotten
    }
}
