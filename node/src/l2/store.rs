//! [`L2Store`]: the synchronous L2 over fjall (design in the module doc, `l2/mod.rs`).

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use fjall::compaction::filter::Factory;
use fjall::compaction::Fifo;
use fjall::config::{CompressionPolicy, FilterPolicy};
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use parking_lot::{Mutex, RwLock};

use super::codec::{self, IndexRecord, LogMeta};
use super::filter::{IndexFilterFactory, Shared};
use super::{expired, L2Config, L2Entry, L2Error, L2Stats, Persist, MIN_MAX_BYTES};

/// fjall's smallest journal budget; also the size at which it rotates the active journal.
const JOURNAL_BUDGET: u64 = 64 << 20;

/// Number of per-key locks that make `touch`/`delete` (read, then write) atomic with respect to
/// other writes of the same key.
const STRIPES: usize = 256;

/// How often (in appends) the eviction floor is refreshed from the log.
const FLOOR_REFRESH_EVERY: u64 = 256;

/// How long a writer waits, at most, for fjall's background work (see `L2Store::backpressure`).
const BACKPRESSURE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Sizes derived from `max_bytes`. Part of the on-disk layout: fjall stores a keyspace's
/// compaction config with it, so they are fixed when the keyspaces are created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Memtable of the log, and so the size of each log table, and the step in which FIFO evicts.
    pub log_memtable: u64,
    pub index_memtable: u64,
    /// FIFO limit on the log's tables.
    pub log_limit: u64,
    /// Memtables (active and sealed, both keyspaces) beyond which writers wait for a flush.
    pub write_buffer_cap: u64,
}

impl Layout {
    /// The log's FIFO limit is `max_bytes` less a sixteenth for the index and four log tables for
    /// files that are on disk but not (or no longer) counted by FIFO: the table a flush is
    /// writing; a table flushed, before the FIFO pass that follows it (writers wait for that pass
    /// beyond one table, see `backpressure`); and tables FIFO dropped, whose files fjall unlinks
    /// only once no older version of the tree refers to them (at the next version GC, typically
    /// the next memtable rotation). Measured peaks are in the module doc.
    pub fn new(max_bytes: u64) -> Layout {
        let log_memtable = (max_bytes / 32).clamp(256 << 10, 32 << 20);
        let index_memtable = (max_bytes / 64).clamp(256 << 10, 16 << 20);
        let index_reserve = max_bytes / 16;
        Layout {
            log_memtable,
            index_memtable,
            log_limit: max_bytes.saturating_sub(4 * log_memtable + index_reserve),
            write_buffer_cap: 2 * log_memtable + index_memtable,
        }
    }
}

#[derive(Default)]
struct Counters {
    reads: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    writes: AtomicU64,
    user_bytes_written: AtomicU64,
    deletes: AtomicU64,
    touches: AtomicU64,
    flushes: AtomicU64,
}

/// Why a live-looking index record does not give a hit.
enum Lookup {
    Hit(IndexRecord, fjall::Slice),
    /// No index record, or an unreadable one, or a dangling one.
    Absent,
    Expired,
    Evicted,
}

/// The on-disk L2, synchronous. Every method blocks on disk I/O: call it from a blocking context
/// (the orchestrator uses [`super::AsyncL2`]).
pub struct L2Store {
    db: Database,
    log: Keyspace,
    index: Keyspace,
    shared: Arc<Shared>,
    /// Next log sequence number. Held from taking a number until its batch is committed, so log
    /// keys enter the memtables in increasing order (see the module doc: FIFO needs it).
    next_seq: Mutex<u64>,
    /// `flush_all` takes it exclusively, every mutation shared: a flush never interleaves with
    /// half of a write.
    gate: RwLock<()>,
    stripes: Box<[Mutex<()>]>,
    stripe_hasher: std::hash::RandomState,
    persist: Persist,
    max_bytes: u64,
    layout: Layout,
    path: std::path::PathBuf,
    counters: Counters,
}

impl L2Store {
    /// Opens (or creates) the store in `cfg.path`. Data written before a restart is there again;
    /// if `max_bytes` or `max_age_secs` changed, the old contents are dropped (module doc).
    pub fn open(cfg: L2Config) -> Result<L2Store, L2Error> {
        if cfg.max_bytes < MIN_MAX_BYTES {
            return Err(L2Error::Config(format!(
                "max_bytes {} is below the minimum {MIN_MAX_BYTES}",
                cfg.max_bytes
            )));
        }
        std::fs::create_dir_all(&cfg.path)?;
        let layout = Layout::new(cfg.max_bytes);
        // The config fjall persists per keyspace are in the names, so a change of config
        // opens fresh keyspaces instead of silently keeping the old limits. Bump "v1" when the
        // record formats' meaning or `Layout`'s formulas change.
        let tag = format!("v1-{}-{}", cfg.max_bytes, cfg.max_age_secs.unwrap_or(0));
        let log_name = format!("log-{tag}");
        let index_name = format!("index-{tag}");

        let shared = Arc::new(Shared {
            clock: cfg.clock.clone(),
            floor: AtomicU64::new(0),
        });
        let factory: Arc<dyn Factory> = Arc::new(IndexFilterFactory(shared.clone()));
        let filter_for = index_name.clone();
        let db = Database::builder(&cfg.path)
            .cache_size(cfg.cache_bytes)
            .worker_threads(cfg.background_threads.max(1))
            .max_journaling_size(JOURNAL_BUDGET)
            .with_compaction_filter_factories(Arc::new(move |name: &str| {
                (name == filter_for).then(|| factory.clone())
            }))
            .open()?;

        for stale in db.list_keyspace_names() {
            let stale: &str = &stale;
            if stale != log_name && stale != index_name {
                tracing::warn!(keyspace = stale, "l2: config changed, dropping the old contents");
                let handle = db.keyspace(stale, KeyspaceCreateOptions::default)?;
                db.delete_keyspace(handle)?;
            }
        }

        let log = db.keyspace(&log_name, || {
            KeyspaceCreateOptions::default()
                .compaction_strategy(Arc::new(Fifo::new(layout.log_limit, cfg.max_age_secs)))
                .max_memtable_size(layout.log_memtable)
                // FIFO keeps everything in level 0, which fjall leaves uncompressed by default;
                // cached values (JSON, text) often compress well, and LZ4 is cheap.
                .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
                // A log lookup goes to the one table whose key range holds the sequence number:
                // a filter would only cost space.
                .filter_policy(FilterPolicy::disabled())
                .expect_point_read_hits(true)
        })?;
        let index = db.keyspace(&index_name, || {
            KeyspaceCreateOptions::default().max_memtable_size(layout.index_memtable)
        })?;

        let next = match log.last_key_value() {
            Some(guard) => codec::seq_of_log_key(&guard.key()?).map_or(0, |s| s + 1),
            None => 0,
        };
        let store = L2Store {
            db,
            log,
            index,
            shared,
            next_seq: Mutex::new(next),
            gate: RwLock::new(()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stripe_hasher: std::hash::RandomState::new(),
            persist: cfg.persist,
            max_bytes: cfg.max_bytes,
            layout,
            path: cfg.path,
            counters: Counters::default(),
        };
        store.refresh_floor(next)?;
        Ok(store)
    }

    /// The entry under `key`, if present and not expired.
    pub fn get(&self, key: &[u8]) -> Result<Option<L2Entry>, L2Error> {
        let c = &self.counters;
        c.reads.fetch_add(1, Relaxed);
        let found = if key_ok(key) { self.lookup(key)? } else { Lookup::Absent };
        let (idx, raw) = match found {
            Lookup::Hit(idx, raw) => (idx, raw),
            other => {
                match other {
                    Lookup::Expired => c.expired.fetch_add(1, Relaxed),
                    Lookup::Evicted => c.evicted.fetch_add(1, Relaxed),
                    _ => 0,
                };
                c.misses.fetch_add(1, Relaxed);
                return Ok(None);
            }
        };
        // `lookup` decoded it already; decode again to borrow from `raw`.
        let Some(rec) = codec::decode_log(&raw) else {
            c.misses.fetch_add(1, Relaxed);
            return Ok(None);
        };
        c.hits.fetch_add(1, Relaxed);
        Ok(Some(L2Entry {
            // Copied out: a fjall slice keeps its whole block alive (fjall's README).
            value: Bytes::copy_from_slice(rec.value),
            flags: rec.meta.flags,
            expiry: idx.expiry,
            cas: rec.meta.cas,
            version: rec.meta.version,
        }))
    }

    /// Stores `entry` under `key`, replacing any entry. An entry already expired by the store's
    /// clock is not written, and removes the key (memcached: a negative TTL expires at once).
    pub fn set(&self, key: &[u8], entry: &L2Entry) -> Result<(), L2Error> {
        if !key_ok(key) || entry.value.len() > u32::MAX as usize - codec::LOG_HEADER_LEN - key.len() {
            return Err(L2Error::Invalid);
        }
        self.backpressure();
        let _gate = self.gate.read();
        let _stripe = self.stripe(key).lock();
        if expired(entry.expiry, self.shared.clock.now()) {
            self.index.remove(key)?;
            return self.sync();
        }
        let meta = LogMeta {
            flags: entry.flags,
            cas: entry.cas,
            version: entry.version,
        };
        // Encoded before taking the append lock, which serializes all writers.
        let record = codec::encode_log(key, &entry.value, &meta);
        let seq = {
            let mut next = self.next_seq.lock();
            let seq = *next;
            // Taken even if the commit fails: a failed commit poisons fjall, and a number is
            // never handed out twice.
            *next += 1;
            let mut batch = self.db.batch().durability(Some(self.persist_mode()));
            batch.insert(&self.log, codec::log_key(seq), record);
            let idx = codec::encode_index(&IndexRecord {
                seq,
                expiry: entry.expiry,
            });
            batch.insert(&self.index, key, idx);
            batch.commit()?;
            seq
        };
        let c = &self.counters;
        c.writes.fetch_add(1, Relaxed);
        c.user_bytes_written
            .fetch_add((key.len() + entry.value.len()) as u64, Relaxed);
        if seq % FLOOR_REFRESH_EVERY == 0 {
            self.refresh_floor(seq)?;
        }
        Ok(())
    }

    /// Removes `key`; `true` if a live (present, unexpired) entry was removed.
    pub fn delete(&self, key: &[u8]) -> Result<bool, L2Error> {
        if !key_ok(key) {
            return Ok(false);
        }
        let _gate = self.gate.read();
        let _stripe = self.stripe(key).lock();
        let found = self.lookup(key)?;
        if let Lookup::Absent = found {
            return Ok(false);
        }
        // Also for an expired or evicted record: removing it now saves the compaction the work.
        self.index.remove(key)?;
        self.sync()?;
        let live = matches!(found, Lookup::Hit(..));
        if live {
            self.counters.deletes.fetch_add(1, Relaxed);
        }
        Ok(live)
    }

    /// Sets a live entry's expiry (absolute unix seconds, 0 = never); `true` if the key was live.
    /// An expiry already past expires the entry at once.
    pub fn touch(&self, key: &[u8], expiry: u64) -> Result<bool, L2Error> {
        if !key_ok(key) {
            return Ok(false);
        }
        let _gate = self.gate.read();
        let _stripe = self.stripe(key).lock();
        let Lookup::Hit(idx, _) = self.lookup(key)? else {
            return Ok(false);
        };
        if expired(expiry, self.shared.clock.now()) {
            self.index.remove(key)?;
        } else {
            // Only the index is rewritten: the value keeps its place in the log.
            self.index
                .insert(key, codec::encode_index(&IndexRecord { seq: idx.seq, expiry }))?;
        }
        self.sync()?;
        self.counters.touches.fetch_add(1, Relaxed);
        Ok(true)
    }

    /// Drops every entry. Cheap whatever the size: fjall clears a keyspace by dropping its table
    /// list in one step, and the files go with it. Durable before it returns.
    pub fn flush_all(&self) -> Result<(), L2Error> {
        let _gate = self.gate.write();
        let next = *self.next_seq.lock();
        // Index first: from here on every read misses, whatever the log still holds.
        self.index.clear()?;
        self.log.clear()?;
        self.shared.raise_floor(next);
        self.db.persist(PersistMode::SyncAll)?;
        self.counters.flushes.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Counters and sizes. Walks the directory for the block counts (a few hundred files at
    /// most), so it is meant for a `stats` request, not a hot path.
    pub fn stats(&self) -> Result<L2Stats, L2Error> {
        let usage = dir_usage(&self.path)?;
        let c = &self.counters;
        Ok(L2Stats {
            dir_bytes: usage.allocated,
            journal_bytes: usage.journal_allocated,
            log_bytes: self.log.disk_space(),
            index_bytes: self.index.disk_space(),
            max_bytes: self.max_bytes,
            entries_estimate: self.index.approximate_len() as u64,
            reads: c.reads.load(Relaxed),
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            expired: c.expired.load(Relaxed),
            evicted: c.evicted.load(Relaxed),
            writes: c.writes.load(Relaxed),
            user_bytes_written: c.user_bytes_written.load(Relaxed),
            deletes: c.deletes.load(Relaxed),
            touches: c.touches.load(Relaxed),
            flushes: c.flushes.load(Relaxed),
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether fjall's background work (memtable flushes, compactions) is idle. Tests use it to
    /// wait for FIFO to catch up before measuring.
    pub fn is_idle(&self) -> bool {
        self.db.outstanding_flushes() == 0 && self.db.active_compactions() == 0
    }

    fn lookup(&self, key: &[u8]) -> Result<Lookup, L2Error> {
        let Some(raw) = self.index.get(key)? else {
            return Ok(Lookup::Absent);
        };
        let Some(idx) = codec::decode_index(&raw) else {
            return Ok(Lookup::Absent);
        };
        if expired(idx.expiry, self.shared.clock.now()) {
            return Ok(Lookup::Expired);
        }
        if idx.seq < self.shared.floor() {
            return Ok(Lookup::Evicted);
        }
        let Some(raw) = self.log.get(codec::log_key(idx.seq))? else {
            return Ok(Lookup::Evicted);
        };
        match codec::decode_log(&raw) {
            Some(rec) if rec.key == key => {}
            // Dangling index record (module doc), or a format this build does not know.
            _ => return Ok(Lookup::Absent),
        }
        Ok(Lookup::Hit(idx, raw))
    }

    /// Raises the eviction floor to the oldest sequence number still in the log (`next` when the
    /// log is empty), for reads and the index's compaction filter.
    fn refresh_floor(&self, next: u64) -> Result<(), L2Error> {
        let oldest = match self.log.first_key_value() {
            Some(guard) => codec::seq_of_log_key(&guard.key()?).unwrap_or(0),
            None => next,
        };
        self.shared.raise_floor(oldest);
        Ok(())
    }

    /// Makes a writer wait (bounded) while fjall's background work is behind, so the directory
    /// stays within its bound during a write burst too, not only after it:
    ///
    /// * fjall rotates a memtable only when a background thread gets to it; while the threads are
    ///   busy flushing, the active memtable keeps growing past its size (we measured 10x), and a
    ///   table is as large as the memtable it came from. Writers wait while the memtables hold
    ///   more than two log memtables and the index's.
    /// * fjall drops the oldest log tables in a compaction it queues after each flush. When
    ///   flushes get ahead of those passes, the log overshoots its limit by a table per pass
    ///   pending. Writers wait while the log is more than one table over.
    ///
    /// Past the wait the write goes ahead, a little over the bound rather than failing. It runs on
    /// a blocking thread (see `AsyncL2`), never on the event loop.
    fn backpressure(&self) {
        let behind = || {
            self.log.disk_space() > self.layout.log_limit + self.layout.log_memtable
                // fjall marks this accessor experimental; the version is pinned (Cargo.toml).
                || self.db.write_buffer_size() > self.layout.write_buffer_cap
        };
        if !behind() {
            return;
        }
        let deadline = std::time::Instant::now() + BACKPRESSURE_WAIT;
        while behind() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    fn stripe(&self, key: &[u8]) -> &Mutex<()> {
        let mut h = self.stripe_hasher.build_hasher();
        h.write(key);
        &self.stripes[h.finish() as usize % STRIPES]
    }

    fn persist_mode(&self) -> PersistMode {
        match self.persist {
            Persist::Buffered => PersistMode::Buffer,
            Persist::SyncEachWrite => PersistMode::SyncData,
        }
    }

    /// Makes every write so far durable (journal synced to disk): what a shutdown does last.
    pub fn persist(&self) -> Result<(), L2Error> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Makes single-keyspace writes (which fjall already hands to the OS) durable when asked to.
    fn sync(&self) -> Result<(), L2Error> {
        if self.persist == Persist::SyncEachWrite {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }
}

/// Keys fjall accepts and the log record can describe (u16 length).
fn key_ok(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= u16::MAX as usize
}

/// Disk usage of a directory tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirUsage {
    /// Blocks in use (`du`): what the disk actually gives up.
    pub allocated: u64,
    /// Sum of file lengths (`du --apparent-size`); larger than `allocated` because fjall creates
    /// journals sparse at 64 MiB.
    pub apparent: u64,
    /// Blocks of journal files (`*.jnl`), part of `allocated`.
    pub journal_allocated: u64,
}

/// Measures `path` recursively. Files that vanish during the walk (fjall deletes tables and
/// journals in the background) are skipped.
pub fn dir_usage(path: &Path) -> std::io::Result<DirUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DirUsage::default();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let blocks = meta.blocks() * 512;
            usage.allocated += blocks;
            usage.apparent += meta.len();
            if entry.path().extension().is_some_and(|e| e == "jnl") {
                usage.journal_allocated += blocks;
            }
        }
    }
    Ok(usage)
}
