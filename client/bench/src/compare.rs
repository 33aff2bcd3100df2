//! `riven-bench compare`: the benchmark runner. Starts each target server, drives all of them with
//! the same [`load`](super::load) runs, alternating between targets round after round so that
//! drift in the machine (frequency, other tenants, page cache) hits every target alike, then
//! measures what an idle connection costs each of them.
//!
//! The runner knows nothing about particular servers: a [`Target`] is a name and a command line.
//! The first target is the baseline every ratio is taken against (memcached direct); more modes
//! of the node (over memcached, L1 + L2) are more targets.

mod markdown;
mod report;
mod runner;
mod targets;

pub use markdown::{render_markdown, write_keeping_sections};
pub use report::{CompareReport, IdleResult, RunSample, ServerInfo, SettingResult, Skipped, TargetResult};
pub use runner::run;
pub use targets::{memcached, riven_node, riven_node_l1_l2, riven_node_over_memcached, ServerSettings, Target};

use std::time::Duration;

use super::wire::Protocol;

/// What a comparison runs.
#[derive(Clone, Debug)]
pub struct CompareConfig {
    /// The servers; the first is the baseline.
    pub targets: Vec<Target>,
    pub protocols: Vec<Protocol>,
    pub pipelines: Vec<usize>,
    /// Value sizes in bytes, one setting each.
    pub value_sizes: Vec<usize>,
    pub connections: usize,
    /// Key space; capped per value size so the data stays within `max_data_bytes`.
    pub keys: u64,
    /// Bound on keys x value size, so every target holds the whole key space without evicting.
    pub max_data_bytes: u64,
    pub get_ratio: f64,
    pub rounds: usize,
    pub round_duration: Duration,
    pub timeout: Duration,
    /// Idle connections to open against each target (0 skips the idle test).
    pub idle_connections: usize,
    /// Threads of the load generator's runtime.
    pub client_threads: usize,
    /// Threads of the load generator's runtime for values of [`LARGE_VALUE`] or more.
    pub large_client_threads: usize,
    /// The exact command that started the comparison, for the report.
    pub command: String,
}

/// Values from this size on get [`CompareConfig::large_client_threads`]: one thread moving
/// 100 KiB values against memcached direct used 91–98 % of its core, so those rows measured the
/// tool.
pub const LARGE_VALUE: usize = 64 * 1024;

impl CompareConfig {
    /// The matrix of issues 2 to 4: text, meta and binary at pipeline 1 and 16, 100-byte and
    /// 100 KiB values, 50 connections, 90 % gets, 9 rounds of 3 seconds (see `riven-bench`'s
    /// `--rounds`), then 10,000 idle connections.
    pub fn new(targets: Vec<Target>, command: String) -> CompareConfig {
        CompareConfig {
            targets,
            protocols: Protocol::ALL.to_vec(),
            pipelines: vec![1, 16],
            value_sizes: vec![100, 100 * 1024],
            connections: 50,
            keys: 100_000,
            max_data_bytes: 256 << 20,
            get_ratio: 0.9,
            rounds: 9,
            round_duration: Duration::from_secs(3),
            timeout: Duration::from_secs(5),
            idle_connections: 10_000,
            client_threads: 1,
            large_client_threads: 2,
            command,
        }
    }

    /// The load generator's threads for values of `value_size`.
    pub fn client_threads_for(&self, value_size: usize) -> usize {
        if value_size >= LARGE_VALUE {
            self.large_client_threads
        } else {
            self.client_threads
        }
    }

    fn keys_for(&self, value_size: usize) -> u64 {
        let fit = self.max_data_bytes / (value_size.max(1) as u64);
        self.keys.min(fit).max(1)
    }
}

#[cfg(test)]
mod tests;
