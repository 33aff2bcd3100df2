//! What every connection of a node shares: the engine, the config, the counters and the
//! registry of open connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use tokio::runtime::Handle;

use crate::config::Config;
use crate::engine::{Engine, Stack};

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
    pub(crate) fn add(&self, info: Arc<ConnInfo>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.conns.lock().insert(id, info);
        id
    }

    pub(crate) fn remove(&self, id: u64) {
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
    /// The batch listener's view of the same tiers (see [`Engine::batch_view`]).
    pub batch_engine: Engine,
    pub config: Config,
    pub stats: ServerStats,
    pub verbosity: AtomicU8,
    pub started: SystemTime,
    pub conns: ConnRegistry,
    /// The worker runtimes connections are handed to, round robin (see `crate::workers`); none:
    /// connections run on the runtime that accepted them.
    pub(crate) workers: Vec<Handle>,
    next_worker: AtomicUsize,
}

impl ServerState {
    /// The state of a node serving `stack`, its connections handed to `workers` (none: they run
    /// on the runtime that accepted them).
    pub fn new(config: Config, stack: Stack, workers: Vec<Handle>) -> Arc<ServerState> {
        Arc::new(ServerState {
            engine: stack.engine,
            batch_engine: stack.batch,
            config,
            stats: ServerStats::default(),
            verbosity: AtomicU8::new(0),
            started: SystemTime::now(),
            conns: ConnRegistry::default(),
            workers,
            next_worker: AtomicUsize::new(0),
        })
    }

    /// A node on the embedded memory store, without listeners or runtime (the front ends' unit
    /// tests): that stack is built without waiting.
    #[cfg(test)]
    pub fn embedded(config: Config) -> Arc<ServerState> {
        let stack = crate::protocol::block_on(crate::engine::build(&config, &[], Vec::new())).expect("embedded stack");
        ServerState::new(config, stack, Vec::new())
    }

    /// The worker the next connection runs on: the workers in turn, as memcached hands out
    /// connections to its threads. Only called when there are workers.
    pub(crate) fn next_worker(&self) -> &Handle {
        &self.workers[self.next_worker.fetch_add(1, Ordering::Relaxed) % self.workers.len()]
    }
}

/// The version string the node reports (`version`, binary VERSION, `stats`): memcached's protocol
/// level first, since some clients gate features on it, then Riven's own version.
pub const VERSION: &str = concat!("1.6.18-riven-", env!("CARGO_PKG_VERSION"));
