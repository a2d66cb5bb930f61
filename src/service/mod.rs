//! One host's push service: registrations, pushes, app-server answers.
//!
//! Every decision of the module is taken here; the binding converts, the
//! shim does I/O. One instance per VirtualHost: nothing is shared.

use crate::calls::{CallStep, Signal};
use crate::chat_settings::{Level, Pings, RoomSetting};
use crate::coalesce::{Added, Batches};
use crate::config::Config;
use crate::error::StanzaError;
use crate::facts::StanzaFacts;
use crate::ids::next_push_id;
use crate::importance::{is_important, is_urgent};
use crate::notification::{summarize, Summary};
use crate::origin::{made, Origin, Origins};
use crate::pending::{Pending, PendingPush};
use crate::registration::{
    disable_matches, registration_from_enable, EnableRequest, Registration, Requester,
};
use crate::registry::{Plan, Registry};
use crate::seen::{Seen, DEFAULT_CAPACITY as SEEN_CAPACITY};
use crate::service_stats::{condition_label, Answered, ServiceStats, Tally};

pub use crate::vocabulary::*;

mod answers;
mod chat_settings;
mod counts;
mod events;
mod muc;
mod push2;
mod registrations;
mod retries;
mod smacks;

/// XEP-0492: whether a group chat message is pushed to a user whose
/// setting for the room is `level` (none: as without settings). A call is
/// pushed whatever the setting.
fn wants_push(
    level: Option<Level>,
    facts: &StanzaFacts,
    pings: &Pings,
    user_jid: &str,
    nick: Option<&str>,
    room: &str,
) -> bool {
    match level {
        None | Some(Level::Always) => true,
        _ if facts.propose || facts.call.is_some() => true,
        Some(Level::Never) => false,
        Some(Level::OnMention) => {
            crate::chat_settings::mentions(facts.body.as_deref(), pings, user_jid, nick, room)
        }
    }
}

/// Seconds an app server may stay unreachable (route failures, pushes
/// unanswered, no result) before its registration is removed: an outage
/// of hours deletes nothing, a retired or mistyped app server goes.
pub const UNREACHABLE_MAX: f64 = 72.0 * 3600.0;

/// The tally of an app server nothing was pushed to yet.
static NO_TALLY: Tally = Tally {
    sent: 0,
    delivered: 0,
    rtt_count: 0,
    wait: 0,
    errors: 0,
    timeouts: 0,
    route: 0,
    rtt_sum: 0.0,
    conditions: Vec::new(),
};

/// Room messages remembered per MUC host for error bounces.
const RECENT_ROOM_MESSAGES: usize = 4096;
/// Bytes the recent room messages may hold (ids, senders, mentioned
/// nicknames: no bodies), per MUC host.
const RECENT_ROOM_BYTES: usize = 1024 * 1024;
/// Most count writes [`PushService::counts_aged`] lists at a time.
pub const COUNTS_WRITES_PER_TICK: usize = 1000;

/// One host's push service: every decision of the module.
pub struct PushService {
    /// The validated options.
    pub config: Config,
    /// The VirtualHost (or MUC component) it serves.
    pub host: String,
    registry: Registry,
    pending: Pending,
    /// Which stanza was pushed to which registration.
    seen: Seen,
    /// Smacks stanzas waiting to be coalesced, per session.
    batches: Batches,
    /// Recent room messages (MUC), for error bounces.
    recent: crate::muc::Recent,
    /// Remote users' registrations (MUC).
    quota: crate::quota::RemoteQuota,
    /// Pushes to retry after `wait` errors.
    retries: crate::retry::Retries,
    /// Calls whose propose was pushed, until they end.
    calls: crate::calls::Calls,
    /// Sessions' activity and the pushes held back meanwhile.
    grace: crate::grace::Grace,
    /// Users whose error counts are to be written.
    dirty: crate::counts::Dirty,
    /// Unread counts of users not in memory ([`crate::counts::Kept`]).
    counts_kept: crate::counts::Kept,
    /// Changes of unread counts so far, and how many the last counts
    /// record written holds; when it was written (seconds).
    counts_changes: (u64, u64, f64),
    /// Whether the counts stored in registration records count (no counts
    /// record was read: the module ran without one before).
    counts_from_records: bool,
    /// The latest time an event brought (seconds since the epoch): when
    /// counts changed, for their write-back.
    clock: f64,
    /// The last error condition and time per registration (for admins).
    last_errors: crate::bounded::Fifo<(String, String), (String, f64)>,
    /// The numbers of recent summaries' payloads (with the default
    /// privacy there are only two).
    payloads: PayloadIds,
    /// Copies of stanzas kept for pushes that go out later.
    origins: Origins,
    /// The event's stanza, while the binding handles an event
    /// ([`PushService::with_source`]).
    source: Option<StanzaSource>,
    /// Which of the event's stanzas the pushes being made are about.
    slot: Slot,
    /// Something hooks `cloud_notify/push` (then every push keeps a copy
    /// of its stanza for later; else only those to Push 2.0 registrations).
    source_hooked: bool,
    /// While the archive's event is handled: the user's bare JID and the
    /// message's archive id, which its kept copy carries (that event hands
    /// over a copy without its `<stanza-id/>`).
    archive_tag: Option<(String, String)>,
    /// The copy made of it (per slot), once asked for.
    kept: Option<(Slot, Option<Origin>)>,
    /// When raising `cloud_notify/push` handlers were last logged.
    failures: crate::throttle::Throttle,
    /// Per app server: pushes and their answers ([`ServiceStats`]).
    stats: ServiceStats,
    /// The users' XEP-0492 chat notification settings.
    settings: crate::chat_settings::ChatSettings,
    /// Subscription requests pushed lately.
    subscriptions: crate::subscriptions::Subscriptions,
    /// Which users have registrations, of either protocol (Push 2.0's:
    /// `mod_push2`'s store); shared with the binding's cheap question
    /// ([`PushService::known_sets`]).
    known: crate::known::Shared,
    /// Push 2.0's signed VAPID tokens, reused while fresh.
    push2_tokens: crate::push2::tokens::Tokens,
    /// The grace period held a push since [`PushService::after_holding`]
    /// was last asked.
    newly_held: bool,
}

/// The payload numbers of a few recent summaries ([`PushJob::payload_id`]).
struct PayloadIds {
    entries: Vec<(Summary, u64)>,
    serial: u64,
}

impl PayloadIds {
    const CAPACITY: usize = 4;

    fn get(&mut self, summary: &Summary) -> u64 {
        if let Some((_, id)) = self.entries.iter().find(|(s, _)| s == summary) {
            return *id;
        }
        if self.entries.len() >= Self::CAPACITY {
            self.entries.remove(0);
        }
        self.serial += 1;
        self.entries.push((summary.clone(), self.serial));
        self.serial
    }
}

use crate::bare;

/// The chat a message counts in: its sender's bare JID (a room's, for a
/// room message), as a [`crate::counts::chat_key`]; the "other chats"
/// entry for a message without sender.
/// What [`PushService::deliver`] works out before it walks the
/// registrations.
struct Setup {
    /// The pushes end a hibernated session's extended timeout.
    wakes: bool,
    /// The copy of the stanza that later pushes (a release, a retry) carry.
    keep: Option<Origin>,
    /// The chat an important message counts for.
    chat: Option<u64>,
    /// Pushes of this kind count unread messages.
    counted_kind: bool,
    /// The grace period may hold pushes of this kind.
    graced: bool,
    /// The summary a held push keeps (bounded).
    kept: Option<Summary>,
}

/// Whether a push of `summary` ends a hibernated session's extended
/// timeout: it is important, or importance is not told apart (no
/// placeholder body).
fn wakes(config: &Config, summary: &Summary) -> bool {
    summary.important() || config.important_body.is_empty()
}

fn chat_of(msg: &StanzaFacts) -> u64 {
    msg.from
        .as_deref()
        .map_or(crate::counts::OTHER, |f| crate::counts::chat_key(bare(f)))
}

/// Adds `more` to `jobs`, taking `more` as it is when there are none yet.
/// (A Vec of jobs grown or extended from empty takes room for four, 1,248
/// bytes: a request beyond what glibc's per-thread cache holds, which
/// makes its malloc first merge the small freed chunks its fastbins keep,
/// at a cost that grows with their number; a push's jobs are sized to the
/// user's registrations instead.)
fn add_jobs(jobs: &mut Vec<PushJob>, more: Vec<PushJob>) {
    if jobs.is_empty() {
        *jobs = more;
    } else {
        jobs.extend(more);
    }
}

/// A publish of `summary` to `reg`, with a fresh id and the number of the
/// summary's payload (not yet awaited: see `PushService::await_answer`).
fn new_job(
    payloads: &mut PayloadIds,
    reg: &Registration,
    mut summary: Summary,
    (kind, wakes): (PushKind, bool),
    origin: Option<Origin>,
) -> PushJob {
    if let (Some(p2), None) = (&reg.push2, &summary.wire) {
        // (a release or a retry whose wire was not kept: by importance)
        summary.wire = Some(crate::push2::decide::fallback(p2, summary.important()));
    }
    let payload_id = payloads.get(&summary);
    PushJob {
        id: next_push_id(),
        registration: reg.for_push(),
        summary,
        kind,
        wakes,
        payload_id,
        origin,
        archive_id: None,
    }
}

/// The `message-count` a push carries: the registration's unread count;
/// at least 1 (what app servers have always been sent) except on a push
/// that lowers it; 1 on the MUC module's pushes, which count nothing.
fn message_count(kind: PushKind, reg: &Registration, with_counts: bool) -> u32 {
    if !with_counts {
        return 1; // (as the reference: whatever counts are stored)
    }
    match kind {
        PushKind::Read => reg.counts.total(),
        PushKind::Muc => 1,
        _ => reg.counts.total().max(1),
    }
}

/// The bare JID of a user key: the main module keys users by their local
/// part on `host`, the MUC module by their bare JID.
pub fn bare_jid(host: &str, user: &str) -> String {
    if user.contains('@') {
        user.to_owned()
    } else {
        format!("{user}@{host}")
    }
}

/// A bodiless message to the user, for a push whose stanza was not kept
/// (nothing read `original_stanza` when it was first pushed).
fn to_user(host: &str, user: &str) -> Origin {
    made(Some(&bare_jid(host, user)), None, "chat")
}

impl PushService {
    /// A service for `host` with these options, nothing loaded yet.
    pub fn new(host: &str, config: Config) -> Self {
        PushService {
            registry: Registry::new(config.cache_size, config.max_devices),
            pending: Pending::new(config.max_pending, config.response_timeout),
            host: host.to_owned(),
            seen: Seen::new(SEEN_CAPACITY),
            batches: Batches::new(config.max_pending),
            recent: crate::muc::Recent::new(RECENT_ROOM_MESSAGES, RECENT_ROOM_BYTES),
            quota: crate::quota::RemoteQuota::new(config.muc_limits),
            retries: crate::retry::Retries::new(config.retry_delays.clone(), config.max_retries),
            calls: crate::calls::Calls::default(),
            grace: crate::grace::Grace::new(config.grace_period as f64, config.push2),
            dirty: crate::counts::Dirty::default(),
            counts_kept: crate::counts::Kept::default(),
            counts_changes: (0, 0, 0.0),
            counts_from_records: true,
            clock: 0.0,
            last_errors: crate::bounded::Fifo::new(config.max_pending),
            payloads: PayloadIds {
                serial: 0,
                entries: Vec::new(),
            },
            origins: Origins::default(),
            source: None,
            slot: Slot::Event,
            source_hooked: false,
            archive_tag: None,
            kept: None,
            failures: Default::default(),
            stats: ServiceStats::default(),
            settings: Default::default(),
            subscriptions: Default::default(),
            known: crate::known::Shared::new(!config.push2),
            push2_tokens: Default::default(),
            newly_held: false,
            config,
        }
    }

    /// Runs `f` (one event's handling) with `source` giving the event's
    /// stanza when a push needs a copy of it ([`crate::origin`]); the
    /// binding installs one only while `cloud_notify/push` is hooked.
    pub fn with_source<T>(
        &mut self,
        (source, hooked): (Option<StanzaSource>, bool),
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        self.source = source;
        self.source_hooked = hooked;
        self.slot = Slot::Event;
        self.kept = None;
        let out = f(self);
        self.source = None;
        self.kept = None;
        out
    }

    /// The kept copy of the stanza the pushes being made are about, if
    /// the event has a source (made once per slot).
    fn event_origin(&mut self) -> Option<Origin> {
        if let Some((slot, origin)) = &self.kept {
            if *slot == self.slot {
                return origin.clone();
            }
        }
        let mut element = self.source.as_mut().and_then(|source| source(self.slot));
        if let Some((by, id)) = &self.archive_tag {
            element = element.map(|e| crate::push2::envelope::with_archive_id(e, by, Some(id)));
        }
        let placeholder = &self.config.important_body;
        let origin = element.map(|e| self.origins.keep(e, placeholder));
        self.kept = Some((self.slot, origin.clone()));
        origin
    }

    /// A `cloud_notify/push` handler raised on a push of `kind`: `Some(n)`
    /// to log it (`n` failures of that kind not logged since the last
    /// line), `None` to count it only ([`crate::throttle`]).
    pub fn handler_failed(&mut self, kind: PushKind, now: f64) -> Option<u32> {
        self.failures.failed(kind, now)
    }

    /// `user` has registrations in the store (read when the module loads).
    /// A user in memory is noted as the registry holds them already
    /// (the list may be older than what was loaded since).
    pub fn note_known(&mut self, user: &str) {
        if !self.registry.is_loaded(user) {
            self.known.get_mut().xep0357.note(user, true);
        }
    }

    /// Every user with registrations in the store was noted: a user not
    /// among them needs no read ([`crate::known`]).
    pub fn known_complete(&mut self) {
        self.known.get_mut().xep0357.completed();
    }

    /// Users known to have registrations.
    pub fn known_users(&self) -> usize {
        self.known.get().xep0357.len()
    }

    /// The sets of users with registrations, for a reader that asks only
    /// [`crate::known::Sets::quick`]: whenever it answers, it answers as
    /// [`PushService::interest`] does (`Nothing` or not).
    pub fn known_sets(&self) -> crate::known::Shared {
        self.known.clone()
    }

    /// Bytes of stanza copies kept now ([`crate::origin::MAX_KEPT_BYTES`] at most).
    pub fn kept_bytes(&self) -> usize {
        self.origins.used()
    }

    /// Whether the user's registrations are in memory.
    pub fn is_loaded(&self, user: &str) -> bool {
        self.registry.is_loaded(user)
    }

    /// The user's registrations in memory; `None`: not loaded.
    pub fn registrations(&self, user: &str) -> Option<&[Registration]> {
        self.registry.peek(user)
    }

    /// Whether `user` is known to have no registration of either
    /// protocol (one digest for both sets).
    fn rules_out(&self, user: &str) -> bool {
        self.known.get().rules_out(user)
    }

    /// Whether an event for `user` needs anything from the core: the one
    /// cheap question every event path asks before reading a stanza.
    pub fn interest(&self, user: &str) -> Interest {
        match self.registry.peek(user) {
            // (a user known to have none needs no read: [`crate::known`])
            None if self.rules_out(user) => Interest::Nothing,
            None => Interest::Load,
            Some([]) => Interest::Nothing,
            Some(_) => Interest::Pushes,
        }
    }

    /// [`PushService::interest`] for `archive-message-added`: a user with
    /// no session at all is the offline path's (nothing is loaded for them).
    pub fn archived_interest(&self, user: &str, has_sessions: bool) -> Interest {
        if has_sessions {
            self.interest(user)
        } else {
            Interest::Nothing
        }
    }

    /// The key recognising a stanza's copies for `user`: its stable key;
    /// for a stanza without one, the key stored on the object
    /// (`on_object`, asked only then) or a new one to store there.
    pub fn stanza_key<E>(
        &self,
        facts: &StanzaFacts,
        user: &str,
        on_object: impl FnOnce() -> Result<Option<String>, E>,
    ) -> Result<StanzaKey, E> {
        if let Some(key) = facts.stable_key(&bare_jid(&self.host, user)) {
            return Ok(StanzaKey::Stable(key));
        }
        Ok(match on_object()? {
            Some(key) => StanzaKey::OnObject(key),
            None => StanzaKey::New(format!("o:{}", next_push_id())),
        })
    }

    /// Users whose registrations are in memory.
    pub fn loaded_users(&self) -> usize {
        self.registry.users()
    }

    /// Registrations in memory.
    pub fn loaded_registrations(&self) -> usize {
        self.registry.registrations()
    }

    /// What a push awaiting its answer said (bounded as a retry keeps it).
    pub fn pending_summary(&self, id: &str) -> Option<&crate::notification::Summary> {
        self.pending.get(id).map(|p| &p.summary)
    }

    /// Pushes awaiting an answer.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The registry's name for a user (shared, not copied).
    fn user_key(&self, user: &str) -> std::rc::Rc<str> {
        self.registry.key(user).unwrap_or_else(|| user.into())
    }

    /// The clock in whole seconds, as the counts' write-back keeps it.
    fn second(&self) -> u32 {
        self.clock as u32
    }

    /// The user's error counts changed: to be written back.
    fn mark_dirty(&mut self, user: &str) {
        let key = self.user_key(user);
        self.dirty.mark(key, self.second());
    }

    /// The publishes for a stanza (or a ping, with none) to a user's
    /// registrations. `None` if the user's registrations are not loaded.
    ///
    /// With a `key` ([`StanzaFacts::stable_key`]), a registration that was
    /// already pushed that stanza, by any path, is skipped.
    ///
    /// A call's propose is pushed as [`PushKind::Call`] and remembered; its
    /// end (the caller's retract, an answer from one of the user's devices)
    /// goes as [`PushKind::CallEnd`] to the registrations it rang, whatever
    /// path brought it ([`crate::calls`]).
    pub fn notify(
        &mut self,
        user: &str,
        stanza: Option<&StanzaFacts>,
        key: Option<&str>,
        targets: Targets<'_>,
        kind: PushKind,
        now: f64,
    ) -> Option<Vec<PushJob>> {
        self.notify_n(user, stanza, key, targets, kind, 1, now)
    }

    /// [`PushService::notify`] for a push that stands for `n` important
    /// messages (a coalesced smacks batch).
    #[allow(clippy::too_many_arguments)]
    fn notify_n(
        &mut self,
        user: &str,
        stanza: Option<&StanzaFacts>,
        key: Option<&str>,
        targets: Targets<'_>,
        kind: PushKind,
        n: u32,
        now: f64,
    ) -> Option<Vec<PushJob>> {
        if self.registry.get(user)?.is_empty() {
            return Some(Vec::new());
        }
        let user_bare = bare_jid(&self.host, user);
        // A forged carbon (not from the user's own bare JID) is read as the
        // plain message it is.
        let plain;
        let stanza = match stanza {
            Some(f) if f.carbon.is_some() && !f.carbon_trusted(&user_bare) => {
                plain = f.clone().received_by(&user_bare);
                Some(&plain)
            }
            other => other,
        };
        let mut kind = kind;
        let mut targets = targets;
        let rang;
        let mut ringing = None;
        if let Some(msg) = stanza.map(StanzaFacts::effective) {
            if let Some((signal, id)) = msg.call_signal() {
                let own = msg.from.as_deref().is_some_and(|f| bare(f) == user_bare);
                let from = msg.from.as_deref();
                let signal = Signal {
                    kind: signal,
                    id,
                    from,
                    own,
                };
                match self.calls.step(user, signal, None, now) {
                    CallStep::Ordinary => {}
                    CallStep::Ring => {
                        kind = PushKind::Call;
                        ringing = Some((id, from));
                    }
                    CallStep::End(ids) => {
                        kind = PushKind::CallEnd;
                        rang = ids;
                        targets = Targets::Only(&rang);
                    }
                    CallStep::Moot => return Some(Vec::new()),
                }
            }
        }
        let summary = summarize(&self.config, stanza);
        // (no stanza of their own: from the host, to no one)
        let made = matches!(kind, PushKind::Ping | PushKind::Wake)
            .then(|| made(None, Some(&self.host), "headline"));
        let jobs = self.deliver(user, stanza, key, targets, kind, summary, n, made, now)?;
        if let Some((id, from)) = ringing {
            let identifiers = jobs.iter().map(|j| j.registration.identifier());
            self.calls.rang(user, id, from, identifiers, now);
        }
        Some(jobs)
    }

    /// The publishes of `summary` to the targeted registrations: each
    /// counts the important message(s) it stands for (`n`;
    /// [`crate::counts`]) and carries its registration's total; during a
    /// grace period, held back instead ([`crate::grace`]).
    #[allow(clippy::too_many_arguments)]
    fn deliver(
        &mut self,
        user: &str,
        stanza: Option<&StanzaFacts>,
        key: Option<&str>,
        targets: Targets<'_>,
        kind: PushKind,
        summary: Summary,
        n: u32,
        made: Option<Origin>,
        now: f64,
    ) -> Option<Vec<PushJob>> {
        self.clock = self.clock.max(now);
        let setup = self.deliver_setup(user, stanza, kind, &summary, &made);
        let (wakes, keep, chat) = (setup.wakes, setup.keep, setup.chat);
        let (counted_kind, graced, kept) = (setup.counted_kind, setup.graced, setup.kept);
        let user_bare = bare_jid(&self.host, user);
        let regs = self.registry.get_mut(user)?;
        let (room, mut jobs) = (targets.at_most(regs.len()), Vec::new());
        let mut counted = false;
        for reg in regs.iter_mut().filter(|r| targets.includes(r.identifier())) {
            // Push 2.0: the registration's matches decide, and how.
            let wire = match &reg.push2 {
                None => None,
                Some(p2) => {
                    let at = (user, user_bare.as_str(), reg.identifier(), now);
                    match push2::wire(p2, (&self.grace, &self.settings), at, stanza, kind) {
                        Some(wire) => Some(wire),
                        None => continue,
                    }
                }
            };
            if let Some(key) = key {
                if !self.seen.insert(user, key, reg.identifier()) {
                    continue;
                }
            }
            if graced && self.grace.holds(user, reg.identifier(), now) {
                let Some(chat) = chat else {
                    continue; // the user was there to see it
                };
                // (counted if it is pushed when the window ends)
                let held = kept.clone().unwrap_or_default();
                let origin = keep.clone();
                if self
                    .grace
                    .hold(user, reg.identifier(), chat, n, (&held, kind), origin, now)
                {
                    self.newly_held = true;
                    continue;
                }
            }
            if let (Some(chat), true) = (chat, counted_kind) {
                reg.counts.add_n(chat, n);
                counted = true;
            }
            let mut summary = summary.clone();
            summary.message_count = message_count(kind, reg, self.config.with_counts);
            summary.wire = wire;
            let origin = made.clone();
            // (room for the registrations, at the first job: `add_jobs`)
            jobs.reserve_exact(room.saturating_sub(jobs.capacity()));
            jobs.push(new_job(
                &mut self.payloads,
                reg,
                summary,
                (kind, wakes),
                origin,
            ));
        }
        if counted {
            self.counts_changed();
        }
        for job in &jobs {
            self.await_answer(user, job, 0, keep.clone(), now);
        }
        Some(jobs)
    }

    /// What a delivery needs besides the registrations ([`Setup`]).
    fn deliver_setup(
        &mut self,
        user: &str,
        stanza: Option<&StanzaFacts>,
        kind: PushKind,
        summary: &Summary,
        made: &Option<Origin>,
    ) -> Setup {
        let wakes = wakes(&self.config, summary);
        // What handlers get as `original_stanza` now (`made`, else the
        // event's own) and what a release or a retry will get (`keep`).
        let push2 = self
            .registry
            .peek(user)
            .is_some_and(|regs| regs.iter().any(|r| r.push2.is_some()));
        let keep = match made {
            Some(m) => Some(m.clone()),
            None if self.source_hooked || push2 => self.event_origin(),
            None => None,
        };
        // What an important message counts for: its chat (importance, not
        // the summary's body: without a placeholder body it still counts).
        let chat = stanza
            .filter(|f| kind.is_message() && is_important(f))
            .map(|f| chat_of(f.effective()));
        let graced = kind.is_graced() && self.grace.enabled();
        Setup {
            wakes,
            keep,
            chat,
            counted_kind: kind.counts() && self.config.with_counts,
            graced,
            kept: graced.then(|| crate::retry::kept_summary(summary, &self.config.important_body)),
        }
    }

    /// A message one of the user's own sessions sent (`identifier`: that
    /// session's registration, if any; `identifier2`: its Push 2.0 one,
    /// when it holds one of each): activity for the grace period, a
    /// chat marked read (a `displayed` marker), a call answered or declined
    /// on this device (the call's other registrations stop ringing).
    /// `None`: load the user's registrations, then ask again (only for a
    /// marker or a call signal).
    pub fn outgoing(
        &mut self,
        user: &str,
        (identifier, identifier2): (Option<&str>, Option<&str>),
        facts: &StanzaFacts,
        now: f64,
    ) -> Option<Vec<PushJob>> {
        if facts.kind != crate::facts::Kind::Message {
            return Some(Vec::new());
        }
        let worked = facts.body.as_deref().is_some_and(|b| !b.is_empty())
            || facts.chat_state
            || facts.displayed;
        if worked {
            self.grace
                .note_active_as(user, (identifier, identifier2), now);
        }
        // Only a chat read or a call's answer needs the registrations: a
        // plain message costs a sender no store read.
        match self.registry.get(user) {
            None if facts.displayed || facts.call_signal().is_some() => return None,
            None | Some([]) => return Some(Vec::new()),
            Some(_) => {}
        }
        let mut jobs = Vec::new();
        if facts.displayed {
            if let Some(to) = facts.to.as_deref() {
                add_jobs(&mut jobs, self.chat_read(user, bare(to), identifier, now));
            }
        }
        if let Some((signal, id)) = facts.call_signal() {
            let from = facts.from.as_deref();
            let signal = Signal {
                kind: signal,
                id,
                from,
                own: true,
            };
            if let CallStep::End(ids) = self.calls.step(user, signal, identifier, now) {
                let summary = summarize(&self.config, None);
                let targets = Targets::Only(&ids);
                // (the end answered here: from the caller, to the user)
                let to = bare_jid(&self.host, user);
                let made = made(Some(&to), self.calls.caller(user, id), "chat");
                add_jobs(
                    &mut jobs,
                    self.deliver(
                        user,
                        None,
                        None,
                        targets,
                        PushKind::CallEnd,
                        summary,
                        1,
                        Some(made),
                        now,
                    )
                    .unwrap_or_default(),
                );
            }
        }
        Some(jobs)
    }

    /// An item the user published to their own PEP service (`identifier`:
    /// the publishing session's registration, if any): a XEP-0490 MDS
    /// update marks its chat (the item id) read. `None` if not loaded.
    pub fn published(
        &mut self,
        user: &str,
        (identifier, identifier2): (Option<&str>, Option<&str>),
        node: &str,
        item: &str,
        now: f64,
    ) -> Option<Vec<PushJob>> {
        // (any other publish: nothing to look up, nothing loaded)
        if node != crate::NS_MDS || item.is_empty() {
            return Some(Vec::new());
        }
        if self.registry.get(user)?.is_empty() {
            return Some(Vec::new());
        }
        self.grace
            .note_active_as(user, (identifier, identifier2), now);
        Some(self.chat_read(user, bare(item), identifier, now))
    }

    /// The chat with `peer` (a bare JID) was read on a device of the
    /// user's: its messages no longer count; each registration whose count
    /// dropped (other than the reading device's) gets an unimportant push
    /// with its new count (about a message made from that chat to the user).
    fn chat_read(
        &mut self,
        user: &str,
        peer: &str,
        reader: Option<&str>,
        now: f64,
    ) -> Vec<PushJob> {
        self.clock = self.clock.max(now);
        let chat = crate::counts::chat_key(peer);
        self.grace.read(user, chat);
        if !self.config.with_counts {
            return Vec::new(); // (no counts: nothing to lower)
        }
        let Some(regs) = self.registry.get_mut(user) else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for reg in regs.iter_mut() {
            if reg.counts.read(chat) && Some(reg.identifier()) != reader {
                dropped.push(reg.identifier().to_owned());
            }
        }
        if dropped.is_empty() {
            return Vec::new();
        }
        self.counts_changed();
        let summary = summarize(&self.config, None);
        let to = bare_jid(&self.host, user);
        let made = made(Some(&to), Some(peer), "chat");
        self.deliver(
            user,
            None,
            None,
            Targets::Only(&dropped),
            PushKind::Read,
            summary,
            1,
            Some(made),
            now,
        )
        .unwrap_or_default()
    }

    /// A presence subscription request to the user from `requester` (a
    /// bare JID), who had `pending`
    /// requests waiting before it (`already`: this one among them;
    /// `subscription`: the requester's roster item's, if any — `from` or
    /// `both`: approved already, and the server answers for the user): an
    /// unimportant push with the number now
    /// pending to the registrations of devices without a live (or
    /// hibernated) session (`live`; a hibernated one gets the queued
    /// request by its smacks path); at most once per requester and a few
    /// times per user per hour ([`crate::subscriptions`]). `None` if not
    /// loaded.
    #[allow(clippy::too_many_arguments)]
    pub fn subscription_request(
        &mut self,
        user: &str,
        requester: &str,
        pending: u32,
        already: bool,
        subscription: Option<&str>,
        live: &[String],
        now: f64,
    ) -> Option<Vec<PushJob>> {
        let approved = matches!(subscription, Some("from" | "both"));
        // (a repeated request changes no count: no push, so that nobody can
        // buzz the user's phones by asking again and again)
        if self.registry.get(user)?.is_empty() || approved || already {
            return Some(Vec::new());
        }
        if !self.subscriptions.allow(user, requester, now) {
            return Some(Vec::new());
        }
        let mut summary = summarize(&self.config, None);
        summary.pending_subscriptions = self.config.with_counts.then(|| pending.saturating_add(1));
        let targets = Targets::Except(live);
        self.deliver(
            user,
            None,
            None,
            targets,
            PushKind::Subscription,
            summary,
            1,
            None,
            now,
        )
    }

    /// Records a sent push as awaiting its answer.
    /// `origin`: the stanza a retry of it is about.
    fn await_answer(
        &mut self,
        user: &str,
        job: &PushJob,
        attempt: u8,
        origin: Option<Origin>,
        now: f64,
    ) {
        self.stats.sent(job.registration.jid(), 1);
        self.pending.insert(
            &job.id,
            PendingPush {
                user: user.to_owned(),
                identifier: job.registration.identifier().to_owned(),
                jid: job.registration.jid().to_owned(),
                sent_at: now,
                attempt,
                had_errors: job.registration.errors > 0,
                summary: crate::retry::kept_summary(&job.summary, &self.config.important_body),
                origin,
            },
        );
    }

    /// `archive-message-added`: pushes for a message mod_mam archived for
    /// `for_user`, if it is addressed to them (`recipient`: the bare JID the
    /// stanza is addressed to), to the registrations of
    /// devices without a live (or hibernated) session — those are served by
    /// the smacks paths. Urgent stanzas go to every registration.
    ///
    /// Who it is addressed to: the bare part of the stanza's `to`, else
    /// (no `to`) `fallback_user` of this host (the sending session's
    /// user, as mod_mam archives a user's own outgoing messages).
    #[allow(clippy::too_many_arguments)]
    pub fn archived(
        &mut self,
        for_user: &str,
        stanza: &StanzaFacts,
        fallback_user: Option<&str>,
        archive_id: &str,
        live: Option<&[String]>,
        now: f64,
    ) -> Option<Vec<PushJob>> {
        // No session at all: the offline path serves this user.
        let Some(live) = live else {
            return Some(Vec::new());
        };
        let recipient = match stanza.to.as_deref() {
            Some(to) => Some(bare(to).to_owned()),
            None => fallback_user.map(|u| format!("{u}@{}", self.host)),
        };
        let owner_is_recipient = recipient.is_some_and(|r| {
            r.split_once('@')
                .is_some_and(|(node, host)| node == for_user && host == self.host)
        });
        if !owner_is_recipient {
            return Some(Vec::new());
        }
        let (targets, kind) = if is_urgent(stanza) {
            (Targets::All, PushKind::Urgent)
        } else {
            (Targets::Except(live), PushKind::Mam)
        };
        let key = crate::facts::archive_key(archive_id);
        // (what is kept for a release or a retry carries the archive id too)
        self.archive_tag = Some((bare_jid(&self.host, for_user), archive_id.to_owned()));
        let jobs = self.notify(for_user, Some(stanza), Some(&key), targets, kind, now);
        self.archive_tag = None;
        let mut jobs = jobs?;
        for job in jobs.iter_mut().filter(|j| j.registration.push2.is_some()) {
            job.archive_id = Some(archive_id.to_owned());
        }
        Some(jobs)
    }

    /// Per app server, what changed since the last call (for the metrics).
    pub fn service_changes(&mut self) -> Vec<(String, Tally)> {
        self.stats.take_changes()
    }

    /// Per app server, the totals since the module loaded (for the admin
    /// shell), with the registrations held in memory for it.
    pub fn service_totals(&self) -> Vec<(&str, &Tally, usize)> {
        let mut regs: std::collections::HashMap<&str, usize> = Default::default();
        for (_, list) in self.registry.iter() {
            for reg in list {
                *regs.entry(self.stats.label(reg.jid())).or_default() += 1;
            }
        }
        let mut out: Vec<(&str, &Tally, usize)> = self
            .stats
            .totals()
            .into_iter()
            .map(|(name, tally)| (name, tally, regs.remove(name).unwrap_or(0)))
            .collect();
        // (app servers nothing was pushed to yet)
        let mut idle: Vec<(&str, usize)> = regs.into_iter().collect();
        idle.sort();
        out.extend(idle.into_iter().map(|(name, n)| (name, &NO_TALLY, n)));
        out
    }

    /// Current error count of a registration.
    pub fn error_count(&self, user: &str, identifier: &str) -> u32 {
        self.registry
            .peek(user)
            .and_then(|regs| regs.iter().find(|r| r.identifier() == identifier))
            .map_or(0, |r| r.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    pub(super) fn service(max_errors: u32) -> PushService {
        PushService::new(
            "example.com",
            Config {
                max_errors,
                ..Config::default()
            },
        )
    }

    pub(super) fn enable(s: &mut PushService, user: &str, jid: &str, node: &str) -> String {
        let plan = planned_at(s, user, &format!("{user}@example.com"), (jid, node));
        let id = plan.regs.last().unwrap().identifier().to_owned();
        s.commit(user, plan);
        id
    }

    /// The plan of an enable of `node` at push.example by `bare_jid`, for
    /// `user` (loaded), not committed.
    pub(super) fn planned(s: &mut PushService, user: &str, bare_jid: &str, node: &str) -> Plan {
        planned_at(s, user, bare_jid, ("push.example", node))
    }

    /// [`planned`] at the app server `jid`.
    pub(super) fn planned_at(
        s: &mut PushService,
        user: &str,
        bare: &str,
        (jid, node): (&str, &str),
    ) -> Plan {
        let who = Requester {
            bare_jid: bare.into(),
            ..Default::default()
        };
        let req = EnableRequest {
            jid: Some(jid.into()),
            node: Some(node.into()),
            ..Default::default()
        };
        let reg = s.enable_request(req, &who, 1.0).unwrap();
        if !s.is_loaded(user) {
            s.load(user, vec![]);
        }
        s.plan_enable(user, reg, None).unwrap()
    }

    /// Romeo's pushes for an offline chat message.
    pub(super) fn offline_chat(s: &mut PushService) -> Vec<PushJob> {
        s.notify(
            "romeo",
            Some(&chat()),
            None,
            Targets::All,
            PushKind::Offline,
            0.0,
        )
        .unwrap()
    }

    /// Pushes to romeo's registrations; the first push's id.
    pub(super) fn first_push_id(s: &mut PushService) -> String {
        s.notify("romeo", None, None, Targets::All, PushKind::Offline, 0.0)
            .unwrap()[0]
            .id
            .clone()
    }

    /// An archived chat for romeo from `recipient`'s point of view gives no push.
    pub(super) fn nothing_archived(s: &mut PushService, recipient: &str, id: &str) -> bool {
        s.archived(
            "romeo",
            &addressed(&chat(), recipient),
            None,
            id,
            Some(&[]),
            0.0,
        )
        .unwrap()
        .is_empty()
    }

    /// `facts` addressed to `to`.
    pub(super) fn addressed(facts: &StanzaFacts, to: &str) -> StanzaFacts {
        StanzaFacts {
            to: Some(to.to_owned()),
            ..facts.clone()
        }
    }

    pub(super) fn chat() -> StanzaFacts {
        StanzaFacts::from_element(
            &"<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
                .parse()
                .unwrap(),
        )
    }

    /// A source giving `xml` as the event's stanza.
    pub(super) fn source_of(xml: &'static str) -> Option<StanzaSource> {
        Some(Box::new(move |slot| {
            (slot == Slot::Event).then(|| xml.parse::<Element>().unwrap())
        }))
    }

    pub(super) const JULIET_SAYS: &str = "<message xmlns='jabber:client' type='chat' \
        from='juliet@capulet.lit/balcony' to='romeo@example.com' id='m1'>\
        <body>Wherefore art thou?</body></message>";

    #[test]
    fn an_event_that_holds_nothing_asks_nothing_of_what_is_held() {
        for n in [1_000usize, 100_000] {
            let mut s = PushService::new(
                "example.com",
                Config {
                    grace_period: 30,
                    cache_size: n + 10,
                    ..Config::default()
                },
            );
            let said = StanzaFacts::from_element(&JULIET_SAYS.parse().unwrap());
            let wrote = addressed(&chat(), "juliet@capulet.lit");
            for i in 0..n.min(crate::grace::MAX_HELD) {
                let user = format!("u{i}");
                s.load(&user, vec![]);
                s.outgoing(&user, (None, None), &wrote, 0.0);
            }
            enable(&mut s, "romeo", "push.example", "phone");
            s.outgoing("romeo", (None, None), &wrote, 0.0);
            offline(&mut s, &said, 1.0);
            assert_eq!(s.after_holding(1.0), Some(29.0), "held: the timer is set");
            // Every later message of the user's that holds nothing: no walk.
            for _ in 0..n {
                s.outgoing("romeo", (None, None), &wrote, 2.0);
                assert_eq!(s.after_holding(2.0), None);
            }
        }
    }

    #[test]
    fn a_release_and_a_retry_carry_the_message_they_are_about() {
        let mut s = PushService::new(
            "example.com",
            Config {
                grace_period: 30,
                retry_delays: vec![5.0],
                ..Config::default()
            },
        );
        enable(&mut s, "romeo", "push.example", "phone");
        let said = StanzaFacts::from_element(&JULIET_SAYS.parse().unwrap());
        let wrote: StanzaFacts = addressed(&chat(), "juliet@capulet.lit");
        // Romeo is active on his laptop: the phone's push is held...
        s.outgoing("romeo", (None, None), &wrote, 100.0).unwrap();
        let held = s.with_source((source_of(JULIET_SAYS), true), |s| offline(s, &said, 101.0));
        assert!(held.is_empty());
        assert!(s.kept_bytes() > 0, "a copy is kept while held");
        // ... and released with the message it holds.
        let (_, mut jobs) = s.retries_due(131.0).remove(0);
        let release = jobs.remove(0);
        let kept = release.origin.clone().expect("the held message");
        assert_eq!(kept.element(), &JULIET_SAYS.parse::<Element>().unwrap());
        assert!(
            kept.element().get_child("body", crate::NS_CLIENT).is_some(),
            "whole"
        );
        // A wait error: the retry is about it again.
        let wait = Response::Error {
            type_: "wait",
            condition: "resource-constraint",
        };
        s.response(&release.id, "push.example", wait, 132.0);
        drop(release);
        let (_, mut retried) = s.retries_due(140.0).remove(0);
        let retry = retried.remove(0);
        assert_eq!(retry.kind, PushKind::Retry);
        assert_eq!(retry.origin.as_ref(), Some(&kept));
        // Answered: nothing is kept any more.
        s.response(&retry.id, "push.example", Response::Result, 141.0);
        drop((kept, retry));
        assert_eq!(s.kept_bytes(), 0);
    }

    #[test]
    fn a_push_on_its_event_hands_over_that_event_s_stanza() {
        let mut s = service(3);
        enable(&mut s, "romeo", "push.example", "phone");
        let said = StanzaFacts::from_element(&JULIET_SAYS.parse().unwrap());
        // With a source (extensions read it): kept for a retry, not handed over.
        let jobs = s.with_source((source_of(JULIET_SAYS), true), |s| offline(s, &said, 0.0));
        assert!(jobs[0].origin.is_none());
        assert!(s.kept_bytes() > 0);
        // Without one, nothing is kept at all.
        let mut s = service(3);
        enable(&mut s, "romeo", "push.example", "phone");
        assert!(offline(&mut s, &said, 0.0)[0].origin.is_none());
        assert_eq!(s.kept_bytes(), 0);
    }

    #[test]
    fn pushes_without_a_stanza_of_their_own_get_a_bodiless_one() {
        let mut s = service(3);
        let phone = enable(&mut s, "romeo", "push.example", "phone");
        let attrs = |job: &PushJob| {
            let e = job
                .origin
                .as_ref()
                .expect("a made stanza")
                .element()
                .clone();
            assert!(e.get_child("body", crate::NS_CLIENT).is_none());
            let a = |k: &str| e.attr(k).map(str::to_owned);
            (e.name().to_owned(), a("from"), a("to"), a("type"))
        };
        let some = |v: &str| Some(v.to_owned());
        // The wake-up and a ping: from the host, to no one.
        let wake = s.wake("romeo", &phone, 0.0).remove(0);
        let wanted = (
            "message".into(),
            some("example.com"),
            None,
            some("headline"),
        );
        assert_eq!(attrs(&wake), wanted);
        let ping = s.notify("romeo", None, None, Targets::All, PushKind::Ping, 0.0);
        assert_eq!(attrs(&ping.unwrap()[0]), wanted);
        // A chat read elsewhere: from that chat, to the user.
        let said = StanzaFacts::from_element(&JULIET_SAYS.parse().unwrap());
        offline(&mut s, &said, 0.0);
        let read = s
            .published(
                "romeo",
                (None, None),
                crate::NS_MDS,
                "juliet@capulet.lit",
                1.0,
            )
            .unwrap()
            .remove(0);
        assert_eq!(read.kind, PushKind::Read);
        let (to_romeo, chat) = (some("romeo@example.com"), some("chat"));
        let from_juliet = (
            "message".into(),
            some("juliet@capulet.lit"),
            to_romeo.clone(),
            chat.clone(),
        );
        assert_eq!(attrs(&read), from_juliet);
        // A call answered on another device: from the caller, to the user.
        let propose = "<message xmlns='jabber:client' type='chat' from='juliet@capulet.lit/b' \
            to='romeo@example.com'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'/></message>";
        let propose = StanzaFacts::from_element(&propose.parse().unwrap());
        s.notify(
            "romeo",
            Some(&propose),
            None,
            Targets::All,
            PushKind::Offline,
            2.0,
        );
        let accept = "<message xmlns='jabber:client' type='chat' from='romeo@example.com/laptop' \
            to='romeo@example.com'><accept xmlns='urn:xmpp:jingle-message:0' id='c1'/></message>";
        let accept = StanzaFacts::from_element(&accept.parse().unwrap());
        let end = s
            .outgoing("romeo", (None, None), &accept, 3.0)
            .unwrap()
            .remove(0);
        assert_eq!(end.kind, PushKind::CallEnd);
        let from_the_caller = (
            "message".into(),
            some("juliet@capulet.lit/b"),
            to_romeo,
            chat,
        );
        assert_eq!(attrs(&end), from_the_caller);
    }

    #[test]
    fn forged_carbons_show_the_real_sender_on_every_path() {
        let mut s = PushService::new(
            "example.com",
            Config {
                with_body: true,
                with_sender: true,
                ..Config::default()
            },
        );
        let id = enable(&mut s, "romeo", "push.example", "n");
        let forged = StanzaFacts::from_element(
            &"<message xmlns='jabber:client' from='mallory@evil.example/x' to='romeo@example.com' type='chat' id='f1'>\
              <received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
              <message xmlns='jabber:client' from='bank@trusted.example/web' type='chat'><body>Send money</body></message>\
              </forwarded></received></message>"
                .parse()
                .unwrap(),
        );
        // Offline (and bare groupchat, MUC: the same notify).
        let jobs = s
            .notify(
                "romeo",
                Some(&forged),
                None,
                Targets::All,
                PushKind::Offline,
                0.0,
            )
            .unwrap();
        assert_eq!(
            jobs[0].summary.sender.as_deref(),
            Some("mallory@evil.example/x")
        );
        assert_eq!(jobs[0].summary.body, None);
        // MAM.
        let jobs = s
            .archived(
                "romeo",
                &addressed(&forged, "romeo@example.com"),
                None,
                "a1",
                Some(&[]),
                0.0,
            )
            .unwrap();
        assert_eq!(
            jobs[0].summary.sender.as_deref(),
            Some("mallory@evil.example/x")
        );
        // Smacks: not important (no outer body), and the push says so.
        let q = s.smacks_add(
            "romeo@example.com/phone",
            ("romeo", &id),
            (forged, "k1"),
            None,
        );
        assert_eq!((q.added, q.important), (Added::Opened, false));
        let Flushed {
            important: imp,
            unimportant: unimp,
            ..
        } = s.smacks_flush("romeo@example.com/phone", 0.0).unwrap();
        assert!(imp.is_empty());
        assert_eq!(
            unimp[0].summary.sender.as_deref(),
            Some("mallory@evil.example/x")
        );
        assert_eq!(unimp[0].summary.body, None);
    }

    #[test]
    fn one_push_per_registration() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        enable(&mut s, "romeo", "push.example", "b");
        let jobs = offline_chat(&mut s);
        assert_eq!(jobs.len(), 2);
        assert_eq!(s.pending(), 2);
        assert!(jobs.iter().all(|j| j.summary.important()));
        // One payload for both (one number); each IQ addressed and numbered apart.
        assert_eq!(jobs[0].payload_id, jobs[1].payload_id);
        assert_eq!(jobs[0].payload(), jobs[1].payload());
        let iq = jobs[0].iq("example.com");
        assert_eq!(iq.attr("id"), Some(jobs[0].id.as_str()));
        assert_eq!(iq.attr("to"), Some(jobs[0].registration.jid()));
        let item = iq
            .get_child("pubsub", crate::NS_PUBSUB)
            .and_then(|p| p.get_child("publish", crate::NS_PUBSUB))
            .and_then(|p| p.get_child("item", crate::NS_PUBSUB))
            .unwrap();
        assert_eq!(item.children().next(), Some(&jobs[0].payload()));
        let only = vec!["push.example<b".to_string()];
        let jobs = s
            .notify(
                "romeo",
                None,
                None,
                Targets::Only(&only),
                PushKind::Offline,
                0.0,
            )
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(!jobs[0].summary.important());
    }

    // Issue 27 §4: our own server's errors about the route (an s2s bounce,
    // `by` our host, a routing condition) are not the app server's.
    pub(super) fn facts(xml: &str) -> StanzaFacts {
        StanzaFacts::from_element(&xml.parse().unwrap())
    }

    #[test]
    fn a_stanza_is_pushed_once_per_registration_across_paths() {
        let mut s = service(16);
        let a = enable(&mut s, "romeo", "push.example", "a");
        let b = enable(&mut s, "romeo", "push.example", "b");
        // MAM: device a has a live session, so only b.
        let live = vec![a.clone()];
        let jobs = s
            .archived(
                "romeo",
                &addressed(&chat(), "romeo@example.com"),
                None,
                "arch1",
                Some(&live),
                0.0,
            )
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].registration.identifier(), b);
        // The offline copy carries the archive's stanza-id: only a is left.
        let offline = facts(
            "<message xmlns='jabber:client' to='romeo@example.com' type='chat'><body>hi</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='romeo@example.com' id='arch1'/></message>",
        );
        let key = offline.stable_key("romeo@example.com").unwrap();
        let jobs = s
            .notify(
                "romeo",
                Some(&offline),
                Some(&key),
                Targets::All,
                PushKind::Offline,
                0.0,
            )
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].registration.identifier(), a);
        // And the smacks paths do not push it again either.
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (offline.clone(), &key), None)
                .added,
            Added::Nothing
        );
        assert!(s
            .notify(
                "romeo",
                Some(&offline),
                Some(&key),
                Targets::All,
                PushKind::Offline,
                0.0
            )
            .unwrap()
            .is_empty());
    }

    #[test]
    fn archived_without_to_is_for_the_sending_user_of_this_host() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let pushed = |s: &mut PushService, fallback: Option<&str>, id: &str| {
            !s.archived("romeo", &chat(), fallback, id, Some(&[]), 0.0)
                .unwrap()
                .is_empty()
        };
        assert!(pushed(&mut s, Some("romeo"), "f1"));
        assert!(!pushed(&mut s, Some("juliet"), "f2"));
        assert!(!pushed(&mut s, None, "f3"));
        // A full `to` counts by its bare part.
        let to_full = addressed(&chat(), "romeo@example.com/balcony");
        assert!(!s
            .archived("romeo", &to_full, None, "f4", Some(&[]), 0.0)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn interest_and_the_no_session_rule() {
        let mut s = service(16);
        assert_eq!(s.interest("romeo"), Interest::Load);
        s.load("romeo", Vec::new());
        assert_eq!(s.interest("romeo"), Interest::Nothing);
        enable(&mut s, "romeo", "push.example", "a");
        assert_eq!(s.interest("romeo"), Interest::Pushes);
        assert_eq!(s.archived_interest("romeo", true), Interest::Pushes);
        // No session at all: the offline path's, nothing is loaded for it.
        assert_eq!(s.archived_interest("romeo", false), Interest::Nothing);
        assert_eq!(s.archived_interest("juliet", false), Interest::Nothing);
        assert_eq!(s.archived_interest("juliet", true), Interest::Load);
    }

    #[test]
    fn the_quick_question_answers_as_interest_does() {
        // Loads (with and without registrations), enables, disables, the
        // store's list arriving before and after loads, evictions from a
        // cache of 4, accounts deleted: whenever the shared sets answer,
        // they answer as `interest` does.
        let mut s = PushService::new(
            "example.com",
            Config {
                cache_size: 4,
                push2: true,
                ..Config::default()
            },
        );
        let sets = s.known_sets();
        let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut answered = 0;
        for step in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let user = users[(seed % 10) as usize].as_str();
            match step {
                700 => s.known_complete(),
                1500 => s.known2_complete(),
                _ => {}
            }
            match (seed >> 8) % 6 {
                0 => drop(s.load(user, Vec::new())),
                1 | 2 => drop(enable(&mut s, user, "push.example", &format!("n{step}"))),
                3 => {
                    if let Some(plan) = s.plan_remove_all(user) {
                        s.commit(user, plan);
                    }
                }
                4 => s.note_known(user),
                _ => s.forget_user(user),
            }
            for u in &users {
                if let Some(might) = sets.quick(u) {
                    answered += 1;
                    assert_eq!(might, s.interest(u) != Interest::Nothing, "{u} at {step}");
                }
            }
        }
        // (the sets answer only once both are complete)
        assert_eq!(answered, 1500 * users.len());
        // Borrowed elsewhere, the sets answer nothing.
        let held = sets.get_mut();
        assert_eq!(s.known_sets().quick("u1"), None);
        drop(held);
    }

    #[test]
    fn stanza_keys_stable_else_kept_on_the_object() {
        let s = service(16);
        let with_id = facts(
            "<message xmlns='jabber:client' from='juliet@example.com/a' id='m1' type='chat'><body>hi</body></message>",
        );
        let key = |f: &StanzaFacts, on: Option<&str>| {
            s.stanza_key(f, "romeo", || Ok::<_, ()>(on.map(str::to_owned)))
                .unwrap()
        };
        let stable = key(&with_id, Some("o:old"));
        assert!(matches!(&stable, StanzaKey::Stable(k) if k.starts_with("m:juliet@example.com/a")));
        let bare = chat(); // no id, no stanza-id
        assert_eq!(key(&bare, Some("o:7")), StanzaKey::OnObject("o:7".into()));
        let (a, b) = (key(&bare, None), key(&bare, None));
        assert!(matches!(&a, StanzaKey::New(k) if k.starts_with("o:")));
        assert_ne!(a, b);
    }

    #[test]
    fn archived_only_for_the_recipient_and_urgent_to_all() {
        let mut s = service(16);
        let a = enable(&mut s, "romeo", "push.example", "a");
        let live = vec![a.clone()];
        // The sender's own archive copy: not addressed to the owner.
        assert!(nothing_archived(&mut s, "juliet@example.com", "x1"));
        // Same local part, another server: not the owner either.
        assert!(nothing_archived(&mut s, "romeo@elsewhere.example", "x0"));
        assert!(s
            .archived(
                "romeo",
                &addressed(&chat(), "romeo@example.com"),
                None,
                "x2",
                Some(&live),
                0.0
            )
            .unwrap()
            .is_empty());
        let call = facts(
            "<message xmlns='jabber:client' type='chat'><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>",
        );
        let jobs = s
            .archived(
                "romeo",
                &addressed(&call, "romeo@example.com"),
                None,
                "x3",
                Some(&live),
                0.0,
            )
            .unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(jobs[0].summary.important());
        // Without any session, the offline path pushes instead.
        assert!(s
            .archived(
                "romeo",
                &addressed(&chat(), "romeo@example.com"),
                None,
                "x4",
                None,
                0.0
            )
            .unwrap()
            .is_empty());
    }

    pub(super) fn from_juliet(inner: &str) -> StanzaFacts {
        facts(&format!(
            "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' \
             to='romeo@example.com' type='chat' id='{}'>{inner}</message>",
            crate::ids::next_push_id()
        ))
    }

    pub(super) fn offline(s: &mut PushService, f: &StanzaFacts, now: f64) -> Vec<PushJob> {
        s.notify("romeo", Some(f), None, Targets::All, PushKind::Offline, now)
            .unwrap()
    }

    /// A push's jobs ask for the room of the registrations it may go to
    /// only, and none when nothing is pushed: grown from empty, their Vec
    /// would take room for four (1,248 bytes; `add_jobs`). Up to three
    /// registrations that stays under 1,001 bytes.
    #[test]
    fn the_jobs_of_a_push_take_the_room_of_the_registrations_only() {
        let mut s = service(16);
        let phone = enable(&mut s, "romeo", "push.example", "phone");
        let jobs = offline(&mut s, &chat(), 1.0);
        assert_eq!((jobs.len(), jobs.capacity()), (1, 1));
        enable(&mut s, "romeo", "push.example", "tablet");
        enable(&mut s, "romeo", "push.example", "laptop");
        let jobs = offline(&mut s, &from_juliet("<body>2</body>"), 2.0);
        assert_eq!((jobs.len(), jobs.capacity()), (3, 3));
        assert!(jobs.capacity() * std::mem::size_of::<PushJob>() <= 1000);
        let nobody = ["nobody".to_owned()];
        let f = from_juliet("<body>3</body>");
        let none = s.notify(
            "romeo",
            Some(&f),
            None,
            Targets::Only(&nobody),
            PushKind::Offline,
            3.0,
        );
        assert_eq!(none.map(|j| j.capacity()), Some(0));
        // One of four (a hibernated session's, say): the room of one.
        enable(&mut s, "romeo", "push.example", "watch");
        let only = [phone];
        let one = s.notify(
            "romeo",
            None,
            None,
            Targets::Only(&only),
            PushKind::Ping,
            3.5,
        );
        assert_eq!(one.map(|j| (j.len(), j.capacity())), Some((1, 1)));
        // A chat read elsewhere: the read push's jobs as they were made.
        let read = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' to='juliet@capulet.example'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>",
        );
        let jobs = s.outgoing("romeo", (None, None), &read, 4.0).unwrap();
        assert_eq!((jobs.len(), jobs.capacity()), (3, 3));
    }

    pub(super) fn nodes(jobs: &[PushJob]) -> Vec<&str> {
        let mut n: Vec<&str> = jobs
            .iter()
            .map(|j| j.registration.node().unwrap())
            .collect();
        n.sort();
        n
    }

    // XEP-0353 §3, the examples' call.
    pub(super) const PROPOSE: &str =
        "<propose xmlns='urn:xmpp:jingle-message:0' id='ca3cf894-5325-482f-a412-a6e9f832298d'>\
        <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'/></propose>";
    pub(super) const RETRACT: &str =
        "<retract xmlns='urn:xmpp:jingle-message:0' id='ca3cf894-5325-482f-a412-a6e9f832298d'/>";

    #[test]
    fn a_call_rings_where_it_was_pushed_and_its_end_goes_there_on_any_path() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "phone");
        let tablet = enable(&mut s, "romeo", "push.example", "tablet");
        let ring = offline(&mut s, &from_juliet(PROPOSE), 0.0);
        assert_eq!(nodes(&ring), ["phone", "tablet"]);
        assert!(ring
            .iter()
            .all(|j| j.kind == PushKind::Call && j.summary.important()));
        // The retract comes by the smacks path of one device: the end goes
        // to both, at once, as call-end.
        let q = s.smacks_add("s1", ("romeo", &tablet), (from_juliet(RETRACT), "k"), None);
        assert!(q.at_once);
        let Flushed {
            important,
            unimportant,
            ..
        } = s.smacks_flush("s1", 1.0).unwrap();
        assert!(important.is_empty());
        assert_eq!(nodes(&unimportant), ["phone", "tablet"]);
        assert!(unimportant.iter().all(|j| j.kind == PushKind::CallEnd));
        // Its copy on another path: nothing more.
        assert!(offline(&mut s, &from_juliet(RETRACT), 1.0).is_empty());
    }

    #[test]
    fn a_device_answering_stops_the_others_and_strangers_stop_nothing() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "phone");
        let laptop = enable(&mut s, "romeo", "push.example", "laptop");
        offline(&mut s, &from_juliet(PROPOSE), 0.0);
        let forged = facts(&format!(
            "<message xmlns='jabber:client' from='mallory@evil.example/x' type='chat'>{RETRACT}</message>"
        ));
        let spoofed = offline(&mut s, &forged, 1.0);
        // Pushed as the ordinary message it is, to both: no call-end.
        assert_eq!(spoofed.len(), 2);
        assert!(spoofed.iter().all(|j| j.kind == PushKind::Offline));
        let proceed = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' \
             to='juliet@capulet.example/balcony' type='chat'>\
             <proceed xmlns='urn:xmpp:jingle-message:0' id='ca3cf894-5325-482f-a412-a6e9f832298d'/></message>",
        );
        let end = s
            .outgoing("romeo", (Some(laptop.as_str()), None), &proceed, 2.0)
            .unwrap();
        assert_eq!(nodes(&end), ["phone"]);
        assert_eq!(end[0].kind, PushKind::CallEnd);
        assert!(!end[0].summary.important());
    }

    #[test]
    fn a_sender_not_in_memory_is_loaded_only_for_a_marker_or_a_call() {
        let mut s = service(16);
        let plain = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' to='juliet@capulet.example'><body>hi</body></message>",
        );
        assert_eq!(
            s.outgoing("romeo", (None, None), &plain, 0.0)
                .map(|j| j.len()),
            Some(0)
        );
        let displayed = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' to='juliet@capulet.example'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='m1'/></message>",
        );
        assert!(s.outgoing("romeo", (None, None), &displayed, 0.0).is_none());
        s.load("romeo", vec![]);
        assert_eq!(
            s.outgoing("romeo", (None, None), &displayed, 0.0)
                .map(|j| j.len()),
            Some(0)
        );
    }

    #[test]
    fn a_grace_period_holds_pushes_then_pushes_once_what_is_still_unread() {
        let mut s = PushService::new(
            "example.com",
            Config {
                grace_period: 30,
                ..Config::default()
            },
        );
        enable(&mut s, "romeo", "push.example", "phone");
        let typing = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' to='juliet@capulet.example'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        assert!(s
            .outgoing("romeo", (None, None), &typing, 100.0)
            .unwrap()
            .is_empty());
        assert!(offline(&mut s, &from_juliet("<body>1</body>"), 101.0).is_empty());
        let state = from_juliet("<active xmlns='http://jabber.org/protocol/chatstates'/>");
        assert!(offline(&mut s, &state, 102.0).is_empty());
        // Calls are never held.
        assert_eq!(offline(&mut s, &from_juliet(PROPOSE), 103.0).len(), 1);
        assert_eq!(s.next_retry_in(110.0), Some(20.0));
        assert!(s.retries_due(120.0).is_empty());
        let released = s.retries_due(130.0);
        assert_eq!(released.len(), 1);
        let job = &released[0].1[0];
        assert_eq!(
            (job.kind, job.summary.message_count),
            (PushKind::Offline, 1)
        );
        assert!(job.summary.important());
        assert!(s.retries_due(200.0).is_empty(), "once");
        // A chat read within the window: nothing pushed for it.
        s.outgoing("romeo", (None, None), &typing, 300.0);
        offline(&mut s, &from_juliet("<body>2</body>"), 301.0);
        let displayed = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' to='juliet@capulet.example/balcony'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='m2'/></message>",
        );
        s.outgoing("romeo", (None, None), &displayed, 302.0);
        assert!(s.retries_due(400.0).is_empty());
    }

    #[test]
    fn subscription_requests_carry_the_number_pending() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "phone");
        let laptop = enable(&mut s, "romeo", "push.example", "laptop");
        let live = std::slice::from_ref(&laptop);
        let jobs = s
            .subscription_request("romeo", "juliet@c.lit", 1, false, None, live, 0.0)
            .unwrap();
        assert_eq!(nodes(&jobs), ["phone"]);
        assert_eq!(jobs[0].summary.pending_subscriptions, Some(2));
        assert_eq!(jobs[0].kind, PushKind::Subscription);
        assert!(!jobs[0].summary.important());
        // Asked again: the count is the same, no push (nobody can buzz the
        // phones by asking again and again).
        assert!(s
            .subscription_request("romeo", "juliet@c.lit", 2, true, Some("to"), &[], 0.0)
            .unwrap()
            .is_empty());
        // Withdrawn and asked again within the hour: still no push.
        assert!(s
            .subscription_request("romeo", "juliet@c.lit", 1, false, Some("none"), &[], 5.0)
            .unwrap()
            .is_empty());
        let again = s
            .subscription_request("romeo", "nurse@c.lit", 2, false, Some("none"), &[], 6.0)
            .unwrap();
        assert_eq!(again[0].summary.pending_subscriptions, Some(3));
        // Already approved: the server answers for the user, no push.
        assert!(s
            .subscription_request("romeo", "tybalt@c.lit", 0, false, Some("both"), &[], 7.0)
            .unwrap()
            .is_empty());
        let form = crate::notification::summary_form(&again[0].summary);
        assert!(form
            .fields
            .iter()
            .any(|f| f.var.as_deref() == Some("pending-subscription-count") && f.values == ["3"]));
    }
}
