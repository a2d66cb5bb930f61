//! All of the crate's `unsafe`: raw `mlua::ffi` calls and the module's
//! entry point. Everywhere else `unsafe` is denied (`#![deny(unsafe_code)]`
//! in `lib.rs`).
//!
//! Why raw: an mlua `Table::get` costs about 15 times a Lua field read, and
//! each `raw_set`/`create_table` is a protected call of its own; a push
//! hands Lua a util.stanza object of about ten elements and an event table,
//! and every message is read for what decisions need. Here each batch is
//! one protected call (`Lua::exec_raw`):
//! - [`write`]: stanzas, registrations and field values pushed onto the stack;
//! - [`read`]: what push decisions need, read off a stanza (and an answer's
//!   attributes, the sessions' push identifiers);
//! - [`events`]: the `cloud_notify/push` event payloads of a batch of pushes;
//! - [`quick`]: `might_push` as a C function, not a method call;
//! - [`tree`]: an element (a client's `<enable/>`, a kept stanza) read
//!   into a minidom element.
//!
//! The rules every function here keeps:
//! - what a closure touches is borrowed or plain data (integers, pointers
//!   into Lua strings the caller keeps alive): a Lua error leaving it by
//!   `longjmp` (out of memory) skips no destructor;
//! - the stack slots of a protected call are named constants;
//! - each `push_*` function leaves exactly what its documentation says on
//!   the stack, which [`Balance`] checks in debug builds.
#![allow(unsafe_code)]

pub mod alloc;
pub mod events;
pub mod quick;
pub mod read;
pub mod tree;
pub mod write;

use mlua::ffi;
#[cfg(feature = "module")]
use mlua::{Lua, Result, Table};
use std::ffi::c_int;

/// The stack height when a raw push started, to check (debug builds) that
/// it left exactly the values it says it pushes.
#[derive(Clone, Copy)]
pub struct Balance(c_int);

impl Balance {
    /// Notes the stack height.
    ///
    /// # Safety
    /// `l` is a valid state.
    #[inline]
    pub unsafe fn start(l: *mut ffi::lua_State) -> Balance {
        Balance(unsafe { ffi::lua_gettop(l) })
    }

    /// Asserts (debug builds) that `pushed` values were pushed since
    /// [`Balance::start`].
    ///
    /// # Safety
    /// `l` is the state given to [`Balance::start`].
    #[inline]
    pub unsafe fn check(self, l: *mut ffi::lua_State, pushed: c_int, what: &str) {
        debug_assert_eq!(
            unsafe { ffi::lua_gettop(l) },
            self.0 + pushed,
            "{what} left the Lua stack unbalanced"
        );
    }
}

/// `luaopen_cloud_notify`: what `package.loadlib` calls (see
/// [`super::exports`] for what it returns).
///
/// `skip_memory_check`: Prosody's Lua state is not mlua's, so mlua can't
/// see whether its allocator has a limit, and by default wraps each of its
/// own allocations (tables, strings, userdata) in a protected call so that
/// a failure comes back as `Err`. With the check skipped those protected
/// calls go (a push makes dozens of allocations); what is given up: if an
/// allocation fails, the Lua error raised by the allocator jumps over the
/// Rust frames of that mlua call instead of unwinding them, leaking what
/// they own (Prosody's default allocator only fails when the process is
/// out of memory, and the error then reaches the handler's `pcall` as
/// `not enough memory`). The raw functions here are written for exactly
/// that case (nothing owned inside a protected call).
#[cfg(feature = "module")]
#[mlua::lua_module(skip_memory_check)]
fn cloud_notify(lua: &Lua) -> Result<Table> {
    super::exports(lua)
}
