//! Which users have registrations, as keyed 64-bit digests
//! ([`crate::ids::digest`]), so that a stanza for a user known to have
//! none costs no store read and no cache slot: a stranger's subscription
//! requests, pubsub events or MUC enables to 20,000 made-up names read
//! nothing.
//!
//! Filled from the store's list of users when the module loads (the
//! store's `users()`; a store without it leaves the set incomplete, and
//! every unknown user is read as before), then kept by every load and
//! commit. A digest shared by two users (odds of about 2^-64 per pair, and
//! no way to choose them) costs a store read, never a lost push. About 10
//! bytes per user with registrations.

use std::collections::HashSet;

/// The users of one host that have registrations.
#[derive(Debug, Default)]
pub struct Known {
    users: HashSet<u64>,
    /// Whether every user with registrations in the store is in the set.
    complete: bool,
}

impl Known {
    /// `user` has registrations (`has`) or none.
    pub fn note(&mut self, user: &str, has: bool) {
        let d = crate::ids::digest(&[user]);
        if has {
            self.users.insert(d);
        } else {
            self.users.remove(&d);
        }
    }

    /// An empty set, complete if `complete` (a store that is not used).
    pub fn completed_if(complete: bool) -> Known {
        Known {
            users: HashSet::new(),
            complete,
        }
    }

    /// Every user with registrations in the store was noted.
    pub fn completed(&mut self) {
        self.complete = true;
    }

    /// Whether every user with registrations was noted.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Whether `user` surely has no registration (no read needed).
    pub fn rules_out(&self, user: &str) -> bool {
        self.complete && !self.users.contains(&crate::ids::digest(&[user]))
    }

    /// Users known to have registrations.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is known to have any.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_out_only_once_complete() {
        let mut k = Known::default();
        assert!(!k.rules_out("stranger"), "incomplete: read as before");
        k.note("romeo", true);
        k.completed();
        assert!(!k.rules_out("romeo"));
        assert!(k.rules_out("stranger"));
        k.note("romeo", false);
        assert!(k.rules_out("romeo"));
        assert!(k.is_empty());
    }
}
