//! The one conversion of an event's [`Outcome`] into what the shim's
//! `push.apply(outcome)` carries out.
//!
//! `nil` when there is nothing to do; else one table whose array part
//! is the `cloud_notify/push` events, in order (see [`super::raw::events`]),
//! with, as they apply:
//!
//! | field | what the shim does |
//! |---|---|
//! | `load` | loads that user's registrations, then asks the core again (nothing else is set) |
//! | `timer` | runs the retries' timer within that many seconds |
//! | `drops` | `{ { user, identifier }, … }`: removes those registrations |
//! | `logs` | `{ { level, text }, … }`: logs them |
//! | `counts` | `{ { metric, label or false, n }, … }`: adds to those counters |
//! | `rtt` | samples `response_time` |
//! | `handled` | `true`: the event was ours (the hook returns true) |
//! | `bookmarks` | reads that user's bookmarks (XEP-0492), then asks the core again (nothing else is set) |
//! | `batch_in` | a smacks session's batch: pushes it in that many seconds (0: now), unless its timer runs |

use super::convert::message_from_facts;
use super::object::Core;
use crate::outcome::{About, Outcome};
use mlua::{Lua, Result, Table, Value};

/// The stanzas an event's pushes may be about, as Lua objects.
#[derive(Default)]
pub struct Originals {
    /// The event's stanza.
    pub event: Value,
    /// A smacks batch's important stanza.
    pub important: Value,
    /// A smacks batch's unimportant stanza.
    pub unimportant: Value,
}

impl Originals {
    /// Only the event's stanza.
    pub fn event(stanza: Table) -> Originals {
        Originals {
            event: Value::Table(stanza),
            ..Originals::default()
        }
    }
}

/// The shim's value for `outcome` (see the module's table).
pub fn to_lua(
    lua: &Lua,
    this: &mut Core,
    outcome: Outcome,
    originals: &Originals,
) -> Result<Value> {
    if outcome.is_empty() {
        return Ok(Value::Nil);
    }
    let out = lua.create_table_with_capacity(outcome.push_count(), 0)?;
    for pushes in outcome.pushes {
        let made;
        let original = match pushes.about {
            About::Nothing => &Value::Nil,
            About::Event => &originals.event,
            About::Important => &originals.important,
            About::Unimportant => &originals.unimportant,
            About::Bounced(facts) => {
                made = Value::Table(message_from_facts(
                    lua,
                    &this.stanza_mt,
                    &facts,
                    &pushes.user,
                )?);
                &made
            }
        };
        this.append_events(lua, &out, pushes.jobs, &pushes.user, original)?;
    }
    if let Some(user) = outcome.load {
        out.raw_set("load", user)?;
    }
    if let Some(timer) = outcome.timer {
        out.raw_set("timer", timer)?;
    }
    if !outcome.drops.is_empty() {
        let drops = lua.create_table()?;
        for (user, identifier) in outcome.drops {
            drops.raw_push(lua.create_sequence_from([user, identifier])?)?;
        }
        out.raw_set("drops", drops)?;
    }
    if !outcome.logs.is_empty() {
        let logs = lua.create_table()?;
        for (level, text) in outcome.logs {
            let line = lua.create_table()?;
            line.raw_push(level.name())?;
            line.raw_push(text)?;
            logs.raw_push(line)?;
        }
        out.raw_set("logs", logs)?;
    }
    if !outcome.counts.is_empty() {
        let counts = lua.create_table()?;
        for (counter, n) in outcome.counts {
            let (metric, label) = counter.name_and_label();
            let line = lua.create_table()?;
            line.raw_push(metric)?;
            match label {
                Some(label) => line.raw_push(label)?,
                None => line.raw_push(false)?,
            }
            line.raw_push(n)?;
            counts.raw_push(line)?;
        }
        out.raw_set("counts", counts)?;
    }
    if let Some(rtt) = outcome.rtt {
        out.raw_set("rtt", rtt)?;
    }
    if outcome.handled {
        out.raw_set("handled", true)?;
    }
    if let Some(user) = outcome.bookmarks {
        out.raw_set("bookmarks", user)?;
    }
    if let Some(seconds) = outcome.batch_in {
        out.raw_set("batch_in", seconds)?;
    }
    Ok(Value::Table(out))
}
