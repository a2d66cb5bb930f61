//! Writing Lua values with raw `mlua::ffi` calls, inside the caller's
//! protected call: util.stanza objects from minidom elements (the publish
//! IQ, `push_info`'s options form, from its packed [`Form`]), registration
//! records, field values.
//!
//! What needs allocating (an element's namespace, which minidom hands out
//! as a new `String`) is collected beforehand into a [`Shape`], so nothing
//! here owns memory while Lua may raise an error.

use super::Balance;
use crate::bounded::{Slot, Slots};
use crate::fields::{Field, Key};
use crate::form::{Form, Item, Items};
use crate::notification::{write_publish, TreeWriter};
use crate::registration::Registration;
use minidom::rxml::Namespace;
use minidom::Element;
use mlua::{ffi, Lua, Result, Table};
use std::ffi::{c_int, CStr};

/// Deepest element built (what is built comes from the core, or from a
/// store form already bounded when it was read).
const MAX_DEPTH: usize = 64;

/// The `xmlns` to write for each element of a tree, in document order
/// (`None` where it is inherited), prepared outside the protected call.
pub struct Shape(Vec<Option<String>>);

impl Shape {
    /// The shape of `elem`, whose parent is in `parent_ns`.
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

/// Pushes the bytes `s` onto the stack (a Lua string need not be UTF-8).
///
/// # Safety
/// `l` is a valid state with room for one more value.
unsafe fn push_bytes(l: *mut ffi::lua_State, s: &[u8]) {
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

/// An element being written: its table's stack index and child counts.
/// Only integers, so nothing is lost if a Lua error jumps over it.
#[derive(Clone, Copy)]
struct Open {
    t: c_int,
    nodes: ffi::lua_Integer,
    tags: ffi::lua_Integer,
    mt: c_int,
}

/// Starts an element: pushes its table and, on top of it, its `attr`
/// table (with `xmlns` if given), for the caller to fill.
///
/// # Safety
/// `l` is valid inside a protected call.
unsafe fn open(
    l: *mut ffi::lua_State,
    name: &str,
    xmlns: Option<&str>,
    nodes: usize,
    attrs: usize,
    mt: c_int,
) -> Open {
    unsafe {
        ffi::luaL_checkstack(l, 6, c"stanza too deep".as_ptr());
        ffi::lua_createtable(l, nodes as c_int, 3);
        let t = ffi::lua_gettop(l);
        set_str(l, c"name", name);
        ffi::lua_createtable(l, 0, (attrs + usize::from(xmlns.is_some())) as c_int);
        if let Some(ns) = xmlns {
            set_str(l, c"xmlns", ns);
        }
        Open {
            t,
            nodes: 0,
            tags: 0,
            mt,
        }
    }
}

/// Ends the attributes (the table on top) and, for a stanza object,
/// pushes the `tags` table.
///
/// # Safety
/// Right after [`open`] and the attributes.
unsafe fn attrs_done(l: *mut ffi::lua_State, o: &Open, elements: usize) {
    unsafe {
        ffi::lua_setfield(l, o.t, c"attr".as_ptr());
        if o.mt != 0 {
            ffi::lua_createtable(l, elements as c_int, 0);
        }
    }
}

/// Pops the child element on top of the stack into `o`.
///
/// # Safety
/// The child was pushed after [`attrs_done`] for `o`.
unsafe fn add_element(l: *mut ffi::lua_State, o: &mut Open) {
    unsafe {
        if o.mt != 0 {
            o.tags += 1;
            ffi::lua_pushvalue(l, -1);
            ffi::lua_rawseti(l, o.t + 1, o.tags);
        }
        o.nodes += 1;
        ffi::lua_rawseti(l, o.t, o.nodes);
    }
}

/// Ends `o`, leaving it on top of the stack.
///
/// # Safety
/// All of `o`'s children were added.
unsafe fn close(l: *mut ffi::lua_State, o: Open) {
    unsafe {
        if o.mt != 0 {
            ffi::lua_setfield(l, o.t, c"tags".as_ptr());
            ffi::lua_pushvalue(l, o.mt);
            ffi::lua_setmetatable(l, o.t);
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
        let balance = Balance::start(l);
        let xmlns = shape.0.get(*next).and_then(|ns| ns.as_deref());
        *next += 1;
        let attrs = elem.attrs();
        let mut o = open(l, elem.name(), xmlns, elem.nodes().len(), attrs.len(), mt);
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
        attrs_done(l, &o, elem.children().count());
        for node in elem.nodes() {
            if let Some(child) = node.as_element() {
                if depth < MAX_DEPTH {
                    push_element(l, child, shape, next, mt, depth + 1);
                    add_element(l, &mut o);
                }
            } else if let Some(text) = node.as_text() {
                push_str(l, text);
                o.nodes += 1;
                ffi::lua_rawseti(l, o.t, o.nodes);
            }
        }
        close(l, o);
        balance.check(l, 1, "push_element");
    }
}

/// Pushes a packed form as a util.stanza object whose metatable is at
/// absolute stack index `mt`, or with `mt == 0` in the preserialized form
/// (as [`push_element`]). Its bytes are borrowed: nothing here owns memory
/// while Lua may raise.
///
/// # Safety
/// `l` is a valid state inside a protected call.
pub unsafe fn push_form(l: *mut ffi::lua_State, form: &Form, mt: c_int) {
    unsafe {
        let balance = Balance::start(l);
        push_form_element(l, &mut form.items(), mt);
        balance.check(l, 1, "push_form");
    }
}

/// Pushes the element starting at `items` (nil if none does), leaving
/// `items` past it.
///
/// # Safety
/// As [`push_form`]; the depth is the form's, bounded when it was packed.
unsafe fn push_form_element(l: *mut ffi::lua_State, items: &mut Items<'_>, mt: c_int) {
    unsafe {
        let Some((name, xmlns, attrs, children)) = items.start() else {
            ffi::lua_pushnil(l);
            return;
        };
        let mut o = open(l, name, xmlns, children, attrs, mt);
        for _ in 0..attrs {
            if let Some(Item::Attr(k, v)) = items.next() {
                push_str(l, k);
                push_str(l, v);
                ffi::lua_rawset(l, -3);
            }
        }
        attrs_done(l, &o, children);
        for _ in 0..children {
            match items.peek() {
                Some(Item::Text(text)) => {
                    items.next();
                    push_str(l, text);
                    o.nodes += 1;
                    ffi::lua_rawseti(l, o.t, o.nodes);
                }
                Some(Item::Start { .. }) => {
                    push_form_element(l, items, mt);
                    add_element(l, &mut o);
                }
                _ => break,
            }
        }
        close(l, o);
    }
}

/// Payload tables kept for reuse: slots `2k+1` (payload number) and `2k+2`
/// (the table), k = number mod 8. Bounded by construction.
const PAYLOAD_SLOTS: u64 = 8;

fn payload_slot(id: u64) -> ffi::lua_Integer {
    (id % PAYLOAD_SLOTS) as ffi::lua_Integer * 2
}

/// Pushes the cached payload table `id` from the cache at `cache`, or
/// pushes nothing and returns false.
///
/// # Safety
/// `l` is valid inside a protected call; `cache` is a table's absolute index.
pub unsafe fn push_cached_payload(l: *mut ffi::lua_State, cache: c_int, id: u64) -> bool {
    unsafe {
        let slot = payload_slot(id);
        ffi::lua_rawgeti(l, cache, slot + 1);
        let hit =
            ffi::lua_isinteger(l, -1) != 0 && ffi::lua_tointeger(l, -1) == id as ffi::lua_Integer;
        ffi::lua_settop(l, -2);
        if hit {
            ffi::lua_rawgeti(l, cache, slot + 2);
        }
        hit
    }
}

/// Where a publish IQ's payload comes from.
#[derive(Clone, Copy)]
pub enum PayloadFrom {
    /// Built for this push alone.
    Built,
    /// Shared with other pushes of the same payload, through the cache
    /// table at this stack index (only while nothing hooks
    /// `cloud_notify/push`, which could change one push's payload).
    Cache(c_int),
}

/// `<publish-options>` elements shared between pushes to registrations
/// with the same form (the same registration pushed again, or the many
/// registrations of a client whose form is the same for everyone), only
/// while nothing hooks `cloud_notify/push` (as payloads): the Lua table at
/// stack index `table` holds, at slot k, the form's packed bytes at
/// `2k+1` and the element at `2k+2`; `slots` says which form is in which
/// slot, at most [`OPTION_SLOTS`] of them.
pub struct OptionsCache<'a> {
    /// The cache table's absolute stack index.
    pub table: c_int,
    /// Which form is where.
    pub slots: &'a mut Slots,
}

/// How many `<publish-options>` elements are kept for reuse: the last
/// forms to enter the cache, first in, first out (about 2 KB of Lua heap
/// each).
pub const OPTION_SLOTS: usize = 256;

/// The key of a form in the cache (a hash of its packed bytes; the bytes
/// themselves are compared before an element is reused).
fn form_key(form: &Form) -> u64 {
    use std::hash::{DefaultHasher, Hasher};
    let mut h = DefaultHasher::new();
    h.write(form.packed());
    h.finish()
}

/// Pushes a push's publish IQ as a util.stanza object: the core's
/// [`write_publish`] written with [`RawWriter`] (the core's tests check
/// what it writes through its own writer; `check_push`, which every
/// spec push and the binding fuzzer go through, checks that both agree,
/// element for element).
/// `to`: `(host, push id, registration)`; `payload`: the element (none
/// when cached), its number, its shape; `slots`: the absolute stack
/// indices of util.stanza's metatable and of the slot that receives the
/// payload table (the `<notification/>`, also the IQ's descendant).
///
/// # Safety
/// `l` is valid inside a protected call; the shape was made from the
/// payload; both slots are absolute indices below the top.
pub unsafe fn push_publish(
    l: *mut ffi::lua_State,
    to: (&str, &str, &Registration),
    payload: (Option<&Element>, u64, Option<&Shape>),
    from: PayloadFrom,
    options: Option<OptionsCache<'_>>,
    slots: (c_int, c_int),
) {
    unsafe {
        let balance = Balance::start(l);
        let (host, id, reg) = to;
        let (mt, payload_out) = slots;
        let mut w = RawWriter {
            l,
            mt,
            open: [None; PUBLISH_DEPTH],
            depth: 0,
            payload: (payload, from, payload_out),
            options,
        };
        write_publish(&mut w, host, id, reg);
        balance.check(l, 1, "push_publish");
    }
}

/// Elements a publish IQ nests (iq, pubsub, publish, item).
const PUBLISH_DEPTH: usize = 4;

/// [`TreeWriter`] of util.stanza objects, on the Lua stack: what it holds
/// is plain data (stack indices, references), so nothing is lost if a Lua
/// error jumps over it. Made only by [`push_publish`], inside its
/// protected call.
struct RawWriter<'a> {
    l: *mut ffi::lua_State,
    mt: c_int,
    open: [Option<Open>; PUBLISH_DEPTH],
    depth: usize,
    /// The payload, where it comes from, and the slot that receives it.
    payload: (
        (Option<&'a Element>, u64, Option<&'a Shape>),
        PayloadFrom,
        c_int,
    ),
    /// Where `<publish-options>` elements are shared, if they are.
    options: Option<OptionsCache<'a>>,
}

impl RawWriter<'_> {
    /// Adds the value on top of the stack to the open element.
    ///
    /// # Safety
    /// Inside [`push_publish`]'s protected call, after an element opened.
    unsafe fn add(&mut self) {
        if let Some(Some(parent)) = self.depth.checked_sub(1).map(|i| &mut self.open[i]) {
            unsafe { add_element(self.l, parent) };
        }
    }
}

impl TreeWriter for RawWriter<'_> {
    fn open(
        &mut self,
        name: &'static str,
        ns: Option<&'static str>,
        attrs: &[(&'static str, Option<&str>)],
        children: usize,
    ) {
        let l = self.l;
        // SAFETY: a RawWriter is made only inside push_publish's protected call.
        unsafe {
            let o = open(l, name, ns, children, attrs.len(), self.mt);
            for &(key, value) in attrs {
                if let Some(value) = value {
                    push_str(l, key);
                    push_str(l, value);
                    ffi::lua_rawset(l, -3);
                }
            }
            attrs_done(l, &o, children);
            if self.depth < PUBLISH_DEPTH {
                self.open[self.depth] = Some(o);
                self.depth += 1;
            }
        }
    }

    fn payload(&mut self) {
        let (payload, from, out) = self.payload;
        // SAFETY: as in `open`.
        unsafe {
            push_payload(self.l, payload, from, self.mt);
            ffi::lua_pushvalue(self.l, -1);
            ffi::lua_replace(self.l, out);
            self.add();
        }
    }

    fn options(&mut self, form: &Form) {
        let l = self.l;
        // SAFETY: as in `open`; the cache table is at its absolute index.
        unsafe {
            if let Some(cache) = self.options.as_mut() {
                push_cached_options(l, form, cache, self.mt);
            } else {
                push_options(l, form, self.mt);
            }
            self.add();
        }
    }

    fn close(&mut self) {
        let Some(o) = self.depth.checked_sub(1).and_then(|i| self.open[i].take()) else {
            return;
        };
        self.depth -= 1;
        // SAFETY: as in `open`.
        unsafe {
            close(self.l, o);
            if self.depth > 0 {
                self.add();
            }
        }
    }
}

/// Pushes `<publish-options>` with `form` in it.
///
/// # Safety
/// As [`push_publish`].
unsafe fn push_options(l: *mut ffi::lua_State, form: &Form, mt: c_int) {
    unsafe {
        let mut o = open(l, "publish-options", None, 1, 0, mt);
        attrs_done(l, &o, 1);
        push_form(l, form, mt);
        add_element(l, &mut o);
        close(l, o);
    }
}

/// Pushes `<publish-options>` with `form` in it: the element in the cache
/// when it holds this form, else a new one, which the cache keeps.
///
/// # Safety
/// As [`push_publish`]; `cache.table` is an absolute stack index.
unsafe fn push_cached_options(
    l: *mut ffi::lua_State,
    form: &Form,
    cache: &mut OptionsCache<'_>,
    mt: c_int,
) {
    unsafe {
        let balance = Balance::start(l);
        let slot = cache.slots.slot(form_key(form));
        let (Slot::Kept(n) | Slot::New(n)) = slot;
        let at = (n * 2) as ffi::lua_Integer;
        if let Slot::Kept(_) = slot {
            // (keys are hashes: the bytes are compared)
            ffi::lua_rawgeti(l, cache.table, at + 1);
            let mut len = 0;
            let p = ffi::lua_tolstring(l, -1, &mut len);
            let same =
                !p.is_null() && std::slice::from_raw_parts(p.cast::<u8>(), len) == form.packed();
            ffi::lua_settop(l, -2);
            if same {
                ffi::lua_rawgeti(l, cache.table, at + 2);
                balance.check(l, 1, "push_cached_options");
                return;
            }
        }
        // (the element first: if storing the bytes fails, the slot holds
        // other bytes, which no form matches but its own)
        push_options(l, form, mt);
        ffi::lua_pushvalue(l, -1);
        ffi::lua_rawseti(l, cache.table, at + 2);
        push_bytes(l, form.packed());
        ffi::lua_rawseti(l, cache.table, at + 1);
        balance.check(l, 1, "push_cached_options");
    }
}

/// Pushes a publish's `<notification/>` payload: from the cache when
/// `from` says so and it is there, else written from `payload` (and
/// cached, if sharing).
///
/// # Safety
/// As [`push_publish`].
unsafe fn push_payload(
    l: *mut ffi::lua_State,
    payload: (Option<&Element>, u64, Option<&Shape>),
    from: PayloadFrom,
    mt: c_int,
) {
    unsafe {
        let balance = Balance::start(l);
        let (element, payload_id, shape) = payload;
        let cached = match from {
            PayloadFrom::Cache(cache) => push_cached_payload(l, cache, payload_id),
            PayloadFrom::Built => false,
        };
        if !cached {
            match (element, shape) {
                (Some(element), Some(shape)) => push_element(l, element, shape, &mut 0, mt, 0),
                // not reached: no payload only for one in the cache
                _ => ffi::lua_pushnil(l),
            }
            if let PayloadFrom::Cache(cache) = from {
                let slot = payload_slot(payload_id);
                ffi::lua_pushinteger(l, payload_id as ffi::lua_Integer);
                ffi::lua_rawseti(l, cache, slot + 1);
                ffi::lua_pushvalue(l, -1);
                ffi::lua_rawseti(l, cache, slot + 2);
            }
        }
        balance.check(l, 1, "push_payload");
    }
}

/// Pushes a registration as the record the store and event handlers see
/// (`push_info`).
///
/// # Safety
/// `l` is valid inside a protected call.
pub unsafe fn push_registration(l: *mut ffi::lua_State, r: &Registration) {
    unsafe {
        let balance = Balance::start(l);
        ffi::luaL_checkstack(l, 4, c"registration".as_ptr());
        ffi::lua_createtable(l, 0, 8);
        set_str(l, c"jid", r.jid());
        set_opt(l, c"node", r.node());
        set_opt(l, c"include_payload", r.include_payload());
        if let Some(form) = &r.options {
            // Preserialized, with xmlns on the root, as util.stanza.preserialize leaves it.
            push_form(l, form, 0);
            ffi::lua_setfield(l, -2, c"options".as_ptr());
        }
        push_number(l, r.timestamp);
        ffi::lua_setfield(l, -2, c"timestamp".as_ptr());
        set_opt(l, c"client_id", r.client_id());
        set_opt(l, c"resource", r.resource());
        set_opt(l, c"language", r.language());
        if r.errors > 0 {
            ffi::lua_pushinteger(l, ffi::lua_Integer::from(r.errors));
            ffi::lua_setfield(l, -2, c"error_count".as_ptr());
        }
        // (unread counts are not in the record: they are kept in the
        // counts record, see crate::counts::Kept)
        for (k, v) in &r.extra {
            push_str(l, k);
            push_field(l, v);
            ffi::lua_rawset(l, -3);
        }
        balance.check(l, 1, "push_registration");
    }
}

/// Pushes another module's field value (tables rebuilt to their depth,
/// which [`crate::fields`] bounds).
///
/// # Safety
/// `l` is valid inside a protected call.
unsafe fn push_field(l: *mut ffi::lua_State, v: &Field) {
    unsafe {
        match v {
            Field::Str(s) => push_bytes(l, s),
            Field::Int(i) => ffi::lua_pushinteger(l, *i),
            Field::Num(n) => ffi::lua_pushnumber(l, *n),
            Field::Bool(b) => ffi::lua_pushboolean(l, c_int::from(*b)),
            Field::Table(pairs) => {
                ffi::luaL_checkstack(l, 3, c"registration field".as_ptr());
                ffi::lua_createtable(l, 0, c_int::try_from(pairs.len()).unwrap_or(0));
                for (k, v) in pairs {
                    match k {
                        Key::Str(s) => push_bytes(l, s),
                        Key::Int(i) => ffi::lua_pushinteger(l, *i),
                    }
                    push_field(l, v);
                    ffi::lua_rawset(l, -3);
                }
            }
        }
    }
}

/// A registration as the record the store and event handlers see
/// (`push_info`), as a table.
pub fn registration_table(lua: &Lua, r: &Registration) -> Result<Table> {
    // SAFETY: the closure only borrows; it leaves the record alone on the stack.
    unsafe { lua.exec_raw((), |l| push_registration(l, r)) }
}

/// `elem` (whose parent is in `parent_ns`) as a util.stanza object with
/// the metatable `stanza_mt`.
pub fn element_stanza(
    lua: &Lua,
    elem: &Element,
    parent_ns: &str,
    stanza_mt: &Table,
) -> Result<Table> {
    let shape = Shape::of(elem, parent_ns);
    // SAFETY: the closure only borrows; the metatable is at slot 1 and
    // the stanza is left alone on top.
    unsafe {
        lua.exec_raw(stanza_mt.clone(), |l| {
            push_element(l, elem, &shape, &mut 0, 1, 0);
            ffi::lua_replace(l, 1);
            ffi::lua_settop(l, 1);
        })
    }
}
