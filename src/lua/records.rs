//! Registration records ↔ the Lua tables the store holds (the reference
//! module's layout: `{ ["jid<node"] = { jid=…, node=…, options=…, … } }`).

use super::convert::{lua_to_element, str_field};
use super::raw::{options_shape, push_registration};
use crate::registration::{normalize_jid, Registration, Scalar};
use crate::registry::Plan;
use crate::NS_DATA_FORMS;
use mlua::{Lua, Result, Table, Value};

const KNOWN: [&str; 9] = [
    "error_count",
    "jid",
    "node",
    "include_payload",
    "options",
    "timestamp",
    "client_id",
    "resource",
    "language",
];

/// A record as stored, into a registration. `Err` says why it is unusable.
pub fn registration_from_lua(
    identifier: &str,
    t: &Table,
) -> std::result::Result<Registration, String> {
    let e = |e: mlua::Error| e.to_string();
    let raw_jid = str_field(t, "jid").map_err(e)?.ok_or("no jid")?;
    let jid = normalize_jid(&raw_jid).unwrap_or(raw_jid);
    let options = match t.raw_get::<Value>("options").map_err(e)? {
        Value::Table(o) => Some(Box::new(lua_to_element(&o, NS_DATA_FORMS)?)),
        _ => None,
    };
    let timestamp = match t.raw_get::<Value>("timestamp").map_err(e)? {
        Value::Integer(i) => i as f64,
        Value::Number(n) => n,
        _ => 0.0,
    };
    let errors = match t.raw_get::<Value>("error_count").map_err(e)? {
        Value::Integer(i) => u32::try_from(i).unwrap_or(0),
        Value::Number(n) if n >= 0.0 && n < f64::from(u32::MAX) => n as u32,
        _ => 0,
    };
    let mut extra = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (Value::String(k), v) = pair.map_err(e)? else {
            continue;
        };
        let k = k.to_string_lossy();
        if KNOWN.contains(&k.as_str()) {
            continue;
        }
        let v = match v {
            Value::String(s) => Scalar::Str(s.to_string_lossy()),
            Value::Integer(i) => Scalar::Num(i as f64),
            Value::Number(n) => Scalar::Num(n),
            Value::Boolean(b) => Scalar::Bool(b),
            _ => continue,
        };
        extra.push((k, v));
    }
    Ok(Registration {
        identifier: identifier.to_owned(),
        jid,
        node: str_field(t, "node").map_err(e)?,
        include_payload: str_field(t, "include_payload").map_err(e)?,
        options,
        timestamp,
        client_id: str_field(t, "client_id").map_err(e)?,
        resource: str_field(t, "resource").map_err(e)?,
        language: str_field(t, "language").map_err(e)?,
        errors,
        extra,
    })
}

/// All usable records of a stored user table; a message per unusable one.
pub fn registrations_from_store(stored: &Table) -> Result<(Vec<Registration>, Vec<String>)> {
    let mut regs = Vec::new();
    let mut problems = Vec::new();
    for pair in stored.pairs::<Value, Value>() {
        let (k, v) = pair?;
        match (k, v) {
            (Value::String(k), Value::Table(v)) => {
                let k = k.to_string_lossy();
                match registration_from_lua(&k, &v) {
                    Ok(r) => regs.push(r),
                    Err(why) => problems.push(format!("ignoring stored registration '{k}': {why}")),
                }
            }
            _ => problems.push("ignoring a stored registration that is not a table".into()),
        }
    }
    Ok((regs, problems))
}

/// A registration as the record the store and event handlers see (`push_info`).
pub fn registration_to_lua(lua: &Lua, r: &Registration) -> Result<Table> {
    let options = options_shape(r);
    // SAFETY: the closure only borrows; it leaves the record alone on the stack.
    unsafe { lua.exec_raw((), |l| push_registration(l, r, options.as_ref())) }
}

/// A plan as `(store table, removed)`: the table to write for the user and
/// a set `{ [identifier] = true }` of what it removes.
pub fn plan_to_lua(lua: &Lua, plan: &Plan) -> Result<(Table, Table)> {
    let services = lua.create_table_with_capacity(0, plan.regs.len())?;
    for r in &plan.regs {
        services.raw_set(r.identifier.as_str(), registration_to_lua(lua, r)?)?;
    }
    let removed = lua.create_table_with_capacity(0, plan.removed.len())?;
    for id in &plan.removed {
        removed.raw_set(id.as_str(), true)?;
    }
    Ok((services, removed))
}

/// Reads back a written plan (`services`, `removed`) to commit it.
pub fn plan_from_lua(services: &Table, removed: Option<Table>) -> Result<(Plan, Vec<String>)> {
    let (regs, problems) = registrations_from_store(services)?;
    let mut gone = Vec::new();
    if let Some(removed) = removed {
        for pair in removed.pairs::<Value, Value>() {
            if let (Value::String(k), _) = pair? {
                gone.push(k.to_string_lossy());
            }
        }
    }
    Ok((
        Plan {
            regs,
            removed: gone,
        },
        problems,
    ))
}
