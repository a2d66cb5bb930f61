//! The core object: one VirtualHost's [`PushService`] as a Lua userdata,
//! and the conversions every method file shares (events, stanza keys).

use super::convert::{lua_to_element, str_field};
use super::raw::events::{self, Batch, Tables};
use super::raw::read;
use super::raw::write::{Shape, OPTION_SLOTS};
use crate::bounded::Slots;
use crate::config::{Config, RawConfig};
use crate::facts::StanzaFacts;
use crate::registration::Registration;
use crate::service::{PushJob, PushService, Slot, StanzaKey, StanzaSource};
use minidom::Element;
use mlua::{Function, Lua, LuaSerdeExt, Result, Table, UserData, UserDataMethods, Value};
use std::cell::RefCell;
use std::collections::HashMap;

/// Field set on a stanza object that has no stable key of its own (no
/// stanza-id, no id), so that the same object is recognised again.
const OBJECT_KEY: &str = "_cloud_notify_key";

/// One VirtualHost's push service, as Lua sees it (the shims call it
/// `core`).
pub struct Core {
    /// The core.
    pub service: PushService,
    /// util.stanza's metatable, for the stanzas handed back to Lua.
    pub stanza_mt: Table,
    /// Notification payload tables shared between pushes (see
    /// [`events::shared_payloads`]), by the core's payload number, in 8
    /// bounded slots: the one cache of payloads.
    payload_tables: Table,
    /// `<publish-options>` elements shared between pushes, and which
    /// form is in which slot (see [`super::raw::write::OptionsCache`]).
    option_tables: (Table, Slots),
    /// The host's `events.get_handlers`, to tell whether anything hooks
    /// `cloud_notify/push` (then no payload is shared).
    get_handlers: Option<Function>,
    /// Per smacks session, the stanza objects of its waiting batch: the
    /// `original_stanza` of its important and of its unimportant push.
    pub batch_objects: HashMap<String, BatchObjects>,
    /// The registration the last `<enable/>` built (the requester's bare
    /// JID, and it), kept while nothing hooks `cloud_notify/registration`:
    /// the `push_info` handed to Lua is then that registration unchanged,
    /// and its plan takes it back instead of reading the table again. One
    /// slot: a later enable replaces it.
    pub enabled: RefCell<Option<(String, Registration)>>,
}

/// The stanza objects a waiting smacks batch was made of.
#[derive(Default)]
pub struct BatchObjects {
    /// The batch's (last) important stanza.
    pub important: Option<Table>,
    /// The batch's (last) unimportant stanza.
    pub unimportant: Option<Table>,
}

impl Core {
    /// `cloud_notify.new(host, options, stanza_mt[, get_handlers])`: the host
    /// object and the option problems the core found (messages to log).
    pub fn new(
        lua: &Lua,
        (host, options, stanza_mt, get_handlers): (String, Value, Table, Option<Function>),
    ) -> Result<(Core, Table)> {
        let raw: RawConfig = match options {
            Value::Nil => RawConfig::default(),
            v => lua.from_value(v)?,
        };
        let (config, problems) = Config::from_raw(&raw);
        let host = Core {
            service: PushService::new(&host, config),
            stanza_mt,
            payload_tables: lua.create_table()?,
            // (made at its size: filling a slot never grows it)
            option_tables: (
                lua.create_table_with_capacity(OPTION_SLOTS * 2, 0)?,
                Slots::new(OPTION_SLOTS),
            ),
            get_handlers,
            batch_objects: HashMap::new(),
            enabled: RefCell::new(None),
        };
        Ok((host, lua.create_sequence_from(problems)?))
    }

    /// Appends the `cloud_notify/push` event payloads of `jobs` to `out`.
    pub fn append_events(
        &mut self,
        lua: &Lua,
        out: &Table,
        mut jobs: Vec<PushJob>,
        user: &str,
        original: &Value,
    ) -> Result<()> {
        // (Push 2.0 pushes are messages of their own, made there: taken out
        // in place, so that without any nothing is allocated)
        let push2: Vec<PushJob> = jobs
            .extract_if(.., |j| j.registration.push2.is_some())
            .collect();
        if !push2.is_empty() {
            super::push2::append_events(self, lua, out, &push2, user, original)?;
        }
        self.append_publishes(lua, out, jobs, user, original)
    }

    /// Appends the `cloud_notify/push` events of XEP-0357 pushes.
    fn append_publishes(
        &mut self,
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
        let mut cached = vec![false; jobs.len()];
        let share = match &self.get_handlers {
            Some(get_handlers) => events::shared_payloads(
                lua,
                &self.payload_tables,
                get_handlers,
                &jobs,
                &mut cached,
            )?,
            None => false,
        };
        // The payloads not in the cache, built once per number (the Lua
        // cache of payload tables is the only one: the core keeps numbers).
        let mut built: Vec<(u64, Element)> = Vec::new();
        for (job, &hit) in jobs.iter().zip(&cached) {
            if !hit && !built.iter().any(|(id, _)| *id == job.payload_id) {
                built.push((job.payload_id, job.payload()));
            }
        }
        let payloads: Vec<Option<&Element>> = jobs
            .iter()
            .zip(&cached)
            .map(|(job, &hit)| {
                let found = built.iter().find(|(id, _)| *id == job.payload_id);
                (!hit).then(|| found.map(|(_, e)| e)).flatten()
            })
            .collect();
        let shapes: Vec<Option<Shape>> = payloads
            .iter()
            .map(|payload| payload.map(|p| Shape::of(p, crate::NS_PUBSUB)))
            .collect();
        // (a kept copy or a made message as `original_stanza`, written
        // from its element: only for handlers, so not while sharing)
        let origins: Vec<Option<Shape>> = jobs
            .iter()
            .map(|j| {
                j.origin
                    .as_ref()
                    .filter(|_| !share)
                    .map(|o| Shape::of(o.element(), crate::NS_CLIENT))
            })
            .collect();
        let batch = Batch {
            host: &self.service.host,
            user,
            jobs: &jobs,
            payloads: &payloads,
            shapes: &shapes,
            origins: &origins,
            share,
        };
        let tables = Tables {
            out,
            stanza_mt: &self.stanza_mt,
            original,
            payloads: &self.payload_tables,
            options: (&self.option_tables.0, &mut self.option_tables.1),
        };
        events::append(lua, tables, &batch)
    }

    /// Whether anything hooks `cloud_notify/push` now (then pushes hand
    /// their stanza to handlers, and those that go out later keep a copy).
    /// Without `get_handlers`, no.
    pub fn hooked(&self) -> Result<bool> {
        Ok(self.handlers("cloud_notify/push")?.unwrap_or(false))
    }

    /// Whether anything hooks `cloud_notify/registration` now (then a
    /// handler may have changed `push_info`: see [`Core::enabled`]).
    /// Without `get_handlers`, as if something did.
    pub fn registration_hooked(&self) -> Result<bool> {
        Ok(self.handlers("cloud_notify/registration")?.unwrap_or(true))
    }

    /// Whether anything hooks `event` now; `None` without `get_handlers`.
    fn handlers(&self, event: &str) -> Result<Option<bool>> {
        match &self.get_handlers {
            Some(get_handlers) => Ok(Some(!get_handlers.call::<Value>(event)?.is_nil())),
            None => Ok(None),
        }
    }

    /// The event's stanza for the core to keep a copy of ([`crate::origin`]),
    /// while anything hooks `cloud_notify/push`.
    pub fn source_of(&self, stanza: &Table) -> Result<(Option<StanzaSource>, bool)> {
        let hooked = self.hooked()?;
        if !hooked && !self.service.push2_in_use() {
            return Ok((None, false));
        }
        let stanza = stanza.clone();
        let source: StanzaSource = Box::new(move |slot| match slot {
            Slot::Event => lua_to_element(&stanza, crate::NS_CLIENT).ok(),
            Slot::Important | Slot::Unimportant => None,
        });
        Ok((Some(source), hooked))
    }

    /// A smacks batch's stanzas for the core to keep copies of, as
    /// [`Core::source_of`].
    pub fn batch_source(&self, objects: &BatchObjects) -> Result<(Option<StanzaSource>, bool)> {
        let hooked = self.hooked()?;
        if !hooked && !self.service.push2_in_use() {
            return Ok((None, false));
        }
        let (important, unimportant) = (objects.important.clone(), objects.unimportant.clone());
        Ok((
            Some(Box::new(move |slot| {
                let object = match slot {
                    Slot::Important => important.as_ref(),
                    Slot::Unimportant => unimportant.as_ref(),
                    Slot::Event => None,
                };
                object.and_then(|t| lua_to_element(t, crate::NS_CLIENT).ok())
            })),
            hooked,
        ))
    }

    /// A stanza's facts and the key recognising its copies for `user`
    /// (the core's [`PushService::stanza_key`]; a new key is stored on
    /// the object).
    pub fn facts_and_key(
        &self,
        lua: &Lua,
        stanza: &Table,
        user: &str,
    ) -> Result<(StanzaFacts, String)> {
        let facts = read::stanza_facts(lua, stanza)?;
        let on_object = || str_field(stanza, OBJECT_KEY);
        let key = match self.service.stanza_key(&facts, user, on_object)? {
            StanzaKey::New(key) => {
                stanza.raw_set(OBJECT_KEY, key.as_str())?;
                key
            }
            StanzaKey::Stable(key) | StanzaKey::OnObject(key) => key,
        };
        Ok((facts, key))
    }
}

impl UserData for Core {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        super::registrations::add_methods(m);
        super::pushes::add_methods(m);
        super::smacks::add_methods(m);
        super::muc::add_methods(m);
        super::answers::add_methods(m);
        super::activity::add_methods(m);
        super::services::add_methods(m);
        super::chat_settings::add_methods(m);
        super::push2::add_methods(m);
    }
}
