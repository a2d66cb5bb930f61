//! A map with a fixed capacity that forgets its oldest entries first:
//! the shape of every memory the core keeps about traffic (stanzas pushed,
//! recent room messages), so that nobody's traffic can grow it without bound.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A bounded map that forgets its oldest entry first.
pub struct Fifo<K, V> {
    capacity: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> Fifo<K, V> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Fifo {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
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

    /// Removes and returns the oldest entry.
    pub fn pop_oldest(&mut self) -> Option<(K, V)> {
        while let Some(key) = self.order.pop_front() {
            if let Some(v) = self.map.remove(&key) {
                return Some((key, v));
            }
        }
        None
    }

    /// The value under `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    /// The value under `key`, to change in place.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    /// Inserts or replaces; a new key beyond capacity evicts the oldest.
    pub fn insert(&mut self, key: K, value: V) {
        if let Some(v) = self.map.get_mut(&key) {
            *v = value;
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.order.push_back(key.clone());
        self.map.insert(key, value);
    }

    /// Takes the value under `key` out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let v = self.map.remove(key)?;
        if let Some(pos) = self.order.iter().position(|k| k == key) {
            self.order.remove(pos);
        }
        Some(v)
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
}
