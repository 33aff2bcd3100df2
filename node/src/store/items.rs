//! The store and what its commands share: finding an item, allocating chunks (evicting when
//! memory is full), linking a new item in, and the view a read hands out.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard};

use super::arena::{Arena, Header, FETCHED, HEADER, NIL, STALE, TOKEN_SENT};
use super::shard::*;
use super::*;

/// The embedded memory store. See the module documentation of [`crate::store`].
pub struct Store {
    pub(super) arena: Arena,
    pub(super) shards: Box<[Padded<Mutex<Shard>>]>,
    pub(super) mask: usize,
    pub(super) hasher: hashbrown::DefaultHashBuilder,
    pub(super) clock: Clock,
    /// The next CAS id to hand out; ids are unique per item version.
    pub(super) next_cas: AtomicU64,
    /// Items with a CAS at or below this were flushed.
    pub(super) flush_floor: AtomicU64,
    /// Server time at which a delayed `flush_all` takes effect (0 = none pending).
    pub(super) flush_pending: AtomicU32,
    /// Where the next search for memory to evict starts.
    pub(super) victim: AtomicUsize,
    pub(super) cfg: StoreConfig,
}

/// A mutable view of an item header under its shard lock.
macro_rules! hdr {
    ($self:ident, $id:expr) => {
        // SAFETY: every use is under the lock of the shard that owns the item, or on a chain the
        // caller took from a free list and has not published yet.
        unsafe { $self.arena.header($id) }
    };
}

impl Store {
    pub fn new(cfg: StoreConfig) -> Store {
        Store::with_clock(cfg, Clock::start())
    }

    pub fn with_clock(cfg: StoreConfig, clock: Clock) -> Store {
        let n = cfg.shards.max(1).next_power_of_two();
        let arena = Arena::new(cfg.memory_bytes, cfg.chunk_size);
        Store {
            arena,
            shards: (0..n).map(|_| Padded(Mutex::new(Shard::new()))).collect(),
            mask: n - 1,
            hasher: hashbrown::DefaultHashBuilder::default(),
            clock,
            next_cas: AtomicU64::new(1),
            flush_floor: AtomicU64::new(0),
            flush_pending: AtomicU32::new(0),
            victim: AtomicUsize::new(0),
            cfg,
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    #[inline]
    pub(super) fn hash(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        // The table uses the low and top bits of the hash; pick the shard from the middle.
        (hash, (hash >> 40) as usize & self.mask)
    }

    #[inline]
    pub(super) fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard].0.lock()
    }

    pub(super) fn new_cas(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies a delayed `flush_all` once its time has come. One atomic load when none is pending.
    #[inline]
    pub(super) fn check_flush(&self) {
        let at = self.flush_pending.load(Ordering::Relaxed);
        if at != 0
            && self.clock.now() >= at
            && self
                .flush_pending
                .compare_exchange(at, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let floor = self.next_cas.load(Ordering::Relaxed) - 1;
            self.flush_floor.fetch_max(floor, Ordering::Relaxed);
        }
    }

    pub(super) fn dead(&self, h: &Header) -> Option<Dead> {
        if self.clock.expired(Expiry(h.expiry)) {
            Some(Dead::Expired)
        } else if h.cas <= self.flush_floor.load(Ordering::Relaxed) {
            Some(Dead::Flushed)
        } else {
            None
        }
    }

    /// Finds a live item; a dead one found on the way is removed (lazy expiry).
    pub(super) fn lookup(&self, sh: &mut Shard, hash: u64, key: &[u8], counting_get: bool) -> Option<u32> {
        // SAFETY: we hold the shard lock, so its items are readable.
        let id = *sh.table.find(hash, |&id| unsafe { self.arena.key_eq(id, key) })?;
        let h = hdr!(self, id);
        match self.dead(h) {
            None => Some(id),
            Some(why) => {
                if h.bits & FETCHED == 0 && why == Dead::Expired {
                    sh.c.expired_unfetched += 1;
                }
                if counting_get {
                    match why {
                        Dead::Expired => sh.c.get_expired += 1,
                        Dead::Flushed => sh.c.get_flushed += 1,
                    }
                }
                sh.c.reclaimed += 1;
                sh.remove(&self.arena, id);
                None
            }
        }
    }

    /// Gathers `n` chunks for a new item: the shard's own free chunks, then never-used ones, then
    /// by evicting least recently used items, starting with the shard's own. Only one lock is held
    /// at any time.
    pub(super) fn alloc(&self, shard: usize, n: u32) -> Option<u32> {
        if n > self.arena.nchunks() {
            return None;
        }
        let mut chain = Chain::EMPTY;
        chain.append(&self.arena, self.lock(shard).take_free(&self.arena, n));
        if chain.count < n {
            chain.append(&self.arena, self.arena.take_fresh(n - chain.count));
        }
        if chain.count < n {
            let start = self.victim.fetch_add(1, Ordering::Relaxed);
            let order = std::iter::once(shard).chain((0..self.shards.len()).map(|i| (start + i) & self.mask));
            for s in order {
                let mut sh = self.lock(s);
                loop {
                    chain.append(&self.arena, sh.take_free(&self.arena, n - chain.count));
                    if chain.count == n || sh.tail == NIL {
                        break;
                    }
                    let victim = sh.tail;
                    let h = hdr!(self, victim);
                    if self.dead(h).is_some() {
                        sh.c.reclaimed += 1;
                    } else {
                        sh.c.evictions += 1;
                        if h.bits & FETCHED == 0 {
                            sh.c.evicted_unfetched += 1;
                        }
                    }
                    sh.remove(&self.arena, victim);
                }
                if chain.count == n {
                    break;
                }
            }
        }
        if chain.count < n {
            if chain.count > 0 {
                let mut sh = self.lock(shard);
                sh.free_chain(&self.arena, chain.first);
            }
            return None;
        }
        Some(chain.first)
    }

    /// Allocates an item and writes its header and key; the caller writes the value.
    pub(super) fn prepare(
        &self,
        shard: usize,
        key: &[u8],
        hash: u64,
        value_len: usize,
        flags: u32,
        expiry: Expiry,
    ) -> Option<u32> {
        let n = self.arena.chunks_for(key.len(), value_len) as u32;
        let id = self.alloc(shard, n)?;
        *hdr!(self, id) = Header {
            hash,
            flags,
            expiry: expiry.0,
            value_len: value_len as u32,
            key_len: key.len() as u8,
            prev: NIL,
            next: NIL,
            ..Header::default()
        };
        // SAFETY: we own the freshly allocated chain.
        unsafe { self.arena.write(id, 0, key) };
        Some(id)
    }

    /// Publishes a prepared item, replacing `old` if given. Returns the new CAS.
    pub(super) fn link(&self, sh: &mut Shard, id: u32, old: Option<u32>) -> u64 {
        if let Some(old) = old {
            sh.remove(&self.arena, old);
        }
        let cas = self.new_cas();
        let h = hdr!(self, id);
        h.cas = cas;
        h.time = self.clock.now();
        let bytes = (HEADER + h.key_len as usize + h.value_len as usize) as u64;
        let arena = &self.arena;
        sh.table.insert_unique(h.hash, id, |&x| {
            // SAFETY: rehashing reads headers of this shard's items under its lock.
            unsafe { arena.header(x).hash }
        });
        sh.lru_push_head(&self.arena, id);
        sh.c.curr_items += 1;
        sh.c.total_items += 1;
        sh.c.bytes += bytes;
        sh.c.used_chunks += bytes.div_ceil(self.arena.chunk_size() as u64);
        cas
    }

    /// Marks an access: fetched, last access time, and a move to the LRU head.
    pub(super) fn bump(&self, sh: &mut Shard, id: u32) {
        let h = hdr!(self, id);
        h.bits |= FETCHED;
        h.time = self.clock.now();
        if sh.head != id {
            sh.lru_unlink(&self.arena, id);
            sh.lru_push_head(&self.arena, id);
        }
    }

    pub(super) fn view(&self, id: u32, fetched_before: bool, idle_secs: u32, win: bool) -> ItemView<'_> {
        let h = hdr!(self, id);
        ItemView {
            flags: h.flags,
            cas: h.cas,
            ttl: self.clock.ttl(Expiry(h.expiry)),
            fetched_before,
            idle_secs,
            stale: h.bits & STALE != 0,
            win,
            win_taken: !win && h.bits & TOKEN_SENT != 0,
            version: h.version(),
            // SAFETY: a view exists only inside a shard-locked read of its item.
            value: unsafe {
                let (offset, len) = (h.key_len as usize, h.value_len as usize);
                Value::pieces(self.arena.first_piece(id, offset, len), &self.arena, id, offset, len)
            },
        }
    }
}
