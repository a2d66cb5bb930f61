//! Reading what push decisions need from Lua with raw `mlua::ffi` calls,
//! in one protected call: a stanza's facts (the fields [`facts_at`] reads
//! through `Table::raw_get`, one protected call and one registry reference
//! each), an app server's answer's attributes, the sessions' push
//! identifiers.
//!
//! The closure records where the strings are (plain pointers into Lua
//! strings the stanza holds), in a [`Level`] that owns no memory; they are
//! copied into Rust once it returns, before any Lua runs. What is kept,
//! and what it means, is the core's ([`Level::note`], [`Level::facts`]):
//! this walk only says where things are, as the core's own walk of a
//! parsed element does ([`StanzaFacts::from_element`]); spec/stanza_facts_spec.lua
//! feeds both the same stanzas and compares what they found.
//!
//! [`facts_at`]: crate::facts::StanzaFacts
use crate::facts::{classify_child, StanzaFacts, NS_FORWARD};
use crate::walk::{Attr, ChildOf, Level, MAX_PIECES};
use crate::NS_CLIENT;
use mlua::{ffi, Lua, Result, Table};
use std::ffi::{c_char, c_int, CStr};

/// The stack slot of each protected call's one argument (a stanza, or a
/// `sessions` table).
const ARG: c_int = 1;

/// A Lua string: where it is and how long.
#[derive(Clone, Copy)]
pub(super) struct Found(pub(super) *const c_char, pub(super) usize);

impl Found {
    pub(super) const NONE: Found = Found(std::ptr::null(), 0);

    /// `None` for [`Found::NONE`].
    pub(super) fn some(self) -> Option<Found> {
        (!self.0.is_null()).then_some(self)
    }

    /// Its bytes, for as long as the caller says.
    ///
    /// # Safety
    /// The Lua string is alive for `'a`.
    unsafe fn bytes_for<'a>(self) -> &'a [u8] {
        unsafe { std::slice::from_raw_parts(self.0.cast::<u8>(), self.1) }
    }

    /// # Safety
    /// The Lua string is alive.
    pub(super) unsafe fn bytes(&self) -> Option<&[u8]> {
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

/// Pushes `t[key]` (raw) and returns its type.
///
/// # Safety
/// `l` is valid inside a protected call; `t` is a table's absolute index.
pub(super) unsafe fn get(l: *mut ffi::lua_State, t: c_int, key: &CStr) -> c_int {
    unsafe {
        ffi::lua_pushstring(l, key.as_ptr());
        ffi::lua_rawget(l, t)
    }
}

/// `t[key]` if it is a string.
///
/// # Safety
/// As [`get`]; the string stays alive while `t` holds it.
pub(super) unsafe fn get_str(l: *mut ffi::lua_State, t: c_int, key: &CStr) -> Found {
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

/// A child element on the stack, for the core's rules ([`Level::note`]).
struct RawChild<'a> {
    l: *mut ffi::lua_State,
    /// Its absolute stack index.
    index: c_int,
    /// Its namespace.
    ns: &'a str,
}

impl ChildOf<Found> for RawChild<'_> {
    fn attr(&mut self, which: Attr) -> Option<Found> {
        let key = match which {
            Attr::Id => c"id",
            Attr::To => c"to",
            Attr::By => c"by",
        };
        // SAFETY: a RawChild is made only by `read_level`, inside its
        // protected call, for a child table at `index`.
        unsafe { attr_of(self.l, self.index, key) }.some()
    }

    fn text(&mut self, pieces: &mut [Option<Found>; MAX_PIECES]) -> usize {
        let (l, child) = (self.l, self.index);
        let mut n = 0;
        // SAFETY: as in `attr`.
        unsafe {
            for j in 1..=ffi::lua_rawlen(l, child) as ffi::lua_Integer {
                if ffi::lua_rawgeti(l, child, j) == ffi::LUA_TSTRING && n < MAX_PIECES {
                    let mut len = 0;
                    pieces[n] = Some(Found(ffi::lua_tolstring(l, -1, &mut len), len));
                    n += 1;
                }
                ffi::lua_settop(l, child);
            }
        }
        n
    }

    fn forwarded(&mut self, into: &mut Level<Found>) -> bool {
        let l = self.l;
        // SAFETY: as in `attr`; what is pushed stays until the walk of
        // the level moves on to its next child.
        unsafe {
            if push_child(l, self.index, "forwarded", NS_FORWARD, self.ns) {
                let fwd = ffi::lua_gettop(l);
                if push_child(l, fwd, "message", NS_CLIENT, NS_FORWARD) {
                    read_level(l, ffi::lua_gettop(l), NS_FORWARD, into, None);
                    return true;
                }
            }
        }
        false
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
    out: &mut Level<Found>,
    mut inner: Option<&mut Level<Found>>,
) {
    unsafe {
        ffi::luaL_checkstack(l, 8, c"stanza".as_ptr());
        let top = ffi::lua_gettop(l);
        out.name = get_str(l, t, c"name").some();
        let mut xmlns = Found::NONE;
        if get(l, t, c"attr") == ffi::LUA_TTABLE {
            let attr = ffi::lua_gettop(l);
            out.type_ = get_str(l, attr, c"type").some();
            out.from = get_str(l, attr, c"from").some();
            out.to = get_str(l, attr, c"to").some();
            out.id = get_str(l, attr, c"id").some();
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
            let index = ffi::lua_gettop(l);
            let (name, xmlns) = name_and_xmlns(l, index);
            let Some(name) = name.str() else {
                continue;
            };
            let child_ns = resolve(&xmlns, ns);
            let class = classify_child(name, child_ns);
            let mut child = RawChild {
                l,
                index,
                ns: child_ns,
            };
            if out.note(class, &mut child, inner.as_deref_mut()) {
                inner = None;
            }
        }
        ffi::lua_settop(l, top);
    }
}

/// What push decisions need from a stanza (see [`StanzaFacts`]).
pub fn stanza_facts(lua: &Lua, stanza: &Table) -> Result<StanzaFacts> {
    let mut outer = Level::EMPTY;
    let mut inner = Level::EMPTY;
    // SAFETY: the closure writes plain data only; the strings it finds are
    // held by the stanza, which the caller keeps alive and unchanged (no
    // Lua runs) until `facts` has copied them.
    unsafe {
        lua.exec_raw::<()>(stanza.clone(), |l| {
            read_level(l, ARG, NS_CLIENT, &mut outer, Some(&mut inner));
        })?;
        Ok(outer.facts(&inner, |f: Found| Some(f.bytes_for())))
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
