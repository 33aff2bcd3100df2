//! The sharded store: hash tables, LRU lists, allocation with eviction, and memcached's item
//! semantics on top of the chunk arena.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};

use super::arena::{Arena, Header, FETCHED, HEADER, NIL, STALE, TOKEN_SENT};
use super::*;

/// Padding so neighbouring shard locks do not share a cache line.
#[repr(align(64))]
struct Padded<T>(T);

/// A run of chained chunks being gathered for a new item.
#[derive(Clone, Copy)]
struct Chain {
    first: u32,
    last: u32,
    count: u32,
}

impl Chain {
    const EMPTY: Chain = Chain {
        first: NIL,
        last: NIL,
        count: 0,
    };

    fn append(&mut self, arena: &Arena, piece: Option<(u32, u32, u32)>) {
        let Some((first, last, count)) = piece else { return };
        if self.count == 0 {
            self.first = first;
        } else {
            arena.set_link(self.last, first);
        }
        self.last = last;
        self.count += count;
    }
}

#[derive(Default, Clone, Copy)]
struct Counters {
    curr_items: u64,
    total_items: u64,
    bytes: u64,
    used_chunks: u64,
    evictions: u64,
    evicted_unfetched: u64,
    expired_unfetched: u64,
    reclaimed: u64,
    get_hits: u64,
    get_misses: u64,
    get_expired: u64,
    get_flushed: u64,
    cmd_get: u64,
    cmd_set: u64,
    cmd_touch: u64,
    touch_hits: u64,
    touch_misses: u64,
    delete_hits: u64,
    delete_misses: u64,
    incr_hits: u64,
    incr_misses: u64,
    decr_hits: u64,
    decr_misses: u64,
    cas_hits: u64,
    cas_misses: u64,
    cas_badval: u64,
}

/// Why a found item is not served.
#[derive(PartialEq, Eq)]
enum Dead {
    Expired,
    Flushed,
}

struct Shard {
    /// Item ids (first chunk ids), hashed by key.
    table: HashTable<u32>,
    /// LRU list: head is the most recently used.
    head: u32,
    tail: u32,
    /// Free chunks owned by this shard, chained through the arena links.
    free_head: u32,
    free_count: u32,
    c: Counters,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            table: HashTable::new(),
            head: NIL,
            tail: NIL,
            free_head: NIL,
            free_count: 0,
            c: Counters::default(),
        }
    }

    fn lru_push_head(&mut self, arena: &Arena, id: u32) {
        // SAFETY: the caller holds this shard's lock and `id` is (being made) one of its items.
        unsafe {
            let h = arena.header(id);
            h.prev = NIL;
            h.next = self.head;
            if self.head != NIL {
                arena.header(self.head).prev = id;
            } else {
                self.tail = id;
            }
        }
        self.head = id;
    }

    fn lru_unlink(&mut self, arena: &Arena, id: u32) {
        // SAFETY: as in `lru_push_head`.
        unsafe {
            let (prev, next) = {
                let h = arena.header(id);
                (h.prev, h.next)
            };
            if prev != NIL {
                arena.header(prev).next = next;
            } else {
                self.head = next;
            }
            if next != NIL {
                arena.header(next).prev = prev;
            } else {
                self.tail = prev;
            }
        }
    }

    /// Puts a whole chain on this shard's free list.
    fn free_chain(&mut self, arena: &Arena, first: u32) {
        let (last, n) = arena.chain_end(first);
        arena.set_link(last, self.free_head);
        self.free_head = first;
        self.free_count += n;
    }

    /// Takes up to `n` chunks from the free list.
    fn take_free(&mut self, arena: &Arena, n: u32) -> Option<(u32, u32, u32)> {
        let take = n.min(self.free_count);
        if take == 0 {
            return None;
        }
        let first = self.free_head;
        let mut last = first;
        for _ in 1..take {
            last = arena.link(last);
        }
        self.free_head = arena.link(last);
        arena.set_link(last, NIL);
        self.free_count -= take;
        Some((first, last, take))
    }

    /// Unlinks an item from the table and LRU and frees its chunks.
    fn remove(&mut self, arena: &Arena, id: u32) {
        // SAFETY: the caller holds this shard's lock and `id` is one of its items.
        let (hash, bytes) = unsafe {
            let h = arena.header(id);
            (h.hash, (HEADER + h.key_len as usize + h.value_len as usize) as u64)
        };
        if let Ok(entry) = self.table.find_entry(hash, |&x| x == id) {
            entry.remove();
        }
        self.lru_unlink(arena, id);
        let chunks = bytes.div_ceil(arena.chunk_size() as u64);
        self.c.curr_items -= 1;
        self.c.bytes -= bytes;
        self.c.used_chunks -= chunks;
        self.free_chain(arena, id);
    }
}

/// The embedded memory store. See the module documentation of [`crate::store`].
pub struct Store {
    arena: Arena,
    shards: Box<[Padded<Mutex<Shard>>]>,
    mask: usize,
    hasher: hashbrown::DefaultHashBuilder,
    clock: Clock,
    /// The next CAS id to hand out; ids are unique per item version.
    next_cas: AtomicU64,
    /// Items with a CAS at or below this were flushed.
    flush_floor: AtomicU64,
    /// Server time at which a delayed `flush_all` takes effect (0 = none pending).
    flush_pending: AtomicU32,
    /// Where the next search for memory to evict starts.
    victim: AtomicUsize,
    cfg: StoreConfig,
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
    fn hash(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        // The table uses the low and top bits of the hash; pick the shard from the middle.
        (hash, (hash >> 40) as usize & self.mask)
    }

    #[inline]
    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard].0.lock()
    }

    fn new_cas(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed)
    }

    /// Applies a delayed `flush_all` once its time has come. One atomic load when none is pending.
    #[inline]
    fn check_flush(&self) {
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

    fn dead(&self, h: &Header) -> Option<Dead> {
        if self.clock.expired(Expiry(h.expiry)) {
            Some(Dead::Expired)
        } else if h.cas <= self.flush_floor.load(Ordering::Relaxed) {
            Some(Dead::Flushed)
        } else {
            None
        }
    }

    /// Finds a live item; a dead one found on the way is removed (lazy expiry).
    fn lookup(&self, sh: &mut Shard, hash: u64, key: &[u8], counting_get: bool) -> Option<u32> {
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
    fn alloc(&self, shard: usize, n: u32) -> Option<u32> {
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
    fn prepare(
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
    fn link(&self, sh: &mut Shard, id: u32, old: Option<u32>) -> u64 {
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
    fn bump(&self, sh: &mut Shard, id: u32) {
        let h = hdr!(self, id);
        h.bits |= FETCHED;
        h.time = self.clock.now();
        if sh.head != id {
            sh.lru_unlink(&self.arena, id);
            sh.lru_push_head(&self.arena, id);
        }
    }

    fn view(&self, id: u32, fetched_before: bool, idle_secs: u32, win: bool) -> ItemView<'_> {
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
            value: unsafe { Value::pieces(&self.arena, id, h.key_len as usize, h.value_len as usize) },
        }
    }

    /// Reads an item; `f` sees it under the shard lock (copy what you need). `None` is a miss.
    pub fn read<R>(&self, key: &[u8], opts: &ReadOpts, f: impl FnOnce(&ItemView<'_>) -> R) -> Option<R> {
        self.check_flush();
        let (hash, si) = self.hash(key);
        let mut sh = self.lock(si);
        if opts.peek {
            let id = self.lookup(&mut sh, hash, key, false)?;
            let h = hdr!(self, id);
            let (fetched, idle) = (h.bits & FETCHED != 0, self.clock.now().saturating_sub(h.time));
            return Some(f(&self.view(id, fetched, idle, false)));
        }
        sh.c.cmd_get += 1;
        if opts.touch.is_some() {
            sh.c.cmd_touch += 1;
        }
        let Some(id) = self.lookup(&mut sh, hash, key, true) else {
            sh.c.get_misses += 1;
            if opts.touch.is_some() {
                sh.c.touch_misses += 1;
            }
            let expiry = opts.vivify?;
            drop(sh);
            // Vivify on miss: an empty stub whose creator wins the right to recache it.
            let new = self.prepare(si, key, hash, 0, 0, expiry)?;
            let mut sh = self.lock(si);
            if let Some(id) = self.lookup(&mut sh, hash, key, false) {
                // Another client vivified or set it meanwhile: we are just a reader of that item.
                sh.free_chain(&self.arena, new);
                return Some(self.read_hit(&mut sh, id, opts, f));
            }
            // The creator has read it (memcached: a vivified item counts as fetched).
            hdr!(self, new).bits = TOKEN_SENT | if opts.no_bump { 0 } else { FETCHED };
            self.link(&mut sh, new, None);
            return Some(f(&self.view(new, false, 0, true)));
        };
        sh.c.get_hits += 1;
        if opts.touch.is_some() {
            sh.c.touch_hits += 1;
        }
        Some(self.read_hit(&mut sh, id, opts, f))
    }

    fn read_hit<R>(&self, sh: &mut Shard, id: u32, opts: &ReadOpts, f: impl FnOnce(&ItemView<'_>) -> R) -> R {
        let now = self.clock.now();
        let h = hdr!(self, id);
        let fetched_before = h.bits & FETCHED != 0;
        let idle = now.saturating_sub(h.time);
        let old_expiry = h.expiry;
        if let Some(t) = opts.touch {
            h.expiry = t.0;
        }
        let mut win = false;
        if h.bits & TOKEN_SENT == 0 {
            // R: the remaining TTL has dropped below the client's threshold.
            if let Some(below) = opts.recache_below {
                let expiry = if opts.recache_before_touch {
                    old_expiry
                } else {
                    h.expiry
                };
                if expiry != 0 && expiry.saturating_sub(now) < below {
                    win = true;
                }
            }
            // A stale item hands one client the token to recache it.
            if h.bits & STALE != 0 {
                win = true;
            }
        }
        if win {
            h.bits |= TOKEN_SENT;
        }
        if !opts.no_bump {
            self.bump(sh, id);
        }
        let mut view = self.view(id, fetched_before, idle, win);
        view.ttl = self.clock.ttl(Expiry(old_expiry));
        f(&view)
    }

    /// Stores a value with memcached's storage semantics.
    pub fn store(&self, req: &StoreReq<'_>) -> StoreOutcome {
        self.check_flush();
        if !item_size_ok(self.cfg.item_size_max, req.key.len(), req.flags, req.value.len())
            || req.key.len() > u8::MAX as usize
        {
            return StoreOutcome::TooLarge;
        }
        let (hash, si) = self.hash(req.key);
        if matches!(req.mode, Mode::Append | Mode::Prepend) {
            return self.concat(req, hash, si);
        }
        let Some(new) = self.prepare(si, req.key, hash, req.value.len(), req.flags, req.expiry) else {
            self.lock(si).c.cmd_set += 1;
            return StoreOutcome::OutOfMemory;
        };
        // SAFETY: we own the prepared chain until it is linked.
        unsafe { self.arena.write(new, req.key.len(), req.value) };

        let mut sh = self.lock(si);
        sh.c.cmd_set += 1;
        let old = self.lookup(&mut sh, hash, req.key, false);
        let outcome = match (req.mode, old, req.cas) {
            (Mode::Add, Some(old), _) => {
                // memcached's add refuses but still counts as a use of the existing item.
                self.bump(&mut sh, old);
                StoreOutcome::NotStored
            }
            (Mode::Set | Mode::Replace, None, Some(_)) => {
                sh.c.cas_misses += 1;
                StoreOutcome::NotFound
            }
            (Mode::Set | Mode::Replace, Some(old), Some(cas)) => {
                let old_h = *hdr!(self, old);
                if cas == old_h.cas {
                    sh.c.cas_hits += 1;
                    StoreOutcome::Stored {
                        cas: self.link(&mut sh, new, Some(old)),
                    }
                } else if req.invalidate && cas < old_h.cas {
                    // ms I: an older CAS may still write, but the result is marked stale and keeps
                    // the old TTL, so readers know to recache it.
                    let h = hdr!(self, new);
                    h.expiry = old_h.expiry;
                    h.bits = STALE | (old_h.bits & TOKEN_SENT);
                    sh.c.cas_hits += 1;
                    StoreOutcome::Stored {
                        cas: self.link(&mut sh, new, Some(old)),
                    }
                } else {
                    sh.c.cas_badval += 1;
                    StoreOutcome::Exists
                }
            }
            (Mode::Replace, None, None) => StoreOutcome::NotStored,
            (_, old, _) => StoreOutcome::Stored {
                cas: self.link(&mut sh, new, old),
            },
        };
        if !matches!(outcome, StoreOutcome::Stored { .. }) {
            sh.free_chain(&self.arena, new);
        }
        outcome
    }

    /// append/prepend: the new item is built outside the lock and published only if the item it
    /// extends is still the current version (same CAS); otherwise we start again.
    fn concat(&self, req: &StoreReq<'_>, hash: u64, si: usize) -> StoreOutcome {
        loop {
            let (cas, old_len, flags, expiry) = {
                let mut sh = self.lock(si);
                sh.c.cmd_set += 1;
                let Some(old) = self.lookup(&mut sh, hash, req.key, false) else {
                    return StoreOutcome::NotStored;
                };
                let h = hdr!(self, old);
                if req.cas.is_some_and(|c| c != h.cas) {
                    sh.c.cas_badval += 1;
                    return StoreOutcome::Exists;
                }
                (h.cas, h.value_len as usize, h.flags, Expiry(h.expiry))
            };
            let total = old_len + req.value.len();
            if !item_size_ok(self.cfg.item_size_max, req.key.len(), flags, total) {
                return StoreOutcome::TooLarge;
            }
            // memcached keeps the existing item's flags and expiry on append/prepend.
            let Some(new) = self.prepare(si, req.key, hash, total, flags, expiry) else {
                return StoreOutcome::OutOfMemory;
            };
            let klen = req.key.len();
            let (new_at, old_at) = match req.mode {
                Mode::Append => (klen + old_len, klen),
                _ => (klen, klen + req.value.len()),
            };
            // SAFETY: we own the prepared chain.
            unsafe { self.arena.write(new, new_at, req.value) };
            let mut sh = self.lock(si);
            match self.lookup(&mut sh, hash, req.key, false) {
                Some(old) if hdr!(self, old).cas == cas => {
                    // SAFETY: `old` is readable under the lock; `new` is still ours.
                    unsafe { self.arena.copy_between(old, klen, old_len, new, old_at) };
                    return StoreOutcome::Stored {
                        cas: self.link(&mut sh, new, Some(old)),
                    };
                }
                _ => {
                    sh.c.cmd_set -= 1;
                    sh.free_chain(&self.arena, new);
                }
            }
        }
    }

    /// Deletes an item, if `cas` (when given) matches.
    pub fn delete(&self, key: &[u8], cas: Option<u64>) -> DeleteOutcome {
        self.check_flush();
        let (hash, si) = self.hash(key);
        let mut sh = self.lock(si);
        let Some(id) = self.lookup(&mut sh, hash, key, false) else {
            sh.c.delete_misses += 1;
            return DeleteOutcome::NotFound;
        };
        if cas.is_some_and(|c| c != hdr!(self, id).cas) {
            return DeleteOutcome::Exists;
        }
        sh.c.delete_hits += 1;
        sh.remove(&self.arena, id);
        DeleteOutcome::Deleted
    }

    /// `md I`: marks an item stale with a new CAS (and optionally a new expiry) instead of removing
    /// it, so one reader wins the recache while the others may keep using the old value.
    pub fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> DeleteOutcome {
        self.check_flush();
        let (hash, si) = self.hash(key);
        let mut sh = self.lock(si);
        let Some(id) = self.lookup(&mut sh, hash, key, false) else {
            sh.c.delete_misses += 1;
            return DeleteOutcome::NotFound;
        };
        let new_cas = self.new_cas();
        let h = hdr!(self, id);
        if cas.is_some_and(|c| c != h.cas) {
            return DeleteOutcome::Exists;
        }
        h.bits = (h.bits | STALE) & !TOKEN_SENT;
        h.cas = new_cas;
        if let Some(e) = expiry {
            h.expiry = e.0;
        }
        sh.c.delete_hits += 1;
        DeleteOutcome::Deleted
    }

    /// Sets a new expiry on an item. False on a miss.
    pub fn touch(&self, key: &[u8], expiry: Expiry) -> bool {
        self.check_flush();
        let (hash, si) = self.hash(key);
        let mut sh = self.lock(si);
        sh.c.cmd_touch += 1;
        let Some(id) = self.lookup(&mut sh, hash, key, false) else {
            sh.c.touch_misses += 1;
            return false;
        };
        sh.c.touch_hits += 1;
        hdr!(self, id).expiry = expiry.0;
        self.bump(&mut sh, id);
        true
    }

    /// incr/decr: incr wraps at 2^64, decr stops at 0. A shorter result is written in place and
    /// padded with spaces (as memcached does); a longer one needs a new item.
    pub fn arith(&self, req: &ArithReq<'_>) -> ArithOutcome {
        self.check_flush();
        let (hash, si) = self.hash(req.key);
        let mut digits = itoa::Buffer::new();
        loop {
            let mut sh = self.lock(si);
            let Some(id) = self.lookup(&mut sh, hash, req.key, false) else {
                if req.incr {
                    sh.c.incr_misses += 1;
                } else {
                    sh.c.decr_misses += 1;
                }
                let Some((initial, expiry)) = req.vivify else {
                    return ArithOutcome::NotFound;
                };
                drop(sh);
                let text = digits.format(initial).as_bytes();
                let Some(new) = self.prepare(si, req.key, hash, text.len(), 0, expiry) else {
                    return ArithOutcome::OutOfMemory;
                };
                // SAFETY: we own the prepared chain.
                unsafe { self.arena.write(new, req.key.len(), text) };
                let mut sh = self.lock(si);
                if self.lookup(&mut sh, hash, req.key, false).is_some() {
                    // Created by someone else meanwhile: apply the delta to theirs.
                    sh.free_chain(&self.arena, new);
                    continue;
                }
                let cas = self.link(&mut sh, new, None);
                return ArithOutcome::Done {
                    value: initial,
                    cas,
                    ttl: self.clock.ttl(expiry),
                    created: true,
                };
            };
            let h = *hdr!(self, id);
            if req.cas.is_some_and(|c| c != h.cas) {
                return ArithOutcome::Exists;
            }
            let Some(current) = self.parse_number(id, &h) else {
                return ArithOutcome::NonNumeric;
            };
            if req.incr {
                sh.c.incr_hits += 1;
            } else {
                sh.c.decr_hits += 1;
            }
            let value = if req.incr {
                current.wrapping_add(req.delta)
            } else {
                current.saturating_sub(req.delta)
            };
            let text = digits.format(value).as_bytes();
            let expiry = req.touch.map_or(Expiry(h.expiry), |e| e);
            let len = h.value_len as usize;
            let klen = h.key_len as usize;
            if text.len() <= len {
                let cas = self.new_cas();
                // SAFETY: the item is ours to change under the shard lock.
                unsafe {
                    self.arena.write(id, klen, text);
                    for at in text.len()..len {
                        self.arena.write(id, klen + at, b" ");
                    }
                }
                let hm = hdr!(self, id);
                hm.cas = cas;
                hm.expiry = expiry.0;
                self.bump(&mut sh, id);
                return ArithOutcome::Done {
                    value,
                    cas,
                    ttl: self.clock.ttl(expiry),
                    created: false,
                };
            }
            drop(sh);
            let Some(new) = self.prepare(si, req.key, hash, text.len(), h.flags, expiry) else {
                return ArithOutcome::OutOfMemory;
            };
            // SAFETY: we own the prepared chain.
            unsafe { self.arena.write(new, klen, text) };
            let mut sh = self.lock(si);
            match self.lookup(&mut sh, hash, req.key, false) {
                Some(old) if hdr!(self, old).cas == h.cas => {
                    let cas = self.link(&mut sh, new, Some(old));
                    return ArithOutcome::Done {
                        value,
                        cas,
                        ttl: self.clock.ttl(expiry),
                        created: false,
                    };
                }
                // Changed under us: undo the hit count and start over on the new version.
                _ => {
                    if req.incr {
                        sh.c.incr_hits -= 1;
                    } else {
                        sh.c.decr_hits -= 1;
                    }
                    sh.free_chain(&self.arena, new);
                }
            }
        }
    }

    /// The item's value as an unsigned decimal, as memcached reads it (leading and trailing
    /// whitespace allowed; empty or anything else is non-numeric).
    fn parse_number(&self, id: u32, h: &Header) -> Option<u64> {
        let len = h.value_len as usize;
        if len == 0 || len > 64 {
            return None;
        }
        let mut buf = [0u8; 64];
        let mut at = 0;
        // SAFETY: called with the item's shard lock held.
        unsafe {
            self.arena.for_each_piece(id, h.key_len as usize, len, |p, n| {
                buf[at..at + n].copy_from_slice(std::slice::from_raw_parts(p, n));
                at += n;
            })
        };
        let text = std::str::from_utf8(&buf[..len]).ok()?;
        let digits = text.trim_start_matches(|c: char| c.is_ascii_whitespace());
        let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
        if end == 0 || !digits[end..].chars().all(|c| c.is_ascii_whitespace()) {
            return None;
        }
        digits[..end].parse().ok()
    }

    /// memcached's `flush_all [delay]`: items that exist when the flush takes effect are gone.
    pub fn flush_all(&self, exptime: i64) {
        if exptime <= 0 {
            self.flush_pending.store(0, Ordering::Relaxed);
            let floor = self.next_cas.load(Ordering::Relaxed) - 1;
            self.flush_floor.fetch_max(floor, Ordering::Relaxed);
        } else {
            // memcached applies a delayed flush one second before the given time.
            let at = self.clock.expiry(exptime).0.saturating_sub(1).max(1);
            self.flush_pending.store(at, Ordering::Relaxed);
            self.check_flush();
        }
    }

    /// Removes dead items from the cold end of one shard's LRU; returns how many.
    pub fn reclaim(&self, shard: usize, budget: usize) -> usize {
        self.check_flush();
        let mut sh = self.lock(shard & self.mask);
        let mut id = sh.tail;
        let mut removed = 0;
        for _ in 0..budget {
            if id == NIL {
                break;
            }
            let h = hdr!(self, id);
            let prev = h.prev;
            if let Some(why) = self.dead(h) {
                if why == Dead::Expired && h.bits & FETCHED == 0 {
                    sh.c.expired_unfetched += 1;
                }
                sh.c.reclaimed += 1;
                sh.remove(&self.arena, id);
                removed += 1;
            }
            id = prev;
        }
        removed
    }

    pub fn stats(&self) -> StoreStats {
        let mut t = Counters::default();
        for s in self.shards.iter() {
            let c = s.0.lock().c;
            t.curr_items += c.curr_items;
            t.total_items += c.total_items;
            t.bytes += c.bytes;
            t.used_chunks += c.used_chunks;
            t.evictions += c.evictions;
            t.evicted_unfetched += c.evicted_unfetched;
            t.expired_unfetched += c.expired_unfetched;
            t.reclaimed += c.reclaimed;
            t.get_hits += c.get_hits;
            t.get_misses += c.get_misses;
            t.get_expired += c.get_expired;
            t.get_flushed += c.get_flushed;
            t.cmd_get += c.cmd_get;
            t.cmd_set += c.cmd_set;
            t.cmd_touch += c.cmd_touch;
            t.touch_hits += c.touch_hits;
            t.touch_misses += c.touch_misses;
            t.delete_hits += c.delete_hits;
            t.delete_misses += c.delete_misses;
            t.incr_hits += c.incr_hits;
            t.incr_misses += c.incr_misses;
            t.decr_hits += c.decr_hits;
            t.decr_misses += c.decr_misses;
            t.cas_hits += c.cas_hits;
            t.cas_misses += c.cas_misses;
            t.cas_badval += c.cas_badval;
        }
        StoreStats {
            curr_items: t.curr_items,
            total_items: t.total_items,
            bytes: t.bytes,
            evictions: t.evictions,
            expired_unfetched: t.expired_unfetched,
            evicted_unfetched: t.evicted_unfetched,
            reclaimed: t.reclaimed,
            get_hits: t.get_hits,
            get_misses: t.get_misses,
            get_expired: t.get_expired,
            get_flushed: t.get_flushed,
            cmd_get: t.cmd_get,
            cmd_set: t.cmd_set,
            cmd_touch: t.cmd_touch,
            touch_hits: t.touch_hits,
            touch_misses: t.touch_misses,
            delete_hits: t.delete_hits,
            delete_misses: t.delete_misses,
            incr_hits: t.incr_hits,
            incr_misses: t.incr_misses,
            decr_hits: t.decr_hits,
            decr_misses: t.decr_misses,
            cas_hits: t.cas_hits,
            cas_misses: t.cas_misses,
            cas_badval: t.cas_badval,
            total_chunks: self.arena.nchunks() as u64,
            used_chunks: t.used_chunks,
            chunk_size: self.arena.chunk_size() as u64,
        }
    }
}
