//! Compaction filter of the index keyspace: drops records of expired entries and records whose log
//! data FIFO has already evicted, as leveled compaction rewrites the index.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fjall::compaction::filter::{CompactionFilter, CompactionFilterResult, Context, Factory, ItemAccessor, Verdict};

use super::codec::decode_index;
use super::L2Clock;

/// State shared by the store and its compaction filter.
#[derive(Debug)]
pub struct Shared {
    pub clock: L2Clock,
    /// Every log record below this sequence number is gone (evicted or flushed). Only ever
    /// raised, and possibly behind the truth, which only makes the filter keep more.
    pub floor: AtomicU64,
}

impl Shared {
    pub fn floor(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }

    pub fn raise_floor(&self, to: u64) {
        self.floor.fetch_max(to, Ordering::Relaxed);
    }
}

/// What the filter does with one index record.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Keep,
    /// Expired: replace by a tombstone. An older record of the same key may sit in a lower level
    /// (a `touch` that shortened the expiry keeps the sequence number), and without a tombstone it
    /// would come back.
    Expire,
    /// Its log data is gone: drop without a tombstone. Older records of the key point further back
    /// into the log, so they are gone as well and cannot come back as hits.
    Evicted,
}

pub fn decide(raw: &[u8], now: u64, floor: u64) -> Decision {
    match decode_index(raw) {
        Some(rec) if rec.seq < floor => Decision::Evicted,
        Some(rec) if super::expired(rec.expiry, now) => Decision::Expire,
        // An unknown format is kept: a newer binary may understand it.
        _ => Decision::Keep,
    }
}

pub struct IndexFilterFactory(pub Arc<Shared>);

impl Factory for IndexFilterFactory {
    fn name(&self) -> &str {
        "riven-l2-index"
    }

    fn make_filter(&self, _ctx: &Context) -> Box<dyn CompactionFilter> {
        // Time and floor are read once per compaction: a compaction is short next to a TTL, and
        // a floor read late is only conservative.
        Box::new(IndexFilter {
            now: self.0.clock.now(),
            floor: self.0.floor(),
        })
    }
}

struct IndexFilter {
    now: u64,
    floor: u64,
}

impl CompactionFilter for IndexFilter {
    fn filter_item(&mut self, item: ItemAccessor<'_>, _ctx: &Context) -> CompactionFilterResult {
        // Index values are never separated into blob files, so this is a plain borrow.
        let value = item.value()?;
        Ok(match decide(&value, self.now, self.floor) {
            Decision::Keep => Verdict::Keep,
            Decision::Expire => Verdict::Remove,
            Decision::Evicted => Verdict::Destroy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{encode_index, IndexRecord};
    use super::*;

    #[test]
    fn decisions() {
        let rec = |seq, expiry| encode_index(&IndexRecord { seq, expiry });
        // live, never expires
        assert_eq!(decide(&rec(10, 0), 1000, 5), Decision::Keep);
        // live, expires later
        assert_eq!(decide(&rec(10, 1001), 1000, 5), Decision::Keep);
        // expiry reached (memcached: expired when expiry <= now)
        assert_eq!(decide(&rec(10, 1000), 1000, 5), Decision::Expire);
        // log data evicted wins over expiry
        assert_eq!(decide(&rec(4, 1000), 1000, 5), Decision::Evicted);
        assert_eq!(decide(&rec(4, 0), 1000, 5), Decision::Evicted);
        // garbage or a future format is kept
        assert_eq!(decide(b"", 1000, 5), Decision::Keep);
        let mut future = rec(1, 1);
        future[0] = 7;
        assert_eq!(decide(&future, 1000, 5), Decision::Keep);
    }
}
