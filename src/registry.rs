//! The registrations of recently active users, kept in memory.
//!
//! Bounded: at most `capacity` users are kept (those with no registration
//! too, so that a user without push costs one lookup, not a store read per
//! message). Eviction is "second chance": a user read since the last sweep
//! is spared once. Storage is the shim's business; the registry only says
//! what to write ([`Plan`]) and takes the result once it is written.

use crate::registration::{same_device, Registration};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// What a change would leave: the user's new registrations, to be written
/// and then committed, and the identifiers it removes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// The registrations the user would have.
    pub regs: Vec<Registration>,
    /// The identifiers the change removes.
    pub removed: Vec<String>,
    /// Which stores the change writes.
    pub stores: Stores,
    /// The identifier of a registration enabled again exactly as stored
    /// (`Registry::enabled_as_stored`): the plan writes nothing, and the
    /// registration's in-memory health starts afresh when it is committed.
    pub fresh: Option<String>,
}

/// The stores a [`Plan`] changes: XEP-0357 registrations live in the
/// module's store, Push 2.0 ones in `mod_push2`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stores {
    /// The XEP-0357 registrations change.
    pub xep0357: bool,
    /// The Push 2.0 registrations change.
    pub push2: bool,
}

impl Plan {
    /// The plan of `regs` replacing `current` (`removed` gone).
    pub fn new(current: &[Registration], regs: Vec<Registration>, removed: Vec<String>) -> Plan {
        let changed = |push2: bool| {
            fn of(list: &[Registration], push2: bool) -> Vec<&Registration> {
                list.iter().filter(|r| r.push2.is_some() == push2).collect()
            }
            of(current, push2) != of(&regs, push2)
                || removed
                    .iter()
                    .any(|id| id.starts_with(crate::push2::PREFIX) == push2)
        };
        let stores = Stores {
            xep0357: changed(false),
            push2: changed(true),
        };
        Plan {
            regs,
            removed,
            stores,
            fresh: None,
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// Exactly as many as there are (a `Vec` would keep room for four).
    regs: Box<[Registration]>,
    referenced: bool,
}

/// Users' registrations in memory, bounded in users.
#[derive(Debug)]
pub struct Registry {
    /// By user name; the ring (and the core's other per-user lists) share
    /// the name's one allocation.
    users: HashMap<Rc<str>, Entry>,
    ring: VecDeque<Rc<str>>,
    capacity: usize,
    max_devices: usize,
    total: usize,
    /// Users evicted since [`Registry::take_evicted`] last took them.
    evicted: Vec<(Rc<str>, Box<[Registration]>)>,
}

/// Drops the oldest registrations (earliest timestamp, then earliest
/// position) until at most `max` remain of each protocol (XEP-0357 and
/// Push 2.0 are counted apart: one never pushes the other out). With
/// `keep_last`, the last one (just enabled) stays. Returns the dropped
/// identifiers.
fn trim_oldest(regs: &mut Vec<Registration>, max: usize, keep_last: bool) -> Vec<String> {
    let mut dropped = Vec::new();
    for push2 in [false, true] {
        loop {
            let last = regs.len().saturating_sub(1);
            let candidates: Vec<usize> = (0..regs.len())
                .filter(|&i| regs[i].push2.is_some() == push2)
                .collect();
            if candidates.len() <= max {
                break;
            }
            let oldest = candidates
                .into_iter()
                .filter(|&i| !(keep_last && i == last))
                .min_by(|&a, &b| {
                    regs[a]
                        .timestamp
                        .total_cmp(&regs[b].timestamp)
                        .then(a.cmp(&b))
                });
            let Some(oldest) = oldest else { break };
            dropped.push(regs.remove(oldest).identifier().to_owned());
        }
    }
    dropped
}

/// Sorts by timestamp, ties by identifier (records read back from a Lua
/// table come in no particular order).
fn oldest_first(regs: &mut [Registration]) {
    regs.sort_by(|a, b| {
        a.timestamp
            .total_cmp(&b.timestamp)
            .then_with(|| a.identifier().cmp(b.identifier()))
    });
}

impl Registry {
    /// Empty; at most `capacity` users, `max_devices` registrations each.
    pub fn new(capacity: usize, max_devices: usize) -> Self {
        Registry {
            users: HashMap::new(),
            ring: VecDeque::new(),
            capacity: capacity.max(1),
            max_devices: max_devices.max(1),
            total: 0,
            evicted: Vec::new(),
        }
    }

    /// The user's name as the registry keeps it (one allocation, shared
    /// by whoever holds a clone), if loaded.
    pub fn key(&self, user: &str) -> Option<Rc<str>> {
        self.users.get_key_value(user).map(|(k, _)| Rc::clone(k))
    }

    /// Whether the user's registrations are in memory.
    pub fn is_loaded(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The user's registrations, if loaded.
    pub fn get(&mut self, user: &str) -> Option<&[Registration]> {
        let entry = self.users.get_mut(user)?;
        entry.referenced = true;
        Some(&entry.regs)
    }

    /// The user's registrations, if loaded, to change in place (counts).
    pub fn get_mut(&mut self, user: &str) -> Option<&mut [Registration]> {
        let entry = self.users.get_mut(user)?;
        entry.referenced = true;
        Some(&mut entry.regs)
    }

    /// Registrations of a loaded user, without marking them used.
    pub fn peek(&self, user: &str) -> Option<&[Registration]> {
        self.users.get(user).map(|e| &*e.regs)
    }

    /// Each user in memory, with their registrations.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Registration])> {
        self.users.iter().map(|(u, e)| (&**u, &*e.regs))
    }

    /// Users kept in memory.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Registrations kept in memory.
    pub fn registrations(&self) -> usize {
        self.total
    }

    /// Takes what the store holds for a user. More than `max_devices`
    /// (the admin lowered it) are trimmed to the newest; the trimmed
    /// identifiers are returned so the caller can write the trimmed set.
    #[cfg(test)]
    pub fn load(&mut self, user: &str, regs: Vec<Registration>) -> Vec<String> {
        self.load_with(user, regs, |_| false)
    }

    /// Stores the user's registrations read from the store (trimmed to
    /// `push_max_devices`, oldest first; the dropped ones' identifiers
    /// returned), never evicting a user `pinned` names.
    pub fn load_with(
        &mut self,
        user: &str,
        mut regs: Vec<Registration>,
        pinned: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        oldest_first(&mut regs);
        let dropped = trim_oldest(&mut regs, self.max_devices, false);
        self.commit_with(user, regs, pinned);
        dropped
    }

    /// Stores the user's registrations in memory, as written to the store
    /// (in any order: they are kept oldest first).
    #[cfg(test)]
    pub fn commit(&mut self, user: &str, regs: Vec<Registration>) {
        self.commit_with(user, regs, |_| false)
    }

    /// Stores the user's registrations as written, never evicting a user `pinned` names (one
    /// whose smacks batch is waiting): the cache may then hold a few more
    /// users than its capacity, until those batches are gone.
    pub fn commit_with(
        &mut self,
        user: &str,
        mut regs: Vec<Registration>,
        pinned: impl Fn(&str) -> bool,
    ) {
        oldest_first(&mut regs);
        self.total += regs.len();
        match self.users.get_mut(user) {
            Some(entry) => {
                self.total -= entry.regs.len();
                entry.regs = regs.into_boxed_slice();
                entry.referenced = true;
            }
            None => {
                self.evict_to(self.capacity - 1, pinned);
                let key: Rc<str> = Rc::from(user);
                self.users.insert(
                    Rc::clone(&key),
                    Entry {
                        regs: regs.into_boxed_slice(),
                        referenced: false,
                    },
                );
                self.ring.push_back(key);
            }
        }
    }

    fn evict_to(&mut self, keep: usize, pinned: impl Fn(&str) -> bool) {
        // Each user is looked at at most twice (once to clear its mark).
        let mut budget = 2 * self.ring.len();
        while self.users.len() > keep && budget > 0 {
            budget -= 1;
            let Some(user) = self.ring.pop_front() else {
                break;
            };
            let spare = match self.users.get_mut(&user) {
                Some(_) if pinned(&user) => true,
                Some(entry) if entry.referenced => {
                    entry.referenced = false;
                    true
                }
                Some(_) => false,
                None => continue,
            };
            if spare {
                self.ring.push_back(user);
            } else if let Some(entry) = self.users.remove(&user) {
                self.total -= entry.regs.len();
                self.evicted.push((user, entry.regs));
            }
        }
    }

    /// The users evicted (for room) since this was last asked, with what
    /// they held: what the caller keeps of them (their unread counts).
    pub fn take_evicted(&mut self) -> Vec<(Rc<str>, Box<[Registration]>)> {
        std::mem::take(&mut self.evicted)
    }

    /// The set after enabling `reg` from a session with `resource`: it
    /// replaces a registration with the same identifier, and the one from
    /// the same device for the same app server
    /// ([`crate::registration::same_device`]); the oldest go beyond
    /// `max_devices`. `None` if the user is not loaded.
    ///
    /// The new registration is the newest, whatever the clock says: its
    /// timestamp is made later than every other one's (by a millisecond
    /// where the clock, in whole seconds, would tie), so the order survives
    /// the store and a restart.
    pub fn plan_enable(
        &self,
        user: &str,
        mut reg: Registration,
        resource: Option<&str>,
    ) -> Option<Plan> {
        let current = self.peek(user)?;
        if let Some(plan) = self.enabled_as_stored(current, &reg, resource) {
            return Some(plan);
        }
        let mut replaced_device = Vec::new();
        let mut regs: Vec<Registration> = Vec::with_capacity(current.len() + 1);
        for r in current {
            if r.identifier() == reg.identifier() {
                continue;
            }
            if same_device(r, &reg, resource) {
                replaced_device.push(r.identifier().to_owned());
            } else {
                regs.push(r.clone());
            }
        }
        if let Some(newest) = regs.iter().map(|r| r.timestamp).max_by(f64::total_cmp) {
            if reg.timestamp <= newest {
                reg.timestamp = ((newest + 0.001) * 1000.0).round() / 1000.0;
            }
        }
        // (a registration enabled again is a new one: never the same
        // timestamp as the one it replaces, which is how a commit tells
        // them apart)
        let replaced = current.iter().find(|r| r.identifier() == reg.identifier());
        if replaced.is_some_and(|r| r.timestamp == reg.timestamp) {
            reg.timestamp = ((reg.timestamp + 0.001) * 1000.0).round() / 1000.0;
        }
        regs.push(reg);
        let mut removed = replaced_device;
        removed.extend(trim_oldest(&mut regs, self.max_devices, true));
        Some(Plan::new(current, regs, removed))
    }

    /// A client that enables on every connection (Conversations, Monal)
    /// sends the same registration each time. When nothing would change
    /// but its time, the set stays as stored, nothing to write: the same
    /// record, no error count to clear, already the newest (so the order
    /// `push_max_devices` trims by is the same), no other registration of
    /// the device replaced and none trimmed. Otherwise `None`.
    fn enabled_as_stored(
        &self,
        current: &[Registration],
        reg: &Registration,
        resource: Option<&str>,
    ) -> Option<Plan> {
        let old = current
            .iter()
            .find(|r| r.identifier() == reg.identifier())?;
        // (strictly: a tie would leave the trim to the identifiers)
        let newest = current
            .iter()
            .all(|r| r.identifier() == old.identifier() || r.timestamp < old.timestamp);
        let others_stay = !current
            .iter()
            .any(|r| r.identifier() != reg.identifier() && same_device(r, reg, resource));
        // (none trimmed: what is in memory is within push_max_devices, trimmed
        // at load, and the set does not grow)
        if !(old.same_record(reg) && old.errors == 0 && newest && others_stay) {
            return None;
        }
        let mut plan = Plan::new(current, current.to_vec(), Vec::new());
        plan.fresh = Some(old.identifier().to_owned());
        Some(plan)
    }

    /// One registration, to change in place (its error count).
    pub fn registration_mut(&mut self, user: &str, identifier: &str) -> Option<&mut Registration> {
        self.users
            .get_mut(user)?
            .regs
            .iter_mut()
            .find(|r| r.identifier() == identifier)
    }

    /// The set as it is (to write a change made in place).
    pub fn plan_current(&self, user: &str) -> Option<Plan> {
        let current = self.peek(user)?;
        let mut plan = Plan::new(current, current.to_vec(), Vec::new());
        // (both written as they are: error counts and unread counts changed
        // in place, or registrations were trimmed at load)
        plan.stores = Stores {
            xep0357: true,
            push2: true,
        };
        Some(plan)
    }

    /// The set without the registrations `pred` selects.
    /// `None` if the user is not loaded.
    pub fn plan_remove(&self, user: &str, pred: impl Fn(&Registration) -> bool) -> Option<Plan> {
        let current = self.peek(user)?;
        let (removed, regs): (Vec<&Registration>, Vec<&Registration>) =
            current.iter().partition(|r| pred(r));
        let removed = removed
            .into_iter()
            .map(|r| r.identifier().to_owned())
            .collect();
        Some(Plan::new(
            current,
            regs.into_iter().cloned().collect(),
            removed,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::Parts;

    fn reg(jid: &str, node: &str, ts: f64) -> Registration {
        Registration::new(
            Parts {
                jid,
                node: Some(node),
                ..Default::default()
            },
            ts,
        )
    }

    #[test]
    fn enable_replaces_same_identifier() {
        let mut r = Registry::new(10, 5);
        r.load("u", vec![reg("p", "a", 1.0), reg("p", "b", 3.0)]);
        let plan = r.plan_enable("u", reg("p", "a", 4.0), None).unwrap();
        assert_eq!(plan.regs.len(), 2);
        assert_eq!(plan.regs[1].identifier(), "p<a");
        assert_eq!(plan.regs[1].timestamp, 4.0);
        assert!(plan.removed.is_empty() && plan.stores.xep0357 && plan.fresh.is_none());
    }

    // A client that enables on every connection sends the same
    // registration each time: nothing to write while nothing would change
    // but the time.
    #[test]
    fn enabled_again_as_stored_writes_nothing() {
        let mut r = Registry::new(10, 5);
        r.load("u", vec![reg("p", "a", 1.0), reg("p", "b", 3.0)]);
        let plan = r.plan_enable("u", reg("p", "b", 9.0), None).unwrap();
        assert_eq!(plan.regs, r.peek("u").unwrap(), "the set as stored");
        assert_eq!(plan.stores, Stores::default(), "no store written");
        assert_eq!(plan.fresh.as_deref(), Some("p<b"));
        assert!(plan.removed.is_empty());
    }

    #[test]
    fn enabled_again_with_a_change_is_written() {
        let mut r = Registry::new(10, 5);
        let mut failing = reg("p", "b", 3.0);
        failing.errors = 2;
        r.load("u", vec![reg("p", "a", 1.0), failing]);
        // (its error count to clear)
        let plan = r.plan_enable("u", reg("p", "b", 9.0), None).unwrap();
        assert!(plan.stores.xep0357 && plan.fresh.is_none());
        assert_eq!(plan.regs[1].timestamp, 9.0);
        // (another module's field changed)
        let mut r = Registry::new(10, 5);
        r.load("u", vec![reg("p", "b", 3.0)]);
        let mut changed = reg("p", "b", 9.0);
        changed
            .extra
            .push(("secret".into(), crate::fields::Field::Str(b"s".to_vec())));
        let plan = r.plan_enable("u", changed, None).unwrap();
        assert!(plan.stores.xep0357 && plan.fresh.is_none());
        // (tied with another registration: enabled again, it is made the
        // newest, a millisecond later)
        let mut r = Registry::new(10, 5);
        r.load("u", vec![reg("p", "a", 3.0), reg("p", "b", 3.0)]);
        let plan = r.plan_enable("u", reg("p", "b", 3.0), None).unwrap();
        assert!(plan.stores.xep0357 && plan.fresh.is_none());
        assert_eq!(plan.regs[1].timestamp, 3.001);
    }

    fn device_reg(
        jid: &str,
        node: &str,
        client_id: Option<&str>,
        resource: Option<&str>,
    ) -> Registration {
        Registration::new(
            Parts {
                jid,
                node: Some(node),
                client_id,
                resource,
                ..Default::default()
            },
            1.0,
        )
    }

    // ejabberd#4584: a device enabling again with a new node (a rotated
    // APNs/FCM token, a reinstall) for the same app server replaces its
    // older registration; another app server, or another device, does not.
    #[test]
    fn one_registration_per_device_and_app_server() {
        let mut r = Registry::new(10, 10);
        r.load(
            "u",
            vec![
                device_reg("p", "old-token", Some("monal-1"), None),
                device_reg("q", "other-service", Some("monal-1"), None),
                device_reg("p", "laptop", Some("dino-2"), None),
                device_reg("p", "phone", None, Some("phone")),
                device_reg("p", "legacy", None, None),
            ],
        );
        let plan = r
            .plan_enable(
                "u",
                device_reg("p", "new-token", Some("monal-1"), None),
                None,
            )
            .unwrap();
        assert_eq!(plan.removed, ["p<old-token"]);
        let mut ids: Vec<_> = plan.regs.iter().map(|r| r.identifier()).collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "p<laptop",
                "p<legacy",
                "p<new-token",
                "p<phone",
                "q<other-service"
            ]
        );
        // By resource where no client id was kept, the session's resource
        // standing in for a new registration that keeps a client id.
        let plan = r
            .plan_enable("u", device_reg("p", "phone-2", None, Some("phone")), None)
            .unwrap();
        assert_eq!(plan.removed, ["p<phone"]);
        let plan = r
            .plan_enable(
                "u",
                device_reg("p", "phone-3", Some("sasl2-id"), None),
                Some("phone"),
            )
            .unwrap();
        assert_eq!(plan.removed, ["p<phone"]);
        // Another resource, or no device known: kept.
        let plan = r
            .plan_enable(
                "u",
                device_reg("p", "tablet", None, Some("tablet")),
                Some("tablet"),
            )
            .unwrap();
        assert!(plan.removed.is_empty());
    }

    #[test]
    fn oldest_device_is_dropped_beyond_max() {
        let mut r = Registry::new(10, 2);
        r.load("u", vec![reg("p", "b", 2.0), reg("p", "a", 1.0)]);
        let plan = r.plan_enable("u", reg("p", "c", 2.0), None).unwrap();
        assert_eq!(plan.removed, vec!["p<a".to_string()]);
        let ids: Vec<_> = plan.regs.iter().map(|r| r.identifier()).collect();
        assert_eq!(ids, ["p<b", "p<c"]);
    }

    #[test]
    fn the_new_device_is_kept_even_with_an_old_clock() {
        let mut r = Registry::new(10, 1);
        r.load("u", vec![reg("p", "a", 100.0)]);
        let plan = r.plan_enable("u", reg("p", "b", 50.0), None).unwrap();
        assert_eq!(plan.regs[0].identifier(), "p<b");
    }

    #[test]
    fn the_newest_win_within_one_second() {
        // Issue seen on both Prosody versions: three enables in the same
        // second (os.time()) with push_max_devices = 2 kept the first.
        for max in [2, 5] {
            let mut r = Registry::new(10, max);
            r.load("u", vec![]);
            let mut enabled = Vec::new();
            for i in 0..(max + 3) {
                let node = format!("n{i}");
                let plan = r.plan_enable("u", reg("p", &node, 1000.0), None).unwrap();
                // What the store hands back comes in no particular order.
                let mut regs = plan.regs;
                regs.reverse();
                r.commit("u", regs);
                enabled.push(format!("p<{node}"));
            }
            let mut kept: Vec<String> = r
                .peek("u")
                .unwrap()
                .iter()
                .map(|x| x.identifier().to_owned())
                .collect();
            kept.sort();
            let mut newest = enabled[enabled.len() - max..].to_vec();
            newest.sort();
            assert_eq!(kept, newest, "max {max}");
        }
    }

    #[test]
    fn tied_timestamps_step_by_a_millisecond() {
        let mut r = Registry::new(10, 5);
        // (with an error count to clear: a re-enable that changes
        // nothing else is not written at all)
        let mut failing = reg("p", "a", 1000.0);
        failing.errors = 1;
        r.load("u", vec![failing]);
        let plan = r.plan_enable("u", reg("p", "b", 1000.0), None).unwrap();
        assert_eq!(plan.regs[1].timestamp, 1000.001);
        // Re-enabling alone keeps the clock's value...
        let plan = r.plan_enable("u", reg("p", "a", 1001.0), None).unwrap();
        assert_eq!(plan.regs[0].timestamp, 1001.0);
        // ... unless it is the very value of the registration it replaces
        // (a new registration: its error count starts afresh).
        let plan = r.plan_enable("u", reg("p", "a", 1000.0), None).unwrap();
        assert_eq!(plan.regs[0].timestamp, 1000.001);
    }

    #[test]
    fn load_trims_to_max_devices() {
        let mut r = Registry::new(10, 2);
        let dropped = r.load(
            "u",
            vec![reg("p", "a", 3.0), reg("p", "b", 1.0), reg("p", "c", 2.0)],
        );
        assert_eq!(dropped, vec!["p<b".to_string()]);
        assert_eq!(r.registrations(), 2);
    }

    #[test]
    fn plans_change_nothing_until_committed() {
        let mut r = Registry::new(10, 5);
        r.load("u", vec![reg("p", "a", 1.0), reg("q", "a", 1.0)]);
        let plan = r.plan_remove("u", |x| x.jid() == "p").unwrap();
        assert_eq!(plan.removed, vec!["p<a".to_string()]);
        assert_eq!(r.peek("u").unwrap().len(), 2);
        r.commit("u", plan.regs);
        assert_eq!(r.peek("u").unwrap().len(), 1);
        assert_eq!(r.registrations(), 1);
    }

    #[test]
    fn pinned_users_are_not_evicted() {
        let mut r = Registry::new(2, 5);
        r.load("a", vec![reg("p", "a", 1.0)]);
        r.load("b", vec![reg("p", "b", 1.0)]);
        for i in 0..10 {
            r.load_with(&format!("x{i}"), vec![], |u| u == "a");
        }
        assert!(r.is_loaded("a"));
        assert!(!r.is_loaded("b"));
        assert_eq!(r.users(), 2);
        // Everyone pinned: the cache grows past its capacity, never loops.
        r.load_with("c", vec![], |_| true);
        assert_eq!(r.users(), 3);
    }

    #[test]
    fn unloaded_users_have_no_plan() {
        let r = Registry::new(10, 5);
        assert!(r.plan_enable("nobody", reg("p", "a", 1.0), None).is_none());
    }

    #[test]
    fn cache_is_bounded_with_second_chance() {
        let mut r = Registry::new(3, 5);
        for u in ["a", "b", "c"] {
            r.load(u, vec![reg("p", u, 1.0)]);
        }
        assert!(r.get("a").is_some()); // a is used, so spared once
        r.load("d", vec![]);
        assert_eq!(r.users(), 3);
        assert!(r.is_loaded("a"));
        assert!(!r.is_loaded("b"));
        assert_eq!(r.registrations(), 2);
        for i in 0..1000 {
            r.load(&format!("x{i}"), vec![reg("p", "n", 1.0)]);
        }
        assert_eq!(r.users(), 3);
        assert_eq!(r.registrations(), 3);
    }
}
