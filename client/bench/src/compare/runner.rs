//! Running a comparison: the targets started, each setting's rounds alternating between
//! targets, then the idle test on freshly started servers.

use std::time::Duration;

use super::report::{collect_errors, cpu_us_per_op};
use super::{CompareConfig, CompareReport, IdleResult, RunSample, ServerInfo, SettingResult, Skipped, TargetResult};
use crate::cpu;
use crate::idle;
use crate::load::{self, LoadConfig};
use crate::proc::{self, Machine, Server};
use crate::value::{KeySpace, ValueSpec};
use crate::wire::Protocol;

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
    let mut started = start_targets(cfg, log)?;
    let skipped = std::mem::take(&mut started.skipped);
    // One runtime per thread count the settings ask for, built once.
    let mut runtimes: Vec<(usize, tokio::runtime::Runtime)> = Vec::new();
    for &size in &cfg.value_sizes {
        let threads = cfg.client_threads_for(size);
        if !runtimes.iter().any(|(t, _)| *t == threads) {
            let rt = load::runtime(threads).map_err(|e| format!("tokio runtime: {e}"))?;
            runtimes.push((threads, rt));
        }
    }

    let mut report = CompareReport {
        ok: true,
        machine: Machine::describe(),
        command: cfg.command.clone(),
        servers: started
            .servers
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
        large_client_threads: cfg.large_client_threads,
        settings: Vec::new(),
        idle: Vec::new(),
        skipped,
        errors: Vec::new(),
    };

    for &value_size in &cfg.value_sizes {
        for &protocol in &cfg.protocols {
            for &pipeline in &cfg.pipelines {
                let threads = cfg.client_threads_for(value_size);
                let runtime = &runtimes.iter().find(|(t, _)| *t == threads).expect("built above").1;
                let setting = run_setting(cfg, runtime, &started, protocol, pipeline, value_size, log);
                report.settings.push(setting);
            }
        }
    }

    if cfg.idle_connections > 0 {
        // Fresh servers: after the load, a server's allocator holds freed memory that idle
        // connections would reuse, hiding what a connection costs.
        for s in &mut started.servers {
            s.stop(Duration::from_secs(5));
        }
        started = start_targets(cfg, log)?;
        for (s, dep) in started.servers.iter().zip(&started.dep_pids) {
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

    for s in &mut started.servers {
        s.stop(Duration::from_secs(5));
    }
    collect_errors(&mut report);
    Ok(report)
}

fn run_setting(
    cfg: &CompareConfig,
    runtime: &tokio::runtime::Runtime,
    started: &Started,
    protocol: Protocol,
    pipeline: usize,
    value_size: usize,
    log: &mut dyn FnMut(&str),
) -> SettingResult {
    let Started { servers, dep_pids, .. } = started;
    let keys = cfg.keys_for(value_size);
    let mut setting = SettingResult {
        protocol,
        pipeline,
        value_size,
        keys,
        client_threads: cfg.client_threads_for(value_size),
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
        if !warmup {
            // The server's CPU time over the measured phase, then its memcached's under a node.
            c.server_pids = std::iter::once(s.pid()).chain(dep_pids[i]).collect();
        }
        c
    };
    let ticks_per_sec = proc::clock_ticks_per_sec().unwrap_or(0);
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
            let server_us = cpu_us_per_op(r.server_ticks.first().copied().flatten(), ticks_per_sec, r.ops);
            // Only a target with a dependency watched a second process.
            let dep_us = cpu_us_per_op(r.server_ticks.get(1).copied().flatten(), ticks_per_sec, r.ops);
            let mut server_cpu = String::new();
            if let Some(us) = server_us {
                server_cpu += &format!("  server {us:.2} µs/op");
            }
            if let Some(us) = dep_us {
                server_cpu += &format!("  dep {us:.2} µs/op");
            }
            log(&format!(
                "{label} round {}: {:<12} {:>10.0} ops/s  p50 {:>7.1} µs  p99 {:>7.1} µs  gen cpu {}{server_cpu}{hits}",
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
                server_us_per_op: server_us,
                dep_us_per_op: dep_us,
            });
        }
    }
    setting.finish();
    setting
}
