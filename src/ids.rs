//! Identifiers for outgoing push IQs.
//!
//! Unpredictable enough that an app server cannot guess another push's id
//! (responses are checked against the registered jid as well), unique within
//! the process thanks to a counter.

use once_cell::sync::Lazy;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

static KEYS: Lazy<RandomState> = Lazy::new(RandomState::new);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh id such as `push-3f2a9c0d11e84b7a-2a`.
pub fn next_push_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let noise = KEYS.hash_one(n);
    format!("push-{noise:016x}-{n:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let a = next_push_id();
        let b = next_push_id();
        assert_ne!(a, b);
        assert!(a.starts_with("push-"));
    }
}
