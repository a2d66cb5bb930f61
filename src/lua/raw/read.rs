//! Reading what push decisions need from Lua with raw `mlua::ffi` calls,
//! in one protected call: a stanza's facts (the fields [`facts_at`] reads
//! through `Table::raw_get`, one protected call and one registry reference
//! each), an app server's answer's attributes, the sessions' push
//! identifiers.
//!
//! The closure records where the strings are (plain pointers into Lua
//! strings the stanza holds); they are copied into Rust once it returns,
//! before any Lua runs. What is recorded is what [`StanzaFacts`] keeps (the
//! first body, the first carbon with its forwarded message, the first
//! [`MAX_STANZA_IDS`] stanza-ids, flags), so any number of children fits;
//! a body's text is kept in at most [`MAX_PIECES`] pieces.
//!
//! The same facts of a parsed element are [`StanzaFacts::from_element`]'s:
//! one classification ([`classify_child`]) and one set of rules
//! (`StanzaFacts::note_*`), two walks. spec/stanza_facts_spec.lua feeds
//! both the same stanzas and compares what they found.
//!
//! [`facts_at`]: crate::facts::StanzaFacts
use crate::facts::{
    classify_child, CallSignal, Child, Direction, Kind, StanzaFacts, MAX_STANZA_IDS, NS_FORWARD,
};
use crate::NS_CLIENT;
use mlua::{ffi, Lua, Result, Table};
use std::ffi::{c_char, c_int, CStr};

/// The stack slot of each protected call's one argument (a stanza, or a
/// `sessions` table).
const ARG: c_int = 1;

/// Text nodes of a body kept (Prosody's parser gives one; more are only
/// ever built by hand).
const MAX_PIECES: usize = 16;

/// A Lua string: where it is and how long.
#[derive(Clone, Copy)]
struct Found(*const c_char, usize);

impl Found {
    const NONE: Found = Found(std::ptr::null(), 0);

    /// # Safety
    /// The Lua string is alive.
    unsafe fn bytes(&self) -> Option<&[u8]> {
        (!self.0.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(self.0.cast::<u8>(), self.1) })
    }

    /// # Safety
    /// As [`Found::bytes`].
    unsafe fn str(&self) -> Option<&str> {
        unsafe { self.bytes() }.and_then(|b| std::str::from_utf8(b).ok())
    }

    /// # Safety
    /// As [`Found::bytes`].
    unsafe fn string(&self) -> Option<String> {
        unsafe { self.bytes() }.map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// One stanza level, as found: what [`StanzaFacts`] keeps of it.
#[derive(Clone, Copy)]
struct RawStanza {
    name: Found,
    type_: Found,
    from: Found,
    to: Found,
    id: Found,
    /// The first body's text nodes (`body_pieces` of them; none: no body).
    body: Option<[Found; MAX_PIECES]>,
    body_pieces: usize,
    has_subject: bool,
    encrypted: bool,
    propose: bool,
    /// The first call signal and its `id` attribute.
    call: Option<(CallSignal, Found)>,
    chat_state: bool,
    displayed: bool,
    reactions: bool,
    /// The first reply's `to`.
    reply_to: Found,
    /// The first carbon copy whose forwarded message was found (read into
    /// the caller's inner level).
    carbon: Option<Direction>,
    stanza_ids: [(Found, Found); MAX_STANZA_IDS],
    stanza_id_count: usize,
}

impl RawStanza {
    const EMPTY: RawStanza = RawStanza {
        name: Found::NONE,
        type_: Found::NONE,
        from: Found::NONE,
        to: Found::NONE,
        id: Found::NONE,
        body: None,
        body_pieces: 0,
        has_subject: false,
        encrypted: false,
        propose: false,
        call: None,
        chat_state: false,
        displayed: false,
        reactions: false,
        reply_to: Found::NONE,
        carbon: None,
        stanza_ids: [(Found::NONE, Found::NONE); MAX_STANZA_IDS],
        stanza_id_count: 0,
    };
}

/// Pushes `t[key]` (raw) and returns its type.
///
/// # Safety
/// `l` is valid inside a protected call; `t` is a table's absolute index.
unsafe fn get(l: *mut ffi::lua_State, t: c_int, key: &CStr) -> c_int {
    unsafe {
        ffi::lua_pushstring(l, key.as_ptr());
        ffi::lua_rawget(l, t)
    }
}

/// `t[key]` if it is a string.
///
/// # Safety
/// As [`get`]; the string stays alive while `t` holds it.
unsafe fn get_str(l: *mut ffi::lua_State, t: c_int, key: &CStr) -> Found {
    unsafe {
        let found = if get(l, t, key) == ffi::LUA_TSTRING {
            let mut len = 0;
            Found(ffi::lua_tolstring(l, -1, &mut len), len)
        } else {
            Found::NONE
        };
        ffi::lua_settop(l, -2);
        found
    }
}

/// An element's name and its own `xmlns` (`Found::NONE` if inherited).
///
/// # Safety
/// As [`get`].
unsafe fn name_and_xmlns(l: *mut ffi::lua_State, t: c_int) -> (Found, Found) {
    unsafe {
        let name = get_str(l, t, c"name");
        let mut xmlns = Found::NONE;
        if get(l, t, c"attr") == ffi::LUA_TTABLE {
            xmlns = get_str(l, ffi::lua_gettop(l), c"xmlns");
        }
        ffi::lua_settop(l, -2);
        (name, xmlns)
    }
}

/// The namespace an element is in: its own `xmlns`, else `parent_ns`.
///
/// # Safety
/// As [`Found::bytes`].
unsafe fn resolve<'a>(xmlns: &'a Found, parent_ns: &'a str) -> &'a str {
    if xmlns.0.is_null() {
        parent_ns
    } else {
        unsafe { xmlns.str() }.unwrap_or("")
    }
}

/// Pushes the first child element of the element at `t` with this name
/// in this namespace (children inherit `parent_ns`), or pushes nothing and
/// returns false.
///
/// # Safety
/// As [`get`].
unsafe fn push_child(
    l: *mut ffi::lua_State,
    t: c_int,
    name: &str,
    ns: &str,
    parent_ns: &str,
) -> bool {
    unsafe {
        let top = ffi::lua_gettop(l);
        if get(l, t, c"tags") == ffi::LUA_TTABLE {
            let tags = ffi::lua_gettop(l);
            for i in 1..=ffi::lua_rawlen(l, tags) as ffi::lua_Integer {
                if ffi::lua_rawgeti(l, tags, i) == ffi::LUA_TTABLE {
                    let (child_name, xmlns) = name_and_xmlns(l, ffi::lua_gettop(l));
                    if child_name.str() == Some(name) && resolve(&xmlns, parent_ns) == ns {
                        ffi::lua_replace(l, top + 1);
                        ffi::lua_settop(l, top + 1);
                        return true;
                    }
                }
                ffi::lua_settop(l, tags);
            }
        }
        ffi::lua_settop(l, top);
        false
    }
}

/// An attribute of the element at `t`.
///
/// # Safety
/// As [`get`].
unsafe fn attr_of(l: *mut ffi::lua_State, t: c_int, key: &CStr) -> Found {
    unsafe {
        let mut found = Found::NONE;
        if get(l, t, c"attr") == ffi::LUA_TTABLE {
            found = get_str(l, ffi::lua_gettop(l), key);
        }
        ffi::lua_settop(l, -2);
        found
    }
}

/// A `<stanza-id/>`'s `by` and `id`.
///
/// # Safety
/// As [`get`].
unsafe fn stanza_id_of(l: *mut ffi::lua_State, t: c_int) -> (Found, Found) {
    unsafe {
        let mut found = (Found::NONE, Found::NONE);
        if get(l, t, c"attr") == ffi::LUA_TTABLE {
            let attr = ffi::lua_gettop(l);
            found = (get_str(l, attr, c"by"), get_str(l, attr, c"id"));
        }
        ffi::lua_settop(l, -2);
        found
    }
}

/// Reads one stanza level at `t` into `out`; a carbon copy's forwarded
/// message (at the top level only, `inner` given) into `inner`.
///
/// # Safety
/// As [`get`].
unsafe fn read_level(
    l: *mut ffi::lua_State,
    t: c_int,
    parent_ns: &str,
    out: &mut RawStanza,
    mut inner: Option<&mut RawStanza>,
) {
    unsafe {
        ffi::luaL_checkstack(l, 8, c"stanza".as_ptr());
        let top = ffi::lua_gettop(l);
        out.name = get_str(l, t, c"name");
        let mut xmlns = Found::NONE;
        if get(l, t, c"attr") == ffi::LUA_TTABLE {
            let attr = ffi::lua_gettop(l);
            out.type_ = get_str(l, attr, c"type");
            out.from = get_str(l, attr, c"from");
            out.to = get_str(l, attr, c"to");
            out.id = get_str(l, attr, c"id");
            xmlns = get_str(l, attr, c"xmlns");
        }
        ffi::lua_settop(l, top);
        let ns = resolve(&xmlns, parent_ns);
        if get(l, t, c"tags") != ffi::LUA_TTABLE {
            ffi::lua_settop(l, top);
            return;
        }
        let tags = ffi::lua_gettop(l);
        for i in 1..=ffi::lua_rawlen(l, tags) as ffi::lua_Integer {
            ffi::lua_settop(l, tags);
            if ffi::lua_rawgeti(l, tags, i) != ffi::LUA_TTABLE {
                continue;
            }
            let child = ffi::lua_gettop(l);
            let (name, xmlns) = name_and_xmlns(l, child);
            let Some(name) = name.str() else {
                continue;
            };
            let child_ns = resolve(&xmlns, ns);
            let class = classify_child(name, child_ns);
            if read_child(l, (child, child_ns), class, out, inner.as_deref_mut()) {
                inner = None;
            }
        }
        ffi::lua_settop(l, top);
    }
}

/// Records the child at `child` (in namespace `ns`) of class `class` into
/// `out`; true if it was the carbon copy whose message went into `inner`.
///
/// # Safety
/// As [`get`].
unsafe fn read_child(
    l: *mut ffi::lua_State,
    (child, ns): (c_int, &str),
    class: Child,
    out: &mut RawStanza,
    inner: Option<&mut RawStanza>,
) -> bool {
    unsafe {
        match class {
            Child::Ignored | Child::Body => {}
            Child::Subject => out.has_subject = true,
            Child::Encrypted => out.encrypted = true,
            Child::Call(signal) => {
                out.propose |= signal == CallSignal::Propose;
                if out.call.is_none() {
                    out.call = Some((signal, attr_of(l, child, c"id")));
                }
            }
            Child::ChatState => out.chat_state = true,
            Child::Displayed => out.displayed = true,
            Child::Reactions => out.reactions = true,
            Child::Reply => {
                if out.reply_to.0.is_null() {
                    out.reply_to = attr_of(l, child, c"to");
                }
            }
            Child::StanzaId => {
                let (by, id) = stanza_id_of(l, child);
                if !by.0.is_null() && !id.0.is_null() && out.stanza_id_count < MAX_STANZA_IDS {
                    out.stanza_ids[out.stanza_id_count] = (by, id);
                    out.stanza_id_count += 1;
                }
            }
            Child::CarbonSent | Child::CarbonReceived => {
                // The first carbon whose forwarded message is there.
                let Some(into) = inner else { return false };
                if push_child(l, child, "forwarded", NS_FORWARD, ns) {
                    let fwd = ffi::lua_gettop(l);
                    if push_child(l, fwd, "message", NS_CLIENT, NS_FORWARD) {
                        let msg = ffi::lua_gettop(l);
                        read_level(l, msg, NS_FORWARD, into, None);
                        out.carbon = Some(match class {
                            Child::CarbonSent => Direction::Sent,
                            _ => Direction::Received,
                        });
                        return true;
                    }
                }
            }
        }
        if class == Child::Body && out.body.is_none() {
            read_body(l, child, out);
        }
        false
    }
}

/// Records the text nodes of the body at `child` (the first body).
///
/// # Safety
/// As [`get`].
unsafe fn read_body(l: *mut ffi::lua_State, child: c_int, out: &mut RawStanza) {
    unsafe {
        let mut pieces = [Found::NONE; MAX_PIECES];
        for j in 1..=ffi::lua_rawlen(l, child) as ffi::lua_Integer {
            if ffi::lua_rawgeti(l, child, j) == ffi::LUA_TSTRING && out.body_pieces < MAX_PIECES {
                let mut len = 0;
                pieces[out.body_pieces] = Found(ffi::lua_tolstring(l, -1, &mut len), len);
                out.body_pieces += 1;
            }
            ffi::lua_settop(l, child);
        }
        out.body = Some(pieces);
    }
}

/// Builds the facts of a level read by [`read_level`].
///
/// # Safety
/// The strings `raw` points to are alive.
unsafe fn facts_of(raw: &RawStanza, inner: &RawStanza) -> StanzaFacts {
    unsafe {
        let body = raw.body.map(|pieces| {
            let mut text = Vec::new();
            for piece in &pieces[..raw.body_pieces] {
                text.extend_from_slice(piece.bytes().unwrap_or_default());
            }
            String::from_utf8_lossy(&text).into_owned()
        });
        let mut facts = StanzaFacts {
            kind: Kind::from_name(raw.name.str().unwrap_or("")),
            type_: raw.type_.string(),
            from: raw.from.string(),
            to: raw.to.string(),
            id: raw.id.string(),
            body,
            body_withheld: false,
            has_subject: raw.has_subject,
            encrypted: raw.encrypted,
            propose: raw.propose,
            chat_state: raw.chat_state,
            displayed: raw.displayed,
            reactions: raw.reactions,
            carbon: raw
                .carbon
                .map(|dir| (dir, Box::new(facts_of(inner, &RawStanza::EMPTY)))),
            stanza_ids: raw.stanza_ids[..raw.stanza_id_count]
                .iter()
                .filter_map(|(by, id)| Some((by.string()?, id.string()?)))
                .collect(),
            ..Default::default()
        };
        if let Some((signal, id)) = raw.call {
            facts.note_call(signal, id.string());
        }
        facts.note_reply(raw.reply_to.string());
        facts
    }
}

/// What push decisions need from a stanza (see [`StanzaFacts`]).
pub fn stanza_facts(lua: &Lua, stanza: &Table) -> Result<StanzaFacts> {
    let mut outer = RawStanza::EMPTY;
    let mut inner = RawStanza::EMPTY;
    // SAFETY: the closure writes plain data only; the strings it finds are
    // held by the stanza, which the caller keeps alive and unchanged (no
    // Lua runs) until `facts_of` has copied them.
    unsafe {
        lua.exec_raw::<()>(stanza.clone(), |l| {
            read_level(l, ARG, NS_CLIENT, &mut outer, Some(&mut inner));
        })?;
        Ok(facts_of(&outer, &inner))
    }
}

/// Reads `stanza.attr[key]` for each key (strings only, raw), in one
/// protected call instead of one per field.
pub fn read_attrs<const N: usize>(
    lua: &Lua,
    stanza: &Table,
    keys: [&CStr; N],
) -> Result<[Option<String>; N]> {
    let mut found = [Found::NONE; N];
    // SAFETY: as in `stanza_facts`: plain data out, strings held by
    // `stanza.attr`, copied before any Lua runs.
    unsafe {
        lua.exec_raw::<()>(stanza.clone(), |l| {
            if ffi::lua_type(l, ARG) == ffi::LUA_TTABLE && get(l, ARG, c"attr") == ffi::LUA_TTABLE {
                let attr = ffi::lua_gettop(l);
                for (key, slot) in keys.iter().zip(found.iter_mut()) {
                    *slot = get_str(l, attr, key);
                }
            }
        })?;
        Ok(found.map(|f| f.string()))
    }
}

/// The `push_identifier` (and `push2_identifier`: a device with both
/// protocols' registrations) of each session in a user's `sessions` table.
pub fn push_identifiers(lua: &Lua, sessions: &Table) -> Result<Vec<String>> {
    // Owned by this frame, not the closure's: a Lua error leaving the
    // closure skips nothing that owns memory.
    let mut found = Vec::new();
    // SAFETY: as in `stanza_facts`: the strings are held by the sessions
    // and copied before any Lua runs.
    unsafe {
        lua.exec_raw::<()>(sessions.clone(), |l| {
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, ARG) != 0 {
                if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
                    let session = ffi::lua_gettop(l);
                    for key in [c"push_identifier", c"push2_identifier"] {
                        let id = get_str(l, session, key);
                        if !id.0.is_null() {
                            found.push(id);
                        }
                    }
                }
                ffi::lua_settop(l, -2);
            }
        })?;
        Ok(found.iter().filter_map(|f| f.string()).collect())
    }
}
