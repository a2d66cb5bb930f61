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
    #[cfg(test)]
    pub fn counts_write_interval(&self) -> u64 {
        self.config.counts_write_interval
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn counts_per_registration_drop_when_a_chat_is_read_and_reset_on_connect() {
        let mut s = service(16);
        let phone = enable(&mut s, "romeo", "push.example", "phone");
        let count = |jobs: Vec<PushJob>| jobs[0].summary.message_count;
        assert_eq!(
            count(offline(&mut s, &from_juliet("<body>1</body>"), 0.0)),
            1
        );
        assert_eq!(
            count(offline(&mut s, &from_juliet("<body>2</body>"), 0.0)),
            2
        );
        // Unimportant pushes carry the count and do not add to it.
        let state = from_juliet("<active xmlns='http://jabber.org/protocol/chatstates'/>");
        assert_eq!(count(offline(&mut s, &state, 0.0)), 2);
        let nurse = facts(
            "<message xmlns='jabber:client' from='nurse@capulet.example/x' type='chat'><body>3</body></message>",
        );
        assert_eq!(count(offline(&mut s, &nurse, 0.0)), 3);
        // In the counts record, not a write of romeo's registrations.
        assert!(s.counts_to_write().is_empty());
        let (record, _) = s.counts_record(0.0, true).unwrap();
        assert!(record.lines().nth(1).unwrap().starts_with("romeo\t"));
        // XEP-0333 §4: romeo's laptop marks juliet's chat displayed.
        let displayed = facts(
            "<message xmlns='jabber:client' from='romeo@example.com/laptop' to='juliet@capulet.example/balcony'>\
             <displayed xmlns='urn:xmpp:chat-markers:0' id='message-1'/></message>",
        );
        let read = s.outgoing("romeo", (None, None), &displayed, 1.0).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!((read[0].kind, count(read.clone())), (PushKind::Read, 1));
        assert!(!read[0].summary.important());
        // Read again: nothing dropped, no push.
        assert!(s
            .outgoing("romeo", (None, None), &displayed, 1.0)
            .unwrap()
            .is_empty());
        // XEP-0490: the nurse's chat, through MDS.
        let mds = s
            .published(
                "romeo",
                (None, None),
                crate::NS_MDS,
                "nurse@capulet.example",
                2.0,
            )
            .unwrap();
        assert_eq!(count(mds), 0);
        assert!(s
            .published("romeo", (None, None), "urn:xmpp:avatar:data", "x", 2.0)
            .unwrap()
            .is_empty());
        assert_eq!(
            count(offline(&mut s, &from_juliet("<body>4</body>"), 3.0)),
            1
        );
        assert!(s.connected("romeo", &phone));
        assert_eq!(s.unread("romeo", &phone), 0);
        offline(&mut s, &from_juliet("<body>5</body>"), 4.0);
        let plan = s.plan_current("romeo").unwrap();
        assert_eq!(plan.regs[0].counts.total(), 1);
        // What the pushes carry has no counts (push_info stays as stored by the reference).
        assert!(offline(&mut s, &from_juliet("<body>6</body>"), 4.0)[0]
            .registration
            .counts
            .is_empty());
    }

    #[test]
    fn important_messages_count_without_a_placeholder_body() {
        let mut s = PushService::new(
            "example.com",
            Config {
                important_body: String::new(),
                ..Config::default()
            },
        );
        enable(&mut s, "romeo", "push.example", "phone");
        let jobs = offline(&mut s, &from_juliet("<body>1</body>"), 0.0);
        assert_eq!(jobs[0].summary.body, None);
        assert_eq!(jobs[0].summary.message_count, 1);
    }

    #[test]
    fn counts_changed_while_a_plan_was_written_are_kept() {
        let mut s = service(16);
        enable(&mut s, "romeo", "push.example", "phone");
        let plan = s.plan_current("romeo").unwrap();
        offline(&mut s, &from_juliet("<body>1</body>"), 0.0);
        s.commit("romeo", plan); // written before the message counted
        assert_eq!(s.registrations("romeo").unwrap()[0].counts.total(), 1);
        assert!(
            s.counts_to_write().is_empty(),
            "no write of romeo's for a count"
        );
    }

    /// A user pushed once each, with a cache of 4: every count is kept
    /// (none pins its user in memory, none costs a write of the user's
    /// registrations), comes back with its user, and is in the one counts
    /// record a restart reads.
    #[test]
    fn counts_of_users_leaving_memory_are_kept_and_come_back_with_them() {
        let mut s = PushService::new(
            "example.com",
            Config {
                cache_size: 4,
                ..Config::default()
            },
        );
        let mut stored = Vec::new();
        for i in 0..40 {
            let user = format!("user{i}");
            enable(&mut s, &user, "push.example", &user);
            stored.push(s.plan_current(&user).unwrap().regs);
            let jobs = s
                .notify(
                    &user,
                    Some(&chat()),
                    None,
                    Targets::All,
                    PushKind::Offline,
                    0.0,
                )
                .unwrap();
            assert_eq!(jobs.len(), 1);
            assert!(
                s.loaded_users() <= 4,
                "{} users in memory",
                s.loaded_users()
            );
            assert!(s.counts_to_write().is_empty());
        }
        assert_eq!(s.counts_kept().0, 36);
        let (record, serial) = s.counts_record(0.0, true).unwrap();
        assert_eq!(record.lines().count(), 41);
        s.counts_record_written(serial);
        assert!(
            s.counts_record(1e9, true).is_none(),
            "nothing changed since"
        );
        // user0 comes back: its count with it.
        let jobs = {
            s.load("user0", stored[0].clone());
            s.notify(
                "user0",
                Some(&chat()),
                None,
                Targets::All,
                PushKind::Offline,
                1.0,
            )
            .unwrap()
        };
        assert_eq!(jobs[0].summary.message_count, 2);
        // A restart: the record read, the registrations' own counts (none
        // now) are not.
        let mut after = PushService::new("example.com", Config::default());
        assert_eq!(after.read_counts_record(Some(&record)), 40);
        let mut regs = stored[5].clone();
        regs[0]
            .counts
            .add_n(crate::counts::chat_key("old@example.com"), 7);
        after.load("user5", regs);
        let id = after.registrations("user5").unwrap()[0]
            .identifier()
            .to_owned();
        assert_eq!(after.unread("user5", &id), 1);
        // Without a counts record (the module ran without one), the
        // records' counts are taken.
        let mut first = PushService::new("example.com", Config::default());
        assert_eq!(first.read_counts_record(None), 0);
        let mut regs = stored[6].clone();
        regs[0]
            .counts
            .add_n(crate::counts::chat_key("old@example.com"), 7);
        first.load("user6", regs);
        assert_eq!(first.unread("user6", "push.example<user6"), 7);
    }

    #[test]
    fn the_counts_record_is_written_at_most_once_an_interval() {
        let mut s = PushService::new("example.com", Config::default());
        let interval = s.counts_write_interval() as f64;
        assert!(s.counts_record(1000.0, false).is_none(), "nothing changed");
        enable(&mut s, "romeo", "push.example", "phone");
        let push = |s: &mut PushService, t: f64| {
            s.notify(
                "romeo",
                Some(&chat()),
                None,
                Targets::All,
                PushKind::Offline,
                t,
            )
            .unwrap();
        };
        push(&mut s, 1000.0);
        let (_, serial) = s.counts_record(1000.0, false).unwrap();
        s.counts_record_written(serial);
        push(&mut s, 1010.0);
        assert!(s.counts_record(1000.0 + interval - 1.0, false).is_none());
        let (record, serial) = s.counts_record(1000.0 + interval, false).unwrap();
        assert!(record.contains(" 2\n"));
        // (a record that never got written is made again next time)
        push(&mut s, 1000.0 + interval + 1.0);
        assert!(
            s.counts_record(1000.0 + interval + 2.0, true).is_some(),
            "forced"
        );
        s.counts_record_written(serial);
        assert_eq!(s.counts_tick(), 5);
    }

    #[test]
    fn without_counts_the_app_server_learns_no_count_and_no_read() {
        let mut s = PushService::new(
            "example.com",
            Config {
                with_counts: false,
                ..Config::default()
            },
        );
        enable(&mut s, "romeo", "push.example", "phone");
        let said = StanzaFacts::from_element(&JULIET_SAYS.parse().unwrap());
        for _ in 0..3 {
            let jobs = offline(&mut s, &said, 0.0);
            assert_eq!(jobs[0].summary.message_count, 1, "as the reference");
        }
        assert!(
            s.counts_to_write().is_empty(),
            "nothing counted, nothing to write"
        );
        let read = s.published(
            "romeo",
            (None, None),
            crate::NS_MDS,
            "juliet@capulet.lit",
            1.0,
        );
        assert!(read.unwrap().is_empty());
        let sub = s
            .subscription_request("romeo", "nurse@c.lit", 2, false, None, &[], 2.0)
            .unwrap();
        assert_eq!(sub[0].summary.pending_subscriptions, None);
    }
}
