//! App servers' answers to pushes, and the pushes nobody answered.

use super::*;

impl PushService {
    /// A push was not sent after all (an event handler blocked it).
    pub fn cancel(&mut self, id: &str) {
        if let Some(push) = self.pending.remove(id) {
            self.stats.sent(&push.jid, -1);
        }
    }

    /// Handles an IQ result or error addressed to the host.
    pub fn response(&mut self, id: &str, from: &str, response: Response<'_>, now: f64) -> Answer {
        self.response_to(id, from, (response, false), now)
    }

    /// Handles an answer addressed to the host: an IQ's (to an XEP-0357
    /// publish) or, `message`, a message error (to a Push 2.0
    /// notification, which nothing else answers).
    pub fn response_to(
        &mut self,
        id: &str,
        from: &str,
        (response, message): (Response<'_>, bool),
        now: f64,
    ) -> Answer {
        let Some(push) = self.pending.get(id) else {
            return Answer::NotOurs;
        };
        let push2 = push.summary.wire.is_some();
        if push2 != message || (message && matches!(response, Response::Result)) {
            return Answer::NotOurs;
        }
        if push.jid != from {
            return Answer::WrongSender {
                expected: push.jid.clone(),
            };
        }
        // A result for a registration without errors changes nothing in
        // it: no need to read the user back if they left the cache.
        let needs_registration = push.had_errors || !matches!(response, Response::Result);
        if needs_registration && !self.registry.is_loaded(&push.user) {
            return Answer::Load {
                user: push.user.clone(),
            };
        }
        let Some(push) = self.pending.remove(id) else {
            return Answer::NotOurs;
        };
        match response.error_parts() {
            None => self.delivered(push, Some(now)),
            Some((type_, condition, route)) => self.failed(push, (type_, condition, route), now),
        }
    }

    /// Seconds the push's registration has been unreachable (route
    /// failures and unanswered pushes, no result since), this one counted.
    pub(super) fn unreachable_since(&mut self, push: &PendingPush, now: f64) -> f64 {
        match self.registry.registration_mut(&push.user, &push.identifier) {
            Some(reg) => now - *reg.health.unreachable_since.get_or_insert(now),
            None => 0.0,
        }
    }

    /// A result (at `now`; `None`: a Push 2.0 push no error answered in
    /// time): the registration's error count is reset.
    pub(super) fn delivered(&mut self, push: PendingPush, now: Option<f64>) -> Answer {
        let rtt = now.map_or(0.0, |now| (now - push.sent_at).max(0.0));
        let outcome = match now {
            Some(_) => Outcome::Delivered(rtt),
            None => Outcome::Silent,
        };
        self.stats.answered(&push.jid, outcome);
        let reg = self.registry.registration_mut(&push.user, &push.identifier);
        let reset = reg.is_some_and(|r| {
            r.health.delivered_sent_at = r.health.delivered_sent_at.max(push.sent_at);
            r.health.unreachable_since = None;
            std::mem::take(&mut r.errors) > 0
        });
        // Delivered: a retry of an older push has nothing left to say.
        self.retries
            .delivered(&push.user, &push.identifier, push.sent_at);
        if reset {
            self.mark_dirty(&push.user);
        }
        Answer::Delivered {
            rtt,
            user: push.user,
            reset,
        }
    }

    /// An error (type, condition, whether our own server made it): retried
    /// (`wait`, or a route failure off the MUC module) or counted.
    pub(super) fn failed(
        &mut self,
        push: PendingPush,
        (type_, condition, route): (&str, &str, bool),
        now: f64,
    ) -> Answer {
        let label = condition_label(condition);
        self.stats.answered(
            &push.jid,
            Outcome::Error(crate::error::error_type(Some(type_)), label, route),
        );
        let condition: String = condition.chars().take(64).collect();
        self.last_errors.insert(
            (push.user.clone(), push.identifier.clone()),
            (condition, now),
        );
        // An outage of the route is not the app server's error: retried,
        // never counted (on the MUC module, where anyone may register an
        // unreachable app server, it counts, to age such registrations out).
        let temporary = type_ == "wait" || (route && !self.config.unanswered_count);
        // ... unless it has been unreachable, with no result, for 72 h.
        let gone_for_good =
            route && temporary && self.unreachable_since(&push, now) >= UNREACHABLE_MAX;
        let max_errors = self.config.max_errors;
        // A changed error count is written back with the unread counts
        // (batched: [`crate::counts::Dirty`]), never a write per answer, so
        // an app server that flaps (error, result, error…) costs no write.
        let answer = match self.registry.registration_mut(&push.user, &push.identifier) {
            // Removed meanwhile: nothing left to count against or retry.
            None => Answer::Temporary {
                user: push.user,
                identifier: push.identifier,
                retry: crate::retry::Scheduled::Gone,
                route,
            },
            Some(reg) if gone_for_good => Answer::Disable {
                user: push.user,
                identifier: push.identifier,
                count: reg.errors,
            },
            Some(_) if temporary => Answer::Temporary {
                retry: self.retries.schedule(
                    &push.user,
                    &push.identifier,
                    (push.summary, push.origin),
                    push.attempt,
                    push.sent_at,
                    now,
                    crate::ids::jitter(),
                ),
                user: push.user,
                identifier: push.identifier,
                route,
            },
            Some(reg) => {
                reg.errors = reg.errors.saturating_add(1);
                let (user, identifier, count) = (push.user, push.identifier, reg.errors);
                if count >= max_errors {
                    return Answer::Disable {
                        user,
                        identifier,
                        count,
                    };
                }
                self.mark_dirty(&user);
                Answer::Counted {
                    user,
                    identifier,
                    count,
                }
            }
        };
        answer
    }

    /// Seconds between sweeps of the pushes nobody answered
    /// ([`PushService::expire`]): `push_response_timeout`, within 1 to 30.
    pub fn sweep_interval(&self) -> u64 {
        self.config.response_timeout.clamp(1, 30)
    }

    /// Takes the pushes nobody answered in time. On the main module each is
    /// retried like a `wait` error (an outage of the route or of the app
    /// server is not the registration's fault; an answer that comes late
    /// is not ours any more) and never counted. On the MUC module, where
    /// they count as errors ([`Config::unanswered_count`]), the
    /// registrations that reached `push_max_errors` that way are listed,
    /// to drop.
    pub fn expire(&mut self, now: f64) -> Expired {
        self.clock = self.clock.max(now);
        let expired = self.pending.expire(now);
        let mut out = Expired {
            count: expired.len(),
            ..Expired::default()
        };
        let max_errors = self.config.max_errors;
        // A Push 2.0 notification is a message: no error within the
        // timeout is its delivery (no response time is known).
        let (silent, expired): (Vec<PendingPush>, Vec<PendingPush>) =
            expired.into_iter().partition(|p| p.summary.wire.is_some());
        out.count -= silent.len();
        for push in silent {
            self.delivered(push, None);
        }
        for push in &expired {
            self.stats.answered(&push.jid, Outcome::Timeout);
            if let Some(since) = self.stats.unanswered(&push.jid, now) {
                let label = self.stats.label(&push.jid).to_owned();
                out.warnings.push((label, since));
            }
        }
        for push in expired {
            let Some(reg) = self.registry.registration_mut(&push.user, &push.identifier) else {
                continue; // (gone, or not in memory: counted by the next one)
            };
            if !self.config.unanswered_count {
                // (a later push was delivered: nothing left to say)
                if reg.health.delivered_sent_at > push.sent_at {
                    continue;
                }
                if self.unreachable_since(&push, now) >= UNREACHABLE_MAX {
                    out.drop.push((push.user.clone(), push.identifier.clone()));
                    continue;
                }
                let retry = self.retries.schedule(
                    &push.user,
                    &push.identifier,
                    (push.summary, push.origin),
                    push.attempt,
                    push.sent_at,
                    now,
                    crate::ids::jitter(),
                );
                if let crate::retry::Scheduled::In(_) = retry {
                    out.retried += 1;
                }
                continue;
            }
            reg.errors = reg.errors.saturating_add(1);
            // (listed once: when it reaches the bound)
            if reg.errors == max_errors {
                out.drop.push((push.user.clone(), push.identifier));
            }
            self.mark_dirty(&push.user);
        }
        out.retry_in = self.retries.next_in(now);
        out
    }
}
