//! Registrations: loading a user's from the store, `<enable/>` and
//! `<disable/>`, the plans the shim writes and commits, an app server
//! ending one (XEP-0357 §7), a device coming back, the admin's view.
//!
//! Lua API (`core` is the core object, [`Core`]; `user` a local part for
//! mod_cloud_notify, a bare JID for mod_muc_cloud_notify):
//!
//! | method | returns |
//! |---|---|
//! | `core:loaded(user)` | whether the user's registrations are in memory |
//! | `core:load(user, stored_or_nil, stored2_or_nil)` (`stored2`: mod_push2's table) | `{ messages for the log }`, `{ [identifier] = true }` trimmed beyond `push_max_devices` or nil, and `{ user, … }` whose counts to write now or nil (before their time: unwritten error counts keep a user in memory, and the cache filled up) |
//! | `core:has_push(user)` | whether the user has registrations in memory |
//! | `core:might_push(user)` | false when the user is in memory without any registration, or known to have none ([`crate::known`]), else true |
//! | `core:might_push_fn()` | a function `(user)` answering as `core:might_push` does, or `nil` when it cannot tell (then ask `core:might_push`): not a method call, never raises ([`super::raw::quick`]); a name that is not UTF-8, which the method refuses with an error, it answers `false` |
//! | `core:note_known(user)` | nothing: the user has registrations in the store (listed when the module loads) |
//! | `core:known_complete()` | nothing: every such user was noted (a user not among them needs no read) |
//! | `core:muc_admit_ready(user)` | whether `core:muc_admit` can be asked before the user's registrations are read |
//! | `core:enable(who, stanza, now)` | `push_info, identifier, announce` (whether anything hooks `cloud_notify/registration`: the event is fired only then) or `nil, type, condition, text` |
//! | `core:plan_enable(user, identifier, push_info, resource)` | `plan` or `nil, type, condition, text` |
//! | `core:plan_disable(user, stanza)` | `plan`, `{ removed = {} }` (nothing matched: nothing to write) or `nil, type, condition, text` |
//! | `core:plan_remove_all(user)`, `core:plan_drop(user, identifier)`, `core:plan_current(user)` | `plan` or nothing |
//! | `core:commit(user, plan)` | `{ messages for the log }`: the written plan becomes the user's registrations |
//! | `core:remote_ends(user, message)` | whether a pubsub event sets the user's affiliation to none |
//! | `core:remote_disable(user, message)` | `plan` or nothing |
//! | `core:reattach(user, client_id, resource)` | the identifier of the device's registration, or nil (no record: rule 118) |
//! | `core:registrations(user)` | `{ [identifier] = push_info }` (with `error_count`) or nil |
//! | `core:admin_view(user, now)` | `{ { identifier, jid, node, timestamp, errors, unread, client, last_error, last_error_at, retry_attempt, retry_in }, … }` or nil |
//! | `core:error_count(user, identifier)` | number |
//! | `core:forget_user(user)` | nothing (the account was deleted) |
//!
//! `plan`: see [`Planned`] (what to write to each store, and the plan
//! itself for `commit`). `who`: the requester, `{ username,
//! host, full_jid, client_id, resource }` (a session, for the main module).

use super::convert::{affiliations_of, first_tag_path, lua_to_element, str_field, table_field};
use super::object::Core;
use super::records::{registration_from_lua, registrations_from_store};
use super::replies::{
    not_loaded, Disabled, Enabled, HeldPlan, Planned, PlannedEnable, Record, Reply,
};
use crate::error::StanzaError;
use crate::registration::{EnableRequest, Registration, Requester};
use mlua::{AnyUserData, Function, Lua, LuaString, Result, Table, UserDataMethods};

/// The methods of this file, on the core object.
pub(super) fn add_methods<M: UserDataMethods<Core>>(m: &mut M) {
    m.add_method("loaded", loaded);
    m.add_method_mut("load", load);
    m.add_method("has_push", has_push);
    m.add_method("might_push", might_push);
    m.add_method("might_push_fn", might_push_fn);
    m.add_method_mut("note_known", note_known);
    m.add_method_mut("known_complete", known_complete);
    m.add_method("muc_admit_ready", muc_admit_ready);
    m.add_method("enable", enable);
    m.add_method("plan_enable", plan_enable);
    m.add_method("plan_disable", plan_disable);
    m.add_method("plan_remove_all", plan_remove_all);
    m.add_method("plan_drop", plan_drop);
    m.add_method("plan_current", plan_current);
    m.add_method_mut("commit", commit);
    m.add_method("remote_ends", remote_ends);
    m.add_method("remote_disable", remote_disable);
    m.add_method("reattach", reattach);
    m.add_method("registrations", registrations);
    m.add_method("admin_view", admin_view);
    m.add_method("error_count", error_count);
    m.add_method_mut("forget_user", forget_user);
}

fn loaded(_: &Lua, this: &Core, user: String) -> Result<bool> {
    Ok(this.service.is_loaded(&user))
}

fn load(
    lua: &Lua,
    this: &mut Core,
    (user, stored, stored2): (String, Option<Table>, Option<Table>),
) -> Result<(Table, Option<Table>, Option<Table>)> {
    let (mut regs, mut problems) = match stored {
        Some(t) => registrations_from_store(&t)?,
        None => (Vec::new(), Vec::new()),
    };
    if let Some(t) = stored2.filter(|_| this.service.push2_enabled()) {
        let (regs2, problems2) = super::push2::registrations_from_store(&t)?;
        regs.extend(regs2);
        problems.extend(problems2);
    }
    let trimmed = this.service.load(&user, regs);
    let trimmed_set = match trimmed.is_empty() {
        true => None,
        false => Some(lua.create_table()?),
    };
    for id in trimmed {
        problems.push(format!(
            "registration '{id}' of '{user}' is beyond push_max_devices and is removed"
        ));
        if let Some(set) = &trimmed_set {
            set.raw_set(id, true)?;
        }
    }
    // (a user in memory may have filled the cache with unwritten counts)
    let due = this.service.counts_due();
    let due = match due.is_empty() {
        true => None,
        false => Some(lua.create_sequence_from(due)?),
    };
    Ok((lua.create_sequence_from(problems)?, trimmed_set, due))
}

fn has_push(_: &Lua, this: &Core, user: LuaString) -> Result<bool> {
    Ok(this.service.interest(&user.to_str()?) == crate::service::Interest::Pushes)
}

fn might_push(_: &Lua, this: &Core, user: LuaString) -> Result<bool> {
    Ok(this.service.interest(&user.to_str()?) != crate::service::Interest::Nothing)
}

fn might_push_fn(lua: &Lua, this: &Core, (): ()) -> Result<Function> {
    super::raw::quick::function(lua, this.service.known_sets().cell())
}

fn note_known(_: &Lua, this: &mut Core, user: LuaString) -> Result<()> {
    this.service.note_known(&user.to_str()?);
    Ok(())
}

fn known_complete(_: &Lua, this: &mut Core, (): ()) -> Result<()> {
    this.service.known_complete();
    Ok(())
}

fn muc_admit_ready(_: &Lua, this: &Core, user: LuaString) -> Result<bool> {
    Ok(this.service.muc_admit_ready(&user.to_str()?))
}

/// The requester an `<enable/>` comes from.
fn requester(this: &Core, who: &Table) -> Result<Requester> {
    let username = str_field(who, "username")?.unwrap_or_default();
    let host = str_field(who, "host")?.unwrap_or_else(|| this.service.host.clone());
    Ok(Requester {
        bare_jid: format!("{username}@{host}"),
        full_jid: str_field(who, "full_jid")?,
        client_id: str_field(who, "client_id")?,
        resource: str_field(who, "resource")?,
    })
}

fn enable(_: &Lua, this: &Core, (who, stanza, now): (Table, Table, f64)) -> Result<Reply<Enabled>> {
    let language = match table_field(&stanza, "attr")? {
        Some(a) => str_field(&a, "xml:lang")?,
        None => None,
    };
    // The IQ's first child, converted (bounded) for the core's parser.
    let element = match first_tag_path(&stanza, 1)? {
        Some(t) => match lua_to_element(&t, crate::NS_CLIENT) {
            Ok(e) => Some(e),
            Err(why) => {
                let text = format!("Invalid publish options: {why}");
                return Ok(Reply::Refused(StanzaError::bad_request(text)));
            }
        },
        None => None,
    };
    let request = match EnableRequest::from_element(element.as_ref(), language) {
        Ok(r) => r,
        Err(e) => return Ok(Reply::Refused(e)),
    };
    let who = requester(this, &who)?;
    let reg = match this.service.enable_request(request, &who, now) {
        Ok(reg) => reg,
        Err(e) => return Ok(Reply::Refused(e)),
    };
    // (read back from `push_info` unless kept: see `Core::enabled`)
    let hooked = this.registration_hooked()?;
    let kept = (!hooked).then(|| (who.bare_jid, reg.clone()));
    *this.enabled.borrow_mut() = kept;
    Ok(Reply::Done(Enabled(reg, hooked)))
}

/// The registration `push_info` stands for: the one the enable built
/// when it was kept for this user and identifier and nothing hooks
/// `cloud_notify/registration` (nothing could have changed the table:
/// `true`), else the table as read.
fn enabled_registration(
    this: &Core,
    user: &str,
    identifier: &str,
    info: &Table,
) -> Result<std::result::Result<(Registration, bool), StanzaError>> {
    let kept = this.enabled.borrow_mut().take();
    if let Some((bare, reg)) = kept {
        let ours = bare.split_once('@').map_or(bare.as_str(), |(u, _)| u) == user || bare == user;
        if ours && reg.identifier() == identifier && !this.registration_hooked()? {
            return Ok(Ok((reg, true)));
        }
    }
    Ok(registration_from_lua(identifier, info).map(|reg| (reg, false)))
}

fn plan_enable(
    _: &Lua,
    this: &Core,
    (user, identifier, info, resource): (String, String, Table, Option<LuaString>),
) -> Result<Reply<PlannedEnable>> {
    let (reg, kept) = match enabled_registration(this, &user, &identifier, &info)? {
        Ok(r) => r,
        Err(e) => return Ok(Reply::Refused(e)),
    };
    // (`push_info` is the record when the plan keeps the registration as built)
    let built = kept.then(|| reg.clone());
    let resource = resource.as_ref().map(|r| r.to_str()).transpose()?;
    Ok(
        match this.service.plan_enable(&user, reg, resource.as_deref()) {
            Some(plan) => {
                let same = built.is_some_and(|b| plan.regs.contains(&b));
                Reply::Done(PlannedEnable(plan, same.then_some((identifier, info))))
            }
            None => Reply::Refused(not_loaded()),
        },
    )
}

fn plan_disable(_: &Lua, this: &Core, (user, stanza): (String, Table)) -> Result<Reply<Disabled>> {
    let attr = match first_tag_path(&stanza, 1)? {
        Some(d) => table_field(&d, "attr")?,
        None => None,
    };
    let (jid, node) = match &attr {
        Some(a) => (str_field(a, "jid")?, str_field(a, "node")?),
        None => (None, None),
    };
    Ok(
        match this
            .service
            .plan_disable(&user, jid.as_deref(), node.as_deref())
        {
            Err(e) => Reply::Refused(e),
            Ok(None) => Reply::Refused(not_loaded()),
            Ok(Some(plan)) if plan.removed.is_empty() => Reply::Done(Disabled::Nothing),
            Ok(Some(plan)) => Reply::Done(Disabled::Plan(plan)),
        },
    )
}

fn plan_remove_all(_: &Lua, this: &Core, user: String) -> Result<Planned> {
    let plan = this.service.plan_remove_all(&user);
    Ok(Planned(plan.filter(|p| !p.removed.is_empty())))
}

fn plan_drop(_: &Lua, this: &Core, (user, identifier): (String, String)) -> Result<Planned> {
    let plan = this.service.plan_drop(&user, &identifier);
    Ok(Planned(plan.filter(|p| !p.removed.is_empty())))
}

fn plan_current(_: &Lua, this: &Core, user: String) -> Result<Planned> {
    Ok(Planned(this.service.plan_current(&user)))
}

fn commit(lua: &Lua, this: &mut Core, (user, plan): (String, Table)) -> Result<Table> {
    let held: AnyUserData = plan.raw_get("held")?;
    let Some(plan) = held.borrow_mut::<HeldPlan>()?.0.take() else {
        return lua.create_sequence_from(["A plan was committed twice: ignored"]);
    };
    this.service.commit_written(&user, plan);
    lua.create_table()
}

fn remote_ends(_: &Lua, this: &Core, (user, stanza): (String, Table)) -> Result<bool> {
    Ok(match affiliations_of(&stanza)? {
        Some((_, affiliations)) => this.service.affiliation_ends(&user, &affiliations),
        None => false,
    })
}

fn remote_disable(_: &Lua, this: &Core, (user, stanza): (String, Table)) -> Result<Planned> {
    let from = table_field(&stanza, "attr")?
        .map(|a| str_field(&a, "from"))
        .transpose()?
        .flatten();
    let (Some(from), Some((node, affiliations))) = (from, affiliations_of(&stanza)?) else {
        return Ok(Planned(None));
    };
    let plan = this
        .service
        .remote_disable(&user, &from, node.as_deref(), &affiliations);
    Ok(Planned(plan))
}

/// The identifier only: no record is built for the session (see
/// rule 118: nothing but the reference's own code reads
/// `session.push_settings`, and an `<enable/>` sets it).
fn reattach(
    _: &Lua,
    this: &Core,
    (user, client_id, resource): (String, Option<String>, Option<String>),
) -> Result<Option<String>> {
    let reg = this
        .service
        .reattach(&user, client_id.as_deref(), resource.as_deref());
    Ok(reg.map(|r| r.identifier().to_owned()))
}

fn registrations(lua: &Lua, this: &Core, user: String) -> Result<Option<Table>> {
    let Some(regs) = this.service.registrations(&user) else {
        return Ok(None);
    };
    let t = lua.create_table()?;
    for reg in regs {
        let mut reg = reg.clone();
        reg.errors = this.service.error_count(&user, reg.identifier());
        t.raw_set(reg.identifier(), Record(&reg))?;
    }
    Ok(Some(t))
}

fn admin_view(lua: &Lua, this: &Core, (user, now): (String, f64)) -> Result<Option<Table>> {
    let Some(regs) = this.service.registrations(&user) else {
        return Ok(None);
    };
    let out = lua.create_table()?;
    for (i, reg) in regs.iter().enumerate() {
        let t = lua.create_table()?;
        t.raw_set("identifier", reg.identifier())?;
        t.raw_set("jid", reg.jid())?;
        t.raw_set("node", reg.node())?;
        t.raw_set("timestamp", reg.timestamp)?;
        t.raw_set("errors", reg.errors)?;
        t.raw_set("unread", reg.counts.total())?;
        let client = reg.client_id().or(reg.resource()).or(reg.push2_key());
        t.raw_set("client", client)?;
        if let Some((condition, at)) = this.service.last_error(&user, reg.identifier()) {
            t.raw_set("last_error", condition.as_str())?;
            t.raw_set("last_error_at", *at)?;
        }
        if let Some((attempt, due)) = this.service.retry_of(&user, reg.identifier(), now) {
            t.raw_set("retry_attempt", attempt)?;
            t.raw_set("retry_in", due)?;
        }
        out.raw_set(i + 1, t)?;
    }
    Ok(Some(out))
}

fn error_count(_: &Lua, this: &Core, (user, identifier): (String, String)) -> Result<u32> {
    Ok(this.service.error_count(&user, &identifier))
}

fn forget_user(_: &Lua, this: &mut Core, user: String) -> Result<()> {
    this.service.forget_user(&user);
    Ok(())
}
