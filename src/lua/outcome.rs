//! The one conversion of an event's [`Outcome`] into what the shim's
//! `push.apply(outcome)` carries out.
//!
//! `nil` when there is nothing to do; else one table whose array part
//! is the `cloud_notify/push` events, in order (see [`super::raw::events`]),
//! with, as they apply (the lists flat, one table each):
//!
//! | field | what the shim does |
//! |---|---|
//! | `load` | loads that user's registrations, then asks the core again (nothing else is set) |
//! | `timer` | runs the retries' timer within that many seconds |
//! | `drops` | `{ user, identifier, user, identifier, … }`: removes those registrations |
//! | `logs` | `{ level, text, level, text, … }`: logs them |
//! | `counts` | `{ metric, label or false, n, … }`: adds to those counters |
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
    let out = lua.create_table_with_capacity(outcome.push_count(), named_fields(&outcome))?;
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
    set_opt(&out, "load", outcome.load)?;
    set_opt(&out, "timer", outcome.timer)?;
    set_opt(&out, "rtt", outcome.rtt)?;
    set_opt(&out, "bookmarks", outcome.bookmarks)?;
    set_opt(&out, "batch_in", outcome.batch_in)?;
    if outcome.handled {
        out.raw_set("handled", true)?;
    }
    if !outcome.drops.is_empty() {
        let drops = lua.create_table_with_capacity(outcome.drops.len() * 2, 0)?;
        for (user, identifier) in outcome.drops {
            drops.raw_push(user)?;
            drops.raw_push(identifier)?;
        }
        out.raw_set("drops", drops)?;
    }
    if !outcome.logs.is_empty() {
        let logs = lua.create_table_with_capacity(outcome.logs.len() * 2, 0)?;
        for (level, text) in outcome.logs {
            logs.raw_push(level.name())?;
            logs.raw_push(text)?;
        }
        out.raw_set("logs", logs)?;
    }
    if !outcome.counts.is_empty() {
        let counts = lua.create_table_with_capacity(outcome.counts.len() * 3, 0)?;
        for (counter, n) in outcome.counts {
            let (metric, label) = counter.name_and_label();
            counts.raw_push(metric)?;
            match label {
                Some(label) => counts.raw_push(label)?,
                None => counts.raw_push(false)?,
            }
            counts.raw_push(n)?;
        }
        out.raw_set("counts", counts)?;
    }
    Ok(Value::Table(out))
}

/// `t[key] = value` when there is one.
fn set_opt<V: mlua::IntoLua>(t: &Table, key: &str, value: Option<V>) -> Result<()> {
    match value {
        Some(value) => t.raw_set(key, value),
        None => Ok(()),
    }
}

/// How many named fields the outcome's table gets (its hash part, made
/// once at the right size).
fn named_fields(o: &Outcome) -> usize {
    [
        o.load.is_some(),
        o.timer.is_some(),
        o.rtt.is_some(),
        o.bookmarks.is_some(),
        o.batch_in.is_some(),
        o.handled,
        !o.drops.is_empty(),
        !o.logs.is_empty(),
        !o.counts.is_empty(),
    ]
    .into_iter()
    .filter(|&set| set)
    .count()
}
