//! A util.stanza element (or its preserialized form) read with raw
//! `mlua::ffi` calls, in one protected call, into a minidom element: what
//! [`lua_to_element`](crate::lua::convert::lua_to_element) returns, for a
//! client's `<enable/>` with its publish-options, a stanza a handler keeps,
//! a bookmark. Through mlua's table API every field read was a protected
//! call and a registry reference of its own.
//!
//! The walk records where things are ([`Piece`]s pointing into the Lua
//! strings the tree holds, in vectors owned outside the protected call, so
//! a Lua error leaving the closure skips nothing that owns memory: a
//! thread-local kept between conversions and emptied before and after
//! each, or the caller's own when that one is in use); the element is
//! built from them once the call returns, before any Lua runs.
//! Bounded as before: [`MAX_DEPTH`] deep, [`MAX_ELEMENTS`] elements.
use super::read::{get, get_str, Found};
use crate::form::set_stanza_attr;
use minidom::rxml::NcName;
use minidom::Element;
use mlua::{ffi, Lua, Result, Table};
use std::ffi::c_int;

/// Deepest element accepted from Lua.
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted from Lua in one conversion.
pub const MAX_ELEMENTS: usize = 2048;

/// The protected call's one argument: the element's table.
const ARG: c_int = 1;

/// What the walk found, in document order.
enum Piece {
    /// An element starts: its name, its own `xmlns` ([`Found::NONE`] if
    /// inherited), and where its attributes are in [`Walk::attrs`].
    Start {
        name: Found,
        xmlns: Found,
        attrs: (usize, usize),
    },
    /// A text child.
    Text(Found),
    /// The element ends.
    End,
}

/// The walk's findings, and why it stopped early.
#[derive(Default)]
struct Walk {
    pieces: Vec<Piece>,
    /// Attribute names and values (strings only; `xmlns` apart).
    attrs: Vec<(Found, Found)>,
    elements: usize,
    error: Option<&'static str>,
}

/// A string on the stack.
///
/// # Safety
/// `l` is valid and the value at `index` is a string.
unsafe fn found_at(l: *mut ffi::lua_State, index: c_int) -> Found {
    let mut len = 0;
    let p = unsafe { ffi::lua_tolstring(l, index, &mut len) };
    Found(p, len)
}

/// Records the attributes of the element at `t`; returns its `xmlns`.
///
/// # Safety
/// As [`get`]; leaves the stack as it found it.
unsafe fn walk_attrs(l: *mut ffi::lua_State, t: c_int, w: &mut Walk) -> Found {
    let mut xmlns = Found::NONE;
    unsafe {
        let top = ffi::lua_gettop(l);
        if get(l, t, c"attr") == ffi::LUA_TTABLE {
            let attr = ffi::lua_gettop(l);
            ffi::lua_pushnil(l);
            while ffi::lua_next(l, attr) != 0 {
                // (only string keys: lua_tolstring would turn a number key
                // into a string under lua_next's feet)
                if ffi::lua_type(l, -2) == ffi::LUA_TSTRING
                    && ffi::lua_type(l, -1) == ffi::LUA_TSTRING
                {
                    let (k, v) = (found_at(l, -2), found_at(l, -1));
                    if k.bytes() == Some(b"xmlns") {
                        xmlns = v;
                    } else {
                        w.attrs.push((k, v));
                    }
                }
                ffi::lua_settop(l, -2);
            }
        }
        ffi::lua_settop(l, top);
    }
    xmlns
}

/// Walks the element at `t` (and its children, in order).
///
/// # Safety
/// As [`get`].
unsafe fn walk(l: *mut ffi::lua_State, t: c_int, depth: usize, w: &mut Walk) {
    if depth > MAX_DEPTH {
        w.error = Some("element nested too deeply");
        return;
    }
    if w.elements == MAX_ELEMENTS {
        w.error = Some("too many elements");
        return;
    }
    w.elements += 1;
    unsafe {
        ffi::luaL_checkstack(l, 6, c"element".as_ptr());
        let top = ffi::lua_gettop(l);
        let name = get_str(l, t, c"name");
        let from = w.attrs.len();
        let xmlns = walk_attrs(l, t, w);
        w.pieces.push(Piece::Start {
            name,
            xmlns,
            attrs: (from, w.attrs.len()),
        });
        for i in 1.. {
            match ffi::lua_rawgeti(l, t, i) {
                ffi::LUA_TNIL => break,
                ffi::LUA_TTABLE => walk(l, ffi::lua_gettop(l), depth + 1, w),
                ffi::LUA_TSTRING => w.pieces.push(Piece::Text(found_at(l, -1))),
                _ => {}
            }
            ffi::lua_settop(l, top);
            if w.error.is_some() {
                return;
            }
        }
        ffi::lua_settop(l, top);
    }
    w.pieces.push(Piece::End);
}

/// A Lua string's text (invalid UTF-8 replaced).
///
/// # Safety
/// The string is alive.
unsafe fn text(f: Found) -> String {
    String::from_utf8_lossy(unsafe { f.bytes() }.unwrap_or_default()).into_owned()
}

/// Builds the element starting at `pieces[*at]` (in `parent_ns` unless it
/// says otherwise), and moves `at` past its end.
///
/// # Safety
/// The strings the pieces point into are alive.
unsafe fn build(w: &Walk, at: &mut usize, parent_ns: &str) -> std::result::Result<Element, String> {
    let Some(Piece::Start { name, xmlns, attrs }) = w.pieces.get(*at) else {
        return Err("element without a name".into());
    };
    *at += 1;
    let name = name
        .some()
        .map(|n| unsafe { text(n) })
        .ok_or("element without a name")?;
    let ns = match xmlns.some() {
        Some(x) => unsafe { text(x) },
        None => parent_ns.to_owned(),
    };
    if NcName::try_from(name.as_str()).is_err() {
        return Err(format!("invalid element name {name:?}"));
    }
    let mut elem = Element::builder(&name, ns.clone()).build();
    for &(k, v) in &w.attrs[attrs.0..attrs.1] {
        unsafe { set_stanza_attr(&mut elem, &text(k), &text(v)) };
    }
    while let Some(piece) = w.pieces.get(*at) {
        match piece {
            Piece::Start { .. } => {
                let child = unsafe { build(w, at, &ns) }?;
                elem.append_child(child);
            }
            Piece::Text(t) => {
                elem.append_text_node(unsafe { text(*t) });
                *at += 1;
            }
            Piece::End => {
                *at += 1;
                break;
            }
        }
    }
    Ok(elem)
}

/// The element `t` holds (whose parent is in `parent_ns`), or why not.
pub fn element(
    lua: &Lua,
    t: &Table,
    parent_ns: &str,
) -> Result<std::result::Result<Element, String>> {
    let kept = SCRATCH.try_with(|kept| {
        let mut w = kept.try_borrow_mut().ok()?;
        // (emptied before too: a panic unwinding through a conversion
        // skips the clearing after it, and its pointers are stale)
        w.clear();
        let converted = convert(lua, t, parent_ns, &mut w);
        w.clear();
        Some(converted)
    });
    match kept {
        Ok(Some(converted)) => converted,
        // (in use: a conversion within one; or the thread is ending)
        _ => convert(lua, t, parent_ns, &mut Walk::default()),
    }
}

thread_local! {
    /// The walk's vectors, kept from one conversion to the next, so that
    /// their room, once grown, is not asked of malloc again: an enable
    /// with Siskin's form takes 17 pieces, and room for 32 is a request
    /// of over a kilobyte, before which glibc merges the small chunks it
    /// keeps (rules 116 and 117). Emptied before and after each conversion.
    static SCRATCH: std::cell::RefCell<Walk> = std::cell::RefCell::default();
}

/// Room kept between conversions (pieces; attributes alike): a conversion
/// of a larger tree gives the rest back.
const KEPT_ROOM: usize = 256;

impl Walk {
    /// Empties the walk (its pointers are stale once the call returns),
    /// keeping up to [`KEPT_ROOM`] of its room.
    fn clear(&mut self) {
        self.pieces.clear();
        self.attrs.clear();
        self.pieces.shrink_to(KEPT_ROOM);
        self.attrs.shrink_to(KEPT_ROOM);
        self.elements = 0;
        self.error = None;
    }
}

/// [`element`]'s conversion, with `w` empty.
fn convert(
    lua: &Lua,
    t: &Table,
    parent_ns: &str,
    w: &mut Walk,
) -> Result<std::result::Result<Element, String>> {
    // (`w` lives outside the protected call: a Lua error leaving the
    // closure skips nothing that owns memory)
    // SAFETY: the closure records plain data (pointers into strings the
    // tree holds); the caller keeps the tree alive and unchanged, and no
    // Lua runs, until `build` has copied them.
    unsafe {
        lua.exec_raw::<()>(t.clone(), |l| walk(l, ARG, 0, w))?;
        if let Some(why) = w.error {
            return Ok(Err(why.into()));
        }
        Ok(build(w, &mut 0, parent_ns))
    }
}
