//! The shipped library's global allocator: the C library's (the system
//! allocator), counted.
//!
//! The count (the `heap_bytes` export) is what the core holds, apart from
//! what the allocator keeps around it. (mimalloc was measured here as the
//! library's own heap: 1.8 KiB per user over a server without the module
//! on the login path of `bench/scale.py`, against 0.95 KiB with the C
//! library's; it kept freed pages the C library gives back.)

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// A global allocator counting the bytes live through another one.
#[cfg_attr(not(feature = "module"), allow(dead_code))]
pub struct Counting<A>(pub A);

// SAFETY: every call is passed on unchanged to the inner allocator; only a
// counter is kept beside it.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(new_size, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

/// Bytes live through [`Counting`] (0 where it is not the global allocator).
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// (Only in the shipped library: the `vm` test build links Lua itself.)
#[cfg(feature = "module")]
#[global_allocator]
static ALLOCATOR: Counting<std::alloc::System> = Counting(std::alloc::System);

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_what_is_live() {
        let a = Counting(System);
        let layout = Layout::from_size_align(100, 8).unwrap();
        let before = live_bytes();
        // SAFETY: valid layouts; each pointer is given back with its own.
        unsafe {
            let p = a.alloc(layout);
            assert_eq!(live_bytes() - before, 100);
            let p = a.realloc(p, layout, 300);
            assert_eq!(live_bytes() - before, 300);
            a.dealloc(p, Layout::from_size_align(300, 8).unwrap());
        }
        assert_eq!(live_bytes(), before);
    }
}
