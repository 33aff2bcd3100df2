//! One run: its connections started together, measured from the same instant, and their
//! counts, latencies and failures gathered into one [`RunReport`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::conn::{connection, Gate};
use super::report::{empty_report, summarize_failures, OpReport, RunReport};
use super::{EngineConfig, OpStats, Shared, Workload};
use crate::cpu::{self, CpuClock};
use crate::hist::LatencyHist;
use crate::proc;
use crate::wire::Op;

/// Builds the runtime the tools run on: a current-thread runtime for 1 thread (no hand-offs
/// between threads), a multi-thread one otherwise.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// Resolves `host:port` to its first address.
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    match tokio::net::lookup_host(addr).await {
        Ok(mut it) => it.next().ok_or_else(|| format!("{addr}: no address")),
        Err(e) => Err(format!("{addr}: {e}")),
    }
}

/// Runs `make(i)`'s workload on connection `i` for every connection, and reports. Returns the
/// workloads too, for the counters a tool keeps in them (connections that failed to start have
/// theirs). Never panics on what the server does: every failure ends up in
/// [`RunReport::errors`].
pub async fn run<W: Workload>(tool: &str, cfg: &EngineConfig, mut make: impl FnMut(usize) -> W) -> (RunReport, Vec<W>) {
    let cfg = Arc::new(cfg.clone());
    let mut report = empty_report(tool, &cfg);
    if cfg.connections == 0 || cfg.pipeline == 0 {
        report.errors.push("connections and pipeline must be at least 1".into());
        report.ok = false;
        return (report, Vec::new());
    }
    if let Some(r) = cfg.rate {
        if !(r.is_finite() && r > 0.0) {
            report
                .errors
                .push(format!("the request rate must be positive, not {r}"));
            report.ok = false;
            return (report, Vec::new());
        }
    }
    let addr = match resolve(&cfg.addr).await {
        Ok(a) => a,
        Err(e) => {
            report.errors.push(e);
            report.ok = false;
            return (report, Vec::new());
        }
    };

    let shared = Arc::new(Shared::default());
    // Every connection connects and warms up, says it is ready, then all start measuring at the
    // same instant. A task that died drops its sender without saying so, so the wait still ends.
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(cfg.connections);
    let (go_tx, go_rx) = watch::channel(None);
    let setup_start = Instant::now();
    let mut tasks = JoinSet::new();
    for id in 0..cfg.connections {
        let gate = Gate {
            ready: ready_tx.clone(),
            go: go_rx.clone(),
        };
        tasks.spawn(connection(id, addr, cfg.clone(), shared.clone(), gate, make(id)));
    }
    drop(ready_tx);
    for _ in 0..cfg.connections {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let servers_before: Vec<Option<u64>> = cfg.server_pids.iter().map(|&p| proc::cpu_ticks(p)).collect();
    let start = Instant::now();
    let clock = CpuClock::start();
    let _ = go_tx.send(Some(start));
    report.warmup_secs = (start - setup_start).as_secs_f64();
    let ticker = cfg.progress.then(|| tokio::spawn(progress(shared.clone(), start)));

    let mut per_op: Vec<OpStats> = vec![OpStats::default(); Op::COUNT];
    let mut lag = LatencyHist::new();
    let mut end = start;
    let mut failures = Vec::new();
    let mut workloads = Vec::with_capacity(cfg.connections);
    let mut finished = true;
    while let Some(joined) = tasks.join_next().await {
        let r = match joined {
            Ok(r) => r,
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                report.errors.push(format!("a connection task failed: {e}"));
                finished = false;
                continue;
            }
        };
        if let Some(e) = r.error {
            failures.push((r.id, e));
        }
        finished &= r.finished;
        for (all, mine) in per_op.iter_mut().zip(&r.stats) {
            all.count += mine.count;
            all.hits += mine.hits;
            all.misses += mine.misses;
            all.hist.add(&mine.hist);
        }
        lag.add(&r.lag);
        end = end.max(r.end);
        workloads.push((r.id, r.workload));
    }
    if let Some(t) = ticker {
        t.abort();
    }
    workloads.sort_by_key(|(id, _)| *id);

    let mut all = LatencyHist::new();
    for (op, s) in Op::ALL.iter().zip(&per_op) {
        if s.count == 0 {
            continue;
        }
        all.add(&s.hist);
        report.ops += s.count;
        report.hits += s.hits;
        report.misses += s.misses;
        report.commands.push(OpReport {
            op: *op,
            count: s.count,
            hits: s.hits,
            misses: s.misses,
            latency: s.hist.summary(),
        });
    }
    report.secs = (end - start).as_secs_f64();
    if report.secs > 0.0 {
        report.ops_per_sec = report.ops as f64 / report.secs;
    }
    report.latency = all.summary();
    if cfg.rate.is_some() {
        report.send_lag = Some(lag.summary());
    }
    report.cpu = clock.stop(cpu::runtime_threads());
    report.server_ticks = cfg
        .server_pids
        .iter()
        .zip(&servers_before)
        .map(|(&p, before)| Some(proc::cpu_ticks(p)?.saturating_sub((*before)?)))
        .collect();
    report.finished = finished;
    report.errors.extend(summarize_failures(failures));
    report.ok = report.errors.is_empty();
    (report, workloads.into_iter().map(|(_, w)| w).collect())
}

async fn progress(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut last = 0;
    loop {
        tick.tick().await;
        let ops = shared.ops.load(Ordering::Relaxed);
        eprintln!(
            "  {:>4.0} s {:>12} ops/s {:>14} requests",
            start.elapsed().as_secs_f64(),
            ops - last,
            ops
        );
        last = ops;
    }
}
