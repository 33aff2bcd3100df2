//! Chunking: memcached's item semantics for values of any size (up to 128 MiB) over a raw store
//! whose items are small (memcached: 1 MiB), as a [`Backend`].
//!
//! Every value is an index item under the user's key: an envelope (see `envelope.rs`) followed by
//! the value when it fits one chunk, or by nothing when it is split into chunk items under derived
//! keys. Full chunk items all have one size, chosen to fill one memcached slab class exactly (see
//! [`DEFAULT_CHUNK_ITEM_SIZE`]); the last holds only what is left.
//!
//! # Consistency
//!
//! * Chunks are written first, the index last; the index write (set/add/replace, with memcached's
//!   CAS where the command needs one) decides the outcome, and chunks of a refused write are
//!   deleted. A new value always has a new random token, and its chunk keys derive from it, so
//!   chunks are never rewritten: a reader that finds all the chunks of the index's token, each
//!   carrying that token and its number, has one whole value. Concurrent writers, or a writer
//!   that dies midway, leave a reader the old value, the new value or a miss — never a mix.
//! * After an overwrite the previous value's chunks are deleted (best effort). A `set` reads the
//!   old index alongside its own writes (a small `set` only when the key may hold a chunked
//!   value, see `Hints`), so it may read it before or after its own write: it deletes the old
//!   chunks only when memcached's CAS of that index is lower than the one its own write got,
//!   i.e. that value was written earlier and so is no longer current (memcached's CAS counter is
//!   global and increasing). Chunks nobody cleans up (a writer that died, a race between plain
//!   sets, an index evicted before its chunks) carry the index's TTL and are never read again,
//!   so memcached's LRU reclaims them: they are not a leak.
//! * Commands that change an existing value (touch and gat, cas, append/prepend, incr/decr,
//!   `md I`, an `mg` that wins a recache) read the index and write it back with memcached's CAS
//!   of what they read; when another client got there first they read again.
//! * A chunk found missing (memcached evicted it, or an overwrite deleted it under a reader)
//!   makes the read start over; if the index still names the same value, that value is lost:
//!   the index is deleted (by CAS) and the read is a miss.
//!
//! # Where the semantics differ from memcached (gaps)
//!
//! * `fetched_before` and `idle_secs` read as false and 0 (`mg h`/`l`, `me`): memcached's binary
//!   protocol does not tell them.
//! * `mg u` (no LRU bump) is not honoured: every GET bumps the items in memcached.
//! * Touch, gat and the recache bits rewrite the index item (two round trips where memcached
//!   needs one). memcached's CAS of the index changes; the client's does not (it is the
//!   envelope's), so `gets` + `touch` + `cas` works as on memcached.
//! * A chunked value whose chunks memcached evicted while its index stayed: reads and touches
//!   find out and delete the index, `add` probes the chunks (TOUCH) and replaces it, but a
//!   `delete` answers DELETED where memcached would say NOT_FOUND.
//! * append/prepend rewrite the whole value under a new token (no chunk reuse): O(value size).
//! * TTLs are checked against this node's clock (the envelope) and memcached's (the item); the
//!   two may disagree by a second at the boundary. `flush_all` with a delay runs on memcached's.
//! * An item in memcached without an envelope (written by another client) reads as a miss, and
//!   `add` replaces it.
//!
//! # Large values
//!
//! A chunked value is never gathered: a read hands out its chunks' data where the links' read
//! buffers hold them ([`Value::shared`]), and the reply sends them from there with vectored
//! writes (`crate::out`), so a value is in the node's memory once however it is read. A read of
//! a value this node wrote asks for the chunks together with the index (see `Hints`): one round
//! trip to memcached. Writes copy the value once, into the link's write buffer.

mod chunks;
mod envelope;
mod hints;
mod read;
mod write;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use self::chunks::{Found, Swap, ValueBuf};
use self::envelope::{check_chunk, chunk_header, key_hash, ChunkKeys, Envelope, STALE, TOKEN_SENT};
use self::hints::{Hints, Layout};
use super::raw::{run_windowed, unix_exptime, RawDeleted, RawItem, RawMode, RawStore, RawStored, RawWrite};
use crate::counter::Counter;
use crate::model::{
    item_size_ok, ArithOutcome, ArithReq, Clock, DeleteOutcome, Expiry, ItemView, Mode, ReadOpts, StoreOutcome,
    StoreReq, StoreStats, Value,
};
use crate::model::{Backend, BackendError, Hlc, Result, Version};
use crate::out::SHARE_MIN;

pub use self::envelope::{CHUNK_HEADER_LEN, CHUNK_KEY_LEN, ENV_LEN};

/// What a chunk item costs in memcached besides its data: memcached's item with the chunk key and
/// our chunk header as its only value (see [`riven_memcache::slab::item_size`]). Client flags
/// are 0, so memcached adds no 4-byte flags field.
pub const CHUNK_ITEM_OVERHEAD: usize = riven_memcache::slab::item_size(CHUNK_KEY_LEN, 0, CHUNK_HEADER_LEN);

/// Default size of a whole chunk item: memcached's slab class 33 with its defaults.
///
/// With `-n 48` and `-f 1.25`, class 1 holds 48 + 48 (item header) = 96 bytes; each next class
/// is 1.25 times the previous, rounded up to a multiple of 8: 96, 120, 152, ... 17352 (class
/// 24), ... 103496, **129376** (class 33), 161720 ... up to 512 KiB (`memcached -vv` prints this
/// table). A full chunk item of exactly 129376 bytes fills its slab slot with no slack (8 to a
/// 1 MiB page), and 129376 - [`CHUNK_ITEM_OVERHEAD`] (112) = 129264 data bytes per chunk
/// ([`DEFAULT_CHUNK_SIZE`]).
///
/// Why this class: memcached's cost of a value grows with the items it takes (an item lookup,
/// a reply and a wakeup each), so fewer, larger chunks are cheaper for it and for the node
/// (BENCHMARKS.md, "Design measurements"): a 100 KiB value is one item, a 1 MiB value nine.
/// Immunity to a change in value sizes does not need one small chunk size any more: the slab
/// balancer (`backend::slabs`) keeps memcached's pages where the writes go, whatever classes
/// they are in.
/// The last chunk holds only its data (no padding), so a chunked value costs what memcached
/// would charge for it. Every item stays at or under 512 KiB, so memcached never needs its
/// chained "large item" path at all.
pub const DEFAULT_CHUNK_ITEM_SIZE: usize = 129_376;

/// Default data bytes per chunk (see [`DEFAULT_CHUNK_ITEM_SIZE`]).
pub const DEFAULT_CHUNK_SIZE: usize = DEFAULT_CHUNK_ITEM_SIZE - CHUNK_ITEM_OVERHEAD;

/// Value bytes one chunked write has in flight to memcached at most (a 1 MiB value's chunks go
/// in one window).
const WRITE_WINDOW_BYTES: usize = 2 << 20;

/// How many times a command starts over after losing a race on the index before giving up.
const MAX_ATTEMPTS: usize = 32;

/// How chunking is set up.
#[derive(Clone, Debug)]
pub struct ChunkConfig {
    /// Data bytes per chunk; values up to this size are stored inline in the index item.
    pub chunk_size: usize,
    /// The largest item clients may store, by [`item_size_ok`] (the node's `-I`).
    pub item_size_max: usize,
    /// Requests of one command in flight at once (chunks written or read together).
    pub window: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            chunk_size: DEFAULT_CHUNK_SIZE,
            item_size_max: 1 << 20,
            window: 64,
        }
    }
}

impl ChunkConfig {
    /// The chunk size that makes a chunk item exactly `item_bytes` in memcached (a slab class
    /// size from `memcached -vv`).
    pub fn chunk_size_for_item(item_bytes: usize) -> usize {
        item_bytes.saturating_sub(CHUNK_ITEM_OVERHEAD).max(1)
    }
}

/// Counters of the chunking layer (and memcached-style command counters for `stats`).
#[derive(Default)]
struct Counters {
    cmd_get: Counter,
    get_hits: Counter,
    get_misses: Counter,
    cmd_set: Counter,
    cmd_touch: Counter,
    touch_hits: Counter,
    touch_misses: Counter,
    delete_hits: Counter,
    delete_misses: Counter,
    incr_hits: Counter,
    incr_misses: Counter,
    decr_hits: Counter,
    decr_misses: Counter,
    cas_hits: Counter,
    cas_misses: Counter,
    cas_badval: Counter,
    chunked_writes: Counter,
    chunked_reads: Counter,
    broken_reads: Counter,
    chunks_deleted: Counter,
    races: Counter,
}

fn bump(c: &Counter) {
    c.inc();
}

/// What the chunking layer has done, for `stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkStats {
    /// Values written as chunks.
    pub chunked_writes: u64,
    /// Chunked values read whole.
    pub chunked_reads: u64,
    /// Reads that found a chunk missing or not matching the index.
    pub broken_reads: u64,
    /// Chunks deleted: of overwritten, deleted or lost values, and of refused writes.
    pub chunks_deleted: u64,
    /// Times a command started over because another client changed the index first.
    pub races: u64,
}

/// A store with memcached semantics over a raw store, values split into chunks.
pub struct Chunked<R> {
    raw: R,
    clock: Clock,
    cfg: ChunkConfig,
    /// Versions and client CAS values (see [`Chunked::tick`]).
    hlc: Arc<Hlc>,
    hints: Hints,
    c: Counters,
}

/// An index write: the envelope and the inline value.
fn index_write<'a>(
    mode: RawMode,
    key: &'a [u8],
    env: &'a [u8; ENV_LEN],
    inline: &'a [u8],
    mcas: u64,
    expiry: u32,
) -> RawWrite<'a> {
    RawWrite {
        mode,
        key,
        flags: 0,
        exptime: unix_exptime(i64::from(expiry)),
        cas: mcas,
        value: [env, inline, &[]],
    }
}

/// A refused write as the client sees it.
fn refused(r: RawStored) -> StoreOutcome {
    match r {
        RawStored::Stored { .. } | RawStored::NotStored => StoreOutcome::NotStored,
        RawStored::Exists => StoreOutcome::Exists,
        RawStored::NotFound => StoreOutcome::NotFound,
        RawStored::TooLarge => StoreOutcome::TooLarge,
        RawStored::OutOfMemory => StoreOutcome::OutOfMemory,
    }
}

/// The value as an unsigned decimal, as memcached's incr/decr reads it: leading and trailing
/// whitespace allowed; empty, longer than 64 bytes or anything else is non-numeric.
fn parse_number(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 64 {
        return None;
    }
    let start = v.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits = &v[start..];
    let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
    if end == 0 || !digits[end..].iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

impl<R: RawStore> Chunked<R> {
    pub fn new(raw: R, clock: Clock, cfg: ChunkConfig) -> Chunked<R> {
        let cfg = ChunkConfig {
            chunk_size: cfg.chunk_size.max(1),
            ..cfg
        };
        Chunked {
            raw,
            clock,
            cfg,
            hlc: Arc::new(Hlc::new(0)),
            hints: Hints::new(),
            c: Counters::default(),
        }
    }

    /// The same layer stamping its writes with `hlc`: the node's one version clock, so every tier
    /// orders a key's writes alike.
    pub fn with_versions(mut self, hlc: Arc<Hlc>) -> Chunked<R> {
        self.hlc = hlc;
        self
    }

    pub fn raw(&self) -> &R {
        &self.raw
    }

    /// The clock that turns exptimes into expiries for this backend.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The largest value stored inline in its index item: one request to write, one to read.
    pub fn inline_max(&self) -> usize {
        self.cfg.chunk_size
    }

    pub fn config(&self) -> &ChunkConfig {
        &self.cfg
    }

    /// Command counters in the embedded store's shape (fields memcached keeps and this layer
    /// cannot see, such as item counts and evictions, are 0: read them from memcached).
    pub fn stats(&self) -> StoreStats {
        let g = |c: &Counter| c.get();
        let c = &self.c;
        StoreStats {
            cmd_get: g(&c.cmd_get),
            get_hits: g(&c.get_hits),
            get_misses: g(&c.get_misses),
            cmd_set: g(&c.cmd_set),
            cmd_touch: g(&c.cmd_touch),
            touch_hits: g(&c.touch_hits),
            touch_misses: g(&c.touch_misses),
            delete_hits: g(&c.delete_hits),
            delete_misses: g(&c.delete_misses),
            incr_hits: g(&c.incr_hits),
            incr_misses: g(&c.incr_misses),
            decr_hits: g(&c.decr_hits),
            decr_misses: g(&c.decr_misses),
            cas_hits: g(&c.cas_hits),
            cas_misses: g(&c.cas_misses),
            cas_badval: g(&c.cas_badval),
            chunk_size: self.cfg.chunk_size as u64,
            ..StoreStats::default()
        }
    }

    pub fn chunk_stats(&self) -> ChunkStats {
        let g = |c: &Counter| c.get();
        ChunkStats {
            chunked_writes: g(&self.c.chunked_writes),
            chunked_reads: g(&self.c.chunked_reads),
            broken_reads: g(&self.c.broken_reads),
            chunks_deleted: g(&self.c.chunks_deleted),
            races: g(&self.c.races),
        }
    }

    /// The next hybrid-logical-clock tick: versions and CAS values come from it, so CAS values
    /// grow like memcached's (`ms I` compares them) and survive a node restart without repeating.
    fn tick(&self) -> u64 {
        self.hlc.tick_raw()
    }

    /// An expiry as absolute unix seconds (0 never, 1 already past).
    fn unix_expiry(&self, e: Expiry) -> u32 {
        if e == Expiry::NEVER {
            0
        } else if self.clock.expired(e) {
            1
        } else {
            u32::try_from(self.clock.to_unix(e.0)).unwrap_or(u32::MAX).max(1)
        }
    }

    fn expired(&self, env: &Envelope) -> bool {
        env.expiry != 0 && i64::from(env.expiry) <= self.clock.unix_now()
    }

    /// Remaining TTL in seconds, -1 for never.
    fn ttl(&self, expiry: u32) -> i64 {
        if expiry == 0 {
            -1
        } else {
            (i64::from(expiry) - self.clock.unix_now()).max(0)
        }
    }

    /// The envelope of a new value.
    fn new_envelope(&self, flags: u32, expiry: u32, len: usize) -> Envelope {
        let cs = self.cfg.chunk_size;
        let tick = self.tick();
        Envelope {
            bits: 0,
            flags,
            expiry,
            total_len: len as u32,
            chunk_size: cs as u32,
            chunk_count: if len > cs { len.div_ceil(cs) as u32 } else { 0 },
            version: Version {
                hlc: tick,
                zone: self.hlc.zone(),
            },
            token: rand::random::<u64>(),
            cas: tick,
        }
    }

    fn view<'a>(&self, env: &Envelope, value: Value<'a>, win: bool) -> ItemView<'a> {
        ItemView {
            flags: env.flags,
            cas: env.cas,
            ttl: self.ttl(env.expiry),
            // memcached's binary protocol does not tell these.
            fetched_before: false,
            idle_secs: 0,
            stale: env.bits & STALE != 0,
            win,
            win_taken: !win && env.bits & TOKEN_SENT != 0,
            version: env.version,
            value,
        }
    }
}

impl<R: RawStore> Backend for Chunked<R> {
    async fn read<T, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<T>>
    where
        T: Send,
        F: FnOnce(&ItemView<'_>) -> T + Send,
    {
        let r = match self.read_ready(key, opts, f) {
            Ok(r) => r,
            Err(f) => self.read_impl(key, opts, f).await,
        };
        self.count_read(opts, &r);
        r
    }

    fn read_now<T, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<T>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> T,
    {
        let r = self.read_ready(key, opts, f)?;
        self.count_read(opts, &r);
        Ok(r)
    }

    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        bump(&self.c.cmd_set);
        if !item_size_ok(self.cfg.item_size_max, req.key.len(), req.flags, req.value.len())
            || req.value.len() > u32::MAX as usize
        {
            return Ok(StoreOutcome::TooLarge);
        }
        match req.mode {
            Mode::Append | Mode::Prepend => self.concat(req).await,
            _ => self.put(req).await,
        }
    }

    async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        let r = self.delete_impl(key, cas).await;
        match r {
            Ok(DeleteOutcome::Deleted) => bump(&self.c.delete_hits),
            Ok(DeleteOutcome::NotFound) => bump(&self.c.delete_misses),
            _ => {}
        }
        r
    }

    async fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        self.invalidate_impl(key, cas, expiry).await
    }

    async fn touch(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        bump(&self.c.cmd_touch);
        let r = self.touch_impl(key, expiry).await;
        if let Ok(hit) = r {
            bump(if hit { &self.c.touch_hits } else { &self.c.touch_misses });
        }
        r
    }

    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        let r = self.arith_impl(req).await;
        let (hits, misses) = if req.incr {
            (&self.c.incr_hits, &self.c.incr_misses)
        } else {
            (&self.c.decr_hits, &self.c.decr_misses)
        };
        match r {
            Ok(ArithOutcome::Done { .. }) => bump(hits),
            Ok(ArithOutcome::NotFound) => bump(misses),
            _ => {}
        }
        r
    }

    /// memcached's `flush_all [delay]` passed on: chunks go with their indexes.
    async fn flush_all(&self, delay: i64) -> Result<()> {
        let delay = u32::try_from(delay.max(0)).unwrap_or(u32::MAX);
        self.raw.flush_all(delay).await
    }
}

#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;
