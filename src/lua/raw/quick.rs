//! `might_push` without a method call: a C function over the host's
//! shared sets of users with registrations ([`crate::known::Shared`]).
//!
//! Every message asks whether its sender and its recipient might have
//! push registrations, and on most servers most do not. Asked as an mlua
//! method (`core:might_push(user)`), the question cost about 1,700
//! instructions (callgrind, W1), of which the core's answer was about 500:
//! the rest was the userdata's type check and borrow, the argument's
//! conversion and the error handling around the call; this one costs
//! about 230: the keyed digest of the name's bytes about 130 (one
//! SipHash write, with no UTF-8 check: the whole call was about 400 with
//! the check and a digest of a one-name slice), the two sets' lookups
//! about 55, the call's checks about 50. It answers from the
//! sets alone, as [`crate::known::Sets::quick_bytes`] does: `true` or
//! `false` when both sets are complete (the answer `core:might_push` gives;
//! `false` also for a name that is not UTF-8, which the method refuses),
//! `nil` when they cannot tell (a store that could not list its users, the
//! sets borrowed, an argument that is not a string): then the shim asks
//! `core:might_push`.
//!
//! It never raises and allocates nothing, so a handler may ask it before
//! its protected call. Its one upvalue is a full userdata holding a
//! strong reference to the sets, released by the userdata's `__gc` (which
//! also clears the pointer, so that a call after the finaliser, from an
//! object resurrected by another finaliser, answers `nil`). The
//! userdata's metatable is hidden (`__metatable`) and checked by `__gc`.

use super::Balance;
use crate::known::Sets;
use mlua::{ffi, Function, Lua, Result};
use std::cell::RefCell;
use std::ffi::c_int;
use std::rc::Rc;

/// What the upvalue userdata holds: the sets (a pointer from
/// `Rc::into_raw`), null once finalised.
#[repr(C)]
struct Held {
    sets: *const RefCell<Sets>,
}

/// The function's answer for the string at `arg` (see the module docs).
///
/// # Safety
/// `l` is a valid state whose running C function has the [`Held`]
/// userdata as its first upvalue.
unsafe fn answer(l: *mut ffi::lua_State, arg: c_int) -> Option<bool> {
    let held = unsafe { ffi::lua_touserdata(l, ffi::lua_upvalueindex(1)) } as *const Held;
    if held.is_null() || unsafe { ffi::lua_type(l, arg) } != ffi::LUA_TSTRING {
        return None;
    }
    // SAFETY: the userdata is a `Held` (made by `function`), alive as the
    // upvalue; its pointer, when not null, holds a strong reference.
    let sets = unsafe { (*held).sets };
    if sets.is_null() {
        return None;
    }
    let mut len = 0;
    // (a string: no conversion, so no allocation)
    let ptr = unsafe { ffi::lua_tolstring(l, arg, &mut len) };
    // SAFETY: Lua keeps the string alive while it is on the stack.
    let user = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    // SAFETY: `sets` is alive (above); single-threaded, and nothing here
    // calls Lua while the borrow is held.
    let borrowed = unsafe { &*sets }.try_borrow().ok()?;
    borrowed.quick_bytes(user)
}

/// `might_push(user)`: `true`, `false` or `nil` (ask `core:might_push`).
unsafe extern "C-unwind" fn might_push(l: *mut ffi::lua_State) -> c_int {
    // (no panic may cross into Lua: should one happen, the core answers)
    let answer = std::panic::catch_unwind(|| unsafe { answer(l, 1) });
    match answer.ok().flatten() {
        Some(might) => unsafe { ffi::lua_pushboolean(l, c_int::from(might)) },
        None => unsafe { ffi::lua_pushnil(l) },
    }
    1
}

/// The registry name of the upvalue's metatable (`luaL_newmetatable`),
/// which `__gc` checks before it reads a `Held`.
const METATABLE: &std::ffi::CStr = c"cloud_notify.quick";

/// The upvalue's `__gc`: releases the reference and clears the pointer.
unsafe extern "C-unwind" fn release(l: *mut ffi::lua_State) -> c_int {
    // (only a `Held`: `__gc` could be called by hand on anything, through
    // the debug library, as `__metatable` hides the metatable otherwise)
    let held = unsafe { ffi::luaL_testudata(l, 1, METATABLE.as_ptr()) } as *mut Held;
    if !held.is_null() {
        // SAFETY: a `Held`, checked above.
        let sets = std::mem::replace(unsafe { &mut (*held).sets }, std::ptr::null());
        if !sets.is_null() {
            // SAFETY: from `Rc::into_raw` in `function`, released once
            // (the pointer is cleared before).
            drop(unsafe { Rc::from_raw(sets) });
        }
    }
    0
}

/// The function over `sets` (see the module docs).
pub fn function(lua: &Lua, sets: &Rc<RefCell<Sets>>) -> Result<Function> {
    // (the keyed digest's keys made now, not in the function: nothing
    // there may panic)
    crate::known::UserDigest::of("");
    // The reference the userdata will hold, as plain data: a Lua error
    // leaving the closure by `longjmp` (out of memory) skips no destructor.
    let reference = Rc::into_raw(Rc::clone(sets));
    let handed = std::cell::Cell::new(false);
    // SAFETY: the closure touches only plain data (a pointer, a borrowed
    // flag) and pushes one function; the userdata's metatable, with its
    // `__gc`, is set before the userdata takes the reference.
    let made = unsafe {
        lua.exec_raw((), |l| {
            let balance = Balance::start(l);
            let size = std::mem::size_of::<Held>();
            let held = ffi::lua_newuserdatauv(l, size, 0) as *mut Held;
            held.write(Held {
                sets: std::ptr::null(),
            });
            if ffi::luaL_newmetatable(l, METATABLE.as_ptr()) != 0 {
                ffi::lua_pushcfunction(l, release);
                ffi::lua_setfield(l, -2, c"__gc".as_ptr());
                ffi::lua_pushboolean(l, 0);
                ffi::lua_setfield(l, -2, c"__metatable".as_ptr());
            }
            ffi::lua_setmetatable(l, -2);
            (*held).sets = reference;
            handed.set(true);
            ffi::lua_pushcclosure(l, might_push, 1);
            balance.check(l, 1, "quick::function");
        })
    };
    if !handed.get() {
        // SAFETY: from `Rc::into_raw` above, never handed over.
        drop(unsafe { Rc::from_raw(reference) });
    }
    made
}
