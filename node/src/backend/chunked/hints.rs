//! Which keys this node wrote in chunks, and how: a small `set` over one of them cleans its
//! chunks up, and a read of one asks for its chunks together with its index.

use super::*;

/// Keys (by hash) whose current value this node wrote in chunks.
///
/// A plain `set` of a small value would otherwise have to read the old index first, just in case
/// it names chunks to clean up: one more memcached request on the most common write. A node is
/// its memcached's only writer, so what it wrote itself is what is there; a key it does not know
/// as chunked (after a node restart, or written by another client) is overwritten without the
/// read, and the chunks of the value it replaces, if any, are left to memcached's LRU (they
/// are unreachable). Hash collisions only cost a read. Past [`HINTS_MAX`] keys the set stops
/// growing and every small set reads the old index again.
///
/// Each key keeps the layout of its value (token and sizes), so a read sends the GETs of its
/// chunks with, not after, the GET of its index: one round trip to memcached instead of two. The
/// index decides as ever: chunks read under a layout that is no longer the index's are dropped
/// and read again.
pub(super) struct Hints {
    pub(super) shards: Box<[parking_lot::Mutex<HintSet>]>,
    pub(super) full: AtomicBool,
    /// A layout was ever noted: until then reads skip the lookup (a node serving small values
    /// only never pays for it).
    pub(super) any: AtomicBool,
}

/// Key hashes, used as their own hash: they are well mixed already (see `key_hash`), and
/// hashing them again with std's SipHash would cost every small set for nothing.
pub(super) type HintSet = HashMap<u64, Layout, std::hash::BuildHasherDefault<Prehashed>>;

/// How a chunked value lies in memcached: what its chunks' keys and checks need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) token: u64,
    pub(super) total_len: u32,
    pub(super) chunk_size: u32,
}

impl Layout {
    pub(super) fn of(env: &Envelope) -> Layout {
        Layout {
            token: env.token,
            total_len: env.total_len,
            chunk_size: env.chunk_size,
        }
    }

    /// Whether `env` is the value this layout was noted for.
    pub(super) fn is(&self, env: &Envelope) -> bool {
        *self == Layout::of(env)
    }
}

/// The hasher of a [`HintSet`]: a `u64` key is its own hash.
#[derive(Default)]
pub(super) struct Prehashed(u64);

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

/// Most chunked keys remembered (24 bytes each, plus the table's overhead). Each stands for at
/// least one chunk of memcached memory, so this covers 16 GiB of chunked values.
pub(super) const HINTS_MAX: usize = 1 << 20;
pub(super) const HINT_SHARDS: usize = 16;

impl Hints {
    pub(super) fn new() -> Hints {
        Hints {
            shards: (0..HINT_SHARDS)
                .map(|_| parking_lot::Mutex::new(HintSet::default()))
                .collect(),
            full: AtomicBool::new(false),
            any: AtomicBool::new(false),
        }
    }

    pub(super) fn shard(&self, h: u64) -> &parking_lot::Mutex<HintSet> {
        // Middle bits: the table inside uses the low ones for the bucket and the top seven to
        // tell keys apart, and a shard's keys would share whichever bits picked it.
        &self.shards[(h >> 32) as usize % HINT_SHARDS]
    }

    pub(super) fn may_be_chunked(&self, h: u64) -> bool {
        self.full.load(Ordering::Relaxed) || self.shard(h).lock().contains_key(&h)
    }

    /// The layout this node last wrote under the key, if it wrote it chunked.
    pub(super) fn layout(&self, key: &[u8]) -> Option<Layout> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let h = key_hash(key);
        self.shard(h).lock().get(&h).copied()
    }

    /// Notes what was just written under the key: `None` for a value that is not chunked.
    pub(super) fn note(&self, h: u64, layout: Option<Layout>) {
        let mut shard = self.shard(h).lock();
        match layout {
            None => {
                shard.remove(&h);
            }
            Some(l) if shard.len() < HINTS_MAX / HINT_SHARDS || shard.contains_key(&h) => {
                self.any.store(true, Ordering::Relaxed);
                shard.insert(h, l);
            }
            Some(_) => self.full.store(true, Ordering::Relaxed),
        }
    }
}
