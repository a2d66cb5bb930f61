//! Identifiers for outgoing push IQs.
//!
//! Unpredictable: an app server can neither guess another push's id
//! (answers are checked against the registered jid as well) nor count how
//! many pushes the host sends, as a visible counter would let it. Each id is
//! a 128-bit keyed hash (two SipHash keys from the OS's randomness, drawn
//! once per process) of a private counter, so ids never repeat in practice.

use once_cell::sync::Lazy;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

static KEYS: Lazy<(RandomState, RandomState)> =
    Lazy::new(|| (RandomState::new(), RandomState::new()));
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh id such as `push-3f2a9c0d11e84b7a0c55e1d2b7f90a13`.
pub fn next_push_id() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let (a, b) = &*KEYS;
    format!("push-{:016x}{:016x}", a.hash_one(n), b.hash_one(n))
}

/// A number in `[0, 1)` no one can predict (jitter for retries).
pub fn jitter() -> f64 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (KEYS.1.hash_one(!n) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_show_no_counter() {
        let ids: Vec<String> = (0..10_000).map(|_| next_push_id()).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        for id in &ids {
            // One hash, no counter field beside it.
            let hex = id.strip_prefix("push-").unwrap();
            assert!(
                hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit()),
                "{id}"
            );
        }
    }
}
