//! Group chats (mod_muc_cloud_notify): who a room message is pushed to, remote users' registrations, ghost bounces.

use super::*;

impl PushService {
    /// MUC: what the room must look up for a message (and the message is
    /// remembered, should an occupant's server bounce it).
    pub fn muc_wants(
        &mut self,
        room: &str,
        facts: &StanzaFacts,
        refs: Vec<crate::muc::Reference>,
    ) -> crate::muc::Wants {
        let mut wants = crate::muc::wants(self.config.muc_policy, facts, &refs);
        if wants == crate::muc::Wants::Members
            && self.known.get().xep0357.is_complete()
            && self.known.get().xep0357.len() <= crate::muc::KNOWN_WALK
        {
            wants = crate::muc::Wants::Known;
        }
        if let Some(id) = facts.id.as_deref() {
            match &wants {
                crate::muc::Wants::Nothing => {}
                crate::muc::Wants::Members | crate::muc::Wants::Known => {
                    self.recent.remember(room, id, facts, Vec::new())
                }
                crate::muc::Wants::Nicks(nicks) => {
                    self.recent.remember(room, id, facts, nicks.clone())
                }
            }
        }
        wants
    }

    /// MUC: a message bounced by `occupant`'s server (bare JID; `nicks`:
    /// its nickname in the room and its registered one; `echoed`: the body
    /// the bounce carries, if any). The message it bounced, as remembered,
    /// if the policy pushes it to them: its body only when the echoed one
    /// is the body that was sent (by digest), else withheld.
    pub fn muc_bounced(
        &self,
        room: &str,
        id: &str,
        condition: &str,
        nicks: &[&str],
        echoed: Option<&str>,
    ) -> Option<StanzaFacts> {
        if !crate::muc::is_ghost_bounce(condition) {
            return None;
        }
        let msg = self.recent.get(room, id)?;
        let pushed = match self.config.muc_policy {
            crate::muc::Policy::All => true,
            crate::muc::Policy::Mentions => {
                msg.mentioned.iter().any(|m| nicks.contains(&m.as_str()))
            }
        };
        if !pushed {
            return None;
        }
        let body = echoed.filter(|b| crate::muc::body_digest(b) == msg.body_digest);
        Some(StanzaFacts {
            kind: crate::facts::Kind::Message,
            type_: Some("groupchat".into()),
            from: msg.from.clone(),
            id: Some(id.to_owned()),
            body_withheld: body.is_none(),
            body: body.map(str::to_owned),
            ..Default::default()
        })
    }

    /// MUC: whether [`PushService::muc_admit`] can tell, before any read,
    /// whether `user` has registrations (in memory, or the known users
    /// complete); else it is asked once the user is loaded.
    pub fn muc_admit_ready(&self, user: &str) -> bool {
        self.registry.peek(user).is_some() || self.known.get().xep0357.is_complete()
    }

    /// MUC: may `user` (a bare JID; `local`: of one of this server's
    /// hosts) enable now? Checks and counts [`crate::quota`]'s bounds.
    pub fn muc_admit(&mut self, user: &str, local: bool, now: f64) -> Result<(), StanzaError> {
        // (before any read: a user not in memory has registrations unless
        // known to have none)
        let has_push = match self.registry.peek(user) {
            Some(regs) => !regs.is_empty(),
            None => !self.known.get().xep0357.rules_out(user),
        };
        self.quota.admit(user, local, has_push, now)
    }

    /// MUC: a remote user's registrations went from `had` to `has` (any /
    /// none): counted against its domain's bound.
    pub fn muc_note(&mut self, user: &str, had: bool, has: bool) {
        self.quota.note(user, had, has);
    }

    /// MUC: pushes for a room message to the absent members among
    /// `members`, once each (users not loaded are skipped: load them
    /// first). The message's copies are recognised by its key in `room`.
    pub fn muc_push(
        &mut self,
        room: &str,
        (facts, pings, public): (&StanzaFacts, &Pings, bool),
        members: &[crate::muc::Member],
        now: f64,
    ) -> Vec<(String, Vec<PushJob>)> {
        let key = facts.stable_key(room);
        let mut out = Vec::new();
        for member in crate::muc::recipients(members) {
            // XEP-0492: the member's own setting for this room (from their
            // bookmark, on their host), else the XEP's default where the
            // admin opted in (on-mention in a public room, else always).
            let default = self.config.chat_settings_defaults.then_some(if public {
                Level::OnMention
            } else {
                Level::Always
            });
            let level = member.setting.or(default);
            if !wants_push(
                level,
                facts,
                pings,
                &member.jid,
                member.nick.as_deref(),
                room,
            ) {
                continue;
            }
            let user = member.jid.clone();
            let kind = PushKind::Muc;
            if let Some(jobs) =
                self.notify(&user, Some(facts), key.as_deref(), Targets::All, kind, now)
            {
                if !jobs.is_empty() {
                    out.push((user, jobs));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn a_big_room_asks_about_the_few_users_with_push_not_its_members() {
        use crate::muc::{Policy, Wants, KNOWN_WALK};
        let mut s = PushService::new(
            "conference.example.com",
            Config {
                muc_policy: Policy::All,
                ..Config::default()
            },
        );
        let said = StanzaFacts::from_element(
            &"<message xmlns='jabber:client' type='groupchat' from='r@c/n' id='x'><body>hi</body></message>"
                .parse()
                .unwrap(),
        );
        // Who has registrations not known yet: the room's members are walked.
        assert_eq!(s.muc_wants("r@c", &said, vec![]), Wants::Members);
        s.note_known("juliet@example.com");
        s.known_complete();
        assert_eq!(s.muc_wants("r@c", &said, vec![]), Wants::Known);
        // Many users with registrations: the walk again.
        for i in 0..KNOWN_WALK {
            s.note_known(&format!("u{i}@example.com"));
        }
        assert_eq!(s.muc_wants("r@c", &said, vec![]), Wants::Members);
    }

    /// Juliet's registration (MUC registrations are keyed by the real
    /// bare JID), and a room message naming her nick with its mention.
    fn juliet_and_message() -> (PushService, StanzaFacts, Vec<crate::muc::Reference>) {
        let mut s = service(16);
        let plan = planned(&mut s, "juliet@example.com", "juliet@example.com", "j");
        s.commit("juliet@example.com", plan);
        let msg = StanzaFacts::from_element(
            &"<message xmlns='jabber:client' type='groupchat' id='g1' from='room@muc.example/Romeo'>\
              <body>Hi Jürgen</body></message>"
                .parse()
                .unwrap(),
        );
        let refs = vec![crate::muc::Reference {
            type_: Some("mention".into()),
            begin: Some("3".into()),
            end: Some("9".into()),
        }];
        (s, msg, refs)
    }

    #[test]
    fn muc_mentions_and_bounces() {
        use crate::muc::{Member, Wants};
        let (mut s, msg, refs) = juliet_and_message();
        assert_eq!(
            s.muc_wants("room@muc.example", &msg, refs),
            Wants::Nicks(vec!["Jürgen".into()])
        );
        let member = |joined, setting| Member {
            jid: "juliet@example.com".into(),
            joined,
            outcast: false,
            setting,
            nick: Some("Jürgen".into()),
        };
        let pings = Pings::default();
        let push = |s: &mut PushService, m: &[Member]| {
            s.muc_push("room@muc.example", (&msg, &pings, false), m, 0.0)
        };
        // XEP-0492: "never" pushes nothing; "on-mention" this message (its
        // body names Jürgen); without a setting, as the policy says.
        assert!(push(&mut s, &[member(false, Some(Level::Never))]).is_empty());
        assert!(push(&mut s, &[member(true, None)]).is_empty());
        let pushes = push(&mut s, &[member(false, Some(Level::OnMention))]);
        assert_eq!(pushes.len(), 1);
        assert_eq!(pushes[0].1[0].kind, PushKind::Muc);
    }

    /// [`juliet_and_message`], the message remembered for bounces.
    fn remembered() -> PushService {
        let (mut s, msg, refs) = juliet_and_message();
        s.muc_wants("room@muc.example", &msg, refs);
        s
    }

    #[test]
    fn a_ghosts_bounce_is_pushed_as_remembered_and_never_with_a_forged_body() {
        let mut s = remembered();
        // A ghost's bounce of that message: pushed if the policy would have.
        let bounced = |body| {
            s.muc_bounced(
                "room@muc.example",
                "g1",
                "service-unavailable",
                &["Jürgen"],
                body,
            )
        };
        // Without the body: important, but no text.
        let plain = bounced(None).unwrap();
        assert!(crate::importance::is_important(&plain) && plain.body.is_none());
        assert_eq!(plain.from.as_deref(), Some("room@muc.example/Romeo"));
        // The body it echoes counts only if it is the one that was sent.
        assert_eq!(
            bounced(Some("Hi Jürgen")).unwrap().body.as_deref(),
            Some("Hi Jürgen")
        );
        let forged = bounced(Some("Your account is locked, log in at evil.example")).unwrap();
        assert_eq!(forged.body, None);
        assert!(s
            .muc_bounced(
                "room@muc.example",
                "g1",
                "service-unavailable",
                &["Nurse"],
                None
            )
            .is_none());
        assert!(s
            .muc_bounced(
                "room@muc.example",
                "g1",
                "not-acceptable",
                &["Jürgen"],
                None
            )
            .is_none());
        assert!(s
            .muc_bounced("room@muc.example", "unknown", "gone", &["Jürgen"], None)
            .is_none());
        // The event: pushed to the member unless their setting is "never".
        let member = ("juliet@example.com", ["Jürgen"].as_slice(), None);
        let ids = ("g1", "service-unavailable");
        let out = s.on_muc_bounced("room@muc.example", ids, member, None, 1.0);
        assert_eq!(out.push_count(), 1);
        assert!(matches!(
            out.pushes[0].about,
            crate::outcome::About::Bounced(_)
        ));
        let never = ("juliet@example.com", ["Jürgen"].as_slice(), Some("never"));
        let out = s.on_muc_bounced("room@muc.example", ids, never, None, 2.0);
        assert!(out.is_empty());
    }
}
