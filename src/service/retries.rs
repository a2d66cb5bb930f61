//! Retries of pushes answered with a `wait` error (or unanswered), the
//! pushes the grace period held, and the device being back.

use super::*;

impl PushService {
    /// The retries that are due: one push each, to its registration, with
    /// the latest summary (by user). A registration gone meanwhile is
    /// skipped.
    ///
    /// Also the pushes the grace period held back, now that their window
    /// ended with their chats unread: once each, with the registration's
    /// current count.
    pub fn retries_due(&mut self, now: f64) -> Vec<(String, Vec<PushJob>)> {
        self.clock = self.clock.max(now);
        let mut out: Vec<(String, Vec<PushJob>)> = Vec::new();
        let released = self.grace.due(now);
        self.release(released, now, &mut out);
        // (each push on its own: grouping by user would cost k² for k due)
        for (user, identifier, retry) in self.retries.due(now) {
            let Some(reg) = self
                .registry
                .peek(&user)
                .and_then(|regs| regs.iter().find(|r| r.identifier() == identifier))
            else {
                continue;
            };
            let wakes = wakes(&self.config, &retry.summary);
            let origin = retry.origin.unwrap_or_else(|| to_user(&self.host, &user));
            let job = new_job(
                &mut self.payloads,
                reg,
                retry.summary,
                (PushKind::Retry, wakes),
                Some(origin.clone()),
            );
            self.await_answer(&user, &job, retry.attempt, Some(origin), now);
            out.push((user, vec![job]));
        }
        out
    }

    /// Every push the grace period holds, now (the module unloads, or
    /// the server stops: nothing held is lost).
    pub fn release_held(&mut self, now: f64) -> Vec<(String, Vec<PushJob>)> {
        self.clock = self.clock.max(now);
        let mut out = Vec::new();
        let released = self.grace.release_all();
        self.release(released, now, &mut out);
        out
    }

    /// The pushes of held messages now released: once each, with the
    /// registration's current count, about the latest message held.
    fn release(
        &mut self,
        released: Vec<crate::grace::Released>,
        now: f64,
        out: &mut Vec<(String, Vec<PushJob>)>,
    ) {
        for held in released {
            let Some(reg) = self.registry.registration_mut(&held.user, &held.identifier) else {
                continue;
            };
            let counted = held.kind.counts() && self.config.with_counts;
            if counted {
                for &(chat, n) in &held.chats {
                    reg.counts.add_n(chat, n);
                }
            }
            let mut summary = held.summary;
            let mut origin = held.origin;
            if !held.summary_unread {
                // Its own chat was read meanwhile: never show that message.
                summary.sender = None;
                summary.body = Some(self.config.important_body.clone()).filter(|b| !b.is_empty());
                origin = None;
            }
            let origin = origin.unwrap_or_else(|| to_user(&self.host, &held.user));
            summary.message_count = message_count(held.kind, reg, self.config.with_counts);
            let wakes = wakes(&self.config, &summary);
            let kind = (held.kind, wakes);
            let job = new_job(&mut self.payloads, reg, summary, kind, Some(origin.clone()));
            if counted {
                self.counts_changed();
            }
            self.await_answer(&held.user, &job, 0, Some(origin), now);
            out.push((held.user, vec![job]));
        }
    }

    /// After an event: seconds until the retries' timer must run, if the
    /// event held a push back (its window may end before the timer runs);
    /// `None`, at once, when it held nothing (most events, however many
    /// pushes are held or waiting: the timer already covers those).
    pub fn after_holding(&mut self, now: f64) -> Option<f64> {
        if !std::mem::take(&mut self.newly_held) {
            return None;
        }
        self.next_retry_in(now)
    }

    /// Seconds until the next retry is due (`None`: none waiting).
    pub fn next_retry_in(&self, now: f64) -> Option<f64> {
        match (self.retries.next_in(now), self.grace.next_in(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The device of a registration connected: its retry is moot.
    pub fn retry_cancel(&mut self, user: &str, identifier: &str) -> bool {
        self.retries.cancel(user, identifier)
    }

    /// The device of a registration is here (it enabled, or bound a
    /// session that re-attached it): its retry is moot, nothing is unread
    /// for it, nothing held for it is pushed.
    pub fn device_here(&mut self, user: &str, identifier: &str) {
        self.retry_cancel(user, identifier);
        self.connected(user, identifier);
    }

    /// The last error an app server answered for a registration: its
    /// condition and when.
    pub fn last_error(&self, user: &str, identifier: &str) -> Option<&(String, f64)> {
        self.last_errors
            .get(&(user.to_owned(), identifier.to_owned()))
    }

    /// The registration's waiting retry: its attempt and seconds until due.
    pub fn retry_of(&self, user: &str, identifier: &str, now: f64) -> Option<(u8, f64)> {
        self.retries
            .get(user, identifier)
            .map(|r| (r.attempt, (r.due - now).max(0.0)))
    }
}
