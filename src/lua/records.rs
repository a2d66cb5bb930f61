//! Registration records from the Lua tables the store holds (the reference
//! module's layout: `{ ["jid<node"] = { jid=…, node=…, options=…, … } }`);
//! the other way is [`super::raw::write::registration_table`].

use super::convert::{lua_to_form, str_field};
use crate::counts::Counts;
use crate::error::StanzaError;
use crate::fields::{Budget, Field, Key, Refused, ENTRY_COST, MAX_BYTES, MAX_STORED_BYTES};
use crate::registration::{normalize_jid, Parts, Registration};
use crate::NS_DATA_FORMS;
use mlua::{Result, Table, Value};

const KNOWN: [&str; 10] = [
    "error_count",
    "message_counts",
    "jid",
    "node",
    "include_payload",
    "options",
    "timestamp",
    "client_id",
    "resource",
    "language",
];

/// Another module's field value, read within the record's [`Budget`];
/// `depth` is 1 for a field's own value.
fn field_from_lua(
    key: &str,
    v: Value,
    depth: usize,
    budget: &mut Budget,
) -> std::result::Result<Field, StanzaError> {
    let refused = |r: Refused| StanzaError::not_acceptable(format!("Registration refused: {r}"));
    let field = match v {
        Value::String(s) => {
            budget
                .spend(ENTRY_COST + s.as_bytes().len())
                .map_err(refused)?;
            Field::Str(s.as_bytes().to_vec())
        }
        Value::Integer(i) => Field::Int(i),
        Value::Number(n) => Field::Num(n),
        Value::Boolean(b) => Field::Bool(b),
        Value::Table(t) => {
            Budget::enter(depth).map_err(refused)?;
            budget.spend(ENTRY_COST).map_err(refused)?;
            let mut pairs = Vec::new();
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair.map_err(|e| StanzaError::bad_request(e.to_string()))?;
                let k = match k {
                    Value::String(s) => {
                        budget
                            .spend(ENTRY_COST + s.as_bytes().len())
                            .map_err(refused)?;
                        Key::Str(s.as_bytes().to_vec())
                    }
                    Value::Integer(i) => {
                        budget.spend(ENTRY_COST).map_err(refused)?;
                        Key::Int(i)
                    }
                    _ => return Err(refused(Refused::NotData(key.to_owned()))),
                };
                pairs.push((k, field_from_lua(key, v, depth + 1, budget)?));
            }
            return Ok(Field::Table(pairs));
        }
        _ => return Err(refused(Refused::NotData(key.to_owned()))),
    };
    if !matches!(field, Field::Str(_)) {
        budget.spend(ENTRY_COST).map_err(refused)?;
    }
    Ok(field)
}

/// Other modules' fields of a record, within `max_bytes`.
fn extra_fields(
    t: &Table,
    max_bytes: usize,
) -> std::result::Result<Vec<(String, Field)>, StanzaError> {
    let e = |e: mlua::Error| StanzaError::bad_request(e.to_string());
    let mut extra = Vec::new();
    let mut budget = Budget::new(max_bytes);
    for pair in t.pairs::<Value, Value>() {
        let (Value::String(k), v) = pair.map_err(e)? else {
            continue;
        };
        let k = k.to_string_lossy();
        if KNOWN.contains(&k.as_str()) {
            continue;
        }
        budget
            .spend(ENTRY_COST + k.len())
            .map_err(|r| StanzaError::not_acceptable(format!("Registration refused: {r}")))?;
        let v = field_from_lua(&k, v, 1, &mut budget)?;
        extra.push((k, v));
    }
    Ok(extra)
}

/// A record as `cloud_notify/registration` handlers left `push_info`, into
/// a registration. `Err` says why it is refused: `bad-request` for a
/// record without a usable `jid`, `not-acceptable` for other modules'
/// fields beyond the bounds of [`crate::fields`] ([`MAX_BYTES`]).
pub fn registration_from_lua(
    identifier: &str,
    t: &Table,
) -> std::result::Result<Registration, StanzaError> {
    let mut reg = record_from_lua(identifier, t)?;
    reg.extra = extra_fields(t, MAX_BYTES)?;
    Ok(reg)
}

/// A record as stored, into a registration: other modules' fields are
/// kept up to [`MAX_STORED_BYTES`]; past that (or unreadable) the
/// registration is kept without them, with a message for the log.
pub fn stored_registration_from_lua(
    identifier: &str,
    t: &Table,
) -> std::result::Result<(Registration, Option<String>), StanzaError> {
    let mut reg = record_from_lua(identifier, t)?;
    match extra_fields(t, MAX_STORED_BYTES) {
        Ok(extra) => {
            reg.extra = extra;
            Ok((reg, None))
        }
        Err(why) => Ok((
            reg,
            Some(format!(
                "stored registration '{identifier}' keeps none of its other fields: {}",
                why.text.as_deref().unwrap_or(why.condition)
            )),
        )),
    }
}

/// The fields this module uses, of a record.
fn record_from_lua(identifier: &str, t: &Table) -> std::result::Result<Registration, StanzaError> {
    let e = |e: mlua::Error| StanzaError::bad_request(e.to_string());
    let raw_jid = str_field(t, "jid")
        .map_err(e)?
        .ok_or_else(|| StanzaError::bad_request("no jid"))?;
    let jid = normalize_jid(&raw_jid).unwrap_or(raw_jid);
    let options = match t.raw_get::<Value>("options").map_err(e)? {
        Value::Table(o) => Some(lua_to_form(&o, NS_DATA_FORMS).map_err(StanzaError::bad_request)?),
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
    let counts = match t.raw_get::<Value>("message_counts").map_err(e)? {
        Value::Table(c) => counts_from_lua(&c).map_err(e)?,
        _ => Counts::default(),
    };
    let node = str_field(t, "node").map_err(e)?;
    let include_payload = str_field(t, "include_payload").map_err(e)?;
    let client_id = str_field(t, "client_id").map_err(e)?;
    let resource = str_field(t, "resource").map_err(e)?;
    let language = str_field(t, "language").map_err(e)?;
    let mut reg = Registration::new(
        Parts {
            identifier: Some(identifier),
            jid: &jid,
            node: node.as_deref(),
            include_payload: include_payload.as_deref(),
            client_id: client_id.as_deref(),
            resource: resource.as_deref(),
            language: language.as_deref(),
        },
        timestamp,
    );
    reg.options = options;
    reg.errors = errors;
    reg.counts = counts;
    Ok(reg)
}

/// Stored unread counts: `{ [16 hex digits] = count }` (anything else is
/// skipped; a bounded number of entries is looked at, and `Counts` keeps
/// at most [`MAX_CHATS`](crate::counts::MAX_CHATS)).
fn counts_from_lua(t: &Table) -> Result<Counts> {
    let mut pairs = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let n = match v {
            Value::Integer(i) => u32::try_from(i).unwrap_or(0),
            Value::Number(n) if n >= 0.0 && n < f64::from(u32::MAX) => n as u32,
            _ => 0,
        };
        if let Value::String(k) = k {
            if let Some(key) = crate::counts::key_from_str(&k.to_string_lossy()) {
                if n > 0 {
                    pairs.push((key, n));
                }
            }
        }
        if pairs.len() > 4 * crate::counts::MAX_CHATS {
            break;
        }
    }
    pairs.sort();
    Ok(Counts::from_pairs(pairs))
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
                // (that prefix names Push 2.0 registrations in memory; no
                // XEP-0357 key begins with it: no JID has a `:` there)
                if k.starts_with(crate::push2::PREFIX) {
                    problems.push(format!(
                        "ignoring stored registration '{k}': not a JID's key"
                    ));
                    continue;
                }
                match stored_registration_from_lua(&k, &v) {
                    Ok((r, problem)) => {
                        problems.extend(problem);
                        regs.push(r);
                    }
                    Err(why) => problems.push(format!(
                        "ignoring stored registration '{k}': {}",
                        why.text.as_deref().unwrap_or(why.condition)
                    )),
                }
            }
            _ => problems.push("ignoring a stored registration that is not a table".into()),
        }
    }
    Ok((regs, problems))
}
