//! The chunk arena: one preallocated block of memory cut into equal chunks.
//!
//! Ownership rules (what makes the `unsafe` here sound):
//! - a chunk is owned by exactly one party at a time: the never-used pool (`fresh`), a shard's
//!   free list, a shard's item, or a thread that took it to fill a new item;
//! - ownership moves only under a shard lock or through the `fresh` atomic, so the memory writes of
//!   the previous owner happen-before the reads of the next;
//! - items are read and changed only under the lock of the shard whose table holds them.

use std::sync::atomic::{AtomicU32, Ordering};

/// "No chunk": the end of a chain, or an empty list.
pub(crate) const NIL: u32 = u32::MAX;

/// Item header bits.
pub(crate) const FETCHED: u8 = 1;
pub(crate) const STALE: u8 = 2;
pub(crate) const TOKEN_SENT: u8 = 4;

/// The fixed header at the start of an item's first chunk.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Header {
    pub hash: u64,
    pub cas: u64,
    /// Hybrid logical clock of the write, kept for replication (last writer wins).
    pub version: u64,
    /// LRU neighbours (item ids = first chunk ids); `prev` is towards the head (newest).
    pub prev: u32,
    pub next: u32,
    /// Absolute expiry in server seconds, 0 = never.
    pub expiry: u32,
    /// Last LRU bump (server seconds).
    pub time: u32,
    pub flags: u32,
    pub value_len: u32,
    /// Zone that made the write, with `version`.
    pub zone: u16,
    pub key_len: u8,
    pub bits: u8,
}

impl Header {
    /// The write's version, kept as two fields so the header packs into 56 bytes.
    pub fn version(&self) -> crate::model::Version {
        crate::model::Version {
            hlc: self.version,
            zone: self.zone,
        }
    }
}

pub(crate) const HEADER: usize = std::mem::size_of::<Header>();

pub(crate) struct Arena {
    base: *mut u8,
    bytes: usize,
    chunk_size: usize,
    nchunks: u32,
    /// Next chunk of a chain (item data or a free list).
    links: Box<[AtomicU32]>,
    /// Chunks at or after this index have never been used.
    fresh: AtomicU32,
}

// SAFETY: the raw memory is shared under the ownership rules in the module comment.
unsafe impl Send for Arena {}
unsafe impl Sync for Arena {}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this length; nothing refers to it any more.
        unsafe { libc::munmap(self.base.cast(), self.bytes) };
    }
}

impl Arena {
    /// Reserves `bytes` of memory as chunks of `chunk_size`. The memory is an anonymous mapping,
    /// so the resident size grows only as chunks are first used, and never past `bytes`.
    pub fn new(bytes: usize, chunk_size: usize) -> Arena {
        assert!(
            chunk_size >= 64 && chunk_size.is_multiple_of(8),
            "chunk size must be a multiple of 8, at least 64"
        );
        let nchunks = (bytes / chunk_size).clamp(2, (NIL - 1) as usize) as u32;
        let bytes = nchunks as usize * chunk_size;
        // SAFETY: a fresh private anonymous mapping; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "cannot map the {bytes} byte arena");
        let base = base.cast::<u8>();
        // Zeroed lazily by the OS like the arena: a chunk's link is written when the chunk is
        // first handed out (`take_fresh`), never read before.
        // SAFETY: an all-zero AtomicU32 is a valid 0.
        let links = unsafe { Box::<[AtomicU32]>::new_zeroed_slice(nchunks as usize).assume_init() };
        Arena {
            base,
            bytes,
            chunk_size,
            nchunks,
            links,
            fresh: AtomicU32::new(0),
        }
    }

    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    pub fn nchunks(&self) -> u32 {
        self.nchunks
    }

    /// Chunks an item with this key and value length occupies.
    pub fn chunks_for(&self, key_len: usize, value_len: usize) -> usize {
        (HEADER + key_len + value_len).div_ceil(self.chunk_size)
    }

    #[inline]
    pub fn link(&self, id: u32) -> u32 {
        self.links[id as usize].load(Ordering::Relaxed)
    }

    #[inline]
    pub fn set_link(&self, id: u32, next: u32) {
        self.links[id as usize].store(next, Ordering::Relaxed)
    }

    #[inline]
    fn chunk_ptr(&self, id: u32) -> *mut u8 {
        debug_assert!(id < self.nchunks);
        // SAFETY: id < nchunks, so the offset is inside the allocation.
        unsafe { self.base.add(id as usize * self.chunk_size) }
    }

    /// The header of the item whose first chunk is `id`.
    ///
    /// # Safety
    /// The caller owns the item (see the module comment) and holds no other reference to it.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn header(&self, id: u32) -> &mut Header {
        // SAFETY: chunks are 8-aligned in a page-aligned block, and HEADER < chunk_size; the caller
        // guarantees exclusive access.
        unsafe { &mut *(self.chunk_ptr(id) as *mut Header) }
    }

    /// Takes up to `n` never-used chunks, chained; returns (first, last, count).
    pub fn take_fresh(&self, n: u32) -> Option<(u32, u32, u32)> {
        if n == 0 {
            return None;
        }
        let mut cur = self.fresh.load(Ordering::Relaxed);
        loop {
            if cur >= self.nchunks {
                return None;
            }
            let take = n.min(self.nchunks - cur);
            match self
                .fresh
                .compare_exchange_weak(cur, cur + take, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    for id in cur..cur + take - 1 {
                        self.set_link(id, id + 1);
                    }
                    self.set_link(cur + take - 1, NIL);
                    return Some((cur, cur + take - 1, take));
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Calls `f` with the pieces of the data range `[offset, offset + len)` of the chain at `first`
    /// (offset 0 is the first byte after the header).
    ///
    /// # Safety
    /// The caller owns the chain or holds the lock of the shard whose item it is.
    pub unsafe fn for_each_piece(&self, first: u32, offset: usize, len: usize, mut f: impl FnMut(*mut u8, usize)) {
        let mut pos = HEADER + offset;
        let mut id = first;
        while pos >= self.chunk_size {
            pos -= self.chunk_size;
            id = self.link(id);
        }
        let mut left = len;
        while left > 0 {
            let n = (self.chunk_size - pos).min(left);
            // SAFETY: pos + n <= chunk_size, inside chunk `id`.
            f(unsafe { self.chunk_ptr(id).add(pos) }, n);
            left -= n;
            if left > 0 {
                id = self.link(id);
                pos = 0;
            }
        }
    }

    /// The part of the `len` data bytes at `offset` that lies in chain `first`'s first chunk
    /// (empty when they start further on).
    ///
    /// # Safety
    /// As [`Arena::for_each_piece`].
    pub unsafe fn first_piece(&self, first: u32, offset: usize, len: usize) -> &[u8] {
        let pos = HEADER + offset;
        if pos >= self.chunk_size {
            return &[];
        }
        let n = (self.chunk_size - pos).min(len);
        // SAFETY: pos + n <= chunk_size, inside chunk `first`; forwarded from the caller.
        unsafe { std::slice::from_raw_parts(self.chunk_ptr(first).add(pos), n) }
    }

    /// Copies `bytes` into the chain at data offset `offset`.
    ///
    /// # Safety
    /// As [`Arena::for_each_piece`], with exclusive access.
    pub unsafe fn write(&self, first: u32, offset: usize, bytes: &[u8]) {
        let mut done = 0;
        // SAFETY: forwarded from the caller.
        unsafe {
            self.for_each_piece(first, offset, bytes.len(), |p, n| {
                std::ptr::copy_nonoverlapping(bytes.as_ptr().add(done), p, n);
                done += n;
            })
        }
    }

    /// Copies the data range `[from, from + len)` of chain `src` to offset `to` of chain `dst`.
    ///
    /// # Safety
    /// The caller may read `src` and owns `dst`; the chains differ.
    pub unsafe fn copy_between(&self, src: u32, from: usize, len: usize, dst: u32, to: usize) {
        let mut at = to;
        // SAFETY: forwarded from the caller.
        unsafe {
            self.for_each_piece(src, from, len, |p, n| {
                self.write(dst, at, std::slice::from_raw_parts(p, n));
                at += n;
            })
        }
    }

    /// Whether the item at `first` has key `key`.
    ///
    /// # Safety
    /// The caller may read the item.
    pub unsafe fn key_eq(&self, first: u32, key: &[u8]) -> bool {
        // SAFETY: forwarded from the caller.
        let h = unsafe { self.header(first) };
        if h.key_len as usize != key.len() {
            return false;
        }
        let mut at = 0;
        let mut same = true;
        // SAFETY: forwarded from the caller.
        unsafe {
            self.for_each_piece(first, 0, key.len(), |p, n| {
                same = same && std::slice::from_raw_parts(p, n) == &key[at..at + n];
                at += n;
            })
        };
        same
    }

    /// The last chunk of a chain and its length.
    pub fn chain_end(&self, first: u32) -> (u32, u32) {
        let mut id = first;
        let mut n = 1;
        loop {
            let next = self.link(id);
            if next == NIL {
                return (id, n);
            }
            id = next;
            n += 1;
        }
    }
}

// SAFETY: `for_each_piece` hands out exactly the requested bytes of the chain; callers of
// `Value::pieces` hold the item's shard lock while the value is read.
unsafe impl crate::model::PieceSource for Arena {
    unsafe fn for_each_piece(&self, first: u32, offset: usize, len: usize, f: &mut dyn FnMut(&[u8])) {
        // SAFETY: forwarded from the caller.
        unsafe { Arena::for_each_piece(self, first, offset, len, |p, n| f(std::slice::from_raw_parts(p, n))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fits_and_pieces_cross_chunks() {
        assert_eq!(HEADER, 56);
        let a = Arena::new(64 * 100, 64);
        let (first, _, n) = a.take_fresh(4).unwrap();
        assert_eq!(n, 4);
        let data: Vec<u8> = (0..(4 * 64 - HEADER) as u32).map(|i| i as u8).collect();
        // SAFETY: we own the fresh chain.
        unsafe {
            a.write(first, 0, &data);
            let mut back = Vec::new();
            a.for_each_piece(first, 0, data.len(), |p, n| {
                back.extend_from_slice(std::slice::from_raw_parts(p, n))
            });
            assert_eq!(back, data);
        }
        assert_eq!(a.chain_end(first), (first + 3, 4));
    }
}
