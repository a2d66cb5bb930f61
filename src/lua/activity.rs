//! The binding of what the user does on their own devices and what
//! others ask of them: messages a session sends (grace period, chats
//! read, calls answered), PEP publishes (XEP-0490), subscription
//! requests, devices connecting, and the unread counts to write.
//!
//! Each method converts its arguments, asks the core once and converts
//! the answer.
//!
//! Lua API (`outcome`: as in [`super::pushes`]):
//!
//! | method | returns |
//! |---|---|
//! | `core:outgoing(user, identifier_or_nil, stanza, now[, identifier2])` | `outcome`: a message one of the user's sessions sent (identifier: its registration; identifier2: its Push 2.0 one, when it holds both) |
//! | `core:published(user, identifier_or_nil, node, item_id, now[, identifier2])` | `outcome`: an item the user published to their own PEP service |
//! | `core:subscription_request(user, stanza, pending, already_pending, requester_subscription_or_nil, sessions_or_nil, now)` | `outcome` (`stanza`: the presence `subscribe`) |
//! | `core:connected(user, identifier)` | whether its unread count changed (a device connected) |
//! | `core:unread(user, identifier)` | number |
//! | `core:counts_to_write()` | `{ user, … }`: write each user's registrations (error counts, at shutdown) |
//! | `core:counts_aged(now)` | `{ user, … }` or `nil`: users whose error counts changed an interval ago (the write-back, every `counts_tick()` seconds) |
//! | `core:counts_tick()` | seconds |
//! | `core:counts_record(now, force)` | `record, serial` (the unread counts record to write now) or `nil` |
//! | `core:counts_record_written(serial)` | nothing: that record is in the store |
//! | `core:read_counts_record(record_or_nil)` | how many users' counts it held (`nil`: the store had none) |

use super::object::Core;
use super::outcome::{to_lua, Originals};
use super::raw::read;
use crate::service::Interest;
use mlua::{Lua, LuaString, Result, Table, UserDataMethods, Value};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method_mut("outgoing", outgoing);
    m.add_method_mut("published", published);
    m.add_method_mut("subscription_request", subscription_request);
    m.add_method_mut("connected", connected);
    m.add_method("unread", unread);
    m.add_method("counts_to_write", counts_to_write);
    m.add_method_mut("counts_aged", counts_aged);
    m.add_method("counts_tick", counts_tick);
    m.add_method_mut("counts_record", counts_record);
    m.add_method_mut("counts_record_written", counts_record_written);
    m.add_method_mut("read_counts_record", read_counts_record);
}

/// `outgoing(user, identifier, stanza, now[, identifier2])`.
type OutgoingArgs = (LuaString, Option<String>, Table, f64, Option<String>);

fn outgoing(
    lua: &Lua,
    this: &mut Core,
    (user, identifier, stanza, now, identifier2): OutgoingArgs,
) -> Result<Value> {
    let user = user.to_str()?;
    // The common case: loaded, no push; read nothing of the stanza.
    if this.service.interest(&user) == Interest::Nothing {
        return Ok(Value::Nil);
    }
    let facts = read::stanza_facts(lua, &stanza)?;
    let ids = (identifier.as_deref(), identifier2.as_deref());
    let outcome = this.service.on_outgoing(&user, ids, &facts, now);
    to_lua(lua, this, outcome, &Originals::event(stanza))
}

/// `published(user, identifier, node, item_id, now[, identifier2])`.
type PublishedArgs = (String, Option<String>, String, String, f64, Option<String>);

fn published(lua: &Lua, this: &mut Core, args: PublishedArgs) -> Result<Value> {
    let (user, identifier, node, item, now, identifier2) = args;
    let ids = (identifier.as_deref(), identifier2.as_deref());
    let outcome = this.service.on_published(&user, ids, (&node, &item), now);
    to_lua(lua, this, outcome, &Originals::default())
}

/// `subscription_request(user, stanza, pending, already, subscription, sessions, now)`.
type SubscriptionArgs = (String, Table, u32, bool, Option<String>, Option<Table>, f64);

fn subscription_request(lua: &Lua, this: &mut Core, args: SubscriptionArgs) -> Result<Value> {
    let (user, stanza, pending, already, subscription, sessions, now) = args;
    let live = match sessions {
        Some(sessions) => read::push_identifiers(lua, &sessions)?,
        None => Vec::new(),
    };
    let [from] = read::read_attrs(lua, &stanza, [c"from"])?;
    let requester = from
        .as_deref()
        .map_or("", |f| f.split('/').next().unwrap_or(f));
    let source = this.source_of(&stanza)?;
    let outcome = this.service.with_source(source, |service| {
        let subscription = subscription.as_deref();
        let counts = (pending, already);
        service.on_subscription(&user, requester, counts, subscription, &live, now)
    });
    to_lua(lua, this, outcome, &Originals::event(stanza))
}

fn connected(_: &Lua, this: &mut Core, (user, identifier): (String, String)) -> Result<bool> {
    Ok(this.service.connected(&user, &identifier))
}

fn unread(_: &Lua, this: &Core, (user, identifier): (String, String)) -> Result<u32> {
    Ok(this.service.unread(&user, &identifier))
}

fn counts_to_write(lua: &Lua, this: &Core, (): ()) -> Result<Table> {
    lua.create_sequence_from(this.service.counts_to_write())
}

fn counts_aged(lua: &Lua, this: &mut Core, now: f64) -> Result<Option<Table>> {
    let due = this.service.counts_aged(now);
    if due.is_empty() {
        return Ok(None);
    }
    lua.create_sequence_from(due).map(Some)
}

fn counts_tick(_: &Lua, this: &Core, (): ()) -> Result<u64> {
    Ok(this.service.counts_tick())
}

fn counts_record(
    lua: &Lua,
    this: &mut Core,
    (now, force): (f64, bool),
) -> Result<(Option<LuaString>, Option<u64>)> {
    Ok(match this.service.counts_record(now, force) {
        Some((record, serial)) => (Some(lua.create_string(record)?), Some(serial)),
        None => (None, None),
    })
}

fn counts_record_written(_: &Lua, this: &mut Core, serial: u64) -> Result<()> {
    this.service.counts_record_written(serial);
    Ok(())
}

fn read_counts_record(_: &Lua, this: &mut Core, record: Option<LuaString>) -> Result<usize> {
    let text = record.map(|r| r.to_string_lossy());
    Ok(this.service.read_counts_record(text.as_deref()))
}
