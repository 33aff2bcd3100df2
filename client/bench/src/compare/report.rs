//! What a comparison found: per setting and target, the rounds, their medians and the ratios
//! against the baseline, the idle-connection costs, and the errors gathered from all of them.

use serde::Serialize;

use crate::cpu;
use crate::hist::{median, ratio};
use crate::idle;
use crate::proc::Machine;
use crate::wire::Protocol;

/// Everything a comparison found.
#[derive(Clone, Debug, Serialize)]
pub struct CompareReport {
    pub ok: bool,
    pub machine: Machine,
    pub command: String,
    pub servers: Vec<ServerInfo>,
    pub connections: usize,
    pub keys: u64,
    pub get_ratio: f64,
    pub rounds: usize,
    pub round_secs: f64,
    pub client_threads: usize,
    /// The load generator's threads for values of 64 KiB or more.
    pub large_client_threads: usize,
    pub settings: Vec<SettingResult>,
    pub idle: Vec<IdleResult>,
    /// Optional targets that did not start, with the reason.
    pub skipped: Vec<Skipped>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo {
    pub name: String,
    pub command: String,
}

/// One cell of the matrix.
#[derive(Clone, Debug, Serialize)]
pub struct SettingResult {
    pub protocol: Protocol,
    pub pipeline: usize,
    pub value_size: usize,
    pub keys: u64,
    /// Threads of the load generator.
    pub client_threads: usize,
    /// In target order; the first is the baseline.
    pub targets: Vec<TargetResult>,
}

/// One target's rounds at one setting, and how its medians compare with the baseline's.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TargetResult {
    pub name: String,
    pub runs: Vec<RunSample>,
    pub ops_per_sec: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    /// (max - min) / median of the rounds' throughputs.
    pub spread: Option<f64>,
    /// Median throughput over the baseline's.
    pub ops_ratio: Option<f64>,
    /// Median over the rounds of this target's throughput over the baseline's in the same
    /// round. A setting's targets run one after another within seconds, so this cancels the
    /// drift of the whole machine's speed between rounds, which the ratio of medians keeps.
    pub round_ratio: Option<f64>,
    /// Median p99 over the baseline's.
    pub p99_ratio: Option<f64>,
    /// Median of the rounds' load-generator CPU shares (see [`cpu`]).
    pub gen_cpu: Option<f64>,
    /// `gen_cpu` reached [`cpu::SATURATED`]: the throughput is the load tool's, not the target's.
    pub saturated: bool,
    /// Median of the rounds' server CPU time per operation, in µs (see [`RunSample`]).
    pub server_us_per_op: Option<f64>,
    /// The same for the server this target runs on (the memcached under a node); `None` for a
    /// target without one.
    pub dep_us_per_op: Option<f64>,
    pub error: Option<String>,
}

/// One round of one target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RunSample {
    pub ops_per_sec: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub hit_ratio: f64,
    /// The load generator's CPU use as a share of its threads.
    pub gen_cpu: f64,
    /// The target's server process's CPU time (user + system, from its clock ticks) over the
    /// measured phase, per operation the round completed, in µs; `None` without a process to
    /// read (or when reading it failed).
    pub server_us_per_op: Option<f64>,
    /// The same for the server the target runs on (the memcached under a node over memcached).
    pub dep_us_per_op: Option<f64>,
}

/// CPU time per operation in µs: `ticks` clock ticks of `ticks_per_sec` each, spent on `ops`
/// operations. `None` when there is nothing to divide (no ticks read, no operations).
pub(super) fn cpu_us_per_op(ticks: Option<u64>, ticks_per_sec: u64, ops: u64) -> Option<f64> {
    let ticks = ticks?;
    if ops == 0 || ticks_per_sec == 0 {
        return None;
    }
    Some(ticks as f64 * 1e6 / ticks_per_sec as f64 / ops as f64)
}

#[derive(Clone, Debug, Serialize)]
pub struct IdleResult {
    pub name: String,
    pub report: Option<idle::IdleReport>,
    pub error: Option<String>,
}

impl TargetResult {
    /// Medians of the rounds.
    fn summarize(&mut self) {
        let ops: Vec<f64> = self.runs.iter().map(|r| r.ops_per_sec).collect();
        self.ops_per_sec = median(&ops);
        self.p50_us = median(&self.runs.iter().map(|r| r.p50_us).collect::<Vec<_>>());
        self.p99_us = median(&self.runs.iter().map(|r| r.p99_us).collect::<Vec<_>>());
        self.p999_us = median(&self.runs.iter().map(|r| r.p999_us).collect::<Vec<_>>());
        self.gen_cpu = median(&self.runs.iter().map(|r| r.gen_cpu).collect::<Vec<_>>());
        self.saturated = self.gen_cpu.is_some_and(cpu::is_saturated);
        // Over the rounds that have the figure.
        self.server_us_per_op = median(&self.runs.iter().filter_map(|r| r.server_us_per_op).collect::<Vec<_>>());
        self.dep_us_per_op = median(&self.runs.iter().filter_map(|r| r.dep_us_per_op).collect::<Vec<_>>());
        self.spread = self.ops_per_sec.filter(|m| *m > 0.0 && ops.len() > 1).map(|m| {
            let max = ops.iter().copied().fold(f64::MIN, f64::max);
            let min = ops.iter().copied().fold(f64::MAX, f64::min);
            (max - min) / m
        });
    }
}

impl SettingResult {
    /// Medians per target and ratios against the first target.
    pub fn finish(&mut self) {
        for t in &mut self.targets {
            t.summarize();
        }
        let (base_ops, base_p99) = match self.targets.first() {
            Some(b) => (b.ops_per_sec, b.p99_us),
            None => return,
        };
        let base_runs: Vec<f64> = self.targets[0].runs.iter().map(|r| r.ops_per_sec).collect();
        for t in &mut self.targets {
            t.ops_ratio = ratio(t.ops_per_sec, base_ops);
            t.p99_ratio = ratio(t.p99_us, base_p99);
            // A target that fails runs no further rounds, so runs are rounds from the first.
            let paired: Vec<f64> = t
                .runs
                .iter()
                .zip(&base_runs)
                .filter_map(|(r, b)| ratio(Some(r.ops_per_sec), Some(*b)))
                .collect();
            t.round_ratio = median(&paired);
        }
    }
}

pub(super) fn collect_errors(report: &mut CompareReport) {
    for s in &report.settings {
        for t in &s.targets {
            if let Some(e) = &t.error {
                report.errors.push(format!(
                    "{} pipeline {} {} B: {}: {e}",
                    s.protocol, s.pipeline, s.value_size, t.name
                ));
            }
        }
    }
    for i in &report.idle {
        if let Some(e) = &i.error {
            report.errors.push(format!("idle: {}: {e}", i.name));
        }
        if let Some(r) = &i.report {
            if r.still_open < r.connections {
                report.errors.push(format!(
                    "idle: {}: the server closed {} of {} idle connections",
                    i.name,
                    r.connections - r.still_open,
                    r.connections
                ));
            }
        }
    }
    report.ok = report.errors.is_empty();
}
