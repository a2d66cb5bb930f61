//! Retries of pushes an app server answered with an error of type `wait`
//! (it, or Apple's or Google's service behind it, is throttling).
//!
//! One retry at most per registration, carrying the latest summary for it
//! (a backlog would only say the same thing several times), due after the
//! next of `push_retry_delays` (5, 30 and 120 s by default), each ±20 %
//! jitter so that a throttled app server is not hit by every retry at once.
//! After the last delay the push is given up. Bounded per host
//! (`push_max_retries`); dropped when the device connects or the
//! registration goes. The shim runs one timer per host for all of them.

use crate::bounded::PerUser;
use crate::notification::Summary;
use crate::origin::Origin;
use std::collections::HashMap;

/// Largest summary (sender and body bytes) a retry keeps as it is; a
/// larger one is retried with the placeholder body instead of its text.
pub const MAX_SUMMARY_BYTES: usize = 1024;

/// A retry waiting for its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// The attempt this retry is (1 for the first retry).
    pub attempt: u8,
    /// When it is due (seconds, the caller's clock).
    pub due: f64,
    /// When the push it retries (the latest merged in) was sent: only the
    /// delivery of a push sent since then makes it moot.
    pub after: f64,
    /// What the push says.
    pub summary: Summary,
    /// The stanza it is about, if kept ([`crate::origin`]).
    pub origin: Option<Origin>,
}

/// What scheduling a retry did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scheduled {
    /// Due in this many seconds.
    In(f64),
    /// Merged into the registration's waiting retry (due in this many seconds).
    Merged(f64),
    /// Every delay was tried: given up.
    GaveUp,
    /// No room for another retry on this host.
    Full,
    /// The registration is gone: nothing to retry.
    Gone,
}

/// The waiting retries of one host, by (user, registration identifier).
#[derive(Debug)]
pub struct Retries {
    delays: Vec<f64>,
    capacity: usize,
    map: HashMap<(String, String), Retry>,
    users: PerUser,
}

impl Retries {
    /// No retry yet: each waits `delays[attempt]`, at most `capacity` at once.
    pub fn new(delays: Vec<f64>, capacity: usize) -> Self {
        Retries {
            delays,
            capacity,
            map: HashMap::new(),
            users: PerUser::default(),
        }
    }

    /// Retries waiting.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no retry waits.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Whether a retry of this user's is waiting (its registrations stay
    /// in memory meanwhile).
    pub fn holds(&self, user: &str) -> bool {
        self.users.contains(user)
    }

    /// The registration's waiting retry, if any.
    pub fn get(&self, user: &str, identifier: &str) -> Option<&Retry> {
        self.map.get(&(user.to_owned(), identifier.to_owned()))
    }

    /// A push sent at `sent_at`, attempt `attempt` (0: the first push),
    /// got a `wait` error. `jitter` in `[0, 1)` spreads the delay by ±20 %.
    #[allow(clippy::too_many_arguments)]
    pub fn schedule(
        &mut self,
        user: &str,
        identifier: &str,
        (summary, origin): (Summary, Option<Origin>),
        attempt: u8,
        sent_at: f64,
        now: f64,
        jitter: f64,
    ) -> Scheduled {
        let key = (user.to_owned(), identifier.to_owned());
        if let Some(waiting) = self.map.get_mut(&key) {
            // Coalesced: the latest summary, the waiting retry's time.
            if sent_at >= waiting.after {
                waiting.summary = summary;
                waiting.origin = origin;
                waiting.after = sent_at;
            }
            return Scheduled::Merged((waiting.due - now).max(0.0));
        }
        let Some(delay) = self.delays.get(usize::from(attempt)) else {
            return Scheduled::GaveUp;
        };
        if self.map.len() >= self.capacity {
            return Scheduled::Full;
        }
        let delay = delay * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
        self.map.insert(
            key,
            Retry {
                attempt: attempt.saturating_add(1),
                due: now + delay,
                after: sent_at,
                summary,
                origin,
            },
        );
        self.users.add(user);
        Scheduled::In(delay)
    }

    /// Takes the retries that are due, with their user and identifier.
    pub fn due(&mut self, now: f64) -> Vec<(String, String, Retry)> {
        let keys: Vec<(String, String)> = self
            .map
            .iter()
            .filter(|(_, r)| r.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(retry) = self.map.remove(&key) {
                self.users.remove(&key.0);
                out.push((key.0, key.1, retry));
            }
        }
        out
    }

    /// Seconds until the next retry is due (`None`: none waiting).
    pub fn next_in(&self, now: f64) -> Option<f64> {
        self.map
            .values()
            .map(|r| (r.due - now).max(0.0))
            .min_by(f64::total_cmp)
    }

    /// A push sent at `sent_at` was delivered: the waiting retry is moot
    /// unless it retries a push sent after that one.
    pub fn delivered(&mut self, user: &str, identifier: &str, sent_at: f64) -> bool {
        match self.get(user, identifier) {
            Some(retry) if retry.after <= sent_at => self.cancel(user, identifier),
            _ => false,
        }
    }

    /// Drops the registration's waiting retry (the device connected, or
    /// the registration went).
    pub fn cancel(&mut self, user: &str, identifier: &str) -> bool {
        let removed = self
            .map
            .remove(&(user.to_owned(), identifier.to_owned()))
            .is_some();
        if removed {
            self.users.remove(user);
        }
        removed
    }
}

/// The summary a retry keeps: as it was, or, past [`MAX_SUMMARY_BYTES`],
/// with `placeholder` (or nothing) for its body and no sender.
pub fn kept_summary(summary: &Summary, placeholder: &str) -> Summary {
    let bytes = summary.sender.as_ref().map_or(0, String::len)
        + summary.body.as_ref().map_or(0, String::len);
    if bytes <= MAX_SUMMARY_BYTES {
        return summary.clone();
    }
    Summary {
        message_count: summary.message_count,
        pending_subscriptions: summary.pending_subscriptions,
        sender: None,
        body: summary
            .body
            .as_ref()
            .map(|_| placeholder.to_owned())
            .filter(|p| !p.is_empty()),
        wire: summary.wire,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(body: &str) -> Summary {
        Summary {
            message_count: 1,
            sender: None,
            body: Some(body.into()),
            ..Default::default()
        }
    }

    #[test]
    fn back_off_then_give_up() {
        let mut r = Retries::new(vec![5.0, 30.0, 120.0], 10);
        assert_eq!(
            r.schedule("u", "p<n", (summary("a"), None), 0, 0.0, 0.0, 0.5),
            Scheduled::In(5.0)
        );
        assert!(r.due(4.9).is_empty());
        let [(user, id, retry)] = <[_; 1]>::try_from(r.due(5.0)).unwrap();
        assert_eq!((user.as_str(), id.as_str(), retry.attempt), ("u", "p<n", 1));
        assert_eq!(
            r.schedule("u", "p<n", (summary("a"), None), 1, 5.0, 5.0, 0.0),
            Scheduled::In(24.0)
        );
        r.due(100.0);
        assert_eq!(
            r.schedule("u", "p<n", (summary("a"), None), 2, 30.0, 30.0, 0.999),
            Scheduled::In(120.0 * 1.1996)
        );
        r.due(1000.0);
        assert_eq!(
            r.schedule("u", "p<n", (summary("a"), None), 3, 200.0, 200.0, 0.5),
            Scheduled::GaveUp
        );
        assert!(r.is_empty() && !r.holds("u"));
    }

    #[test]
    fn one_retry_per_registration_with_the_latest_summary() {
        let mut r = Retries::new(vec![5.0], 10);
        r.schedule("u", "p<n", (summary("first"), None), 0, 0.0, 0.0, 0.5);
        assert_eq!(
            r.schedule("u", "p<n", (summary("second"), None), 0, 1.0, 2.0, 0.5),
            Scheduled::Merged(3.0)
        );
        // An older push's late wait does not bring its older summary back,
        // and an older push's late delivery does not make the retry moot.
        r.schedule("u", "p<n", (summary("older"), None), 0, 0.5, 2.5, 0.5);
        assert!(!r.delivered("u", "p<n", 0.9));
        assert_eq!(r.len(), 1);
        let due = r.due(5.0);
        assert_eq!(due[0].2.summary.body.as_deref(), Some("second"));
    }

    #[test]
    fn bounded_and_cancelled() {
        let mut r = Retries::new(vec![5.0], 2);
        r.schedule("a", "p<1", (summary("x"), None), 0, 0.0, 0.0, 0.5);
        r.schedule("b", "p<1", (summary("x"), None), 0, 0.0, 0.0, 0.5);
        assert_eq!(
            r.schedule("c", "p<1", (summary("x"), None), 0, 0.0, 0.0, 0.5),
            Scheduled::Full
        );
        assert!(r.holds("a"));
        assert!(r.cancel("a", "p<1"));
        assert!(!r.holds("a") && !r.cancel("a", "p<1"));
        assert_eq!(r.next_in(1.0), Some(4.0));
        assert!(r.delivered("b", "p<1", 0.0));
        assert_eq!(r.next_in(1.0), None);
    }

    #[test]
    fn large_summaries_keep_the_placeholder_only() {
        let big = Summary {
            message_count: 1,
            sender: Some("juliet@capulet.example/balcony".into()),
            body: Some("x".repeat(MAX_SUMMARY_BYTES)),

            ..Default::default()
        };
        let kept = kept_summary(&big, "New Message!");
        assert_eq!(
            (kept.sender, kept.body.as_deref()),
            (None, Some("New Message!"))
        );
        assert_eq!(kept_summary(&summary("hi"), "New Message!"), summary("hi"));
    }
}
