//! Stanza errors the core asks the shim to answer with.

use std::fmt;

/// An XMPP stanza error: type, defined condition and optional text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    pub type_: &'static str,
    pub condition: &'static str,
    pub text: Option<String>,
}

impl StanzaError {
    pub fn new(type_: &'static str, condition: &'static str, text: impl Into<String>) -> Self {
        StanzaError {
            type_,
            condition,
            text: Some(text.into()),
        }
    }

    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new("modify", "bad-request", text)
    }

    pub fn jid_malformed(text: impl Into<String>) -> Self {
        Self::new("modify", "jid-malformed", text)
    }

    pub fn not_acceptable(text: impl Into<String>) -> Self {
        Self::new("modify", "not-acceptable", text)
    }

    pub fn internal(text: impl Into<String>) -> Self {
        Self::new("wait", "internal-server-error", text)
    }
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
