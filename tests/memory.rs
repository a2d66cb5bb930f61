// (A build with the `module` feature has the library's own global allocator.)
#![cfg(not(feature = "module"))]

//! How much memory the core holds per loaded user, counted by a global
//! allocator (prints the figure; asserts only a generous ceiling).

use cloud_notify::config::Config;
use cloud_notify::registration::{identifier, Parts, Registration};
use cloud_notify::service::PushService;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The largest single request since it was last reset.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The count is process-wide: the tests take turns, so that neither
/// counts the other's allocations.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn bytes_per_loaded_user() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let users = 20_000;
    let mut s = PushService::new(
        "localhost",
        Config {
            cache_size: users + 1,
            ..Config::default()
        },
    );
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..users {
        let node = format!("m{i}-0");
        let reg = Registration::new(
            Parts {
                identifier: Some(&identifier("push.localhost", Some(&node))),
                jid: "push.localhost",
                node: Some(&node),
                resource: Some("phone"),
                ..Default::default()
            },
            1.7e9,
        );
        // With room for four, as a Vec grown by push (the binding's store
        // reader) has: the core must not keep the slack.
        let mut regs = Vec::with_capacity(4);
        regs.extend([reg]);
        s.load(&format!("m{i}"), regs);
    }
    let per_user = (LIVE.load(Ordering::Relaxed) - before) / users as isize;
    eprintln!("MEMORY {per_user} bytes per loaded user (one registration)");
    assert!(per_user < 2048);
}

/// An in-band enable of `user`'s phone, with the publish-options form
/// Conversations sends (a secret).
fn enable_with_secret(s: &mut PushService, user: &str, i: usize) {
    let (who, req) = enable_request(user, i);
    enable(s, user, who, req);
}

/// The request [`enable_with_secret`] makes (its form parsed).
fn enable_request(
    user: &str,
    i: usize,
) -> (
    cloud_notify::registration::Requester,
    cloud_notify::registration::EnableRequest,
) {
    use cloud_notify::registration::{EnableRequest, Requester};
    let who = Requester {
        bare_jid: format!("{user}@localhost"),
        full_jid: Some(format!("{user}@localhost/phone")),
        resource: Some("phone".into()),
        ..Default::default()
    };
    let form = format!(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
         <field var='secret'><value>{:024x}</value></field></x>",
        i * 7919
    );
    let req = EnableRequest {
        jid: Some("push.localhost".into()),
        node: Some(user.to_owned()),
        form: Some(form.parse().unwrap()),
        ..Default::default()
    };
    (who, req)
}

/// The core's part of an enable: checked, built, planned, committed.
fn enable(
    s: &mut PushService,
    user: &str,
    who: cloud_notify::registration::Requester,
    req: cloud_notify::registration::EnableRequest,
) {
    let reg = s.enable_request(req, &who, 1.7e9).unwrap();
    let plan = s.plan_enable(user, reg, None).unwrap();
    s.commit(user, plan);
}

/// An enable's checks and its registration ask malloc for no block of a
/// kilobyte or more: glibc first merges the small freed chunks it keeps
/// for such a request, at a cost that grows with the heap (rule 116).
/// Every phone enables on every connection.
#[test]
fn an_enable_asks_malloc_for_no_kilobyte() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = PushService::new("localhost", Config::default());
    s.known_complete();
    s.load("romeo", Vec::new());
    // (the first fills the tables)
    enable_with_secret(&mut s, "romeo", 1);
    // The same enable again (rule 115: nothing to write), then another
    // secret (a new record to write).
    for (i, what) in [(1, "again"), (2, "with another secret")] {
        let (who, req) = enable_request("romeo", i);
        LARGEST.store(0, Ordering::Relaxed);
        enable(&mut s, "romeo", who, req);
        let largest = LARGEST.load(Ordering::Relaxed);
        eprintln!("MEMORY largest request of an enable {what}: {largest} bytes");
        assert!(largest <= 1000, "{what}: {largest} bytes");
    }
}

/// The path a real server takes: each user enables in-band, gets one
/// message while offline, and the app server answers its push. What the
/// core keeps afterwards, per user, beside the registration itself.
#[test]
fn bytes_per_user_after_an_enable_and_a_push() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    use cloud_notify::facts::StanzaFacts;
    use cloud_notify::service::{PushKind, Response, Targets};
    let users = 20_000;
    let mut s = PushService::new(
        "localhost",
        Config {
            cache_size: users + 1,
            ..Config::default()
        },
    );
    let message: minidom::Element = "<message xmlns='jabber:client' type='chat' \
        from='juliet@capulet.example/balcony' to='romeo@localhost' id='m1'><body>hi</body></message>"
        .parse()
        .unwrap();
    let mut stages = [0isize; 3];
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..users {
        let user = format!("m{i}");
        let start = LIVE.load(Ordering::Relaxed);
        s.load(&user, Vec::new());
        enable_with_secret(&mut s, &user, i);
        let enabled = LIVE.load(Ordering::Relaxed);
        let facts = StanzaFacts::from_element(&message);
        let jobs = s
            .notify(
                &user,
                Some(&facts),
                None,
                Targets::All,
                PushKind::Offline,
                1.7e9,
            )
            .unwrap();
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        drop(jobs);
        drop(facts);
        let pushed = LIVE.load(Ordering::Relaxed);
        for id in ids {
            s.response(&id, "push.localhost", Response::Result, 1.7e9);
        }
        let answered = LIVE.load(Ordering::Relaxed);
        stages[0] += enabled - start;
        stages[1] += pushed - enabled;
        stages[2] += answered - pushed;
    }
    let per_user = (LIVE.load(Ordering::Relaxed) - before) / users as isize;
    let [e, p, a] = stages.map(|b| b / users as isize);
    eprintln!("MEMORY {per_user} bytes per user after an enable and a push (enable {e}, push {p}, answer {a})");
    let at = LIVE.load(Ordering::Relaxed);
    s.expire(1.8e9);
    let swept = LIVE.load(Ordering::Relaxed);
    // (unread counts pin no user in memory: nothing to write per user)
    assert!(s.counts_to_write().is_empty());
    eprintln!(
        "MEMORY of which {} bytes per user until unanswered pushes are swept",
        (at - swept) / users as isize
    );
    assert_eq!(s.pending(), 0);
    assert!(per_user < 2048);
}
