//! Pushes about messages for the user: offline and bare groupchat
//! messages, archived ones (MAM), pings; the retries of pushes an app
//! server answered with a `wait` error, the wake-up before a hibernated
//! session expires; pushes cancelled, expired, counted.
//!
//! Lua API (`outcome`: the event's outcome, one table or nil, see
//! [`super::outcome`]; the shim's `push.apply` carries it out):
//!
//! | method | returns |
//! |---|---|
//! | `core:offline(user, stanza, now[, groupchat])` | `outcome` (groupchat: a bare groupchat message, pushed the same way, by the user's XEP-0492 setting for the room) |
//! | `core:archived(for_user, stanza, archive_id, sessions_or_nil, sender_or_nil, now)` | `outcome` (`sessions`: the user's `sessions` table; `sender`: the sending session's user) |
//! | `core:ping(user, push_services_or_nil, now)` | `outcome` |
//! | `core:retries_due(now)` | `outcome`: the retries due, the pushes whose grace window ended, and when the timer must run next |
//! | `core:release_held(now)` | `outcome`: every push the grace period holds, now (unload, shutdown) |
//! | `core:retry_cancel(user, identifier)` | whether a retry was waiting (the device connected) |
//! | `core:device_here(user, identifier)` | nothing: the device enabled, or a session re-attached it (its retry is moot, nothing is unread or held for it) |
//! | `core:wake(user, identifier, now)` | `outcome` (the wake-up push) |
//! | `core:cancel(push_id)` | nothing (a handler blocked the push) |
//! | `core:handler_failed(push_kind, now)` | `nil` (count it only), or the number of failures of that kind not logged since the last line (log it) |
//! | `core:expire(now)` | `outcome` of the pushes nobody answered in time: counted, logged, retried (the timer), or their registrations removed (`drops`: on the MUC module, those that reached `push_max_errors` unanswered; anywhere, those unreachable for 72 h) |
//! | `core:sweep_interval()` | seconds between calls of `expire` |
//! | `core:stats()` | `{ users, registrations, pending, batches, known, kept_bytes }` |

use super::convert::{pings_of, strings_of};
use super::object::Core;
use super::outcome::{to_lua, Originals};
use super::raw::read;
use crate::outcome::Outcome;
use crate::service::{Interest, PushKind, Targets};
use mlua::{Lua, LuaString, Result, Table, UserDataMethods, Value};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method_mut("offline", offline);
    m.add_method_mut("archived", archived);
    m.add_method_mut("ping", ping);
    m.add_method_mut("retries_due", retries_due);
    m.add_method_mut("release_held", release_held);
    m.add_method_mut("retry_cancel", retry_cancel);
    m.add_method_mut("device_here", device_here);
    m.add_method_mut("wake", wake);
    m.add_method_mut("cancel", cancel);
    m.add_method_mut("handler_failed", handler_failed);
    m.add_method_mut("expire", expire);
    m.add_method("sweep_interval", sweep_interval);
    m.add_method("stats", stats);
}

/// Pushes for `stanza` (none: a ping) to `user`'s registrations (all, or
/// those named in `only`).
fn notify(
    lua: &Lua,
    this: &mut Core,
    user: &str,
    stanza: Option<Table>,
    only: Option<Vec<String>>,
    kind: PushKind,
    now: f64,
) -> Result<Value> {
    match this.service.interest(user) {
        Interest::Load => return to_lua(lua, this, Outcome::load(user), &Originals::default()),
        // The common case: no push for this user; read nothing of the stanza.
        Interest::Nothing => return Ok(Value::Nil),
        Interest::Pushes => {}
    }
    let facts_and_key = match &stanza {
        Some(t) => Some(this.facts_and_key(lua, t, user)?),
        None => None,
    };
    let (facts, key) = match &facts_and_key {
        Some((facts, key)) => (Some(facts), Some(key.as_str())),
        None => (None, None),
    };
    // (XEP-0492: a bare groupchat message's mentions, for the core)
    let pings = match (kind, &stanza, facts) {
        (PushKind::Groupchat, Some(t), Some(f)) => Some(pings_of(t, f.body.as_deref())?),
        _ => None,
    };
    let targets = match &only {
        Some(ids) => Targets::Only(ids),
        None => Targets::All,
    };
    let source = match &stanza {
        Some(t) => this.source_of(t)?,
        None => (None, false),
    };
    let outcome = this.service.with_source(source, |service| {
        service.on_notify(user, (facts, key, pings.as_ref()), targets, kind, now)
    });
    let originals = stanza.map_or_else(Originals::default, Originals::event);
    to_lua(lua, this, outcome, &originals)
}

fn offline(
    lua: &Lua,
    this: &mut Core,
    (user, stanza, now, groupchat): (LuaString, Table, f64, Option<bool>),
) -> Result<Value> {
    let kind = match groupchat {
        Some(true) => PushKind::Groupchat,
        _ => PushKind::Offline,
    };
    notify(lua, this, &user.to_str()?, Some(stanza), None, kind, now)
}

fn ping(
    lua: &Lua,
    this: &mut Core,
    (user, services, now): (String, Option<Table>, f64),
) -> Result<Value> {
    let only = strings_of(services)?;
    notify(lua, this, &user, None, only, PushKind::Ping, now)
}

/// `archived(for_user, stanza, archive_id, sessions, sender, now)`.
type ArchivedArgs = (
    LuaString,
    Table,
    LuaString,
    Option<Table>,
    Option<LuaString>,
    f64,
);

fn archived(lua: &Lua, this: &mut Core, args: ArchivedArgs) -> Result<Value> {
    // Called for every archived message: borrowed strings, and nothing
    // read or built for users without registrations.
    let (for_user, stanza, archive_id, sessions, sender, now) = args;
    let for_user = for_user.to_str()?;
    match this
        .service
        .archived_interest(&for_user, sessions.is_some())
    {
        Interest::Load => {
            return to_lua(lua, this, Outcome::load(&for_user), &Originals::default())
        }
        Interest::Nothing => return Ok(Value::Nil),
        Interest::Pushes => {}
    }
    let facts = read::stanza_facts(lua, &stanza)?;
    let live = match &sessions {
        Some(sessions) => Some(read::push_identifiers(lua, sessions)?),
        None => None,
    };
    let sender = sender.map(|s| s.to_string_lossy());
    let archive_id = archive_id.to_string_lossy();
    let source = this.source_of(&stanza)?;
    let outcome = this.service.with_source(source, |service| {
        let ids = (sender.as_deref(), archive_id.as_str());
        service.on_archived(&for_user, &facts, ids, live.as_deref(), now)
    });
    to_lua(lua, this, outcome, &Originals::event(stanza))
}

fn retries_due(lua: &Lua, this: &mut Core, now: f64) -> Result<Value> {
    let outcome = this.service.on_retries_due(now);
    to_lua(lua, this, outcome, &Originals::default())
}

fn release_held(lua: &Lua, this: &mut Core, now: f64) -> Result<Value> {
    let outcome = this.service.on_release_held(now);
    to_lua(lua, this, outcome, &Originals::default())
}

fn device_here(_: &Lua, this: &mut Core, (user, identifier): (String, String)) -> Result<()> {
    this.service.device_here(&user, &identifier);
    Ok(())
}

fn retry_cancel(_: &Lua, this: &mut Core, (user, identifier): (String, String)) -> Result<bool> {
    Ok(this.service.retry_cancel(&user, &identifier))
}

fn wake(
    lua: &Lua,
    this: &mut Core,
    (user, identifier, now): (String, String, f64),
) -> Result<Value> {
    let outcome = this.service.on_wake(&user, &identifier, now);
    to_lua(lua, this, outcome, &Originals::default())
}

fn cancel(_: &Lua, this: &mut Core, id: String) -> Result<()> {
    this.service.cancel(&id);
    Ok(())
}

fn handler_failed(_: &Lua, this: &mut Core, (kind, now): (String, f64)) -> Result<Option<u32>> {
    let kind = PushKind::from_label(&kind).unwrap_or(PushKind::Ping);
    Ok(this.service.handler_failed(kind, now))
}

fn expire(lua: &Lua, this: &mut Core, now: f64) -> Result<Value> {
    let outcome = this.service.on_sweep(now);
    to_lua(lua, this, outcome, &Originals::default())
}

fn sweep_interval(_: &Lua, this: &Core, (): ()) -> Result<u64> {
    Ok(this.service.sweep_interval())
}

fn stats(lua: &Lua, this: &Core, (): ()) -> Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("users", this.service.loaded_users())?;
    t.raw_set("registrations", this.service.loaded_registrations())?;
    t.raw_set("pending", this.service.pending())?;
    t.raw_set("batches", this.service.batches())?;
    t.raw_set("known", this.service.known_users())?;
    t.raw_set("kept_bytes", this.service.kept_bytes())?;
    let (users, bytes, dropped) = this.service.counts_kept();
    t.raw_set("counts_kept_users", users)?;
    t.raw_set("counts_kept_bytes", bytes)?;
    t.raw_set("counts_dropped", dropped)?;
    Ok(t)
}
