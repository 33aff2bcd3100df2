//! `riven-bench compare`: the benchmark runner. Starts each target server, drives all of them with
//! the same [`load`](super::load) runs, alternating between targets round after round so that
//! drift in the machine (frequency, other tenants, page cache) hits every target alike, then
//! measures what an idle connection costs each of them.
//!
//! The runner knows nothing about particular servers: a [`Target`] is a name and a command line.
//! The first target is the baseline every ratio is taken against (memcached direct); more modes
//! of the node (over memcached, L1 + L2) are more targets.

use std::time::Duration;

use serde::Serialize;

use super::cpu;
use super::hist::{median, ratio};
use super::idle;
use super::load::{self, LoadConfig};
use super::proc::{self, Machine, Server, ServerSpec};
use super::value::{KeySpace, ValueSpec};
use super::wire::Protocol;

mod markdown;
pub use markdown::render_markdown;

/// A server to benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub server: ServerSpec,
    /// The index of an earlier target this one runs on top of (riven-node over memcached): its
    /// port replaces `{dep_port}` in the arguments, and its memory counts in the idle test.
    pub depends_on: Option<usize>,
    /// A mode that may not exist yet: if the server does not start, the target is skipped with
    /// the reason, instead of failing the comparison.
    pub optional: bool,
}

/// Settings shared by the servers, given to each in its own flags.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ServerSettings {
    pub threads: usize,
    pub memory_mb: usize,
    pub max_connections: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            threads: 4,
            memory_mb: 1024,
            max_connections: 20_000,
        }
    }
}

/// memcached on TCP only (`-U 0`), on 127.0.0.1; with `-u root` when run as root, which
/// memcached otherwise refuses.
///
/// With `-R 1000`, the setting the README gives for a memcached behind a node. `-R` bounds the
/// requests memcached answers from one connection before it yields to the others (default 20).
/// A node's link carries the requests of all its clients, so at the default memcached flushes
/// and goes back to epoll every 20 requests of it (BENCHMARKS.md, "Design measurements"). The
/// direct clients here send at most 16 requests per batch, so the setting does not change the
/// memcached-direct baseline.
pub fn memcached(program: impl Into<std::path::PathBuf>, s: ServerSettings) -> Target {
    let mut args = Vec::new();
    if proc::is_root() {
        args.extend(["-u".to_string(), "root".to_string()]);
    }
    args.extend(common_args(s));
    args.extend(["-U".to_string(), "0".to_string(), "-R".to_string(), "1000".to_string()]);
    Target {
        name: "memcached".into(),
        server: ServerSpec {
            program: program.into(),
            args,
        },
        depends_on: None,
        optional: false,
    }
}

/// riven-node on its embedded memory store.
pub fn riven_node(program: impl Into<std::path::PathBuf>, s: ServerSettings) -> Target {
    Target {
        name: "riven-node".into(),
        server: ServerSpec {
            program: program.into(),
            args: common_args(s),
        },
        depends_on: None,
        optional: false,
    }
}

/// riven-node with target `memcached` (an index into the targets) as its L1
/// (`--l1-memcached`). Optional: a node that does not know the flag yet is skipped.
pub fn riven_node_over_memcached(
    program: impl Into<std::path::PathBuf>,
    s: ServerSettings,
    memcached: usize,
) -> Target {
    let mut args = common_args(s);
    args.extend(["--l1-memcached".to_string(), "127.0.0.1:{dep_port}".to_string()]);
    Target {
        name: "riven-node/memcached".into(),
        server: ServerSpec {
            program: program.into(),
            args,
        },
        depends_on: Some(memcached),
        optional: true,
    }
}

/// riven-node in l1-l2 mode: its memory store over an on-disk L2 in a fresh temporary directory
/// bounded to 1 GiB.
pub fn riven_node_l1_l2(program: impl Into<std::path::PathBuf>, s: ServerSettings) -> Target {
    let mut args = common_args(s);
    args.extend([
        "--l2-path".to_string(),
        "{tempdir}".to_string(),
        "--l2-max-bytes".to_string(),
        "1g".to_string(),
    ]);
    Target {
        name: "riven-node/l1-l2".into(),
        server: ServerSpec {
            program: program.into(),
            args,
        },
        depends_on: None,
        optional: true,
    }
}

fn common_args(s: ServerSettings) -> Vec<String> {
    [
        "-t".to_string(),
        s.threads.to_string(),
        "-m".into(),
        s.memory_mb.to_string(),
        "-c".into(),
        s.max_connections.to_string(),
        "-l".into(),
        "127.0.0.1".into(),
        "-p".into(),
        "{port}".into(),
    ]
    .into()
}

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
    /// The exact command that started the comparison, for the report.
    pub command: String,
}

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
            command,
        }
    }

    fn keys_for(&self, value_size: usize) -> u64 {
        let fit = self.max_data_bytes / (value_size.max(1) as u64);
        self.keys.min(fit).max(1)
    }
}

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

/// The servers of every target, started; the pid each one runs on (memcached under a node), and
/// the targets that could not start.
struct Started {
    servers: Vec<Server>,
    dep_pids: Vec<Option<u32>>,
    skipped: Vec<Skipped>,
}

fn start_targets(cfg: &CompareConfig, log: &mut dyn FnMut(&str)) -> Result<Started, String> {
    let mut servers: Vec<Server> = Vec::new();
    // Per started server: the pid of the server it runs on, whose memory counts too.
    let mut dep_pids: Vec<Option<u32>> = Vec::new();
    // Target index to started-server index.
    let mut started: Vec<Option<usize>> = Vec::new();
    let mut skipped = Vec::new();
    for t in &cfg.targets {
        let dep = match t.depends_on {
            Some(d) => match started.get(d).copied().flatten() {
                Some(i) => Some(i),
                None => {
                    let reason = format!("it runs on target {d}, which did not start");
                    log(&format!("skipping {}: {reason}", t.name));
                    skipped.push(Skipped {
                        name: t.name.clone(),
                        reason,
                    });
                    started.push(None);
                    continue;
                }
            },
            None => None,
        };
        let dep_port = dep.map(|i| servers[i].port);
        match Server::start_with(&t.name, &t.server, dep_port, Duration::from_secs(10)) {
            Ok(s) => {
                log(&format!("started {} (pid {}): {}", s.name, s.pid(), s.command));
                started.push(Some(servers.len()));
                dep_pids.push(dep.map(|i| servers[i].pid()));
                servers.push(s);
            }
            Err(e) if t.optional => {
                log(&format!("skipping {} (a mode this build may not have): {e}", t.name));
                skipped.push(Skipped {
                    name: t.name.clone(),
                    reason: e,
                });
                started.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Started {
        servers,
        dep_pids,
        skipped,
    })
}

/// Runs the comparison. `log` receives a line per step (the caller prints it to stderr).
/// Fails only when a server cannot be started; everything else ends up in the report.
pub fn run(cfg: &CompareConfig, log: &mut dyn FnMut(&str)) -> Result<CompareReport, String> {
    if cfg.targets.is_empty() {
        return Err("no targets".into());
    }
    // 10,000 idle connections need more descriptors than the usual soft limit of 1024; the
    // servers inherit the raised limit too.
    if let Err(e) = proc::raise_nofile_limit() {
        log(&format!("cannot raise the open-file limit: {e}"));
    }
    let Started {
        mut servers,
        dep_pids: _,
        skipped,
    } = start_targets(cfg, log)?;
    let runtime = load::runtime(cfg.client_threads).map_err(|e| format!("tokio runtime: {e}"))?;

    let mut report = CompareReport {
        ok: true,
        machine: Machine::describe(),
        command: cfg.command.clone(),
        servers: servers
            .iter()
            .map(|s| ServerInfo {
                name: s.name.clone(),
                command: s.command.clone(),
            })
            .collect(),
        connections: cfg.connections,
        keys: cfg.keys,
        get_ratio: cfg.get_ratio,
        rounds: cfg.rounds,
        round_secs: cfg.round_duration.as_secs_f64(),
        client_threads: cfg.client_threads,
        settings: Vec::new(),
        idle: Vec::new(),
        skipped,
        errors: Vec::new(),
    };

    for &value_size in &cfg.value_sizes {
        for &protocol in &cfg.protocols {
            for &pipeline in &cfg.pipelines {
                let setting = run_setting(cfg, &runtime, &mut servers, protocol, pipeline, value_size, log);
                report.settings.push(setting);
            }
        }
    }

    if cfg.idle_connections > 0 {
        // Fresh servers: after the load, a server's allocator holds freed memory that idle
        // connections would reuse, hiding what a connection costs.
        for s in &mut servers {
            s.stop(Duration::from_secs(5));
        }
        let fresh = start_targets(cfg, log)?;
        servers = fresh.servers;
        let dep_pids = fresh.dep_pids;
        for (s, dep) in servers.iter().zip(&dep_pids) {
            log(&format!(
                "{}: opening {} idle connections",
                s.name, cfg.idle_connections
            ));
            // A node over memcached costs its own memory plus whatever its memcached grows by.
            let pids: Vec<u32> = std::iter::once(s.pid()).chain(*dep).collect();
            let r = match idle::measure(&s.addr(), cfg.idle_connections, &pids, cfg.timeout) {
                Ok((r, conns)) => {
                    log(r.human().trim_end());
                    drop(conns);
                    // Let the server see the connections close before the next measurement.
                    std::thread::sleep(Duration::from_millis(500));
                    IdleResult {
                        name: s.name.clone(),
                        report: Some(r),
                        error: None,
                    }
                }
                Err(e) => IdleResult {
                    name: s.name.clone(),
                    report: None,
                    error: Some(e),
                },
            };
            report.idle.push(r);
        }
    }

    for s in &mut servers {
        s.stop(Duration::from_secs(5));
    }
    collect_errors(&mut report);
    Ok(report)
}

fn run_setting(
    cfg: &CompareConfig,
    runtime: &tokio::runtime::Runtime,
    servers: &mut [Server],
    protocol: Protocol,
    pipeline: usize,
    value_size: usize,
    log: &mut dyn FnMut(&str),
) -> SettingResult {
    let keys = cfg.keys_for(value_size);
    let mut setting = SettingResult {
        protocol,
        pipeline,
        value_size,
        keys,
        targets: servers
            .iter()
            .map(|s| TargetResult {
                name: s.name.clone(),
                ..TargetResult::default()
            })
            .collect(),
    };
    // Each target has keys of its own: a node over memcached stores its items (and chunks) in
    // the memcached the baseline also uses, under the same names if nothing told them apart.
    let load_cfg = |i: usize, s: &Server, warmup: bool| {
        let mut c = LoadConfig::new(s.addr(), protocol);
        c.connections = cfg.connections;
        c.pipeline = pipeline;
        c.keys = KeySpace::new(&format!("r{i}:"), 0, keys).expect("a key space of at least one key is valid");
        c.values = ValueSpec::fixed(value_size);
        c.get_ratio = cfg.get_ratio;
        c.timeout = cfg.timeout;
        c.warmup = warmup;
        // A warm-up run only fills the key space: it measures nothing.
        c.duration = if warmup { Duration::ZERO } else { cfg.round_duration };
        c
    };
    let label = format!("{protocol} pipeline {pipeline} {value_size} B");

    for (i, s) in servers.iter().enumerate() {
        let r = runtime.block_on(load::run(&load_cfg(i, s, true)));
        if !r.ok {
            setting.targets[i].error = Some(format!("warm-up: {}", r.errors.join("; ")));
        }
    }
    for round in 0..cfg.rounds {
        // Rotate who goes first, so no target always runs right after the same other one.
        for k in 0..servers.len() {
            let i = (k + round) % servers.len();
            if setting.targets[i].error.is_some() {
                continue;
            }
            let s = &servers[i];
            let r = runtime.block_on(load::run(&load_cfg(i, s, false)));
            if !r.ok {
                log(&format!(
                    "{label} round {}: {}: FAILED: {}",
                    round + 1,
                    s.name,
                    r.errors.join("; ")
                ));
                setting.targets[i].error = Some(r.errors.join("; "));
                continue;
            }
            let hit_ratio = if r.gets > 0 { r.hits as f64 / r.gets as f64 } else { 1.0 };
            let hits = if hit_ratio < 1.0 {
                format!("  hits {:.2} %", hit_ratio * 100.0)
            } else {
                String::new()
            };
            log(&format!(
                "{label} round {}: {:<12} {:>10.0} ops/s  p50 {:>7.1} µs  p99 {:>7.1} µs  gen cpu {}{hits}",
                round + 1,
                s.name,
                r.ops_per_sec,
                r.latency.p50_us,
                r.latency.p99_us,
                cpu::cell(Some(r.cpu.fraction))
            ));
            setting.targets[i].runs.push(RunSample {
                ops_per_sec: r.ops_per_sec,
                p50_us: r.latency.p50_us,
                p99_us: r.latency.p99_us,
                p999_us: r.latency.p999_us,
                hit_ratio,
                gen_cpu: r.cpu.fraction,
            });
        }
    }
    setting.finish();
    setting
}

fn collect_errors(report: &mut CompareReport) {
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn sample(ops: f64, p50: f64, p99: f64) -> RunSample {
        RunSample {
            ops_per_sec: ops,
            p50_us: p50,
            p99_us: p99,
            p999_us: p99 * 2.0,
            hit_ratio: 1.0,
            gen_cpu: 0.5,
        }
    }

    pub(super) fn setting() -> SettingResult {
        SettingResult {
            protocol: Protocol::Text,
            pipeline: 16,
            value_size: 100,
            keys: 1000,
            targets: vec![
                TargetResult {
                    name: "memcached".into(),
                    runs: vec![
                        sample(100.0, 10.0, 50.0),
                        sample(120.0, 12.0, 40.0),
                        sample(110.0, 11.0, 60.0),
                    ],
                    ..TargetResult::default()
                },
                TargetResult {
                    name: "riven-node".into(),
                    runs: vec![
                        sample(99.0, 9.0, 66.0),
                        sample(88.0, 8.0, 55.0),
                        sample(500.0, 7.0, 44.0),
                    ],
                    ..TargetResult::default()
                },
            ],
        }
    }

    #[test]
    fn medians_and_ratios_against_the_first_target() {
        let mut s = setting();
        s.finish();
        let (m, n) = (&s.targets[0], &s.targets[1]);
        assert_eq!(
            (m.ops_per_sec, m.p50_us, m.p99_us),
            (Some(110.0), Some(11.0), Some(50.0))
        );
        assert_eq!(m.ops_ratio, Some(1.0));
        assert_eq!(m.p99_ratio, Some(1.0));
        // The outlier round (500) does not move the median.
        assert_eq!(n.ops_per_sec, Some(99.0));
        assert_eq!(n.ops_ratio, Some(0.9));
        // Round by round: 99/100, 88/120, 500/110; the median is the first.
        assert_eq!(n.round_ratio, Some(0.99));
        assert_eq!(m.round_ratio, Some(1.0));
        assert_eq!(n.p99_ratio, Some(55.0 / 50.0));
        assert!((m.spread.unwrap() - 20.0 / 110.0).abs() < 1e-9);
    }

    #[test]
    fn a_failed_baseline_leaves_no_ratio() {
        let mut s = setting();
        s.targets[0].runs.clear();
        s.targets[0].error = Some("closed".into());
        s.finish();
        assert_eq!(s.targets[1].ops_ratio, None);
        assert_eq!(s.targets[1].round_ratio, None);
        assert_eq!(s.targets[1].ops_per_sec, Some(99.0));
    }

    #[test]
    fn key_space_fits_the_memory_bound() {
        let cfg = CompareConfig::new(Vec::new(), String::new());
        assert_eq!(cfg.keys_for(100), 100_000);
        assert_eq!(cfg.keys_for(100 * 1024), 2621);
        assert_eq!(cfg.value_sizes, vec![100, 100 * 1024]);
        let args = memcached("/usr/bin/memcached", ServerSettings::default()).server.args;
        assert!(args.windows(2).any(|w| w == ["-U", "0"]));
        assert!(args.windows(2).any(|w| w == ["-R", "1000"]));
        assert!(args.windows(2).any(|w| w == ["-p", "{port}"]));
        let over = riven_node_over_memcached("riven-node", ServerSettings::default(), 0);
        assert!(over.optional && over.depends_on == Some(0));
        assert!(over
            .server
            .args
            .windows(2)
            .any(|w| w == ["--l1-memcached", "127.0.0.1:{dep_port}"]));
        let l2 = riven_node_l1_l2("riven-node", ServerSettings::default());
        assert!(l2.server.args.windows(2).any(|w| w == ["--l2-path", "{tempdir}"]));
        assert!(l2.server.args.windows(2).any(|w| w == ["--l2-max-bytes", "1g"]));
    }
}
