//! Chunking: memcached's item semantics for values of any size (up to 128 MiB) over a raw store
//! whose items are small (memcached: 1 MiB), as a [`Backend`].
//!
//! Every value is an index item under the user's key: an envelope (see `envelope.rs`) followed by
//! the value when it fits one chunk, or by nothing when it is split into chunk items under derived
//! keys. Chunk items all have one size, chosen to fill one memcached slab class exactly (see
//! [`DEFAULT_CHUNK_ITEM_SIZE`]), so memcached's slab allocator only ever sees that size for them.
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
//! * A chunked value is gathered into one buffer before the reply is written (one copy more than
//!   an inline value, which is served straight from the links's read buffer).

mod envelope;

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use self::envelope::{check_chunk, chunk_header, key_hash, ChunkKeys, Envelope, ENV_LEN, STALE, TOKEN_SENT};
use super::raw::{run_windowed, unix_exptime, RawDeleted, RawItem, RawMode, RawStore, RawStored, RawWrite};
use crate::counter::Counter;
use crate::model::{
    item_size_ok, ArithOutcome, ArithReq, Clock, DeleteOutcome, Expiry, ItemView, Mode, ReadOpts, StoreOutcome,
    StoreReq, StoreStats, Value,
};
use crate::model::{Backend, BackendError, Hlc, Result, Version};

pub use self::envelope::{CHUNK_HEADER_LEN, CHUNK_KEY_LEN};

/// What a chunk item costs in memcached besides its data: the item header (48 bytes on 64-bit),
/// the CAS (8), the key and its NUL, the data's `\r\n` (memcached stores it), and our chunk header.
/// Client flags are 0, so memcached adds no 4-byte flags field.
pub const CHUNK_ITEM_OVERHEAD: usize = 48 + 8 + CHUNK_KEY_LEN + 1 + 2 + CHUNK_HEADER_LEN;

/// Default size of a whole chunk item: memcached's slab class 24 with its defaults.
///
/// With `-n 48` and `-f 1.25`, class 1 holds 48 + 48 (item header) = 96 bytes; each next class
/// is 1.25 times the previous, rounded up to a multiple of 8: 96, 120, 152, 192, 240, 304, 384,
/// 480, 600, 752, 944, 1184, 1480, 1856, 2320, 2904, 3632, 4544, 5680, 7104, 8880, 11104,
/// 13880, **17352** (class 24), 21696 ... up to 512 KiB (`memcached -vv` prints this table).
/// A chunk item of exactly 17352 bytes fills its slab slot with no slack, and
/// 17352 - [`CHUNK_ITEM_OVERHEAD`] (112) = 17240 data bytes per chunk ([`DEFAULT_CHUNK_SIZE`]).
///
/// Why this class: the last chunk is padded to full size, so a chunked value wastes half a chunk
/// on average; ~17 KB keeps that small (a 100 KB value takes 6 chunks, 1% slack) while a 100 KB
/// value still needs only 7 requests, pipelined in one burst. Inline values (up to one chunk)
/// and chunked values' small index items stay in classes 1-24, so memcached never needs its
/// chained "large item" path (above 512 KiB) at all.
pub const DEFAULT_CHUNK_ITEM_SIZE: usize = 17352;

/// Default data bytes per chunk (see [`DEFAULT_CHUNK_ITEM_SIZE`]).
pub const DEFAULT_CHUNK_SIZE: usize = DEFAULT_CHUNK_ITEM_SIZE - CHUNK_ITEM_OVERHEAD;

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

/// Keys (by hash) whose current value this node wrote in chunks.
///
/// A plain `set` of a small value would otherwise have to read the old index first, just in case
/// it names chunks to clean up: one more memcached request on the most common write. A node is
/// its memcached's only writer, so what it wrote itself is what is there; a key it does not know
/// as chunked (after a node restart, or written by another client) is overwritten without the
/// read, and the chunks of the value it replaces, if any, are left to memcached's LRU (they
/// are unreachable). Hash collisions only cost a read. Past [`HINTS_MAX`] keys the set stops
/// growing and every small set reads the old index again.
struct Hints {
    shards: Box<[parking_lot::Mutex<HintSet>]>,
    full: AtomicBool,
}

/// Key hashes, used as their own hash: they are well mixed already (see `key_hash`), and
/// hashing them again with std's SipHash cost each small set about 200 instructions.
type HintSet = HashSet<u64, std::hash::BuildHasherDefault<Prehashed>>;

/// The hasher of a [`HintSet`]: a `u64` key is its own hash.
#[derive(Default)]
struct Prehashed(u64);

impl std::hash::Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    // Only `u64`s are hashed here; anything else is folded in, to stay a hasher.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// Most chunked keys remembered (8 bytes each, plus the table's overhead). Each stands for at
/// least one chunk of memcached memory, so this covers 16 GiB of chunked values.
const HINTS_MAX: usize = 1 << 20;
const HINT_SHARDS: usize = 16;

impl Hints {
    fn new() -> Hints {
        Hints {
            shards: (0..HINT_SHARDS)
                .map(|_| parking_lot::Mutex::new(HintSet::default()))
                .collect(),
            full: AtomicBool::new(false),
        }
    }

    fn shard(&self, h: u64) -> &parking_lot::Mutex<HintSet> {
        // Middle bits: the table inside uses the low ones for the bucket and the top seven to
        // tell keys apart, and a shard's keys would share whichever bits picked it.
        &self.shards[(h >> 32) as usize % HINT_SHARDS]
    }

    fn may_be_chunked(&self, h: u64) -> bool {
        self.full.load(Ordering::Relaxed) || self.shard(h).lock().contains(&h)
    }

    fn note(&self, h: u64, chunked: bool) {
        let mut shard = self.shard(h).lock();
        if !chunked {
            shard.remove(&h);
        } else if shard.len() < HINTS_MAX / HINT_SHARDS {
            shard.insert(h);
        } else {
            self.full.store(true, Ordering::Relaxed);
        }
    }
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

/// The index item found under a key.
struct Index {
    /// memcached's CAS of the index item.
    mcas: u64,
    env: Envelope,
    /// The whole item value (envelope, then the inline value).
    item: Bytes,
}

impl Index {
    fn inline(&self) -> &[u8] {
        &self.item[ENV_LEN..]
    }
}

enum Found {
    Live(Index),
    /// No value. `mcas` is that of an item memcached still holds under the key but that does not
    /// count (expired by its envelope, or not an envelope at all): a write may replace it.
    Absent {
        mcas: Option<u64>,
    },
}

/// A store with memcached semantics over a raw store, values split into chunks.
pub struct Chunked<R> {
    raw: R,
    clock: Clock,
    cfg: ChunkConfig,
    /// Padding for last chunks.
    zeros: Box<[u8]>,
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
            zeros: vec![0u8; cfg.chunk_size].into_boxed_slice(),
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

    fn view<'a>(&self, env: &Envelope, value: &'a [u8], win: bool) -> ItemView<'a> {
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
            value: Value::slice(value),
        }
    }

    async fn lookup(&self, key: &[u8]) -> Result<Found> {
        Ok(self.found(self.raw.get(key, None).await?))
    }

    /// What memcached's item under a user's key (`None`: none) holds for the user.
    fn found(&self, item: Option<RawItem>) -> Found {
        let Some(item) = item else {
            return Found::Absent { mcas: None };
        };
        match self.live_envelope(&item.value) {
            Some(env) => Found::Live(Index {
                mcas: item.cas,
                env,
                item: item.value,
            }),
            None => Found::Absent { mcas: Some(item.cas) },
        }
    }

    /// The envelope of an index item's `value`, if it holds a value for the user: an envelope,
    /// not expired, for a value within the item size limit.
    fn live_envelope(&self, value: &[u8]) -> Option<Envelope> {
        Envelope::decode(value).filter(|env| !self.expired(env) && env.total_len as usize <= self.cfg.item_size_max)
    }

    /// Writes the chunks of a new value. `Some` is a refusal to report (memcached out of memory,
    /// say); the chunks already written are deleted before returning.
    async fn write_chunks(&self, key: &[u8], env: &Envelope, value: &[u8]) -> Result<Option<StoreOutcome>> {
        if env.chunk_count == 0 {
            return Ok(None);
        }
        // Boxed, like every chunk loop: the futures of the common case (a small value, one
        // request) stay small, instead of carrying the state of loops they never run.
        Box::pin(self.write_chunks_boxed(key, env, value)).await
    }

    async fn write_chunks_boxed(&self, key: &[u8], env: &Envelope, value: &[u8]) -> Result<Option<StoreOutcome>> {
        let n = env.chunk_count as usize;
        bump(&self.c.chunked_writes);
        let keys = ChunkKeys::new(key, env.token);
        let cs = env.chunk_size as usize;
        let exptime = unix_exptime(i64::from(env.expiry));
        let mut written = vec![false; n];
        let mut failure: Option<Result<Option<StoreOutcome>>> = None;
        run_windowed(
            n,
            self.cfg.window,
            |i| {
                let k = keys.key(i as u32);
                let header = chunk_header(env.token, i as u32);
                let data = &value[i * cs..value.len().min((i + 1) * cs)];
                let pad = &self.zeros[..cs - data.len()];
                async move {
                    let w = RawWrite {
                        mode: RawMode::Set,
                        key: &k,
                        flags: 0,
                        exptime,
                        cas: 0,
                        value: [&header, data, pad],
                    };
                    self.raw.store(w).await
                }
            },
            |i, r| match r {
                Ok(RawStored::Stored { .. }) => {
                    written[i] = true;
                    ControlFlow::Continue(())
                }
                Ok(other) => {
                    failure = Some(Ok(Some(refused(other))));
                    ControlFlow::Break(())
                }
                Err(e) => {
                    failure = Some(Err(e));
                    ControlFlow::Break(())
                }
            },
        )
        .await;
        match failure {
            None => Ok(None),
            Some(f) => {
                self.delete_chunks_where(key, env, |i| written[i]).await;
                f
            }
        }
    }

    /// Deletes the chunks `pick` selects, ignoring failures: a chunk left behind is unreachable
    /// and expires with its value.
    async fn delete_chunks_where(&self, key: &[u8], env: &Envelope, pick: impl Fn(usize) -> bool) {
        let keys = ChunkKeys::new(key, env.token);
        let picked: Vec<u32> = (0..env.chunk_count).filter(|&i| pick(i as usize)).collect();
        run_windowed(
            picked.len(),
            self.cfg.window,
            |j| {
                let k = keys.key(picked[j]);
                async move { self.raw.delete(&k, 0).await }
            },
            |_, r| {
                if r == Ok(RawDeleted::Deleted) {
                    bump(&self.c.chunks_deleted);
                }
                ControlFlow::Continue(())
            },
        )
        .await;
    }

    async fn delete_chunks(&self, key: &[u8], env: &Envelope) {
        if env.chunk_count > 0 {
            Box::pin(self.delete_chunks_where(key, env, |_| true)).await;
        }
    }

    /// Reads every chunk of a value (GAT with `touch`) and checks each against the envelope.
    /// `None` when one is missing or is not that chunk of that value.
    async fn fetch_chunks(&self, key: &[u8], env: &Envelope, touch: Option<u32>) -> Result<Option<Vec<u8>>> {
        let keys = ChunkKeys::new(key, env.token);
        let cs = env.chunk_size as usize;
        let mut out = vec![0u8; env.total_len as usize];
        let mut failure = None;
        let mut broken = false;
        run_windowed(
            env.chunk_count as usize,
            self.cfg.window,
            |i| {
                let k = keys.key(i as u32);
                async move { self.raw.get(&k, touch).await }
            },
            |i, r| match r {
                Ok(Some(item)) => match check_chunk(&item.value, env, i as u32) {
                    Some(data) => {
                        out[i * cs..i * cs + data.len()].copy_from_slice(data);
                        ControlFlow::Continue(())
                    }
                    None => {
                        broken = true;
                        ControlFlow::Break(())
                    }
                },
                Ok(None) => {
                    broken = true;
                    ControlFlow::Break(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            },
        )
        .await;
        if let Some(e) = failure {
            return Err(e);
        }
        if broken {
            bump(&self.c.broken_reads);
            return Ok(None);
        }
        bump(&self.c.chunked_reads);
        Ok(Some(out))
    }

    /// Sets every chunk's exptime; false if one is missing (the value is lost).
    async fn touch_chunks(&self, key: &[u8], env: &Envelope, expiry: u32) -> Result<bool> {
        let keys = ChunkKeys::new(key, env.token);
        let exptime = unix_exptime(i64::from(expiry));
        let mut failure = None;
        let mut all = true;
        run_windowed(
            env.chunk_count as usize,
            self.cfg.window,
            |i| {
                let k = keys.key(i as u32);
                async move { self.raw.touch(&k, exptime).await }
            },
            |_, r| match r {
                Ok(true) => ControlFlow::Continue(()),
                Ok(false) => {
                    all = false;
                    ControlFlow::Break(())
                }
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            },
        )
        .await;
        match failure {
            Some(e) => Err(e),
            None => Ok(all),
        }
    }

    /// A value whose chunks are gone: delete its index (by memcached's CAS, so a newer value is
    /// never removed) and what is left of its chunks.
    async fn drop_lost(&self, key: &[u8], idx: &Index) -> Result<()> {
        if self.raw.delete(key, idx.mcas).await? == RawDeleted::Deleted {
            self.delete_chunks(key, &idx.env).await;
        }
        Ok(())
    }

    /// The whole value of an index: inline, or read from its chunks (`None` if they are lost).
    async fn value_of<'a>(&self, key: &[u8], idx: &'a Index, touch: Option<u32>) -> Result<Option<ValueBuf<'a>>> {
        if !idx.env.is_chunked() {
            return Ok(Some(ValueBuf::Inline(idx.inline())));
        }
        Ok(Box::pin(self.fetch_chunks(key, &idx.env, touch))
            .await?
            .map(ValueBuf::Owned))
    }

    /// Writes an index with memcached's CAS of the one read (`Set` with CAS `mcas`), or with
    /// `Add` when there was none.
    async fn put_index(&self, key: &[u8], env: &Envelope, inline: &[u8], mcas: Option<u64>) -> Result<RawStored> {
        let e = env.encode();
        let mode = if mcas.is_some() { RawMode::Set } else { RawMode::Add };
        self.raw
            .store(index_write(mode, key, &e, inline, mcas.unwrap_or(0), env.expiry))
            .await
    }

    /// Publishes `value` under `env` in place of the value `old` read: chunks first, then the
    /// index with memcached's CAS of `old`'s. On success `old`'s chunks are deleted; when the
    /// index changed meanwhile (or memcached refused) the new chunks are.
    async fn swap_value(&self, key: &[u8], old: &Index, env: &Envelope, value: &[u8]) -> Result<Swap> {
        if let Some(no) = self.write_chunks(key, env, value).await? {
            return Ok(Swap::Refused(no));
        }
        let inline: &[u8] = if env.is_chunked() { &[] } else { value };
        match self.put_index(key, env, inline, Some(old.mcas)).await? {
            RawStored::Stored { .. } => {
                self.note_written(key, env);
                if old.env.is_chunked() {
                    self.delete_chunks(key, &old.env).await;
                }
                Ok(Swap::Done)
            }
            RawStored::Exists | RawStored::NotFound => {
                bump(&self.c.races);
                self.delete_chunks(key, env).await;
                Ok(Swap::Lost)
            }
            other => {
                self.delete_chunks(key, env).await;
                Ok(Swap::Refused(refused(other)))
            }
        }
    }

    /// Remembers whether the value just written under `key` is chunked (see [`Hints`]).
    fn note_written(&self, key: &[u8], env: &Envelope) {
        self.hints.note(key_hash(key), env.is_chunked());
    }

    /// `env` reshaped for a new value of `len` bytes: a new token, version and CAS.
    fn renew(&self, env: &Envelope, len: usize) -> Envelope {
        Envelope {
            bits: env.bits,
            ..self.new_envelope(env.flags, env.expiry, len)
        }
    }

    /// Counts a read that ended with `r`, for `stats`.
    fn count_read<T>(&self, opts: &ReadOpts, r: &Result<Option<T>>) {
        bump(&self.c.cmd_get);
        if opts.touch.is_some() {
            bump(&self.c.cmd_touch);
        }
        if let Ok(hit) = r {
            bump(if hit.is_some() {
                &self.c.get_hits
            } else {
                &self.c.get_misses
            });
            if opts.touch.is_some() {
                bump(if hit.is_some() {
                    &self.c.touch_hits
                } else {
                    &self.c.touch_misses
                });
            }
        }
    }

    /// A plain read (no touch, recache check, vivify or peek) whose GET was sent ahead and has
    /// been answered (see `RawStore::use_ready`), answered here, in the reply, when that is all
    /// it takes: a miss, or a live value held inline that is not stale, so nothing is to be
    /// recorded. This is what `read_impl` does for such a read, in one call instead of a chain
    /// of futures: over memcached at pipeline depth 16 most reads are these. Otherwise `f` back,
    /// and the reply stays for `read_impl`'s GET (so a write later in the same burst cannot
    /// slip in front of the read).
    fn read_ready<T, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<T>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> T,
    {
        let plain = opts.touch.is_none() && opts.vivify.is_none() && opts.recache_below.is_none() && !opts.peek;
        if !plain {
            return Err(f);
        }
        let mut f = Some(f);
        let done = self.raw.use_ready(key, |item| match item {
            Err(e) => Some(Err(e)),
            Ok(None) => Some(Ok(None)),
            Ok(Some(item)) => match self.live_envelope(item.value) {
                // Anything else but a miss needs more than this reply: `read_impl`.
                Some(env) if env.is_chunked() || env.bits & STALE != 0 => None,
                Some(env) => {
                    let f = f.take()?;
                    Some(Ok(Some(f(&self.view(&env, &item.value[ENV_LEN..], false)))))
                }
                None => Some(Ok(None)),
            },
        });
        match (done, f) {
            (Some(r), _) => Ok(r),
            (None, Some(f)) => Err(f),
            // `f` is only taken on the way to `Some`.
            (None, None) => Ok(Err(BackendError::failed("read lost its reply"))),
        }
    }

    /// A read.
    async fn read_impl<T, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<T>>
    where
        F: FnOnce(&ItemView<'_>) -> T,
    {
        let touch = opts.touch.map(|e| self.unix_expiry(e));
        for _ in 0..MAX_ATTEMPTS {
            let idx = match self.lookup(key).await? {
                Found::Live(idx) => idx,
                Found::Absent { mcas } => {
                    let Some(vivify) = opts.vivify else {
                        return Ok(None);
                    };
                    // mg N: an empty stub whose creator wins the right to recache it.
                    let mut env = self.new_envelope(0, self.unix_expiry(vivify), 0);
                    env.bits = TOKEN_SENT;
                    match self.put_index(key, &env, &[], mcas).await? {
                        RawStored::Stored { .. } => return Ok(Some(f(&self.view(&env, &[], true)))),
                        RawStored::TooLarge | RawStored::OutOfMemory => return Ok(None),
                        // Created by someone else meanwhile: read theirs.
                        _ => {
                            bump(&self.c.races);
                            continue;
                        }
                    }
                }
            };
            // The touch, and the recache rules on the expiry before or after it (the request's
            // flag order), as the embedded store.
            let mut env = idx.env;
            if let Some(t) = touch {
                env.expiry = t;
            }
            // A win handed out by a request before this one in its pipelined burst: this one's
            // GET was sent before that win was recorded (see `RawStore::burst_mark`), so it read
            // the very item the winner read (same memcached CAS), without the record.
            // Only a stale value or a recache check can win: other reads hash nothing here.
            let may_win = env.bits & STALE != 0 || opts.recache_below.is_some();
            let mark = may_win.then(|| (key_hash(key), idx.mcas));
            let won_before = mark.is_some_and(|m| env.bits & TOKEN_SENT == 0 && self.raw.burst_marked(m));
            let mut win = false;
            // A peek (`me`) hands out no token.
            if env.bits & TOKEN_SENT == 0 && !won_before && !opts.peek {
                if let Some(below) = opts.recache_below {
                    let expiry = if opts.recache_before_touch {
                        idx.env.expiry
                    } else {
                        env.expiry
                    };
                    if expiry != 0 && self.ttl(expiry) < i64::from(below) {
                        win = true;
                    }
                }
                if env.bits & STALE != 0 {
                    win = true;
                }
            }
            if win {
                env.bits |= TOKEN_SENT;
                // A win needs `may_win`: the mark is there.
                if let Some(m) = mark {
                    self.raw.burst_mark(m);
                }
            }
            // With a touch, chunks are read with GAT so they live as long as the index will.
            let Some(value) = self
                .value_of(key, &idx, touch.map(|t| unix_exptime(i64::from(t))))
                .await?
            else {
                self.drop_lost(key, &idx).await?;
                continue;
            };
            if env != idx.env {
                // Record the touch or the win.
                match self.put_index(key, &env, idx.inline(), Some(idx.mcas)).await? {
                    RawStored::Stored { .. } => {}
                    RawStored::Exists | RawStored::NotFound => {
                        bump(&self.c.races);
                        // The same value changed meanwhile (another reader's touch or win):
                        // read again, so one reader only ever wins. A new value (or none) means
                        // this read came before that write: answer what it read. Retrying would
                        // answer with a value written after this request; over memcached that
                        // can be a write pipelined behind this read, sent ahead of it (`conn`).
                        let same =
                            matches!(self.lookup(key).await?, Found::Live(now) if now.env.token == idx.env.token);
                        if same {
                            continue;
                        }
                    }
                    _ => return Err(BackendError::failed("memcached refused an index update")),
                }
            }
            let mut shown = env;
            if won_before {
                shown.bits |= TOKEN_SENT;
            }
            let mut view = self.view(&shown, value.as_slice(), win);
            view.ttl = self.ttl(idx.env.expiry);
            return Ok(Some(f(&view)));
        }
        // Writers keep replacing the value under this reader: a miss is a valid answer.
        Ok(None)
    }

    /// set / add / replace, with or without CAS.
    async fn put(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        let key = req.key;
        let env = self.new_envelope(req.flags, self.unix_expiry(req.expiry), req.value.len());
        let inline: &[u8] = if env.is_chunked() { &[] } else { req.value };
        match (req.mode, req.cas) {
            (Mode::Add, _) => self.add(req, &env, inline).await,
            (_, None) => {
                // The old index is read alongside the writes (and requested first) only to find
                // the chunks this write makes garbage: for a small value, only if the key may
                // hold a chunked one.
                let look = env.is_chunked() || self.hints.may_be_chunked(key_hash(key));
                let mode = if req.mode == Mode::Replace {
                    RawMode::Replace
                } else {
                    RawMode::Set
                };
                let e = env.encode();
                let write = async {
                    if let Some(no) = self.write_chunks(key, &env, req.value).await? {
                        return Ok(Err(no));
                    }
                    Ok(Ok(self
                        .raw
                        .store(index_write(mode, key, &e, inline, 0, env.expiry))
                        .await?))
                };
                let lookup = async {
                    match look {
                        true => Some(self.lookup(key).await),
                        false => None,
                    }
                };
                let (old, written) = tokio::join!(lookup, write);
                match written? {
                    Err(no) => Ok(no),
                    Ok(RawStored::Stored { cas: mcas }) => {
                        self.note_written(key, &env);
                        if let Some(Ok(Found::Live(old))) = old {
                            // Lower CAS: written before ours, so it is not the current value.
                            if old.env.is_chunked() && old.mcas < mcas && old.env.token != env.token {
                                self.delete_chunks(key, &old.env).await;
                            }
                        }
                        Ok(StoreOutcome::Stored { cas: env.cas })
                    }
                    Ok(other) => {
                        self.delete_chunks(key, &env).await;
                        Ok(refused(other))
                    }
                }
            }
            (_, Some(cas)) => {
                let (mut found, written) = tokio::join!(self.lookup(key), self.write_chunks(key, &env, req.value));
                if let Some(no) = written? {
                    return Ok(no);
                }
                // The exptime the chunks have now (an `ms I` result takes the old value's).
                let mut chunk_expiry = env.expiry;
                for _ in 0..MAX_ATTEMPTS {
                    let old = match found? {
                        Found::Live(old) => old,
                        Found::Absent { .. } => {
                            bump(&self.c.cas_misses);
                            self.delete_chunks(key, &env).await;
                            return Ok(StoreOutcome::NotFound);
                        }
                    };
                    let mut this = env;
                    if cas != old.env.cas {
                        if !(req.invalidate && cas < old.env.cas) {
                            bump(&self.c.cas_badval);
                            self.delete_chunks(key, &env).await;
                            return Ok(StoreOutcome::Exists);
                        }
                        // ms I: an older CAS still writes, but the result is stale and keeps the
                        // old TTL, so readers know to recache it.
                        this.expiry = old.env.expiry;
                        this.bits = STALE | (old.env.bits & TOKEN_SENT);
                    }
                    if this.is_chunked() && this.expiry != chunk_expiry {
                        if !self.touch_chunks(key, &this, this.expiry).await? {
                            self.delete_chunks(key, &env).await;
                            return Ok(StoreOutcome::NotStored);
                        }
                        chunk_expiry = this.expiry;
                    }
                    match self.put_index(key, &this, inline, Some(old.mcas)).await? {
                        RawStored::Stored { .. } => {
                            bump(&self.c.cas_hits);
                            self.note_written(key, &this);
                            if old.env.is_chunked() {
                                self.delete_chunks(key, &old.env).await;
                            }
                            return Ok(StoreOutcome::Stored { cas: this.cas });
                        }
                        // The index changed since we read it (maybe only a touch): check again.
                        RawStored::Exists | RawStored::NotFound => {
                            bump(&self.c.races);
                            found = self.lookup(key).await;
                        }
                        other => {
                            self.delete_chunks(key, &env).await;
                            return Ok(refused(other));
                        }
                    }
                }
                self.delete_chunks(key, &env).await;
                Err(BackendError::failed("too much contention on the key"))
            }
        }
    }

    /// add: memcached's ADD on the index decides. An index that does not count (expired by its
    /// envelope, foreign, or a chunked value whose chunks are gone) is replaced by CAS.
    async fn add(&self, req: &StoreReq<'_>, env: &Envelope, inline: &[u8]) -> Result<StoreOutcome> {
        let key = req.key;
        if let Some(no) = self.write_chunks(key, env, req.value).await? {
            return Ok(no);
        }
        let mut mcas = None;
        // A chunked value found lost, whose index this add replaces.
        let mut lost = None;
        for _ in 0..MAX_ATTEMPTS {
            match self.put_index(key, env, inline, mcas).await? {
                RawStored::Stored { .. } => {
                    self.note_written(key, env);
                    if let Some(lost) = lost {
                        self.delete_chunks(key, &lost).await;
                    }
                    return Ok(StoreOutcome::Stored { cas: env.cas });
                }
                RawStored::NotStored | RawStored::Exists | RawStored::NotFound => {}
                other => {
                    self.delete_chunks(key, env).await;
                    return Ok(refused(other));
                }
            }
            mcas = match self.lookup(key).await? {
                Found::Absent { mcas } => mcas,
                // TOUCH with the exptime they have: asks whether the chunks are all there
                // without moving their data.
                Found::Live(old)
                    if old.env.is_chunked() && !self.touch_chunks(key, &old.env, old.env.expiry).await? =>
                {
                    lost = Some(old.env);
                    Some(old.mcas)
                }
                Found::Live(_) => {
                    self.delete_chunks(key, env).await;
                    return Ok(StoreOutcome::NotStored);
                }
            };
            bump(&self.c.races);
        }
        self.delete_chunks(key, env).await;
        Err(BackendError::failed("too much contention on the key"))
    }

    /// append / prepend: read the whole value, write the combined one under a new token, and
    /// publish it with memcached's CAS of the index read; start over if it changed meanwhile.
    /// memcached keeps the existing item's flags and expiry.
    async fn concat(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        let key = req.key;
        for _ in 0..MAX_ATTEMPTS {
            let Found::Live(old) = self.lookup(key).await? else {
                return Ok(StoreOutcome::NotStored);
            };
            if req.cas.is_some_and(|c| c != old.env.cas) {
                bump(&self.c.cas_badval);
                return Ok(StoreOutcome::Exists);
            }
            let Some(old_value) = self.value_of(key, &old, None).await? else {
                self.drop_lost(key, &old).await?;
                continue;
            };
            let old_value = old_value.as_slice();
            let total = old_value.len() + req.value.len();
            if !item_size_ok(self.cfg.item_size_max, key.len(), old.env.flags, total) {
                return Ok(StoreOutcome::TooLarge);
            }
            let mut value = Vec::with_capacity(total);
            let (first, second) = match req.mode {
                Mode::Prepend => (req.value, old_value),
                _ => (old_value, req.value),
            };
            value.extend_from_slice(first);
            value.extend_from_slice(second);
            // A new item in memcached: the stale/win bits go.
            let env = self.new_envelope(old.env.flags, old.env.expiry, total);
            match self.swap_value(key, &old, &env, &value).await? {
                Swap::Done => return Ok(StoreOutcome::Stored { cas: env.cas }),
                Swap::Lost => {}
                Swap::Refused(no) => return Ok(no),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    async fn delete_impl(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        for _ in 0..MAX_ATTEMPTS {
            let idx = match self.lookup(key).await? {
                Found::Live(idx) => idx,
                Found::Absent { mcas } => {
                    // Nothing to report, but clear what does not count so it cannot block an add.
                    if let Some(m) = mcas {
                        let _ = self.raw.delete(key, m).await;
                    }
                    return Ok(DeleteOutcome::NotFound);
                }
            };
            if cas.is_some_and(|c| c != idx.env.cas) {
                return Ok(DeleteOutcome::Exists);
            }
            // The index first: from then on no reader finds the chunks.
            match self.raw.delete(key, idx.mcas).await? {
                RawDeleted::Deleted => {
                    self.hints.note(key_hash(key), false);
                    self.delete_chunks(key, &idx.env).await;
                    return Ok(DeleteOutcome::Deleted);
                }
                _ => bump(&self.c.races),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    /// md I: mark stale with a new CAS (and optionally a new expiry), clearing the recache token.
    async fn invalidate_impl(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        let expiry = expiry.map(|e| self.unix_expiry(e));
        for _ in 0..MAX_ATTEMPTS {
            let Found::Live(idx) = self.lookup(key).await? else {
                return Ok(DeleteOutcome::NotFound);
            };
            if cas.is_some_and(|c| c != idx.env.cas) {
                return Ok(DeleteOutcome::Exists);
            }
            let mut env = idx.env;
            env.bits = (env.bits | STALE) & !TOKEN_SENT;
            env.cas = self.tick();
            if let Some(e) = expiry {
                env.expiry = e;
                if env.is_chunked() && e != idx.env.expiry && !self.touch_chunks(key, &env, e).await? {
                    self.drop_lost(key, &idx).await?;
                    continue;
                }
            }
            match self.put_index(key, &env, idx.inline(), Some(idx.mcas)).await? {
                RawStored::Stored { .. } => return Ok(DeleteOutcome::Deleted),
                RawStored::Exists | RawStored::NotFound => bump(&self.c.races),
                _ => return Err(BackendError::failed("memcached refused an index update")),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    /// touch: the chunks first (so they never expire before the index), then the index.
    async fn touch_impl(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        let expiry = self.unix_expiry(expiry);
        for _ in 0..MAX_ATTEMPTS {
            let Found::Live(idx) = self.lookup(key).await? else {
                return Ok(false);
            };
            if idx.env.is_chunked() && !self.touch_chunks(key, &idx.env, expiry).await? {
                self.drop_lost(key, &idx).await?;
                continue;
            }
            if idx.env.expiry == expiry {
                return Ok(true);
            }
            let env = Envelope { expiry, ..idx.env };
            match self.put_index(key, &env, idx.inline(), Some(idx.mcas)).await? {
                RawStored::Stored { .. } => return Ok(true),
                RawStored::Exists | RawStored::NotFound => bump(&self.c.races),
                _ => return Err(BackendError::failed("memcached refused an index update")),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }

    /// incr/decr on an inline value: incr wraps at 2^64, decr stops at 0; a result shorter than
    /// the value is padded with spaces to the same length, as memcached does in place.
    async fn arith_impl(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        let key = req.key;
        let mut digits = itoa::Buffer::new();
        for _ in 0..MAX_ATTEMPTS {
            let idx = match self.lookup(key).await? {
                Found::Live(idx) => idx,
                Found::Absent { mcas } => {
                    let Some((initial, expiry)) = req.vivify else {
                        return Ok(ArithOutcome::NotFound);
                    };
                    let text = digits.format(initial).as_bytes();
                    let env = self.new_envelope(0, self.unix_expiry(expiry), text.len());
                    match self.put_index(key, &env, text, mcas).await? {
                        RawStored::Stored { .. } => {
                            return Ok(ArithOutcome::Done {
                                value: initial,
                                cas: env.cas,
                                ttl: self.ttl(env.expiry),
                                created: true,
                            })
                        }
                        RawStored::TooLarge | RawStored::OutOfMemory => return Ok(ArithOutcome::OutOfMemory),
                        // Created meanwhile: apply the delta to that one.
                        _ => {
                            bump(&self.c.races);
                            continue;
                        }
                    }
                }
            };
            if req.cas.is_some_and(|c| c != idx.env.cas) {
                return Ok(ArithOutcome::Exists);
            }
            // memcached reads at most a 64-byte number; anything longer is not one, and is not
            // worth fetching.
            if idx.env.total_len > 64 {
                return Ok(ArithOutcome::NonNumeric);
            }
            let Some(old_value) = self.value_of(key, &idx, None).await? else {
                self.drop_lost(key, &idx).await?;
                continue;
            };
            let Some(current) = parse_number(old_value.as_slice()) else {
                return Ok(ArithOutcome::NonNumeric);
            };
            let old_len = old_value.as_slice().len();
            let value = if req.incr {
                current.wrapping_add(req.delta)
            } else {
                current.saturating_sub(req.delta)
            };
            let text = digits.format(value).as_bytes();
            let mut padded = [b' '; 64];
            let (new_value, bits): (&[u8], u8) = if text.len() <= old_len {
                padded[..text.len()].copy_from_slice(text);
                (&padded[..old_len], idx.env.bits)
            } else {
                // A longer number is a new item in memcached: the stale/win bits go.
                (text, 0)
            };
            let mut env = self.renew(&idx.env, new_value.len());
            env.bits = bits;
            if let Some(t) = req.touch {
                env.expiry = self.unix_expiry(t);
            }
            match self.swap_value(key, &idx, &env, new_value).await? {
                Swap::Done => {
                    return Ok(ArithOutcome::Done {
                        value,
                        cas: env.cas,
                        ttl: self.ttl(env.expiry),
                        created: false,
                    })
                }
                Swap::Lost => {}
                Swap::Refused(StoreOutcome::NotStored) => return Ok(ArithOutcome::NotStored),
                Swap::Refused(_) => return Ok(ArithOutcome::OutOfMemory),
            }
        }
        Err(BackendError::failed("too much contention on the key"))
    }
}

/// How publishing a value in place of another went.
enum Swap {
    Done,
    /// The index changed since it was read: start over.
    Lost,
    Refused(StoreOutcome),
}

/// A whole value: borrowed from the index item, or gathered from chunks.
enum ValueBuf<'a> {
    Inline(&'a [u8]),
    Owned(Vec<u8>),
}

impl ValueBuf<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            ValueBuf::Inline(s) => s,
            ValueBuf::Owned(v) => v,
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
