//! The values the core object's methods return, as types: each converts
//! itself into what Lua gets (`IntoLuaMulti`), so that a method's return
//! convention is written once, here, and named in its signature.

use super::raw::write::registration_table;
use crate::error::StanzaError;
use crate::registration::Registration;
use crate::registry::Plan;
use mlua::{IntoLua, IntoLuaMulti, Lua, MultiValue, Result, Table, UserData, Value};

/// `values…` on success; `nil, type, condition, text` for a refusal (as
/// `st.error_reply` takes them).
pub enum Reply<T> {
    /// Done: what the method returns.
    Done(T),
    /// Refused with this error.
    Refused(StanzaError),
}

impl<T> From<std::result::Result<T, StanzaError>> for Reply<T> {
    fn from(r: std::result::Result<T, StanzaError>) -> Self {
        match r {
            Ok(v) => Reply::Done(v),
            Err(e) => Reply::Refused(e),
        }
    }
}

impl<T: IntoLuaMulti> IntoLuaMulti for Reply<T> {
    fn into_lua_multi(self, lua: &Lua) -> Result<MultiValue> {
        match self {
            Reply::Done(v) => v.into_lua_multi(lua),
            Reply::Refused(e) => (
                Value::Nil,
                e.type_,
                e.condition,
                e.text
                    .as_deref()
                    .map(|t| lua.create_string(t))
                    .transpose()?,
            )
                .into_lua_multi(lua),
        }
    }
}

/// A registration record (`push_info`), as a table.
pub struct Record<'a>(pub &'a Registration);

impl IntoLua for Record<'_> {
    fn into_lua(self, lua: &Lua) -> Result<Value> {
        registration_table(lua, self.0).map(Value::Table)
    }
}

/// `push_info, identifier, announce`: a registration an `<enable/>` asks
/// for, and whether anything hooks `cloud_notify/registration` (else the
/// shim fires no event, and makes no table for it: rule 119).
pub struct Enabled(pub Registration, pub bool);

impl IntoLuaMulti for Enabled {
    fn into_lua_multi(self, lua: &Lua) -> Result<MultiValue> {
        (Record(&self.0), self.0.identifier(), self.1).into_lua_multi(lua)
    }
}

/// A plan to write, as one table (nothing at all when there is no plan):
/// `services`, the user's table for the module's store (`{ [identifier]
/// = record }`; only when `xep`); `removed`, the set `{ [identifier] =
/// true }` of what it removes; `services2`, the user's table for
/// `mod_push2`'s store when their Push 2.0 registrations change (else
/// nil); `xep`, whether the module's own store changes (else its write is
/// skipped); `held`, the plan itself, which `core:commit(user, plan)`
/// adopts once written.
pub struct Planned(pub Option<Plan>);

/// The plan a [`Planned`] table carries, for `core:commit` to adopt (once).
pub struct HeldPlan(pub Option<Plan>);

impl UserData for HeldPlan {}

impl IntoLuaMulti for Planned {
    fn into_lua_multi(self, lua: &Lua) -> Result<MultiValue> {
        match self.0 {
            Some(plan) => plan_table(lua, plan, None),
            None => Ok(MultiValue::new()),
        }
    }
}

/// A [`Planned`] table for an enable; given an identifier and its
/// `push_info` (the registration's record exactly as the plan holds it),
/// the record in `services` is that table, as the reference stores the
/// table its session keeps (one table made, not two).
pub struct PlannedEnable(pub Plan, pub Option<(String, Table)>);

impl IntoLuaMulti for PlannedEnable {
    fn into_lua_multi(self, lua: &Lua) -> Result<MultiValue> {
        plan_table(lua, self.0, self.1)
    }
}

/// The table of a [`Planned`]; the record of `reuse`'s identifier is its
/// table.
fn plan_table(lua: &Lua, plan: Plan, reuse: Option<(String, Table)>) -> Result<MultiValue> {
    let t = lua.create_table_with_capacity(0, 5)?;
    // (the records only when the module's store is written)
    if plan.stores.xep0357 {
        let services = lua.create_table_with_capacity(0, plan.regs.len())?;
        for r in plan.regs.iter().filter(|r| r.push2.is_none()) {
            match &reuse {
                Some((id, table)) if id == r.identifier() => {
                    services.raw_set(r.identifier(), table)?
                }
                _ => services.raw_set(r.identifier(), Record(r))?,
            }
        }
        t.raw_set("services", services)?;
    }
    let removed = lua.create_table_with_capacity(0, plan.removed.len())?;
    for id in &plan.removed {
        removed.raw_set(id.as_str(), true)?;
    }
    if plan.stores.push2 {
        t.raw_set(
            "services2",
            super::push2::store_table(lua, plan.regs.iter())?,
        )?;
    }
    t.raw_set("removed", removed)?;
    t.raw_set("xep", plan.stores.xep0357)?;
    t.raw_set("held", lua.create_userdata(HeldPlan(Some(plan)))?)?;
    t.into_lua_multi(lua)
}

/// A [`Planned`] table for a `<disable/>` that removes something;
/// `{ removed = {} }` (nothing to write) for one that matches nothing.
pub enum Disabled {
    /// Write this plan.
    Plan(Plan),
    /// Nothing matched.
    Nothing,
}

impl IntoLuaMulti for Disabled {
    fn into_lua_multi(self, lua: &Lua) -> Result<MultiValue> {
        match self {
            Disabled::Plan(plan) => Planned(Some(plan)).into_lua_multi(lua),
            Disabled::Nothing => {
                let t = lua.create_table()?;
                t.raw_set("removed", lua.create_table()?)?;
                t.into_lua_multi(lua)
            }
        }
    }
}

/// The refusal for a plan asked of a user whose registrations are not in
/// memory (the shim loads them first; reaching this is a bug).
pub fn not_loaded() -> StanzaError {
    StanzaError::internal("Registrations not loaded")
}
