//! A map with a fixed capacity that forgets its oldest entries first:
//! the shape of every memory the core keeps about traffic (stanzas pushed,
//! recent room messages), so that nobody's traffic can grow it without bound.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A bounded map that forgets its oldest entry first. Every operation is
/// O(1) (amortised): a removed key's place in the order is left behind
/// and skipped (each entry carries the serial of its insertion), and the
/// order is compacted once it holds twice as many places as entries.
pub struct Fifo<K, V> {
    capacity: usize,
    map: HashMap<K, (V, u64)>,
    order: VecDeque<(K, u64)>,
    serial: u64,
}

impl<K: Hash + Eq + Clone, V> Fifo<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Fifo {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
            serial: 0,
        }
    }

    /// Whether `place` in the order is still its key's.
    fn live(&self, (key, serial): &(K, u64)) -> bool {
        self.map.get(key).is_some_and(|(_, s)| s == serial)
    }

    /// Drops the places left behind once they outnumber the entries.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(k, serial)| map.get(k).is_some_and(|(_, s)| s == serial));
        }
    }

    /// The entries, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter().map(|(k, (v, _))| (k, v))
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The oldest entry.
    pub fn oldest(&self) -> Option<(&K, &V)> {
        self.order
            .iter()
            .find(|place| self.live(place))
            .and_then(|(k, _)| self.map.get_key_value(k).map(|(k, (v, _))| (k, v)))
    }

    /// Removes and returns the oldest entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        while let Some(place) = self.order.pop_front() {
            if self.live(&place) {
                let (v, _) = self.map.remove(&place.0)?;
                return Some((place.0, v));
            }
        }
        None
    }

    /// The value under `key`.
    pub fn get<Q: ?Sized + Hash + Eq>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.map.get(key).map(|(v, _)| v)
    }

    /// The value under `key`, to change in place.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key).map(|(v, _)| v)
    }

    /// Inserts or replaces; a new key beyond capacity evicts the oldest.
    pub fn insert(&mut self, key: K, value: V) {
        if let Some((v, _)) = self.map.get_mut(&key) {
            *v = value;
            return;
        }
        while self.map.len() >= self.capacity {
            if self.pop_oldest().is_none() {
                break;
            }
        }
        self.serial += 1;
        self.order.push_back((key.clone(), self.serial));
        self.map.insert(key, (value, self.serial));
        self.compact();
    }

    /// Takes the value under `key` out.
    pub fn remove<Q: ?Sized + Hash + Eq>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let (v, _) = self.map.remove(key)?;
        self.compact();
        Some(v)
    }
}

/// Where a key's value sits in a cache whose values live elsewhere (the
/// binding's Lua tables of shared stanza parts): at most `capacity` keys,
/// the oldest going first and its slot reused, so the cache never holds
/// more than `capacity` values.
pub struct Slots {
    keys: Fifo<u64, usize>,
    next: usize,
}

/// What [`Slots::slot`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The key has this slot already: its value may be there (the caller
    /// checks that it is the value wanted: keys are hashes).
    Kept(usize),
    /// The key was given this slot now: whatever is there is another's.
    New(usize),
}

impl Slots {
    /// Slots `0..capacity` (at least one).
    pub fn new(capacity: usize) -> Self {
        Slots {
            keys: Fifo::new(capacity),
            next: 0,
        }
    }

    /// The slot of `key`, given one (the oldest key's) if it had none.
    pub fn slot(&mut self, key: u64) -> Slot {
        if let Some(&slot) = self.keys.get(&key) {
            return Slot::Kept(slot);
        }
        let slot = if self.next < self.keys.capacity() {
            self.next += 1;
            self.next - 1
        } else {
            self.keys.pop_oldest().map_or(0, |(_, slot)| slot)
        };
        self.keys.insert(key, slot);
        Slot::New(slot)
    }
}

/// How many of something each user has (open smacks batches, waiting
/// retries): the users the registry must keep in memory meanwhile.
#[derive(Debug, Default)]
pub struct PerUser(HashMap<String, usize>);

impl PerUser {
    /// One more for `user`.
    pub fn add(&mut self, user: &str) {
        *self.0.entry(user.to_owned()).or_default() += 1;
    }

    /// One less for `user`.
    pub fn remove(&mut self, user: &str) {
        if let Some(n) = self.0.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(user);
            }
        }
    }

    /// Whether `user` has any.
    pub fn contains(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_oldest_first_and_stay_within_capacity() {
        let mut slots = Slots::new(2);
        assert_eq!(slots.slot(10), Slot::New(0));
        assert_eq!(slots.slot(20), Slot::New(1));
        assert_eq!(slots.slot(10), Slot::Kept(0));
        // (a third key takes the oldest's slot)
        assert_eq!(slots.slot(30), Slot::New(0));
        assert_eq!(slots.slot(20), Slot::Kept(1));
        assert_eq!(slots.slot(10), Slot::New(1));
        for key in 0..1000 {
            match slots.slot(key) {
                Slot::Kept(n) | Slot::New(n) => assert!(n < 2),
            }
        }
    }

    #[test]
    fn oldest_go_first() {
        let mut f = Fifo::new(2);
        f.insert("a", 1);
        f.insert("b", 2);
        f.insert("a", 10); // replacing keeps its place
        f.insert("c", 3);
        assert_eq!(f.len(), 2);
        assert_eq!(f.get(&"a"), None);
        assert_eq!(f.get(&"b"), Some(&2));
        assert_eq!(f.remove(&"b"), Some(2));
        f.insert("d", 4);
        assert_eq!(f.get(&"c"), Some(&3));
        assert_eq!(f.get(&"d"), Some(&4));
    }

    #[test]
    fn a_key_removed_and_inserted_again_takes_its_new_place() {
        let mut f = Fifo::new(3);
        f.insert("a", 1);
        f.insert("b", 2);
        f.remove(&"a");
        f.insert("c", 3);
        f.insert("a", 4); // now the newest
        f.insert("d", 5); // evicts b, the oldest
        assert_eq!(f.get(&"b"), None);
        assert_eq!(f.get(&"a"), Some(&4));
        assert_eq!(f.pop_oldest(), Some(("c", 3)));
        assert_eq!(f.pop_oldest(), Some(("a", 4)));
    }

    #[test]
    fn removal_costs_no_walk_and_leaves_no_unbounded_order() {
        // (each remove is O(1): nothing walks the order; what it leaves
        // behind is compacted, so the order stays within twice the entries)
        for n in [1_000u32, 100_000] {
            let mut f = Fifo::new(n as usize);
            for i in 0..n {
                f.insert(i, i);
            }
            for i in 0..n {
                assert_eq!(f.remove(&i), Some(i));
                f.insert(n + i, i);
                assert!(f.order.len() <= 2 * f.len() + 65, "{}", f.order.len());
            }
            assert_eq!(f.len(), n as usize);
            assert_eq!(f.pop_oldest(), Some((n, 0)));
        }
    }
}
