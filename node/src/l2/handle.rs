//! [`AsyncL2`]: the L2 as the orchestrator calls it, from async code.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use tokio::sync::{oneshot, Semaphore};

use super::{L2Config, L2Entry, L2Error, L2Stats, L2Store};

/// Async front of an [`L2Store`]. Clones share the store.
///
/// Operations run on the L2's own threads, never on a runtime worker: a disk read, an fsync or
/// a fjall write stall (fjall sleeps the writing thread when flushes fall behind) then holds an
/// L2 thread, not the event loop that serves other connections. Callers queue operations; an
/// L2 thread takes everything queued at once and runs it, so under load many operations cost
/// one wake-up of that thread instead of a thread hand-off each (tokio's `spawn_blocking` per
/// operation spent most of the node's time in futex calls). A semaphore caps the operations in
/// flight, so a slow disk makes callers *wait* (an async wait, queued fairly) instead of piling
/// up work.
#[derive(Clone)]
pub struct AsyncL2 {
    store: Arc<L2Store>,
    permits: Arc<Semaphore>,
    threads: Arc<L2Threads>,
}

type Job = Box<dyn FnOnce(&L2Store) + Send>;

/// The L2 threads and their queue. Dropping the last handle stops them once the queue is empty.
struct L2Threads {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for work.
    idle: usize,
    stop: bool,
}

impl L2Threads {
    /// Starts up to `threads` threads (at least one). Fails only if none starts: with no thread,
    /// every queued operation would wait forever, so the node must not start at all.
    fn start(store: &Arc<L2Store>, threads: usize) -> Result<L2Threads, L2Error> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let mut handles = Vec::new();
        let mut failed = None;
        for i in 0..threads.max(1) {
            let (shared, store) = (shared.clone(), store.clone());
            match std::thread::Builder::new()
                .name(format!("riven-l2-{i}"))
                .spawn(move || work(&shared, &store))
            {
                Ok(h) => handles.push(h),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start an L2 thread");
                    failed = Some(e);
                }
            }
        }
        match (handles.is_empty(), failed) {
            (true, Some(e)) => Err(L2Error::Io(e)),
            _ => Ok(L2Threads {
                shared,
                threads: handles,
            }),
        }
    }

    fn submit(&self, job: Job) {
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.jobs.push_back(job);
        // A busy thread takes this job with the rest when it comes back for more.
        if q.idle > 0 {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for L2Threads {
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        self.shared.wake.notify_all();
        // Joined, so the store is closed (and may be opened again) once the last handle is gone.
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// An L2 thread: takes every queued job at once and runs them, until stopped.
fn work(shared: &Shared, store: &L2Store) {
    let mut batch = VecDeque::new();
    loop {
        {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.jobs.is_empty() {
                if q.stop {
                    return;
                }
                q.idle += 1;
                q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle -= 1;
            }
            std::mem::swap(&mut q.jobs, &mut batch);
        }
        for job in batch.drain(..) {
            job(store);
        }
    }
}

impl AsyncL2 {
    /// Default cap on operations in flight.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
    /// L2 threads: two, so one slow disk read does not hold up every other operation.
    pub const THREADS: usize = 2;

    /// Wraps an open store, allowing `max_in_flight` operations at once (at least 1). Fails if
    /// no L2 thread can be started.
    pub fn new(store: Arc<L2Store>, max_in_flight: usize) -> Result<AsyncL2, L2Error> {
        let threads = Arc::new(L2Threads::start(&store, Self::THREADS)?);
        Ok(AsyncL2 {
            store,
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
            threads,
        })
    }

    /// Opens the store (off the runtime workers: recovery replays the journal) and wraps it.
    pub async fn open(cfg: L2Config) -> Result<AsyncL2, L2Error> {
        let store = tokio::task::spawn_blocking(move || L2Store::open(cfg))
            .await
            .map_err(|e| L2Error::Task(e.to_string()))??;
        AsyncL2::new(Arc::new(store), Self::DEFAULT_MAX_IN_FLIGHT)
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

    /// Waits for the operations queued before it, then makes everything written durable (see
    /// [`L2Store::persist`]). Shutdown calls it once no request can reach the L2 any more.
    pub async fn close(&self) -> Result<(), L2Error> {
        self.run(|s| s.persist()).await
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
        let (tx, rx) = oneshot::channel();
        // Once queued the operation runs to completion even if the caller stops waiting, so a
        // cancelled request never leaves a write half done; the permit is held until it ends.
        self.threads.submit(Box::new(move |store| {
            let _permit = permit;
            let _ = tx.send(op(store));
        }));
        rx.await.map_err(|_| L2Error::Task("the L2 thread stopped".into()))?
    }
}
