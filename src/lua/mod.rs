//! The Lua binding: the only code that touches mlua. It converts values
//! and calls the core; it decides nothing.
//!
//! Loaded by `cloud_notify.lib.lua` through `package.loadlib`, it exports:
//!
//! | export | what |
//! |---|---|
//! | `new(host, options, stanza_mt[, get_handlers])` | the core object (one per VirtualHost, owning its [`PushService`](crate::service::PushService); nothing is kept in statics) and `{ problems with the options }` |
//! | `version` | the crate's version |
//! | `heap_bytes()` | the bytes the library's allocations hold (all hosts; its allocator's count), for admins and benchmarks |
//! | `stanza_facts(stanza)` | what push decisions read from a stanza (the shipped raw reader), as text |
//! | `parsed_stanza_facts(stanza)` | the same, read by the core's own walk of the stanza converted to XML ([`StanzaFacts::from_element`]): the specs check that both agree |
//! | `check_push(event[, core])` | `true`, or `false, expected, got`: whether a `cloud_notify/push` event's publish IQ is the core's [`publish_iq`] of its parts, element for element (the specs and the binding fuzzer check every push); a lean event (no `push_info`: nothing hooks the event) is checked against `core`'s registration and the summary of the push awaiting its answer |
//!
//! The core object's methods, one file per concern, each documenting its
//! Lua API where it is defined: [`registrations`] (store, enable, disable,
//! plans), [`pushes`] (offline, MAM, ping, retries, wake-ups), [`smacks`]
//! (stream management batches, hibernation), [`muc`] (group chats),
//! [`answers`] (app servers' answers), [`activity`] (what the user does on
//! other devices, unread counts). [`object`] holds the object and the event
//! conversion they share, [`outcome`] the one conversion of an event's
//! [`Outcome`](crate::outcome::Outcome), [`replies`] the other return types, [`convert`] and
//! [`records`] the conversions through mlua's table API, [`raw`] the raw
//! ffi (the crate's only `unsafe`).
//!
//! A new event: an `on_*` method of the core returning an
//! [`Outcome`](crate::outcome::Outcome), a method here in the file of its
//! concern (convert the arguments, call it, [`outcome::to_lua`]), and a
//! `module:hook` in the shim that hands it over with `push.ask`.

mod activity;
mod answers;
mod chat_settings;
mod convert;
mod muc;
mod object;
mod outcome;
mod push2;
mod pushes;
mod raw;
mod records;
mod registrations;
mod replies;
mod services;
mod smacks;
#[cfg(all(test, feature = "vm"))]
mod tests;

use crate::facts::StanzaFacts;
use crate::notification::{notification, publish_iq, Summary};
use convert::{lua_to_element, str_field, table_field};
use mlua::{AnyUserData, IntoLuaMulti, Lua, MultiValue, Result, Table};
use object::Core;

/// The module's exports (see the table above).
#[cfg_attr(not(feature = "module"), allow(dead_code))]
fn exports(lua: &Lua) -> Result<Table> {
    let exports = lua.create_table()?;
    exports.set("new", lua.create_function(Core::new)?)?;
    exports.set("version", env!("CARGO_PKG_VERSION"))?;
    exports.set(
        "heap_bytes",
        lua.create_function(|_, ()| Ok(raw::alloc::live_bytes()))?,
    )?;
    exports.set("stanza_facts", lua.create_function(stanza_facts)?)?;
    exports.set(
        "parsed_stanza_facts",
        lua.create_function(parsed_stanza_facts)?,
    )?;
    exports.set("check_push", lua.create_function(check_push)?)?;
    Ok(exports)
}

fn stanza_facts(lua: &Lua, stanza: Table) -> Result<String> {
    Ok(format!("{:?}", raw::read::stanza_facts(lua, &stanza)?))
}

fn parsed_stanza_facts(_: &Lua, stanza: Table) -> Result<String> {
    let element = lua_to_element(&stanza, crate::NS_CLIENT).map_err(mlua::Error::runtime)?;
    Ok(format!("{:?}", StanzaFacts::from_element(&element)))
}

/// A push event's summary, as `push_summary` holds it.
fn summary_of(t: &Table) -> Result<Summary> {
    let number =
        |key: &str| -> Result<Option<u32>> { Ok(str_field(t, key)?.and_then(|n| n.parse().ok())) };
    Ok(Summary {
        message_count: number("message-count")?.unwrap_or(0),
        pending_subscriptions: number("pending-subscription-count")?,
        sender: str_field(t, "last-message-sender")?,
        body: str_field(t, "last-message-body")?,
        wire: None,
    })
}

/// The outcome of [`check_push`]: `true`, or `false, expected, got` (the
/// core's IQ and the shipped one, as XML).
enum Checked {
    Same,
    Different(String, String),
}

impl IntoLuaMulti for Checked {
    fn into_lua_multi(self, lua: &Lua) -> Result<MultiValue> {
        match self {
            Checked::Same => true.into_lua_multi(lua),
            Checked::Different(expected, got) => (false, expected, got).into_lua_multi(lua),
        }
    }
}

fn check_push(_: &Lua, (event, core): (Table, Option<AnyUserData>)) -> Result<Checked> {
    let field = |key: &str| -> Result<Table> {
        table_field(&event, key)?.ok_or_else(|| mlua::Error::runtime(format!("no {key}")))
    };
    let stanza = field("notification_stanza")?;
    let identifier = str_field(&event, "push_identifier")?.unwrap_or_default();
    let id = str_field(&event, "push_id")?.unwrap_or_default();
    let host = table_field(&stanza, "attr")?
        .map(|a| str_field(&a, "from"))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    let got = lua_to_element(&stanza, crate::NS_CLIENT).map_err(mlua::Error::runtime)?;
    let (reg, payload) = match (table_field(&event, "push_info")?, core) {
        (Some(info), _) => (
            records::registration_from_lua(&identifier, &info)
                .map_err(|e| mlua::Error::runtime(e.to_string()))?,
            notification(&summary_of(&field("push_summary")?)?),
        ),
        // A lean event (nothing hooks cloud_notify/push): the registration
        // and what the push said (as the push awaiting its answer keeps
        // it) from the core.
        (None, Some(core)) => {
            let user = str_field(&event, "username")?.unwrap_or_default();
            let core = core.borrow::<Core>()?;
            let reg = core
                .service
                .registrations(&user)
                .and_then(|regs| regs.iter().find(|r| r.identifier() == identifier))
                .cloned()
                .ok_or_else(|| mlua::Error::runtime("no such registration"))?;
            let summary = core
                .service
                .pending_summary(&id)
                .ok_or_else(|| mlua::Error::runtime("no such push awaiting its answer"))?;
            (reg, notification(summary))
        }
        (None, None) => return Err(mlua::Error::runtime("no push_info")),
    };
    let expected = publish_iq(&host, &id, &reg, payload);
    Ok(match expected == got {
        true => Checked::Same,
        false => Checked::Different(String::from(&expected), String::from(&got)),
    })
}
