//! Push 2.0 (`urn:xmpp:push2:0`, prosody-modules' `push2.md`): end-to-end
//! encrypted Web Push beside XEP-0357, served by the same registrations,
//! grace period, counts, calls, coalescing and error handling.
//!
//! - [`settings`]: what an `<enable/>` asks for, checked and bounded;
//! - [`decide`]: which match a push meets, its priority;
//! - [`envelope`]: the forwarded message, minimised and padded;
//! - [`ece`], [`vapid`]: RFC 8291 encryption and RFC 8292 signatures
//!   (RustCrypto primitives; the assembly is ours);
//! - [`notification`]: the `<message/>` to the push service.

pub mod b64;
pub mod decide;
pub mod ece;
pub mod envelope;
pub mod notification;
pub mod settings;
pub mod tokens;
pub mod vapid;

pub use decide::{Priority, Wire};
pub use settings::{Push2, NS_PUSH2};

/// The in-memory identifier of a Push 2.0 registration stored under `key`
/// (the device: SASL2 client id, else resource). `push2:` can begin no
/// XEP-0357 identifier: those begin with a JID, and `:` is in no domain
/// and no localpart (RFC 7622 §3.3.1).
pub fn identifier(key: &str) -> String {
    format!("{PREFIX}{key}")
}

/// What every Push 2.0 identifier begins with.
pub const PREFIX: &str = "push2:";

/// Whether a session whose registration is `current` (if any) pushes
/// through the Push 2.0 registration it just enabled: unless it holds an
/// XEP-0357 one, which stays its way (one push per device).
pub fn session_pushes_through(current: Option<&str>) -> bool {
    current.is_none_or(|c| c.starts_with(PREFIX))
}

/// The store key of a Push 2.0 identifier.
pub fn store_key(identifier: &str) -> Option<&str> {
    identifier.strip_prefix(PREFIX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_xep_0357_registration_stays_the_session_s_way() {
        use super::session_pushes_through as through;
        assert!(through(None));
        assert!(through(Some("push2:old")));
        assert!(!through(Some("push.example<n")));
    }
}
