//! Helpers shared by the integration tests: an RAII guard whose construction
//! and destruction are counted, to prove that every host frame cleaned up.

#![allow(dead_code)]

pub mod linked;

/// The number of kernel memory mappings of this process.
pub fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many guards were made and how many dropped.
#[derive(Default)]
pub struct Counters {
    pub created: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Counters {
    /// Guards made and not yet dropped.
    pub fn alive(&self) -> usize {
        self.created.load(Ordering::SeqCst) - self.dropped.load(Ordering::SeqCst)
    }
}

/// Counts itself in `created` when made and in `dropped` when dropped.
pub struct Guard(Arc<Counters>);

impl Guard {
    pub fn new(counters: &Arc<Counters>) -> Guard {
        counters.created.fetch_add(1, Ordering::SeqCst);
        Guard(counters.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}
