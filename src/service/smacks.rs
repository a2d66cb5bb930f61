//! Stream management: stanzas queued for hibernated or unresponsive sessions, coalesced; the extended hibernation and its wake-up.

use super::*;
use crate::outcome::Outcome;

impl PushService {
    /// A stanza in (or entering) a session's smacks queue: gathered into
    /// the session's batch unless it was already pushed to `identifier`.
    ///
    /// Returns what happened, and whether the stanza counts as important
    /// (it is then the batch's important stanza, else its unimportant one).
    /// A room's message (`pings`: its mentions) is gathered only as the
    /// user's XEP-0492 setting for the room wants.
    pub fn smacks_add(
        &mut self,
        session: &str,
        (user, identifier): (&str, &str),
        (stanza, key): (StanzaFacts, &str),
        pings: Option<&Pings>,
    ) -> Queued {
        let nothing = Queued {
            added: Added::Nothing,
            important: false,
            at_once: false,
        };
        if pings.is_some_and(|pings| !self.groupchat_wanted(user, &stanza, pings)) {
            return nothing;
        }
        if !self.seen.insert(user, key, identifier) {
            return nothing;
        }
        let stanza = match stanza.carbon {
            Some(_) => stanza.received_by(&bare_jid(&self.host, user)),
            None => stanza,
        };
        let important = is_important(&stanza);
        // A call's signals are pushed at once, never coalesced.
        let call = stanza.effective().call_signal().is_some();
        let added = self
            .batches
            .add(session, user, identifier, stanza, important, key.to_owned());
        Queued {
            added,
            important,
            at_once: call || added == Added::FlushNow,
        }
    }

    /// Stanzas for a smacks session of `user`: whether the user's
    /// bookmarks must be read first (XEP-0492: `groupchat`, a room's
    /// message is among them, and their settings were not read; `asked`:
    /// the shim tried already, whether or not the read worked).
    pub fn smacks_bookmarks(&self, user: &str, groupchat: bool, asked: bool) -> Option<Outcome> {
        (groupchat && !asked && self.bookmarks_wanted(user, false)).then(|| Outcome {
            bookmarks: Some(user.to_owned()),
            ..Outcome::default()
        })
    }

    /// What the stanzas added to a session's batch (the most of what each
    /// did) mean for its timer: push now (a call, no room to wait, or the
    /// start of hibernation, `at_once`), or within the coalescing delay.
    pub fn smacks_batch(&self, added: Added, at_once: bool) -> Outcome {
        let batch_in = match added {
            Added::Nothing => None,
            Added::FlushNow => Some(0.0),
            Added::Joined | Added::Opened if at_once => Some(0.0),
            Added::Joined | Added::Opened => Some(crate::coalesce::DELAY),
        };
        Outcome {
            batch_in,
            ..Outcome::default()
        }
    }

    /// Sends a session's batch: at most one important and one unimportant
    /// push, to its registration.
    pub fn smacks_flush(&mut self, session: &str, now: f64) -> Option<Flushed> {
        let batch = self.batches.take(session)?;
        let only = [batch.identifier];
        // The important push stands for every important stanza gathered.
        let mut push = |facts: Option<&StanzaFacts>, n: u32, slot: Slot| -> Vec<PushJob> {
            let Some(facts) = facts else {
                return Vec::new();
            };
            let targets = Targets::Only(&only);
            self.slot = slot;
            self.notify_n(
                &batch.user,
                Some(facts),
                None,
                targets,
                PushKind::Smacks,
                n,
                now,
            )
            .unwrap_or_default()
        };
        Some(Flushed {
            important: push(
                batch.important.as_ref(),
                batch.important_count.max(1),
                Slot::Important,
            ),
            unimportant: push(batch.unimportant.as_ref(), 1, Slot::Unimportant),
            user: batch.user,
        })
    }

    /// Drops a session's batch unsent (the session resumed): its stanzas
    /// may be pushed again later.
    pub fn smacks_cancel(&mut self, session: &str) -> bool {
        let Some(batch) = self.batches.take(session) else {
            return false;
        };
        for key in &batch.keys {
            self.seen.remove(&batch.user, key, &batch.identifier);
        }
        true
    }

    /// What to do to a hibernating session's watchdog and wake-up timer
    /// at `moment` ([`crate::hibernation`]).
    pub fn hibernation_step(
        &self,
        moment: crate::hibernation::Moment,
        session: crate::hibernation::Session,
    ) -> crate::hibernation::Step {
        crate::hibernation::step(moment, session, self.hibernation_limits())
    }

    /// The options the hibernation's rules read.
    fn hibernation_limits(&self) -> crate::hibernation::Limits {
        crate::hibernation::Limits {
            max_hibernation: self.config.max_hibernation_timeout as f64,
            wake_before: self.config.wake_before_expiry as f64,
        }
    }

    /// The wake-up push to a hibernated session's registration: one
    /// unimportant push, so the app reconnects and resumes before the
    /// server drops the session and its queue.
    pub fn wake(&mut self, user: &str, identifier: &str, now: f64) -> Vec<PushJob> {
        let only = [identifier.to_owned()];
        let mut jobs = self
            .notify(user, None, None, Targets::Only(&only), PushKind::Wake, now)
            .unwrap_or_default();
        for job in &mut jobs {
            job.wakes = false; // it ends no extended hibernation
        }
        jobs
    }

    /// Smacks batches waiting.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn a_waiting_smacks_batch_keeps_its_user_loaded() {
        let mut s = PushService::new(
            "example.com",
            Config {
                cache_size: 2,
                ..Config::default()
            },
        );
        let id = enable(&mut s, "romeo", "push.example", "n");
        let added = s
            .smacks_add(
                "romeo@example.com/phone",
                ("romeo", &id),
                (chat(), "k1"),
                None,
            )
            .added;
        assert_eq!(added, Added::Opened);
        // Within the coalescing window, other users fill the cache.
        for i in 0..5 {
            s.load(&format!("user{i}"), vec![]);
        }
        assert!(s.is_loaded("romeo"));
        let Flushed { important, .. } = s.smacks_flush("romeo@example.com/phone", 1.0).unwrap();
        assert_eq!(important.len(), 1, "the batch was lost");
        // Sent: romeo may go like anyone else, his unread count kept.
        let stored = s.plan_current("romeo").unwrap().regs;
        for i in 5..10 {
            s.load(&format!("user{i}"), vec![]);
        }
        assert!(!s.is_loaded("romeo"));
        assert_eq!(s.counts_kept().0, 1);
        // Read back from the store (the record has no count): it is his.
        let stored = stored
            .into_iter()
            .map(|mut r| {
                r.counts = Default::default();
                r
            })
            .collect();
        s.load("romeo", stored);
        assert_eq!(s.unread("romeo", &id), 1);
        assert_eq!(s.counts_kept().0, 0);
    }

    #[test]
    fn the_last_wake_up_before_expiry() {
        let mut s = PushService::new(
            "example.com",
            Config {
                wake_before_expiry: 60,
                ..Config::default()
            },
        );
        let wake = |s: &PushService, timeout| s.hibernation_limits().wake_delay(timeout);
        assert_eq!(wake(&s, 600.0), Some(540.0));
        assert_eq!(wake(&s, 60.0), None);
        assert_eq!(wake(&s, 30.0), None);
        let id = enable(&mut s, "romeo", "push.example", "phone");
        enable(&mut s, "romeo", "push.example", "tablet");
        let jobs = s.wake("romeo", &id, 0.0);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].registration.identifier(), id);
        assert!(!jobs[0].summary.important() && !jobs[0].wakes);
        assert_eq!(jobs[0].kind, PushKind::Wake);
        let off = PushService::new(
            "example.com",
            Config {
                wake_before_expiry: 0,
                ..Config::default()
            },
        );
        assert_eq!(wake(&off, 600.0), None);
    }

    #[test]
    fn hibernation_extension() {
        let s = service(16);
        let limits = s.hibernation_limits();
        assert_eq!(limits.extended(600.0), Some(259_200.0));
        assert_eq!(limits.extended(300_000.0), None);
    }

    #[test]
    fn a_batch_is_pushed_at_once_or_within_the_coalescing_delay() {
        let s = service(16);
        let delay = |added, at_once| s.smacks_batch(added, at_once).batch_in;
        assert_eq!(
            delay(Added::Nothing, true),
            None,
            "nothing added: nothing to push"
        );
        assert_eq!(delay(Added::Opened, false), Some(crate::coalesce::DELAY));
        assert_eq!(delay(Added::Joined, false), Some(crate::coalesce::DELAY));
        assert_eq!(
            delay(Added::Opened, true),
            Some(0.0),
            "the start of hibernation"
        );
        assert_eq!(delay(Added::FlushNow, false), Some(0.0), "no room to wait");
    }

    #[test]
    fn a_rooms_message_for_a_smacks_session_follows_the_users_setting() {
        let mut s = service(16);
        let id = enable(&mut s, "romeo", "push.example", "phone");
        let asks = s
            .smacks_bookmarks("romeo", true, false)
            .map(|o| o.bookmarks);
        assert_eq!(
            asks,
            Some(Some("romeo".to_owned())),
            "read the bookmarks first"
        );
        assert!(
            s.smacks_bookmarks("romeo", true, true).is_none(),
            "asked once"
        );
        assert!(s.smacks_bookmarks("romeo", false, false).is_none());
        let setting = RoomSetting {
            level: Level::Never,
            nick: None,
        };
        s.bookmarks_read("romeo", vec![("room@muc.example".into(), Some(setting))]);
        assert!(s.smacks_bookmarks("romeo", true, false).is_none(), "read");
        let room = facts(
            "<message xmlns='jabber:client' type='groupchat' from='room@muc.example/juliet'><body>hi</body></message>",
        );
        let pings = Pings::default();
        let queued = s.smacks_add("s1", ("romeo", &id), (room.clone(), "k1"), Some(&pings));
        assert_eq!(queued.added, Added::Nothing, "never: not gathered");
        let queued = s.smacks_add("s1", ("romeo", &id), (chat(), "k2"), None);
        assert_eq!(queued.added, Added::Opened);
    }

    #[test]
    fn smacks_batches_coalesce_and_cancel() {
        let mut s = service(16);
        let a = enable(&mut s, "romeo", "push.example", "a");
        let receipt = facts(
            "<message xmlns='jabber:client' type='chat'><received xmlns='urn:xmpp:receipts' id='r'/></message>",
        );
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (chat(), "k1"), None)
                .added,
            Added::Opened
        );
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (chat(), "k2"), None)
                .added,
            Added::Joined
        );
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (receipt.clone(), "k3"), None)
                .added,
            Added::Joined
        );
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (chat(), "k1"), None)
                .added,
            Added::Nothing
        );
        let Flushed {
            user,
            important,
            unimportant,
        } = s.smacks_flush("s1", 0.0).unwrap();
        assert_eq!(user, "romeo");
        // one push for the important stanzas, one for the rest
        assert_eq!((important.len(), unimportant.len()), (1, 1));
        assert!(important[0].summary.important() && !unimportant[0].summary.important());
        assert!(
            important[0].registration.identifier() == a
                && unimportant[0].registration.identifier() == a
        );
        assert!(s.smacks_flush("s1", 0.0).is_none());
        // Pushed stanzas are not pushed again; a cancelled batch's may be.
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (chat(), "k2"), None)
                .added,
            Added::Nothing
        );
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (chat(), "k4"), None)
                .added,
            Added::Opened
        );
        assert!(s.smacks_cancel("s1"));
        assert_eq!(s.batches(), 0);
        assert_eq!(
            s.smacks_add("s1", ("romeo", &a), (chat(), "k4"), None)
                .added,
            Added::Opened
        );
        let Flushed {
            important,
            unimportant,
            ..
        } = s.smacks_flush("s1", 0.0).unwrap();
        assert_eq!((important.len(), unimportant.len()), (1, 0));
        assert!(important[0].wakes);
    }

    #[test]
    fn smacks_slots_follow_the_stanza_not_the_summary() {
        // Without a placeholder body no summary is important, yet the
        // batch's important stanza still goes out of slot 0 (its push is
        // the one whose original_stanza is that stanza).
        let mut s = PushService::new(
            "example.com",
            Config {
                important_body: String::new(),
                ..Config::default()
            },
        );
        let a = enable(&mut s, "romeo", "push.example", "a");
        s.smacks_add("s1", ("romeo", &a), (chat(), "k1"), None);
        let Flushed {
            important,
            unimportant,
            ..
        } = s.smacks_flush("s1", 0.0).unwrap();
        assert_eq!((important.len(), unimportant.len()), (1, 0));
        assert!(!important[0].summary.important());
    }

    #[test]
    fn unimportant_pushes_do_not_wake_unless_importance_is_off() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "a");
        let jobs = s
            .notify("romeo", None, None, Targets::All, PushKind::Offline, 0.0)
            .unwrap();
        assert!(!jobs[0].wakes);
        let mut s = PushService::new(
            "example.com",
            Config {
                important_body: String::new(),
                ..Config::default()
            },
        );
        enable(&mut s, "romeo", "push.example", "a");
        let jobs = s
            .notify("romeo", None, None, Targets::All, PushKind::Offline, 0.0)
            .unwrap();
        assert!(jobs[0].wakes);
    }
}
