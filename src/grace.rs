//! The grace period (`push_grace_period`): no push to a registration
//! while another session of the same user has been active within that
//! many seconds (it sent a message with a body, a chat state showing work,
//! or a displayed marker). Calls are never held.
//!
//! An important message held back this way is pushed once the window
//! ends (the user's last activity plus the period), if its chat is still
//! unread then: one push per registration for everything held, with the
//! latest summary. Anything else held back (chat states, receipts) is
//! dropped: the user was there to see it.
//!
//! The release carries the latest summary only if that message's chat is
//! still unread; otherwise the caller sends the placeholder, with no
//! sender (a chat read meanwhile is never shown).
//!
//! A push is held at most [`MAX_HOLD_PERIODS`] periods from the first
//! message held for its registration: a chatty bot on the account (or a
//! user who never stops typing) can't keep the phone silent for ever.
//! What is held when the module unloads or the server stops goes out then
//! ([`Grace::release_all`]).
//!
//! Bounded: [`MAX_ACTIVE`] users' activity and [`MAX_HELD`] users' held
//! pushes per host, each holding at most [`MAX_HELD_CHATS`] chats (as
//! [`crate::counts::chat_key`] digests) and a summary of at most about
//! 1 KiB ([`crate::retry::kept_summary`]). When full, nothing more is
//! held: the push goes out as it would without a grace period.

use crate::notification::Summary;
use crate::origin::Origin;
use crate::vocabulary::PushKind;
use std::collections::HashMap;

/// Users whose activity is remembered.
pub const MAX_ACTIVE: usize = 16_384;
/// Users with pushes held back.
pub const MAX_HELD: usize = 4096;
/// Chats held per registration.
pub const MAX_HELD_CHATS: usize = 32;
/// Periods a push is held at most, from the first message held.
pub const MAX_HOLD_PERIODS: f64 = 4.0;

#[derive(Debug)]
struct Active {
    at: f64,
    /// The active session's registration, if it has one: its own pushes
    /// are not held (its session is gone once it gets any).
    identifier: Option<String>,
    /// Its Push 2.0 registration too, when it holds one of each (a
    /// match's grace never holds the device's own).
    identifier2: Option<String>,
}

/// Pushes held back for one registration.
#[derive(Debug)]
struct Held {
    identifier: String,
    /// Chats with messages held (their keys), and how many.
    chats: Vec<(u64, u32)>,
    summary: Summary,
    /// The chat of the message the summary is about.
    summary_chat: u64,
    kind: PushKind,
    /// That message, if kept ([`crate::origin`]).
    origin: Option<Origin>,
    /// When the first message was held.
    since: f64,
}

/// A held push whose window ended with its chats unread.
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    /// The user the push is for.
    pub user: String,
    /// The registration it goes to.
    pub identifier: String,
    /// The unread chats and their messages held: they count now.
    pub chats: Vec<(u64, u32)>,
    /// What it says.
    pub summary: Summary,
    /// Whether the summary's own chat is among them (else it was read).
    pub summary_unread: bool,
    /// The path it came from.
    pub kind: PushKind,
    /// The message the summary is about, if kept ([`crate::origin`]).
    pub origin: Option<Origin>,
}

/// The grace period of one host.
pub struct Grace {
    period: f64,
    /// Activity is noted even with no period (Push 2.0 matches have their
    /// own: [`Grace::active_within`]).
    track: bool,
    active: HashMap<String, Active>,
    held: HashMap<String, Vec<Held>>,
}

impl Grace {
    /// `period` seconds; 0 turns it off.
    pub fn new(period: f64, track: bool) -> Self {
        Grace {
            period: period.max(0.0),
            track,
            active: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// Whether a period is set.
    pub fn enabled(&self) -> bool {
        self.period > 0.0
    }

    /// A session of `user` (with registration `identifier`, if any) was active.
    pub fn note_active(&mut self, user: &str, identifier: Option<&str>, now: f64) {
        self.note_active_as(user, (identifier, None), now);
    }

    /// [`Grace::note_active`] of a session with a registration of each
    /// protocol, or either.
    pub fn note_active_as(
        &mut self,
        user: &str,
        (identifier, identifier2): (Option<&str>, Option<&str>),
        now: f64,
    ) {
        if !self.enabled() && !self.track {
            return;
        }
        if let Some(a) = self.active.get_mut(user) {
            a.at = now;
            a.identifier = identifier.map(str::to_owned);
            a.identifier2 = identifier2.map(str::to_owned);
            return;
        }
        if self.active.len() >= MAX_ACTIVE {
            // (with Push 2.0 matches' own periods: an hour at least)
            let period = match self.track {
                true => self.period.max(3600.0),
                false => self.period,
            };
            self.active.retain(|_, a| now - a.at < period);
            if self.active.len() >= MAX_ACTIVE {
                return;
            }
        }
        self.active.insert(
            user.to_owned(),
            Active {
                at: now,
                identifier: identifier.map(str::to_owned),
                identifier2: identifier2.map(str::to_owned),
            },
        );
    }

    /// Whether a session of `user` other than registration `identifier`'s
    /// was active within the last `seconds` (a Push 2.0 match's grace).
    pub fn active_within(&self, user: &str, identifier: &str, seconds: f64, now: f64) -> bool {
        self.active.get(user).is_some_and(|a| {
            now - a.at < seconds
                && a.identifier.as_deref() != Some(identifier)
                && a.identifier2.as_deref() != Some(identifier)
        })
    }

    /// When the user's window ends, if it is open now.
    fn window_end(&self, user: &str, now: f64) -> Option<f64> {
        let a = self.active.get(user)?;
        let end = a.at + self.period;
        (end > now).then_some(end)
    }

    /// Whether pushes to registration `identifier` of `user` are held now.
    pub fn holds(&self, user: &str, identifier: &str, now: f64) -> bool {
        self.window_end(user, now).is_some()
            && self.active.get(user).and_then(|a| a.identifier.as_deref()) != Some(identifier)
    }

    /// Holds `n` important messages in the chat `chat` for the
    /// registration (`summary`, of the last of them, already kept small;
    /// `origin`, that message if kept) at `now`. False: no room, push it now.
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &mut self,
        user: &str,
        identifier: &str,
        chat: u64,
        n: u32,
        (summary, kind): (&Summary, PushKind),
        origin: Option<Origin>,
        now: f64,
    ) -> bool {
        if !self.held.contains_key(user) && self.held.len() >= MAX_HELD {
            return false;
        }
        let entries = self.held.entry(user.to_owned()).or_default();
        let i = match entries.iter().position(|h| h.identifier == identifier) {
            Some(i) => i,
            None => {
                entries.push(Held {
                    identifier: identifier.to_owned(),
                    chats: Vec::new(),
                    summary: summary.clone(),
                    summary_chat: chat,
                    kind,
                    origin: None,
                    since: now,
                });
                entries.len() - 1
            }
        };
        let entry = &mut entries[i];
        entry.summary = summary.clone();
        entry.summary_chat = chat;
        entry.kind = kind;
        entry.origin = origin;
        match entry.chats.iter_mut().find(|(c, _)| *c == chat) {
            Some((_, m)) => *m = m.saturating_add(n),
            None => {
                if entry.chats.len() >= MAX_HELD_CHATS {
                    entry.chats.remove(0);
                }
                entry.chats.push((chat, n));
            }
        }
        true
    }

    /// The user read the chat `chat` on some device: nothing held for it is pushed.
    pub fn read(&mut self, user: &str, chat: u64) {
        if let Some(entries) = self.held.get_mut(user) {
            for h in entries.iter_mut() {
                h.chats.retain(|(c, _)| *c != chat);
            }
            entries.retain(|h| !h.chats.is_empty());
            if entries.is_empty() {
                self.held.remove(user);
            }
        }
    }

    /// The registration's device connected, or the registration is gone:
    /// nothing held for it is pushed.
    pub fn forget(&mut self, user: &str, identifier: &str) {
        if let Some(entries) = self.held.get_mut(user) {
            entries.retain(|h| h.identifier != identifier);
            if entries.is_empty() {
                self.held.remove(user);
            }
        }
    }

    /// When the user's held pushes go out: the end of their window, or
    /// [`MAX_HOLD_PERIODS`] after the first of them was held.
    fn release_at(&self, user: &str, now: f64) -> f64 {
        let window = self.window_end(user, now).unwrap_or(now);
        let since = self.held.get(user).into_iter().flatten().map(|h| h.since);
        let limit = since.fold(f64::INFINITY, f64::min) + MAX_HOLD_PERIODS * self.period;
        window.min(limit)
    }

    /// The held pushes whose window has ended (or that were held
    /// [`MAX_HOLD_PERIODS`] long), with unread chats.
    pub fn due(&mut self, now: f64) -> Vec<Released> {
        let ended: Vec<String> = self
            .held
            .keys()
            .filter(|u| self.release_at(u, now) <= now)
            .cloned()
            .collect();
        self.release(ended)
    }

    /// Every held push with unread chats, now (the module unloads, the
    /// server stops).
    pub fn release_all(&mut self) -> Vec<Released> {
        let users: Vec<String> = self.held.keys().cloned().collect();
        self.release(users)
    }

    fn release(&mut self, users: Vec<String>) -> Vec<Released> {
        let mut out = Vec::new();
        for user in users {
            for h in self.held.remove(&user).unwrap_or_default() {
                if !h.chats.is_empty() {
                    out.push(Released {
                        user: user.clone(),
                        identifier: h.identifier,
                        summary_unread: h.chats.iter().any(|(c, _)| *c == h.summary_chat),
                        chats: h.chats,
                        summary: h.summary,
                        kind: h.kind,
                        origin: h.origin,
                    });
                }
            }
        }
        out
    }

    /// Seconds until the next held pushes go out.
    pub fn next_in(&self, now: f64) -> Option<f64> {
        self.held
            .keys()
            .map(|u| (self.release_at(u, now) - now).max(0.0))
            .min_by(f64::total_cmp)
    }

    /// Users with pushes held (kept in memory meanwhile).
    pub fn holds_user(&self, user: &str) -> bool {
        self.held.contains_key(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::chat_key;

    fn summary(body: &str) -> Summary {
        Summary {
            message_count: 1,
            body: Some(body.into()),
            ..Default::default()
        }
    }

    fn juliet() -> u64 {
        chat_key("juliet@capulet.lit")
    }

    /// Holds one message of `chat` (its summary's body `body`, from MAM) at `now`.
    fn hold(g: &mut Grace, user: &str, id: &str, chat: u64, body: &str, now: f64) -> bool {
        g.hold(
            user,
            id,
            chat,
            1,
            (&summary(body), PushKind::Mam),
            None,
            now,
        )
    }

    fn nurse() -> u64 {
        chat_key("nurse@capulet.lit")
    }

    #[test]
    fn a_match_grace_never_holds_the_active_device_s_own_registrations() {
        let mut g = Grace::new(0.0, true);
        g.note_active_as(
            "romeo",
            (Some("push.example<n"), Some("push2:phone")),
            100.0,
        );
        assert!(!g.active_within("romeo", "push2:phone", 60.0, 110.0));
        assert!(!g.active_within("romeo", "push.example<n", 60.0, 110.0));
        assert!(g.active_within("romeo", "push2:tablet", 60.0, 110.0));
        assert!(!g.active_within("romeo", "push2:tablet", 60.0, 170.0));
        // (tracked with no push_grace_period: nothing is held by it)
        assert!(!g.holds("romeo", "push2:tablet", 110.0));
    }

    #[test]
    fn off_by_default() {
        let mut g = Grace::new(0.0, false);
        g.note_active("romeo", None, 0.0);
        assert!(!g.holds("romeo", "phone", 0.0));
    }

    #[test]
    fn active_elsewhere_holds_other_registrations_until_the_window_ends() {
        let mut g = Grace::new(30.0, false);
        g.note_active("romeo", Some("laptop"), 100.0);
        assert!(g.holds("romeo", "phone", 110.0));
        assert!(
            !g.holds("romeo", "laptop", 110.0),
            "the active device itself"
        );
        assert!(!g.holds("juliet", "phone", 110.0));
        assert!(!g.holds("romeo", "phone", 130.0));
        assert!(hold(&mut g, "romeo", "phone", juliet(), "1", 110.0));
        assert!(hold(&mut g, "romeo", "phone", nurse(), "2", 110.0));
        assert!(hold(&mut g, "romeo", "phone", nurse(), "2", 110.0));
        assert_eq!(g.next_in(110.0), Some(20.0));
        // More activity moves the end of the window.
        g.note_active("romeo", Some("laptop"), 120.0);
        assert!(g.due(131.0).is_empty());
        let released = g.due(150.0);
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].summary, summary("2"), "the latest summary");
        assert!(released[0].summary_unread);
        assert_eq!(released[0].chats, vec![(juliet(), 1), (nurse(), 2)]);
        assert!(g.due(200.0).is_empty(), "once");
    }

    #[test]
    fn a_chat_read_meanwhile_is_not_pushed_nor_shown() {
        let mut g = Grace::new(30.0, false);
        g.note_active("romeo", None, 0.0);
        hold(&mut g, "romeo", "phone", juliet(), "1", 0.0);
        hold(&mut g, "romeo", "tablet", juliet(), "1", 0.0);
        hold(&mut g, "romeo", "tablet", nurse(), "2", 0.0);
        g.read("romeo", juliet());
        let released = g.due(31.0);
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].identifier, "tablet");
        assert_eq!(released[0].chats, vec![(nurse(), 1)]);
        assert!(released[0].summary_unread);
        // The summary's own chat read, another still unread.
        g.note_active("romeo", None, 40.0);
        hold(&mut g, "romeo", "phone", juliet(), "1", 40.0);
        hold(&mut g, "romeo", "phone", nurse(), "2", 40.0);
        g.read("romeo", nurse());
        let released = g.due(100.0);
        assert!(!released[0].summary_unread);
        g.note_active("romeo", None, 140.0);
        hold(&mut g, "romeo", "phone", juliet(), "1", 140.0);
        g.forget("romeo", "phone");
        assert!(g.due(200.0).is_empty());
    }

    #[test]
    fn held_at_most_a_few_periods_however_long_the_user_stays_active() {
        let mut g = Grace::new(30.0, false);
        g.note_active("romeo", Some("laptop"), 0.0);
        assert!(hold(&mut g, "romeo", "phone", juliet(), "1", 1.0));
        // A bot on the account, active every 10 s: the window never ends...
        let mut t = 0.0;
        while t < 120.0 {
            g.note_active("romeo", Some("laptop"), t);
            assert!(g.due(t).is_empty(), "released at {t}");
            t += 10.0;
        }
        // ... but the push goes out MAX_HOLD_PERIODS after it was first held.
        assert_eq!(g.next_in(120.0), Some(1.0));
        g.note_active("romeo", Some("laptop"), 120.0);
        assert_eq!(g.due(121.0).len(), 1);
    }

    #[test]
    fn everything_held_goes_out_at_once_on_release_all() {
        let mut g = Grace::new(30.0, false);
        g.note_active("romeo", None, 0.0);
        g.note_active("juliet", None, 0.0);
        hold(&mut g, "romeo", "phone", juliet(), "1", 1.0);
        hold(&mut g, "juliet", "phone", nurse(), "2", 1.0);
        assert!(g.due(2.0).is_empty());
        assert_eq!(g.release_all().len(), 2);
        assert!(g.due(100.0).is_empty() && g.next_in(100.0).is_none());
    }

    #[test]
    fn bounded() {
        let mut g = Grace::new(30.0, false);
        for i in 0..(MAX_HELD + 10) {
            let user = format!("u{i}");
            g.note_active(&user, None, 0.0);
            let held = hold(&mut g, &user, "phone", 7, "1", 0.0);
            assert_eq!(held, i < MAX_HELD);
        }
        for i in 0..(MAX_HELD_CHATS as u64 + 5) {
            hold(&mut g, "u0", "phone", i + 100, "1", 0.0);
        }
        assert!(g.held["u0"][0].chats.len() <= MAX_HELD_CHATS);
        for i in 0..(MAX_ACTIVE + 10) {
            g.note_active(&format!("a{i}"), None, 0.0);
        }
        assert!(g.active.len() <= MAX_ACTIVE);
    }
}
