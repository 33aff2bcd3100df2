//! The server clock: seconds since start, as memcached keeps it, so item times fit in a u32.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Expiry;

/// memcached's boundary: an exptime above 30 days is an absolute unix time.
pub const REALTIME_MAXDELTA: i64 = riven_memcache::REALTIME_MAXDELTA as i64;

/// Server time starts here, so that `Expiry(1)` is always in the past ("already expired") and 0
/// stays free to mean "never".
const START: u32 = 3;

/// A coarse clock in whole seconds. A background thread advances it, so reading it is one atomic
/// load (no syscall on the request path). Clones share the same time.
#[derive(Debug, Clone)]
pub struct Clock {
    now: Arc<AtomicU32>,
    /// Unix time that corresponds to server time 0.
    epoch_unix: i64,
}

impl Clock {
    /// Starts the clock and its ticking thread.
    pub fn start() -> Clock {
        let started = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let now = Arc::new(AtomicU32::new(START));
        let ticking = Arc::downgrade(&now);
        std::thread::Builder::new()
            .name("riven-clock".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(50));
                let Some(now) = ticking.upgrade() else { return };
                let secs = started.elapsed().as_secs() as u32 + START;
                now.store(secs, Ordering::Relaxed);
            })
            .expect("spawn clock thread");
        Clock {
            now,
            epoch_unix: unix - START as i64,
        }
    }

    /// A clock that only moves when told to (tests).
    pub fn manual() -> Clock {
        Clock {
            now: Arc::new(AtomicU32::new(START)),
            epoch_unix: 1_700_000_000,
        }
    }

    /// Moves a manual clock forward.
    pub fn advance(&self, secs: u32) {
        self.now.fetch_add(secs, Ordering::Relaxed);
    }

    /// Current server time in seconds.
    #[inline]
    pub fn now(&self) -> u32 {
        self.now.load(Ordering::Relaxed)
    }

    /// Current unix time in seconds.
    pub fn unix_now(&self) -> i64 {
        self.epoch_unix + self.now() as i64
    }

    /// Unix time of server time `t`.
    pub fn to_unix(&self, t: u32) -> i64 {
        self.epoch_unix + t as i64
    }

    /// An expiry as absolute unix seconds, 0 for never (how other tiers and processes keep it).
    pub fn expiry_to_unix(&self, e: Expiry) -> u64 {
        if e == Expiry::NEVER {
            0
        } else {
            self.to_unix(e.0).max(1) as u64
        }
    }

    /// The inverse of [`Clock::expiry_to_unix`].
    pub fn expiry_from_unix(&self, unix: u64) -> Expiry {
        if unix == 0 {
            return Expiry::NEVER;
        }
        let rel = unix as i64 - self.epoch_unix;
        if rel <= 1 {
            Expiry(1)
        } else {
            Expiry(rel.min(u32::MAX as i64) as u32)
        }
    }

    /// memcached's rules for an exptime: 0 never expires; up to 30 days is relative; more is an
    /// absolute unix time; negative (or an absolute time already past) is already expired.
    pub fn expiry(&self, exptime: i64) -> Expiry {
        if exptime == 0 {
            return Expiry::NEVER;
        }
        if exptime < 0 {
            return Expiry(1);
        }
        if exptime > REALTIME_MAXDELTA {
            let rel = exptime - self.epoch_unix;
            if rel <= 1 {
                return Expiry(1);
            }
            return Expiry(rel.min(u32::MAX as i64) as u32);
        }
        Expiry((self.now() as i64 + exptime).min(u32::MAX as i64) as u32)
    }

    /// Remaining TTL in seconds of an expiry, -1 for never.
    pub fn ttl(&self, e: Expiry) -> i64 {
        if e == Expiry::NEVER {
            -1
        } else {
            (e.0 as i64 - self.now() as i64).max(0)
        }
    }

    /// Whether an expiry has passed.
    #[inline]
    pub fn expired(&self, e: Expiry) -> bool {
        e.0 != 0 && e.0 <= self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptime_rules() {
        let c = Clock::manual();
        assert_eq!(c.expiry(0), Expiry::NEVER);
        assert!(c.expired(c.expiry(-1)));
        assert_eq!(c.expiry(10), Expiry(START + 10));
        assert_eq!(c.expiry(REALTIME_MAXDELTA), Expiry(START + REALTIME_MAXDELTA as u32));
        // Absolute time 100 s from now.
        let abs = c.unix_now() + 100;
        assert_eq!(c.ttl(c.expiry(abs)), 100);
        // Absolute time in the past.
        assert!(c.expired(c.expiry(REALTIME_MAXDELTA + 1)));
        c.advance(10);
        assert!(c.expired(Expiry(START + 10)));
        assert_eq!(c.ttl(Expiry::NEVER), -1);
    }
}
