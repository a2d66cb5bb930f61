//! What the shim must do after an event: one value, whatever the event.
//!
//! Every event method of the service ([`crate::service::PushService`]'s
//! `on_*` methods) returns an [`Outcome`]: the pushes to fire and send,
//! a user to load (then ask again), when the retries' timer must run,
//! registrations to remove, lines to log, metrics to count. The binding
//! turns it into one Lua table; the shim's `push.apply` carries it out and
//! decides nothing.

use crate::facts::StanzaFacts;
use crate::vocabulary::PushJob;

/// A log line's level (Prosody's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
}

impl Level {
    /// Prosody's name of the level.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
        }
    }
}

/// A counter of the module's metrics (README "Metrics").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// `app_server_errors{type}`: an error answer, by its (RFC 6120) type.
    AppServerError(&'static str),
    /// `route_failures`: our own server could not route a push.
    RouteFailure,
    /// `unanswered`: pushes nobody answered within `push_response_timeout`.
    Unanswered,
    /// `retries_given_up`: every retry got a `wait` error.
    GivenUp,
    /// `auto_disabled`: registrations removed for their errors.
    AutoDisabled,
}

impl Counter {
    /// The metric's name and its label (if it has one).
    pub fn name_and_label(self) -> (&'static str, Option<&'static str>) {
        match self {
            Counter::AppServerError(type_) => ("app_server_errors", Some(type_)),
            Counter::RouteFailure => ("route_failures", None),
            Counter::Unanswered => ("unanswered", None),
            Counter::GivenUp => ("retries_given_up", None),
            Counter::AutoDisabled => ("auto_disabled", None),
        }
    }
}

/// Which stanza pushes are about: the `original_stanza` their
/// `cloud_notify/push` events carry.
#[derive(Debug)]
pub enum About {
    /// None (a ping, a retry, a release, a wake-up).
    Nothing,
    /// The stanza of the event being handled.
    Event,
    /// A smacks batch's (last) important stanza.
    Important,
    /// A smacks batch's (last) unimportant stanza.
    Unimportant,
    /// A room message an occupant's server bounced, as the core
    /// remembers it (the shim gets a message made from it).
    Bounced(Box<StanzaFacts>),
}

/// One user's pushes, and the stanza they are about.
#[derive(Debug)]
pub struct Pushes {
    /// The user the pushes are for.
    pub user: String,
    /// The pushes, in order.
    pub jobs: Vec<PushJob>,
    /// The stanza they are about.
    pub about: About,
}

/// Everything the shim must do after an event.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Pushes to fire (`cloud_notify/push`) and send, in order.
    pub pushes: Vec<Pushes>,
    /// This user's registrations are not in memory: load them, then ask
    /// again (nothing else was done).
    pub load: Option<String>,
    /// Seconds until the retries' timer must run (a push held back, a
    /// retry scheduled); never less than [`MIN_TIMER`].
    pub timer: Option<f64>,
    /// Registrations to remove, as user and identifier.
    pub drops: Vec<(String, String)>,
    /// Lines to log.
    pub logs: Vec<(Level, String)>,
    /// Counters to add to.
    pub counts: Vec<(Counter, u64)>,
    /// A response time to sample (`response_time`).
    pub rtt: Option<f64>,
    /// The event was ours: no other handler should have it (an answer to
    /// one of our pushes).
    pub handled: bool,
    /// Read this user's bookmarks (XEP-0492: their settings for rooms),
    /// then ask again (nothing else was done).
    pub bookmarks: Option<String>,
    /// A smacks session's batch: push it in this many seconds (0: now,
    /// stopping its timer), else leave the timer that runs.
    pub batch_in: Option<f64>,
}

/// The shortest timer the shim sets (seconds): a due time already past
/// runs soon, never in a loop.
pub const MIN_TIMER: f64 = 0.05;

impl Outcome {
    /// Load `user`, then ask again.
    pub fn load(user: &str) -> Outcome {
        Outcome {
            load: Some(user.to_owned()),
            ..Outcome::default()
        }
    }

    /// An event's pushes for one user (`None`: the user is not loaded).
    pub fn pushes(user: &str, jobs: Option<Vec<PushJob>>, about: About) -> Outcome {
        let Some(jobs) = jobs else {
            return Outcome::load(user);
        };
        let mut out = Outcome::default();
        out.push(user, jobs, about);
        out
    }

    /// Adds a user's pushes (none: nothing added).
    pub fn push(&mut self, user: &str, jobs: Vec<PushJob>, about: About) {
        if !jobs.is_empty() {
            self.pushes.push(Pushes {
                user: user.to_owned(),
                jobs,
                about,
            });
        }
    }

    /// Sets the timer to run within `seconds` (the earlier of two wins).
    pub fn timer_in(&mut self, seconds: Option<f64>) {
        let Some(seconds) = seconds else {
            return;
        };
        let seconds = seconds.max(MIN_TIMER);
        self.timer = Some(self.timer.map_or(seconds, |t| t.min(seconds)));
    }

    /// Adds a line to log.
    pub fn log(&mut self, level: Level, text: String) {
        self.logs.push((level, text));
    }

    /// Adds `n` to a counter.
    pub fn count(&mut self, counter: Counter, n: u64) {
        if n > 0 {
            self.counts.push((counter, n));
        }
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.pushes.is_empty()
            && self.load.is_none()
            && self.timer.is_none()
            && self.drops.is_empty()
            && self.logs.is_empty()
            && self.counts.is_empty()
            && self.rtt.is_none()
            && !self.handled
            && self.bookmarks.is_none()
            && self.batch_in.is_none()
    }

    /// How many pushes it holds.
    pub fn push_count(&self) -> usize {
        self.pushes.iter().map(|p| p.jobs.len()).sum()
    }
}

/// Text from a stranger (an app server's error condition, say) as a log
/// line shows it: at most 64 characters.
pub fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_outcome_says_so_and_a_missing_user_is_a_load() {
        assert!(Outcome::default().is_empty());
        let out = Outcome::pushes("romeo", None, About::Event);
        assert_eq!(out.load.as_deref(), Some("romeo"));
        assert!(out.pushes.is_empty());
        let out = Outcome::pushes("romeo", Some(Vec::new()), About::Event);
        assert!(out.is_empty(), "no pushes: nothing to do");
    }

    #[test]
    fn the_timer_keeps_the_earliest_and_never_runs_in_a_loop() {
        let mut out = Outcome::default();
        out.timer_in(None);
        assert_eq!(out.timer, None);
        out.timer_in(Some(10.0));
        out.timer_in(Some(3.0));
        out.timer_in(Some(7.0));
        assert_eq!(out.timer, Some(3.0));
        out.timer_in(Some(-5.0));
        assert_eq!(out.timer, Some(MIN_TIMER), "a time past runs soon");
    }

    #[test]
    fn counters_name_their_metrics_and_zero_adds_nothing() {
        let mut out = Outcome::default();
        out.count(Counter::Unanswered, 0);
        assert!(out.is_empty());
        out.count(Counter::AppServerError("wait"), 1);
        assert_eq!(
            out.counts[0].0.name_and_label(),
            ("app_server_errors", Some("wait"))
        );
        assert_eq!(
            Counter::AutoDisabled.name_and_label(),
            ("auto_disabled", None)
        );
    }

    #[test]
    fn a_strangers_text_is_shown_cut() {
        assert_eq!(shown(&"é".repeat(100)).chars().count(), 64);
        assert_eq!(shown("item-not-found"), "item-not-found");
    }
}
