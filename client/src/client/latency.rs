//! Recent latency of the first zone's reads, for the adaptive hedge delay
//! ([`HedgeConfig::percentile`](crate::HedgeConfig::percentile)).
//!
//! A histogram of log-spaced buckets (four per power of two, so a bucket is at most 25 % wide)
//! counted with relaxed atomics: recording is one `fetch_add` and never waits. Every
//! [`RECOMPUTE_EVERY`] samples the recorder that completes the batch works out the percentile,
//! publishes it as the delay, and halves every bucket, so old samples fade: the delay follows
//! the latency of roughly the last few batches rather than the client's whole life.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets: values up to 2^41 µs (about 25 days), far past any request timeout.
const BUCKETS: usize = 4 * 40;
/// Samples between recomputations of the delay.
const RECOMPUTE_EVERY: u64 = 256;

/// See the module docs.
#[derive(Debug)]
pub(super) struct Latency {
    buckets: [AtomicU64; BUCKETS],
    samples: AtomicU64,
    /// The current delay in µs; 0 until the first batch of samples is in.
    delay_us: AtomicU64,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            samples: AtomicU64::new(0),
            delay_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros() as usize;
    let mantissa = ((us >> (exp - 2)) & 3) as usize;
    (4 * (exp - 1) + mantissa).min(BUCKETS - 1)
}

/// The smallest latency in bucket `index`, in µs.
fn lower_bound(index: usize) -> u64 {
    if index < 4 {
        return index as u64;
    }
    let (exp, mantissa) = (index / 4 + 1, (index % 4) as u64);
    (4 + mantissa) << (exp - 2)
}

impl Latency {
    /// Counts one read of the first zone that took `took` (or was abandoned after `took`, which
    /// is then a lower bound of its latency).
    pub(super) fn record(&self, took: Duration, percentile: f64) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(us)].fetch_add(1, Ordering::Relaxed);
        let n = self.samples.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(RECOMPUTE_EVERY) {
            self.recompute(percentile);
        }
    }

    /// The delay: the percentile of recent latency, or `None` before the first batch.
    pub(super) fn delay(&self) -> Option<Duration> {
        match self.delay_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    fn recompute(&self, percentile: f64) {
        let counts: [u64; BUCKETS] = std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return;
        }
        let rank = ((percentile.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                // The bucket's upper end: the delay errs on the late side, by under 25 %.
                let upper = if i + 1 < BUCKETS {
                    lower_bound(i + 1)
                } else {
                    lower_bound(i)
                };
                self.delay_us.store(upper.max(1), Ordering::Relaxed);
                break;
            }
        }
        // Fade the past: each batch counts half as much as the one after it.
        for (b, c) in self.buckets.iter().zip(counts) {
            b.fetch_sub(c / 2, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_at_most_a_quarter_wide() {
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 4095, 4096, 1 << 30] {
            let b = bucket(us);
            assert!(lower_bound(b) <= us, "{us} in bucket {b} from {}", lower_bound(b));
            assert!(
                us < lower_bound(b + 1),
                "{us} in bucket {b} up to {}",
                lower_bound(b + 1)
            );
        }
        for b in 4..BUCKETS - 1 {
            let (lo, hi) = (lower_bound(b), lower_bound(b + 1));
            assert!(hi > lo && (hi - lo) * 4 <= lo, "bucket {b}: {lo}..{hi}");
        }
    }

    #[test]
    fn the_delay_is_the_percentile_of_recent_samples() {
        let l = Latency::default();
        assert_eq!(l.delay(), None);
        // 90 % at 1 ms, 10 % at 20 ms: the 95th percentile is in the slow group.
        for i in 0..RECOMPUTE_EVERY * 4 {
            let ms = if i % 10 == 0 { 20 } else { 1 };
            l.record(Duration::from_millis(ms), 0.95);
        }
        let d = l.delay().expect("a delay after enough samples");
        assert!(
            (Duration::from_millis(20)..=Duration::from_millis(25)).contains(&d),
            "{d:?}"
        );
        // The 50th percentile of the same samples is near 1 ms.
        for i in 0..RECOMPUTE_EVERY * 4 {
            let ms = if i % 10 == 0 { 20 } else { 1 };
            l.record(Duration::from_millis(ms), 0.5);
        }
        let d = l.delay().expect("a delay");
        assert!(
            (Duration::from_millis(1)..=Duration::from_micros(1250)).contains(&d),
            "{d:?}"
        );
    }

    #[test]
    fn the_delay_follows_a_change_in_latency() {
        let l = Latency::default();
        for _ in 0..RECOMPUTE_EVERY * 4 {
            l.record(Duration::from_millis(1), 0.9);
        }
        assert!(l.delay().expect("delay") <= Duration::from_micros(1250));
        // The zone slows to 8 ms: within a few batches the delay follows.
        for _ in 0..RECOMPUTE_EVERY * 6 {
            l.record(Duration::from_millis(8), 0.9);
        }
        let d = l.delay().expect("delay");
        assert!(
            (Duration::from_millis(8)..=Duration::from_millis(10)).contains(&d),
            "{d:?}"
        );
    }
}
