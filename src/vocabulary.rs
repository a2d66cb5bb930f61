//! The vocabulary the core's events speak: which registrations a push
//! goes to ([`Targets`]), its path ([`PushKind`]), one publish to send
//! ([`PushJob`]), an app server's answer ([`Response`]) and what to do
//! about it ([`Answer`]), what became of queued stanzas ([`Queued`],
//! [`Flushed`]), of unanswered pushes ([`Expired`]). Every core module may
//! use it; it uses none of them but the leaves (no arrow back to
//! [`crate::service`]).

use crate::coalesce::Added;
use crate::notification::{notification, Summary};
use crate::origin::Origin;
use crate::registration::Registration;
use minidom::Element;

/// Which of a user's registrations a push goes to.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    /// All of them.
    All,
    /// Only these (identifiers).
    Only(&'a [String]),
    /// All but these (the registrations of live sessions).
    Except(&'a [String]),
}

impl Targets<'_> {
    /// At most how many of a user's `n` registrations these include: the
    /// room a push's jobs take.
    pub(crate) fn at_most(&self, n: usize) -> usize {
        match self {
            Targets::Only(ids) => ids.len().min(n),
            Targets::All | Targets::Except(_) => n,
        }
    }

    pub(crate) fn includes(&self, identifier: &str) -> bool {
        match self {
            Targets::All => true,
            Targets::Only(ids) => ids.iter().any(|i| i == identifier),
            Targets::Except(ids) => !ids.iter().any(|i| i == identifier),
        }
    }
}

/// The path a push comes from (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushKind {
    /// An offline message (`message/offline/handle`).
    Offline,
    /// A bare groupchat message to the user (no joined device).
    Groupchat,
    /// A stanza queued for a hibernated or unresponsive smacks session.
    Smacks,
    /// An archived message (MAM), for devices without a session.
    Mam,
    /// An urgent archived stanza (a call's propose), to every device.
    Urgent,
    /// `cloud-notify-ping` (or the admin's `push:ping`).
    Ping,
    /// A room message (mod_muc_cloud_notify).
    Muc,
    /// The last wake-up before a hibernated session expires.
    Wake,
    /// A push retried after a `wait` error.
    Retry,
    /// A call's propose (XEP-0353): pushed at once, never held.
    Call,
    /// A call's end (retracted, answered or declined elsewhere): the
    /// phones it rang stop ringing.
    CallEnd,
    /// A chat was read on another device: the new, lower unread count.
    Read,
    /// A presence subscription request, with the number pending.
    Subscription,
}

impl PushKind {
    /// The metrics label (`push_kind` of the event).
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Offline => "offline",
            PushKind::Groupchat => "groupchat",
            PushKind::Smacks => "smacks",
            PushKind::Mam => "mam",
            PushKind::Urgent => "urgent",
            PushKind::Ping => "ping",
            PushKind::Muc => "muc",
            PushKind::Wake => "wake",
            PushKind::Retry => "retry",
            PushKind::Call => "call",
            PushKind::CallEnd => "call-end",
            PushKind::Read => "read",
            PushKind::Subscription => "subscription",
        }
    }

    /// The kind a metrics label names ([`PushKind::as_str`]).
    pub fn from_label(label: &str) -> Option<PushKind> {
        PushKind::ALL.into_iter().find(|k| k.as_str() == label)
    }

    /// Every kind.
    pub const ALL: [PushKind; 13] = [
        PushKind::Offline,
        PushKind::Groupchat,
        PushKind::Smacks,
        PushKind::Mam,
        PushKind::Urgent,
        PushKind::Ping,
        PushKind::Muc,
        PushKind::Wake,
        PushKind::Retry,
        PushKind::Call,
        PushKind::CallEnd,
        PushKind::Read,
        PushKind::Subscription,
    ];

    /// Pushes about a message someone sent the user: they count towards
    /// the unread count when important.
    pub fn is_message(self) -> bool {
        matches!(
            self,
            PushKind::Offline
                | PushKind::Groupchat
                | PushKind::Smacks
                | PushKind::Mam
                | PushKind::Muc
        )
    }

    /// Pushes whose important messages count towards the unread count
    /// (not the MUC module's: nothing there clears a count).
    pub fn counts(self) -> bool {
        self.is_message() && self != PushKind::Muc
    }

    /// Pushes the grace period holds back (calls and the module's own
    /// pushes — pings, wake-ups, retries, counts — never).
    pub fn is_graced(self) -> bool {
        self.is_message() || self == PushKind::Subscription
    }
}

/// Which of the stanzas an event brought a push is about, as the
/// binding's [`StanzaSource`] is asked for it: the event's own, or a
/// smacks batch's important or unimportant one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The stanza of the event being handled.
    Event,
    /// A smacks batch's (last) important stanza.
    Important,
    /// A smacks batch's (last) unimportant stanza.
    Unimportant,
}

/// The stanza of the event being handled, as an element, asked for only
/// when a push may go out after the event (a grace period's release, a
/// retry) and extensions read `original_stanza` (see [`crate::origin`]).
pub type StanzaSource = Box<dyn FnMut(Slot) -> Option<Element>>;

/// What became of a stanza queued for a smacks session ([`crate::service::PushService::smacks_add`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    /// What it did to the session's batch.
    pub added: Added,
    /// It is the batch's important stanza now (else its unimportant one).
    pub important: bool,
    /// Send the batch now (a call's signal, or no room to wait).
    pub at_once: bool,
}

/// A smacks batch sent ([`crate::service::PushService::smacks_flush`]).
#[derive(Debug)]
pub struct Flushed {
    /// The user the session belongs to.
    pub user: String,
    /// The pushes for the batch's important stanza (for every important
    /// stanza gathered).
    pub important: Vec<PushJob>,
    /// The pushes for its unimportant stanza.
    pub unimportant: Vec<PushJob>,
}

/// One publish to send.
#[derive(Debug, Clone)]
pub struct PushJob {
    /// The publish IQ's id (`push_id`).
    pub id: String,
    /// The registration it goes to (without its counts).
    pub registration: Registration,
    /// What it says.
    pub summary: Summary,
    /// The path it comes from.
    pub kind: PushKind,
    /// Whether this push ends a hibernated session's extended timeout: it
    /// is important, or importance is not told apart (no important body).
    pub wakes: bool,
    /// Names the `<notification/>` payload: the same number, the same
    /// payload (the same summary), for as long as the service lives. The
    /// binding keeps the payload tables it built by this number, the one
    /// cache of payloads.
    pub payload_id: u64,
    /// The `original_stanza` to hand over in place of the event's own (a
    /// kept copy, or a message made for the push: [`crate::origin`]);
    /// `None`: the stanza of the event being handled.
    pub origin: Option<Origin>,
    /// The archive id of the message it is about, when the archive's event
    /// brought it (`archive-message-added` hands over a copy without its
    /// `<stanza-id/>`): a Push 2.0 push forwards it with that id.
    pub archive_id: Option<String>,
}

impl PushJob {
    /// The `<notification/>` payload ([`notification`] of the summary).
    pub fn payload(&self) -> Element {
        notification(&self.summary)
    }

    /// The publish IQ to send, from `host` (see [`publish_iq`]; the binding
    /// writes the same shape straight into Lua, without building it).
    #[cfg(test)]
    pub fn iq(&self, host: &str) -> Element {
        crate::notification::publish_iq(host, &self.id, &self.registration, self.payload())
    }
}

/// The app server's answer to a push.
#[derive(Debug, Clone, PartialEq)]
pub enum Response<'a> {
    /// `<iq type='result'/>`.
    Result,
    /// `<iq type='error'/>`, its error type and defined condition.
    Error {
        /// One of RFC 6120's five (see [`Response::error`]).
        type_: &'a str,
        /// The defined condition (`undefined-condition` when none was given).
        condition: &'a str,
    },
    /// An error our own server generated about the route to the app server
    /// (the link is down: DNS, a certificate, a timeout, a component that
    /// is not connected), not the app server's answer
    /// ([`Response::answer_error`]). Retried like `wait`; never counted
    /// against the registration, except on the MUC module.
    RouteFailure {
        /// One of RFC 6120's five.
        type_: &'a str,
        /// The defined condition.
        condition: &'a str,
    },
}

/// RFC 6120 §8.3.3: the conditions a server gives about the route to
/// another server; an app server never says them about itself.
const ROUTE_CONDITIONS: [&str; 2] = ["remote-server-not-found", "remote-server-timeout"];

impl<'a> Response<'a> {
    /// An error answer as read from the stanza: the type as
    /// [`crate::error::error_type`] takes it, the condition (the first
    /// child of `<error/>` in the stanzas namespace) or
    /// `undefined-condition`.
    pub fn error(type_: Option<&str>, condition: Option<&'a str>) -> Response<'a> {
        Response::Error {
            type_: crate::error::error_type(type_),
            condition: condition.unwrap_or(crate::error::UNDEFINED_CONDITION),
        }
    }

    /// An error answer as it reached us: [`Response::error`], or a
    /// [`Response::RouteFailure`] when our own server made it — it came
    /// from a bounce of ours (`bounced`: Prosody's s2s bounces come from a
    /// dummy session), its `<error by=…>` names `our_host`, or its
    /// condition is one only a routing server gives.
    pub fn answer_error(
        type_: Option<&str>,
        condition: Option<&'a str>,
        by: Option<&str>,
        bounced: bool,
        our_host: &str,
    ) -> Response<'a> {
        let error = Response::error(type_, condition);
        let Response::Error { type_, condition } = error else {
            return error;
        };
        if bounced || by == Some(our_host) || ROUTE_CONDITIONS.contains(&condition) {
            Response::RouteFailure { type_, condition }
        } else {
            error
        }
    }

    /// Its error type and condition, and whether our own server made it;
    /// `None` for a result.
    pub(crate) fn error_parts(&self) -> Option<(&'a str, &'a str, bool)> {
        match *self {
            Response::Result => None,
            Response::Error { type_, condition } => Some((type_, condition, false)),
            Response::RouteFailure { type_, condition } => Some((type_, condition, true)),
        }
    }
}

/// Whether the core can take an event for a user now
/// ([`crate::service::PushService::interest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// The user's registrations are not in memory: load them, then ask.
    Load,
    /// Nothing to do: no registration (or no session to push around).
    Nothing,
    /// The user has registrations: hand the event over.
    Pushes,
}

/// A stanza's key for [`crate::service::PushService::notify`] and the smacks paths
/// ([`crate::service::PushService::stanza_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StanzaKey {
    /// A key every copy of the stanza shares ([`crate::facts::StanzaFacts::stable_key`]).
    Stable(String),
    /// No stable key: the key this stanza object already carries.
    OnObject(String),
    /// No stable key and none on the object yet: store this one on it, so
    /// that the same object is recognised again.
    New(String),
}

impl StanzaKey {
    /// The key itself.
    pub fn as_str(&self) -> &str {
        match self {
            StanzaKey::Stable(k) | StanzaKey::OnObject(k) | StanzaKey::New(k) => k,
        }
    }
}

/// What to do about an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Not an answer to one of our pushes: let other handlers have it.
    NotOurs,
    /// One of our ids, but from someone other than the app server: dropped.
    WrongSender {
        /// The app server the push went to.
        expected: String,
    },
    /// The user's registrations must be loaded first; ask again then.
    Load {
        /// The user to load.
        user: String,
    },
    /// Success; the registration's error count is back to zero. With
    /// `reset`, it was not before: write the user's registrations
    /// (`plan_current`) so the store forgets the count too.
    Delivered {
        /// Seconds from the push to the answer.
        rtt: f64,
        /// The user the push was for.
        user: String,
        /// The error count was not zero: write.
        reset: bool,
    },
    /// A `wait` error, or our own server's about the route: temporary, not
    /// counted; what became of its retry.
    Temporary {
        /// The user the push was for.
        user: String,
        /// The registration it went to.
        identifier: String,
        /// Its retry.
        retry: crate::retry::Scheduled,
        /// Our own server's error about the route, not the app server's.
        route: bool,
    },
    /// An error, counted against the registration: write the user's
    /// registrations (`plan_current`) to keep the count across restarts.
    Counted {
        /// The user the push was for.
        user: String,
        /// The registration it went to.
        identifier: String,
        /// Its error count now.
        count: u32,
    },
    /// The error count reached `push_max_errors`: remove the registration
    /// (`plan_drop`, write, `commit`).
    Disable {
        /// The user the push was for.
        user: String,
        /// The registration to remove.
        identifier: String,
        /// Its error count.
        count: u32,
    },
}

/// What [`crate::service::PushService::expire`] did with the pushes nobody answered.
#[derive(Debug, Default, PartialEq)]
pub struct Expired {
    /// How many there were.
    pub count: usize,
    /// How many got a retry of their own (main module).
    pub retried: usize,
    /// Seconds until the next retry is due, if any waits.
    pub retry_in: Option<f64>,
    /// The registrations that reached `push_max_errors` (MUC module), as
    /// user and identifier: to drop.
    pub drop: Vec<(String, String)>,
    /// App servers to warn about (at most once a minute each), with the
    /// pushes they left unanswered since the last warning.
    pub warnings: Vec<(String, u64)>,
}
