//! The Lua binding: the only code that touches mlua.
//!
//! `require`d (through `package.loadlib`) by the shim, it exports `new`,
//! which makes one [`Host`] per VirtualHost: a userdata owning that host's
//! [`PushService`]. Nothing is kept in statics, so hosts never share state.

mod activity;
mod convert;
mod raw;
mod read;
mod records;

use crate::coalesce::Added;
use crate::config::{Config, RawConfig};
use crate::facts::StanzaFacts;
use crate::muc::{Member, Reference, Wants, MAX_REFERENCES};
use crate::notification::Summary;
use crate::registration::{EnableRequest, Requester};
use crate::retry::Scheduled;
use crate::service::{Answer, PushJob, PushKind, PushService, Response, Targets};
use crate::NS_DATA_FORMS;
use convert::{child_named, first_tag_path, lua_to_element, recipient, str_field, table_field};
use mlua::{
    ffi, Lua, LuaSerdeExt, LuaString, MultiValue, Result, Table, UserData, UserDataMethods, Value,
};
use raw::{
    options_shape, push_cached_payload, push_first_tag_path, push_publish, push_registration,
    PayloadFrom, PublishShapes, Shape,
};
use records::{
    plan_from_lua, plan_to_lua, registration_from_lua, registration_to_lua,
    registrations_from_store,
};
use std::collections::HashMap;

const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
const NS_REFERENCE: &str = "urn:xmpp:reference:0";
const NS_PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";

/// Field set on a stanza object that has no stable key of its own (no
/// stanza-id, no id), so that the same object is recognised again.
const OBJECT_KEY: &str = "_cloud_notify_key";

/// `archived(for_user, stanza, archive_id, sessions, fallback_user, now)`.
type ArchivedArgs = (
    LuaString,
    Table,
    LuaString,
    Option<Table>,
    Option<LuaString>,
    f64,
);

/// One VirtualHost's push service, as Lua sees it.
struct Host {
    service: PushService,
    /// util.stanza's metatable, for the stanzas handed back to Lua.
    stanza_mt: Table,
    /// Notification payload tables shared between pushes (see `raw`).
    payload_tables: Table,
    /// The host's `events.get_handlers`, to tell whether anything hooks
    /// `cloud_notify/push` (then no payload is shared).
    get_handlers: Option<mlua::Function>,
    /// Per smacks batch, its last important and unimportant stanza objects
    /// (the `original_stanza` of the pushes it gives).
    batch_objects: HashMap<String, [Option<Table>; 2]>,
}

fn err_values(lua: &Lua, e: &crate::error::StanzaError) -> Result<MultiValue> {
    let text = match &e.text {
        Some(t) => Value::String(lua.create_string(t)?),
        None => Value::Nil,
    };
    Ok(MultiValue::from_vec(vec![
        Value::Nil,
        Value::String(lua.create_string(e.type_)?),
        Value::String(lua.create_string(e.condition)?),
        text,
    ]))
}

/// Pushes a push's summary (`push_summary`: the form's values).
///
/// # Safety
/// `l` is valid inside a protected call, with room for three values.
unsafe fn push_summary(l: *mut ffi::lua_State, s: &Summary) {
    unsafe {
        ffi::lua_createtable(l, 0, 4);
        ffi::lua_pushinteger(l, ffi::lua_Integer::from(s.message_count));
        ffi::lua_tolstring(l, -1, std::ptr::null_mut());
        ffi::lua_setfield(l, -2, c"message-count".as_ptr());
        if let Some(n) = s.pending_subscriptions {
            ffi::lua_pushinteger(l, ffi::lua_Integer::from(n));
            ffi::lua_tolstring(l, -1, std::ptr::null_mut());
            ffi::lua_setfield(l, -2, c"pending-subscription-count".as_ptr());
        }
        raw::set_opt(l, c"last-message-sender", s.sender.as_deref());
        raw::set_opt(l, c"last-message-body", s.body.as_deref());
    }
}

impl Host {
    /// The `cloud_notify/push` event payloads for a batch of jobs.
    fn jobs_to_lua(
        &self,
        lua: &Lua,
        jobs: Vec<PushJob>,
        user: &str,
        original: &Value,
    ) -> Result<Table> {
        let out = lua.create_table_with_capacity(jobs.len(), 0)?;
        self.append_jobs(lua, &out, jobs, user, original)?;
        Ok(out)
    }

    /// Appends the `cloud_notify/push` event payloads of `jobs` to `out`,
    /// in one protected call (see `raw`).
    fn append_jobs(
        &self,
        lua: &Lua,
        out: &Table,
        jobs: Vec<PushJob>,
        user: &str,
        original: &Value,
    ) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        // Payload tables are shared between pushes while nothing hooks
        // cloud_notify/push (a handler could change one push's payload).
        let mut share = false;
        let mut cached = vec![false; jobs.len()];
        if let Some(get_handlers) = &self.get_handlers {
            let args = (self.payload_tables.clone(), get_handlers.clone());
            // SAFETY: the closure writes plain data only (`share`, `cached`).
            unsafe {
                lua.exec_raw::<()>(args, |l| {
                    ffi::lua_pushvalue(l, 2);
                    ffi::lua_pushstring(l, c"cloud_notify/push".as_ptr());
                    ffi::lua_call(l, 1, 1);
                    if ffi::lua_type(l, -1) != ffi::LUA_TNIL {
                        return;
                    }
                    share = true;
                    for (job, hit) in jobs.iter().zip(cached.iter_mut()) {
                        *hit = push_cached_payload(l, 1, job.payload_id);
                        ffi::lua_settop(l, 2 + 1);
                    }
                })?;
            }
        }
        let shapes: Vec<(PublishShapes, Option<Shape>)> = jobs
            .iter()
            .zip(&cached)
            .map(|(j, &hit)| {
                let payload = (!hit).then_some(&*j.payload);
                (
                    PublishShapes::of(payload, j.registration.options.as_deref()),
                    options_shape(&j.registration),
                )
            })
            .collect();
        let host = self.service.host.as_str();
        let from = if share {
            PayloadFrom::Cache(4)
        } else {
            PayloadFrom::Built
        };
        let args = (
            out.clone(),
            self.stanza_mt.clone(),
            original.clone(),
            self.payload_tables.clone(),
        );
        // SAFETY: the closure only borrows (`jobs`, `shapes`, `user`); the
        // stack holds out, stanza_mt, the original stanza and the payload
        // cache at 1..4.
        unsafe {
            lua.exec_raw::<()>(args, |l| {
                let mut n = ffi::lua_rawlen(l, 1) as ffi::lua_Integer;
                for (job, (publish_shapes, options_shape)) in jobs.iter().zip(&shapes) {
                    ffi::luaL_checkstack(l, 8, c"push event".as_ptr());
                    ffi::lua_createtable(l, 0, 11);
                    let reg = &job.registration;
                    let payload = (&*job.payload, job.payload_id);
                    push_publish(l, host, &job.id, reg, payload, publish_shapes, from, 2);
                    // iq > pubsub > publish > item > notification
                    push_first_tag_path(l, 4);
                    ffi::lua_setfield(l, -3, c"notification_payload".as_ptr());
                    ffi::lua_setfield(l, -2, c"notification_stanza".as_ptr());
                    ffi::lua_pushvalue(l, 3);
                    ffi::lua_setfield(l, -2, c"original_stanza".as_ptr());
                    raw::set_str(l, c"username", user);
                    push_registration(l, &job.registration, options_shape.as_ref());
                    ffi::lua_setfield(l, -2, c"push_info".as_ptr());
                    push_summary(l, &job.summary);
                    ffi::lua_setfield(l, -2, c"push_summary".as_ptr());
                    raw::set_bool(l, c"important", job.summary.important());
                    raw::set_bool(l, c"wakes", job.wakes);
                    raw::set_str(l, c"push_kind", job.kind.as_str());
                    raw::set_str(l, c"push_id", &job.id);
                    raw::set_str(l, c"push_identifier", &job.registration.identifier);
                    n += 1;
                    ffi::lua_rawseti(l, 1, n);
                }
                ffi::lua_settop(l, 0);
            })
        }
    }

    /// Pushes for `stanza` to `user` (all or some registrations), as event
    /// payloads; `false` if the user's registrations must be loaded first.
    fn notify(
        &mut self,
        lua: &Lua,
        user: &str,
        stanza: Value,
        only: Option<Vec<String>>,
        kind: PushKind,
        now: f64,
    ) -> Result<Value> {
        match self.service.registrations(user) {
            None => return Ok(Value::Boolean(false)),
            // The common case: no push for this user; read nothing of the stanza.
            Some([]) => return Ok(Value::Nil),
            Some(_) => {}
        }
        let (facts, key) = match &stanza {
            Value::Table(t) => {
                let facts = read::stanza_facts(lua, t)?;
                let key = self.key_of(t, &facts, user)?;
                (Some(facts), Some(key))
            }
            _ => (None, None),
        };
        let targets = match &only {
            Some(ids) => Targets::Only(ids),
            None => Targets::All,
        };
        let jobs = self
            .service
            .notify(user, facts.as_ref(), key.as_deref(), targets, kind, now)
            .unwrap_or_default();
        Ok(Value::Table(self.jobs_to_lua(lua, jobs, user, &stanza)?))
    }

    /// The key recognising a stanza's copies; for a stanza without a stable
    /// one, a key stored on the object itself.
    fn key_of(&self, stanza: &Table, facts: &StanzaFacts, user: &str) -> Result<String> {
        if let Some(key) = facts.stable_key(&format!("{user}@{}", self.service.host)) {
            return Ok(key);
        }
        if let Some(key) = str_field(stanza, OBJECT_KEY)? {
            return Ok(key);
        }
        let key = format!("o:{}", crate::ids::next_push_id());
        stanza.raw_set(OBJECT_KEY, key.as_str())?;
        Ok(key)
    }
}

/// Reads `<error type=… ><condition xmlns='…stanzas'/></error>`.
fn error_of(stanza: &Table) -> Result<(String, String)> {
    let mut type_ = String::from("cancel");
    let mut condition = String::from("undefined-condition");
    if let Some(tags) = table_field(stanza, "tags")? {
        for child in tags.sequence_values::<Value>() {
            let Value::Table(child) = child? else {
                continue;
            };
            if str_field(&child, "name")?.as_deref() != Some("error") {
                continue;
            }
            if let Some(attr) = table_field(&child, "attr")? {
                // RFC 6120 §8.3.2: one of five; anything else counts as cancel
                // (and never becomes an unbounded metrics label).
                if let Some(t) = str_field(&attr, "type")? {
                    if matches!(
                        t.as_str(),
                        "auth" | "cancel" | "continue" | "modify" | "wait"
                    ) {
                        type_ = t;
                    }
                }
            }
            if let Some(conds) = table_field(&child, "tags")? {
                for c in conds.sequence_values::<Value>() {
                    let Value::Table(c) = c? else { continue };
                    let ns = table_field(&c, "attr")?
                        .map(|a| str_field(&a, "xmlns"))
                        .transpose()?
                        .flatten();
                    if ns.as_deref() == Some(NS_STANZAS) {
                        if let Some(n) = str_field(&c, "name")? {
                            condition = n;
                            break;
                        }
                    }
                }
            }
            break;
        }
    }
    Ok((type_, condition))
}

/// The XEP-0372 references among a stanza's children (a bounded number).
fn references(stanza: &Table) -> Result<Vec<Reference>> {
    let mut out = Vec::new();
    let Some(tags) = table_field(stanza, "tags")? else {
        return Ok(out);
    };
    for child in tags.sequence_values::<Value>() {
        let Value::Table(child) = child? else {
            continue;
        };
        if str_field(&child, "name")?.as_deref() != Some("reference") {
            continue;
        }
        let Some(attr) = table_field(&child, "attr")? else {
            continue;
        };
        if str_field(&attr, "xmlns")?.as_deref() != Some(NS_REFERENCE) {
            continue;
        }
        out.push(Reference {
            type_: str_field(&attr, "type")?,
            begin: str_field(&attr, "begin")?,
            end: str_field(&attr, "end")?,
        });
        if out.len() >= MAX_REFERENCES {
            break;
        }
    }
    Ok(out)
}

/// Most `<affiliation/>`s read from one pubsub event.
const MAX_AFFILIATIONS: usize = 16;

/// A pubsub event's first `<affiliations node=…>`: the node and its
/// `(jid, affiliation)` pairs (a bounded number).
#[allow(clippy::type_complexity)]
fn affiliations_of(stanza: &Table) -> Result<Option<(Option<String>, Vec<(String, String)>)>> {
    let Some(event) = child_named(stanza, "event", NS_PUBSUB_EVENT, crate::NS_CLIENT)? else {
        return Ok(None);
    };
    let Some(affs) = child_named(&event, "affiliations", NS_PUBSUB_EVENT, NS_PUBSUB_EVENT)? else {
        return Ok(None);
    };
    let node = table_field(&affs, "attr")?
        .map(|a| str_field(&a, "node"))
        .transpose()?
        .flatten();
    let mut out = Vec::new();
    if let Some(tags) = table_field(&affs, "tags")? {
        for child in tags.sequence_values::<Value>() {
            let Value::Table(child) = child? else {
                continue;
            };
            if str_field(&child, "name")?.as_deref() != Some("affiliation") {
                continue;
            }
            let Some(attr) = table_field(&child, "attr")? else {
                continue;
            };
            if let (Some(jid), Some(affiliation)) =
                (str_field(&attr, "jid")?, str_field(&attr, "affiliation")?)
            {
                out.push((jid, affiliation));
            }
            if out.len() >= MAX_AFFILIATIONS {
                break;
            }
        }
    }
    Ok(Some((node, out)))
}

/// `{ { jid = …, joined = … }, … }` from the room.
fn members_of(t: &Table) -> Result<Vec<Member>> {
    let mut out = Vec::new();
    for m in t.clone().sequence_values::<Value>() {
        let Value::Table(m) = m? else { continue };
        if let Some(jid) = str_field(&m, "jid")? {
            let joined = matches!(m.raw_get::<Value>("joined")?, Value::Boolean(true));
            let outcast = str_field(&m, "affiliation")?.as_deref() == Some("outcast");
            out.push(Member {
                jid,
                joined,
                outcast,
            });
        }
    }
    Ok(out)
}

fn strings_of(t: Option<Table>) -> Result<Option<Vec<String>>> {
    let Some(t) = t else { return Ok(None) };
    let mut out = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        match pair? {
            (Value::String(k), Value::Table(_)) | (Value::String(k), Value::Boolean(true)) => {
                out.push(k.to_string_lossy())
            }
            (Value::Integer(_), Value::String(v)) => out.push(v.to_string_lossy()),
            _ => {}
        }
    }
    Ok(Some(out))
}

impl UserData for Host {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        // host:loaded(user) -> boolean
        m.add_method("loaded", |_, this, user: String| {
            Ok(this.service.is_loaded(&user))
        });

        // host:load(user, stored_table_or_nil) -> { messages for the log },
        //   { [identifier] = true } trimmed beyond push_max_devices | nil
        m.add_method_mut(
            "load",
            |lua, this, (user, stored): (String, Option<Table>)| {
                let (regs, mut problems) = match stored {
                    Some(t) => registrations_from_store(&t)?,
                    None => (Vec::new(), Vec::new()),
                };
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
                Ok((lua.create_sequence_from(problems)?, trimmed_set))
            },
        );

        // host:enable(origin, stanza, now) -> push_info, identifier | nil, type, condition, text
        m.add_method(
            "enable",
            |lua, this, (origin, stanza, now): (Table, Table, f64)| {
                let Some(enable) = convert::first_tag_path(&stanza, 1)? else {
                    return err_values(
                        lua,
                        &crate::error::StanzaError::bad_request("Missing enable element"),
                    );
                };
                let attr = table_field(&enable, "attr")?;
                let get = |k: &str| -> Result<Option<String>> {
                    match &attr {
                        Some(a) => str_field(a, k),
                        None => Ok(None),
                    }
                };
                let form = match child_named(&enable, "x", NS_DATA_FORMS, crate::NS_PUSH)? {
                    Some(x) => match lua_to_element(&x, NS_DATA_FORMS) {
                        Ok(e) => Some(e),
                        Err(why) => {
                            return err_values(
                                lua,
                                &crate::error::StanzaError::bad_request(format!(
                                    "Invalid publish options: {why}"
                                )),
                            )
                        }
                    },
                    None => None,
                };
                let stanza_attr = table_field(&stanza, "attr")?;
                let language = match &stanza_attr {
                    Some(a) => str_field(a, "xml:lang")?,
                    None => None,
                };
                let username = str_field(&origin, "username")?.unwrap_or_default();
                let host = str_field(&origin, "host")?.unwrap_or_else(|| this.service.host.clone());
                let who = Requester {
                    bare_jid: format!("{username}@{host}"),
                    full_jid: str_field(&origin, "full_jid")?,
                    client_id: str_field(&origin, "client_id")?,
                    resource: str_field(&origin, "resource")?,
                };
                let req = EnableRequest {
                    jid: get("jid")?,
                    node: get("node")?,
                    include_payload: get("include_payload")?,
                    form,
                    language,
                };
                match this.service.enable_request(req, &who, now) {
                    Ok(reg) => Ok(MultiValue::from_vec(vec![
                        Value::Table(registration_to_lua(lua, &reg)?),
                        Value::String(lua.create_string(&reg.identifier)?),
                    ])),
                    Err(e) => err_values(lua, &e),
                }
            },
        );

        // host:plan_enable(user, identifier, push_info) -> services, removed | nil, type, condition, text
        m.add_method(
            "plan_enable",
            |lua, this, (user, identifier, info): (String, String, Table)| {
                let reg = match registration_from_lua(&identifier, &info) {
                    Ok(r) => r,
                    Err(e) => return err_values(lua, &e),
                };
                match this.service.plan_enable(&user, reg) {
                    Some(plan) => {
                        let (s, r) = plan_to_lua(lua, &plan)?;
                        Ok(MultiValue::from_vec(vec![Value::Table(s), Value::Table(r)]))
                    }
                    None => err_values(
                        lua,
                        &crate::error::StanzaError::internal("Registrations not loaded"),
                    ),
                }
            },
        );

        // host:plan_disable(user, stanza) -> services|false, removed | nil, type, condition, text
        m.add_method(
            "plan_disable",
            |lua, this, (user, stanza): (String, Table)| {
                let attr = match first_tag_path(&stanza, 1)? {
                    Some(d) => table_field(&d, "attr")?,
                    None => None,
                };
                let (jid, node) = match &attr {
                    Some(a) => (str_field(a, "jid")?, str_field(a, "node")?),
                    None => (None, None),
                };
                match this
                    .service
                    .plan_disable(&user, jid.as_deref(), node.as_deref())
                {
                    Err(e) => err_values(lua, &e),
                    Ok(None) => err_values(
                        lua,
                        &crate::error::StanzaError::internal("Registrations not loaded"),
                    ),
                    Ok(Some(plan)) if plan.removed.is_empty() => Ok(MultiValue::from_vec(vec![
                        Value::Boolean(false),
                        Value::Table(lua.create_table()?),
                    ])),
                    Ok(Some(plan)) => {
                        let (s, r) = plan_to_lua(lua, &plan)?;
                        Ok(MultiValue::from_vec(vec![Value::Table(s), Value::Table(r)]))
                    }
                }
            },
        );

        // host:plan_remove_all(user) -> services, removed | nil
        m.add_method("plan_remove_all", |lua, this, user: String| {
            match this.service.plan_remove_all(&user) {
                Some(plan) if !plan.removed.is_empty() => {
                    let (s, r) = plan_to_lua(lua, &plan)?;
                    Ok(MultiValue::from_vec(vec![Value::Table(s), Value::Table(r)]))
                }
                _ => Ok(MultiValue::new()),
            }
        });

        // host:plan_drop(user, identifier) -> services, removed | nil
        m.add_method(
            "plan_drop",
            |lua, this, (user, identifier): (String, String)| match this
                .service
                .plan_drop(&user, &identifier)
            {
                Some(plan) if !plan.removed.is_empty() => {
                    let (s, r) = plan_to_lua(lua, &plan)?;
                    Ok(MultiValue::from_vec(vec![Value::Table(s), Value::Table(r)]))
                }
                _ => Ok(MultiValue::new()),
            },
        );

        // host:has_push(user) -> true (registrations in memory) | nil (in
        // memory: none) | false (not loaded). One cheap question before the
        // archive path hands over a whole event.
        m.add_method("has_push", |_, this, user: LuaString| {
            Ok(match this.service.registrations(&user.to_str()?) {
                None => Some(false),
                Some([]) => None,
                Some(_) => Some(true),
            })
        });

        // host:registrations(user) -> { [identifier] = record (with error_count) } | nil
        m.add_method("registrations", |lua, this, user: String| {
            let Some(regs) = this.service.registrations(&user) else {
                return Ok(None);
            };
            let t = lua.create_table()?;
            for reg in regs {
                let mut reg = reg.clone();
                reg.errors = this.service.error_count(&user, &reg.identifier);
                t.raw_set(reg.identifier.as_str(), registration_to_lua(lua, &reg)?)?;
            }
            Ok(Some(t))
        });

        // host:remote_disable(user, message) -> services, removed | nil
        // (an app server's <event><affiliations node=…><affiliation jid=… affiliation='none'/>)
        m.add_method(
            "remote_disable",
            |lua, this, (user, stanza): (String, Table)| {
                let from = table_field(&stanza, "attr")?
                    .map(|a| str_field(&a, "from"))
                    .transpose()?
                    .flatten();
                let (Some(from), Some((node, affiliations))) = (from, affiliations_of(&stanza)?)
                else {
                    return Ok(MultiValue::new());
                };
                match this
                    .service
                    .remote_disable(&user, &from, node.as_deref(), &affiliations)
                {
                    Some(plan) => {
                        let (s, r) = plan_to_lua(lua, &plan)?;
                        Ok(MultiValue::from_vec(vec![Value::Table(s), Value::Table(r)]))
                    }
                    None => Ok(MultiValue::new()),
                }
            },
        );

        // host:remote_ends(user, message) -> whether it is a pubsub event that
        // sets the user's affiliation to none (nothing loaded or decided yet)
        m.add_method("remote_ends", |_, this, (user, stanza): (String, Table)| {
            Ok(match affiliations_of(&stanza)? {
                Some((_, affiliations)) => this.service.affiliation_ends(&user, &affiliations),
                None => false,
            })
        });

        // host:reattach(user, client_id, resource) -> identifier, record | nil
        // (a device reconnecting without <enable/>)
        m.add_method(
            "reattach",
            |lua, this, (user, client_id, resource): (String, Option<String>, Option<String>)| {
                match this
                    .service
                    .reattach(&user, client_id.as_deref(), resource.as_deref())
                {
                    Some(reg) => Ok((
                        Some(reg.identifier.clone()),
                        Some(registration_to_lua(lua, reg)?),
                    )),
                    None => Ok((None, None)),
                }
            },
        );

        // host:forget_user(user): the account was deleted
        m.add_method_mut("forget_user", |_, this, user: String| {
            this.service.forget_user(&user);
            Ok(())
        });

        // host:plan_current(user) -> services, removed | nil
        m.add_method("plan_current", |lua, this, user: String| {
            match this.service.plan_current(&user) {
                Some(plan) => {
                    let (s, r) = plan_to_lua(lua, &plan)?;
                    Ok(MultiValue::from_vec(vec![Value::Table(s), Value::Table(r)]))
                }
                None => Ok(MultiValue::new()),
            }
        });

        // host:commit(user, services, removed) -> { messages for the log }
        m.add_method_mut(
            "commit",
            |lua, this, (user, services, removed): (String, Table, Option<Table>)| {
                let (plan, problems) = plan_from_lua(&services, removed)?;
                this.service.commit(&user, plan);
                lua.create_sequence_from(problems)
            },
        );

        // host:offline(stanza, now, groupchat) -> events | false, user | nil
        // (groupchat: a bare groupchat message, pushed the same way)
        m.add_method_mut(
            "offline",
            |lua, this, (stanza, now, groupchat): (Table, f64, Option<bool>)| {
                let Some(user) = recipient(&stanza, None)? else {
                    return Ok(MultiValue::new());
                };
                let kind = if groupchat == Some(true) {
                    PushKind::Groupchat
                } else {
                    PushKind::Offline
                };
                let events = this.notify(lua, &user, Value::Table(stanza), None, kind, now)?;
                Ok(MultiValue::from_vec(vec![
                    events,
                    Value::String(lua.create_string(&user)?),
                ]))
            },
        );

        // host:ping(user, push_services_or_nil, now) -> events | false
        m.add_method_mut(
            "ping",
            |lua, this, (user, services, now): (String, Option<Table>, f64)| {
                let only = strings_of(services)?;
                this.notify(lua, &user, Value::Nil, only, PushKind::Ping, now)
            },
        );

        // host:archived(for_user, stanza, archive_id, user_sessions_or_nil, fallback_user, now)
        //   -> events | false (load the user first)
        // user_sessions: the user's `sessions` table (full JID → session),
        // whose `push_identifier`s are the live registrations.
        m.add_method_mut("archived", |lua, this, args: ArchivedArgs| {
            // Called for every archived message: borrowed strings, and
            // nothing read or built for users without registrations.
            let (for_user, stanza, archive_id, sessions, fallback, now) = args;
            if sessions.is_none() {
                // PushService::archived: with no session at all, the
                // offline path serves the user; skip loading them.
                return Ok(Value::Nil);
            }
            let for_user = for_user.to_str()?;
            let for_user: &str = &for_user;
            match this.service.registrations(for_user) {
                None => return Ok(Value::Boolean(false)),
                Some([]) => return Ok(Value::Nil),
                Some(_) => {}
            }
            let archive_id = archive_id.to_string_lossy();
            let fallback = fallback.map(|f| f.to_string_lossy());
            let facts = read::stanza_facts(lua, &stanza)?;
            let recipient = match facts.to.as_deref() {
                Some(to) => Some(to.split('/').next().unwrap_or(to).to_owned()),
                None => fallback.map(|u| format!("{u}@{}", this.service.host)),
            };
            let live = match sessions {
                Some(sessions) => Some(read::push_identifiers(lua, &sessions)?),
                None => None,
            };
            let jobs = this
                .service
                .archived(
                    for_user,
                    recipient.as_deref(),
                    &facts,
                    &archive_id,
                    live.as_deref(),
                    now,
                )
                .unwrap_or_default();
            Ok(Value::Table(this.jobs_to_lua(
                lua,
                jobs,
                for_user,
                &Value::Table(stanza),
            )?))
        });

        // host:smacks_add(session_id, user, identifier, stanzas)
        //   -> "nothing" | "joined" | "opened" (start the timer) | "flush" (flush now)
        m.add_method_mut(
            "smacks_add",
            |lua, this, (session, user, identifier, stanzas): (String, String, String, Table)| {
                let mut outcome = Added::Nothing;
                for stanza in stanzas.sequence_values::<Value>() {
                    let Value::Table(stanza) = stanza? else {
                        continue;
                    };
                    let facts = read::stanza_facts(lua, &stanza)?;
                    let key = this.key_of(&stanza, &facts, &user)?;
                    let queued = this
                        .service
                        .smacks_add(&session, &user, &identifier, facts, &key);
                    if queued.added == Added::Nothing {
                        continue;
                    }
                    let objects = this.batch_objects.entry(session.clone()).or_default();
                    if matches!(queued.added, Added::Opened | Added::FlushNow) {
                        *objects = Default::default();
                    }
                    objects[usize::from(!queued.important)] = Some(stanza);
                    let added = if queued.at_once {
                        Added::FlushNow
                    } else {
                        queued.added
                    };
                    outcome = outcome.max(added);
                }
                Ok(match outcome {
                    Added::Nothing => "nothing",
                    Added::Joined => "joined",
                    Added::Opened => "opened",
                    Added::FlushNow => "flush",
                })
            },
        );

        // host:smacks_flush(session_id, now) -> events
        m.add_method_mut(
            "smacks_flush",
            |lua, this, (session, now): (String, f64)| {
                let objects = this.batch_objects.remove(&session).unwrap_or_default();
                let out = lua.create_table()?;
                let Some((user, slots)) = this.service.smacks_flush(&session, now) else {
                    return Ok(out);
                };
                // Slot 0: the batch's important stanza, slot 1: its unimportant one.
                for (jobs, object) in slots.into_iter().zip(objects) {
                    let original = object.map_or(Value::Nil, Value::Table);
                    this.append_jobs(lua, &out, jobs, &user, &original)?;
                }
                Ok(out)
            },
        );

        // host:retries_due(now) -> events (the retries due, each to its registration)
        m.add_method_mut("retries_due", |lua, this, now: f64| {
            let out = lua.create_table()?;
            for (user, jobs) in this.service.retries_due(now) {
                this.append_jobs(lua, &out, jobs, &user, &Value::Nil)?;
            }
            Ok(out)
        });

        // host:next_retry_in(now) -> seconds | nil
        m.add_method("next_retry_in", |_, this, now: f64| {
            Ok(this.service.next_retry_in(now))
        });

        // host:retry_cancel(user, identifier): the device connected
        m.add_method_mut(
            "retry_cancel",
            |_, this, (user, identifier): (String, String)| {
                Ok(this.service.retry_cancel(&user, &identifier))
            },
        );

        // host:admin_view(user, now) -> { { identifier, jid, node, timestamp,
        //   errors, last_error, last_error_at, retry_attempt, retry_in, client }, … } | nil
        m.add_method("admin_view", |lua, this, (user, now): (String, f64)| {
            let Some(regs) = this.service.registrations(&user) else {
                return Ok(None);
            };
            let out = lua.create_table()?;
            for (i, reg) in regs.iter().enumerate() {
                let t = lua.create_table()?;
                t.raw_set("identifier", reg.identifier.as_str())?;
                t.raw_set("jid", reg.jid.as_str())?;
                t.raw_set("node", reg.node.as_deref())?;
                t.raw_set("timestamp", reg.timestamp)?;
                t.raw_set("errors", reg.errors)?;
                t.raw_set("unread", reg.counts.total())?;
                t.raw_set(
                    "client",
                    reg.client_id.as_deref().or(reg.resource.as_deref()),
                )?;
                if let Some((condition, at)) = this.service.last_error(&user, &reg.identifier) {
                    t.raw_set("last_error", condition.as_str())?;
                    t.raw_set("last_error_at", *at)?;
                }
                if let Some((attempt, due)) = this.service.retry_of(&user, &reg.identifier, now) {
                    t.raw_set("retry_attempt", attempt)?;
                    t.raw_set("retry_in", due)?;
                }
                out.raw_set(i + 1, t)?;
            }
            Ok(Some(out))
        });

        // host:wake_delay(hibernation_timeout) -> seconds until the wake-up push | nil
        m.add_method("wake_delay", |_, this, timeout: f64| {
            Ok(this.service.wake_delay(timeout))
        });

        // host:wake(user, identifier, now) -> events (the wake-up push)
        m.add_method_mut(
            "wake",
            |lua, this, (user, identifier, now): (String, String, f64)| {
                let jobs = this.service.wake(&user, &identifier, now);
                this.jobs_to_lua(lua, jobs, &user, &Value::Nil)
            },
        );

        // host:extended_hibernation(smacks_timeout) -> timeout | nil
        m.add_method("extended_hibernation", |_, this, original: f64| {
            Ok(this.service.extended_hibernation(original))
        });

        // host:smacks_cancel(session_id) -> whether a batch was waiting
        m.add_method_mut("smacks_cancel", |_, this, session: String| {
            this.batch_objects.remove(&session);
            Ok(this.service.smacks_cancel(&session))
        });

        // MUC: host:muc_wants(room_jid, stanza) -> nil | "members" | { nick, … }
        m.add_method_mut("muc_wants", |lua, this, (room, stanza): (String, Table)| {
            let facts = read::stanza_facts(lua, &stanza)?;
            if facts.body.is_none() {
                return Ok(Value::Nil);
            }
            let refs = references(&stanza)?;
            Ok(match this.service.muc_wants(&room, &facts, refs) {
                Wants::Nothing => Value::Nil,
                Wants::Members => Value::String(lua.create_string("members")?),
                Wants::Nicks(nicks) => Value::Table(lua.create_sequence_from(nicks)?),
            })
        });

        // MUC: host:muc_push(room_jid, stanza, members, now) -> events
        // members: { { jid = real bare JID, joined = bool, affiliation = … }, … },
        // their registrations loaded first.
        m.add_method_mut(
            "muc_push",
            |lua, this, (room, stanza, members, now): (String, Table, Table, f64)| {
                let facts = read::stanza_facts(lua, &stanza)?;
                let members = members_of(&members)?;
                let key = facts.stable_key(&room);
                let pushes = this.service.muc_push(&facts, key.as_deref(), &members, now);
                let out = lua.create_table()?;
                let original = Value::Table(stanza);
                for (user, jobs) in pushes {
                    this.append_jobs(lua, &out, jobs, &user, &original)?;
                }
                Ok(out)
            },
        );

        // MUC: host:muc_bounced(room_jid, error_stanza, user, nicks, now) -> events
        // A kickable error from an occupant (user: real bare JID, loaded
        // first; nicks: its nickname in the room and its registered one).
        m.add_method_mut(
            "muc_bounced",
            |lua, this, (room, stanza, user, nicks, now): (String, Table, String, Table, f64)| {
                let Some(id) = table_field(&stanza, "attr")?
                    .map(|a| str_field(&a, "id"))
                    .transpose()?
                    .flatten()
                else {
                    return lua.create_table();
                };
                let nicks: Vec<String> =
                    nicks.sequence_values::<String>().collect::<Result<_>>()?;
                let nick_refs: Vec<&str> = nicks.iter().map(String::as_str).collect();
                let (_, condition) = error_of(&stanza)?;
                // The body the bounce echoes (checked against the one sent).
                let echoed = read::stanza_facts(lua, &stanza)?.body;
                let Some(facts) =
                    this.service
                        .muc_bounced(&room, &id, &condition, &nick_refs, echoed.as_deref())
                else {
                    return lua.create_table();
                };
                let member = [Member {
                    jid: user.clone(),
                    joined: false,
                    outcast: false,
                }];
                let key = facts.stable_key(&room);
                let pushes = this.service.muc_push(&facts, key.as_deref(), &member, now);
                let out = lua.create_table()?;
                if pushes.is_empty() {
                    return Ok(out);
                }
                // The room message that bounced, as the core remembers it.
                let original = Value::Table(convert::message_from_facts(
                    lua,
                    &this.stanza_mt,
                    &facts,
                    &user,
                )?);
                for (user, jobs) in pushes {
                    this.append_jobs(lua, &out, jobs, &user, &original)?;
                }
                Ok(out)
            },
        );

        // MUC: host:muc_admit(user_bare_jid, local, now) -> true | nil, type, condition, text
        m.add_method_mut(
            "muc_admit",
            |lua, this, (user, local, now): (String, bool, f64)| match this
                .service
                .muc_admit(&user, local, now)
            {
                Ok(()) => Ok(MultiValue::from_vec(vec![Value::Boolean(true)])),
                Err(e) => err_values(lua, &e),
            },
        );

        // MUC: host:muc_note(user_bare_jid, had, has): a remote user's
        // registrations went from any/none to any/none
        m.add_method_mut(
            "muc_note",
            |_, this, (user, had, has): (String, bool, bool)| {
                this.service.muc_note(&user, had, has);
                Ok(())
            },
        );

        // host:cancel(push_id): an event handler blocked the push
        m.add_method_mut("cancel", |_, this, id: String| {
            this.service.cancel(&id);
            Ok(())
        });

        // host:response(stanza, now) -> nil (not ours) | { kind=…, … }
        // host:response(stanza, now) -> nil (not an answer to one of our
        // pushes) | "delivered", rtt, user_to_write|nil, from | kind, details
        // (a table: user, identifier, count, expected, error_type,
        // condition, from). The common case returns no table.
        m.add_method_mut("response", |lua, this, (stanza, now): (Table, f64)| {
            let nothing = || Ok((Value::Nil, Value::Nil, Value::Nil, Value::Nil));
            if this.service.pending() == 0 {
                return nothing();
            }
            let [kind, id, from] = read::read_attrs(lua, &stanza, [c"type", c"id", c"from"])?;
            let (Some(id), Some(from)) = (id, from) else {
                return nothing();
            };
            let (err_type, condition);
            let response = match kind.as_deref() {
                Some("result") => Response::Result,
                Some("error") => {
                    (err_type, condition) = error_of(&stanza)?;
                    Response::Error {
                        type_: &err_type,
                        condition: &condition,
                    }
                }
                _ => return nothing(),
            };
            // Only an answer that is not a plain delivery gets a table.
            let (kind, t) = match this.service.response(&id, &from, response.clone(), now) {
                Answer::NotOurs => return nothing(),
                Answer::Delivered { rtt, user, reset } => {
                    let user = match reset {
                        true => Value::String(lua.create_string(&user)?),
                        false => Value::Nil,
                    };
                    return Ok((
                        Value::String(lua.create_string("delivered")?),
                        Value::Number(rtt),
                        user,
                        Value::String(lua.create_string(&from)?),
                    ));
                }
                Answer::WrongSender { expected } => {
                    let t = lua.create_table()?;
                    t.raw_set("expected", expected)?;
                    ("wrong-sender", t)
                }
                Answer::Load { user } => {
                    let t = lua.create_table()?;
                    t.raw_set("user", user)?;
                    ("load", t)
                }
                Answer::Temporary {
                    user,
                    identifier,
                    retry,
                } => {
                    let t = lua.create_table()?;
                    match retry {
                        Scheduled::In(delay) => t.raw_set("retry_in", delay)?,
                        Scheduled::Merged(delay) => {
                            t.raw_set("retry_in", delay)?;
                            t.raw_set("merged", true)?;
                        }
                        Scheduled::GaveUp => t.raw_set("gave_up", true)?,
                        Scheduled::Gone => t.raw_set("gone", true)?,
                        Scheduled::Full => t.raw_set("full", true)?,
                    }
                    t.raw_set("user", user)?;
                    t.raw_set("identifier", identifier)?;
                    ("temporary", t)
                }
                Answer::Counted {
                    user,
                    identifier,
                    count,
                } => {
                    let t = lua.create_table()?;
                    t.raw_set("user", user)?;
                    t.raw_set("identifier", identifier)?;
                    t.raw_set("count", count)?;
                    ("counted", t)
                }
                Answer::Disable {
                    user,
                    identifier,
                    count,
                } => {
                    let t = lua.create_table()?;
                    t.raw_set("user", user)?;
                    t.raw_set("identifier", identifier)?;
                    t.raw_set("count", count)?;
                    ("disable", t)
                }
            };
            if let Response::Error { type_, condition } = response {
                t.raw_set("error_type", type_)?;
                t.raw_set("condition", condition)?;
            }
            t.raw_set("from", from)?;
            Ok((
                Value::String(lua.create_string(kind)?),
                Value::Table(t),
                Value::Nil,
                Value::Nil,
            ))
        });

        // host:expire(now) -> number of pushes nobody answered in time
        m.add_method_mut("expire", |_, this, now: f64| Ok(this.service.expire(now)));

        // host:stats() -> { users=…, registrations=…, pending=… }
        m.add_method("stats", |lua, this, ()| {
            let t = lua.create_table()?;
            t.raw_set("users", this.service.loaded_users())?;
            t.raw_set("registrations", this.service.loaded_registrations())?;
            t.raw_set("pending", this.service.pending())?;
            t.raw_set("batches", this.service.batches())?;
            Ok(t)
        });

        // host:error_count(user, identifier) -> number
        m.add_method(
            "error_count",
            |_, this, (user, identifier): (String, String)| {
                Ok(this.service.error_count(&user, &identifier))
            },
        );

        activity::add_methods(m);
    }
}

/// `new(host, options, stanza_mt[, get_handlers]) -> Host, { problems }`
fn new_host(
    lua: &Lua,
    (host, options, stanza_mt, get_handlers): (String, Value, Table, Option<mlua::Function>),
) -> Result<(Host, Table)> {
    let raw: RawConfig = match options {
        Value::Nil => RawConfig::default(),
        v => lua.from_value(v)?,
    };
    let (config, problems) = Config::from_raw(&raw);
    Ok((
        Host {
            service: PushService::new(&host, config),
            stanza_mt,
            payload_tables: lua.create_table()?,
            get_handlers,
            batch_objects: HashMap::new(),
        },
        lua.create_sequence_from(problems)?,
    ))
}

#[mlua::lua_module(skip_memory_check)]
fn cloud_notify(lua: &Lua) -> Result<Table> {
    let exports = lua.create_table()?;
    exports.set("new", lua.create_function(new_host)?)?;
    exports.set("version", env!("CARGO_PKG_VERSION"))?;
    // Bytes the library's allocations hold (all hosts), for admins and benchmarks.
    exports.set(
        "heap_bytes",
        lua.create_function(|_, ()| Ok(crate::memory::live_bytes()))?,
    )?;
    // Diagnostics: what push decisions read from a stanza, as text.
    exports.set(
        "stanza_facts",
        lua.create_function(|lua, stanza: Table| {
            Ok(format!("{:?}", read::stanza_facts(lua, &stanza)?))
        })?,
    )?;
    Ok(exports)
}
