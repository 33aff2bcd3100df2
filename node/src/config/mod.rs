//! The node's configuration: typed, nested sections, layered (see [`load`]): the defaults here,
//! then a TOML file (`--config`), then `RIVEN_` environment variables with `__` between
//! sections (`RIVEN_L2__MAX_BYTES=8g`), then memcached-style flags (`-p -l -s -m -c -I -t -v`).
//!
//! Every default is written once, in the `Default` of its section. Sections to come (kafka,
//! grpc, zone, cluster, tls) are new fields of [`Config`]; a secret among them is a [`Secret`],
//! which the effective config logged at start shows redacted.

mod load;
mod size;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use load::{load, load_from, Args};
pub use size::Size;
pub use validate::{validate, ConfigError, ITEM_SIZE_LIMIT};

use crate::store::StoreConfig;

/// Everything a node is started with.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerSection,
    pub limits: LimitsSection,
    pub l1: L1Section,
    pub l2: L2Section,
    pub log: LogSection,
}

/// Where and how the node listens.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Interface to listen on (`-l`).
    pub listen: String,
    /// TCP port (`-p`); 0 picks a free one.
    pub port: u16,
    /// Also listen on this unix socket (`-s`).
    pub unix_socket: Option<String>,
    /// Port of the batch listener (bulk loads, warm-up: writes L2, only replaces in L1).
    pub batch_port: Option<u16>,
    /// Worker threads (`-t`), at most one per core (see `crate::node::worker_threads`).
    pub threads: usize,
    /// Connections at once (`-c`); past it a client gets memcached's refusal.
    pub conn_limit: usize,
    /// Seconds shutdown waits for open connections to finish their requests.
    pub drain_timeout_secs: u64,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: "127.0.0.1".into(),
            port: 11211,
            unix_socket: None,
            batch_port: None,
            threads: 4,
            conn_limit: 1024,
            drain_timeout_secs: 5,
        }
    }
}

/// What a request may be.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// memcached's `-I`: the largest item (value, key and memcached's item overhead).
    pub max_item_size: Size,
    /// Longest multi-get line accepted without a newline (other lines: 2048 bytes, as memcached).
    pub max_line: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_item_size: Size(1 << 20),
            max_line: 1 << 20,
        }
    }
}

/// The first tier: the embedded memory store, or an external memcached when `memcached.endpoint`
/// is set.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct L1Section {
    pub memory: MemorySection,
    pub memcached: MemcachedSection,
}

/// The embedded memory store.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySection {
    /// Item memory in MiB (`-m`): the arena, reserved at start.
    pub limit_mb: usize,
    /// Bytes per arena chunk (multiple of 8, at least 64).
    pub chunk_size: usize,
}

impl Default for MemorySection {
    fn default() -> Self {
        MemorySection {
            limit_mb: 64,
            chunk_size: 256,
        }
    }
}

/// An external memcached as L1, values chunked.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MemcachedSection {
    /// `host:port` or `unix:/path`; none: the embedded store is L1.
    pub endpoint: Option<String>,
    /// Connections per worker thread, shared by that worker's clients.
    pub connections: usize,
    /// How long a request to memcached may take, in milliseconds.
    pub timeout_ms: u64,
    /// Bytes a link may hold unsent before requests fail instead of queueing.
    pub max_buffered: Size,
    /// Data bytes per chunk in memcached; 0: one default slab class's worth.
    pub chunk_size: usize,
    /// Keep memcached's pages where the node's writes go (see `backend::slabs`).
    pub rebalance: bool,
    /// The longest a write waits for pages to reach its slab class, in milliseconds.
    pub rebalance_wait_ms: u64,
}

impl Default for MemcachedSection {
    fn default() -> Self {
        MemcachedSection {
            endpoint: None,
            connections: 2,
            timeout_ms: 500,
            max_buffered: Size(64 << 20),
            chunk_size: 0,
            rebalance: true,
            rebalance_wait_ms: 100,
        }
    }
}

/// The on-disk L2.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct L2Section {
    /// Directory of the store; with it the node runs in `l1-l2` mode, without it `l1-only`.
    pub path: Option<PathBuf>,
    /// Bound on the L2's table files.
    pub max_bytes: Size,
}

impl Default for L2Section {
    fn default() -> Self {
        L2Section {
            path: None,
            max_bytes: Size(1 << 30),
        }
    }
}

/// Logging.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// 0 info, 1 debug (`-v`), 2 trace (`-vv`); `RUST_LOG` overrides it.
    pub verbose: u8,
}

impl Config {
    /// `l1-l2` with an L2 directory, else `l1-only`.
    pub fn mode(&self) -> &'static str {
        if self.l2.path.is_some() {
            "l1-l2"
        } else {
            "l1-only"
        }
    }

    /// The largest item, in bytes.
    pub fn item_size_max(&self) -> usize {
        self.limits.max_item_size.0 as usize
    }

    /// The arena's size, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.l1.memory.limit_mb << 20
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.server.drain_timeout_secs)
    }

    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            memory_bytes: self.memory_bytes(),
            chunk_size: self.l1.memory.chunk_size,
            item_size_max: self.item_size_max(),
            ..StoreConfig::default()
        }
    }
}

impl MemcachedSection {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// A value that must not be logged (a password, a token): its `Debug` shows it redacted.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"<redacted>\"" })
    }
}
