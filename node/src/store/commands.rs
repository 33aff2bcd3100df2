//! memcached's commands on the store: reads, the storage modes, delete, invalidate, touch,
//! arithmetic, flush, reclaim and stats.

use std::sync::atomic::Ordering;

use super::arena::{Header, FETCHED, NIL, STALE, TOKEN_SENT};
use super::shard::*;
use super::*;

impl Store {
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
