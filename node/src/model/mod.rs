//! The node's shared vocabulary, owned by no backend: keys and values, flags, expiry and CAS;
//! the [`Version`] replication orders writes by; the request and outcome types; the [`Backend`]
//! trait every tier and the whole stack implement; and the error that keeps its cause.
//!
//! The embedded store, the memcached backend, chunking, the L2 and the orchestrator depend on
//! this module and not on one another's internals.

mod backend;
mod clock;
mod version;

pub use backend::{Backend, BackendError, Result};
pub use clock::{Clock, REALTIME_MAXDELTA};
pub use version::{Hlc, Version};

/// memcached's item-size rule, shared with the codec's planner (see [`riven_memcache::item_size_ok`]).
pub use riven_memcache::item_size_ok;

/// An absolute expiry in server seconds (see [`Clock`]); 0 means never.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expiry(pub u32);

impl Expiry {
    pub const NEVER: Expiry = Expiry(0);
}

/// Storage modes of `set`/`add`/`replace`/`append`/`prepend` (and `ms` `M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
}

/// A storage request.
#[derive(Clone, Copy, Debug)]
pub struct StoreReq<'a> {
    pub mode: Mode,
    pub key: &'a [u8],
    pub flags: u32,
    pub expiry: Expiry,
    pub value: &'a [u8],
    /// Store only if the item's CAS equals this (memcached `cas`, `ms C`, binary cas != 0).
    pub cas: Option<u64>,
    /// `ms I`: with `cas`, a CAS lower than the item's is accepted but the item is marked stale.
    pub invalidate: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored {
        cas: u64,
    },
    NotStored,
    Exists,
    NotFound,
    /// The item is larger than `item_size_max` allows (see [`item_size_ok`]).
    TooLarge,
    /// Memory could not be found even after evicting.
    OutOfMemory,
}

/// How a read treats the item (memcached `get`/`gat`, `mg` flags).
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOpts {
    /// Update the expiry on a hit (`gat`, `mg T`, binary touch/GAT).
    pub touch: Option<Expiry>,
    /// Do not bump in the LRU, nor mark as fetched nor update last access (`mg u`).
    pub no_bump: bool,
    /// `mg N`: on a miss, create an empty stub item with this expiry; the caller wins.
    pub vivify: Option<Expiry>,
    /// `mg R`: if the remaining TTL (seconds) is below this, the caller wins the recache.
    pub recache_below: Option<u32>,
    /// `R` came before `T` in the request: memcached applies the flags in order, so `R` is
    /// checked against the TTL before the touch (after it otherwise).
    pub recache_before_touch: bool,
    /// Look without any effect (`me`): no win token handed out, no access recorded, not counted
    /// as a get.
    pub peek: bool,
}

/// A found item, as seen under the shard lock.
pub struct ItemView<'a> {
    pub flags: u32,
    pub cas: u64,
    /// Remaining TTL in seconds, -1 for never, as it was before this read's touch: memcached's
    /// `mg k t T30` shows the old TTL (a `t` after the `T` shows the new one, which the caller
    /// knows).
    pub ttl: i64,
    /// Whether the item had been fetched before this request (`mg h`).
    pub fetched_before: bool,
    /// Seconds since last access, before this request (`mg l`).
    pub idle_secs: u32,
    /// Marked stale by `md I` or `ms I` (`mg X`).
    pub stale: bool,
    /// This request won the right to recache (`mg W`).
    pub win: bool,
    /// Another client already holds the win (`mg Z`).
    pub win_taken: bool,
    /// The version of the write that made this value ([`Version::NONE`] where none was kept).
    pub version: Version,
    /// The value, possibly spread over several chunks.
    pub value: Value<'a>,
}

/// An item's value: pieces of a store's memory (the embedded store's chunks), one slice (a reply
/// buffer of a remote tier), or shared buffers (chunks read from memcached, which a reply can
/// send as they are).
pub struct Value<'a> {
    inner: ValueInner<'a>,
}

enum ValueInner<'a> {
    Pieces(Pieces<'a>),
    Slice(&'a [u8]),
    Shared(&'a [bytes::Bytes], usize),
}

/// A value spread over a store's memory: its first piece, at hand, and the rest read through the
/// store (see [`PieceSource`]). Most values fit their first chunk, so reading one calls no
/// function of the store's.
#[derive(Clone, Copy)]
struct Pieces<'a> {
    head: &'a [u8],
    src: &'a dyn PieceSource,
    first: u32,
    offset: usize,
    len: usize,
}

/// A store whose values lie in pieces: the embedded store's arena. The model knows nothing of its
/// layout; `first` and `offset` mean what the store says they mean.
///
/// # Safety
/// An implementation must hand `f` exactly `len` bytes, in order, of the value at `(first,
/// offset)`, and only while those bytes cannot change (see [`Value::pieces`]).
pub unsafe trait PieceSource: Sync {
    /// Calls `f` with each piece of the `len` bytes at `(first, offset)`, in order.
    ///
    /// # Safety
    /// The caller guarantees what [`Value::pieces`] requires.
    unsafe fn for_each_piece(&self, first: u32, offset: usize, len: usize, f: &mut dyn FnMut(&[u8]));
}

impl<'a> Value<'a> {
    /// A value of `len` bytes at `(first, offset)` in `src`, whose first `head.len()` bytes are
    /// `head`.
    ///
    /// # Safety
    /// Those bytes stay valid and unchanged for `'a` (the embedded store makes a view only while
    /// it holds the item's shard lock, and the view does not outlive the lock), and `head` is
    /// their start.
    pub unsafe fn pieces(head: &'a [u8], src: &'a dyn PieceSource, first: u32, offset: usize, len: usize) -> Value<'a> {
        Value {
            inner: ValueInner::Pieces(Pieces {
                head,
                src,
                first,
                offset,
                len,
            }),
        }
    }

    /// A value held in one contiguous buffer.
    pub fn slice(s: &'a [u8]) -> Value<'a> {
        Value {
            inner: ValueInner::Slice(s),
        }
    }

    /// A value made of `pieces`, in order.
    pub fn shared(pieces: &'a [bytes::Bytes]) -> Value<'a> {
        let len = pieces.iter().map(|p| p.len()).sum();
        Value {
            inner: ValueInner::Shared(pieces, len),
        }
    }

    /// The shared buffers the value is made of, if it is (see [`Value::shared`]).
    pub fn shared_pieces(&self) -> Option<&'a [bytes::Bytes]> {
        match self.inner {
            ValueInner::Shared(p, _) => Some(p),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match &self.inner {
            ValueInner::Pieces(p) => p.len,
            ValueInner::Slice(s) => s.len(),
            ValueInner::Shared(_, len) => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends the value's bytes to `out`.
    #[inline]
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        // The common case (a value in one slice) without the general walk.
        if let ValueInner::Slice(s) = self.inner {
            out.extend_from_slice(s);
            return;
        }
        out.reserve(self.len());
        self.for_each(|s| out.extend_from_slice(s));
    }
    /// Calls `f` with each piece of the value, in order.
    #[inline]
    pub fn for_each(&self, mut f: impl FnMut(&[u8])) {
        match &self.inner {
            ValueInner::Pieces(p) => {
                if !p.head.is_empty() {
                    f(p.head);
                }
                let done = p.head.len();
                if done < p.len {
                    // SAFETY: `Value::pieces` was promised the bytes stay valid for 'a.
                    unsafe { p.src.for_each_piece(p.first, p.offset + done, p.len - done, &mut f) }
                }
            }
            ValueInner::Slice(s) => f(s),
            ValueInner::Shared(pieces, _) => pieces.iter().for_each(|p| f(p)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    Exists,
}

/// An arithmetic request (`incr`/`decr`, `ma`, binary INCREMENT/DECREMENT).
#[derive(Clone, Copy, Debug)]
pub struct ArithReq<'a> {
    pub key: &'a [u8],
    pub incr: bool,
    pub delta: u64,
    pub cas: Option<u64>,
    /// On a miss, create the item with this initial value and expiry (`ma N J`, binary).
    pub vivify: Option<(u64, Expiry)>,
    /// On success, set the expiry (`ma T`).
    pub touch: Option<Expiry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOutcome {
    /// The new value, the new CAS and the remaining TTL (-1 never); `created` when the item
    /// did not exist and autovivify made it (meta `ma N`, binary incr with an initial value).
    Done {
        value: u64,
        cas: u64,
        ttl: i64,
        created: bool,
    },
    NotFound,
    /// The item's value is not a decimal number.
    NonNumeric,
    Exists,
    NotStored,
    OutOfMemory,
}

/// What a stat is, for `stats reset`: a count since start (reset to 0) or a level (kept).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StatKind {
    Count,
    Level,
}

/// Counters reported by `stats`.
#[derive(Clone, Copy, Debug, Default)]
pub struct StoreStats {
    pub curr_items: u64,
    pub total_items: u64,
    /// Bytes of key + value held.
    pub bytes: u64,
    pub evictions: u64,
    pub expired_unfetched: u64,
    pub evicted_unfetched: u64,
    pub reclaimed: u64,
    pub get_hits: u64,
    pub get_misses: u64,
    pub get_expired: u64,
    pub get_flushed: u64,
    pub cmd_get: u64,
    pub cmd_set: u64,
    pub cmd_touch: u64,
    pub touch_hits: u64,
    pub touch_misses: u64,
    pub delete_hits: u64,
    pub delete_misses: u64,
    pub incr_hits: u64,
    pub incr_misses: u64,
    pub decr_hits: u64,
    pub decr_misses: u64,
    pub cas_hits: u64,
    pub cas_misses: u64,
    pub cas_badval: u64,
    pub total_chunks: u64,
    pub used_chunks: u64,
    pub chunk_size: u64,
}
