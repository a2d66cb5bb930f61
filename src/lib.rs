//! XEP-0357 push notifications for Prosody.
//!
//! The crate is split in two:
//! - the pure core (every module here but `lua`): decisions, records and the
//!   notification XML, with no Lua in sight, unit-tested with `cargo test`;
//! - the binding (`lua`, behind the `module` feature): the only code that
//!   touches mlua. It converts values and exports `luaopen_cloud_notify`.
//!
//! `unsafe` lives in one module, `lua::raw`; it is denied everywhere else.
#![deny(unsafe_code)]
#![warn(missing_docs)]

/// A JID without its resource (what precedes the first `/`).
pub fn bare(jid: &str) -> &str {
    jid.split('/').next().unwrap_or(jid)
}

pub mod bounded;
pub mod calls;
pub mod chat_settings;
pub mod coalesce;
pub mod config;
pub mod counts;
pub mod error;
pub mod facts;
pub mod fields;
pub mod form;
pub mod grace;
pub mod hibernation;
pub mod ids;
pub mod importance;
pub mod known;
pub mod muc;
pub mod notification;
pub mod origin;
pub mod outcome;
pub mod pending;
pub mod push2;
pub mod quota;
pub mod registration;
pub mod registry;
pub mod retry;
pub mod seen;
pub mod service;
pub mod service_stats;
pub mod subscriptions;
pub mod text;
pub mod throttle;
pub mod vocabulary;
pub mod walk;

#[cfg(any(feature = "module", feature = "vm"))]
mod lua;

/// XEP-0357 namespace.
pub const NS_PUSH: &str = "urn:xmpp:push:0";
/// Summary form type of a notification.
pub const NS_PUSH_SUMMARY: &str = "urn:xmpp:push:summary";
/// FORM_TYPE a publish-options form must carry, when it carries one.
pub const NS_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// Data forms namespace.
pub const NS_DATA_FORMS: &str = "jabber:x:data";
/// The client namespace Prosody stanzas implicitly live in.
pub const NS_CLIENT: &str = "jabber:client";
/// XEP-0060 pubsub.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0490 Message Displayed Synchronization: the PEP node.
pub const NS_MDS: &str = "urn:xmpp:mds:displayed:0";
