//! Listeners, connection accounting and graceful shutdown.

use std::sync::atomic::{AtomicU64, AtomicU8};
use std::time::SystemTime;

use crate::store::Store;

/// Limits and settings a running node reports in `stats settings` and enforces.
#[derive(Clone, Debug)]
pub struct Settings {
    pub port: u16,
    pub listen: String,
    pub unix_socket: Option<String>,
    pub max_connections: usize,
    pub threads: usize,
    pub item_size_max: usize,
    pub memory_bytes: usize,
    pub chunk_size: usize,
    /// Longest text request line accepted without a newline (memcached closes past this).
    pub max_line: usize,
    pub key_max: usize,
}

/// Server-wide counters (`stats`). Relaxed atomics: they are only reported.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub curr_connections: AtomicU64,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
    pub cmd_flush: AtomicU64,
    pub auth_errors: AtomicU64,
}

/// What every connection shares.
pub struct ServerState {
    pub store: Store,
    pub settings: Settings,
    pub stats: ServerStats,
    pub verbosity: AtomicU8,
    pub started: SystemTime,
}

/// The version string the node reports (`version`, binary VERSION, `stats`).
pub const VERSION: &str = concat!("riven-", env!("CARGO_PKG_VERSION"));
