//! Lua `util.stanza` tables ↔ minidom elements, and the facts of a stanza.
//!
//! Prosody stanzas are tables `{ name=…, attr={…}, tags={…}, [1..n]=children }`
//! whose `attr.xmlns` is absent where the namespace is inherited (and on the
//! root, which lives in the stream's namespace).

use crate::facts::{classify_child, jid_node, Child, Kind, StanzaFacts, NS_FORWARD};
use crate::NS_CLIENT;
use minidom::rxml::{Namespace, NcName};
use minidom::Element;
use mlua::{Result, Table, Value};

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

/// The concatenated text children of an element table (`get_text`).
fn text_of(t: &Table) -> Result<String> {
    let mut out = String::new();
    for v in t.clone().sequence_values::<Value>() {
        if let Value::String(s) = v? {
            out.push_str(&s.to_string_lossy());
        }
    }
    Ok(out)
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

/// Reads what push decisions need from a stanza: its attributes and, of
/// its children, only those [`classify_child`] cares about.
pub fn stanza_facts(stanza: &Table) -> Result<StanzaFacts> {
    facts_at(stanza, NS_CLIENT, 0)
}

fn facts_at(stanza: &Table, parent_ns: &str, depth: u8) -> Result<StanzaFacts> {
    let ns = element_ns(stanza, parent_ns)?;
    let mut facts = StanzaFacts {
        kind: Kind::from_name(str_field(stanza, "name")?.as_deref().unwrap_or("")),
        ..Default::default()
    };
    if let Some(attr) = table_field(stanza, "attr")? {
        facts.type_ = str_field(&attr, "type")?;
        facts.from = str_field(&attr, "from")?;
        facts.to = str_field(&attr, "to")?;
        facts.id = str_field(&attr, "id")?;
    }
    let Some(tags) = table_field(stanza, "tags")? else {
        return Ok(facts);
    };
    for child in tags.sequence_values::<Value>() {
        let Value::Table(child) = child? else {
            continue;
        };
        let Some(name) = str_field(&child, "name")? else {
            continue;
        };
        let child_ns = element_ns(&child, &ns)?;
        let class = classify_child(&name, &child_ns);
        if class == Child::Ignored {
            continue;
        }
        if class == Child::StanzaId {
            if let Some(attr) = table_field(&child, "attr")? {
                facts.note_stanza_id(str_field(&attr, "by")?, str_field(&attr, "id")?);
            }
            continue;
        }
        let text = if class == Child::Body {
            Some(text_of(&child)?)
        } else {
            None
        };
        let forwarded = if depth == 0 && matches!(class, Child::CarbonSent | Child::CarbonReceived)
        {
            match child_named(&child, "forwarded", NS_FORWARD, &child_ns)? {
                Some(fwd) => {
                    let msg = child_named(&fwd, "message", NS_CLIENT, NS_FORWARD)?;
                    match msg {
                        Some(msg) => Some(facts_at(&msg, NS_FORWARD, depth + 1)?),
                        None => None,
                    }
                }
                None => None,
            }
        } else {
            None
        };
        facts.note_child(class, || text, || forwarded);
    }
    Ok(facts)
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
