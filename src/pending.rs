//! Pushes awaiting the app server's answer: one bounded table per host,
//! answered by one `iq/host` handler, instead of two hooks per push.
//!
//! Entries leave on answer, on timeout, or, beyond the capacity, oldest
//! first; so neither a silent nor a chatty app server can grow it.

use crate::ids::id_number as key;
use std::collections::{HashMap, HashSet, VecDeque};

/// A push sent and not yet answered.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingPush {
    /// The user it was for.
    pub user: String,
    /// The registration it went to.
    pub identifier: String,
    /// The app server the push went to; only it may answer.
    pub jid: String,
    /// When it was sent (seconds since the epoch).
    pub sent_at: f64,
    /// 0 for a first push, n for its n-th retry.
    pub attempt: u8,
    /// Whether its registration had errors counted when it was sent: a
    /// result then resets them (else a result needs no registration).
    pub had_errors: bool,
    /// What it said, bounded ([`crate::retry::kept_summary`]): a retry
    /// says it again.
    pub summary: crate::notification::Summary,
    /// The stanza it was about, if kept ([`crate::origin`]): a retry is
    /// about it again.
    pub origin: Option<crate::origin::Origin>,
}

/// The pushes awaiting an answer, by push id, bounded in number and time.
#[derive(Debug)]
pub struct Pending {
    map: HashMap<u128, PendingPush>,
    /// Ids (as numbers: [`crate::ids::id_number`]) in sending order, with their deadline. May hold ids
    /// already answered; compacted when it grows past twice the capacity.
    order: VecDeque<(u128, f64)>,
    /// Each user's pushes awaiting an answer, so that forgetting a user's
    /// registrations walks that user's pushes only.
    by_user: HashMap<String, HashSet<u128>>,
    capacity: usize,
    timeout: f64,
}

impl Pending {
    /// None yet; at most `capacity`, each forgotten after `timeout_secs`.
    pub fn new(capacity: usize, timeout_secs: u64) -> Self {
        Pending {
            map: HashMap::new(),
            order: VecDeque::new(),
            by_user: HashMap::new(),
            capacity: capacity.max(1),
            timeout: timeout_secs as f64,
        }
    }

    /// Pushes awaiting an answer.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none awaits an answer.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Tracks a push. Returns how many older entries were dropped for room.
    pub fn insert(&mut self, id: &str, push: PendingPush) -> usize {
        let id = key(id);
        let mut dropped = 0;
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some((old, _)) => {
                    if self.take(old).is_some() {
                        dropped += 1;
                    }
                }
                None => break,
            }
        }
        self.order.push_back((id, push.sent_at + self.timeout));
        self.by_user
            .entry(push.user.clone())
            .or_default()
            .insert(id);
        if let Some(old) = self.map.insert(id, push) {
            // (the same id again: never, in practice)
            if self.map.get(&id).is_some_and(|p| p.user != old.user) {
                self.unindex(id, &old.user);
            }
        }
        if self.order.len() > 2 * self.capacity {
            let map = &self.map;
            self.order.retain(|(id, _)| map.contains_key(id));
        }
        dropped
    }

    /// The push with this id.
    pub fn get(&self, id: &str) -> Option<&PendingPush> {
        self.map.get(&key(id))
    }

    /// Takes the push with this id out (answered or cancelled).
    pub fn remove(&mut self, id: &str) -> Option<PendingPush> {
        self.take(key(id))
    }

    fn take(&mut self, id: u128) -> Option<PendingPush> {
        let push = self.map.remove(&id)?;
        self.unindex(id, &push.user);
        Some(push)
    }

    /// Drops `id` from its user's set.
    fn unindex(&mut self, id: u128, user: &str) {
        if let Some(ids) = self.by_user.get_mut(user) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// Drops every entry whose deadline has passed; returns them.
    pub fn expire(&mut self, now: f64) -> Vec<PendingPush> {
        let mut expired = Vec::new();
        while let Some((_, deadline)) = self.order.front() {
            if *deadline > now {
                break;
            }
            if let Some((id, _)) = self.order.pop_front() {
                if let Some(p) = self.take(id) {
                    expired.push(p);
                }
            }
        }
        // After a burst, give the room back (tables never shrink by themselves).
        if self.map.capacity() > 4 * self.map.len() + 64 {
            self.map.shrink_to(2 * self.map.len());
        }
        if self.order.capacity() > 4 * self.order.len() + 64 {
            self.order.shrink_to(2 * self.order.len());
        }
        expired
    }

    /// Forgets pushes to the given registrations of a user (walking that
    /// user's pushes only; nothing when no registration went).
    pub fn forget(&mut self, user: &str, identifiers: &[String]) {
        if identifiers.is_empty() {
            return;
        }
        let ids: Vec<u128> = self
            .by_user
            .get(user)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if self
                .map
                .get(&id)
                .is_some_and(|p| identifiers.contains(&p.identifier))
            {
                self.take(id);
            }
        }
    }

    /// Users with pushes awaiting an answer (for the tests' bound).
    #[cfg(test)]
    fn users(&self) -> usize {
        self.by_user.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(t: f64) -> PendingPush {
        PendingPush {
            user: "u".into(),
            identifier: "p<n".into(),
            jid: "p".into(),
            sent_at: t,
            attempt: 0,
            had_errors: false,
            summary: Default::default(),
            origin: None,
        }
    }

    #[test]
    fn forgetting_a_user_s_registration_walks_that_user_s_pushes_only() {
        for n in [1_000usize, 100_000] {
            let mut p = Pending::new(n + 1, 60);
            let mut ids = Vec::new();
            for i in 0..n {
                let mut x = push(0.0);
                x.user = format!("u{}", i % 1000);
                let id = crate::ids::next_push_id();
                p.insert(&id, x);
                ids.push(id);
            }
            // A commit that removes nothing touches nothing; one that
            // removes a registration walks its user's n/1000 pushes.
            p.forget("u7", &[]);
            assert_eq!(p.len(), n);
            p.forget("u7", &["p<n".to_owned()]);
            assert_eq!(p.len(), n - n / 1000);
            assert_eq!(p.users(), 999);
            // Answers and expiry keep the index exact.
            for id in &ids[..n / 2] {
                p.remove(id);
            }
            p.expire(100.0);
            assert_eq!((p.len(), p.users()), (0, 0));
        }
    }

    #[test]
    fn an_answer_matches_exactly_its_push_s_id() {
        let id = crate::ids::next_push_id();
        let mut p = Pending::new(10, 60);
        p.insert(&id, push(0.0));
        // Exactly that id: no other spelling of the number.
        assert!(p.get(&id).is_some());
        assert!(p
            .get(&id.to_uppercase().replace("PUSH-", "push-"))
            .is_none());
        assert!(p.get(&format!("{id} ")).is_none());
        let plus = format!("push-+{}", &id[6..]);
        assert!(p.get(&plus).is_none());
    }

    #[test]
    fn answers_remove_entries() {
        let mut p = Pending::new(10, 60);
        p.insert("a", push(0.0));
        assert!(p.remove("a").is_some());
        assert!(p.remove("a").is_none());
        assert!(p.is_empty());
    }

    #[test]
    fn capacity_drops_the_oldest() {
        let mut p = Pending::new(3, 60);
        for i in 0..10 {
            p.insert(&format!("id{i}"), push(i as f64));
        }
        assert_eq!(p.len(), 3);
        assert!(p.get("id9").is_some());
        assert!(p.get("id6").is_none());
    }

    #[test]
    fn order_stays_bounded_when_answers_come_fast() {
        let mut p = Pending::new(4, 60);
        for i in 0..10_000 {
            let id = format!("id{i}");
            p.insert(&id, push(0.0));
            p.remove(&id);
        }
        assert!(p.order.len() <= 8);
    }

    #[test]
    fn timeouts_expire() {
        let mut p = Pending::new(10, 60);
        p.insert("a", push(0.0));
        p.insert("b", push(30.0));
        assert_eq!(p.expire(59.0).len(), 0);
        assert_eq!(p.expire(60.0).len(), 1);
        assert_eq!(p.len(), 1);
        assert_eq!(p.expire(1000.0).len(), 1);
    }

    #[test]
    fn the_room_of_a_burst_is_given_back() {
        let mut p = Pending::new(100_000, 30);
        for i in 0..10_000 {
            p.insert(&format!("id{i}"), push(0.0));
        }
        for i in 0..10_000 {
            p.remove(&format!("id{i}"));
        }
        p.expire(31.0);
        assert!(p.map.capacity() <= 64 && p.order.capacity() <= 64 + 1);
    }
}
