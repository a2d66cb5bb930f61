//! Lua `util.stanza` tables → minidom elements (forms from clients and the
//! store) and the few values read off a stanza through mlua's table API
//! (an error's type and condition, references, affiliations, room
//! members); stanza facts, read on every message, are read raw in
//! [`super::raw::read`]. Conversions only: what they mean is the core's.
//!
//! Prosody stanzas are tables `{ name=…, attr={…}, tags={…}, [1..n]=children }`
//! whose `attr.xmlns` is absent where the namespace is inherited (and on the
//! root, which lives in the stream's namespace).

use crate::form::{stanza_attr_local, Form, Packer};
use crate::muc::{Member, Reference, MAX_REFERENCES};
use minidom::rxml::NcName;
use minidom::Element;
use mlua::{Lua, Result, Table, Value};

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

/// Converts a `util.stanza` object, or its preserialized form, into an
/// element. Bounded in depth and size; attribute names that are not XML
/// names are left out. Read raw ([`super::raw::tree`]).
pub fn lua_to_element(t: &Table, parent_ns: &str) -> std::result::Result<Element, String> {
    let lua = t.weak_lua().try_upgrade().ok_or("the Lua state is gone")?;
    super::raw::tree::element(&lua, t, parent_ns).map_err(|e| e.to_string())?
}

/// Packs a `util.stanza` object, or its preserialized form, into a
/// [`Form`] (a stored registration's publish-options), its root in
/// `root_ns` unless it says otherwise. Bounded as [`Packer`] bounds it;
/// attribute names that are not XML names are left out, as
/// [`lua_to_element`] leaves them.
pub fn lua_to_form(t: &Table, root_ns: &str) -> std::result::Result<Form, String> {
    let mut p = Packer::new();
    pack(&mut p, t, root_ns, true)?;
    p.finish().ok_or_else(|| "empty form".to_owned())
}

fn pack(p: &mut Packer, t: &Table, parent_ns: &str, root: bool) -> std::result::Result<(), String> {
    let lua_err = |e: mlua::Error| e.to_string();
    let too_large = |e: crate::form::TooLarge| e.0.to_owned();
    let name = str_field(t, "name")
        .map_err(lua_err)?
        .ok_or("element without a name")?;
    if NcName::try_from(name.as_str()).is_err() {
        return Err(format!("invalid element name {name:?}"));
    }
    let attr = table_field(t, "attr").map_err(lua_err)?;
    let xmlns = match &attr {
        Some(a) => str_field(a, "xmlns").map_err(lua_err)?,
        None => None,
    };
    let ns = xmlns.unwrap_or_else(|| parent_ns.to_owned());
    let own = (root || ns != parent_ns).then_some(ns.as_str());
    p.start(&name, own).map_err(too_large)?;
    if let Some(attr) = attr {
        for pair in attr.pairs::<Value, Value>() {
            let (Value::String(k), Value::String(v)) = pair.map_err(lua_err)? else {
                continue;
            };
            let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
            if k != "xmlns" && stanza_attr_local(&k).is_some() {
                p.attr(&k, &v).map_err(too_large)?;
            }
        }
    }
    for child in t.clone().sequence_values::<Value>() {
        match child.map_err(lua_err)? {
            Value::Table(c) => pack(p, &c, &ns, false)?,
            Value::String(s) => p.text(&s.to_string_lossy()).map_err(too_large)?,
            _ => {}
        }
    }
    p.end();
    Ok(())
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

const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_REFERENCE: &str = "urn:xmpp:reference:0";
const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// The string attribute `key` of an element table.
fn attr_str(t: &Table, key: &str) -> Result<Option<String>> {
    Ok(table_field(t, "attr")?
        .map(|a| str_field(&a, key))
        .transpose()?
        .flatten())
}

/// Calls `visit` with each child element table of `t` named `name`, in
/// order, until it returns false.
fn each_child_named(
    t: &Table,
    name: &str,
    mut visit: impl FnMut(Table) -> Result<bool>,
) -> Result<()> {
    if let Some(tags) = table_field(t, "tags")? {
        for child in tags.sequence_values::<Value>() {
            if let Value::Table(child) = child? {
                if str_field(&child, "name")?.as_deref() == Some(name) && !visit(child)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The first `<error type=…>`'s type and its condition (its first child in
/// the stanzas namespace), as sent: [`crate::service::Response::error`]
/// says what they count as.
pub fn error_of(stanza: &Table) -> Result<(Option<String>, Option<String>)> {
    let mut first = None;
    each_child_named(stanza, "error", |e| {
        first = Some(e);
        Ok(false)
    })?;
    let Some(error) = first else {
        return Ok((None, None));
    };
    let type_ = attr_str(&error, "type")?;
    if let Some(conds) = table_field(&error, "tags")? {
        for c in conds.sequence_values::<Value>() {
            let Value::Table(c) = c? else { continue };
            if attr_str(&c, "xmlns")?.as_deref() == Some(NS_STANZAS) {
                if let Some(n) = str_field(&c, "name")? {
                    return Ok((type_, Some(n)));
                }
            }
        }
    }
    Ok((type_, None))
}

/// The `by` attribute of a stanza's `<error/>` (RFC 6120 §8.3.2: the
/// entity that made the error), if any.
pub fn error_by(stanza: &Table) -> Result<Option<String>> {
    let mut by = None;
    each_child_named(stanza, "error", |e| {
        by = attr_str(&e, "by")?;
        Ok(false)
    })?;
    Ok(by)
}

/// The XEP-0372 references among a stanza's children (at most
/// [`MAX_REFERENCES`]).
pub fn references(stanza: &Table) -> Result<Vec<Reference>> {
    let mut out = Vec::new();
    each_child_named(stanza, "reference", |child| {
        let Some(attr) = table_field(&child, "attr")? else {
            return Ok(true);
        };
        if str_field(&attr, "xmlns")?.as_deref() == Some(NS_REFERENCE) {
            out.push(Reference {
                type_: str_field(&attr, "type")?,
                begin: str_field(&attr, "begin")?,
                end: str_field(&attr, "end")?,
            });
        }
        Ok(out.len() < MAX_REFERENCES)
    })?;
    Ok(out)
}

/// XEP-0461 (Message Replies).
const NS_REPLY: &str = "urn:xmpp:reply:0";

/// What tells whether a group chat message pings someone (XEP-0492
/// "on-mention"): its mention references' URIs and the nicknames they
/// cover in `body`, and the `to` of its XEP-0461 reply (each bounded).
pub fn pings_of(stanza: &Table, body: Option<&str>) -> Result<crate::chat_settings::Pings> {
    let mut pings = crate::chat_settings::Pings::default();
    each_child_named(stanza, "reference", |child| {
        let Some(attr) = table_field(&child, "attr")? else {
            return Ok(true);
        };
        let ours = str_field(&attr, "xmlns")?.as_deref() == Some(NS_REFERENCE)
            && str_field(&attr, "type")?.as_deref() == Some("mention");
        if let (true, Some(uri)) = (ours, str_field(&attr, "uri")?) {
            if uri.len() <= 3072 {
                pings.uris.push(uri);
            }
        }
        Ok(pings.uris.len() < MAX_REFERENCES)
    })?;
    if let Some(body) = body {
        pings.nicks = crate::muc::mentioned_nicks(body, &references(stanza)?);
    }
    each_child_named(stanza, "reply", |child| {
        let Some(attr) = table_field(&child, "attr")? else {
            return Ok(true);
        };
        if str_field(&attr, "xmlns")?.as_deref() == Some(NS_REPLY) {
            pings.reply_to = str_field(&attr, "to")?.filter(|t| t.len() <= 3072);
            return Ok(false);
        }
        Ok(true)
    })?;
    Ok(pings)
}

/// Most `<affiliation/>`s read from one pubsub event.
const MAX_AFFILIATIONS: usize = 16;

/// A pubsub event's affiliations: its node and `(jid, affiliation)` pairs.
pub type Affiliations = (Option<String>, Vec<(String, String)>);

/// A pubsub event's first `<affiliations node=…>`: the node and its
/// `(jid, affiliation)` pairs (at most [`MAX_AFFILIATIONS`]).
pub fn affiliations_of(stanza: &Table) -> Result<Option<Affiliations>> {
    let Some(event) = child_named(stanza, "event", NS_PUBSUB_EVENT, crate::NS_CLIENT)? else {
        return Ok(None);
    };
    let Some(affs) = child_named(&event, "affiliations", NS_PUBSUB_EVENT, NS_PUBSUB_EVENT)? else {
        return Ok(None);
    };
    let node = attr_str(&affs, "node")?;
    let mut out = Vec::new();
    each_child_named(&affs, "affiliation", |child| {
        if let (Some(jid), Some(affiliation)) =
            (attr_str(&child, "jid")?, attr_str(&child, "affiliation")?)
        {
            out.push((jid, affiliation));
        }
        Ok(out.len() < MAX_AFFILIATIONS)
    })?;
    Ok(Some((node, out)))
}

/// `{ { jid = …, joined = …, affiliation = …, setting = …, nick = … }, … }`
/// from the room (`setting`: the member's XEP-0492 level for it, if any).
pub fn members_of(t: &Table) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    for m in t.clone().sequence_values::<Value>() {
        let Value::Table(m) = m? else { continue };
        if let Some(jid) = str_field(&m, "jid")? {
            let joined = matches!(m.raw_get::<Value>("joined")?, Value::Boolean(true));
            let outcast = str_field(&m, "affiliation")?.as_deref() == Some("outcast");
            let setting = str_field(&m, "setting")?
                .as_deref()
                .and_then(crate::chat_settings::Level::of);
            let nick =
                str_field(&m, "nick")?.filter(|n| n.len() <= crate::chat_settings::MAX_NICK_BYTES);
            out.push(Member {
                jid,
                joined,
                outcast,
                setting,
                nick,
            });
        }
    }
    Ok(out)
}

/// The identifiers a `push_services` table names: its string keys whose
/// values are tables or `true`, and its string values.
pub fn strings_of(t: Option<Table>) -> Result<Option<Vec<String>>> {
    let Some(t) = t else { return Ok(None) };
    let mut out = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        match pair? {
            (Value::String(k), Value::Table(_)) | (Value::String(k), Value::Boolean(true)) => {
                out.push(k.to_string_lossy())
            }
            (Value::Integer(_), Value::String(v)) => out.push(v.to_string_lossy()),
            _ => {}
        }
    }
    Ok(Some(out))
}
