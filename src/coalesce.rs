//! Coalescing of the smacks paths: the stanzas queued for one session
//! within a short window (about a second) give at most one important and
//! one unimportant push, to that session's registration.
//!
//! A batch keeps only the last stanza of each kind (for the summary) and
//! the keys it took, so a cancelled batch can give them back. Memory per
//! batch is bounded, and so is the number of batches.

/// Seconds a session's batch gathers stanzas before it is pushed: the
/// stanzas a hibernated session is sent within this window give one push.
pub const DELAY: f64 = 1.0;

use crate::bounded::PerUser;
use crate::facts::StanzaFacts;
use std::collections::HashMap;

/// Keys a batch remembers (to release them when it is cancelled).
const MAX_BATCH_KEYS: usize = 256;

/// Stanzas gathered for one session's registration.
#[derive(Debug, Default)]
pub struct Batch {
    /// The user the session belongs to.
    pub user: String,
    /// The session's registration.
    pub identifier: String,
    /// The last important and the last unimportant stanza.
    pub important: Option<StanzaFacts>,
    /// (see `important`)
    pub unimportant: Option<StanzaFacts>,
    /// Important stanzas gathered (each counts towards the unread count).
    pub important_count: u32,
    /// Keys recorded as pushed on behalf of this batch.
    pub keys: Vec<String>,
}

/// What adding a stanza to a session's batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Added {
    /// Already pushed to this registration: nothing to do.
    Nothing,
    /// Joined a batch that is already waiting.
    Joined,
    /// Opened a new batch: start the coalescing timer.
    Opened,
    /// No room for another batch: flush this one now.
    FlushNow,
}

/// The sessions' waiting batches, bounded in number.
pub struct Batches {
    capacity: usize,
    map: HashMap<String, Batch>,
    /// Open batches per user: their registrations stay in memory until
    /// the batches are sent or dropped (see [`Batches::holds`]).
    users: PerUser,
}

impl Batches {
    /// No batch yet; at most `capacity` at once.
    pub fn new(capacity: usize) -> Self {
        Batches {
            capacity: capacity.max(1),
            map: HashMap::new(),
            users: PerUser::default(),
        }
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no batch is waiting.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds a stanza (already recorded under `key`) to the session's batch.
    pub fn add(
        &mut self,
        session: &str,
        user: &str,
        identifier: &str,
        facts: StanzaFacts,
        important: bool,
        key: String,
    ) -> Added {
        let full = self.map.len() >= self.capacity;
        let mut opened = false;
        let batch = match self.map.get_mut(session) {
            // The session's registration changed: the old batch is moot.
            Some(b) if b.identifier == identifier && b.user == user => b,
            _ => {
                opened = true;
                self.users.add(user);
                let old = self.map.insert(
                    session.to_owned(),
                    Batch {
                        user: user.to_owned(),
                        identifier: identifier.to_owned(),
                        ..Default::default()
                    },
                );
                if let Some(old) = old {
                    self.users.remove(&old.user);
                }
                self.map.get_mut(session).expect("just inserted")
            }
        };
        if important {
            batch.important_count = batch.important_count.saturating_add(1);
            batch.important = Some(facts);
        } else {
            batch.unimportant = Some(facts);
        }
        if batch.keys.len() < MAX_BATCH_KEYS {
            batch.keys.push(key);
        }
        match (opened, full) {
            (true, true) => Added::FlushNow,
            (true, false) => Added::Opened,
            (false, _) => Added::Joined,
        }
    }

    /// Takes a session's batch out (to send or drop it).
    pub fn take(&mut self, session: &str) -> Option<Batch> {
        let batch = self.map.remove(session)?;
        self.users.remove(&batch.user);
        Some(batch)
    }

    /// Whether a batch of this user's is waiting: the registry must not
    /// evict them meanwhile, or the batch would find no registration.
    pub fn holds(&self, user: &str) -> bool {
        self.users.contains(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_batch_per_session_and_registration() {
        let mut b = Batches::new(2);
        let f = StanzaFacts::default();
        assert_eq!(
            b.add("s1", "romeo", "p<n", f.clone(), true, "k1".into()),
            Added::Opened
        );
        assert_eq!(
            b.add("s1", "romeo", "p<n", f.clone(), false, "k2".into()),
            Added::Joined
        );
        assert_eq!(
            b.add("s2", "romeo", "p<m", f.clone(), false, "k3".into()),
            Added::Opened
        );
        // Full: the third session is told to flush at once.
        assert_eq!(
            b.add("s3", "juliet", "p<o", f.clone(), false, "k4".into()),
            Added::FlushNow
        );
        let batch = b.take("s1").unwrap();
        assert!(batch.important.is_some() && batch.unimportant.is_some());
        assert_eq!(batch.keys, ["k1", "k2"]);
        assert!(b.take("s1").is_none());
        assert!(b.holds("romeo")); // s2's batch
        b.take("s2");
        assert!(!b.holds("romeo") && b.holds("juliet"));
        // A session whose registration changed: its old batch is replaced.
        b.add("s3", "juliet", "p<other", f.clone(), false, "k5".into());
        b.take("s3");
        assert!(!b.holds("juliet"));
    }
}
