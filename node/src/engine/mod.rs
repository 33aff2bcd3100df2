//! The engine the protocol front ends talk to: the node's storage, whatever its shape.
//!
//! Front ends parse a request, make one call here and compose the reply from the outcome; they
//! never see tiers, chunks or backend connections. The calls are async and fallible because a
//! tier may be a remote memcached or a disk; the embedded store answers at once and never fails,
//! so in the default configuration the futures are ready on first poll.
//!
//! Every mode has the same shape (see [`build`]): an [`L1`] under the orchestrator, optionally
//! over the L2, and on top the [`Hook`]s, the one place where a layer that applies to every mode
//! goes in.

mod ahead;
pub mod build;
pub mod hook;
mod l1;

use std::sync::Arc;

pub use ahead::{BurstScope, ReadAhead};
pub use build::{build, Stack};
pub use hook::{Change, Hook, Mutation, Origin};
pub use l1::L1;

use crate::backend::slabs::Slabs;
use crate::l2::AsyncL2;
use crate::model::{
    ArithOutcome, ArithReq, Backend, Clock, DeleteOutcome, Expiry, ItemView, ReadOpts, Result, StatKind, StoreOutcome,
    StoreReq, StoreStats,
};
use crate::orchestrator::Orchestrator;
use crate::store::Store;

/// The tiers of every mode.
pub type Tiers = Orchestrator<L1, AsyncL2>;

/// The node's engine: the tiers under one policy (normal or batch), seen by one kind of client
/// ([`Origin`]), with the hooks on top.
#[derive(Clone)]
pub struct Engine {
    tiers: Tiers,
    hooks: Arc<[Arc<dyn Hook>]>,
    origin: Origin,
}

impl Engine {
    pub(crate) fn new(tiers: Tiers, hooks: Vec<Arc<dyn Hook>>) -> Engine {
        Engine {
            tiers,
            hooks: hooks.into(),
            origin: Origin::Client,
        }
    }

    /// The same tiers under the batch listener's policy (see [`Orchestrator::batch_view`]).
    pub fn batch_view(&self) -> Engine {
        Engine {
            tiers: self.tiers.batch_view(),
            hooks: self.hooks.clone(),
            origin: Origin::Batch,
        }
    }

    /// The same stack for the replica-apply path: its mutations carry [`Origin::Replica`], which
    /// the publisher does not publish again.
    pub fn replica_view(&self) -> Engine {
        Engine {
            tiers: self.tiers.clone(),
            hooks: self.hooks.clone(),
            origin: Origin::Replica,
        }
    }

    /// The hooks, for shutdown to flush.
    pub fn hooks(&self) -> &[Arc<dyn Hook>] {
        &self.hooks
    }

    fn tell(&self, key: &[u8], change: Change) {
        let m = Mutation {
            origin: self.origin,
            key,
            change,
        };
        for h in self.hooks.iter() {
            h.mutated(&m);
        }
    }

    /// [`Backend::read`], answered at once when it can be (see [`Backend::read_now`]): what the
    /// front ends call.
    #[inline]
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

    fn l1(&self) -> &L1 {
        &self.tiers.tiers().l1
    }

    fn has_l2(&self) -> bool {
        self.tiers.tiers().l2.is_some()
    }

    /// The clock that turns exptimes into expiries for this engine.
    pub fn clock(&self) -> &Clock {
        &self.tiers.tiers().clock
    }

    /// Whether every request completes without waiting (the embedded store alone), so callers
    /// may run requests to completion in place instead of keeping their futures around.
    pub fn answers_at_once(&self) -> bool {
        matches!(self.l1(), L1::Memory(_)) && !self.has_l2()
    }

    /// The largest value a plain `set` may have to be written in one request to the tier, made
    /// as soon as the call starts (see `conn`'s runs of pipelined requests); `None` when writes
    /// take more (an L2 is written first).
    pub fn one_round_write_max(&self) -> Option<usize> {
        match self.l1() {
            L1::Memcached(c) if !self.has_l2() => Some(c.inline_max()),
            _ => None,
        }
    }

    /// The slab balancer of the L1 memcached, if there is one (see `backend::slabs`).
    pub fn slabs(&self) -> Option<&Arc<Slabs>> {
        match self.l1() {
            L1::Memcached(c) => c.raw().slabs(),
            L1::Memory(_) => None,
        }
    }

    /// The embedded memory tier, if this engine has one.
    fn memory(&self) -> Option<&Store> {
        match self.l1() {
            L1::Memory(s) => Some(s),
            L1::Memcached(_) => None,
        }
    }

    /// Counters of the L1 (what `stats` reports as the cache). Over memcached these are the
    /// node's command counters; item counts and evictions are memcached's own to report.
    pub fn stats(&self) -> StoreStats {
        match self.l1() {
            L1::Memory(s) => s.stats(),
            L1::Memcached(c) => c.stats(),
        }
    }

    /// Per-tier counters and the L2's size, for `stats`, each with its [`StatKind`]. The
    /// embedded store alone has one tier and reports none.
    pub fn for_each_tier_stat(&self, f: &mut dyn FnMut(&str, u64, StatKind)) {
        use StatKind::{Count, Level};
        let t = self.tiers.tiers();
        if self.answers_at_once() {
            return;
        }
        let mut count = |name: &str, v: u64| f(name, v, Count);
        t.stats.for_each(&mut count);
        if let L1::Memcached(l1) = &t.l1 {
            let c = l1.chunk_stats();
            f("chunked_writes", c.chunked_writes, Count);
            f("chunked_reads", c.chunked_reads, Count);
            f("chunked_broken_reads", c.broken_reads, Count);
            f("chunks_deleted", c.chunks_deleted, Count);
            f("l1_up", l1.raw().links().is_up() as u64, Level);
            if let Some(slabs) = l1.raw().slabs() {
                f("l1_slab_pages_moved", slabs.pages_moved(), Count);
                f("l1_slab_writes_waited", slabs.writes_waited(), Count);
            }
        }
        if let Some(s) = t.l2.as_ref().and_then(|l2| l2.store().stats().ok()) {
            f("l2_bytes", s.dir_bytes, Level);
            f("l2_max_bytes", s.max_bytes, Level);
            f("l2_entries", s.entries_estimate, Level);
            f("l2_evicted", s.evicted, Count);
        }
    }

    /// Shutdown's last step, once no request can reach the engine: the hooks flush what they
    /// queued, the L2 finishes its queue and syncs, and the links to memcached stop.
    pub async fn close(&self) {
        for h in self.hooks.iter() {
            h.flush().await;
        }
        let t = self.tiers.tiers();
        if let Some(l2) = &t.l2 {
            if let Err(e) = l2.close().await {
                tracing::warn!(error = %e, "the l2 did not close cleanly");
            }
        }
        if let L1::Memcached(c) = &t.l1 {
            c.raw().close();
        }
    }

    /// Background reclaim step of the memory tier, if any.
    pub fn reclaim(&self, shard: usize, budget: usize) {
        if let Some(s) = self.memory() {
            s.reclaim(shard, budget);
        }
    }
}

/// Every call goes to the tiers; each successful mutation is then told to the hooks.
impl Backend for Engine {
    async fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        let r = self.tiers.read(key, opts, f).await;
        if let (Ok(Some(_)), Some(expiry)) = (&r, opts.touch) {
            self.tell(key, Change::Touched { expiry });
        }
        r
    }
    #[inline]
    fn read_now<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        let r = self.tiers.read_now(key, opts, f)?;
        if let (Ok(Some(_)), Some(expiry)) = (&r, opts.touch) {
            self.tell(key, Change::Touched { expiry });
        }
        Ok(r)
    }
    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        let r = self.tiers.store(req).await;
        if let Ok(StoreOutcome::Stored { cas }) = r {
            self.tell(req.key, Change::Stored { mode: req.mode, cas });
        }
        r
    }
    async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        let r = self.tiers.delete(key, cas).await;
        if let Ok(DeleteOutcome::Deleted) = r {
            self.tell(key, Change::Deleted);
        }
        r
    }
    async fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        let r = self.tiers.invalidate(key, cas, expiry).await;
        if let Ok(DeleteOutcome::Deleted) = r {
            self.tell(key, Change::Invalidated);
        }
        r
    }
    async fn touch(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        let r = self.tiers.touch(key, expiry).await;
        if let Ok(true) = r {
            self.tell(key, Change::Touched { expiry });
        }
        r
    }
    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        let r = self.tiers.arith(req).await;
        if let Ok(ArithOutcome::Done { value, cas, .. }) = r {
            self.tell(req.key, Change::Counted { value, cas });
        }
        r
    }
    async fn flush_all(&self, delay: i64) -> Result<()> {
        let r = self.tiers.flush_all(delay).await;
        if r.is_ok() {
            self.tell(b"", Change::Flushed { delay });
        }
        r
    }
}
