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
            Some(_) => Answered::Delivered(rtt),
            None => Answered::Silent,
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
            Answered::Error(crate::error::error_type(Some(type_)), label, route),
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

    /// An answer addressed to the host ([`PushService::response_to`]):
    /// what it means for logs, metrics, retries and registrations.
    /// `handled`: it answered one of our pushes (no other handler gets
    /// it); nothing to do for an answer that is not ours.
    pub fn on_answer(
        &mut self,
        id: &str,
        from: &str,
        (response, message): (Response<'_>, bool),
        now: f64,
    ) -> crate::outcome::Outcome {
        match self.response_to(id, from, (response.clone(), message), now) {
            Answer::NotOurs => crate::outcome::Outcome::default(),
            Answer::Load { user } => crate::outcome::Outcome::load(&user),
            answer => answered(answer, from, &response),
        }
    }

    /// The sweep of pushes nobody answered ([`PushService::expire`]): how
    /// many (counted, logged), the app servers to warn about, the
    /// registrations to remove, the retries' timer.
    pub fn on_sweep(&mut self, now: f64) -> crate::outcome::Outcome {
        use crate::outcome::{Counter, Level::*, Outcome};
        let expired = self.expire(now);
        let mut out = Outcome::default();
        if expired.count > 0 {
            out.count(Counter::Unanswered, expired.count as u64);
            out.log(
                Debug,
                format!(
                    "{} push(es) got no answer in time, {} retried",
                    expired.count, expired.retried
                ),
            );
        }
        for (service, n) in expired.warnings {
            out.log(Warn, format!("App server {service} left {n} push(es) unanswered within push_response_timeout (warned at most once a minute per app server)"));
        }
        for (user, identifier) in expired.drop {
            out.log(Warn, format!("Disabling push notifications for identifier '{identifier}' of '{user}': its app server never answers"));
            out.count(Counter::AutoDisabled, 1);
            out.drops.push((user, identifier));
        }
        out.timer_in(expired.retry_in);
        out
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
            self.stats.answered(&push.jid, Answered::Timeout);
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

/// What an answer to one of our pushes (from `from`) means for logs,
/// metrics, retries and registrations.
fn answered(answer: Answer, from: &str, response: &Response<'_>) -> crate::outcome::Outcome {
    use crate::outcome::{shown, Counter, Level::*, Outcome};
    use crate::retry::Scheduled;
    let mut out = Outcome {
        handled: true,
        ..Outcome::default()
    };
    let (error_type, condition, route) = match response.error_parts() {
        Some((type_, condition, route)) => (Some(type_), shown(condition), route),
        None => (None, String::new(), false),
    };
    let wrong_sender = matches!(answer, Answer::WrongSender { .. });
    if let (Some(type_), false) = (error_type, wrong_sender) {
        let type_ = crate::error::error_type(Some(type_));
        out.count(Counter::AppServerError(type_), 1);
    }
    if route {
        out.count(Counter::RouteFailure, 1);
        out.log(Debug, format!("Push to {from} could not be routed ({condition}): our server's error, not the app server's"));
    }
    match answer {
        Answer::NotOurs | Answer::Load { .. } => {}
        Answer::Delivered { rtt, .. } => {
            // (whole milliseconds: cheap to write, for every answer)
            let ms = (rtt * 1000.0).round() as u64;
            out.log(Debug, format!("Push delivered to {from} in {ms} ms"));
            out.rtt = Some(rtt);
        }
        Answer::WrongSender { expected } => {
            let text = format!("Ignoring push answer from {from}, expected {expected}");
            out.log(Warn, text);
        }
        Answer::Temporary {
            user,
            identifier,
            retry,
            ..
        } => {
            let (level, text) = temporary_line(from, &condition, (&user, &identifier), retry);
            out.log(level, text);
            match retry {
                Scheduled::In(delay) | Scheduled::Merged(delay) => out.timer_in(Some(delay)),
                Scheduled::GaveUp => out.count(Counter::GivenUp, 1),
                Scheduled::Gone | Scheduled::Full => {}
            }
        }
        Answer::Counted {
            identifier, count, ..
        } => {
            let type_ = error_type.unwrap_or("cancel");
            out.log(Info, format!("Got error <{type_}:{condition}> for identifier '{identifier}': error count is now {count}"));
        }
        Answer::Disable {
            user,
            identifier,
            count,
        } => {
            out.log(Warn, format!("Disabling push notifications for identifier '{identifier}' after {count} errors"));
            out.count(Counter::AutoDisabled, 1);
            out.drops.push((user, identifier));
        }
    }
    out
}

/// The log line of a temporary error, by what became of its retry.
fn temporary_line(
    from: &str,
    condition: &str,
    (user, identifier): (&str, &str),
    retry: crate::retry::Scheduled,
) -> (crate::outcome::Level, String) {
    use crate::outcome::Level::*;
    use crate::retry::Scheduled;
    match retry {
        Scheduled::In(delay) | Scheduled::Merged(delay) => (
            Debug,
            format!("Push to {from} failed temporarily ({condition}), not counted; retried in {delay:.1}s"),
        ),
        Scheduled::Gone => (
            Debug,
            format!("Push to {from} failed temporarily ({condition}); its registration is gone"),
        ),
        Scheduled::Full => (
            Warn,
            format!("Push to {from} failed temporarily ({condition}); too many retries waiting, not retried"),
        ),
        Scheduled::GaveUp => (
            Info,
            format!("Push for identifier '{identifier}' of '{user}' failed temporarily ({condition}) after every retry: given up"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn errors_answered_while_a_plan_was_written_are_kept_and_batched() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let error = || Response::Error {
            type_: "cancel",
            condition: "item-not-found",
        };
        let push = first_push_id(&mut s);
        // A second device enables: its plan is written (the store yields)...
        let plan = planned(&mut s, "romeo", "romeo@example.com", "b");
        // ... while the app server answers an error: counted, no write asked.
        assert!(matches!(
            s.response(&push, "push.example", error(), 2.0),
            Answer::Counted { count: 1, .. }
        ));
        s.commit("romeo", plan);
        assert_eq!(
            s.error_count("romeo", "push.example<a"),
            1,
            "reverted by the commit"
        );
        // Still owed to the store, with the unread counts' write-back.
        assert_eq!(s.counts_to_write(), ["romeo"]);
        // Enabled again (a reinstall), even within the same second: a new
        // registration, its count afresh.
        let again = planned(&mut s, "romeo", "romeo@example.com", "a");
        s.commit("romeo", again);
        assert_eq!(s.error_count("romeo", "push.example<a"), 0, "carried over");
        // A flapping app server: no write per answer, one write-back.
        for i in 0..100 {
            let push = first_push_id(&mut s);
            let answer = match i % 2 {
                0 => Response::Result,
                _ => error(),
            };
            s.response(&push, "push.example", answer, 3.0);
        }
        assert_eq!(s.counts_to_write(), ["romeo"]);
    }

    #[test]
    fn on_the_muc_unanswered_pushes_age_a_registration_out_elsewhere_never() {
        for muc in [true, false] {
            let mut s = PushService::new(
                "conference.example.com",
                Config {
                    max_errors: 2,
                    unanswered_count: muc,
                    response_timeout: 10,
                    ..Config::default()
                },
            );
            enable(&mut s, "romeo", "push.example", "phone");
            let mut dropped = Vec::new();
            for i in 0..3 {
                first_push_id(&mut s);
                let expired = s.expire(100.0 * f64::from(i + 1));
                assert_eq!(expired.count, 1);
                // (elsewhere retried like a wait error: one retry waits)
                assert_eq!(expired.retry_in.is_some(), !muc);
                dropped.extend(expired.drop);
            }
            match muc {
                true => assert_eq!(dropped[0], ("romeo".into(), "push.example<phone".into())),
                false => assert!(dropped.is_empty(), "an outage deletes nothing"),
            }
        }
    }

    fn wait() -> Response<'static> {
        Response::Error {
            type_: "wait",
            condition: "resource-constraint",
        }
    }

    fn body_chat(body: &str) -> StanzaFacts {
        let xml =
            format!("<message xmlns='jabber:client' type='chat'><body>{body}</body></message>");
        StanzaFacts::from_element(&xml.parse().unwrap())
    }

    /// Pushes `f` to romeo's registration: the push's id.
    fn push(s: &mut PushService, f: &StanzaFacts) -> String {
        s.notify("romeo", Some(f), None, Targets::All, PushKind::Offline, 0.0)
            .unwrap()
            .remove(0)
            .id
    }

    /// Retries after 5 s then 30 s, one user in memory; romeo's phone enabled.
    fn throttled() -> (PushService, String) {
        let mut s = PushService::new(
            "example.com",
            Config {
                retry_delays: vec![5.0, 30.0],
                cache_size: 1,
                ..Config::default()
            },
        );
        let id = enable(&mut s, "romeo", "push.example", "phone");
        (s, id)
    }

    #[test]
    fn wait_errors_are_retried_with_the_latest_summary_then_given_up() {
        use crate::retry::Scheduled;
        let (mut s, id) = throttled();
        let chat = body_chat;
        let first = push(&mut s, &chat("one"));
        let second = push(&mut s, &chat("two"));
        let Answer::Temporary {
            retry: Scheduled::In(delay),
            ..
        } = s.response(&first, "push.example", wait(), 0.0)
        else {
            panic!("not retried");
        };
        assert!((4.0..=6.0).contains(&delay), "{delay}");
        // A second wait for the same registration: one retry, latest summary.
        assert!(matches!(
            s.response(&second, "push.example", wait(), 1.0),
            Answer::Temporary {
                retry: Scheduled::Merged(_),
                ..
            }
        ));
        // Its user stays loaded while it waits, whatever the cache does.
        s.load("juliet", vec![]);
        assert!(s.is_loaded("romeo"));
        assert!(s.retries_due(delay - 0.1).is_empty());
        let due = s.retries_due(delay);
        let [(user, jobs)] = <[_; 1]>::try_from(due).unwrap();
        assert_eq!((user.as_str(), jobs.len()), ("romeo", 1));
        assert_eq!(jobs[0].kind, PushKind::Retry);
        assert_eq!(jobs[0].registration.identifier(), id);
        // Placeholder body (privacy by default), the latest summary's.
        assert!(jobs[0].summary.important());
        // The retry is throttled too: the next delay; then given up.
        let retry = jobs[0].id.clone();
        assert!(matches!(
            s.response(&retry, "push.example", wait(), 10.0),
            Answer::Temporary {
                retry: Scheduled::In(_),
                ..
            }
        ));
        let due = s.retries_due(100.0);
        let last = due[0].1[0].id.clone();
        assert!(matches!(
            s.response(&last, "push.example", wait(), 100.0),
            Answer::Temporary {
                retry: Scheduled::GaveUp,
                ..
            }
        ));
        assert_eq!(s.error_count("romeo", &id), 0, "wait never counts");
    }

    #[test]
    fn a_retry_is_dropped_when_the_device_connects_or_its_registration_goes() {
        let (mut s, id) = throttled();
        let chat = body_chat;
        // A retry is dropped when the device connects.
        let again = push(&mut s, &chat("three"));
        s.response(&again, "push.example", wait(), 200.0);
        assert!(s.retry_of("romeo", &id, 200.0).is_some());
        assert!(s.retry_cancel("romeo", &id));
        assert!(s.retries_due(1000.0).is_empty());
        // And when the registration goes.
        let again = push(&mut s, &chat("four"));
        s.response(&again, "push.example", wait(), 300.0);
        let plan = s.plan_remove_all("romeo").unwrap();
        s.commit("romeo", plan);
        assert!(s.retries_due(1000.0).is_empty());
    }

    #[test]
    fn route_failures_are_told_apart_from_the_app_servers_errors() {
        let here = "example.com";
        let answer =
            |t, c, by, bounced| Response::answer_error(Some(t), Some(c), by, bounced, here);
        let route = |t, c| Response::RouteFailure {
            type_: t,
            condition: c,
        };
        // Prosody 13's s2s bounce (a dummy session, no `by`); 0.12's names
        // our host; a component that is not connected.
        assert_eq!(
            answer("cancel", "remote-server-not-found", None, true),
            route("cancel", "remote-server-not-found")
        );
        assert_eq!(
            answer("cancel", "remote-server-not-found", Some(here), false),
            route("cancel", "remote-server-not-found")
        );
        assert_eq!(
            answer("wait", "remote-server-timeout", None, false),
            route("wait", "remote-server-timeout")
        );
        assert_eq!(
            answer("cancel", "service-unavailable", None, true),
            route("cancel", "service-unavailable")
        );
        // The app server's own (fpush: a dead token, a malformed publish).
        assert_eq!(
            answer("cancel", "policy-violation", None, false),
            Response::Error {
                type_: "cancel",
                condition: "policy-violation"
            }
        );
        assert_eq!(
            answer("cancel", "item-not-found", Some("push.example"), false),
            Response::Error {
                type_: "cancel",
                condition: "item-not-found"
            }
        );
    }

    #[test]
    fn an_outage_of_the_route_is_retried_and_never_counted_except_on_the_muc() {
        for muc in [false, true] {
            let mut s = PushService::new(
                "example.com",
                Config {
                    max_errors: 2,
                    unanswered_count: muc,
                    ..Config::default()
                },
            );
            let ident = enable(&mut s, "romeo", "push.example", "a");
            let bounce = Response::RouteFailure {
                type_: "cancel",
                condition: "remote-server-not-found",
            };
            let mut answers = Vec::new();
            for _ in 0..20 {
                let id = first_push_id(&mut s);
                answers.push(s.response(&id, "push.example", bounce.clone(), 1.0));
            }
            if muc {
                assert!(matches!(answers[1], Answer::Disable { count: 2, .. }));
                continue;
            }
            assert!(answers
                .iter()
                .all(|a| matches!(a, Answer::Temporary { route: true, .. })));
            assert_eq!(
                s.error_count("romeo", &ident),
                0,
                "an outage deletes nothing"
            );
            // The link is back: the next push is delivered.
            let id = first_push_id(&mut s);
            assert!(matches!(
                s.response(&id, "push.example", Response::Result, 2.0),
                Answer::Delivered { .. }
            ));
            // An outage of hours deletes nothing; unreachable for 72 h (no
            // result since), the registration goes.
            let at = |s: &mut PushService, t: f64| {
                let id = first_push_id(s);
                s.response(&id, "push.example", bounce.clone(), t)
            };
            assert!(matches!(
                at(&mut s, 10.0),
                Answer::Temporary { route: true, .. }
            ));
            let late = 10.0 + UNREACHABLE_MAX;
            assert!(matches!(
                at(&mut s, late - 60.0),
                Answer::Temporary { route: true, .. }
            ));
            assert!(matches!(at(&mut s, late), Answer::Disable { .. }));
        }
    }

    #[test]
    fn errors_count_wait_does_not_result_resets() {
        let mut s = service(3);
        let ident = enable(&mut s, "romeo", "push.example", "a");
        let push = |s: &mut PushService| first_push_id(s);
        let err = Response::Error {
            type_: "cancel",
            condition: "item-not-found",
        };
        let id = push(&mut s);
        assert_eq!(
            s.response(&id, "push.example", err.clone(), 1.0),
            Answer::Counted {
                user: "romeo".into(),
                identifier: ident.clone(),
                count: 1
            }
        );
        let id = push(&mut s);
        let wait = Response::Error {
            type_: "wait",
            condition: "resource-constraint",
        };
        assert!(matches!(
            s.response(&id, "push.example", wait, 1.0),
            Answer::Temporary {
                retry: crate::retry::Scheduled::In(_),
                ..
            }
        ));
        assert_eq!(s.error_count("romeo", &ident), 1);
        let id = push(&mut s);
        assert!(matches!(
            s.response(&id, "push.example", Response::Result, 1.5),
            Answer::Delivered { .. }
        ));
        assert_eq!(s.error_count("romeo", &ident), 0);
        for n in 1..3 {
            let id = push(&mut s);
            assert!(
                matches!(s.response(&id, "push.example", err.clone(), 1.0), Answer::Counted { count, .. } if count == n)
            );
        }
        let id = push(&mut s);
        assert!(matches!(
            s.response(&id, "push.example", err.clone(), 1.0),
            Answer::Disable { count: 3, .. }
        ));
        let plan = s.plan_drop("romeo", &ident).unwrap();
        s.commit("romeo", plan);
        assert_eq!(
            s.notify("romeo", None, None, Targets::All, PushKind::Offline, 0.0)
                .unwrap()
                .len(),
            0
        );
        assert_eq!(s.error_count("romeo", &ident), 0);
    }

    #[test]
    fn answers_from_others_and_unknown_ids() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
        assert_eq!(
            s.response("nope", "push.example", Response::Result, 0.0),
            Answer::NotOurs
        );
        assert!(matches!(
            s.response(&id, "evil.example", Response::Result, 0.0),
            Answer::WrongSender { .. }
        ));
        assert_eq!(s.pending(), 1);
        assert!(matches!(
            s.response(&id, "push.example", Response::Result, 0.0),
            Answer::Delivered { .. }
        ));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn pending_expires() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        s.notify("romeo", None, None, Targets::All, PushKind::Offline, 0.0);
        assert_eq!(s.expire(10.0).count, 0);
        let expired = s.expire(1000.0);
        assert_eq!((expired.count, expired.retried), (1, 1));
        assert!(expired.retry_in.is_some());
        assert_eq!(s.error_count("romeo", "push.example<a"), 0);
    }

    #[test]
    fn error_answers_take_the_type_as_rfc_6120_has_it() {
        assert_eq!(
            Response::error(Some("wait"), Some("resource-constraint")),
            Response::Error {
                type_: "wait",
                condition: "resource-constraint"
            }
        );
        assert_eq!(
            Response::error(Some("made-up"), None),
            Response::Error {
                type_: "cancel",
                condition: "undefined-condition"
            }
        );
    }

    #[test]
    fn answers_for_an_evicted_user_ask_for_a_load_only_when_they_change_it() {
        let mut s = PushService::new(
            "example.com",
            Config {
                cache_size: 1,
                ..Config::default()
            },
        );
        let error = Response::Error {
            type_: "cancel",
            condition: "item-not-found",
        };
        enable(&mut s, "romeo", "push.example", "a");
        let [ok, bad] = [first_push_id(&mut s), first_push_id(&mut s)];
        s.load("juliet", vec![]); // evicts romeo
                                  // A result changes nothing in a registration without errors: no read.
        assert!(matches!(
            s.response(&ok, "push.example", Response::Result, 1.0),
            Answer::Delivered { reset: false, .. }
        ));
        // An error counts against it: read first.
        assert_eq!(
            s.response(&bad, "push.example", error.clone(), 1.0),
            Answer::Load {
                user: "romeo".into()
            }
        );
        s.forget_user("juliet");
        enable(&mut s, "romeo", "push.example", "a");
        assert!(!matches!(
            s.response(&bad, "push.example", error, 1.0),
            Answer::Load { .. }
        ));
        assert_eq!(s.error_count("romeo", "push.example<a"), 1);
        // (the count is written back with the unread counts; until then
        // romeo stays in memory)
        assert_eq!(s.counts_to_write(), ["romeo"]);
        let written = s.plan_current("romeo").unwrap();
        s.commit("romeo", written);
        // A push to a registration with errors: its result resets them, read first.
        let reset = first_push_id(&mut s);
        s.load("juliet", vec![]);
        assert!(matches!(
            s.response(&reset, "push.example", Response::Result, 1.0),
            Answer::Load { .. }
        ));
    }
}
