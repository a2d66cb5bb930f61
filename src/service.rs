//! One host's push service: registrations, pushes, app-server answers.
//!
//! Every decision of the module is taken here; the binding converts, the
//! shim does I/O. One instance per VirtualHost: nothing is shared.

use crate::config::Config;
use crate::error::StanzaError;
use crate::facts::StanzaFacts;
use crate::ids::next_push_id;
use crate::notification::{notification, publish_iq, summarize, Summary};
use crate::pending::{Pending, PendingPush};
use crate::registration::{
    disable_matches, registration_from_enable, EnableRequest, Registration, Requester,
};
use crate::registry::{Plan, Registry};
use minidom::Element;
use std::collections::HashMap;

/// Which of a user's registrations a push goes to.
#[derive(Debug, Clone, Copy)]
pub enum Targets<'a> {
    All,
    Only(&'a [String]),
}

impl Targets<'_> {
    fn includes(&self, identifier: &str) -> bool {
        match self {
            Targets::All => true,
            Targets::Only(ids) => ids.iter().any(|i| i == identifier),
        }
    }
}

/// One publish to send.
#[derive(Debug, Clone)]
pub struct PushJob {
    pub id: String,
    pub registration: Registration,
    pub summary: Summary,
    /// The whole `<iq/>`; the notification payload sits at
    /// `pubsub/publish/item/notification`.
    pub iq: Element,
}

/// The app server's answer to a push.
#[derive(Debug, Clone, PartialEq)]
pub enum Response<'a> {
    Result,
    Error { type_: &'a str, condition: &'a str },
}

/// What to do about an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Not an answer to one of our pushes: let other handlers have it.
    NotOurs,
    /// One of our ids, but from someone other than the app server: dropped.
    WrongSender { expected: String },
    /// Success; the registration's error count is back to zero.
    Delivered { rtt: f64 },
    /// A `wait` error: temporary, not counted.
    Temporary,
    /// An error, counted against the registration.
    Counted {
        user: String,
        identifier: String,
        count: u32,
    },
    /// The error count reached `push_max_errors`: remove the registration
    /// (`plan_drop`, write, `commit`).
    Disable {
        user: String,
        identifier: String,
        count: u32,
    },
}

pub struct PushService {
    pub config: Config,
    pub host: String,
    registry: Registry,
    pending: Pending,
    /// user → identifier → consecutive errors.
    errors: HashMap<String, HashMap<String, u32>>,
}

impl PushService {
    pub fn new(host: &str, config: Config) -> Self {
        PushService {
            registry: Registry::new(config.cache_size, config.max_devices),
            pending: Pending::new(config.max_pending, config.response_timeout),
            host: host.to_owned(),
            config,
            errors: HashMap::new(),
        }
    }

    pub fn is_loaded(&self, user: &str) -> bool {
        self.registry.is_loaded(user)
    }

    /// Takes a user's registrations as read from the store. Returns the
    /// identifiers trimmed beyond `push_max_devices`.
    pub fn load(&mut self, user: &str, regs: Vec<Registration>) -> Vec<String> {
        self.registry.load(user, regs)
    }

    pub fn registrations(&self, user: &str) -> Option<&[Registration]> {
        self.registry.peek(user)
    }

    pub fn loaded_users(&self) -> usize {
        self.registry.users()
    }

    pub fn loaded_registrations(&self) -> usize {
        self.registry.registrations()
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Checks an `<enable/>`; the registration it would create.
    pub fn enable_request(
        &self,
        req: EnableRequest,
        who: &Requester,
        now: f64,
    ) -> Result<Registration, StanzaError> {
        registration_from_enable(req, who, now)
    }

    /// The user's registrations once `reg` is added. `None`: not loaded.
    pub fn plan_enable(&self, user: &str, reg: Registration) -> Option<Plan> {
        self.registry.plan_enable(user, reg)
    }

    /// The user's registrations without those a `<disable/>` names.
    pub fn plan_disable(
        &self,
        user: &str,
        jid: Option<&str>,
        node: Option<&str>,
    ) -> Result<Option<Plan>, StanzaError> {
        let jid = jid.ok_or_else(|| StanzaError::bad_request("Missing jid"))?;
        Ok(self
            .registry
            .plan_remove(user, |r| disable_matches(r, jid, node)))
    }

    /// The user's registrations without one identifier.
    pub fn plan_drop(&self, user: &str, identifier: &str) -> Option<Plan> {
        self.registry
            .plan_remove(user, |r| r.identifier == identifier)
    }

    /// Makes a written plan the user's registrations.
    pub fn commit(&mut self, user: &str, plan: Plan) {
        let kept: Vec<&str> = plan.regs.iter().map(|r| r.identifier.as_str()).collect();
        if let Some(counts) = self.errors.get_mut(user) {
            counts.retain(|id, _| kept.contains(&id.as_str()));
            if counts.is_empty() {
                self.errors.remove(user);
            }
        }
        self.pending.forget(user, &plan.removed);
        self.registry.commit(user, plan.regs);
    }

    /// The publishes for a stanza (or a ping, with none) to a user's
    /// registrations. `None` if the user's registrations are not loaded.
    pub fn notify(
        &mut self,
        user: &str,
        stanza: Option<&StanzaFacts>,
        targets: Targets<'_>,
        now: f64,
    ) -> Option<Vec<PushJob>> {
        let regs = self.registry.get(user)?;
        if regs.is_empty() {
            return Some(Vec::new());
        }
        let summary = summarize(&self.config, stanza);
        let payload = notification(&summary);
        let mut jobs = Vec::new();
        for reg in regs.iter().filter(|r| targets.includes(&r.identifier)) {
            let id = next_push_id();
            let iq = publish_iq(&self.host, &id, reg, payload.clone());
            jobs.push(PushJob {
                id,
                registration: reg.clone(),
                summary: summary.clone(),
                iq,
            });
        }
        for job in &jobs {
            self.pending.insert(
                job.id.clone(),
                PendingPush {
                    user: user.to_owned(),
                    identifier: job.registration.identifier.clone(),
                    jid: job.registration.jid.clone(),
                    sent_at: now,
                },
            );
        }
        Some(jobs)
    }

    /// A push was not sent after all (an event handler blocked it).
    pub fn cancel(&mut self, id: &str) {
        self.pending.remove(id);
    }

    /// Handles an IQ result or error addressed to the host.
    pub fn response(&mut self, id: &str, from: &str, response: Response<'_>, now: f64) -> Answer {
        let Some(push) = self.pending.get(id) else {
            return Answer::NotOurs;
        };
        if push.jid != from {
            return Answer::WrongSender {
                expected: push.jid.clone(),
            };
        }
        let Some(push) = self.pending.remove(id) else {
            return Answer::NotOurs;
        };
        match response {
            Response::Result => {
                if let Some(counts) = self.errors.get_mut(&push.user) {
                    counts.remove(&push.identifier);
                    if counts.is_empty() {
                        self.errors.remove(&push.user);
                    }
                }
                Answer::Delivered {
                    rtt: (now - push.sent_at).max(0.0),
                }
            }
            Response::Error { type_: "wait", .. } => Answer::Temporary,
            Response::Error { .. } => {
                let still_registered = self
                    .registry
                    .peek(&push.user)
                    .is_none_or(|regs| regs.iter().any(|r| r.identifier == push.identifier));
                if !still_registered {
                    return Answer::Temporary;
                }
                let count = {
                    let c = self
                        .errors
                        .entry(push.user.clone())
                        .or_default()
                        .entry(push.identifier.clone())
                        .or_insert(0);
                    *c += 1;
                    *c
                };
                if count >= self.config.max_errors {
                    Answer::Disable {
                        user: push.user,
                        identifier: push.identifier,
                        count,
                    }
                } else {
                    Answer::Counted {
                        user: push.user,
                        identifier: push.identifier,
                        count,
                    }
                }
            }
        }
    }

    /// Forgets pushes nobody answered in time; returns how many.
    pub fn expire(&mut self, now: f64) -> usize {
        self.pending.expire(now).len()
    }

    /// Current error count of a registration.
    pub fn error_count(&self, user: &str, identifier: &str) -> u32 {
        self.errors
            .get(user)
            .and_then(|m| m.get(identifier))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(max_errors: u32) -> PushService {
        PushService::new(
            "example.com",
            Config {
                max_errors,
                ..Config::default()
            },
        )
    }

    fn enable(s: &mut PushService, user: &str, jid: &str, node: &str) -> String {
        let who = Requester {
            bare_jid: format!("{user}@example.com"),
            ..Default::default()
        };
        let req = EnableRequest {
            jid: Some(jid.into()),
            node: Some(node.into()),
            ..Default::default()
        };
        let reg = s.enable_request(req, &who, 1.0).unwrap();
        let id = reg.identifier.clone();
        if !s.is_loaded(user) {
            s.load(user, vec![]);
        }
        let plan = s.plan_enable(user, reg).unwrap();
        s.commit(user, plan);
        id
    }

    fn chat() -> StanzaFacts {
        StanzaFacts::from_element(
            &"<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
                .parse()
                .unwrap(),
        )
    }

    #[test]
    fn not_loaded_means_none() {
        let mut s = service(16);
        assert!(s
            .notify("romeo", Some(&chat()), Targets::All, 0.0)
            .is_none());
        s.load("romeo", vec![]);
        assert_eq!(
            s.notify("romeo", Some(&chat()), Targets::All, 0.0)
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn one_push_per_registration() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        enable(&mut s, "romeo", "push.example", "b");
        let jobs = s.notify("romeo", Some(&chat()), Targets::All, 0.0).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(s.pending(), 2);
        assert!(jobs.iter().all(|j| j.summary.important()));
        let only = vec!["push.example<b".to_string()];
        let jobs = s.notify("romeo", None, Targets::Only(&only), 0.0).unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(!jobs[0].summary.important());
    }

    #[test]
    fn errors_count_wait_does_not_result_resets() {
        let mut s = service(3);
        let ident = enable(&mut s, "romeo", "push.example", "a");
        let push = |s: &mut PushService| {
            s.notify("romeo", None, Targets::All, 0.0).unwrap()[0]
                .id
                .clone()
        };
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
        assert_eq!(
            s.response(&id, "push.example", wait, 1.0),
            Answer::Temporary
        );
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
        assert_eq!(s.notify("romeo", None, Targets::All, 0.0).unwrap().len(), 0);
        assert_eq!(s.error_count("romeo", &ident), 0);
    }

    #[test]
    fn answers_from_others_and_unknown_ids() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let id = s.notify("romeo", None, Targets::All, 0.0).unwrap()[0]
            .id
            .clone();
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
    fn disable_forgets_pending_and_errors() {
        let mut s = service(16);
        let ident = enable(&mut s, "romeo", "push.example", "a");
        let id = s.notify("romeo", None, Targets::All, 0.0).unwrap()[0]
            .id
            .clone();
        let plan = s
            .plan_disable("romeo", Some("push.example"), None)
            .unwrap()
            .unwrap();
        assert_eq!(plan.removed, vec![ident]);
        s.commit("romeo", plan);
        assert_eq!(s.pending(), 0);
        assert_eq!(
            s.response(&id, "push.example", Response::Result, 0.0),
            Answer::NotOurs
        );
        assert!(s.plan_disable("romeo", None, None).is_err());
    }

    #[test]
    fn pending_expires() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        s.notify("romeo", None, Targets::All, 0.0);
        assert_eq!(s.expire(10.0), 0);
        assert_eq!(s.expire(1000.0), 1);
    }
}
