//! Lua `util.stanza` tables → minidom elements (forms from clients and the
//! store), and small field readers; stanza facts are read in `read`.
//!
//! Prosody stanzas are tables `{ name=…, attr={…}, tags={…}, [1..n]=children }`
//! whose `attr.xmlns` is absent where the namespace is inherited (and on the
//! root, which lives in the stream's namespace).

use crate::facts::jid_node;
use minidom::rxml::{Namespace, NcName};
use minidom::Element;
use mlua::{Lua, Result, Table, Value};

/// Deepest element accepted from Lua.
const MAX_DEPTH: usize = 32;
/// Most elements accepted from Lua in one conversion.
const MAX_ELEMENTS: usize = 2048;

/// A string field of a table, raw (no metamethods), if it is a string.
pub fn str_field(t: &Table, key: &str) -> Result<Option<String>> {
    match t.raw_get::<Value>(key)? {
        Value::String(s) => Ok(Some(s.to_string_lossy())),
        _ => Ok(None),
    }
}

/// A table field, raw, if it is a table.
pub fn table_field(t: &Table, key: &str) -> Result<Option<Table>> {
    match t.raw_get::<Value>(key)? {
        Value::Table(t) => Ok(Some(t)),
        _ => Ok(None),
    }
}

/// The first child element table with this name, in this namespace.
pub fn child_named(t: &Table, name: &str, ns: &str, parent_ns: &str) -> Result<Option<Table>> {
    let Some(tags) = table_field(t, "tags")? else {
        return Ok(None);
    };
    for child in tags.sequence_values::<Value>() {
        if let Value::Table(child) = child? {
            if str_field(&child, "name")?.as_deref() == Some(name) {
                let child_ns = element_ns(&child, parent_ns)?;
                if child_ns == ns {
                    return Ok(Some(child));
                }
            }
        }
    }
    Ok(None)
}

fn element_ns(t: &Table, parent_ns: &str) -> Result<String> {
    Ok(match table_field(t, "attr")? {
        Some(attr) => str_field(&attr, "xmlns")?.unwrap_or_else(|| parent_ns.to_owned()),
        None => parent_ns.to_owned(),
    })
}

/// The user a stanza is addressed to (local part of `to`), else `fallback`.
pub fn recipient(stanza: &Table, fallback: Option<String>) -> Result<Option<String>> {
    let to = match table_field(stanza, "attr")? {
        Some(attr) => str_field(&attr, "to")?,
        None => None,
    };
    Ok(to
        .as_deref()
        .and_then(jid_node)
        .map(str::to_owned)
        .or(fallback))
}

/// Converts a `util.stanza` object, or its preserialized form, into an
/// element. Bounded in depth and size; attribute names that are not XML
/// names are left out.
pub fn lua_to_element(t: &Table, parent_ns: &str) -> std::result::Result<Element, String> {
    let mut budget = MAX_ELEMENTS;
    to_element(t, parent_ns, 0, &mut budget)
}

fn to_element(
    t: &Table,
    parent_ns: &str,
    depth: usize,
    budget: &mut usize,
) -> std::result::Result<Element, String> {
    if depth > MAX_DEPTH {
        return Err("element nested too deeply".into());
    }
    if *budget == 0 {
        return Err("too many elements".into());
    }
    *budget -= 1;
    let lua_err = |e: mlua::Error| e.to_string();
    let name = str_field(t, "name")
        .map_err(lua_err)?
        .ok_or("element without a name")?;
    let attr = table_field(t, "attr").map_err(lua_err)?;
    let ns = match &attr {
        Some(a) => str_field(a, "xmlns")
            .map_err(lua_err)?
            .unwrap_or_else(|| parent_ns.to_owned()),
        None => parent_ns.to_owned(),
    };
    if NcName::try_from(name.as_str()).is_err() {
        return Err(format!("invalid element name {name:?}"));
    }
    let mut elem = Element::builder(&name, ns.clone()).build();
    if let Some(attr) = attr {
        for pair in attr.pairs::<Value, Value>() {
            let (Value::String(k), Value::String(v)) = pair.map_err(lua_err)? else {
                continue;
            };
            let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
            if k == "xmlns" {
                continue;
            }
            if let Some(local) = k.strip_prefix("xml:") {
                if let Ok(local) = NcName::try_from(local) {
                    elem.set_attr(Namespace::XML, local, v);
                }
            } else if let Some((attr_ns, local)) = k.split_once('\u{1}') {
                if let Ok(local) = NcName::try_from(local) {
                    elem.set_attr(Namespace::from(attr_ns.to_owned()), local, v);
                }
            } else if let Ok(k) = NcName::try_from(k.as_str()) {
                elem.set_attr(Namespace::NONE, k, v);
            }
        }
    }
    for child in t.clone().sequence_values::<Value>() {
        match child.map_err(lua_err)? {
            Value::Table(c) => {
                let c = to_element(&c, &ns, depth + 1, budget)?;
                elem.append_child(c);
            }
            Value::String(s) => elem.append_text_node(s.to_string_lossy()),
            _ => {}
        }
    }
    Ok(elem)
}

/// Follows `tags[1]` down `levels` times.
pub fn first_tag_path(t: &Table, levels: usize) -> Result<Option<Table>> {
    let mut cur = t.clone();
    for _ in 0..levels {
        let Some(tags) = table_field(&cur, "tags")? else {
            return Ok(None);
        };
        match tags.raw_get::<Value>(1)? {
            Value::Table(next) => cur = next,
            _ => return Ok(None),
        }
    }
    Ok(Some(cur))
}

/// A util.stanza `<message/>` rebuilt from what the core remembers of one
/// (type, from, id, body), addressed to `to`: the `original_stanza` of a
/// push whose stanza is gone (a room message an occupant's server bounced).
pub fn message_from_facts(
    lua: &Lua,
    stanza_mt: &Table,
    facts: &crate::facts::StanzaFacts,
    to: &str,
) -> Result<Table> {
    let element = |name: &str| -> Result<Table> {
        let t = lua.create_table()?;
        t.raw_set("name", name)?;
        t.raw_set("attr", lua.create_table()?)?;
        t.raw_set("tags", lua.create_table()?)?;
        t.set_metatable(Some(stanza_mt.clone()))?;
        Ok(t)
    };
    let message = element("message")?;
    let attr: Table = message.raw_get("attr")?;
    attr.raw_set("to", to)?;
    attr.raw_set("type", facts.type_.as_deref())?;
    attr.raw_set("from", facts.from.as_deref())?;
    attr.raw_set("id", facts.id.as_deref())?;
    if let Some(text) = &facts.body {
        let body = element("body")?;
        body.raw_set(1, text.as_str())?;
        message.raw_set(1, &body)?;
        message.raw_get::<Table>("tags")?.raw_set(1, body)?;
    }
    Ok(message)
}
