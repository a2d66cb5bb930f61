//! How much memory the core holds per loaded user, counted by a global
//! allocator (prints the figure; asserts only a generous ceiling).

use cloud_notify::config::Config;
use cloud_notify::registration::{identifier, Registration};
use cloud_notify::service::PushService;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn bytes_per_loaded_user() {
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
        let reg = Registration {
            identifier: identifier("push.localhost", Some(&node)),
            jid: "push.localhost".into(),
            node: Some(node),
            include_payload: None,
            options: None,
            timestamp: 1.7e9,
            client_id: None,
            resource: None,
            language: None,
            errors: 0,
            extra: Vec::new(),
            counts: Default::default(),
        };
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
