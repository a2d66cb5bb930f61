//! App servers' answers to our pushes (`iq/host` results and errors).
//!
//! Lua API:
//!
//! | method | returns |
//! |---|---|
//! | `core:response(stanza, now, bounced)` | see [`Reply`]; `bounced`: the answer came from a bounce of our own server (Prosody's s2s bounces come from a dummy session) |
//!
//! Most answers are plain deliveries: they get no table.

use super::convert::{error_by, error_of};
use super::object::Core;
use super::raw::read;
use crate::retry::Scheduled;
use crate::service::{Answer, Response};
use mlua::{IntoLuaMulti, Lua, LuaString, MultiValue, Result, Table, UserDataMethods};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method_mut("response", response);
}

/// What `core:response` returns.
enum Reply {
    /// `nil`: not an answer to one of our pushes (let other handlers have it).
    NotOurs,
    /// `"delivered", rtt, from`: a result (an error count it reset is
    /// written back with the unread counts).
    Delivered { rtt: f64, from: String },
    /// `kind, details`: kind is `"wrong-sender"`, `"load"` (load
    /// `details.user`, then ask again), `"temporary"`, `"counted"` or
    /// `"disable"`; details holds `user`, `identifier`, `count`,
    /// `expected`, `retry_in`, `merged`, `gave_up`, `gone`, `full`, `route`,
    /// `error_type`, `condition` and `from`, as they apply.
    Other(&'static str, Table),
}

impl IntoLuaMulti for Reply {
    fn into_lua_multi(self, lua: &Lua) -> Result<MultiValue> {
        match self {
            Reply::NotOurs => Ok(MultiValue::new()),
            Reply::Delivered { rtt, from } => ("delivered", rtt, from).into_lua_multi(lua),
            Reply::Other(kind, details) => (kind, details).into_lua_multi(lua),
        }
    }
}

fn response(
    lua: &Lua,
    this: &mut Core,
    (stanza, now, bounced): (Table, f64, Option<bool>),
) -> Result<Reply> {
    if this.service.pending() == 0 {
        return Ok(Reply::NotOurs);
    }
    let [kind, id, from] = read::read_attrs(lua, &stanza, [c"type", c"id", c"from"])?;
    // (a message error answers a Push 2.0 notification, an IQ a publish)
    let message = stanza
        .raw_get::<Option<LuaString>>("name")?
        .is_some_and(|n| n.as_bytes() == b"message");
    let (Some(id), Some(from)) = (id, from) else {
        return Ok(Reply::NotOurs);
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
        _ => return Ok(Reply::NotOurs),
    };
    let answer = this
        .service
        .response_to(&id, &from, (response.clone(), message), now);
    let (kind, details) = match answer {
        Answer::NotOurs => return Ok(Reply::NotOurs),
        Answer::Delivered { rtt, .. } => return Ok(Reply::Delivered { rtt, from }),
        answer => details(lua, answer)?,
    };
    if let Response::Error { type_, condition } | Response::RouteFailure { type_, condition } =
        response
    {
        details.raw_set("error_type", type_)?;
        details.raw_set("condition", condition)?;
    }
    if let Response::RouteFailure { .. } = response {
        details.raw_set("route", true)?;
    }
    details.raw_set("from", from)?;
    Ok(Reply::Other(kind, details))
}

/// The kind and details table of an answer that is not a delivery.
fn details(lua: &Lua, answer: Answer) -> Result<(&'static str, Table)> {
    let t = lua.create_table()?;
    let kind = match answer {
        Answer::NotOurs | Answer::Delivered { .. } => unreachable!("handled by the caller"),
        Answer::WrongSender { expected } => {
            t.raw_set("expected", expected)?;
            "wrong-sender"
        }
        Answer::Load { user } => {
            t.raw_set("user", user)?;
            "load"
        }
        Answer::Temporary {
            user,
            identifier,
            retry,
            route,
        } => {
            if route {
                t.raw_set("route", true)?;
            }
            match retry {
                Scheduled::In(delay) => t.raw_set("retry_in", delay)?,
                Scheduled::Merged(delay) => {
                    t.raw_set("retry_in", delay)?;
                    t.raw_set("merged", true)?;
                }
                Scheduled::GaveUp => t.raw_set("gave_up", true)?,
                Scheduled::Gone => t.raw_set("gone", true)?,
                Scheduled::Full => t.raw_set("full", true)?,
            }
            t.raw_set("user", user)?;
            t.raw_set("identifier", identifier)?;
            "temporary"
        }
        Answer::Counted {
            user,
            identifier,
            count,
        } => {
            t.raw_set("user", user)?;
            t.raw_set("identifier", identifier)?;
            t.raw_set("count", count)?;
            "counted"
        }
        Answer::Disable {
            user,
            identifier,
            count,
        } => {
            t.raw_set("user", user)?;
            t.raw_set("identifier", identifier)?;
            t.raw_set("count", count)?;
            "disable"
        }
    };
    Ok((kind, t))
}
