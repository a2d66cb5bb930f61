//! Subscription requests push at most once per requester per user per
//! [`PERIOD`], and at most [`MAX_PER_USER`] times per user per period: a
//! stranger who asks, withdraws and asks again (`subscribe`,
//! `unsubscribe`, `subscribe`…), or many strangers at once, can't buzz the
//! user's phones.
//!
//! Bounded: [`CAPACITY`] (user, requester) pairs and as many users per
//! host, as keyed 64-bit digests ([`crate::ids::digest`]); the oldest are
//! forgotten first.

use crate::bounded::Fifo;

/// Seconds a requester's push, and a user's count, are remembered.
pub const PERIOD: f64 = 3600.0;
/// Subscription pushes per user per period.
pub const MAX_PER_USER: u32 = 5;
/// Pairs (and users) remembered per host.
pub const CAPACITY: usize = 16_384;

/// The subscription pushes of one host.
pub struct Subscriptions {
    /// (user, requester) digest: when it was last pushed.
    pairs: Fifo<u64, f64>,
    /// User digest: when their period began, and pushes in it.
    users: Fifo<u64, (f64, u32)>,
}

impl Default for Subscriptions {
    fn default() -> Self {
        Subscriptions {
            pairs: Fifo::new(CAPACITY),
            users: Fifo::new(CAPACITY),
        }
    }
}

impl Subscriptions {
    /// A request from `requester` (a bare JID) to `user` at `now`: whether
    /// it may push (and, if so, it is counted).
    pub fn allow(&mut self, user: &str, requester: &str, now: f64) -> bool {
        let pair = crate::ids::digest(&[user, requester]);
        if self.pairs.get(&pair).is_some_and(|&at| now - at < PERIOD) {
            return false;
        }
        let key = crate::ids::digest(&[user]);
        let (start, n) = match self.users.get(&key) {
            Some(&(start, n)) if now - start < PERIOD => (start, n),
            _ => (now, 0),
        };
        if n >= MAX_PER_USER {
            return false;
        }
        self.users.insert(key, (start, n + 1));
        self.pairs.insert(pair, now);
        true
    }

    /// Pairs remembered.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_requester_and_a_few_per_user_per_period() {
        let mut s = Subscriptions::default();
        assert!(s.allow("romeo", "mallory@evil.example", 0.0));
        // Withdrawn and asked again, any number of times: no second push.
        for i in 1..1000 {
            assert!(!s.allow("romeo", "mallory@evil.example", f64::from(i)));
        }
        // Others may, up to the bound per user.
        for i in 1..MAX_PER_USER {
            assert!(s.allow("romeo", &format!("s{i}@evil.example"), 10.0));
        }
        assert!(!s.allow("romeo", "one-too-many@evil.example", 10.0));
        assert!(s.allow("juliet", "mallory@evil.example", 10.0), "per user");
        // A period later, again.
        assert!(s.allow("romeo", "mallory@evil.example", PERIOD + 1.0));
    }

    #[test]
    fn bounded() {
        let mut s = Subscriptions::default();
        for i in 0..(CAPACITY + 100) {
            s.allow(&format!("u{i}"), "mallory@evil.example", 0.0);
        }
        assert_eq!(s.len(), CAPACITY);
    }
}
