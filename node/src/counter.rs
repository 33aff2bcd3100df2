//! Statistics counters that worker threads bump without sharing a cache line.
//!
//! A plain atomic bumped by every request makes its cache line travel between the cores on each
//! request (three or four such bumps per request in proxy mode). Each worker (see
//! `crate::shard`) bumps its own slot instead; `stats` sums them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Slots per counter. Workers past this many share slots (still correct, just shared lines).
const SLOTS: usize = 8;

/// One slot, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

#[derive(Debug, Default)]
pub struct Counter {
    slots: [Slot; SLOTS],
}

impl Counter {
    pub fn add(&self, n: u64) {
        // Threads that are no worker (tests, the accept thread) share the last slot.
        let i = crate::shard::current().map_or(SLOTS - 1, |s| s % SLOTS);
        self.slots[i].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    /// The total over all threads.
    pub fn get(&self) -> u64 {
        self.slots
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bumps_from_workers_and_other_threads_all_count() {
        let c = std::sync::Arc::new(Counter::default());
        let workers = crate::shard::Shards::start(3).unwrap();
        for h in workers.handles() {
            let c = c.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            h.spawn(async move {
                for _ in 0..1000 {
                    c.inc();
                }
                tx.send(()).unwrap();
            });
            rx.recv().unwrap();
        }
        c.add(5);
        assert_eq!(c.get(), 3005);
    }
}
