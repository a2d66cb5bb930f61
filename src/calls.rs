//! Calls (XEP-0353 Jingle Message Initiation): which registrations a
//! call's `<propose/>` was pushed to, so that the call's end reaches the
//! same phones and they stop ringing.
//!
//! A call ends when the caller retracts it (a `<retract/>` from the
//! caller's full JID, the one that proposed it: nobody else can hang up
//! someone's call, not another occupant of the room a call came through
//! either), or when
//! one of the callee's own devices answers or declines it (`<accept/>`,
//! `<proceed/>`, `<reject/>` sent by the user). After its end, the other
//! copies of its signals (carbons, archive copies) push nothing.
//!
//! Bounded: [`MAX_CALLS`] calls and [`MAX_CALL_BYTES`] bytes per host,
//! oldest forgotten first, and a call is forgotten [`CALL_MEMORY`] seconds
//! after its propose; at most [`MAX_CALLS_PER_USER`] per callee and
//! [`MAX_CALLS_PER_DOMAIN`] per caller's domain (their own oldest go
//! first), so no stranger can flush other users' calls.

use crate::bounded::Fifo;
use crate::facts::CallSignal;
use std::collections::{HashMap, VecDeque};

/// Calls remembered per host.
pub const MAX_CALLS: usize = 4096;
/// Bytes the remembered calls may hold (user, id, caller, identifiers).
pub const MAX_CALL_BYTES: usize = 2 * 1024 * 1024;
/// Seconds a call is remembered after its propose.
pub const CALL_MEMORY: f64 = 600.0;
/// Calls remembered per callee.
pub const MAX_CALLS_PER_USER: usize = 16;
/// Calls remembered per caller's domain.
pub const MAX_CALLS_PER_DOMAIN: usize = 64;
/// Longest caller JID and call id remembered (a longer one is no call).
pub const MAX_CALL_FIELD: usize = 1024;

#[derive(Debug)]
struct Call {
    /// The caller's JID, as the propose came from it.
    caller: String,
    /// Identifiers of the registrations the propose was pushed to.
    rang: Vec<String>,
    at: f64,
    ended: bool,
    bytes: usize,
}

/// What a call signal asks of the pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStep {
    /// No call this module tracks: pushed as any stanza.
    Ordinary,
    /// A call starts: pushed at once (as `call`); [`Calls::rang`] records
    /// where.
    Ring,
    /// The call ends: pushed at once (as `call-end`) to these registrations.
    End(Vec<String>),
    /// A copy of a signal of a call that already ended: no push.
    Moot,
}

/// A call signal as a stanza carries it.
#[derive(Debug, Clone, Copy)]
pub struct Signal<'a> {
    /// The signal (propose, retract, accept, proceed, reject).
    pub kind: CallSignal,
    /// The call id.
    pub id: &'a str,
    /// The stanza's sender.
    pub from: Option<&'a str>,
    /// Sent by the user (one of their own devices).
    pub own: bool,
}

/// The calls of one host, by (user, call id).
pub struct Calls {
    calls: Fifo<(String, String), Call>,
    bytes: usize,
    /// Each callee's calls, oldest first.
    per_user: HashMap<String, VecDeque<String>>,
    /// Each caller domain's calls, oldest first.
    per_domain: HashMap<String, VecDeque<(String, String)>>,
}

impl Default for Calls {
    fn default() -> Self {
        Calls {
            calls: Fifo::new(MAX_CALLS),
            bytes: 0,
            per_user: HashMap::new(),
            per_domain: HashMap::new(),
        }
    }
}

/// The share a caller's JID counts against ([`crate::quota::share`]).
fn domain(jid: &str) -> &str {
    let bare = crate::bare(jid);
    crate::quota::share(bare.rsplit('@').next().unwrap_or(bare))
}

impl Calls {
    /// Number of calls remembered.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is remembered.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// What a signal about a call of `user`'s does; `except`: the sending
    /// device's registration, which rings no more.
    pub fn step(
        &mut self,
        user: &str,
        signal: Signal<'_>,
        except: Option<&str>,
        now: f64,
    ) -> CallStep {
        let key = (user.to_owned(), signal.id.to_owned());
        if self
            .calls
            .get(&key)
            .is_some_and(|c| now - c.at > CALL_MEMORY)
        {
            self.forget(&key);
        }
        match (signal.kind, signal.own) {
            (CallSignal::Propose, false) => match self.calls.get(&key) {
                // Another copy of a call that ended: it rings no more.
                Some(c) if c.ended && Some(c.caller.as_str()) == signal.from => CallStep::Moot,
                // Someone else's propose with the id of a ringing call does
                // not take it over: an ordinary message.
                Some(c) if !c.ended && Some(c.caller.as_str()) != signal.from => CallStep::Ordinary,
                _ => CallStep::Ring,
            },
            (CallSignal::Propose, true) => CallStep::Ordinary,
            (CallSignal::Retract, false) => {
                let caller = signal.from;
                self.end(&key, |c| Some(c.caller.as_str()) == caller, None)
            }
            (CallSignal::Accept | CallSignal::Proceed | CallSignal::Reject, true) => {
                self.end(&key, |_| true, except)
            }
            // The user's own call, answered or retracted: not theirs to stop.
            _ => CallStep::Ordinary,
        }
    }

    fn end(
        &mut self,
        key: &(String, String),
        allowed: impl Fn(&Call) -> bool,
        except: Option<&str>,
    ) -> CallStep {
        let Some(call) = self.calls.get_mut(key) else {
            return CallStep::Ordinary;
        };
        if !allowed(call) {
            return CallStep::Ordinary;
        }
        if call.ended {
            return CallStep::Moot;
        }
        call.ended = true;
        CallStep::End(
            call.rang
                .iter()
                .filter(|i| Some(i.as_str()) != except)
                .cloned()
                .collect(),
        )
    }

    /// The caller of the user's call `id` (the JID that proposed it), while
    /// remembered.
    pub fn caller(&self, user: &str, id: &str) -> Option<&str> {
        let key = (user.to_owned(), id.to_owned());
        self.calls.get(&key).map(|c| c.caller.as_str())
    }

    /// The propose of call `id` from `from` went to these registrations.
    pub fn rang<'a>(
        &mut self,
        user: &str,
        id: &str,
        from: Option<&str>,
        identifiers: impl IntoIterator<Item = &'a str>,
        now: f64,
    ) {
        let key = (user.to_owned(), id.to_owned());
        let caller = from.unwrap_or("");
        if caller.len() > MAX_CALL_FIELD || id.len() > MAX_CALL_FIELD {
            return;
        }
        let fresh = match self.calls.get(&key) {
            Some(c) if c.caller != caller => return, // not this caller's call
            Some(c) => c.ended,
            None => true,
        };
        if fresh {
            self.forget(&key);
            self.forget_old(now);
            self.make_room(user, domain(caller));
            let bytes = user.len() + id.len() + caller.len() + 64;
            while self.calls.len() >= self.calls.capacity() && self.pop_oldest() {}
            self.per_user
                .entry(user.to_owned())
                .or_default()
                .push_back(id.to_owned());
            self.per_domain
                .entry(domain(caller).to_owned())
                .or_default()
                .push_back(key.clone());
            self.calls.insert(
                key.clone(),
                Call {
                    caller: caller.to_owned(),
                    rang: Vec::new(),
                    at: now,
                    ended: false,
                    bytes,
                },
            );
            self.bytes += bytes;
        }
        let mut added = 0;
        if let Some(call) = self.calls.get_mut(&key) {
            for identifier in identifiers {
                if !call.rang.iter().any(|i| i == identifier) {
                    call.rang.push(identifier.to_owned());
                    added += identifier.len() + 24;
                }
            }
            call.bytes += added;
        }
        self.bytes += added;
        while self.bytes > MAX_CALL_BYTES {
            if !self.pop_oldest() {
                self.bytes = 0;
                break;
            }
        }
    }

    /// Forgets the calls older than [`CALL_MEMORY`] (the oldest first:
    /// they were remembered in the order they rang).
    fn forget_old(&mut self, now: f64) {
        while let Some((key, _)) = self
            .calls
            .oldest()
            .filter(|(_, c)| now - c.at > CALL_MEMORY)
        {
            let key = key.clone();
            self.forget(&key);
        }
    }

    /// Keeps each callee and each caller's domain within its share: its
    /// own oldest call goes (so a stranger's calls evict only their own).
    fn make_room(&mut self, user: &str, caller_domain: &str) {
        let oldest = self
            .per_user
            .get(user)
            .filter(|ids| ids.len() >= MAX_CALLS_PER_USER)
            .and_then(|ids| ids.front().cloned());
        if let Some(id) = oldest {
            self.forget(&(user.to_owned(), id));
        }
        let oldest = self
            .per_domain
            .get(caller_domain)
            .filter(|keys| keys.len() >= MAX_CALLS_PER_DOMAIN)
            .and_then(|keys| keys.front().cloned());
        if let Some(key) = oldest {
            self.forget(&key);
        }
    }

    /// Takes a call out, with its place in the shares and its bytes.
    fn dropped(&mut self, (user, id): &(String, String), call: &Call) {
        self.bytes -= call.bytes;
        if let Some(ids) = self.per_user.get_mut(user) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.per_user.remove(user);
            }
        }
        let d = domain(&call.caller);
        if let Some(keys) = self.per_domain.get_mut(d) {
            if let Some(i) = keys.iter().position(|k| k.0 == *user && k.1 == *id) {
                keys.remove(i);
            }
            if keys.is_empty() {
                self.per_domain.remove(d);
            }
        }
    }

    fn pop_oldest(&mut self) -> bool {
        match self.calls.pop_oldest() {
            Some((key, c)) => {
                self.dropped(&key, &c);
                true
            }
            None => false,
        }
    }

    fn forget(&mut self, key: &(String, String)) {
        if let Some(c) = self.calls.remove(key) {
            self.dropped(key, &c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALLER: &str = "juliet@capulet.lit/balcony";

    /// A signal from `from` (not the user's own).
    fn from<'a>(kind: CallSignal, id: &'a str, from: &'a str) -> Signal<'a> {
        Signal {
            kind,
            id,
            from: Some(from),
            own: false,
        }
    }

    /// A signal one of the user's devices sent.
    fn own(kind: CallSignal, id: &str) -> Signal<'_> {
        Signal {
            kind,
            id,
            from: Some("romeo@montague.lit/laptop"),
            own: true,
        }
    }

    fn ringing(ids: &[&str]) -> Calls {
        let mut calls = Calls::default();
        let step = calls.step("romeo", from(CallSignal::Propose, "c1", CALLER), None, 0.0);
        assert_eq!(step, CallStep::Ring);
        calls.rang("romeo", "c1", Some(CALLER), ids.iter().copied(), 0.0);
        calls
    }

    #[test]
    fn the_callers_retract_ends_the_call_where_it_rang_once() {
        let mut calls = ringing(&["phone", "tablet"]);
        let mut retract = |by| calls.step("romeo", from(CallSignal::Retract, "c1", by), None, 5.0);
        // Nobody but the caller hangs up the call: not another JID, not
        // another resource of the same bare JID (another occupant of a room
        // the call came through).
        assert_eq!(retract("mallory@evil.example/x"), CallStep::Ordinary);
        assert_eq!(retract("juliet@capulet.lit/other"), CallStep::Ordinary);
        assert_eq!(
            retract(CALLER),
            CallStep::End(vec!["phone".into(), "tablet".into()])
        );
        assert_eq!(retract(CALLER), CallStep::Moot);
        // A late copy of its propose rings nothing.
        let again = from(CallSignal::Propose, "c1", CALLER);
        assert_eq!(calls.step("romeo", again, None, 6.0), CallStep::Moot);
    }

    #[test]
    fn nobody_takes_over_another_callers_call() {
        let mut calls = ringing(&["phone"]);
        let mallory = "mallory@evil.example/x";
        let propose = from(CallSignal::Propose, "c1", mallory);
        assert_eq!(calls.step("romeo", propose, None, 1.0), CallStep::Ordinary);
        calls.rang("romeo", "c1", Some(mallory), ["tablet"], 1.0);
        assert_eq!(
            calls.step("romeo", from(CallSignal::Retract, "c1", mallory), None, 2.0),
            CallStep::Ordinary
        );
        assert_eq!(
            calls.step("romeo", from(CallSignal::Retract, "c1", CALLER), None, 2.0),
            CallStep::End(vec!["phone".into()])
        );
    }

    #[test]
    fn an_answer_on_one_device_stops_the_others() {
        for signal in [CallSignal::Accept, CallSignal::Proceed, CallSignal::Reject] {
            let mut calls = ringing(&["phone", "tablet", "laptop"]);
            assert_eq!(
                calls.step("romeo", own(signal, "c1"), Some("laptop"), 3.0),
                CallStep::End(vec!["phone".into(), "tablet".into()])
            );
            // Its copy on another path pushes nothing more.
            assert_eq!(
                calls.step("romeo", own(signal, "c1"), None, 3.0),
                CallStep::Moot
            );
        }
        // An answer from someone else (the caller's peer) stops nothing.
        let mut calls = ringing(&["phone"]);
        assert_eq!(
            calls.step("romeo", from(CallSignal::Accept, "c1", CALLER), None, 1.0),
            CallStep::Ordinary
        );
    }

    #[test]
    fn unknown_old_and_own_calls_are_ordinary() {
        let mut calls = ringing(&["phone"]);
        let retract = from(CallSignal::Retract, "other", CALLER);
        assert_eq!(calls.step("romeo", retract, None, 1.0), CallStep::Ordinary);
        let late = from(CallSignal::Retract, "c1", CALLER);
        assert_eq!(
            calls.step("romeo", late, None, CALL_MEMORY + 1.0),
            CallStep::Ordinary
        );
        assert!(calls.is_empty());
        // The user's own outgoing call is not theirs to ring.
        assert_eq!(
            calls.step("romeo", own(CallSignal::Propose, "c2"), None, 0.0),
            CallStep::Ordinary
        );
    }

    #[test]
    fn a_call_through_a_room_is_the_occupant_s() {
        let mut calls = Calls::default();
        let occupant = "capulet@conference.lit/Juliet";
        let propose = from(CallSignal::Propose, "c1", occupant);
        assert_eq!(calls.step("romeo", propose, None, 0.0), CallStep::Ring);
        calls.rang("romeo", "c1", Some(occupant), ["phone"], 0.0);
        let mallory = from(CallSignal::Retract, "c1", "capulet@conference.lit/Mallory");
        assert_eq!(calls.step("romeo", mallory, None, 1.0), CallStep::Ordinary);
        let juliet = from(CallSignal::Retract, "c1", occupant);
        assert_eq!(
            calls.step("romeo", juliet, None, 2.0),
            CallStep::End(vec!["phone".into()])
        );
    }

    #[test]
    fn a_stranger_cannot_flush_other_users_calls() {
        let mut calls = Calls::default();
        for i in 0..100 {
            let caller = format!("friend@d{i}.example/phone");
            calls.rang(&format!("u{i}"), "call", Some(&caller), ["phone"], 0.0);
        }
        // One domain, any number of JIDs and subdomains, long ones, to anyone.
        let long = "x".repeat(MAX_CALL_FIELD - 20);
        for i in 0..20_000 {
            let caller = format!("{long}@s{i}.evil.example/x");
            let user = format!("u{}", i % 150);
            calls.rang(&user, &format!("{long}{i}"), Some(&caller), ["phone"], 1.0);
        }
        for i in 0..100 {
            let friend = format!("friend@d{i}.example/phone");
            assert_eq!(
                calls.caller(&format!("u{i}"), "call"),
                Some(friend.as_str())
            );
        }
        assert!(calls.bytes <= MAX_CALL_BYTES);
        // And one callee holds its own share only.
        for i in 0..100 {
            let caller = format!("c@e{i}.example/x");
            calls.rang("romeo", &format!("r{i}"), Some(&caller), ["phone"], 2.0);
        }
        let romeo = calls.calls.iter().filter(|(k, _)| k.0 == "romeo").count();
        assert_eq!(romeo, MAX_CALLS_PER_USER);
    }

    #[test]
    fn calls_past_their_memory_make_room_and_a_full_share_evicts_its_own() {
        let mut calls = Calls::default();
        for i in 0..MAX_CALLS_PER_DOMAIN {
            let caller = format!("c{i}@montague.lit/x");
            calls.rang(&format!("u{i}"), "old", Some(&caller), ["phone"], 0.0);
        }
        // Long after: the old ones are gone, the new one remembered.
        calls.rang(
            "u0",
            "new",
            Some("c0@montague.lit/x"),
            ["phone"],
            CALL_MEMORY + 1.0,
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls.caller("u0", "new"), Some("c0@montague.lit/x"));
        // A full share: the domain's own oldest call goes, not the new one.
        for i in 0..MAX_CALLS_PER_DOMAIN {
            let caller = format!("d{i}@montague.lit/x");
            calls.rang(
                &format!("v{i}"),
                "c",
                Some(&caller),
                ["phone"],
                CALL_MEMORY + 2.0,
            );
        }
        assert_eq!(calls.caller("u0", "new"), None, "the domain's oldest");
        assert!(calls.caller("v63", "c").is_some());
        assert_eq!(calls.len(), MAX_CALLS_PER_DOMAIN);
    }

    #[test]
    fn memory_is_bounded_in_calls_and_bytes() {
        let mut calls = Calls::default();
        for i in 0..(MAX_CALLS + 100) {
            let caller = format!("c@d{i}.example/x");
            calls.rang(&format!("u{i}"), "c", Some(&caller), ["phone"], 0.0);
        }
        assert_eq!(calls.len(), MAX_CALLS);
        let big = "x".repeat(200);
        for i in 0..20_000 {
            let ids: Vec<String> = (0..8).map(|d| format!("{big}{d}")).collect();
            let id = format!("{big}{i}");
            calls.rang(&big, &id, Some(&big), ids.iter().map(String::as_str), 0.0);
        }
        assert!(calls.bytes <= MAX_CALL_BYTES);
    }
}
