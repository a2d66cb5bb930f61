//! App servers' answers to our pushes (`iq/host` results and errors).
//!
//! Lua API:
//!
//! | method | returns |
//! |---|---|
//! | `core:response(stanza, now, bounced)` | the answer's outcome ([`super::outcome`]): `nil` when it is not one of ours; `bounced`: the answer came from a bounce of our own server (Prosody's s2s bounces come from a dummy session) |

use super::convert::{error_by, error_of};
use super::object::Core;
use super::outcome::{to_lua, Originals};
use super::raw::read;
use crate::service::Response;
use mlua::{Lua, LuaString, Result, Table, UserDataMethods, Value};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method_mut("response", response);
}

fn response(
    lua: &Lua,
    this: &mut Core,
    (stanza, now, bounced): (Table, f64, Option<bool>),
) -> Result<Value> {
    if this.service.pending() == 0 {
        return Ok(Value::Nil);
    }
    let [kind, id, from] = read::read_attrs(lua, &stanza, [c"type", c"id", c"from"])?;
    // (a message error answers a Push 2.0 notification, an IQ a publish)
    let message = stanza
        .raw_get::<Option<LuaString>>("name")?
        .is_some_and(|n| n.as_bytes() == b"message");
    let (Some(id), Some(from)) = (id, from) else {
        return Ok(Value::Nil);
    };
    let (error_type, condition, by);
    let response = match kind.as_deref() {
        Some("result") => Response::Result,
        Some("error") => {
            (error_type, condition) = error_of(&stanza)?;
            by = error_by(&stanza)?;
            Response::answer_error(
                error_type.as_deref(),
                condition.as_deref(),
                by.as_deref(),
                bounced.unwrap_or(false),
                &this.service.host,
            )
        }
        _ => return Ok(Value::Nil),
    };
    let outcome = this.service.on_answer(&id, &from, (response, message), now);
    to_lua(lua, this, outcome, &Originals::default())
}
