//! Stream management (XEP-0198): stanzas queued for a hibernated or
//! unresponsive session, coalesced into one batch per session; the
//! extended hibernation of push sessions and its last wake-up.
//!
//! A batch lives in the core ([`crate::coalesce`]); the binding keeps
//! only the stanza objects it was made of ([`BatchObjects`]), to hand them
//! to `cloud_notify/push` handlers as `original_stanza`.
//!
//! Lua API (`session`: the session's full JID):
//!
//! | method | returns |
//! |---|---|
//! | `core:smacks_add(session, user, identifier, stanzas, asked, at_once)` | an outcome ([`super::outcome`]): `bookmarks` (read the user's bookmarks, then ask again with `asked` true: XEP-0492), `batch_in` (push the batch in that many seconds, 0: now, unless its timer runs), or nil (nothing added); `at_once`: the start of hibernation |
//! | `core:smacks_flush(session, now)` | `outcome` ([`super::outcome`]: at most one important and one unimportant push) |
//! | `core:smacks_cancel(session)` | whether a batch was waiting (dropped unsent) |
//! | `core:hibernation(moment, pushes, hibernating, extended, woken, first_push, timeout, original)` | what to do to the session ([`crate::hibernation::Step`]: a table of its fields that are set) or nil; `moment`: `"start"`, `"pushed"`, `"resumed"` or `"released"`; the rest describes the session ([`crate::hibernation::Session`]) |

use super::convert::{pings_of, str_field, table_field};
use super::object::{BatchObjects, Core};
use super::outcome::{to_lua, Originals};
use crate::coalesce::Added;
use crate::hibernation::{Moment, Session, Step};
use mlua::{Lua, Result, Table, UserDataMethods, Value};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method_mut("smacks_add", smacks_add);
    m.add_method_mut("smacks_flush", smacks_flush);
    m.add_method_mut("smacks_cancel", smacks_cancel);
    m.add_method("hibernation", hibernation);
}

/// `smacks_add(session, user, identifier, stanzas, asked, at_once)`.
type SmacksAddArgs = (String, String, String, Table, Option<bool>, Option<bool>);

fn smacks_add(lua: &Lua, this: &mut Core, args: SmacksAddArgs) -> Result<Value> {
    let (session, user, identifier, stanzas, asked, at_once) = args;
    let asked = asked.unwrap_or(false);
    if let Some(outcome) = this
        .service
        .smacks_bookmarks(&user, any_groupchat(&stanzas)?, asked)
    {
        return to_lua(lua, this, outcome, &Originals::default());
    }
    let mut added = Added::Nothing;
    for stanza in stanzas.sequence_values::<Value>() {
        let Value::Table(stanza) = stanza? else {
            continue;
        };
        let (facts, key) = this.facts_and_key(lua, &stanza, &user)?;
        // (XEP-0492: a room's message, with its mentions, for the core)
        let pings = match facts.type_.as_deref() {
            Some("groupchat") => Some(pings_of(&stanza, facts.body.as_deref())?),
            _ => None,
        };
        let queued = this.service.smacks_add(
            &session,
            (&user, &identifier),
            (facts, &key),
            pings.as_ref(),
        );
        if queued.added == Added::Nothing {
            continue;
        }
        let objects = this.batch_objects.entry(session.clone()).or_default();
        if matches!(queued.added, Added::Opened | Added::FlushNow) {
            *objects = BatchObjects::default();
        }
        match queued.important {
            true => objects.important = Some(stanza),
            false => objects.unimportant = Some(stanza),
        }
        added = added.max(match queued.at_once {
            true => Added::FlushNow,
            false => queued.added,
        });
    }
    let outcome = this.service.smacks_batch(added, at_once.unwrap_or(false));
    to_lua(lua, this, outcome, &Originals::default())
}

/// Whether any of the stanzas is a groupchat message.
fn any_groupchat(stanzas: &Table) -> Result<bool> {
    for stanza in stanzas.sequence_values::<Value>() {
        let Value::Table(stanza) = stanza? else {
            continue;
        };
        let attr = table_field(&stanza, "attr")?;
        if attr
            .map(|a| str_field(&a, "type"))
            .transpose()?
            .flatten()
            .as_deref()
            == Some("groupchat")
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn smacks_flush(lua: &Lua, this: &mut Core, (session, now): (String, f64)) -> Result<Value> {
    let objects = this.batch_objects.remove(&session).unwrap_or_default();
    let source = this.batch_source(&objects)?;
    let outcome = this
        .service
        .with_source(source, |service| service.on_smacks_flush(&session, now));
    let object = |object: Option<Table>| object.map_or(Value::Nil, Value::Table);
    let originals = Originals {
        event: Value::Nil,
        important: object(objects.important),
        unimportant: object(objects.unimportant),
    };
    to_lua(lua, this, outcome, &originals)
}

fn smacks_cancel(_: &Lua, this: &mut Core, session: String) -> Result<bool> {
    this.batch_objects.remove(&session);
    Ok(this.service.smacks_cancel(&session))
}

/// `hibernation(moment, pushes, hibernating, extended, woken, first_push, timeout, original)`.
type HibernationArgs = (
    String,
    bool,
    bool,
    bool,
    bool,
    bool,
    Option<f64>,
    Option<f64>,
);

fn hibernation(lua: &Lua, this: &Core, args: HibernationArgs) -> Result<Option<Table>> {
    let (moment, pushes, hibernating, extended, woken, first_push, timeout, original) = args;
    let Some(moment) = Moment::of(&moment) else {
        return Err(mlua::Error::runtime(format!("no such moment: {moment}")));
    };
    let session = Session {
        pushes,
        hibernating,
        extended,
        woken,
        first_push,
        timeout,
        original,
    };
    let step = this.service.hibernation_step(moment, session);
    if step == Step::default() {
        return Ok(None);
    }
    let t = lua.create_table()?;
    for (name, set) in [
        ("reset", step.reset),
        ("stop_wake", step.stop_wake),
        ("restore", step.restore),
        ("forget_original", step.forget_original),
        ("first_push", step.first_push),
    ] {
        if set {
            t.raw_set(name, true)?;
        }
    }
    t.raw_set("extend", step.extend)?;
    t.raw_set("wake_in", step.wake_in)?;
    t.raw_set("wake_left", step.wake_left)?;
    Ok(Some(t))
}
