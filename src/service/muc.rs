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
            && self.known.is_complete()
            && self.known.len() <= crate::muc::KNOWN_WALK
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
        self.registry.peek(user).is_some() || self.known.is_complete()
    }

    /// MUC: may `user` (a bare JID; `local`: of one of this server's
    /// hosts) enable now? Checks and counts [`crate::quota`]'s bounds.
    pub fn muc_admit(&mut self, user: &str, local: bool, now: f64) -> Result<(), StanzaError> {
        // (before any read: a user not in memory has registrations unless
        // known to have none)
        let has_push = match self.registry.peek(user) {
            Some(regs) => !regs.is_empty(),
            None => !self.known.rules_out(user),
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
