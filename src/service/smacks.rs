//! Stream management: stanzas queued for hibernated or unresponsive sessions, coalesced; the extended hibernation and its wake-up.

use super::*;

impl PushService {
    /// A stanza in (or entering) a session's smacks queue: gathered into
    /// the session's batch unless it was already pushed to `identifier`.
    ///
    /// Returns what happened, and whether the stanza counts as important
    /// (it is then the batch's important stanza, else its unimportant one).
    pub fn smacks_add(
        &mut self,
        session: &str,
        user: &str,
        identifier: &str,
        stanza: StanzaFacts,
        key: &str,
    ) -> Queued {
        if !self.seen.insert(user, key, identifier) {
            return Queued {
                added: Added::Nothing,
                important: false,
                at_once: false,
            };
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

    /// A hibernated push session whose hibernation ends in `timeout`
    /// seconds: in how many seconds its last wake-up push is due
    /// (`push_wake_before_expiry` before the end), or `None` for none (the
    /// option is 0, or not shorter than the timeout).
    pub fn wake_delay(&self, timeout: f64) -> Option<f64> {
        let before = self.config.wake_before_expiry as f64;
        (before > 0.0 && before < timeout).then_some(timeout - before)
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

    /// The watchdog timeout of a hibernated session with push enabled,
    /// until its first waking push: `push_max_hibernation_timeout`, never
    /// shorter than smacks' own (`original`). `None`: nothing to extend.
    pub fn extended_hibernation(&self, original: f64) -> Option<f64> {
        let extended = self.config.max_hibernation_timeout as f64;
        (extended > original).then_some(extended)
    }

    /// Smacks batches waiting.
    pub fn batches(&self) -> usize {
        self.batches.len()
    }
}
