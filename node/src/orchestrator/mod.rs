//! The tier policy: L1 only, or L1 + L2 with read-through and backfill; and the batch policy of
//! the bulk-load listener. It takes backends and returns outcomes; it knows nothing of sockets,
//! protocols or chunks.
//!
//! The invariant every branch keeps: **L1 never holds a value older than L2's.** L1 may be newer
//! (a write that reached L1 but not L2), which costs at most a value a later L1 eviction forgets;
//! the reverse would make readers see a value that was already overwritten.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;

use crate::counter::Counter;
use crate::l2::{AsyncL2, L2Entry, L2Error};
use crate::model::{
    ArithOutcome, ArithReq, Clock, DeleteOutcome, Expiry, ItemView, Mode, ReadOpts, StoreOutcome, StoreReq, Value,
};
use crate::model::{Backend, BackendError, Result};
use crate::model::{Hlc, Version};

/// The L2 as the orchestrator needs it. [`AsyncL2`] is the real one; tests script a fake.
pub trait ColdTier: Send + Sync {
    fn get(&self, key: &[u8]) -> impl Future<Output = std::result::Result<Option<L2Entry>, L2Error>> + Send;
    fn set(&self, key: &[u8], entry: L2Entry) -> impl Future<Output = std::result::Result<(), L2Error>> + Send;
    fn delete(&self, key: &[u8]) -> impl Future<Output = std::result::Result<bool, L2Error>> + Send;
    fn touch(&self, key: &[u8], expiry_unix: u64) -> impl Future<Output = std::result::Result<bool, L2Error>> + Send;
    fn flush_all(&self) -> impl Future<Output = std::result::Result<(), L2Error>> + Send;
}

impl ColdTier for AsyncL2 {
    async fn get(&self, key: &[u8]) -> std::result::Result<Option<L2Entry>, L2Error> {
        AsyncL2::get(self, Bytes::copy_from_slice(key)).await
    }
    async fn set(&self, key: &[u8], entry: L2Entry) -> std::result::Result<(), L2Error> {
        AsyncL2::set(self, Bytes::copy_from_slice(key), entry).await
    }
    async fn delete(&self, key: &[u8]) -> std::result::Result<bool, L2Error> {
        AsyncL2::delete(self, Bytes::copy_from_slice(key)).await
    }
    async fn touch(&self, key: &[u8], expiry_unix: u64) -> std::result::Result<bool, L2Error> {
        AsyncL2::touch(self, Bytes::copy_from_slice(key), expiry_unix).await
    }
    async fn flush_all(&self) -> std::result::Result<(), L2Error> {
        AsyncL2::flush_all(self).await
    }
}

/// Counters per tier, for `stats`.
#[derive(Debug, Default)]
pub struct TierStats {
    pub l1_hits: Counter,
    pub l1_misses: Counter,
    pub l1_errors: Counter,
    pub l2_hits: Counter,
    pub l2_misses: Counter,
    pub l2_errors: Counter,
    pub backfills: Counter,
}

impl TierStats {
    fn inc(c: &Counter) {
        c.inc();
    }

    pub fn for_each(&self, f: &mut dyn FnMut(&str, u64)) {
        let l = |c: &Counter| c.get();
        f("l1_hits", l(&self.l1_hits));
        f("l1_misses", l(&self.l1_misses));
        f("l1_errors", l(&self.l1_errors));
        f("l2_hits", l(&self.l2_hits));
        f("l2_misses", l(&self.l2_misses));
        f("l2_errors", l(&self.l2_errors));
        f("l2_backfills", l(&self.backfills));
    }
}

/// The tiers, shared by the normal and the batch view.
pub struct Tiers<L1, L2> {
    pub l1: L1,
    pub l2: Option<L2>,
    pub clock: Clock,
    /// Versions of the writes this layer makes to L2 itself (plain sets go to L2 first).
    pub versions: Arc<Hlc>,
    /// Whether reads count L1 hits and misses (see [`Orchestrator::without_l1_counts`]).
    count_l1: bool,
    pub stats: TierStats,
}

/// A view of the tiers with one policy: normal, or batch (bulk loads).
pub struct Orchestrator<L1, L2> {
    tiers: Arc<Tiers<L1, L2>>,
    batch: bool,
}

impl<L1, L2> Clone for Orchestrator<L1, L2> {
    fn clone(&self) -> Self {
        Orchestrator {
            tiers: self.tiers.clone(),
            batch: self.batch,
        }
    }
}

fn l2_failed(e: L2Error) -> BackendError {
    tracing::warn!(error = %e, "l2 request failed");
    BackendError::failed_by("l2 storage error", e)
}

impl<L1: Backend + 'static, L2: ColdTier + 'static> Orchestrator<L1, L2> {
    pub fn new(l1: L1, l2: Option<L2>, clock: Clock, versions: Arc<Hlc>) -> Orchestrator<L1, L2> {
        Orchestrator {
            tiers: Arc::new(Tiers {
                l1,
                l2,
                clock,
                versions,
                count_l1: true,
                stats: TierStats::default(),
            }),
            batch: false,
        }
    }

    /// The same orchestrator, not counting L1 hits and misses: over the embedded store alone they
    /// are the store's own `get_hits` and `get_misses`, and counting them again costs every
    /// read. Only before the orchestrator is shared (a view or clone exists): otherwise a no-op.
    pub fn without_l1_counts(mut self) -> Self {
        if let Some(t) = Arc::get_mut(&mut self.tiers) {
            t.count_l1 = false;
        }
        self
    }

    /// The same tiers under the batch policy: writes go to L2 and only *replace* in L1, and reads
    /// do not backfill, so a bulk load or warm-up job does not push the working set out of L1.
    pub fn batch_view(&self) -> Orchestrator<L1, L2> {
        Orchestrator {
            tiers: self.tiers.clone(),
            batch: true,
        }
    }

    pub fn tiers(&self) -> &Tiers<L1, L2> {
        &self.tiers
    }

    /// An L2 entry of a write with `version` (a new one when `None`).
    fn entry(&self, value: &[u8], flags: u32, expiry: Expiry, version: Option<Version>) -> L2Entry {
        L2Entry {
            value: Bytes::copy_from_slice(value),
            flags,
            expiry: self.tiers.clock.expiry_to_unix(expiry),
            cas: 0,
            version: version.unwrap_or_else(|| self.tiers.versions.tick()),
        }
    }

    /// Copies L1's current value of `key` to L2 after a read-modify-write decided in L1
    /// (append, incr, cas...). If that fails, L2's now older copy is removed, so an L1 eviction
    /// cannot bring it back.
    async fn write_back(&self, key: &[u8]) {
        let Some(l2) = &self.tiers.l2 else { return };
        let opts = ReadOpts {
            no_bump: true,
            ..ReadOpts::default()
        };
        let clock = &self.tiers.clock;
        let current = self
            .tiers
            .l1
            .read(key, &opts, |item| {
                let mut v = Vec::with_capacity(item.value.len());
                item.value.copy_to(&mut v);
                let expiry = if item.ttl < 0 {
                    Expiry::NEVER
                } else {
                    Expiry(clock.now() + item.ttl as u32)
                };
                // L1's own version of the value, where it keeps one, so both tiers agree on it.
                let version = (item.version != Version::NONE).then_some(item.version);
                (v, item.flags, expiry, version)
            })
            .await;
        let ok = match current {
            Ok(Some((v, flags, expiry, version))) => l2.set(key, self.entry(&v, flags, expiry, version)).await.is_ok(),
            // L1 no longer has it (evicted or deleted meanwhile): L2 must not keep the old one.
            _ => false,
        };
        if !ok && l2.delete(key).await.is_err() {
            TierStats::inc(&self.tiers.stats.l2_errors);
            tracing::warn!("l2 holds a value older than l1 and could not drop it");
        }
    }

    /// A write with an L2 (see `store`).
    async fn store_tiered(&self, l2: &L2, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        let t = &self.tiers;
        if req.mode == Mode::Set && req.cas.is_none() {
            // A plain set: L2 first. If L2 fails nothing changed anywhere and the client is told.
            l2.set(req.key, self.entry(req.value, req.flags, req.expiry, None))
                .await
                .map_err(l2_failed)?;
            let l1_req = StoreReq {
                // Batch: refresh L1 only where the key is already cached.
                mode: if self.batch { Mode::Replace } else { Mode::Set },
                ..*req
            };
            return match t.l1.store(&l1_req).await {
                Ok(StoreOutcome::Stored { cas }) => Ok(StoreOutcome::Stored { cas }),
                Ok(StoreOutcome::NotStored) if self.batch => Ok(StoreOutcome::Stored { cas: 0 }),
                // L1 did not take the new value: drop its copy, which is now older than L2's.
                // If even that fails L1 may serve the old value, so the client must hear of it.
                _ => match t.l1.delete(req.key, None).await {
                    Ok(_) => Ok(StoreOutcome::Stored { cas: 0 }),
                    Err(e) => {
                        TierStats::inc(&t.stats.l1_errors);
                        Err(e)
                    }
                },
            };
        }
        // add, replace, append, prepend and cas are decided by L1 on the newest value (promoted
        // from L2 if only L2 has it); L2 then follows L1.
        self.promote(req.key).await?;
        let outcome = t.l1.store(req).await?;
        if let StoreOutcome::Stored { .. } = outcome {
            match req.mode {
                Mode::Append | Mode::Prepend => self.write_back(req.key).await,
                _ => {
                    if l2
                        .set(req.key, self.entry(req.value, req.flags, req.expiry, None))
                        .await
                        .is_err()
                    {
                        let _ = l2.delete(req.key).await;
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// An L1 miss (or an L1 that is down) reads through to L2.
    async fn read_through<R, F>(
        &self,
        l2: &L2,
        key: &[u8],
        opts: &ReadOpts,
        mut f: Option<F>,
        l1_error: Option<BackendError>,
    ) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        let t = &self.tiers;
        let entry = match l2.get(key).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                TierStats::inc(&t.stats.l2_misses);
                return l1_error.map_or(Ok(None), Err);
            }
            Err(e) => {
                TierStats::inc(&t.stats.l2_errors);
                return Err(l1_error.unwrap_or_else(|| l2_failed(e)));
            }
        };
        TierStats::inc(&t.stats.l2_hits);
        if let Some(e) = opts.touch {
            let _ = l2.touch(key, t.clock.expiry_to_unix(e)).await;
        }
        // L1 gets the value as L2 had it: the read below applies the touch to it, and reports
        // the TTL before the touch as memcached does.
        if !self.batch && l1_error.is_none() && self.backfill(key, &entry).await.is_ok() {
            // Served through L1 once it holds the value, so CAS, touch and the meta flags have
            // L1's semantics whichever tier the value came from.
            if let Ok(Some(r)) = t.l1.read(key, opts, |item| f.take().map(|f| f(item))).await {
                return Ok(r);
            }
        }
        let Some(f) = f.take() else { return Ok(None) };
        let view = ItemView {
            flags: entry.flags,
            cas: entry.cas,
            ttl: t.clock.ttl(t.clock.expiry_from_unix(entry.expiry)),
            fetched_before: false,
            idle_secs: 0,
            stale: false,
            win: false,
            win_taken: false,
            version: entry.version,
            value: Value::slice(&entry.value),
        };
        Ok(Some(f(&view)))
    }

    /// Makes sure L1 holds the key if L2 does, so a conditional command (add, replace, cas,
    /// append, incr...) is decided on the newest value wherever it lives.
    async fn promote(&self, key: &[u8]) -> Result<()> {
        let Some(l2) = &self.tiers.l2 else { return Ok(()) };
        let opts = ReadOpts {
            no_bump: true,
            ..ReadOpts::default()
        };
        if self.tiers.l1.read(key, &opts, |_| ()).await?.is_some() {
            return Ok(());
        }
        if let Some(e) = l2.get(key).await.map_err(l2_failed)? {
            self.backfill(key, &e).await?;
        }
        Ok(())
    }

    /// Puts an L2 entry into L1 with its *remaining* TTL. `add`, so that a write which reached L1
    /// in the meantime (and is newer) wins.
    async fn backfill(&self, key: &[u8], e: &L2Entry) -> Result<StoreOutcome> {
        TierStats::inc(&self.tiers.stats.backfills);
        let req = StoreReq {
            mode: Mode::Add,
            key,
            flags: e.flags,
            expiry: self.tiers.clock.expiry_from_unix(e.expiry),
            value: &e.value,
            cas: None,
            invalidate: false,
        };
        self.tiers.l1.store(&req).await
    }
}

impl<L1: Backend + 'static, L2: ColdTier + 'static> Backend for Orchestrator<L1, L2> {
    async fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        let t = &self.tiers;
        let mut f = Some(f);
        let l1 = t.l1.read(key, opts, |item| f.take().map(|f| f(item))).await;
        let l1_error = match l1 {
            Ok(Some(r)) => {
                if t.count_l1 {
                    TierStats::inc(&t.stats.l1_hits);
                }
                // gat/touch apply to both tiers.
                if let (Some(l2), Some(e)) = (&t.l2, opts.touch) {
                    let _ = Box::pin(l2.touch(key, t.clock.expiry_to_unix(e))).await;
                }
                return Ok(r);
            }
            Ok(None) => {
                if t.count_l1 {
                    TierStats::inc(&t.stats.l1_misses);
                }
                None
            }
            Err(e) => {
                TierStats::inc(&t.stats.l1_errors);
                Some(e)
            }
        };
        let Some(l2) = &t.l2 else {
            return l1_error.map_or(Ok(None), Err);
        };
        // Boxed: an L1 hit (and every read without an L2) then carries no L2 state.
        Box::pin(self.read_through(l2, key, opts, f, l1_error)).await
    }

    #[inline]
    fn read_now<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        let t = &self.tiers;
        // With an L2, an L1 miss goes on to L2, which waits: `read` does it all.
        if t.l2.is_some() {
            return Err(f);
        }
        let r = t.l1.read_now(key, opts, f)?;
        match &r {
            Ok(Some(_)) if t.count_l1 => TierStats::inc(&t.stats.l1_hits),
            Ok(None) if t.count_l1 => TierStats::inc(&t.stats.l1_misses),
            Ok(_) => {}
            Err(_) => TierStats::inc(&t.stats.l1_errors),
        }
        Ok(r)
    }

    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        let t = &self.tiers;
        let Some(l2) = &t.l2 else {
            return t.l1.store(req).await;
        };
        // Boxed: a write without an L2 carries no L2 state.
        Box::pin(self.store_tiered(l2, req)).await
    }

    async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        let t = &self.tiers;
        let Some(l2) = &t.l2 else {
            return t.l1.delete(key, cas).await;
        };
        if cas.is_some() {
            // A CAS delete is decided by L1, on the newest value.
            self.promote(key).await?;
            let outcome = t.l1.delete(key, cas).await?;
            if outcome == DeleteOutcome::Deleted {
                l2.delete(key).await.map_err(l2_failed)?;
            }
            return Ok(outcome);
        }
        // L2 first, then L1: if the L1 delete fails, L1 may still serve the value, but never one
        // older than L2's (L2 has none).
        let in_l2 = l2.delete(key).await.map_err(l2_failed)?;
        let in_l1 = t.l1.delete(key, None).await?;
        Ok(if in_l2 || in_l1 == DeleteOutcome::Deleted {
            DeleteOutcome::Deleted
        } else {
            DeleteOutcome::NotFound
        })
    }

    async fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        // The stale mark lives in L1 (where readers look first); L2 keeps the value, which is
        // what a stale read serves anyway.
        self.promote(key).await?;
        let outcome = self.tiers.l1.invalidate(key, cas, expiry).await?;
        if let (Some(l2), Some(e), DeleteOutcome::Deleted) = (&self.tiers.l2, expiry, outcome) {
            let _ = l2.touch(key, self.tiers.clock.expiry_to_unix(e)).await;
        }
        Ok(outcome)
    }

    async fn touch(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        let t = &self.tiers;
        let Some(l2) = &t.l2 else {
            return t.l1.touch(key, expiry).await;
        };
        // Both tiers; L2 first so L1 never outlives it.
        let in_l2 = l2.touch(key, t.clock.expiry_to_unix(expiry)).await.map_err(l2_failed)?;
        let in_l1 = t.l1.touch(key, expiry).await?;
        Ok(in_l1 || in_l2)
    }

    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        let t = &self.tiers;
        if t.l2.is_none() {
            return t.l1.arith(req).await;
        }
        self.promote(req.key).await?;
        let outcome = t.l1.arith(req).await?;
        if let ArithOutcome::Done { .. } = outcome {
            self.write_back(req.key).await;
        }
        Ok(outcome)
    }

    async fn flush_all(&self, delay: i64) -> Result<()> {
        let t = &self.tiers;
        if let Some(l2) = &t.l2 {
            if delay <= 0 {
                l2.flush_all().await.map_err(l2_failed)?;
            } else {
                // L2 has no delayed flush: L1 hides everything at the moment anyway (it is read
                // first and backfills only on a miss), so L2 is emptied when the delay is over.
                let tiers = self.tiers.clone();
                let at = t.clock.expiry(delay);
                let wait = t.clock.ttl(at).max(0) as u64;
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                    if let Some(l2) = &tiers.l2 {
                        let _ = l2.flush_all().await;
                    }
                });
            }
        }
        t.l1.flush_all(delay).await
    }
}

#[cfg(test)]
mod tests;
