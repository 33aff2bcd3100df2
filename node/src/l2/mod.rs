//! The on-disk L2: a size-bounded, FIFO-evicting cache tier on an embedded LSM store (fjall).
//!
//! The orchestrator uses [`AsyncL2`] (operations run off the tokio workers); [`L2Store`] is the
//! synchronous store underneath, for tests and tools. Both are cheap to share (`&self` methods,
//! internally synchronized).
//!
//! # Layout: an append-only value log plus a key index
//!
//! One fjall database in the L2 directory holds two keyspaces:
//!
//! * `log`: every write appended under a fresh, strictly increasing 8-byte sequence number, with
//!   fjall's **FIFO compaction**. FIFO never merges tables; when the log passes its limit it
//!   deletes the oldest table files whole. That is the cache's eviction: oldest writes first,
//!   reclaimed at the cost of an `unlink`, with no rewriting (see write amplification below).
//! * `index`: user key -> (sequence number, expiry), 17 bytes a key, with the default leveled
//!   compaction and a compaction filter.
//!
//! Why not one keyspace under the user's keys with FIFO? fjall's FIFO strategy requires every
//! table of level 0 to be disjoint from the others (it asserts it, and a failed assertion poisons
//! the database); random cache keys make every flushed table overlap every other. Keys that grow
//! with every write are what makes FIFO usable, hence the log; the index maps user keys onto it.
//! Appends are serialized (one mutex around "take a sequence number, commit") so the log's keys
//! reach fjall's memtables in order even when writers race.
//!
//! A `set` is one atomic fjall batch (log record + index record). `delete` and `touch` rewrite
//! only the index; the old log record stays as garbage until FIFO drops its table, like an
//! overwritten value. A read goes index -> log and checks that the log record carries the same
//! key, so an index record left dangling (by a crash that lost the end of the journal, or a
//! sequence number reused after the log was emptied) reads as a miss, never as another key's
//! value.
//!
//! # Expiry
//!
//! Expired entries are never returned: every read compares the expiry with the store's clock
//! ([`L2Clock`], controllable in tests). Reclaiming, by design choice:
//!
//! * **Index records** of expired entries are removed by a compaction filter as leveled compaction
//!   rewrites the index; so are records pointing at log data FIFO has already dropped. Expired
//!   ones become tombstones (an older record of the key could otherwise resurface: `touch` may
//!   have shortened the expiry); evicted ones are destroyed outright, since every older record of
//!   the key points even further back into the evicted part of the log.
//! * **Log records** of expired entries are reclaimed when FIFO drops their table, not before. A
//!   filter cannot do better here: FIFO never rewrites a table, so a filter would never run, and
//!   rewriting tables to drop expired values early would spend SSD writes (the one thing FIFO
//!   saves) to free space FIFO will free anyway. An expired value therefore costs disk space until
//!   it is the oldest, exactly like an overwritten one.
//! * Optionally [`L2Config::max_age_secs`] sets fjall's FIFO TTL: tables older than that are
//!   dropped whole. It bounds how long *any* value lives in L2 (a cache may forget), so it suits
//!   a cluster whose TTLs are known to be shorter; it is off by default because memcached items may
//!   live forever.
//!
//! # Size bound
//!
//! `max_bytes` bounds everything in the directory except fjall's journal: the log's FIFO limit is
//! `max_bytes` less 1/16 for the index and four log tables (a table being flushed, one awaiting
//! its FIFO pass, dropped tables whose files fjall unlinks a little later; see `Layout`), and
//! writers wait (bounded) while fjall's flushes or FIFO passes fall behind (`backpressure`), so
//! this holds during a burst, not only after it.
//!
//! The journal comes on top. fjall rotates the active journal only once it passes 64 MB, and
//! keeps a sealed one until every keyspace has flushed past it (the index's memtable fills
//! slowly; `max_journaling_size` = 64 MiB, fjall's minimum, forces that flush). So **the
//! directory can exceed `max_bytes` by the journal: about 64 MB in steady state, in theory up to
//! ~2 x (64 MB + one log memtable) ≈ 190 MiB when a second journal fills while the first awaits
//! the index flush** (peaks seen: BENCHMARKS.md, "Design measurements"). It is a constant, not a
//! proportion: small beside an L2 of tens of GiB, but a tiny `max_bytes` is dominated by it.
//! Journal files are
//! created sparse at 64 MiB, so their apparent size exceeds the blocks they use; all figures here
//! are blocks (`du`), see [`dir_usage`].
//!
//! The index reserve (1/16) covers 17 bytes + key + fjall's overhead per entry for values of
//! ~500 bytes and up; with smaller values the index can outgrow it (it is in [`L2Stats`]).
//!
//! Changing `max_bytes` or `max_age_secs` empties the L2 at the next open: fjall stores a
//! keyspace's compaction config with it, so the old layout is dropped and a new one created.
//!
//! # Durability
//!
//! [`Persist::Buffered`] (default) hands each write to the OS before returning, so a crash of the
//! node loses nothing, but a power loss can lose the last writes: acceptable for a cache, and it
//! keeps an `fsync` out of every request. [`Persist::SyncEachWrite`] fsyncs every write.
//! `flush_all` always fsyncs, so a flushed value does not come back after a crash.
//!
//! # Write amplification
//!
//! About 2 (BENCHMARKS.md, "Design measurements", from `tests::write_amplification`): every
//! value is written once to the journal and once into a log table, and never again (FIFO deletes
//! tables, it does not rewrite them). The rest is the index (leveled compaction rewrites it
//! several times, but it is ~40 bytes an entry) and per-record headers, which is why small values
//! cost more. A leveled LSM holding the values themselves would rewrite each one at every level
//! it moves through.

mod codec;
mod filter;
mod handle;
mod store;
#[cfg(test)]
mod tests;

pub use handle::AsyncL2;
pub use store::{dir_usage, DirUsage, L2Store};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::model::Version;

/// The smallest `max_bytes` accepted.
pub const MIN_MAX_BYTES: u64 = 4 << 20;

/// One cached item as the L2 stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L2Entry {
    pub value: Bytes,
    /// memcached client flags.
    pub flags: u32,
    /// Absolute expiry in unix seconds; 0 = never. Expired when `expiry <= now`.
    pub expiry: u64,
    pub cas: u64,
    pub version: Version,
}

/// When a write is made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Persist {
    /// Each write reaches the OS before the call returns; fjall fsyncs when it rotates
    /// memtables and journals. Survives a process crash, not a power loss.
    #[default]
    Buffered,
    /// Each write is fsynced (fdatasync) before the call returns.
    SyncEachWrite,
}

/// The time source expiry is checked against, in unix seconds.
#[derive(Clone, Debug, Default)]
pub enum L2Clock {
    /// The system clock.
    #[default]
    System,
    /// A clock that moves only when told to (tests, tools).
    Manual(Arc<AtomicU64>),
}

impl L2Clock {
    pub fn manual(now: u64) -> L2Clock {
        L2Clock::Manual(Arc::new(AtomicU64::new(now)))
    }

    pub fn now(&self) -> u64 {
        match self {
            L2Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            L2Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// Moves a manual clock forward; no effect on the system clock.
    pub fn advance(&self, secs: u64) {
        if let L2Clock::Manual(t) = self {
            t.fetch_add(secs, Ordering::Relaxed);
        }
    }

    /// Whether an entry with this expiry is expired now.
    pub fn expired(&self, expiry: u64) -> bool {
        expired(expiry, self.now())
    }
}

pub(crate) fn expired(expiry: u64, now: u64) -> bool {
    expiry != 0 && expiry <= now
}

/// What an L2 is opened with.
#[derive(Clone, Debug)]
pub struct L2Config {
    /// Directory of the store (`--l2-path`); created if missing.
    pub path: PathBuf,
    /// Bound on the table files, in bytes (`--l2-max-bytes`); see the module doc for what else
    /// the directory holds. At least [`MIN_MAX_BYTES`].
    pub max_bytes: u64,
    pub persist: Persist,
    /// Drop log tables older than this many seconds, whatever their items' expiry (fjall's FIFO
    /// TTL). `None` (default): only size evicts.
    pub max_age_secs: Option<u64>,
    /// fjall block cache, in bytes.
    pub cache_bytes: u64,
    /// fjall background threads (memtable flushes and compactions).
    pub background_threads: usize,
    pub clock: L2Clock,
}

impl L2Config {
    pub fn new(path: impl Into<PathBuf>, max_bytes: u64) -> L2Config {
        L2Config {
            path: path.into(),
            max_bytes,
            persist: Persist::Buffered,
            max_age_secs: None,
            cache_bytes: 32 << 20,
            background_threads: 2,
            clock: L2Clock::System,
        }
    }
}

/// Counters and sizes, for `stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L2Stats {
    /// Blocks used by the whole directory (tables, journals, metadata), as `du` counts them.
    pub dir_bytes: u64,
    /// Journal blocks (part of `dir_bytes`).
    pub journal_bytes: u64,
    /// Table files of the log (values) and of the index.
    pub log_bytes: u64,
    pub index_bytes: u64,
    /// The configured bound on `log_bytes + index_bytes`.
    pub max_bytes: u64,
    /// Index records, an estimate: it counts records of deleted, expired or evicted entries
    /// until compaction drops them.
    pub entries_estimate: u64,
    pub reads: u64,
    pub hits: u64,
    pub misses: u64,
    /// Misses because the entry had expired.
    pub expired: u64,
    /// Misses because FIFO had dropped the entry's value (evictions seen by reads; FIFO drops
    /// whole tables and does not count items).
    pub evicted: u64,
    /// Successful `set`s.
    pub writes: u64,
    /// Key + value bytes of those `set`s.
    pub user_bytes_written: u64,
    pub deletes: u64,
    pub touches: u64,
    pub flushes: u64,
}

/// Errors of the L2. A storage error means the disk or fjall failed; the orchestrator should
/// treat the L2 as unavailable for that request (a miss for reads, an error for writes).
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("l2 storage error: {0}")]
    Storage(#[from] fjall::Error),
    #[error("l2 i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("l2 config: {0}")]
    Config(String),
    /// Empty key, or a key or value beyond what the store can hold.
    #[error("l2: key or value too large, or empty key")]
    Invalid,
    /// The blocking task running the operation panicked or was cancelled.
    #[error("l2 task failed: {0}")]
    Task(String),
}
