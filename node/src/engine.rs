//! The engine the protocol front ends talk to: the node's storage, whatever its shape.
//!
//! Front ends parse a request, make one call here and compose the reply from the outcome; they
//! never see tiers, chunks or backend connections. The calls are async and fallible because a
//! tier may be a remote memcached or a disk; the embedded store answers at once and never fails,
//! so in the default configuration the futures are ready on first poll.

use std::future::Future;

use crate::backend::chunked::Chunked;
use crate::backend::memcached::Memcached;
use crate::l2::AsyncL2;
use crate::orchestrator::Orchestrator;
use crate::store::{
    ArithOutcome, ArithReq, Clock, DeleteOutcome, Expiry, ItemView, ReadOpts, Store, StoreOutcome, StoreReq, StoreStats,
};

/// Why a request could not be served. The node keeps running; the client gets
/// `SERVER_ERROR <message>` (binary: status 0x86, temporary failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    #[error("backend unavailable")]
    Unavailable,
    #[error("backend timeout")]
    Timeout,
    #[error("backend error: {0}")]
    Failed(&'static str),
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Storage with memcached's item semantics, as every tier and the whole engine offer it.
///
/// `read` hands the item to `f` (under the store's lock, or over the reply buffer of a remote
/// tier), so values are copied once, straight into the reply.
pub trait Backend: Send + Sync {
    fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> impl Future<Output = Result<Option<R>>> + Send
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send;
    /// `read`, answered at once if the backend can without waiting; `f` back if it cannot (then
    /// `read`). A batch of pipelined reads over memcached, whose GETs went out together, finds
    /// most replies already in: answering them here skips a chain of futures per read. By
    /// default no read is answered at once.
    fn read_now<R, F>(&self, _key: &[u8], _opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        Err(f)
    }
    fn store(&self, req: &StoreReq<'_>) -> impl Future<Output = Result<StoreOutcome>> + Send;
    fn delete(&self, key: &[u8], cas: Option<u64>) -> impl Future<Output = Result<DeleteOutcome>> + Send;
    fn invalidate(
        &self,
        key: &[u8],
        cas: Option<u64>,
        expiry: Option<Expiry>,
    ) -> impl Future<Output = Result<DeleteOutcome>> + Send;
    fn touch(&self, key: &[u8], expiry: Expiry) -> impl Future<Output = Result<bool>> + Send;
    fn arith(&self, req: &ArithReq<'_>) -> impl Future<Output = Result<ArithOutcome>> + Send;
    fn flush_all(&self, delay: i64) -> impl Future<Output = Result<()>> + Send;
}

/// The embedded store is a backend that is always ready.
impl Backend for Store {
    async fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        Ok(Store::read(self, key, opts, f))
    }
    fn read_now<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        Ok(Ok(Store::read(self, key, opts, f)))
    }
    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        Ok(Store::store(self, req))
    }
    async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        Ok(Store::delete(self, key, cas))
    }
    async fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        Ok(Store::invalidate(self, key, cas, expiry))
    }
    async fn touch(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        Ok(Store::touch(self, key, expiry))
    }
    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        Ok(Store::arith(self, req))
    }
    async fn flush_all(&self, delay: i64) -> Result<()> {
        Store::flush_all(self, delay);
        Ok(())
    }
}

/// What a stat is, for `stats reset`: a count since start (reset to 0) or a level (kept).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StatKind {
    Count,
    Level,
}

/// The node's engine: the configurations a node can run in.
pub enum Engine {
    /// The embedded memory store alone (the default).
    Memory(Store),
    /// The embedded memory store as L1 over the on-disk L2.
    Tiered(Orchestrator<Store, AsyncL2>),
    /// An external memcached as L1 (values chunked), optionally over the on-disk L2.
    Proxy(Orchestrator<Chunked<Memcached>, AsyncL2>),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            Engine::Memory($b) => $call,
            Engine::Tiered($b) => $call,
            Engine::Proxy($b) => $call,
        }
    };
}

impl Engine {
    /// [`Backend::read`], answered at once when it can be (see [`Backend::read_now`]): what the
    /// front ends call.
    pub async fn read_soon<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        match self.read_now(key, opts, f) {
            Ok(r) => r,
            Err(f) => self.read(key, opts, f).await,
        }
    }

    /// The clock that turns exptimes into expiries for this engine.
    pub fn clock(&self) -> &Clock {
        match self {
            Engine::Memory(s) => s.clock(),
            Engine::Tiered(o) => &o.tiers().clock,
            Engine::Proxy(o) => &o.tiers().clock,
        }
    }

    /// Whether every request completes without waiting (the embedded store alone), so callers
    /// may run requests to completion in place instead of keeping their futures around.
    pub fn answers_at_once(&self) -> bool {
        matches!(self, Engine::Memory(_))
    }

    /// The largest value a plain `set` may have to be written in one request to the tier, made
    /// as soon as the call starts (see `conn`'s runs of pipelined requests); `None` when writes
    /// take more (an L2 is written first).
    pub fn one_round_write_max(&self) -> Option<usize> {
        match self {
            Engine::Proxy(o) if o.tiers().l2.is_none() => Some(o.tiers().l1.inline_max()),
            _ => None,
        }
    }

    /// The external memcached L1, if this engine has one.
    pub fn memcached(&self) -> Option<&Memcached> {
        match self {
            Engine::Proxy(o) => Some(o.tiers().l1.raw()),
            _ => None,
        }
    }

    /// The embedded memory tier, if this engine has one.
    pub fn memory(&self) -> Option<&Store> {
        match self {
            Engine::Memory(s) => Some(s),
            Engine::Tiered(o) => Some(&o.tiers().l1),
            Engine::Proxy(_) => None,
        }
    }

    /// Counters of the L1 (what `stats` reports as the cache). Over memcached these are the
    /// node's command counters; item counts and evictions are memcached's own to report.
    pub fn stats(&self) -> StoreStats {
        match self {
            Engine::Proxy(o) => o.tiers().l1.stats(),
            _ => self.memory().map(Store::stats).unwrap_or_default(),
        }
    }

    /// Per-tier counters and the L2's size, for `stats`, each with its [`StatKind`].
    pub fn for_each_tier_stat(&self, f: &mut dyn FnMut(&str, u64, StatKind)) {
        use StatKind::{Count, Level};
        let mut count = |name: &str, v: u64| f(name, v, Count);
        let l2 = match self {
            Engine::Memory(_) => return,
            Engine::Tiered(o) => {
                o.tiers().stats.for_each(&mut count);
                &o.tiers().l2
            }
            Engine::Proxy(o) => {
                o.tiers().stats.for_each(&mut count);
                let c = o.tiers().l1.chunk_stats();
                f("chunked_writes", c.chunked_writes, Count);
                f("chunked_reads", c.chunked_reads, Count);
                f("chunked_broken_reads", c.broken_reads, Count);
                f("chunks_deleted", c.chunks_deleted, Count);
                f("l1_up", o.tiers().l1.raw().pool().is_up() as u64, Level);
                &o.tiers().l2
            }
        };
        if let Some(s) = l2.as_ref().and_then(|l2| l2.store().stats().ok()) {
            f("l2_bytes", s.dir_bytes, Level);
            f("l2_max_bytes", s.max_bytes, Level);
            f("l2_entries", s.entries_estimate, Level);
            f("l2_evicted", s.evicted, Count);
        }
    }

    /// Background reclaim step of the memory tier, if any.
    pub fn reclaim(&self, shard: usize, budget: usize) {
        if let Some(s) = self.memory() {
            s.reclaim(shard, budget);
        }
    }
}

impl Backend for Engine {
    async fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        dispatch!(self, b => Backend::read(b, key, opts, f).await)
    }
    fn read_now<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        dispatch!(self, b => Backend::read_now(b, key, opts, f))
    }
    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        dispatch!(self, b => Backend::store(b, req).await)
    }
    async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        dispatch!(self, b => Backend::delete(b, key, cas).await)
    }
    async fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        dispatch!(self, b => Backend::invalidate(b, key, cas, expiry).await)
    }
    async fn touch(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        dispatch!(self, b => Backend::touch(b, key, expiry).await)
    }
    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        dispatch!(self, b => Backend::arith(b, req).await)
    }
    async fn flush_all(&self, delay: i64) -> Result<()> {
        dispatch!(self, b => Backend::flush_all(b, delay).await)
    }
}
