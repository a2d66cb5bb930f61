//! Which users have registrations, as keyed 64-bit digests
//! ([`UserDigest`]: SipHash under a key drawn once per process), so that
//! a stanza for a user known to have none costs no store read and no
//! cache slot: a stranger's subscription requests, pubsub events or MUC
//! enables to 20,000 made-up names read nothing.
//!
//! Filled from the store's list of users when the module loads (the
//! store's `users()`; a store without it leaves the set incomplete, and
//! every unknown user is read as before), then kept by every load and
//! commit. A digest shared by two users (odds of about 2^-64 per pair, and
//! no way to choose them) costs a store read, never a lost push. About 10
//! bytes per user with registrations.

use once_cell::sync::Lazy;
use std::cell::{Ref, RefCell, RefMut};
use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::rc::Rc;

/// The key of [`UserDigest`], drawn once per process (a set lives no
/// longer than its process, so nothing needs it to be stable).
static KEY: Lazy<RandomState> = Lazy::new(RandomState::new);

/// The digest of a user's name, as [`Known`] keeps it: worked out once
/// per question, whatever the sets asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserDigest(u64);

impl UserDigest {
    /// `user`'s digest.
    pub fn of(user: &str) -> Self {
        Self::of_bytes(user.as_bytes())
    }

    /// The digest of a name's bytes: one keyed hash of the bytes alone
    /// (SipHash's last block holds the length), the question every
    /// message asks of its sender and recipient. Names that are not UTF-8
    /// get a digest too; no user with registrations has one.
    pub fn of_bytes(user: &[u8]) -> Self {
        let mut hasher = KEY.build_hasher();
        hasher.write(user);
        UserDigest(hasher.finish())
    }
}

/// A digest is already a keyed hash: the set uses it as it is (hashing
/// it again would cost a second hash per question and add nothing).
#[derive(Debug, Default)]
pub struct AsIs(u64);

impl Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // (only u64s are written here; anything else is folded in)
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The users of one host that have registrations.
#[derive(Debug, Default)]
pub struct Known {
    users: HashSet<u64, BuildHasherDefault<AsIs>>,
    /// Whether every user with registrations in the store is in the set.
    complete: bool,
}

impl Known {
    /// `user` has registrations (`has`) or none.
    pub fn note(&mut self, user: &str, has: bool) {
        let d = UserDigest::of(user).0;
        if has {
            self.users.insert(d);
        } else {
            self.users.remove(&d);
        }
    }

    /// An empty set, complete if `complete` (a store that is not used).
    pub fn completed_if(complete: bool) -> Known {
        Known {
            users: HashSet::default(),
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
        self.rules_out_digest(UserDigest::of(user))
    }

    /// [`Known::rules_out`], for a digest worked out once.
    pub fn rules_out_digest(&self, user: UserDigest) -> bool {
        self.complete && !self.users.contains(&user.0)
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

/// Both protocols' sets of one host: XEP-0357's and Push 2.0's
/// (`mod_push2`'s store).
#[derive(Debug, Default)]
pub struct Sets {
    /// Users with XEP-0357 registrations.
    pub xep0357: Known,
    /// Users with Push 2.0 registrations.
    pub push2: Known,
}

impl Sets {
    /// Whether `user` surely has no registration of either protocol (one
    /// digest for both sets).
    pub fn rules_out(&self, user: &str) -> bool {
        let digest = UserDigest::of(user);
        self.xep0357.rules_out_digest(digest) && self.push2.rules_out_digest(digest)
    }

    /// The question every message asks first, from the sets alone: with
    /// both complete, whether `user` may have registrations (the answer
    /// [`crate::service::PushService::interest`] gives, since every load
    /// and commit notes what the registry holds); `None` while either is
    /// incomplete (then only the core's full question can tell).
    pub fn quick(&self, user: &str) -> Option<bool> {
        self.quick_bytes(user.as_bytes())
    }

    /// [`Sets::quick`] for a name as bytes (what Lua hands over: no UTF-8
    /// check, as a name that is not UTF-8 has no registration, and its
    /// digest is no member's).
    pub fn quick_bytes(&self, user: &[u8]) -> Option<bool> {
        if !(self.xep0357.complete && self.push2.complete) {
            return None;
        }
        let digest = UserDigest::of_bytes(user).0;
        Some(self.xep0357.users.contains(&digest) || self.push2.users.contains(&digest))
    }
}

/// [`Sets`], shared between the core (which keeps them) and a reader that
/// only asks [`Sets::quick`]: the binding's `might_push` that is not a
/// method call. Single-threaded; the reader borrows only while it reads
/// (and answers `None` should the sets be borrowed), the core only while
/// it notes or asks.
#[derive(Debug, Clone, Default)]
pub struct Shared(Rc<RefCell<Sets>>);

impl Shared {
    /// Empty sets; Push 2.0's complete when `push2_complete` (a store
    /// that is not used).
    pub fn new(push2_complete: bool) -> Shared {
        Shared(Rc::new(RefCell::new(Sets {
            xep0357: Known::default(),
            push2: Known::completed_if(push2_complete),
        })))
    }

    /// The sets, to read.
    pub fn get(&self) -> Ref<'_, Sets> {
        self.0.borrow()
    }

    /// The sets, to change.
    pub fn get_mut(&self) -> RefMut<'_, Sets> {
        self.0.borrow_mut()
    }

    /// The shared cell itself, for the reader to hold.
    pub fn cell(&self) -> &Rc<RefCell<Sets>> {
        &self.0
    }

    /// [`Sets::quick`], or `None` while the sets are borrowed.
    pub fn quick(&self, user: &str) -> Option<bool> {
        self.0.try_borrow().ok()?.quick(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_digest_answers_as_the_name_does() {
        let mut k = Known::default();
        for i in 0..1000 {
            k.note(&format!("user{i}"), i % 3 == 0);
        }
        k.completed();
        for i in 0..2000 {
            let user = format!("user{i}");
            let by_digest = k.rules_out_digest(UserDigest::of(&user));
            assert_eq!(k.rules_out(&user), by_digest);
            assert_eq!(by_digest, i >= 1000 || i % 3 != 0, "{user}");
        }
        assert_eq!(k.len(), 334);
    }

    #[test]
    fn the_quick_question_takes_bytes() {
        let mut sets = Sets::default();
        sets.xep0357.note("romeo", true);
        assert_eq!(sets.quick_bytes(b"romeo"), None, "incomplete");
        sets.xep0357.completed();
        sets.push2.completed();
        assert_eq!(sets.quick_bytes(b"romeo"), Some(true));
        assert_eq!(sets.quick("romeo"), Some(true));
        assert_eq!(sets.quick_bytes(b"juliet"), Some(false));
        assert_eq!(sets.quick_bytes(b"rom\xffeo"), Some(false), "not UTF-8");
        assert_eq!(sets.quick_bytes(b""), Some(false));
        assert_ne!(UserDigest::of("romeo"), UserDigest::of("romeo\0"));
    }

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
