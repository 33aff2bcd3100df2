//! One shard of the store: a partition of the keys with its own lock, hash table, LRU list and
//! free chunk list.

use hashbrown::HashTable;

use super::arena::{Arena, HEADER, NIL};

/// Padding so neighbouring shard locks do not share a cache line.
#[repr(align(64))]
pub(super) struct Padded<T>(pub(super) T);

/// A run of chained chunks being gathered for a new item.
#[derive(Clone, Copy)]
pub(super) struct Chain {
    pub(super) first: u32,
    pub(super) last: u32,
    pub(super) count: u32,
}

impl Chain {
    pub(super) const EMPTY: Chain = Chain {
        first: NIL,
        last: NIL,
        count: 0,
    };

    pub(super) fn append(&mut self, arena: &Arena, piece: Option<(u32, u32, u32)>) {
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
pub(super) struct Counters {
    pub(super) curr_items: u64,
    pub(super) total_items: u64,
    pub(super) bytes: u64,
    pub(super) used_chunks: u64,
    pub(super) evictions: u64,
    pub(super) evicted_unfetched: u64,
    pub(super) expired_unfetched: u64,
    pub(super) reclaimed: u64,
    pub(super) get_hits: u64,
    pub(super) get_misses: u64,
    pub(super) get_expired: u64,
    pub(super) get_flushed: u64,
    pub(super) cmd_get: u64,
    pub(super) cmd_set: u64,
    pub(super) cmd_touch: u64,
    pub(super) touch_hits: u64,
    pub(super) touch_misses: u64,
    pub(super) delete_hits: u64,
    pub(super) delete_misses: u64,
    pub(super) incr_hits: u64,
    pub(super) incr_misses: u64,
    pub(super) decr_hits: u64,
    pub(super) decr_misses: u64,
    pub(super) cas_hits: u64,
    pub(super) cas_misses: u64,
    pub(super) cas_badval: u64,
}

/// Why a found item is not served.
#[derive(PartialEq, Eq)]
pub(super) enum Dead {
    Expired,
    Flushed,
}

pub(super) struct Shard {
    /// Item ids (first chunk ids), hashed by key.
    pub(super) table: HashTable<u32>,
    /// LRU list: head is the most recently used.
    pub(super) head: u32,
    pub(super) tail: u32,
    /// Free chunks owned by this shard, chained through the arena links.
    pub(super) free_head: u32,
    pub(super) free_count: u32,
    pub(super) c: Counters,
}

impl Shard {
    pub(super) fn new() -> Shard {
        Shard {
            table: HashTable::new(),
            head: NIL,
            tail: NIL,
            free_head: NIL,
            free_count: 0,
            c: Counters::default(),
        }
    }

    pub(super) fn lru_push_head(&mut self, arena: &Arena, id: u32) {
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

    pub(super) fn lru_unlink(&mut self, arena: &Arena, id: u32) {
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
    pub(super) fn free_chain(&mut self, arena: &Arena, first: u32) {
        let (last, n) = arena.chain_end(first);
        arena.set_link(last, self.free_head);
        self.free_head = first;
        self.free_count += n;
    }

    /// Takes up to `n` chunks from the free list.
    pub(super) fn take_free(&mut self, arena: &Arena, n: u32) -> Option<(u32, u32, u32)> {
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
    pub(super) fn remove(&mut self, arena: &Arena, id: u32) {
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
