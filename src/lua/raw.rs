//! Building Lua values with raw `mlua::ffi` calls, all inside one protected
//! call (`Lua::exec_raw`).
//!
//! A push hands Lua a util.stanza object of about ten elements and an event
//! table; built field by field through `Table::raw_set` (each a protected
//! call of its own) that cost more than the rest of the module's work per
//! push. Here a whole batch is one protected call.
//!
//! Everything the closures touch is borrowed or an integer: a Lua error
//! (out of memory) leaving them by `longjmp` skips no destructor. What needs
//! allocating (an element's namespace, which minidom hands out as a new
//! `String`) is collected beforehand into a [`Shape`].

use crate::registration::{Registration, Scalar};
use minidom::rxml::Namespace;
use minidom::Element;
use mlua::ffi;
use std::ffi::{c_int, CStr};

/// Deepest element built (what is built comes from the core, or from a
/// store form already bounded when it was read).
const MAX_DEPTH: usize = 64;

/// The `xmlns` to write for each element of a tree, in document order
/// (`None` where it is inherited), prepared outside the protected call.
pub struct Shape(Vec<Option<String>>);

impl Shape {
    pub fn of(elem: &Element, parent_ns: &str) -> Self {
        fn walk(elem: &Element, parent_ns: &str, out: &mut Vec<Option<String>>, depth: usize) {
            let ns = elem.ns();
            let children_ns = if depth < MAX_DEPTH {
                Some(ns.clone())
            } else {
                None
            };
            out.push((ns != parent_ns).then_some(ns));
            if let Some(ns) = children_ns {
                for child in elem.children() {
                    walk(child, &ns, out, depth + 1);
                }
            }
        }
        let mut out = Vec::new();
        walk(elem, parent_ns, &mut out, 0);
        Shape(out)
    }
}

/// Pushes `s` onto the stack.
///
/// # Safety
/// `l` is a valid state with room for one more value.
unsafe fn push_str(l: *mut ffi::lua_State, s: &str) {
    unsafe { ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len()) };
}

/// `t[key] = s` for the table on top of the stack.
///
/// # Safety
/// `l` is valid, a table is on top, and there is room for one more value.
pub unsafe fn set_str(l: *mut ffi::lua_State, key: &CStr, s: &str) {
    unsafe {
        push_str(l, s);
        ffi::lua_setfield(l, -2, key.as_ptr());
    }
}

/// `t[key] = s` if `s` is there.
///
/// # Safety
/// As [`set_str`].
pub unsafe fn set_opt(l: *mut ffi::lua_State, key: &CStr, s: Option<&str>) {
    if let Some(s) = s {
        unsafe { set_str(l, key, s) };
    }
}

/// `t[key] = b`.
///
/// # Safety
/// As [`set_str`].
pub unsafe fn set_bool(l: *mut ffi::lua_State, key: &CStr, b: bool) {
    unsafe {
        ffi::lua_pushboolean(l, c_int::from(b));
        ffi::lua_setfield(l, -2, key.as_ptr());
    }
}

/// Pushes a number, as an integer where it is one (as the store has it).
///
/// # Safety
/// `l` is valid with room for one more value.
unsafe fn push_number(l: *mut ffi::lua_State, n: f64) {
    unsafe {
        if n.fract() == 0.0 && n.abs() < 9.0e15 {
            ffi::lua_pushinteger(l, n as ffi::lua_Integer);
        } else {
            ffi::lua_pushnumber(l, n);
        }
    }
}

/// Pushes `elem` as a util.stanza object whose metatable is at absolute
/// stack index `mt`, or with `mt == 0` in the preserialized form
/// (`{ name, attr, [i] = children }`, no `tags`, no metatable).
///
/// # Safety
/// `l` is a valid state inside a protected call; `shape` was made from
/// `elem` by [`Shape::of`]; `next` starts at 0.
pub unsafe fn push_element(
    l: *mut ffi::lua_State,
    elem: &Element,
    shape: &Shape,
    next: &mut usize,
    mt: c_int,
    depth: usize,
) {
    unsafe {
        ffi::luaL_checkstack(l, 6, c"stanza too deep".as_ptr());
        let xmlns = shape.0.get(*next).and_then(|ns| ns.as_deref());
        *next += 1;
        let nodes = elem.nodes().len();
        ffi::lua_createtable(l, nodes as c_int, 3);
        let t = ffi::lua_gettop(l);
        set_str(l, c"name", elem.name());
        let attrs = elem.attrs();
        ffi::lua_createtable(l, 0, (attrs.len() + usize::from(xmlns.is_some())) as c_int);
        if let Some(ns) = xmlns {
            set_str(l, c"xmlns", ns);
        }
        for ((attr_ns, name), value) in attrs.iter() {
            if attr_ns.is_empty() {
                push_str(l, name.as_str());
            } else if **attr_ns == *Namespace::XML {
                push_str(l, "xml:");
                push_str(l, name.as_str());
                ffi::lua_concat(l, 2);
            } else {
                push_str(l, attr_ns.as_str());
                push_str(l, "\u{1}");
                push_str(l, name.as_str());
                ffi::lua_concat(l, 3);
            }
            push_str(l, value.as_str());
            ffi::lua_rawset(l, -3);
        }
        ffi::lua_setfield(l, t, c"attr".as_ptr());
        let with_tags = mt != 0;
        if with_tags {
            ffi::lua_createtable(l, elem.children().count() as c_int, 0);
        }
        let (mut i, mut tags) = (0, 0);
        for node in elem.nodes() {
            if let Some(child) = node.as_element() {
                if depth >= MAX_DEPTH {
                    continue;
                }
                push_element(l, child, shape, next, mt, depth + 1);
                if with_tags {
                    tags += 1;
                    ffi::lua_pushvalue(l, -1);
                    ffi::lua_rawseti(l, t + 1, tags);
                }
            } else if let Some(text) = node.as_text() {
                push_str(l, text);
            } else {
                continue;
            }
            i += 1;
            ffi::lua_rawseti(l, t, i);
        }
        if with_tags {
            ffi::lua_setfield(l, t, c"tags".as_ptr());
            ffi::lua_pushvalue(l, mt);
            ffi::lua_setmetatable(l, t);
        }
    }
}

/// Pushes the first tag `levels` deep under the stanza on top of the stack
/// (`tags[1]` each time), or nil.
///
/// # Safety
/// `l` is valid inside a protected call; a table is on top.
pub unsafe fn push_first_tag_path(l: *mut ffi::lua_State, levels: usize) {
    unsafe {
        ffi::lua_pushvalue(l, -1);
        for _ in 0..levels {
            if ffi::lua_type(l, -1) != ffi::LUA_TTABLE {
                break;
            }
            ffi::lua_getfield(l, -1, c"tags".as_ptr());
            if ffi::lua_type(l, -1) == ffi::LUA_TTABLE {
                ffi::lua_rawgeti(l, -1, 1);
            } else {
                ffi::lua_pushnil(l);
            }
            ffi::lua_rotate(l, -3, 1);
            ffi::lua_settop(l, -3);
        }
        if ffi::lua_type(l, -1) != ffi::LUA_TTABLE {
            ffi::lua_settop(l, -2);
            ffi::lua_pushnil(l);
        }
    }
}

/// Pushes a registration as the record the store and event handlers see
/// (`push_info`); `options` is the shape of its publish-options form.
///
/// # Safety
/// `l` is valid inside a protected call; `options` was made from
/// `r.options`.
pub unsafe fn push_registration(l: *mut ffi::lua_State, r: &Registration, options: Option<&Shape>) {
    unsafe {
        ffi::luaL_checkstack(l, 4, c"registration".as_ptr());
        ffi::lua_createtable(l, 0, 8);
        set_str(l, c"jid", &r.jid);
        set_opt(l, c"node", r.node.as_deref());
        set_opt(l, c"include_payload", r.include_payload.as_deref());
        if let (Some(form), Some(shape)) = (r.options.as_deref(), options) {
            // Preserialized, with xmlns on the root, as util.stanza.preserialize leaves it.
            push_element(l, form, shape, &mut 0, 0, 0);
            ffi::lua_setfield(l, -2, c"options".as_ptr());
        }
        push_number(l, r.timestamp);
        ffi::lua_setfield(l, -2, c"timestamp".as_ptr());
        set_opt(l, c"client_id", r.client_id.as_deref());
        set_opt(l, c"resource", r.resource.as_deref());
        set_opt(l, c"language", r.language.as_deref());
        if r.errors > 0 {
            ffi::lua_pushinteger(l, ffi::lua_Integer::from(r.errors));
            ffi::lua_setfield(l, -2, c"error_count".as_ptr());
        }
        for (k, v) in &r.extra {
            push_str(l, k);
            match v {
                Scalar::Str(s) => push_str(l, s),
                Scalar::Num(n) => push_number(l, *n),
                Scalar::Bool(b) => ffi::lua_pushboolean(l, c_int::from(*b)),
            }
            ffi::lua_rawset(l, -3);
        }
    }
}

/// The shape of a registration's options form, if it has one.
pub fn options_shape(r: &Registration) -> Option<Shape> {
    r.options.as_deref().map(|form| Shape::of(form, ""))
}
