//! Listeners, connection accounting and graceful shutdown.
//!
//! `run` takes bound listeners and a cancellation token, so `main` and the tests start the very
//! same server; tests bind port 0.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::chunked::{ChunkConfig, Chunked};
use crate::backend::memcached::Memcached;
use crate::backend::pool::{Endpoint, PoolConfig};
use crate::conn::{serve, Socket};
use crate::engine::Engine;
use crate::l2::{AsyncL2, L2Config};
use crate::orchestrator::Orchestrator;
use crate::store::{Clock, Store, StoreConfig};

/// Limits and settings a running node enforces and reports in `stats settings`.
#[derive(Clone, Debug)]
pub struct Settings {
    pub port: u16,
    pub listen: String,
    pub unix_socket: Option<String>,
    pub max_connections: usize,
    pub threads: usize,
    /// memcached's `-I`: the largest item (value, key and memcached's item overhead).
    pub item_size_max: usize,
    pub memory_bytes: usize,
    pub chunk_size: usize,
    /// Longest multi-get line accepted without a newline (other lines: 2048 bytes, as memcached).
    pub max_line: usize,
    /// How long shutdown waits for connections to finish their requests.
    pub drain_timeout: Duration,
    /// Directory of the on-disk L2; with it the node runs in `l1-l2` mode, without it `l1-only`.
    pub l2_path: Option<PathBuf>,
    /// Bound on the L2's table files.
    pub l2_max_bytes: u64,
    /// Port of the batch listener (bulk loads: write L2, only replace in L1), if any.
    pub batch_port: Option<u16>,
    /// An external memcached as L1 (`unix:/path` or `host:port`) instead of the embedded store.
    pub l1_memcached: Option<String>,
    /// Connections to that memcached per worker thread, shared by that worker's clients. A
    /// batch takes the first with room before the next (see `Pool::pick`), so a light load is
    /// batched onto one link (one memcached thread woken per batch) and a heavy one spreads over
    /// all of them.
    pub l1_connections: usize,
    /// Bytes each L1 link may hold unsent before requests fail.
    pub l1_max_buffered: usize,
    /// How long a request to that memcached may take.
    pub l1_timeout: Duration,
    /// Data bytes per chunk in that memcached (0: the default, one slab class).
    pub l1_chunk_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 11211,
            listen: "127.0.0.1".into(),
            unix_socket: None,
            max_connections: 1024,
            threads: 4,
            item_size_max: 1 << 20,
            memory_bytes: 64 << 20,
            chunk_size: 256,
            max_line: 1 << 20,
            drain_timeout: Duration::from_secs(5),
            l2_path: None,
            l2_max_bytes: 1 << 30,
            batch_port: None,
            l1_memcached: None,
            l1_connections: 2,
            l1_max_buffered: 64 << 20,
            l1_timeout: Duration::from_millis(500),
            l1_chunk_size: 0,
        }
    }
}

impl Settings {
    /// `l1-l2` with an L2 directory, else `l1-only`.
    pub fn mode(&self) -> &'static str {
        if self.l2_path.is_some() {
            "l1-l2"
        } else {
            "l1-only"
        }
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            memory_bytes: self.memory_bytes,
            chunk_size: self.chunk_size,
            item_size_max: self.item_size_max,
            shards: 64,
        }
    }
}

/// Server-wide counters (`stats`). Relaxed atomics: they are only reported.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub bytes_read: crate::counter::Counter,
    pub bytes_written: crate::counter::Counter,
    pub cmd_flush: AtomicU64,
    pub auth_errors: AtomicU64,
    /// What every counter read at the last `stats reset`: `stats` shows counts since then, as
    /// memcached's do. The counters themselves are never written back (many are per-worker
    /// slots or live in the tiers), so a reset costs the request path nothing.
    pub reset_base: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

/// Where a connection comes from, kept unformatted: formatting happens only for `stats conns`,
/// so an idle connection carries no strings.
#[derive(Debug)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix,
}

/// What `stats conns` shows of one connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: Peer,
    /// The listener's address, shared by all its connections.
    pub local: Arc<str>,
    /// Server time of the last request.
    pub last_cmd: AtomicU32,
}

impl ConnInfo {
    /// memcached's `addr` field: `tcp:host:port` or `unix:path`.
    pub fn peer_name(&self) -> String {
        match self.peer {
            Peer::Tcp(a) => format!("tcp:{a}"),
            Peer::Unix => self.local.to_string(),
        }
    }
}

/// The open connections. Touched on connect and disconnect only, never per request.
#[derive(Default)]
pub struct ConnRegistry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnInfo>>>,
}

impl ConnRegistry {
    fn add(&self, info: Arc<ConnInfo>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(id, info);
        id
    }

    fn remove(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    pub fn snapshot(&self) -> Vec<(u64, Arc<ConnInfo>)> {
        let mut v: Vec<_> = self.conns.lock().iter().map(|(k, v)| (*k, v.clone())).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// What every connection shares.
pub struct ServerState {
    pub engine: Engine,
    /// The batch listener's view of the tiers (see [`Orchestrator::batch_view`]).
    pub batch_engine: Option<Engine>,
    pub settings: Settings,
    pub stats: ServerStats,
    pub verbosity: AtomicU8,
    pub started: SystemTime,
    pub conns: ConnRegistry,
    /// The worker runtimes connections are handed to, round robin (see `crate::shard`); none:
    /// connections run on the runtime that accepted them.
    workers: Vec<Handle>,
    next_worker: AtomicUsize,
}

impl ServerState {
    /// A node on the embedded memory store only (no runtime needed).
    pub fn new(settings: Settings) -> Arc<ServerState> {
        let engine = Engine::Memory(Store::new(settings.store_config()));
        Self::with_engine(settings, engine, None, Vec::new())
    }

    /// Builds the engine the settings describe: opens the L2 when configured. Needs a runtime.
    /// Connections, and the memcached links they use, go to `workers` (see `crate::shard`);
    /// with none, everything runs on the calling runtime.
    pub async fn build(settings: Settings, workers: &[Handle]) -> io::Result<Arc<ServerState>> {
        let workers = workers.to_vec();
        let clock = Clock::start();
        let l2 = match &settings.l2_path {
            Some(path) => Some(
                AsyncL2::open(L2Config::new(path, settings.l2_max_bytes))
                    .await
                    .map_err(|e| io::Error::other(format!("cannot open the L2 at {}: {e}", path.display())))?,
            ),
            None => None,
        };
        if let Some(endpoint) = &settings.l1_memcached {
            let mut pool = PoolConfig::new(Endpoint::parse(endpoint));
            pool.connections = settings.l1_connections;
            pool.max_buffered = settings.l1_max_buffered;
            pool.timeout = settings.l1_timeout;
            let mut chunks = ChunkConfig {
                item_size_max: settings.item_size_max,
                ..ChunkConfig::default()
            };
            if settings.l1_chunk_size > 0 {
                chunks.chunk_size = settings.l1_chunk_size;
            }
            let memcached = if workers.is_empty() {
                Memcached::start(pool)
            } else {
                Memcached::start_on(pool, &workers)
            };
            // Clients accepted before the first link is up would get SERVER_ERROR: give memcached
            // a moment. The node starts anyway when it is down, and connects once it is up.
            if !memcached.pool().wait_up(Duration::from_secs(1)).await {
                tracing::warn!(endpoint = %endpoint, "memcached is not reachable yet; serving SERVER_ERROR until it is");
            }
            let l1 = Chunked::new(memcached, clock.clone(), chunks);
            let orchestrator = Orchestrator::new(l1, l2, clock);
            let batch = Engine::Proxy(orchestrator.batch_view());
            return Ok(Self::with_engine(
                settings,
                Engine::Proxy(orchestrator),
                Some(batch),
                workers,
            ));
        }
        let store = Store::with_clock(settings.store_config(), clock.clone());
        if l2.is_none() {
            return Ok(Self::with_engine(settings, Engine::Memory(store), None, workers));
        }
        let orchestrator = Orchestrator::new(store, l2, clock);
        let batch = Engine::Tiered(orchestrator.batch_view());
        Ok(Self::with_engine(
            settings,
            Engine::Tiered(orchestrator),
            Some(batch),
            workers,
        ))
    }

    fn with_engine(
        settings: Settings,
        engine: Engine,
        batch_engine: Option<Engine>,
        workers: Vec<Handle>,
    ) -> Arc<ServerState> {
        Arc::new(ServerState {
            engine,
            batch_engine,
            settings,
            stats: ServerStats::default(),
            verbosity: AtomicU8::new(0),
            started: SystemTime::now(),
            conns: ConnRegistry::default(),
            workers,
            next_worker: AtomicUsize::new(0),
        })
    }

    /// The worker the next connection runs on: the workers in turn, as memcached hands out
    /// connections to its threads. Only called when there are workers.
    fn next_worker(&self) -> &Handle {
        &self.workers[self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len()]
    }
}

/// The version string the node reports (`version`, binary VERSION, `stats`): memcached's protocol
/// level first, since some clients gate features on it, then Riven's own version.
pub const VERSION: &str = concat!("1.6.18-riven-", env!("CARGO_PKG_VERSION"));

/// The sockets a node listens on.
#[derive(Default)]
pub struct Listeners {
    pub tcp: Option<TcpListener>,
    pub unix: Option<UnixListener>,
    /// The batch listener (Rend's port 11212 idea).
    pub batch: Option<TcpListener>,
}

impl Listeners {
    /// Binds the TCP listener (and the unix socket, if configured) of `settings`.
    pub async fn bind(settings: &Settings) -> io::Result<Listeners> {
        let tcp = bind_tcp(&settings.listen, settings.port).await?;
        let unix = match &settings.unix_socket {
            Some(path) => {
                // A socket file left by a previous run would make bind fail.
                let _ = std::fs::remove_file(path);
                Some(UnixListener::bind(path)?)
            }
            None => None,
        };
        let batch = match settings.batch_port {
            Some(port) => Some(bind_tcp(&settings.listen, port).await?),
            None => None,
        };
        Ok(Listeners {
            tcp: Some(tcp),
            unix,
            batch,
        })
    }
}

/// memcached's listen backlog: a burst of connects (a client pool starting, a benchmark opening
/// thousands) must not overflow the kernel's accept queue and stall in SYN retries.
const LISTEN_BACKLOG: u32 = 1024;

async fn bind_tcp(host: &str, port: u16) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, format!("cannot resolve {host}"));
    for addr in tokio::net::lookup_host((host, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serves until `shutdown` is cancelled, then stops accepting, lets every connection finish the
/// requests it has read (up to `drain_timeout`) and returns.
pub async fn run(state: Arc<ServerState>, listeners: Listeners, shutdown: CancellationToken) {
    tokio::spawn(reclaim(state.clone(), shutdown.clone()));
    let limit = Arc::new(Semaphore::new(state.settings.max_connections));
    let tracker = TaskTracker::new();
    let mut accept_loops = Vec::new();
    for (tcp, batch) in [(listeners.tcp, false), (listeners.batch, true)] {
        let Some(tcp) = tcp else { continue };
        let local: Arc<str> = format!("tcp:{}", tcp.local_addr().map(|a| a.to_string()).unwrap_or_default()).into();
        accept_loops.push(tokio::spawn(accept_tcp(
            tcp,
            local,
            batch,
            state.clone(),
            limit.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(unix) = listeners.unix {
        accept_loops.push(tokio::spawn(accept_unix(
            unix,
            state.clone(),
            limit.clone(),
            tracker.clone(),
            shutdown.clone(),
        )));
    }
    shutdown.cancelled().await;
    for l in accept_loops {
        let _ = l.await;
    }
    tracker.close();
    if tokio::time::timeout(state.settings.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(open = tracker.len(), "connections still open after the drain timeout");
    }
    if let Some(path) = &state.settings.unix_socket {
        let _ = std::fs::remove_file(path);
    }
}

/// Background reclaim of expired and flushed items, one shard per tick, so memory held by dead
/// items comes back even when nobody reads them (reads also expire items lazily).
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

#[allow(clippy::too_many_arguments)]
async fn accept_tcp(
    listener: TcpListener,
    local: Arc<str>,
    batch: bool,
    state: Arc<ServerState>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let info = ConnInfo {
                    peer: Peer::Tcp(peer),
                    local: local.clone(),
                    last_cmd: AtomicU32::new(state.engine.clock().now()),
                };
                admit(stream, info, batch, &state, &limit, &tracker, &shutdown);
            }
            Err(e) => accept_error(e).await,
        }
    }
}

async fn accept_unix(
    listener: UnixListener,
    state: Arc<ServerState>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let local: Arc<str> = format!("unix:{}", state.settings.unix_socket.as_deref().unwrap_or_default()).into();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let info = ConnInfo {
                    peer: Peer::Unix,
                    local: local.clone(),
                    last_cmd: AtomicU32::new(state.engine.clock().now()),
                };
                admit(stream, info, false, &state, &limit, &tracker, &shutdown);
            }
            Err(e) => accept_error(e).await,
        }
    }
}

/// Out of file descriptors and similar: back off instead of spinning.
async fn accept_error(e: io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// A socket that can move to another runtime: out of this one's reactor, into the worker's.
trait Movable: Socket + Sized + 'static {
    type Std: Send + 'static;
    fn into_std(self) -> io::Result<Self::Std>;
    fn from_std(s: Self::Std) -> io::Result<Self>;
}

impl Movable for TcpStream {
    type Std = std::net::TcpStream;
    fn into_std(self) -> io::Result<Self::Std> {
        TcpStream::into_std(self)
    }
    fn from_std(s: Self::Std) -> io::Result<Self> {
        TcpStream::from_std(s)
    }
}

impl Movable for UnixStream {
    type Std = std::os::unix::net::UnixStream;
    fn into_std(self) -> io::Result<Self::Std> {
        UnixStream::into_std(self)
    }
    fn from_std(s: Self::Std) -> io::Result<Self> {
        UnixStream::from_std(s)
    }
}

fn admit<S: Movable>(
    mut stream: S,
    info: ConnInfo,
    batch: bool,
    state: &Arc<ServerState>,
    limit: &Arc<Semaphore>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let stats = &state.stats;
    let Ok(permit) = limit.clone().try_acquire_owned() else {
        // memcached's answer at its connection limit: tell the client, then hang up.
        stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
        tracker.spawn(async move {
            let _ = stream.write_all(b"ERROR Too many open connections\r\n").await;
        });
        return;
    };
    stats.total_connections.fetch_add(1, Ordering::Relaxed);
    stats.curr_connections.fetch_add(1, Ordering::Relaxed);
    let state = state.clone();
    let shutdown = shutdown.clone();
    if state.workers.is_empty() {
        tracker.spawn(serve_conn(Ok(stream), info, batch, state, shutdown, permit));
        return;
    }
    // The connection lives on a worker from here on (the socket was registered with the
    // accepting runtime's reactor, so it moves over as a plain socket).
    let worker = state.next_worker().clone();
    let moved = stream.into_std();
    worker.spawn(tracker.track_future(async move {
        let stream = moved.and_then(S::from_std);
        serve_conn(stream, info, batch, state, shutdown, permit).await
    }));
}

/// Serves one admitted connection to its end, then gives back its place.
async fn serve_conn<S: Socket>(
    stream: io::Result<S>,
    info: ConnInfo,
    batch: bool,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let info = Arc::new(info);
    let id = state.conns.add(info.clone());
    let engine = match (&state.batch_engine, batch) {
        (Some(b), true) => b,
        _ => &state.engine,
    };
    let served = match stream {
        Ok(stream) => serve(stream, &state, engine, &info, &shutdown).await,
        Err(e) => Err(e),
    };
    if let Err(e) = served {
        tracing::debug!(error = %e, "connection ended");
    }
    state.conns.remove(id);
    state.stats.curr_connections.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}

/// A node running on its own runtime thread, for tests and tools.
pub struct RunningNode {
    pub addr: SocketAddr,
    pub batch_addr: Option<SocketAddr>,
    pub state: Arc<ServerState>,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Worker threads for the settings' `-t n`: at most one per CPU core. A worker never blocks
/// (disk and memcached waits are async), so threads beyond the cores only take turns on them,
/// and every turn is a context switch on the request path.
///
/// Over a memcached on the same host (a unix socket or a loopback address), at most half the
/// cores: memcached needs the others. Both processes wake once per batch, not per request, and
/// batches are larger when fewer threads split the same clients. Measured on 2 cores at 50
/// connections, alternating runs against the same memcached (one worker with two links, two
/// workers with one each): one worker reached 0.95-1.04 of memcached-direct throughput at
/// pipeline depth 1, two workers 0.73-0.82; the node's wake-ups per request went from 0.49 to
/// 0.10, its context switches from 0.25 to 0.04. At depth 16 the two were within noise of each
/// other (0.64-0.78 and 0.69-0.77). A memcached elsewhere leaves the node every core.
pub fn worker_threads(settings: &Settings) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    workers_for(settings, cores)
}

fn workers_for(settings: &Settings, cores: usize) -> usize {
    let local_memcached = settings
        .l1_memcached
        .as_deref()
        .is_some_and(|e| crate::backend::pool::Endpoint::parse(e).is_local());
    let cap = if local_memcached { cores / 2 } else { cores };
    settings.threads.clamp(1, cap.max(1))
}

/// The runtime a node's accept loops run on, and the workers its connections go to.
///
/// Over an external memcached, worker threads of their own (see `crate::shard`): a request and
/// its memcached reply then never change threads. The embedded store and the L2 hand nothing
/// between tasks, so there the connections run on tokio's work-stealing runtime itself, which
/// keeps tail latency lower when one thread is held up: measured on 2 cores, the embedded
/// node's p99 at pipeline depth 1 went from under 0.8 to 1.25–1.6 of memcached's on fixed
/// workers.
pub fn runtime_for(settings: &Settings) -> io::Result<(tokio::runtime::Runtime, Option<crate::shard::Shards>)> {
    let workers = worker_threads(settings);
    if settings.l1_memcached.is_some() {
        let shards = crate::shard::Shards::start(workers)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok((rt, Some(shards)))
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?;
        Ok((rt, None))
    }
}

impl RunningNode {
    /// Starts a node with `settings` (port 0 picks a free port).
    pub fn start(settings: Settings) -> io::Result<RunningNode> {
        let (rt, workers) = runtime_for(&settings)?;
        let handles = workers.as_ref().map_or(&[][..], |w| w.handles());
        let state = rt.block_on(ServerState::build(settings, handles))?;
        let listeners = rt.block_on(Listeners::bind(&state.settings))?;
        let addr = listeners.tcp.as_ref().expect("tcp listener").local_addr()?;
        let batch_addr = listeners.batch.as_ref().map(|b| b.local_addr()).transpose()?;
        let shutdown = CancellationToken::new();
        let (st, sd) = (state.clone(), shutdown.clone());
        let thread = std::thread::spawn(move || {
            rt.block_on(run(st, listeners, sd));
            drop(workers);
        });
        Ok(RunningNode {
            addr,
            batch_addr,
            state,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Stops the node and waits for it to finish.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_capped_by_the_cores_and_share_them_with_a_local_memcached() {
        let with = |threads: usize, l1: Option<&str>| Settings {
            threads,
            l1_memcached: l1.map(str::to_string),
            ..Settings::default()
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
