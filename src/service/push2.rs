//! Push 2.0 (`urn:xmpp:push2:0`) in the service: its registrations'
//! enables and disables, which store holds them, and the notification
//! messages ([`crate::push2`] decides and builds; this holds the state:
//! which users have such registrations, the reused VAPID tokens).

use super::{PushJob, PushKind, PushService};
use crate::error::StanzaError;
use crate::facts::StanzaFacts;
use crate::registration::Registration;
use crate::registry::Plan;

/// How a push of `kind` about `stanza` goes to a Push 2.0 registration
/// with these settings (`at`: the user, their bare JID, the registration,
/// the time); `None`: none of its matches takes it. A match's grace reads
/// the user's activity; a mention, their nick in the room.
pub(super) fn wire(
    p2: &crate::push2::Push2,
    (grace, settings): (&crate::grace::Grace, &crate::chat_settings::ChatSettings),
    (user, user_bare, identifier, now): (&str, &str, &str, f64),
    stanza: Option<&StanzaFacts>,
    kind: PushKind,
) -> Option<crate::push2::Wire> {
    let active = |secs: f64| grace.active_within(user, identifier, secs, now);
    let facts = stanza.map(StanzaFacts::effective);
    let room = facts.and_then(|f| f.from.as_deref()).map(super::bare);
    let nick = room
        .and_then(|r| settings.get(user, r))
        .and_then(|s| s.nick.as_deref())
        .unwrap_or(user);
    let ctx = crate::push2::decide::Context {
        user_bare,
        nick,
        active_within: &active,
    };
    crate::push2::decide::decide(p2, kind, facts, &ctx)
}

impl PushService {
    /// A user with Push 2.0 registrations in `mod_push2`'s store (listed
    /// when the module loads).
    pub fn note_known2(&mut self, user: &str) {
        // (as [`PushService::note_known`])
        if !self.registry.is_loaded(user) {
            self.known.get_mut().push2.note(user, true);
        }
    }

    /// Every user with Push 2.0 registrations was noted.
    pub fn known2_complete(&mut self) {
        self.known.get_mut().push2.completed();
    }

    /// Which stores a load of `user` must read: the module's, `mod_push2`'s
    /// (a store known to hold nothing of theirs is not read).
    pub fn stores_to_read(&self, user: &str) -> (bool, bool) {
        let known = self.known.get();
        (
            !known.xep0357.rules_out(user),
            self.config.push2 && !known.push2.rules_out(user),
        )
    }

    /// Whether Push 2.0 registrations may be pushed (then pushes that go
    /// out later keep a copy of their message, to forward it).
    pub fn push2_in_use(&self) -> bool {
        let known = self.known.get();
        self.config.push2 && !(known.push2.is_complete() && known.push2.is_empty())
    }

    /// The VAPID `sub` claim: `contact_uri`, else `https://` and the host.
    pub fn push2_contact(&self) -> String {
        match &self.config.contact_uri {
            Some(c) => c.clone(),
            None => format!("https://{}", self.host),
        }
    }

    /// The `<message/>` of a Push 2.0 push (`None`: the job is an XEP-0357
    /// one): `original` forwarded (or only its archive id and call signal:
    /// `push2_forward_content`), encrypted and signed as its match says.
    pub fn push2_message(
        &mut self,
        user: &str,
        job: &PushJob,
        original: Option<minidom::Element>,
        now: f64,
    ) -> Option<minidom::Element> {
        let (p2, wire) = (job.registration.push2.as_ref()?, job.summary.wire?);
        let by = super::bare_jid(&self.host, user);
        let original = original
            .map(|m| crate::push2::envelope::with_archive_id(m, &by, job.archive_id.as_deref()));
        let sub = self.push2_contact();
        let who = [user, job.registration.identifier()];
        let tokens = &mut self.push2_tokens;
        let parts = crate::push2::notification::Parts {
            host: &self.host,
            id: &job.id,
            service: job.registration.jid(),
            original,
            content: self.config.push2_forward_content,
        };
        let mut jwt = |keys: &crate::push2::settings::Encrypted| tokens.get(who, keys, &sub, now);
        Some(crate::push2::notification::message(
            p2,
            wire,
            parts,
            &mut rand_core::OsRng,
            &mut jwt,
        ))
    }

    /// Whether Push 2.0 is served.
    pub fn push2_enabled(&self) -> bool {
        self.config.push2
    }

    /// Push 2.0: the user's registrations once the `<enable/>` of the
    /// device `key` (its client id, else resource) is added: it replaces
    /// that device's Push 2.0 registration. `own`: the user's bare JID
    /// and the session's full JID. `Ok(None)`: not loaded.
    pub fn plan_enable2(
        &self,
        user: &str,
        key: &str,
        own: [&str; 2],
        enable: &minidom::Element,
        now: f64,
    ) -> Result<Option<Plan>, StanzaError> {
        if key.is_empty() || key.len() > crate::registration::MAX_CLIENT_ID_LEN.max(1023) {
            return Err(StanzaError::bad_request("No device to register"));
        }
        let (service, settings) = crate::push2::settings::from_enable(enable, own)?;
        let reg = Registration::push2(key, &service, settings, now);
        Ok(self.registry.plan_enable(user, reg, None))
    }

    /// Push 2.0: the user's registrations without the device `key`'s.
    pub fn plan_disable2(&self, user: &str, key: &str) -> Option<Plan> {
        let identifier = crate::push2::identifier(key);
        self.registry
            .plan_remove(user, |r| r.identifier() == identifier)
    }

    /// Push 2.0: the device's registration (stored under its client id,
    /// else its resource).
    pub fn reattach2(
        &self,
        user: &str,
        client_id: Option<&str>,
        resource: Option<&str>,
    ) -> Option<&Registration> {
        let key = client_id.or(resource)?;
        self.registry
            .peek(user)?
            .iter()
            .find(|r| r.push2_key() == Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        addressed, chat, enable, offline_chat, service, source_of, JULIET_SAYS,
    };
    use super::super::*;
    use minidom::Element;

    /// Romeo's device `key` enables Push 2.0 (`profile`, notify-only).
    fn enable2(s: &mut PushService, key: &str, profile: &str) -> String {
        let enable: Element = format!(
            "<enable xmlns='urn:xmpp:push2:0'><service>push2.example</service><client>c-{key}</client>\
             <match profile='{profile}'><send xmlns='urn:xmpp:push2:send:notify-only:0'/></match></enable>"
        )
        .parse()
        .unwrap();
        if !s.is_loaded("romeo") {
            s.load("romeo", vec![]);
        }
        let own = ["romeo@example.com", "romeo@example.com/x"];
        let plan = s
            .plan_enable2("romeo", key, own, &enable, 1.0)
            .unwrap()
            .unwrap();
        assert!(plan.stores.push2 && !plan.stores.xep0357);
        let id = plan.regs.last().unwrap().identifier().to_owned();
        s.commit("romeo", plan);
        id
    }

    #[test]
    fn push2_registrations_beside_xep_0357_ones() {
        let mut s = service(3);
        let xep = enable(&mut s, "romeo", "push.example", "n");
        let all = enable2(&mut s, "tablet", crate::push2::settings::MATCH_ALL);
        let important = enable2(&mut s, "phone", crate::push2::settings::MATCH_IMPORTANT);
        assert_eq!(all, "push2:tablet");
        // A chat: all three; a receipt: XEP-0357 and `all` only.
        let kinds = |s: &mut PushService, f: &StanzaFacts| -> Vec<(String, Option<&'static str>)> {
            let jobs = s
                .notify("romeo", Some(f), None, Targets::All, PushKind::Offline, 0.0)
                .unwrap();
            let mut out: Vec<_> = jobs
                .iter()
                .map(|j| {
                    (
                        j.registration.identifier().to_owned(),
                        j.summary.wire.map(|w| w.priority.as_str()),
                    )
                })
                .collect();
            out.sort();
            out
        };
        assert_eq!(
            kinds(&mut s, &chat()),
            vec![
                (xep.clone(), None),
                (important.clone(), Some("normal")),
                (all.clone(), Some("normal")),
            ]
        );
        let receipt = StanzaFacts::from_element(
            &"<message xmlns='jabber:client'><received xmlns='urn:xmpp:receipts' id='x'/></message>"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            kinds(&mut s, &receipt),
            vec![(xep.clone(), None), (all.clone(), Some("low"))]
        );
        // An XEP-0357 disable leaves Push 2.0 alone; a Push 2.0 disable
        // removes that device's only.
        let plan = s
            .plan_disable("romeo", Some("push2.example"), None)
            .unwrap()
            .unwrap();
        assert!(plan.removed.is_empty());
        let plan = s.plan_disable2("romeo", "tablet").unwrap();
        assert_eq!(plan.removed, vec![all]);
        assert!(plan.stores.push2 && !plan.stores.xep0357);
        // Reattach: the device's XEP-0357 registration first, else Push 2.0.
        assert_eq!(
            s.reattach("romeo", None, Some("phone"))
                .unwrap()
                .identifier(),
            important
        );
    }

    #[test]
    fn push_max_devices_counts_each_protocol_apart() {
        let mut s = PushService::new(
            "example.com",
            Config {
                max_devices: 2,
                ..Config::default()
            },
        );
        for node in ["a", "b"] {
            enable(&mut s, "romeo", "push.example", node);
        }
        for key in ["p", "q"] {
            enable2(&mut s, key, crate::push2::settings::MATCH_ALL);
        }
        assert_eq!(s.registrations("romeo").unwrap().len(), 4);
        // A third of each kind pushes out the oldest of its own kind only.
        let id = enable2(&mut s, "r", crate::push2::settings::MATCH_ALL);
        let ids: Vec<&str> = s
            .registrations("romeo")
            .unwrap()
            .iter()
            .map(|r| r.identifier())
            .collect();
        assert_eq!(ids.len(), 4);
        assert!(
            ids.contains(&"push.example<a")
                && ids.contains(&id.as_str())
                && !ids.contains(&"push2:p")
        );
    }

    #[test]
    fn a_push2_push_unanswered_is_delivered_and_only_errors_answer_it() {
        let mut s = service(2);
        let id2 = enable2(&mut s, "phone", crate::push2::settings::MATCH_ALL);
        let jobs = offline_chat(&mut s);
        let push = jobs[0].id.clone();
        // (a result is no answer to a message)
        let result = (Response::Result, true);
        assert!(matches!(
            s.response_to(&push, "push2.example", result, 1.0),
            Answer::NotOurs
        ));
        // (nor an IQ's error)
        let iq_error = Response::error(Some("cancel"), Some("item-not-found"));
        assert!(matches!(
            s.response(&push, "push2.example", iq_error, 1.0),
            Answer::NotOurs
        ));
        let expired = s.expire(10_000.0);
        assert_eq!((expired.count, expired.retried), (0, 0));
        assert_eq!(s.pending(), 0);
        // Errors count, as XEP-0357 ones.
        let jobs = offline_chat(&mut s);
        let error = Response::error(Some("cancel"), Some("item-not-found"));
        assert!(matches!(
            s.response_to(&jobs[0].id, "push2.example", (error, true), 1.0),
            Answer::Counted { count: 1, .. }
        ));
        assert_eq!(s.error_count("romeo", &id2), 1);
    }

    #[test]
    fn a_retry_from_the_archive_path_keeps_the_archive_id() {
        let mut s = service(3);
        enable2(&mut s, "phone", crate::push2::settings::MATCH_ALL);
        let facts = addressed(&chat(), "romeo@example.com");
        let jobs = s
            .with_source((source_of(JULIET_SAYS), false), |s| {
                s.archived("romeo", &facts, None, "A7", Some(&[]), 0.0)
            })
            .unwrap();
        assert_eq!(jobs[0].archive_id.as_deref(), Some("A7"));
        let wait = Response::error(Some("wait"), Some("resource-constraint"));
        s.response_to(&jobs[0].id, "push2.example", (wait, true), 1.0);
        let due = s.retries_due(1000.0);
        let kept = due[0].1[0].origin.as_ref().unwrap().element();
        let id = kept
            .children()
            .find(|c| c.is("stanza-id", crate::facts::NS_STANZA_ID))
            .and_then(|c| c.attr("id"));
        assert_eq!(id, Some("A7"));
    }
}
