//! Signed VAPID tokens, reused: an ES256 signature costs more than the
//! rest of a Push 2.0 push together (`make bench`), and a token stays
//! valid for [`super::vapid::LIFETIME`]; one is reused for half of that,
//! so every token handed on has hours left. Bounded in bytes: past
//! [`MAX_BYTES`] the cache starts again empty (a signature each, never an
//! error).

use super::settings::Encrypted;
use super::vapid;
use std::collections::HashMap;

/// Bytes of tokens kept per host, at most.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Seconds a token is reused.
pub const REUSE: f64 = vapid::LIFETIME / 2.0;

/// The tokens of one host, by registration (and what they were made of).
#[derive(Debug, Default)]
pub struct Tokens {
    map: HashMap<u64, (String, String, f64)>,
    bytes: usize,
}

impl Tokens {
    /// The token and raw public key (base64) for `keys`' signer, claims
    /// and `sub`, as `who` (the user and registration) last had it if
    /// fresh, else newly signed.
    pub fn get(
        &mut self,
        who: [&str; 2],
        keys: &Encrypted,
        sub: &str,
        now: f64,
    ) -> Option<(String, String)> {
        let signer = keys.signer.as_ref()?;
        let claims: Vec<&str> = keys
            .jwt_claims
            .iter()
            .flat_map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        let mut parts = vec![who[0], who[1], sub, keys.jwt_key.as_deref().unwrap_or("")];
        parts.extend(claims);
        let id = crate::ids::digest(&parts);
        if let Some((token, key, at)) = self.map.get(&id) {
            if now >= *at && now - at < REUSE {
                return Some((token.clone(), key.clone()));
            }
        }
        let (token, key) = vapid::jwt(signer, &keys.jwt_claims, sub, now);
        let size = token.len() + key.len() + 64;
        if self.bytes + size > MAX_BYTES {
            self.map.clear();
            self.bytes = 0;
        }
        if let Some((t, k, _)) = self.map.insert(id, (token.clone(), key.clone(), now)) {
            self.bytes -= t.len() + k.len() + 64;
        }
        self.bytes += size;
        Some((token, key))
    }

    /// Bytes kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push2::settings::{from_enable, tests::borogove_enable, Send};

    #[test]
    fn reused_while_fresh_then_signed_again() {
        let (_, p) = from_enable(&borogove_enable(""), ["r@x", "r@x/a"]).unwrap();
        let Send::Encrypted(keys) = &p.matches[0].send else {
            panic!()
        };
        let mut t = Tokens::default();
        let a = t
            .get(["romeo", "push2:a"], keys, "https://x", 1000.0)
            .unwrap();
        assert_eq!(
            t.get(
                ["romeo", "push2:a"],
                keys,
                "https://x",
                1000.0 + REUSE - 1.0
            )
            .unwrap(),
            a
        );
        let one = t.bytes();
        t.get(["romeo", "push2:b"], keys, "https://x", 1000.0)
            .unwrap();
        assert_eq!(t.bytes(), 2 * one); // (each registration its own)
        assert_ne!(
            t.get(["romeo", "push2:a"], keys, "https://x", 1000.0 + REUSE)
                .unwrap(),
            a
        );
        assert!(t.bytes() < 4 * 1024);
    }
}
