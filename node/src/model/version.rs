//! Versions: what replication orders writes by (last writer wins, the zone breaking ties).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A write's version: a hybrid-logical-clock timestamp plus the zone that made the write. The
/// one shape every tier keeps (the arena header, the chunk envelope, the L2 entry) and events
/// carry. Ordered by `hlc`, then `zone`, so two zones writing in the same tick still agree on
/// one winner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub hlc: u64,
    pub zone: u16,
}

impl Version {
    /// No version: a value written before versions were kept, older than any real write.
    pub const NONE: Version = Version { hlc: 0, zone: 0 };
}

/// A hybrid logical clock: unix milliseconds in the high bits, a counter in the low 16, never
/// the same value twice. Ticks grow with real time, so they survive a restart without repeating,
/// and stay ahead of every version already seen (see [`Hlc::observe`]), so a zone whose clock
/// lags still writes newer versions than those it has applied.
#[derive(Debug)]
pub struct Hlc {
    last: AtomicU64,
    zone: u16,
}

impl Hlc {
    pub fn new(zone: u16) -> Hlc {
        Hlc {
            last: AtomicU64::new(0),
            zone,
        }
    }

    /// The zone this clock stamps.
    pub fn zone(&self) -> u16 {
        self.zone
    }

    /// A new timestamp, larger than every earlier one of this clock.
    pub fn tick_raw(&self) -> u64 {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let physical = ms << 16;
        let prev = self
            .last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(physical.max(last + 1))
            })
            .unwrap_or(0);
        physical.max(prev + 1)
    }

    /// A new version of this zone.
    pub fn tick(&self) -> Version {
        Version {
            hlc: self.tick_raw(),
            zone: self.zone,
        }
    }

    /// Moves the clock past a version made elsewhere, so the next tick is newer than it.
    pub fn observe(&self, seen: Version) {
        self.last.fetch_max(seen.hlc, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_grow_and_pass_what_was_observed() {
        let hlc = Hlc::new(3);
        let a = hlc.tick();
        let b = hlc.tick();
        assert!(b > a);
        assert_eq!(b.zone, 3);
        let far = Version {
            hlc: b.hlc + (1 << 40),
            zone: 9,
        };
        hlc.observe(far);
        assert!(hlc.tick().hlc > far.hlc);
    }

    #[test]
    fn the_zone_breaks_ties() {
        let a = Version { hlc: 5, zone: 1 };
        let b = Version { hlc: 5, zone: 2 };
        assert!(b > a);
        assert!(Version { hlc: 6, zone: 0 } > b);
    }
}
