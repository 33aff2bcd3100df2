//! A node's life: [`Node::start`] builds the storage stack, binds the listeners and serves;
//! [`Node::shutdown`] stops it in one order, the same for `main` and the tests:
//!
//! 1. stop accepting;
//! 2. drain the open connections, within the drain timeout;
//! 3. stop the background tasks, then close what is behind the connections: the hooks flush
//!    (later the publisher), the L2 syncs, the links to memcached stop;
//! 4. return, once the worker threads have stopped.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::engine::Hook;
use crate::server::{serve, Listeners};
use crate::state::ServerState;
use crate::workers::Workers;

/// Worker threads for the config' `-t n`: at most one per CPU core. A worker never blocks
/// (disk and memcached waits are async), so threads beyond the cores only take turns on them,
/// and every turn is a context switch on the request path.
///
/// Over a memcached on the same host (a unix socket or a loopback address), at most half the
/// cores: memcached needs the others. Both processes wake once per batch, not per request, and
/// batches are larger when fewer threads split the same clients (BENCHMARKS.md, "Design
/// measurements"). A memcached elsewhere leaves the node every core.
pub fn worker_threads(config: &Config) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    workers_for(config, cores)
}

fn workers_for(config: &Config, cores: usize) -> usize {
    let local_memcached = config
        .l1
        .memcached
        .endpoint
        .as_deref()
        .is_some_and(|e| crate::backend::links::Endpoint::parse(e).is_local());
    let cap = if local_memcached { cores / 2 } else { cores };
    config.server.threads.clamp(1, cap.max(1))
}

/// The runtime a node's accept loops run on, and the workers its connections go to.
///
/// Over an external memcached, worker threads of their own (see `crate::workers`): a request and
/// its memcached reply then never change threads. The embedded store and the L2 hand nothing
/// between tasks, so there the connections run on tokio's work-stealing runtime itself, which
/// keeps tail latency lower when one thread is held up (BENCHMARKS.md, "Design measurements").
fn runtime_for(config: &Config) -> io::Result<(tokio::runtime::Runtime, Option<Workers>)> {
    let workers = worker_threads(config);
    if config.l1.memcached.endpoint.is_some() {
        let threads = Workers::start(workers)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok((rt, Some(threads)))
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?;
        Ok((rt, None))
    }
}

/// A running node: its own runtime on a thread of its own, serving until shut down.
pub struct Node {
    pub addr: SocketAddr,
    pub batch_addr: Option<SocketAddr>,
    pub state: Arc<ServerState>,
    shutdown: CancellationToken,
    stopped: Option<tokio::sync::oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Starts a node with `config` (port 0 picks a free port).
    pub fn start(config: Config) -> io::Result<Node> {
        Node::start_with(config, Vec::new())
    }

    /// Starts a node whose engine carries `hooks` (see [`crate::engine::hook`]).
    pub fn start_with(config: Config, hooks: Vec<Arc<dyn Hook>>) -> io::Result<Node> {
        let (rt, workers) = runtime_for(&config)?;
        let handles = workers.as_ref().map_or(&[][..], |w| w.handles()).to_vec();
        // Listen first: a port in use fails the start before the L2 is opened.
        let listeners = rt.block_on(Listeners::bind(&config)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {}:{}: {e}", config.server.listen, config.server.port),
            )
        })?;
        let stack = rt.block_on(crate::engine::build(&config, &handles, hooks))?;
        let addr = listeners.tcp.as_ref().expect("tcp listener").local_addr()?;
        let batch_addr = listeners.batch.as_ref().map(|b| b.local_addr()).transpose()?;
        let state = ServerState::new(config, stack, handles);
        let shutdown = CancellationToken::new();
        let (tx, stopped) = tokio::sync::oneshot::channel();
        let (st, sd) = (state.clone(), shutdown.clone());
        let thread = std::thread::Builder::new().name("riven-node".into()).spawn(move || {
            rt.block_on(run(st, listeners, sd));
            // Every task is done: the runtime and the workers stop (and their threads are
            // joined) before the node reports that it stopped.
            drop(rt);
            drop(workers);
            let _ = tx.send(());
        })?;
        Ok(Node {
            addr,
            batch_addr,
            state,
            shutdown,
            stopped: Some(stopped),
            thread: Some(thread),
        })
    }

    /// A token that starts the shutdown when cancelled (a signal handler holds one).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shuts the node down in order (see the module doc) and returns when it has stopped.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
        self.join();
    }

    /// [`Node::shutdown`], for callers outside a runtime.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shutdown.cancel();
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// Serves until `shutdown` is cancelled, then shuts down in order.
async fn run(state: Arc<ServerState>, listeners: Listeners, shutdown: CancellationToken) {
    let background = TaskTracker::new();
    background.spawn(reclaim(state.clone(), shutdown.clone()));
    // Steps 1 and 2: stop accepting, drain.
    serve(state.clone(), listeners, shutdown).await;
    // Step 3: nothing reaches the engine any more.
    background.close();
    background.wait().await;
    state.engine.close().await;
    tracing::info!("stopped");
}

/// Background reclaim of expired and flushed items, one shard of keys per tick, so memory held by
/// dead items comes back even when nobody reads them (reads also expire items lazily).
async fn reclaim(state: Arc<ServerState>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut shard = 0usize;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        state.engine.reclaim(shard, 10_000);
        shard = shard.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_capped_by_the_cores_and_share_them_with_a_local_memcached() {
        let with = |threads: usize, l1: Option<&str>| {
            let mut c = Config::default();
            c.server.threads = threads;
            c.l1.memcached.endpoint = l1.map(str::to_string);
            c
        };
        assert_eq!(workers_for(&with(4, None), 2), 2);
        assert_eq!(workers_for(&with(1, None), 8), 1);
        assert_eq!(workers_for(&with(4, Some("127.0.0.1:11211")), 2), 1);
        assert_eq!(workers_for(&with(4, Some("unix:/tmp/mc.sock")), 8), 4);
        assert_eq!(workers_for(&with(8, Some("localhost:11211")), 8), 4);
        assert_eq!(workers_for(&with(4, Some("127.0.0.1:11211")), 1), 1);
        // A memcached on another host leaves this host's cores to the node.
        assert_eq!(workers_for(&with(4, Some("10.1.2.3:11211")), 2), 2);
    }
}
