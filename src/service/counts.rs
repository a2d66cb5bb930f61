//! Unread counts: what each registration's devices have not seen, and their write-back.

use super::*;

impl PushService {
    /// The unread counts changed: the counts record is to be written.
    pub(super) fn counts_changed(&mut self) {
        self.counts_changes.0 += 1;
    }

    /// Takes the counts record the store held when the module loaded
    /// (`None`: there was none; the registration records' counts count).
    /// Returns how many users' counts it held.
    pub fn read_counts_record(&mut self, record: Option<&str>) -> usize {
        let Some(text) = record else {
            return 0;
        };
        self.counts_from_records = false;
        self.counts_kept.read_record(text)
    }

    /// The counts record to write now, with its number (for
    /// [`PushService::counts_record_written`]): when the counts changed
    /// since the last one and it was written `push_counts_write_interval`
    /// seconds ago or more, or whenever they changed with `force`
    /// (shutdown, unload). Every user's counts, in memory or kept.
    pub fn counts_record(&mut self, now: f64, force: bool) -> Option<(String, u64)> {
        self.clock = self.clock.max(now);
        let (changes, written, at) = self.counts_changes;
        let due = force || self.clock - at >= self.config.counts_write_interval as f64;
        if changes == written || !due {
            return None;
        }
        self.counts_changes.2 = self.clock;
        let in_memory = self.registry.iter().filter_map(|(user, regs)| {
            let entries: Vec<crate::counts::Entry> = regs
                .iter()
                .flat_map(|r| {
                    let id = crate::counts::chat_key(r.identifier());
                    r.counts.iter().map(move |(chat, n)| (id, chat, n))
                })
                .collect();
            (!entries.is_empty()).then_some((user, entries))
        });
        let kept = self.counts_kept.iter().map(|(u, e)| (&**u, e.to_vec()));
        Some((crate::counts::write_record(in_memory.chain(kept)), changes))
    }

    /// The counts record numbered `serial` was written: the changes up to
    /// it are in the store.
    pub fn counts_record_written(&mut self, serial: u64) {
        self.counts_changes.1 = self.counts_changes.1.max(serial);
    }

    /// Unread counts kept for users not in memory: users, bytes, and users
    /// whose counts were dropped for room.
    pub fn counts_kept(&self) -> (usize, usize, u64) {
        let k = &self.counts_kept;
        (k.len(), k.bytes(), k.dropped())
    }

    /// The device of a registration has a session again (it enabled,
    /// bound with it, or resumed): nothing is unread for it, and nothing
    /// held for it is pushed. Whether its count changed.
    pub fn connected(&mut self, user: &str, identifier: &str) -> bool {
        self.grace.forget(user, identifier);
        let changed = self
            .registry
            .registration_mut(user, identifier)
            .is_some_and(|r| r.counts.reset());
        if changed {
            self.counts_changed();
        }
        changed
    }

    /// The unread count of a registration.
    pub fn unread(&self, user: &str, identifier: &str) -> u32 {
        self.registry
            .peek(user)
            .and_then(|regs| regs.iter().find(|r| r.identifier() == identifier))
            .map_or(0, |r| r.counts.total())
    }

    /// Users whose counts changed since they were last written: write them
    /// (in batches, not a write per message). Each stays listed until a
    /// write of theirs commits.
    pub fn counts_to_write(&self) -> Vec<String> {
        self.dirty.users()
    }

    /// Users whose counts are to be written now, before their time: a
    /// user with unwritten counts stays in memory, so once they fill half
    /// the registration cache the oldest are written (the cache's
    /// bound holds whatever the number of users pushed, and each write is
    /// one the write-back would have made). Each listed once.
    pub fn counts_due(&mut self) -> Vec<String> {
        // Half the cache: the other half stays free to evict from (were the
        // cache all pinned, every load would walk the whole ring, 3 ms
        // per message at 10,000 users: measured on PostgreSQL at 100,000
        // users with a cache of 10,000).
        let keep = (self.config.cache_size / 2).max(1);
        let now = self.second();
        self.dirty.due_pressure(keep, now)
    }

    /// Users whose counts changed `push_counts_write_interval` seconds ago
    /// or more (and writes of theirs that never committed): to be written
    /// now, at most [`COUNTS_WRITES_PER_TICK`], oldest first. Called every
    /// [`PushService::counts_tick`] seconds, so the writes are spread as
    /// the changes were.
    pub fn counts_aged(&mut self, now: f64) -> Vec<String> {
        self.clock = self.clock.max(now);
        let now = self.second();
        let before = now.saturating_sub(self.config.counts_write_interval as u32);
        self.dirty.due_aged(before, COUNTS_WRITES_PER_TICK, now)
    }

    /// Seconds between calls of [`PushService::counts_aged`]: a sixtieth of
    /// the interval, between 1 and 60.
    pub fn counts_tick(&self) -> u64 {
        (self.config.counts_write_interval / 60).clamp(1, 60)
    }

    /// Seconds between writes of the changed unread counts.
    pub fn counts_write_interval(&self) -> u64 {
        self.config.counts_write_interval
    }
}
