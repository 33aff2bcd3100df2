//! [`AsyncL2`]: the L2 as the orchestrator calls it, from async code.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::{L2Config, L2Entry, L2Error, L2Stats, L2Store};

/// Async front of an [`L2Store`]. Clones share the store.
///
/// Every operation runs on tokio's blocking pool (`spawn_blocking`), never on a runtime worker:
/// a disk read, an fsync or a fjall write stall (fjall sleeps the writing thread when flushes
/// fall behind) then holds a blocking thread, not the event loop that serves other connections.
/// A semaphore caps the operations in flight, so a slow disk makes callers *wait* (an async wait,
/// queued fairly) instead of piling up blocking threads; the cap also bounds the L2's share of
/// the blocking pool.
#[derive(Clone)]
pub struct AsyncL2 {
    store: Arc<L2Store>,
    permits: Arc<Semaphore>,
}

impl AsyncL2 {
    /// Default cap on operations in flight.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;

    /// Wraps an open store, allowing `max_in_flight` operations at once (at least 1).
    pub fn new(store: Arc<L2Store>, max_in_flight: usize) -> AsyncL2 {
        AsyncL2 {
            store,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Opens the store (off the runtime workers: recovery replays the journal) and wraps it.
    pub async fn open(cfg: L2Config) -> Result<AsyncL2, L2Error> {
        let store = tokio::task::spawn_blocking(move || L2Store::open(cfg))
            .await
            .map_err(|e| L2Error::Task(e.to_string()))??;
        Ok(AsyncL2::new(Arc::new(store), Self::DEFAULT_MAX_IN_FLIGHT))
    }

    /// The synchronous store, for callers already on a blocking thread.
    pub fn store(&self) -> &Arc<L2Store> {
        &self.store
    }

    /// See [`L2Store::get`].
    pub async fn get(&self, key: Bytes) -> Result<Option<L2Entry>, L2Error> {
        self.run(move |s| s.get(&key)).await
    }

    /// See [`L2Store::set`].
    pub async fn set(&self, key: Bytes, entry: L2Entry) -> Result<(), L2Error> {
        self.run(move |s| s.set(&key, &entry)).await
    }

    /// See [`L2Store::delete`].
    pub async fn delete(&self, key: Bytes) -> Result<bool, L2Error> {
        self.run(move |s| s.delete(&key)).await
    }

    /// See [`L2Store::touch`].
    pub async fn touch(&self, key: Bytes, expiry: u64) -> Result<bool, L2Error> {
        self.run(move |s| s.touch(&key, expiry)).await
    }

    /// See [`L2Store::flush_all`].
    pub async fn flush_all(&self) -> Result<(), L2Error> {
        self.run(|s| s.flush_all()).await
    }

    /// See [`L2Store::stats`].
    pub async fn stats(&self) -> Result<L2Stats, L2Error> {
        self.run(|s| s.stats()).await
    }

    async fn run<T, F>(&self, op: F) -> Result<T, L2Error>
    where
        T: Send + 'static,
        F: FnOnce(&L2Store) -> Result<T, L2Error> + Send + 'static,
    {
        // The semaphore is never closed, so acquiring fails only if that changes.
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| L2Error::Task(e.to_string()))?;
        let store = self.store.clone();
        // Once spawned the operation runs to completion even if the caller stops waiting, so a
        // cancelled request never leaves a write half done; the permit is held until it ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            op(&store)
        })
        .await
        .map_err(|e| L2Error::Task(e.to_string()))?
    }
}
