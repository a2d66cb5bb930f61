//! The `cloud_notify/push` event payloads of a batch of pushes, written in
//! one protected call.
//!
//! Each event is the table the reference module fires: `notification_stanza`
//! (the publish IQ, a util.stanza object), `notification_payload` (its
//! `<notification/>`), `original_stanza`, `username`, `push_info` (the
//! registration record), `push_summary` (the form's values), `important`,
//! and ours: `wakes`, `push_kind`, `push_id`, `push_identifier`. While
//! nothing hooks `cloud_notify/push`, the shim alone reads the event:
//! `original_stanza`, `push_info` and `push_summary` are left out.

use super::write::{
    push_cached_payload, push_element, push_publish, push_registration, set_bool, set_opt, set_str,
    OptionsCache, PayloadFrom, Shape,
};
use super::Balance;
use crate::bounded::Slots;
use crate::notification::Summary;
use crate::service::PushJob;
use minidom::Element;
use mlua::{ffi, Function, Lua, Result, Table, Value};
use std::ffi::c_int;

/// Stack slots of [`shared_payloads`]' protected call.
mod ask {
    use std::ffi::c_int;
    /// The payload cache table.
    pub const PAYLOADS: c_int = 1;
    /// The host's `events.get_handlers`.
    pub const GET_HANDLERS: c_int = 2;
    /// What it answered for `cloud_notify/push` (the handlers, or nil).
    pub const HANDLERS: c_int = 3;
}

/// Stack slots of [`append`]'s protected call.
mod slot {
    use std::ffi::c_int;
    /// The event list appended to.
    pub const OUT: c_int = 1;
    /// util.stanza's metatable.
    pub const STANZA_MT: c_int = 2;
    /// The stanza the pushes are about (or nil).
    pub const ORIGINAL: c_int = 3;
    /// The payload cache table.
    pub const PAYLOADS: c_int = 4;
    /// The `<publish-options>` cache table.
    pub const OPTIONS: c_int = 5;
}

/// Whether pushes may share payload tables now (nothing hooks
/// `cloud_notify/push`, which could change one push's payload), and if so,
/// which jobs' payloads are in the cache (`cached`, one per job).
pub fn shared_payloads(
    lua: &Lua,
    payloads: &Table,
    get_handlers: &Function,
    jobs: &[PushJob],
    cached: &mut [bool],
) -> Result<bool> {
    let mut share = false;
    let args = (payloads.clone(), get_handlers.clone());
    // SAFETY: the closure writes plain data only (`share`, `cached`).
    unsafe {
        lua.exec_raw::<()>(args, |l| {
            ffi::lua_pushvalue(l, ask::GET_HANDLERS);
            ffi::lua_pushstring(l, c"cloud_notify/push".as_ptr());
            ffi::lua_call(l, 1, 1);
            if ffi::lua_type(l, ask::HANDLERS) != ffi::LUA_TNIL {
                return;
            }
            share = true;
            for (job, hit) in jobs.iter().zip(cached.iter_mut()) {
                *hit = push_cached_payload(l, ask::PAYLOADS, job.payload_id);
                ffi::lua_settop(l, ask::HANDLERS);
            }
        })?;
    }
    Ok(share)
}

/// A batch of pushes to one user, with what was prepared for it outside
/// the protected call.
pub struct Batch<'a> {
    /// The host the publishes come from.
    pub host: &'a str,
    /// The user they are for (`username`).
    pub user: &'a str,
    /// The pushes.
    pub jobs: &'a [PushJob],
    /// Per job, its payload when it is not in the cache.
    pub payloads: &'a [Option<&'a Element>],
    /// Per job, the shape of its payload (none if cached).
    pub shapes: &'a [Option<Shape>],
    /// Per job, the shape of its own `original_stanza` (`job.origin`), if any.
    pub origins: &'a [Option<Shape>],
    /// Payload tables are shared through the cache (see [`shared_payloads`]).
    pub share: bool,
}

/// The stack values [`append`] works with.
pub struct Tables<'a> {
    /// The event list appended to.
    pub out: &'a Table,
    /// util.stanza's metatable.
    pub stanza_mt: &'a Table,
    /// The stanza the pushes are about (`original_stanza`), or nil.
    pub original: &'a Value,
    /// The payload cache.
    pub payloads: &'a Table,
    /// The `<publish-options>` cache, and which form is where in it.
    pub options: (&'a Table, &'a mut Slots),
}

/// Appends the event of each job of `batch` to `tables.out`, in one
/// protected call.
pub fn append(lua: &Lua, tables: Tables<'_>, batch: &Batch<'_>) -> Result<()> {
    let args = (
        tables.out.clone(),
        tables.stanza_mt.clone(),
        tables.original.clone(),
        tables.payloads.clone(),
        tables.options.0.clone(),
    );
    let slots = tables.options.1;
    // SAFETY: the closure only borrows (`batch`); the stack holds the
    // values of `slot`.
    unsafe {
        lua.exec_raw::<()>(args, |l| {
            let mut n = ffi::lua_rawlen(l, slot::OUT) as ffi::lua_Integer;
            let jobs = batch.jobs.iter().zip(batch.payloads).zip(batch.shapes);
            for (i, ((job, payload), shapes)) in jobs.enumerate() {
                let origin = batch.origins.get(i).and_then(Option::as_ref);
                let options = batch.share.then_some(OptionsCache {
                    table: slot::OPTIONS,
                    slots: &mut *slots,
                });
                push_event(l, batch, (job, *payload), (shapes, origin), options);
                n += 1;
                ffi::lua_rawseti(l, slot::OUT, n);
            }
            ffi::lua_settop(l, 0);
        })
    }
}

/// Pushes one push's event table.
///
/// # Safety
/// `l` is valid inside [`append`]'s protected call; `shapes` were made
/// for `job`.
unsafe fn push_event(
    l: *mut ffi::lua_State,
    batch: &Batch<'_>,
    (job, payload): (&PushJob, Option<&Element>),
    (shape, origin): (&Option<Shape>, Option<&Shape>),
    options: Option<OptionsCache<'_>>,
) {
    unsafe {
        let balance = Balance::start(l);
        ffi::luaL_checkstack(l, 8, c"push event".as_ptr());
        ffi::lua_createtable(l, 0, 11);
        let event: c_int = ffi::lua_gettop(l);
        ffi::lua_pushnil(l); // event + 1: the payload, once written
        let from = match batch.share {
            true => PayloadFrom::Cache(slot::PAYLOADS),
            false => PayloadFrom::Built,
        };
        let payload = (payload, job.payload_id, shape.as_ref());
        push_publish(
            l,
            (batch.host, &job.id, &job.registration),
            payload,
            from,
            options,
            (slot::STANZA_MT, event + 1),
        );
        ffi::lua_setfield(l, event, c"notification_stanza".as_ptr());
        ffi::lua_setfield(l, event, c"notification_payload".as_ptr());
        // What only handlers read: while none hooks cloud_notify/push
        // (`share`), the event is the shim's alone, which reads none of it
        // (the registration record alone is about a tenth of a push).
        if !batch.share {
            match (&job.origin, origin) {
                (Some(kept), Some(shape)) => {
                    push_element(l, kept.element(), shape, &mut 0, slot::STANZA_MT, 0);
                }
                _ => ffi::lua_pushvalue(l, slot::ORIGINAL),
            }
            ffi::lua_setfield(l, event, c"original_stanza".as_ptr());
            push_registration(l, &job.registration);
            ffi::lua_setfield(l, event, c"push_info".as_ptr());
            push_summary(l, &job.summary);
            ffi::lua_setfield(l, event, c"push_summary".as_ptr());
        }
        set_str(l, c"username", batch.user);
        set_bool(l, c"important", job.summary.important());
        set_bool(l, c"wakes", job.wakes);
        set_str(l, c"push_kind", job.kind.as_str());
        set_str(l, c"push_id", &job.id);
        set_str(l, c"push_identifier", job.registration.identifier());
        balance.check(l, 1, "push_event");
    }
}

/// Pushes a push's summary (`push_summary`: the form's values).
///
/// # Safety
/// `l` is valid inside a protected call, with room for three values.
unsafe fn push_summary(l: *mut ffi::lua_State, s: &Summary) {
    unsafe {
        let balance = Balance::start(l);
        ffi::lua_createtable(l, 0, 4);
        ffi::lua_pushinteger(l, ffi::lua_Integer::from(s.message_count));
        ffi::lua_tolstring(l, -1, std::ptr::null_mut());
        ffi::lua_setfield(l, -2, c"message-count".as_ptr());
        if let Some(n) = s.pending_subscriptions {
            ffi::lua_pushinteger(l, ffi::lua_Integer::from(n));
            ffi::lua_tolstring(l, -1, std::ptr::null_mut());
            ffi::lua_setfield(l, -2, c"pending-subscription-count".as_ptr());
        }
        set_opt(l, c"last-message-sender", s.sender.as_deref());
        set_opt(l, c"last-message-body", s.body.as_deref());
        balance.check(l, 1, "push_summary");
    }
}
