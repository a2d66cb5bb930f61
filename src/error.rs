//! Stanza errors the core asks the shim to answer with.

use std::fmt;

/// An XMPP stanza error: type, defined condition and optional text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// RFC 6120 error type (`modify`, `wait`, …).
    pub type_: &'static str,
    /// The defined condition (`bad-request`, …).
    pub condition: &'static str,
    /// Human-readable text, if any.
    pub text: Option<String>,
}

impl StanzaError {
    /// An error with text.
    pub fn new(type_: &'static str, condition: &'static str, text: impl Into<String>) -> Self {
        StanzaError {
            type_,
            condition,
            text: Some(text.into()),
        }
    }

    /// `modify/bad-request`.
    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new("modify", "bad-request", text)
    }

    /// `modify/jid-malformed`.
    pub fn jid_malformed(text: impl Into<String>) -> Self {
        Self::new("modify", "jid-malformed", text)
    }

    /// `modify/not-acceptable`.
    pub fn not_acceptable(text: impl Into<String>) -> Self {
        Self::new("modify", "not-acceptable", text)
    }

    /// `wait/internal-server-error`.
    pub fn internal(text: impl Into<String>) -> Self {
        Self::new("wait", "internal-server-error", text)
    }
}

/// The condition of an error that names none.
pub const UNDEFINED_CONDITION: &str = "undefined-condition";

/// The five error types of RFC 6120 §8.3.2.
pub const ERROR_TYPES: [&str; 5] = ["auth", "cancel", "continue", "modify", "wait"];

/// An error type as an app server sent it, as the module takes it: one of
/// [`ERROR_TYPES`], anything else (or none) counting as `cancel`, so that it
/// never becomes an unbounded metrics label.
pub fn error_type(sent: Option<&str>) -> &'static str {
    sent.and_then(|t| ERROR_TYPES.iter().copied().find(|known| *known == t))
        .unwrap_or("cancel")
}

impl fmt::Display for StanzaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.type_, self.condition)?;
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_outside_rfc_6120_count_as_cancel() {
        for t in ERROR_TYPES {
            assert_eq!(error_type(Some(t)), t);
        }
        assert_eq!(error_type(Some("WAIT")), "cancel");
        assert_eq!(error_type(Some("x".repeat(1000).as_str())), "cancel");
        assert_eq!(error_type(None), "cancel");
    }
}
