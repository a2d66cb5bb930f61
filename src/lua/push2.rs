//! Push 2.0 (`urn:xmpp:push2:0`): enabling and disabling, `mod_push2`'s
//! stored layout, and the notifications sent for its registrations.
//!
//! Lua API:
//!
//! | method | returns |
//! |---|---|
//! | `core:enable2(who, stanza, now)` | `plan` (see [`super::replies::Planned`]) or `nil, type, condition, text` |
//! | `core:disable2(user, who)` | `plan`, or nothing (no registration of that device) |
//! | `core:stores_to_read(user)` | whether the module's store, and whether `mod_push2`'s, must be read to load the user |
//! | `core:note_known2(user)` | nothing: the user has Push 2.0 registrations (listed when the module loads) |
//! | `core:known2_complete()` | nothing: every such user was noted |
//! | `core:reattach2(user, client_id, resource)` | the device's Push 2.0 identifier, or nil |
//! | `core:push2()` | whether Push 2.0 is served |
//! | `core:push2_session(current_or_nil)` | whether a session whose registration is `current` pushes through the Push 2.0 one it just enabled (an XEP-0357 one stays its way) |
//!
//! The stored layout is `mod_push2`'s: per user, `{ [device] = { service,
//! client, timestamp, matches = { { match, grace, chats = { [jid] = {
//! mention, reply } }, send, ua_public, auth_secret, jwt_alg, jwt_key,
//! jwt_claims = { [name] = value } } } } }`, plus `error_count` when not 0
//! (`mod_push2` ignores it).

use super::convert::{first_tag_path, lua_to_element, str_field, table_field};
use super::object::Core;
use super::raw::write::element_stanza;
use super::replies::{not_loaded, Planned, Reply};
use crate::error::StanzaError;
use crate::push2::settings::{
    encrypted, Filter, Match, Push2, Send, SEND_ENCRYPTED, SEND_NOTIFY_ONLY,
};
use crate::registration::Registration;
use crate::service::PushJob;
use minidom::Element;
use mlua::{Lua, LuaString, Result, Table, UserDataMethods, Value};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method("enable2", enable2);
    m.add_method("disable2", disable2);
    m.add_method("stores_to_read", stores_to_read);
    m.add_method_mut("note_known2", note_known2);
    m.add_method_mut("known2_complete", known2_complete);
    m.add_method("reattach2", reattach2);
    m.add_method("push2", |_, this: &Core, ()| {
        Ok(this.service.push2_enabled())
    });
    m.add_method("push2_session", push2_session);
}

/// The device a session is: its SASL2 client id, else its resource.
fn device_of(who: &Table) -> Result<Option<String>> {
    Ok(str_field(who, "client_id")?.or(str_field(who, "resource")?))
}

fn enable2(
    _: &Lua,
    this: &Core,
    (who, stanza, now): (Table, Table, f64),
) -> Result<Reply<Planned>> {
    let user = str_field(&who, "username")?.unwrap_or_default();
    let bare = format!("{user}@{}", this.service.host);
    let full = str_field(&who, "full_jid")?.unwrap_or_default();
    let Some(key) = device_of(&who)? else {
        return Ok(Reply::Refused(StanzaError::bad_request(
            "No device to register",
        )));
    };
    let element = match first_tag_path(&stanza, 1)? {
        Some(t) => match lua_to_element(&t, crate::NS_CLIENT) {
            Ok(e) => e,
            Err(why) => return Ok(Reply::Refused(StanzaError::bad_request(why))),
        },
        None => return Ok(Reply::Refused(StanzaError::bad_request("Missing enable"))),
    };
    Ok(
        match this
            .service
            .plan_enable2(&user, &key, [&bare, &full], &element, now)
        {
            Ok(Some(plan)) => Reply::Done(Planned(Some(plan))),
            Ok(None) => Reply::Refused(not_loaded()),
            Err(e) => Reply::Refused(e),
        },
    )
}

fn disable2(_: &Lua, this: &Core, (user, who): (String, Table)) -> Result<Planned> {
    let Some(key) = device_of(&who)? else {
        return Ok(Planned(None));
    };
    let plan = this.service.plan_disable2(&user, &key);
    Ok(Planned(plan.filter(|p| !p.removed.is_empty())))
}

fn push2_session(_: &Lua, _: &Core, current: Option<String>) -> Result<bool> {
    Ok(crate::push2::session_pushes_through(current.as_deref()))
}

fn stores_to_read(_: &Lua, this: &Core, user: LuaString) -> Result<(bool, bool)> {
    Ok(this.service.stores_to_read(&user.to_str()?))
}

fn note_known2(_: &Lua, this: &mut Core, user: LuaString) -> Result<()> {
    this.service.note_known2(&user.to_str()?);
    Ok(())
}

fn known2_complete(_: &Lua, this: &mut Core, (): ()) -> Result<()> {
    this.service.known2_complete();
    Ok(())
}

fn reattach2(
    _: &Lua,
    this: &Core,
    (user, client_id, resource): (String, Option<String>, Option<String>),
) -> Result<Option<String>> {
    let reg = this
        .service
        .reattach2(&user, client_id.as_deref(), resource.as_deref());
    Ok(reg.map(|r| r.identifier().to_owned()))
}

/// A stored match, or why it is not usable (`Ok(None)`: a send profile
/// this module does not know, left out as `mod_push2` leaves it out).
fn match_from_lua(t: &Table) -> std::result::Result<Option<Match>, StanzaError> {
    let bad = |e: mlua::Error| StanzaError::bad_request(e.to_string());
    let profile = str_field(t, "match").map_err(bad)?.unwrap_or_default();
    let send = str_field(t, "send").map_err(bad)?.unwrap_or_default();
    let grace = match t.raw_get::<Value>("grace").map_err(bad)? {
        Value::Integer(i) => Some(i as f64),
        Value::Number(n) => Some(n),
        _ => None,
    }
    .filter(|g| (0.0..=crate::push2::settings::MAX_GRACE).contains(g));
    let mut filters = Vec::new();
    if let Some(chats) = table_field(t, "chats").map_err(bad)? {
        for pair in chats.pairs::<Value, Value>() {
            if let (Value::String(jid), Value::Table(chat)) = pair.map_err(bad)? {
                let flag = |k: &str| chat.raw_get::<Option<bool>>(k).ok().flatten() == Some(true);
                filters.push(Filter {
                    jid: jid.to_string_lossy(),
                    mention: flag("mention"),
                    reply: flag("reply"),
                });
            }
        }
        filters.sort_by(|a, b| a.jid.cmp(&b.jid));
        filters.truncate(crate::push2::settings::MAX_FILTERS);
    }
    let send = match send.as_str() {
        // (mod_push2 compares against the name without `:0`)
        SEND_NOTIFY_ONLY | "urn:xmpp:push2:send:notify-only" => Send::NotifyOnly,
        SEND_ENCRYPTED => {
            let mut claims = Vec::new();
            if let Some(c) = table_field(t, "jwt_claims").map_err(bad)? {
                for pair in c.pairs::<Value, Value>() {
                    if let (Value::String(k), Value::String(v)) = pair.map_err(bad)? {
                        claims.push((k.to_string_lossy(), v.to_string_lossy()));
                    }
                }
            }
            claims.sort();
            claims.truncate(crate::push2::settings::MAX_CLAIMS);
            let field = |k: &str| str_field(t, k).map_err(bad);
            Send::Encrypted(Box::new(encrypted(
                field("ua_public")?.unwrap_or_default(),
                field("auth_secret")?.unwrap_or_default(),
                field("jwt_alg")?,
                field("jwt_key")?,
                claims,
            )?))
        }
        _ => return Ok(None),
    };
    Ok(Some(Match {
        profile,
        grace,
        filters,
        send,
    }))
}

/// One stored record under `key`.
fn record_from_lua(key: &str, t: &Table) -> std::result::Result<Registration, StanzaError> {
    let bad = |e: mlua::Error| StanzaError::bad_request(e.to_string());
    let service = str_field(t, "service").map_err(bad)?;
    let client = str_field(t, "client").map_err(bad)?;
    let (Some(service), Some(client)) = (service, client) else {
        return Err(StanzaError::bad_request("no service or client"));
    };
    let timestamp = t
        .raw_get::<Option<f64>>("timestamp")
        .ok()
        .flatten()
        .unwrap_or(0.0);
    let mut matches = Vec::new();
    if let Some(list) = table_field(t, "matches").map_err(bad)? {
        for m in list
            .sequence_values::<Table>()
            .take(crate::push2::settings::MAX_MATCHES)
        {
            matches.extend(match_from_lua(&m.map_err(bad)?)?);
        }
    }
    let settings = Push2 { client, matches };
    let mut reg = Registration::push2(key, &service, settings, timestamp);
    reg.errors = t
        .raw_get::<Option<u32>>("error_count")
        .ok()
        .flatten()
        .unwrap_or(0);
    Ok(reg)
}

/// The usable registrations of a user's table in `mod_push2`'s store; a
/// message per unusable one.
pub fn registrations_from_store(stored: &Table) -> Result<(Vec<Registration>, Vec<String>)> {
    let (mut regs, mut problems) = (Vec::new(), Vec::new());
    for pair in stored.pairs::<Value, Value>() {
        match pair? {
            (Value::String(k), Value::Table(v)) => {
                let k = k.to_string_lossy();
                match record_from_lua(&k, &v) {
                    Ok(r) => regs.push(r),
                    Err(why) => problems.push(format!(
                        "ignoring stored Push 2.0 registration '{k}': {}",
                        why.text.as_deref().unwrap_or(why.condition)
                    )),
                }
            }
            _ => {
                problems.push("ignoring a stored Push 2.0 registration that is not a table".into())
            }
        }
    }
    Ok((regs, problems))
}

fn match_table(lua: &Lua, m: &Match) -> Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("match", m.profile.as_str())?;
    t.raw_set("send", m.send.profile())?;
    if let Some(g) = m.grace {
        t.raw_set("grace", g)?;
    }
    let chats = lua.create_table()?;
    for f in &m.filters {
        let chat = lua.create_table()?;
        if f.mention {
            chat.raw_set("mention", true)?;
        }
        if f.reply {
            chat.raw_set("reply", true)?;
        }
        chats.raw_set(f.jid.as_str(), chat)?;
    }
    t.raw_set("chats", chats)?;
    if let Send::Encrypted(e) = &m.send {
        t.raw_set("ua_public", e.ua_public.as_str())?;
        t.raw_set("auth_secret", e.auth_secret.as_str())?;
        t.raw_set("jwt_alg", e.jwt_alg.as_deref())?;
        t.raw_set("jwt_key", e.jwt_key.as_deref())?;
        let claims = lua.create_table()?;
        for (k, v) in &e.jwt_claims {
            claims.raw_set(k.as_str(), v.as_str())?;
        }
        t.raw_set("jwt_claims", claims)?;
    }
    Ok(t)
}

/// A user's table for `mod_push2`'s store: their Push 2.0 registrations.
pub fn store_table<'a>(lua: &Lua, regs: impl Iterator<Item = &'a Registration>) -> Result<Table> {
    let out = lua.create_table()?;
    for r in regs {
        let (Some(p), Some(key)) = (&r.push2, r.push2_key()) else {
            continue;
        };
        let t = lua.create_table()?;
        t.raw_set("service", r.jid())?;
        t.raw_set("client", p.client.as_str())?;
        t.raw_set("timestamp", r.timestamp)?;
        let matches = lua.create_table()?;
        for (i, m) in p.matches.iter().enumerate() {
            matches.raw_set(i + 1, match_table(lua, m)?)?;
        }
        t.raw_set("matches", matches)?;
        if r.errors > 0 {
            t.raw_set("error_count", r.errors)?;
        }
        out.raw_set(key, t)?;
    }
    Ok(out)
}

/// Appends the events of Push 2.0 pushes: `{ push2 = true,
/// notification_stanza, username, push_kind, push_id, push_identifier,
/// service, priority, important, wakes }`. No `cloud_notify/push` handler
/// sees them (they are not XEP-0357 publishes).
pub fn append_events(
    this: &mut Core,
    lua: &Lua,
    out: &Table,
    jobs: &[PushJob],
    user: &str,
    original: &Value,
) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let event_original: Option<Element> = match original {
        Value::Table(t) => lua_to_element(t, crate::NS_CLIENT).ok(),
        _ => None,
    };
    for job in jobs {
        let original = match &job.origin {
            Some(kept) => Some(kept.element().clone()),
            None => event_original.clone(),
        };
        let Some(stanza) = this.service.push2_message(user, job, original, now) else {
            continue;
        };
        let Some(wire) = job.summary.wire else {
            continue;
        };
        let event = lua.create_table()?;
        event.raw_set("push2", true)?;
        event.raw_set(
            "notification_stanza",
            element_stanza(lua, &stanza, crate::NS_CLIENT, &this.stanza_mt)?,
        )?;
        event.raw_set("username", user)?;
        event.raw_set("push_kind", job.kind.as_str())?;
        event.raw_set("push_id", job.id.as_str())?;
        event.raw_set("push_identifier", job.registration.identifier())?;
        event.raw_set("service", job.registration.jid())?;
        event.raw_set("priority", wire.priority.as_str())?;
        event.raw_set("important", job.summary.important())?;
        event.raw_set("wakes", job.wakes)?;
        out.raw_set(out.raw_len() + 1, event)?;
    }
    Ok(())
}
