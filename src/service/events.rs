//! The events the shim hands over, each answered with one [`Outcome`]:
//! everything the shim must do after it (pushes, a user to load, the
//! retries' timer, registrations to remove, log lines, metrics).
//!
//! Each `on_*` method wraps the rule it names (tested in its own file)
//! and adds what every event shares: the timer a push held back by the
//! grace period needs, and what an answer or a sweep means for logs,
//! metrics and registrations.

use super::*;
use crate::outcome::{About, Outcome};

impl PushService {
    /// Adds the timer a push held back by the grace period needs (its
    /// window may end before the retries' timer runs).
    fn held(&mut self, mut out: Outcome, now: f64) -> Outcome {
        out.timer_in(self.after_holding(now));
        out
    }

    /// An offline message, a bare groupchat message (`kind`
    /// [`PushKind::Groupchat`], with the mentions `pings` of it: XEP-0492
    /// settings apply) or a ping (no stanza), for `user`.
    pub fn on_notify(
        &mut self,
        user: &str,
        (stanza, key, pings): (Option<&StanzaFacts>, Option<&str>, Option<&Pings>),
        targets: Targets<'_>,
        kind: PushKind,
        now: f64,
    ) -> Outcome {
        if let (PushKind::Groupchat, Some(facts), Some(pings)) = (kind, stanza, pings) {
            if !self.registry.is_loaded(user) {
                return Outcome::load(user);
            }
            if !self.groupchat_wanted(user, facts, pings) {
                return Outcome::default();
            }
        }
        let jobs = self.notify(user, stanza, key, targets, kind, now);
        let about = match stanza {
            Some(_) => About::Event,
            None => About::Nothing,
        };
        self.held(Outcome::pushes(user, jobs, about), now)
    }

    /// A message archived for `for_user` ([`PushService::archived`]).
    pub fn on_archived(
        &mut self,
        for_user: &str,
        stanza: &StanzaFacts,
        (fallback_user, archive_id): (Option<&str>, &str),
        live: Option<&[String]>,
        now: f64,
    ) -> Outcome {
        let jobs = self.archived(for_user, stanza, fallback_user, archive_id, live, now);
        self.held(Outcome::pushes(for_user, jobs, About::Event), now)
    }

    /// A message one of the user's sessions sent ([`PushService::outgoing`]).
    pub fn on_outgoing(
        &mut self,
        user: &str,
        identifiers: (Option<&str>, Option<&str>),
        facts: &StanzaFacts,
        now: f64,
    ) -> Outcome {
        let jobs = self.outgoing(user, identifiers, facts, now);
        self.held(Outcome::pushes(user, jobs, About::Event), now)
    }

    /// A publish to the user's own PEP service ([`PushService::published`]).
    pub fn on_published(
        &mut self,
        user: &str,
        identifiers: (Option<&str>, Option<&str>),
        (node, item): (&str, &str),
        now: f64,
    ) -> Outcome {
        let jobs = self.published(user, identifiers, node, item, now);
        self.held(Outcome::pushes(user, jobs, About::Nothing), now)
    }

    /// A presence subscription request
    /// ([`PushService::subscription_request`]).
    #[allow(clippy::too_many_arguments)]
    pub fn on_subscription(
        &mut self,
        user: &str,
        requester: &str,
        (pending, already): (u32, bool),
        subscription: Option<&str>,
        live: &[String],
        now: f64,
    ) -> Outcome {
        let jobs =
            self.subscription_request(user, requester, pending, already, subscription, live, now);
        self.held(Outcome::pushes(user, jobs, About::Event), now)
    }

    /// A smacks session's coalesced batch is due ([`PushService::smacks_flush`]).
    pub fn on_smacks_flush(&mut self, session: &str, now: f64) -> Outcome {
        let mut out = Outcome::default();
        if let Some(flushed) = self.smacks_flush(session, now) {
            out.push(&flushed.user, flushed.important, About::Important);
            out.push(&flushed.user, flushed.unimportant, About::Unimportant);
        }
        self.held(out, now)
    }

    /// The last wake-up of a hibernated session ([`PushService::wake`]).
    pub fn on_wake(&mut self, user: &str, identifier: &str, now: f64) -> Outcome {
        let jobs = self.wake(user, identifier, now);
        Outcome::pushes(user, Some(jobs), About::Nothing)
    }

    /// The retries' timer ran: the retries due and the pushes whose grace
    /// window ended ([`PushService::retries_due`]), and when it must run
    /// next.
    pub fn on_retries_due(&mut self, now: f64) -> Outcome {
        let mut out = Outcome::default();
        for (user, jobs) in self.retries_due(now) {
            out.push(&user, jobs, About::Nothing);
        }
        out.timer_in(self.next_retry_in(now));
        out
    }

    /// The module unloads or the server stops: every push the grace
    /// period holds goes out now ([`PushService::release_held`]).
    pub fn on_release_held(&mut self, now: f64) -> Outcome {
        let mut out = Outcome::default();
        for (user, jobs) in self.release_held(now) {
            out.push(&user, jobs, About::Nothing);
        }
        out
    }

    /// MUC: a room message for its absent members ([`PushService::muc_push`]).
    pub fn on_muc_push(
        &mut self,
        room: &str,
        message: (&StanzaFacts, &Pings, bool),
        members: &[crate::muc::Member],
        now: f64,
    ) -> Outcome {
        let mut out = Outcome::default();
        for (user, jobs) in self.muc_push(room, message, members, now) {
            out.push(&user, jobs, About::Event);
        }
        out
    }

    /// MUC: an occupant's server bounced a room message
    /// ([`PushService::muc_bounced`]): pushed to that member (a local or
    /// remote user of ours) as the room remembers it, unless their
    /// XEP-0492 setting for the room is `never` (`setting`: its name).
    pub fn on_muc_bounced(
        &mut self,
        room: &str,
        (id, condition): (&str, &str),
        (user, nicks, setting): (&str, &[&str], Option<&str>),
        echoed: Option<&str>,
        now: f64,
    ) -> Outcome {
        let mut out = Outcome::default();
        let Some(facts) = self.muc_bounced(room, id, condition, nicks, echoed) else {
            return out;
        };
        let member = [crate::muc::Member {
            jid: user.to_owned(),
            joined: false,
            outcast: false,
            setting: crate::chat_settings::on_bounce(setting.and_then(Level::of)),
            nick: None,
        }];
        let no_pings = Pings::default();
        let pushes = self.muc_push(room, (&facts, &no_pings, false), &member, now);
        let facts = Box::new(facts);
        for (user, jobs) in pushes {
            out.push(&user, jobs, About::Bounced(facts.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::outcome::{Counter, Level as LogLevel, MIN_TIMER};

    fn graced() -> PushService {
        let config = Config {
            grace_period: 30,
            ..Config::default()
        };
        let mut s = PushService::new("example.com", config);
        enable(&mut s, "romeo", "push.example", "phone");
        s
    }

    fn offline_event(s: &mut PushService, f: &StanzaFacts, now: f64) -> Outcome {
        s.on_notify(
            "romeo",
            (Some(f), None, None),
            Targets::All,
            PushKind::Offline,
            now,
        )
    }

    /// The rule every path that may hold a push used to have to
    /// remember: a push held back sets the retries' timer for the end
    /// of its window, whatever event held it.
    #[test]
    fn a_push_held_back_by_any_event_sets_the_timer_for_its_window() {
        let mut s = graced();
        let typing = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' to='juliet@capulet.example'>\
             <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        );
        let out = s.on_outgoing("romeo", (None, None), &typing, 100.0);
        assert!(out.is_empty(), "activity alone: nothing to do");
        let out = offline_event(&mut s, &from_juliet("<body>1</body>"), 101.0);
        assert!(out.pushes.is_empty());
        assert_eq!(out.timer, Some(29.0), "held until the window ends");
        let out = offline_event(&mut s, &from_juliet("<body>2</body>"), 102.0);
        assert_eq!(out.timer, Some(28.0));
        // Nothing held: no timer (the one set covers what is).
        let out = s.on_outgoing("romeo", (None, None), &typing, 103.0);
        assert_eq!(out.timer, None);
        // The timer runs: the held push goes, and the timer is not set again.
        let out = s.on_retries_due(140.0);
        assert_eq!(out.push_count(), 1);
        assert!(matches!(out.pushes[0].about, About::Nothing));
        assert_eq!(out.timer, None);
    }

    #[test]
    fn an_event_for_a_user_not_in_memory_asks_to_load_them_and_does_nothing_else() {
        let mut s = service(16);
        let out = offline_event(&mut s, &chat(), 1.0);
        assert_eq!(out.load.as_deref(), Some("romeo"));
        assert!(out.pushes.is_empty() && out.timer.is_none());
        let out = s.on_notify(
            "romeo",
            (Some(&chat()), None, Some(&Pings::default())),
            Targets::All,
            PushKind::Groupchat,
            1.0,
        );
        assert_eq!(out.load.as_deref(), Some("romeo"), "a room's too");
        enable(&mut s, "romeo", "push.example", "phone");
        let out = offline_event(&mut s, &chat(), 2.0);
        assert_eq!(out.push_count(), 1);
        assert!(matches!(out.pushes[0].about, About::Event));
    }

    #[test]
    fn a_delivery_is_handled_logged_and_timed() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
        let out = s.on_answer(&id, "push.example", (Response::Result, false), 0.25);
        assert!(out.handled && out.drops.is_empty() && out.counts.is_empty());
        assert_eq!(out.rtt, Some(0.25));
        assert_eq!(out.logs[0].0, LogLevel::Debug);
        let out = s.on_answer(&id, "push.example", (Response::Result, false), 0.5);
        assert!(out.is_empty(), "answered once: not ours any more");
    }

    #[test]
    fn errors_are_counted_then_the_registration_is_dropped() {
        let mut s = service(2);
        let identifier = enable(&mut s, "romeo", "push.example", "a");
        let error = || Response::Error {
            type_: "cancel",
            condition: "item-not-found",
        };
        let id = first_push_id(&mut s);
        let out = s.on_answer(&id, "push.example", (error(), false), 1.0);
        assert!(out.handled && out.drops.is_empty());
        assert_eq!(out.counts, vec![(Counter::AppServerError("cancel"), 1)]);
        assert_eq!(out.logs[0].0, LogLevel::Info);
        assert!(out.logs[0].1.contains("error count is now 1"));
        let id = first_push_id(&mut s);
        let out = s.on_answer(&id, "push.example", (error(), false), 2.0);
        assert_eq!(out.drops, vec![("romeo".to_owned(), identifier)]);
        assert!(out.counts.contains(&(Counter::AutoDisabled, 1)));
        assert_eq!(out.logs[0].0, LogLevel::Warn);
    }

    #[test]
    fn a_wait_error_sets_the_timer_for_its_retry_and_a_route_failure_says_whose_it_is() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
        let wait = Response::Error {
            type_: "wait",
            condition: "resource-constraint",
        };
        let out = s.on_answer(&id, "push.example", (wait, false), 1.0);
        assert!(out.timer.is_some_and(|t| t >= MIN_TIMER));
        assert!(out.drops.is_empty());
        let id = first_push_id(&mut s);
        let route = Response::RouteFailure {
            type_: "cancel",
            condition: "remote-server-not-found",
        };
        let out = s.on_answer(&id, "push.example", (route, false), 2.0);
        assert!(out.counts.contains(&(Counter::RouteFailure, 1)));
        assert!(out
            .logs
            .iter()
            .any(|(_, l)| l.contains("our server's error")));
    }

    /// What answers said of a registration's reachability is not undone
    /// by a plan written meanwhile (another device's enable).
    #[test]
    fn a_plan_written_meanwhile_keeps_what_answers_said_of_reachability() {
        let mut s = service(16);
        let phone = enable(&mut s, "romeo", "push.example", "phone");
        let plan = planned(&mut s, "romeo", "romeo@example.com", "tablet");
        let id = first_push_id(&mut s);
        let route = Response::RouteFailure {
            type_: "cancel",
            condition: "remote-server-not-found",
        };
        s.on_answer(&id, "push.example", (route, false), 10.0);
        s.commit_written("romeo", plan);
        let regs = s.registrations("romeo").unwrap();
        let reg = regs.iter().find(|r| r.identifier() == phone).unwrap();
        assert_eq!(reg.health.unreachable_since, Some(10.0));
    }

    #[test]
    fn an_answer_from_someone_else_is_dropped_with_a_warning_and_counts_nothing() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
        let error = Response::Error {
            type_: "cancel",
            condition: "item-not-found",
        };
        let out = s.on_answer(&id, "mallory.example", (error, false), 1.0);
        assert!(out.handled && out.counts.is_empty() && out.drops.is_empty());
        assert_eq!(out.logs[0].0, LogLevel::Warn);
        assert!(out.logs[0].1.contains("expected push.example"));
    }

    #[test]
    fn a_long_condition_is_cut_in_the_log() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
        let long = "x".repeat(10_000);
        let error = Response::Error {
            type_: "cancel",
            condition: &long,
        };
        let out = s.on_answer(&id, "push.example", (error, false), 1.0);
        assert!(out.logs.iter().all(|(_, l)| l.len() < 300));
    }

    #[test]
    fn a_sweep_counts_and_logs_the_unanswered_and_sets_the_timer_for_their_retries() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        first_push_id(&mut s);
        let timeout = s.config.response_timeout as f64;
        assert!(s.on_sweep(1.0).is_empty(), "nothing is late yet");
        let out = s.on_sweep(timeout + 1.0);
        assert_eq!(out.counts, vec![(Counter::Unanswered, 1)]);
        assert!(out.timer.is_some(), "retried");
        assert!(out
            .logs
            .iter()
            .any(|(l, t)| *l == LogLevel::Warn && t.contains("push.example")));
    }

    #[test]
    fn app_servers_past_the_labelled_ones_share_one_warning_line() {
        let mut s = service(16);
        for i in 0..40 {
            let user = format!("u{i}");
            enable(&mut s, &user, &format!("push{i:02}.example"), "n");
            s.notify(&user, None, None, Targets::All, PushKind::Offline, 0.0);
        }
        let late = s.config.response_timeout as f64 + 1.0;
        let out = s.on_sweep(late);
        let warned: Vec<&String> = out
            .logs
            .iter()
            .filter(|(level, line)| *level == LogLevel::Warn && line.contains("unanswered"))
            .map(|(_, line)| line)
            .collect();
        // (warned once a minute per label: the rest's are told the next time)
        assert_eq!(warned.len(), 33, "32 by name, the rest as one");
        assert!(warned.iter().any(|l| l.contains("App server other left")));
    }

    #[test]
    fn a_smacks_batch_says_which_of_its_stanzas_each_push_is_about() {
        let mut s = service(16);
        let identifier = enable(&mut s, "romeo", "push.example", "a");
        let body = from_juliet("<body>hi</body>");
        let state = from_juliet("<active xmlns='http://jabber.org/protocol/chatstates'/>");
        s.smacks_add(
            "romeo@example.com/a",
            ("romeo", &identifier),
            (body, "k1"),
            None,
        );
        s.smacks_add(
            "romeo@example.com/a",
            ("romeo", &identifier),
            (state, "k2"),
            None,
        );
        let out = s.on_smacks_flush("romeo@example.com/a", 1.0);
        let abouts: Vec<bool> = out
            .pushes
            .iter()
            .map(|p| matches!(p.about, About::Important))
            .collect();
        assert_eq!(abouts, vec![true, false]);
        assert!(s.on_smacks_flush("romeo@example.com/a", 2.0).is_empty());
    }
}
