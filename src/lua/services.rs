//! Per app server: what the metrics and the admin shell show
//! ([`crate::service_stats`]).
//!
//! Lua API:
//!
//! | method | returns |
//! |---|---|
//! | `core:service_changes()` | `{ { service, sent, delivered, wait, errors, timeouts, route, rtt_sum, rtt_count, conditions = { { type, condition, n }, … } }, … }`: what changed since the last call, by app server (`"other"` for those not tracked by name) |
//! | `core:service_totals()` | the same fields since the module loaded (no `conditions`), with `registrations` (held in memory) |

use super::object::Core;
use crate::service_stats::Tally;
use mlua::{Lua, Result, Table, UserDataMethods};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method_mut("service_changes", service_changes);
    m.add_method("service_totals", service_totals);
}

/// One app server's tally as a table.
fn tally_table(lua: &Lua, service: &str, t: &Tally) -> Result<Table> {
    let out = lua.create_table_with_capacity(0, 9)?;
    out.raw_set("service", service)?;
    out.raw_set("sent", t.sent)?;
    out.raw_set("delivered", t.delivered)?;
    out.raw_set("wait", t.wait)?;
    out.raw_set("errors", t.errors)?;
    out.raw_set("timeouts", t.timeouts)?;
    out.raw_set("route", t.route)?;
    out.raw_set("rtt_sum", t.rtt_sum)?;
    out.raw_set("rtt_count", t.rtt_count)?;
    Ok(out)
}

fn service_changes(lua: &Lua, this: &mut Core, (): ()) -> Result<Table> {
    let changes = this.service.service_changes();
    let out = lua.create_table_with_capacity(changes.len(), 0)?;
    for (service, tally) in &changes {
        let t = tally_table(lua, service, tally)?;
        let conditions = lua.create_table_with_capacity(tally.conditions.len(), 0)?;
        for &(type_, condition, n) in &tally.conditions {
            let c = lua.create_table_with_capacity(3, 0)?;
            c.raw_set(1, type_)?;
            c.raw_set(2, condition)?;
            c.raw_set(3, n)?;
            conditions.raw_push(c)?;
        }
        t.raw_set("conditions", conditions)?;
        out.raw_push(t)?;
    }
    Ok(out)
}

fn service_totals(lua: &Lua, this: &Core, (): ()) -> Result<Table> {
    let totals = this.service.service_totals();
    let out = lua.create_table_with_capacity(totals.len(), 0)?;
    for (service, tally, registrations) in totals {
        let t = tally_table(lua, service, tally)?;
        t.raw_set("registrations", registrations)?;
        out.raw_push(t)?;
    }
    Ok(out)
}
