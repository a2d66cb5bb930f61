//! XEP-0357 push notifications for Prosody.
//!
//! The crate is split in two:
//! - the pure core (every module here but `lua`): decisions, records and the
//!   notification XML, with no Lua in sight, unit-tested with `cargo test`;
//! - the binding (`lua`, behind the `module` feature): the only code that
//!   touches mlua. It converts values and exports `luaopen_cloud_notify`.

pub mod bounded;
pub mod calls;
pub mod coalesce;
pub mod config;
pub mod counts;
pub mod error;
pub mod facts;
pub mod fields;
pub mod grace;
pub mod ids;
pub mod importance;
pub mod memory;
pub mod muc;
pub mod notification;
pub mod pending;
pub mod quota;
pub mod registration;
pub mod registry;
pub mod retry;
pub mod seen;
pub mod service;

#[cfg(feature = "module")]
mod lua;

/// The shipped library's allocations in a heap of their own (mimalloc's),
/// not in the C library's heap beside Lua's: there, the core's long-lived
/// records would pin pages among the garbage each login, enable and push
/// leaves, and the process would keep memory the garbage collector freed.
/// Counted, for the `heap_bytes` export (what the core holds, apart from
/// the allocator's own overhead).
#[cfg(feature = "module")]
#[global_allocator]
static ALLOCATOR: memory::Counting<mimalloc::MiMalloc> = memory::Counting(mimalloc::MiMalloc);

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
