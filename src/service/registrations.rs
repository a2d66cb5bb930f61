//! Registrations: loading, enabling, disabling, removing, re-attaching, and committing what was written.

use super::*;

impl PushService {
    /// Takes a user's registrations as read from the store. Returns the
    /// identifiers trimmed beyond `push_max_devices`.
    pub fn load(&mut self, user: &str, mut regs: Vec<Registration>) -> Vec<String> {
        self.note_kinds(user, &regs);
        self.adopt_counts(user, &mut regs);
        let (batches, retries, dirty, grace) =
            (&self.batches, &self.retries, &self.dirty, &self.grace);
        let trimmed = self.registry.load_with(user, regs, |u| {
            batches.holds(u) || retries.holds(u) || dirty.contains(u) || grace.holds_user(u)
        });
        self.keep_evicted_counts();
        trimmed
    }

    /// Which kinds of registration `user` has now.
    pub(super) fn note_kinds(&mut self, user: &str, regs: &[Registration]) {
        let mut known = self.known.get_mut();
        known
            .xep0357
            .note(user, regs.iter().any(|r| r.push2.is_none()));
        known
            .push2
            .note(user, regs.iter().any(|r| r.push2.is_some()));
    }

    /// Registrations coming into memory take the counts kept for their
    /// user; without any, those of the records only when no counts record
    /// was ever read (the records' are older than any record's).
    pub(super) fn adopt_counts(&mut self, user: &str, regs: &mut [Registration]) {
        match self.counts_kept.take(user) {
            Some(entries) => {
                for reg in regs.iter_mut() {
                    reg.counts = crate::counts::Kept::counts_of(&entries, reg.identifier());
                }
            }
            None if !self.counts_from_records => {
                for reg in regs.iter_mut() {
                    reg.counts = crate::counts::Counts::default();
                }
            }
            None => {}
        }
    }

    /// Users evicted from memory leave their unread counts behind.
    pub(super) fn keep_evicted_counts(&mut self) {
        for (user, regs) in self.registry.take_evicted() {
            // (read again with the registrations)
            self.settings.forget(&user);
            if regs.iter().any(|r| !r.counts.is_empty()) {
                let counts = regs.iter().map(|r| (r.identifier(), &r.counts));
                self.counts_kept.put(user, counts);
            }
        }
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

    /// The user's registrations once `reg` is added from a session with
    /// `resource` (it replaces that device's registration with the same app
    /// server). `None`: not loaded.
    pub fn plan_enable(
        &self,
        user: &str,
        reg: Registration,
        resource: Option<&str>,
    ) -> Option<Plan> {
        self.registry.plan_enable(user, reg, resource)
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
            .plan_remove(user, |r| r.identifier() == identifier)
    }

    /// The user's registrations without any (admin: remove all).
    pub fn plan_remove_all(&self, user: &str) -> Option<Plan> {
        self.registry.plan_remove(user, |_| true)
    }

    /// XEP-0357 §7: the app server `from` ends registrations by setting a
    /// user's affiliation with `node` to `none`. The user's registrations
    /// without those of `from` for `node` — if `affiliated` (bare JID) is the
    /// user and the affiliation is `none`; `None` when nothing matches (an
    /// affiliation change from anyone but the registered app server
    /// changes nothing).
    pub fn remote_disable(
        &self,
        user: &str,
        from: &str,
        node: Option<&str>,
        affiliations: &[(String, String)],
    ) -> Option<Plan> {
        if !self.affiliation_ends(user, affiliations) {
            return None;
        }
        let plan = self.registry.plan_remove(user, |r| {
            r.push2.is_none() && r.jid() == from && r.node() == node
        })?;
        (!plan.removed.is_empty()).then_some(plan)
    }

    /// Whether pubsub affiliations set `user`'s to `none` (before anything
    /// is loaded: most pubsub events are nothing of the kind).
    pub fn affiliation_ends(&self, user: &str, affiliations: &[(String, String)]) -> bool {
        let bare = bare_jid(&self.host, user);
        affiliations.iter().any(|(jid, affiliation)| {
            affiliation == "none" && jid.split('/').next() == Some(bare.as_str())
        })
    }

    /// A device reconnecting in a new session without `<enable/>`: the
    /// stored registration it made, if any — the newest whose `client_id`
    /// is the session's (SASL2), or, for a session without one, whose
    /// `resource` is the session's (the record keeps `resource` only when
    /// there was no `client_id`). A registration the device disabled is no
    /// longer stored, so it is never re-attached.
    pub fn reattach(
        &self,
        user: &str,
        client_id: Option<&str>,
        resource: Option<&str>,
    ) -> Option<&Registration> {
        let regs = self.registry.peek(user)?;
        let xep = regs.iter().rev().find(|r| match client_id {
            Some(c) => r.client_id() == Some(c),
            None => r.client_id().is_none() && resource.is_some() && r.resource() == resource,
        });
        xep.filter(|r| r.push2.is_none())
            .or_else(|| self.reattach2(user, client_id, resource))
    }

    /// The account is gone (`user-deleted`; Prosody purges its stores):
    /// no registration, no error count, no push in flight is kept.
    pub fn forget_user(&mut self, user: &str) {
        self.counts_kept.take(user);
        self.settings.forget(user);
        let plan = self.plan_remove_all(user).unwrap_or_default();
        self.commit(user, plan);
    }

    /// Makes a written plan the user's registrations.
    pub fn commit(&mut self, user: &str, mut plan: Plan) {
        let wrote = plan.stores.xep0357 || plan.stores.push2;
        self.pending.forget(user, &plan.removed);
        for identifier in &plan.removed {
            self.retries.cancel(user, identifier);
            self.grace.forget(user, identifier);
        }
        // Counts and error counts are the core's: what changed while the
        // plan was written (the store may yield; an app server answered) is
        // newer than what the plan holds, and is still to be written.
        let mut newer = false;
        if !self.registry.is_loaded(user) {
            // (it left memory while the plan was written)
            self.adopt_counts(user, &mut plan.regs);
        }
        if let Some(current) = self.registry.peek(user) {
            for reg in &mut plan.regs {
                if let Some(old) = current.iter().find(|r| r.identifier() == reg.identifier()) {
                    if old.counts != reg.counts {
                        reg.counts = old.counts.clone();
                    }
                    // (not for a registration enabled again, which starts
                    // afresh: a new timestamp)
                    if old.timestamp == reg.timestamp {
                        // (what answers said of its reachability meanwhile)
                        reg.health = old.health;
                        if old.errors != reg.errors {
                            reg.errors = old.errors;
                            newer = true;
                        }
                    }
                }
            }
        }
        if let Some(fresh) = &plan.fresh {
            // (enabled again as stored: starts afresh all the same)
            for reg in plan.regs.iter_mut().filter(|r| r.identifier() == fresh) {
                reg.health = Default::default();
            }
        }
        self.note_kinds(user, &plan.regs);
        let (batches, retries, dirty, grace) =
            (&self.batches, &self.retries, &self.dirty, &self.grace);
        self.registry.commit_with(user, plan.regs, |u| {
            batches.holds(u) || retries.holds(u) || dirty.contains(u) || grace.holds_user(u)
        });
        self.keep_evicted_counts();
        // (a plan that wrote nothing leaves what is still to be written so)
        if wrote {
            let still = newer.then(|| (self.user_key(user), self.second()));
            self.dirty.written(user, still);
        }
    }

    /// Makes a plan written to the stores the user's registrations: a
    /// plan that left the Push 2.0 registrations as they were, written
    /// for a user who left memory meanwhile, is not committed from half
    /// ([`PushService::commit_unloaded`]).
    pub fn commit_written(&mut self, user: &str, plan: Plan) {
        if !plan.stores.push2 && !self.registry.is_loaded(user) {
            self.commit_unloaded(user, &plan);
            return;
        }
        self.commit(user, plan);
    }

    /// A written plan that leaves the user's Push 2.0 registrations as they
    /// were, for a user who left memory while it was written: what it
    /// removes is forgotten, and the registrations (of both stores) are
    /// read again on the user's next event, never committed from half.
    pub fn commit_unloaded(&mut self, user: &str, plan: &Plan) {
        self.pending.forget(user, &plan.removed);
        for identifier in &plan.removed {
            self.retries.cancel(user, identifier);
            self.grace.forget(user, identifier);
        }
        if plan.regs.iter().any(|r| r.push2.is_none()) {
            self.known.get_mut().xep0357.note(user, true);
        }
    }

    /// The user's registrations as they are, to write after a change made
    /// in place (an error count).
    pub fn plan_current(&self, user: &str) -> Option<Plan> {
        let mut plan = self.registry.plan_current(user)?;
        // (a store that holds nothing of the user's is not written; what
        // was noted at load includes registrations trimmed since)
        let known = self.known.get();
        plan.stores.xep0357 = !known.xep0357.rules_out(user);
        plan.stores.push2 = self.config.push2 && !known.push2.rules_out(user);
        Some(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn reconnecting_devices_find_their_registration() {
        let mut s = service(16);
        let mut enable_as = |node: &str, client_id: Option<&str>, resource: &str| {
            let who = Requester {
                bare_jid: "romeo@example.com".into(),
                client_id: client_id.map(Into::into),
                resource: Some(resource.into()),
                ..Default::default()
            };
            let req = EnableRequest {
                jid: Some("push.example".into()),
                node: Some(node.into()),
                ..Default::default()
            };
            let reg = s.enable_request(req, &who, 1.0).unwrap();
            if !s.is_loaded("romeo") {
                s.load("romeo", vec![]);
            }
            let plan = s.plan_enable("romeo", reg, None).unwrap();
            s.commit("romeo", plan);
        };
        enable_as("by-resource", None, "phone");
        enable_as("by-client-id", Some("c-1"), "tablet");
        let found = |s: &PushService, c: Option<&str>, r: Option<&str>| {
            s.reattach("romeo", c, r)
                .map(|r| r.node().map(str::to_owned).unwrap())
        };
        assert_eq!(
            found(&s, None, Some("phone")).as_deref(),
            Some("by-resource")
        );
        // The SASL2 client id wins, whatever the resource.
        assert_eq!(
            found(&s, Some("c-1"), Some("other")).as_deref(),
            Some("by-client-id")
        );
        // A client id never matches a record stored by resource, nor the reverse.
        assert_eq!(found(&s, Some("c-2"), Some("phone")), None);
        assert_eq!(found(&s, None, Some("tablet")), None);
        assert_eq!(found(&s, None, None), None);
        assert_eq!(s.reattach("juliet", None, Some("phone")), None);
    }

    #[test]
    fn app_servers_end_their_own_registrations_only() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "n1");
        enable(&mut s, "romeo", "push.example", "n2");
        enable(&mut s, "romeo", "other.example", "n1");
        let none = |jid: &str| vec![(jid.to_owned(), "none".to_owned())];
        // XEP-0357 §7's example shape: the node's affiliation for the user goes to none.
        let plan = s
            .remote_disable(
                "romeo",
                "push.example",
                Some("n1"),
                &none("romeo@example.com"),
            )
            .unwrap();
        assert_eq!(plan.removed, ["push.example<n1"]);
        assert_eq!(plan.regs.len(), 2);
        // Not the registered app server, another user, another affiliation, unknown node.
        assert!(s
            .remote_disable(
                "romeo",
                "evil.example",
                Some("n2"),
                &none("romeo@example.com")
            )
            .is_none());
        assert!(s
            .remote_disable(
                "romeo",
                "push.example",
                Some("n2"),
                &none("juliet@example.com")
            )
            .is_none());
        let member = vec![("romeo@example.com".to_owned(), "member".to_owned())];
        assert!(s
            .remote_disable("romeo", "push.example", Some("n2"), &member)
            .is_none());
        assert!(s
            .remote_disable(
                "romeo",
                "push.example",
                Some("n9"),
                &none("romeo@example.com")
            )
            .is_none());
    }

    #[test]
    fn not_loaded_means_none() {
        let mut s = service(16);
        assert!(s
            .notify(
                "romeo",
                Some(&chat()),
                None,
                Targets::All,
                PushKind::Offline,
                0.0
            )
            .is_none());
        s.load("romeo", vec![]);
        assert_eq!(
            s.notify(
                "romeo",
                Some(&chat()),
                None,
                Targets::All,
                PushKind::Offline,
                0.0
            )
            .unwrap()
            .len(),
            0
        );
    }

    #[test]
    fn disable_forgets_pending_and_errors() {
        let mut s = service(16);
        let ident = enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
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

    // A client that enables on every connection: the same registration
    // again is not written, and starts afresh in memory all the same.
    #[test]
    fn enabled_again_as_stored_is_not_written_and_starts_afresh() {
        let mut s = service(16);
        let a = enable(&mut s, "romeo", "push.example", "a");
        let stored = s.registry.peek("romeo").unwrap()[0].timestamp;
        s.registry
            .registration_mut("romeo", &a)
            .unwrap()
            .health
            .unreachable_since = Some(5.0);
        let plan = planned(&mut s, "romeo", "romeo@example.com", "a");
        assert_eq!(plan.stores, crate::registry::Stores::default());
        assert_eq!(plan.fresh.as_deref(), Some(a.as_str()));
        s.commit("romeo", plan);
        let reg = &s.registry.peek("romeo").unwrap()[0];
        assert_eq!(reg.timestamp, stored, "as stored");
        assert_eq!(reg.health.unreachable_since, None, "afresh");
        // Another node is a change, written.
        let plan = planned(&mut s, "romeo", "romeo@example.com", "b");
        assert!(plan.stores.xep0357 && plan.fresh.is_none());
    }

    // An error count waiting to be written (another registration's) is
    // still written after an enable that wrote nothing.
    #[test]
    fn an_enable_that_writes_nothing_leaves_what_is_owed() {
        let mut s = service(16);
        let tablet = enable(&mut s, "romeo", "push.example", "tablet");
        let phone = enable(&mut s, "romeo", "push.example", "phone");
        s.registry
            .registration_mut("romeo", &tablet)
            .unwrap()
            .errors = 1;
        s.mark_dirty("romeo");
        let plan = planned(&mut s, "romeo", "romeo@example.com", "phone");
        assert_eq!(plan.fresh.as_deref(), Some(phone.as_str()));
        s.commit("romeo", plan);
        assert_eq!(s.counts_to_write(), vec!["romeo".to_string()]);
    }

    #[test]
    fn error_counts_live_in_the_records() {
        let mut s = service(16);
        let a = enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
        let err = Response::Error {
            type_: "cancel",
            condition: "item-not-found",
        };
        assert!(matches!(
            s.response(&id, "push.example", err, 1.0),
            Answer::Counted { count: 1, .. }
        ));
        // What gets written carries the count; a reload brings it back.
        let plan = s.plan_current("romeo").unwrap();
        assert_eq!(plan.regs[0].errors, 1);
        let mut t = service(16);
        t.load("romeo", plan.regs);
        assert_eq!(t.error_count("romeo", &a), 1);
        // A result resets it, and asks for the reset to be written.
        let id = t
            .notify("romeo", None, None, Targets::All, PushKind::Offline, 0.0)
            .unwrap()[0]
            .id
            .clone();
        assert!(matches!(
            t.response(&id, "push.example", Response::Result, 1.0),
            Answer::Delivered { reset: true, .. }
        ));
        assert_eq!(t.error_count("romeo", &a), 0);
    }

    #[test]
    fn a_deleted_account_keeps_nothing() {
        let mut s = service(16);
        let a = enable(&mut s, "romeo", "push.example", "a");
        let id = first_push_id(&mut s);
        let err = Response::Error {
            type_: "cancel",
            condition: "gone",
        };
        s.response(&id, "push.example", err, 0.0);
        s.notify("romeo", None, None, Targets::All, PushKind::Offline, 0.0);
        assert_eq!(s.pending(), 1);
        s.forget_user("romeo");
        assert_eq!(s.error_count("romeo", &a), 0);
        assert_eq!(s.pending(), 0);
        assert_eq!(s.registrations("romeo"), Some(&[][..]));
        s.forget_user("never-loaded");
        assert_eq!(s.registrations("never-loaded"), Some(&[][..]));
    }
}
