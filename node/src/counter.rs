//! Statistics counters that worker threads bump without sharing a cache line.
//!
//! A plain atomic bumped by every request makes its cache line travel between the cores on each
//! request (three or four such bumps per request in proxy mode). Each thread bumps its own slot
//! instead (workers by their index, other threads, such as the embedded store's tokio runtime,
//! by one handed out at their first bump); `stats` sums them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Slots per counter. Threads past this many share slots (still correct, just shared lines).
const SLOTS: usize = 8;

/// The slot of the next thread that is no worker.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The calling thread's slot.
fn slot() -> usize {
    SLOT.with(|s| match s.get() {
        Some(i) => i,
        None => {
            let i = crate::workers::current().unwrap_or_else(|| NEXT_SLOT.fetch_add(1, Ordering::Relaxed)) % SLOTS;
            s.set(Some(i));
            i
        }
    })
}

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
        self.slots[slot()].0.fetch_add(n, Ordering::Relaxed);
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
        let workers = crate::workers::Workers::start(3).unwrap();
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
