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

/// A push id as a number (what the pending table keys pushes by, so an
/// id costs no allocation): one of ours ([`next_push_id`]: `push-` and 32
/// lowercase hex digits) is its own 128 bits; any other id (an answer's,
/// anything) a 128-bit hash of it under the same process-wide keys, so no
/// answer can be made up to hit a push.
pub fn id_number(id: &str) -> u128 {
    let ours =
        |h: &&str| h.len() == 32 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if let Some(n) = id
        .strip_prefix("push-")
        .filter(ours)
        .and_then(|hex| u128::from_str_radix(hex, 16).ok())
    {
        return n;
    }
    let (a, b) = &*KEYS;
    (u128::from(a.hash_one(id)) << 64) | u128::from(b.hash_one(id))
}

/// A 64-bit digest of `parts` under the process-wide keys: what the
/// module remembers of traffic (stanzas pushed, subscription requests)
/// can't be made to collide by someone who chose the inputs.
pub fn digest(parts: &[&str]) -> u64 {
    KEYS.0.hash_one(parts)
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
    fn our_ids_are_their_own_numbers_others_are_hashed() {
        let id = next_push_id();
        let hex = id.strip_prefix("push-").unwrap();
        assert_eq!(id_number(&id), u128::from_str_radix(hex, 16).unwrap());
        assert_ne!(id_number(&id), id_number(&id.to_uppercase()));
        assert_ne!(id_number("push-x"), id_number("push-y"));
        assert_eq!(id_number("anything"), id_number("anything"));
    }

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
        // Not a counter in hex: no long shared prefix, no order, every
        // leading digit in use.
        let numbers: Vec<u128> = ids.iter().map(|id| id_number(id)).collect();
        let leading: HashSet<u128> = numbers.iter().map(|n| n >> 124).collect();
        assert_eq!(leading.len(), 16, "ids start with few digits: a counter?");
        let rising = numbers.windows(2).filter(|w| w[1] > w[0]).count();
        assert!(
            (3000..7000).contains(&rising),
            "ids in order: a counter? {rising}"
        );
    }
}
