//! Per app server: pushes sent, what came back (results, `wait`, other
//! errors by type and condition, no answer, our own server's route
//! failures) and the round-trip time. For the metrics (what changed since
//! they were last collected) and the admin shell (totals).
//!
//! Bounded: the first [`MAX_SERVICES`] app servers pushes go to are
//! tracked by name, every other under [`OTHER`]; an error condition is one
//! of RFC 6120's or [`OTHER`]; an app-server JID longer than
//! [`MAX_SERVICE_LEN`] is [`OTHER`]. So a stranger registering app servers
//! (or an app server inventing conditions) can't grow the metrics.

use std::collections::HashMap;

/// App servers tracked by name.
pub const MAX_SERVICES: usize = 32;
/// Longest app-server JID tracked by name.
pub const MAX_SERVICE_LEN: usize = 256;
/// The label of everything not tracked by name.
pub const OTHER: &str = "other";
/// Seconds between two warnings about one app server's unanswered pushes.
pub const WARN_PERIOD: f64 = 60.0;

/// RFC 6120 §8.3.3's defined conditions: the only ones kept by name.
const CONDITIONS: [&str; 22] = [
    "bad-request",
    "conflict",
    "feature-not-implemented",
    "forbidden",
    "gone",
    "internal-server-error",
    "item-not-found",
    "jid-malformed",
    "not-acceptable",
    "not-allowed",
    "not-authorized",
    "policy-violation",
    "recipient-unavailable",
    "redirect",
    "registration-required",
    "remote-server-not-found",
    "remote-server-timeout",
    "resource-constraint",
    "service-unavailable",
    "subscription-required",
    "undefined-condition",
    "unexpected-request",
];

/// A condition as a metrics label: RFC 6120's, else [`OTHER`].
pub fn condition_label(condition: &str) -> &'static str {
    CONDITIONS
        .iter()
        .copied()
        .find(|c| *c == condition)
        .unwrap_or(OTHER)
}

/// What became of the pushes to one app server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Pushes sent (built and not blocked by a `cloud_notify/push` handler).
    pub sent: u64,
    /// Answered with a result (or, a Push 2.0 push, no error in time).
    pub delivered: u64,
    /// Results whose round-trip time is known (a Push 2.0 push's
    /// delivery has none).
    pub rtt_count: u64,
    /// Answered with a `wait` error (retried).
    pub wait: u64,
    /// Answered with another error (counted against the registration).
    pub errors: u64,
    /// Not answered within `push_response_timeout`.
    pub timeouts: u64,
    /// Our own server's errors about the route (retried, never counted).
    pub route: u64,
    /// Sum of the round-trip times of the results (seconds).
    pub rtt_sum: f64,
    /// Errors by type and condition (labels from fixed sets).
    pub conditions: Vec<(&'static str, &'static str, u64)>,
}

impl Tally {
    fn error(&mut self, type_: &'static str, condition: &'static str) {
        match self
            .conditions
            .iter_mut()
            .find(|(t, c, _)| *t == type_ && *c == condition)
        {
            Some(entry) => entry.2 += 1,
            // (bounded: 5 types × 23 conditions)
            None => self.conditions.push((type_, condition, 1)),
        }
    }
}

/// How an answer is tallied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answered {
    /// A result, after this many seconds.
    Delivered(f64),
    /// A Push 2.0 push: no error within `push_response_timeout`.
    Silent,
    /// An error: its type, its condition, whether our own server made it
    /// (a route failure).
    Error(&'static str, &'static str, bool),
    /// No answer in time.
    Timeout,
}

#[derive(Debug, Default)]
struct Entry {
    total: Tally,
    since: Tally,
    /// When its unanswered pushes were last warned about, and how many
    /// went unanswered since.
    warned: Option<f64>,
    unwarned: u64,
}

/// The tallies of one host's app servers.
#[derive(Debug, Default)]
pub struct ServiceStats {
    by_name: HashMap<String, Entry>,
    other: Entry,
}

impl ServiceStats {
    /// Whether `service` is (or would be, once something is tallied for
    /// it) tracked by name.
    fn named(&self, service: &str) -> bool {
        self.by_name.contains_key(service)
            || (self.by_name.len() < MAX_SERVICES
                && service.len() <= MAX_SERVICE_LEN
                && service != OTHER)
    }

    fn entry(&mut self, service: &str) -> &mut Entry {
        if !self.named(service) {
            return &mut self.other;
        }
        self.by_name.entry(service.to_owned()).or_default()
    }

    /// The label `service` is (or would be) tallied under.
    pub fn label<'a>(&'a self, service: &'a str) -> &'a str {
        if self.named(service) {
            service
        } else {
            OTHER
        }
    }

    /// A push to `service` was sent (`n` = 1), or one counted as sent was
    /// blocked after all (`n` = -1).
    pub fn sent(&mut self, service: &str, n: i8) {
        let e = self.entry(service);
        for t in [&mut e.total, &mut e.since] {
            t.sent = if n >= 0 {
                t.sent + 1
            } else {
                t.sent.saturating_sub(1)
            };
        }
    }

    /// An answer from `service` (or none).
    pub fn answered(&mut self, service: &str, outcome: Answered) {
        let e = self.entry(service);
        for t in [&mut e.total, &mut e.since] {
            match outcome {
                Answered::Delivered(rtt) => {
                    t.delivered += 1;
                    t.rtt_count += 1;
                    t.rtt_sum += rtt;
                }
                Answered::Silent => t.delivered += 1,
                Answered::Error(_, _, true) => t.route += 1,
                Answered::Error("wait", _, false) => t.wait += 1,
                Answered::Error(_, _, false) => t.errors += 1,
                Answered::Timeout => t.timeouts += 1,
            }
            if let Answered::Error(type_, condition, _) = outcome {
                t.error(type_, condition);
            }
        }
    }

    /// A push to `service` went unanswered at `now`: `Some(count)` to warn
    /// (`count` unanswered since the last warning, this one included), at
    /// most once a minute per label.
    pub fn unanswered(&mut self, service: &str, now: f64) -> Option<u64> {
        let n = 1;
        let e = self.entry(service);
        e.unwarned += n;
        match e.warned {
            Some(at) if now - at < WARN_PERIOD && now >= at => None,
            _ => {
                e.warned = Some(now);
                Some(std::mem::take(&mut e.unwarned))
            }
        }
    }

    /// What changed since the last call, by label (those with any change),
    /// [`OTHER`] last.
    pub fn take_changes(&mut self) -> Vec<(String, Tally)> {
        let mut out: Vec<(String, Tally)> = self
            .by_name
            .iter_mut()
            .filter(|(_, e)| e.since != Tally::default())
            .map(|(name, e)| (name.clone(), std::mem::take(&mut e.since)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        if self.other.since != Tally::default() {
            out.push((OTHER.to_owned(), std::mem::take(&mut self.other.since)));
        }
        out
    }

    /// The totals since the module loaded, by label, [`OTHER`] last.
    pub fn totals(&self) -> Vec<(&str, &Tally)> {
        let mut out: Vec<(&str, &Tally)> = self
            .by_name
            .iter()
            .map(|(name, e)| (name.as_str(), &e.total))
            .collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        if self.other.total != Tally::default() {
            out.push((OTHER, &self.other.total));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_by_outcome_and_condition() {
        let mut s = ServiceStats::default();
        for _ in 0..4 {
            s.sent("push.example", 1);
        }
        s.sent("push.example", -1);
        s.answered("push.example", Answered::Delivered(0.5));
        // fpush: a dead token, a malformed publish.
        s.answered(
            "push.example",
            Answered::Error("cancel", condition_label("policy-violation"), false),
        );
        s.answered(
            "push.example",
            Answered::Error("wait", condition_label("bad-request"), false),
        );
        s.answered(
            "push.example",
            Answered::Error("cancel", "remote-server-not-found", true),
        );
        s.answered("push.example", Answered::Timeout);
        let changes = s.take_changes();
        let (name, t) = &changes[0];
        assert_eq!(name, "push.example");
        assert_eq!(
            (t.sent, t.delivered, t.wait, t.errors, t.route, t.timeouts),
            (3, 1, 1, 1, 1, 1)
        );
        assert_eq!(t.rtt_sum, 0.5);
        assert!(t.conditions.contains(&("cancel", "policy-violation", 1)));
        assert!(t.conditions.contains(&("wait", "bad-request", 1)));
        assert!(s.take_changes().is_empty(), "taken");
        assert_eq!(s.totals()[0].1.sent, 3, "totals stay");
    }

    #[test]
    fn bounded_by_services_and_conditions() {
        let mut s = ServiceStats::default();
        for i in 0..MAX_SERVICES + 10 {
            s.sent(&format!("push{i}.example"), 1);
        }
        s.sent(&"x".repeat(MAX_SERVICE_LEN + 1), 1);
        assert_eq!(condition_label("made-up-condition"), OTHER);
        let changes = s.take_changes();
        assert_eq!(changes.len(), MAX_SERVICES + 1);
        assert_eq!(
            changes.last().unwrap(),
            &(
                OTHER.to_owned(),
                Tally {
                    sent: 11,
                    ..Tally::default()
                }
            )
        );
        assert_eq!(s.label("push40.example"), OTHER);
        assert_eq!(s.label("push0.example"), "push0.example");
    }

    #[test]
    fn unanswered_pushes_warn_once_a_minute_per_service() {
        let mut s = ServiceStats::default();
        assert_eq!(s.unanswered("a.example", 100.0), Some(1));
        assert_eq!(s.unanswered("a.example", 130.0), None);
        assert_eq!(s.unanswered("a.example", 131.0), None);
        assert_eq!(s.unanswered("b.example", 130.0), Some(1));
        assert_eq!(s.unanswered("a.example", 161.0), Some(3));
        // (a JID named "other" is not a name of its own)
        assert_eq!(s.label("other"), OTHER);
    }
}
