//! The binding of what the user does on their own devices and what
//! others ask of them: messages a session sends (grace period, chats
//! read, calls answered), PEP publishes (XEP-0490), subscription
//! requests, devices connecting, and the unread counts to write.
//!
//! Each method converts its arguments, asks the core once and converts
//! the answer: `events` (the `cloud_notify/push` payloads to dispatch),
//! `false` (load the user, then ask again) or `nil` (nothing to do).

use super::{read, Host};
use crate::service::PushJob;
use mlua::{Lua, LuaString, Result, Table, UserDataMethods, Value};

/// `events | false | nil` for what the core answered (`None`: not loaded).
fn events(
    lua: &Lua,
    this: &Host,
    user: &str,
    jobs: Option<Vec<PushJob>>,
    original: &Value,
) -> Result<Value> {
    match jobs {
        None => Ok(Value::Boolean(false)),
        Some(jobs) if jobs.is_empty() => Ok(Value::Nil),
        Some(jobs) => Ok(Value::Table(this.jobs_to_lua(lua, jobs, user, original)?)),
    }
}

/// `None` if the user is not loaded, `Some(false)` if they have no
/// registration: the cheap question asked before reading any stanza.
fn has_push(this: &Host, user: &str) -> Option<bool> {
    this.service.registrations(user).map(|r| !r.is_empty())
}

/// The methods of this file, on the host object.
pub(super) fn add_methods<M: UserDataMethods<Host>>(m: &mut M) {
    // host:outgoing(user, identifier_or_nil, stanza, now) -> events | false | nil
    // A message one of the user's sessions sent (identifier: its registration).
    m.add_method_mut(
        "outgoing",
        |lua, this, (user, identifier, stanza, now): (LuaString, Option<String>, Table, f64)| {
            let user = user.to_str()?;
            // The common case: loaded, no push; read nothing of the stanza.
            if has_push(this, &user) == Some(false) {
                return Ok(Value::Nil);
            }
            let facts = read::stanza_facts(lua, &stanza)?;
            let jobs = this
                .service
                .outgoing(&user, identifier.as_deref(), &facts, now);
            events(lua, this, &user, jobs, &Value::Table(stanza))
        },
    );

    // host:published(user, identifier_or_nil, node, item_id, now) -> events | false | nil
    // An item the user published to their own PEP service.
    m.add_method_mut(
        "published",
        |lua, this, (user, identifier, node, item, now): (String, Option<String>, String, String, f64)| {
            let jobs = this
                .service
                .published(&user, identifier.as_deref(), &node, &item, now);
            events(lua, this, &user, jobs, &Value::Nil)
        },
    );

    // host:subscription_request(user, pending, already_pending,
    //   requester_subscription_or_nil, user_sessions_or_nil, now) -> events | false | nil
    m.add_method_mut(
        "subscription_request",
        |lua,
         this,
         (user, pending, already, subscription, sessions, now): (
            String,
            u32,
            bool,
            Option<String>,
            Option<Table>,
            f64,
        )| {
            let live = match sessions {
                Some(sessions) => read::push_identifiers(lua, &sessions)?,
                None => Vec::new(),
            };
            let jobs = this.service.subscription_request(
                &user,
                pending,
                already,
                subscription.as_deref(),
                &live,
                now,
            );
            events(lua, this, &user, jobs, &Value::Nil)
        },
    );

    // host:connected(user, identifier) -> boolean (its unread count changed)
    m.add_method_mut(
        "connected",
        |_, this, (user, identifier): (String, String)| {
            Ok(this.service.connected(&user, &identifier))
        },
    );

    // host:unread(user, identifier) -> number
    m.add_method("unread", |_, this, (user, identifier): (String, String)| {
        Ok(this.service.unread(&user, &identifier))
    });

    // host:counts_to_write() -> { user, … } (write each user's registrations)
    m.add_method("counts_to_write", |lua, this, ()| {
        lua.create_sequence_from(this.service.counts_to_write())
    });

    // host:counts_due() -> { user, … } | nil: users to write now, before
    // the interval (unwritten counts keep a user in memory)
    m.add_method_mut("counts_due", |lua, this, ()| {
        let due = this.service.counts_due();
        if due.is_empty() {
            return Ok(mlua::Value::Nil);
        }
        lua.create_sequence_from(due).map(mlua::Value::Table)
    });

    // host:grace_period() -> seconds (0: off), as the core took the option
    m.add_method("grace_period", |_, this, ()| {
        Ok(this.service.grace_period())
    });

    // host:counts_write_interval() -> seconds
    m.add_method("counts_write_interval", |_, this, ()| {
        Ok(this.service.counts_write_interval())
    });
}
