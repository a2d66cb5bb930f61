//! Group chats (mod_muc_cloud_notify): room messages pushed to absent
//! members, ghost occupants' bounces, and the bounds on remote users'
//! registrations. Users are keyed by their real bare JID.
//!
//! Lua API:
//!
//! | method | returns |
//! |---|---|
//! | `core:muc_wants(room_jid, stanza)` | `nil`, `"members"` (walk the room's affiliations), `"known"` (ask the room about each user with registrations) or `{ nick, … }`: what the room must look up |
//! | `core:muc_push(room_jid, stanza, members, now, public)` | `outcome` ([`super::outcome`]); `members`: `{ { jid = real bare JID, joined = bool, affiliation = …, setting = XEP-0492 level or nil, nick = … }, … }`, their registrations loaded first; `public`: the room is public (XEP-0492's default, where the admin opted in) |
//! | `core:muc_bounced(room_jid, error_stanza, user, nicks, now[, setting])` | `outcome` for a kickable error from an occupant (`user`: its real bare JID, loaded first; `nicks`: its nickname in the room and its registered one) |
//! | `core:muc_admit(user, local, now)` | `true`, or `nil, type, condition, text` |
//! | `core:muc_note(user, had, has)` | nothing: a remote user's registrations went from any/none to any/none |

use super::convert::{error_of, members_of, pings_of, references, str_field, table_field};
use super::object::Core;
use super::outcome::{to_lua, Originals};
use super::raw::read;
use super::replies::Reply;
use crate::muc::Wants;
use mlua::{Lua, Result, Table, UserDataMethods, Value};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method_mut("muc_wants", muc_wants);
    m.add_method_mut("muc_push", muc_push);
    m.add_method_mut("muc_bounced", muc_bounced);
    m.add_method_mut("muc_admit", muc_admit);
    m.add_method_mut("muc_note", muc_note);
}

fn muc_wants(lua: &Lua, this: &mut Core, (room, stanza): (String, Table)) -> Result<Value> {
    let facts = read::stanza_facts(lua, &stanza)?;
    if facts.body.is_none() {
        return Ok(Value::Nil);
    }
    let refs = references(&stanza)?;
    Ok(match this.service.muc_wants(&room, &facts, refs) {
        Wants::Nothing => Value::Nil,
        Wants::Members => Value::String(lua.create_string("members")?),
        Wants::Known => Value::String(lua.create_string("known")?),
        Wants::Nicks(nicks) => Value::Table(lua.create_sequence_from(nicks)?),
    })
}

fn muc_push(
    lua: &Lua,
    this: &mut Core,
    (room, stanza, members, now, public): (String, Table, Table, f64, Option<bool>),
) -> Result<Value> {
    let facts = read::stanza_facts(lua, &stanza)?;
    let members = members_of(&members)?;
    let pings = pings_of(&stanza, facts.body.as_deref())?;
    let source = this.source_of(&stanza)?;
    let public = public.unwrap_or(false);
    let outcome = this.service.with_source(source, |service| {
        service.on_muc_push(&room, (&facts, &pings, public), &members, now)
    });
    to_lua(lua, this, outcome, &Originals::event(stanza))
}

/// `muc_bounced(room_jid, error_stanza, user, nicks, now, setting)`.
type BouncedArgs = (String, Table, String, Table, f64, Option<String>);

fn muc_bounced(lua: &Lua, this: &mut Core, args: BouncedArgs) -> Result<Value> {
    let (room, stanza, user, nicks, now, setting) = args;
    let id = table_field(&stanza, "attr")?
        .map(|a| str_field(&a, "id"))
        .transpose()?
        .flatten();
    let Some(id) = id else {
        return Ok(Value::Nil);
    };
    let nicks: Vec<String> = nicks.sequence_values::<String>().collect::<Result<_>>()?;
    let nick_refs: Vec<&str> = nicks.iter().map(String::as_str).collect();
    let (_, condition) = error_of(&stanza)?;
    let condition = condition
        .as_deref()
        .unwrap_or(crate::error::UNDEFINED_CONDITION);
    // The body the bounce echoes (checked against the one sent).
    let echoed = read::stanza_facts(lua, &stanza)?.body;
    let member = (user.as_str(), nick_refs.as_slice(), setting.as_deref());
    let outcome =
        this.service
            .on_muc_bounced(&room, (&id, condition), member, echoed.as_deref(), now);
    to_lua(lua, this, outcome, &Originals::default())
}

fn muc_admit(
    _: &Lua,
    this: &mut Core,
    (user, local, now): (String, bool, f64),
) -> Result<Reply<bool>> {
    Ok(this
        .service
        .muc_admit(&user, local, now)
        .map(|()| true)
        .into())
}

fn muc_note(_: &Lua, this: &mut Core, (user, had, has): (String, bool, bool)) -> Result<()> {
    this.service.muc_note(&user, had, has);
    Ok(())
}
