//! `riven-bench load`: closed-loop load over many pipelined connections, every hit verified.
//!
//! Each connection runs one loop: compose a batch of `pipeline` requests into one buffer, send it
//! with one write, then read until every reply of the batch has been parsed, checked and timed.
//! Buffers, the key and the value scratch space belong to the connection and are reused, so the
//! steady state allocates nothing: on a 2-core machine shared with the server under test, every
//! cycle the tool spends is one the server does not get.
//!
//! Latency is measured per request from the moment its batch is written to the moment its reply
//! is parsed, so with a pipeline it includes the wait behind earlier replies of the batch, as an
//! application issuing the same batch would see it.
//!
//! Any wrong value, unexpected reply, closed connection or call that outlives `timeout` stops the
//! whole run and is listed in the report; [`LoadReport::ok`] is then false and the tool exits 1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::hist::{LatencyHist, LatencySummary};
use super::value::{KeyBuf, KeySpace, Rng, ValueSpec};
use super::wire::{self, Op, Protocol, Reply, WireError};

/// Batches used to pre-fill the key space are at least this deep, whatever the run's pipeline:
/// the warm-up is not measured, only waited for.
const WARMUP_DEPTH: usize = 32;

/// Read at least this much at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What a load run does.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `host:port` of the server.
    pub addr: String,
    pub protocol: Protocol,
    pub connections: usize,
    /// Requests per batch on each connection (1 = no pipelining).
    pub pipeline: usize,
    pub keys: KeySpace,
    pub values: ValueSpec,
    /// Fraction of requests that are gets; the rest are sets.
    pub get_ratio: f64,
    /// How long the measured phase lasts (the batch in flight at the end still completes).
    pub duration: Duration,
    /// Bound on every connect, write and read.
    pub timeout: Duration,
    /// Set every key once before measuring, so gets hit.
    pub warmup: bool,
    /// Treat a get miss as an error (right when the key space was pre-filled and fits in memory).
    pub fail_on_miss: bool,
    /// Seed of the key and operation choices; connection `i` uses `seed + i`.
    pub seed: u64,
    /// Print the throughput to stderr every second.
    pub progress: bool,
}

impl LoadConfig {
    /// The defaults of `riven-bench load`: 50 connections, no pipelining, 100,000 keys of 100
    /// bytes, 90 % gets, 10 seconds, 5-second timeout, warm-up on.
    pub fn new(addr: impl Into<String>, protocol: Protocol) -> LoadConfig {
        LoadConfig {
            addr: addr.into(),
            protocol,
            connections: 50,
            pipeline: 1,
            keys: KeySpace::new("rb:", 0, 100_000).expect("default key space is valid"),
            values: ValueSpec::fixed(100),
            get_ratio: 0.9,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            warmup: true,
            fail_on_miss: false,
            seed: 1,
            progress: false,
        }
    }
}

/// What a load run measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub ok: bool,
    pub addr: String,
    pub protocol: Protocol,
    pub connections: usize,
    pub pipeline: usize,
    pub keys: u64,
    pub key_len: usize,
    pub value_min: usize,
    pub value_max: usize,
    pub get_ratio: f64,
    pub warmup_secs: f64,
    /// Length of the measured phase.
    pub secs: f64,
    pub ops: u64,
    pub gets: u64,
    pub sets: u64,
    pub hits: u64,
    pub misses: u64,
    /// Requests per second over the measured phase.
    pub ops_per_sec: f64,
    pub latency: LatencySummary,
    pub get_latency: LatencySummary,
    pub set_latency: LatencySummary,
    /// What went wrong, one line per failed connection (empty when `ok`).
    pub errors: Vec<String>,
}

impl LoadReport {
    /// The human summary.
    pub fn human(&self) -> String {
        let mut s = format!(
            "riven-bench load {} on {}: {} connections, pipeline {}, {} keys of {} B, values {}, {:.0} % gets\n",
            self.protocol,
            self.addr,
            self.connections,
            self.pipeline,
            self.keys,
            self.key_len,
            ValueSpec {
                min: self.value_min,
                max: self.value_max
            },
            self.get_ratio * 100.0
        );
        let hit_pct = if self.gets > 0 {
            100.0 * self.hits as f64 / self.gets as f64
        } else {
            0.0
        };
        s += &format!(
            "  throughput {:>12.0} ops/s over {:.2} s (warm-up {:.2} s)\n  requests   {:>12} ({} gets, {} sets; hits {:.2} %, {} misses)\n",
            self.ops_per_sec, self.secs, self.warmup_secs, self.ops, self.gets, self.sets, hit_pct, self.misses
        );
        s += "  latency µs        p50        p90        p99      p99.9        max\n";
        for (name, l) in [
            ("all", &self.latency),
            ("get", &self.get_latency),
            ("set", &self.set_latency),
        ] {
            if l.count > 0 {
                s += &format!(
                    "    {name:<6} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                );
            }
        }
        if self.ok {
            s += "  errors     none (every hit verified)\n";
        } else {
            s += &format!("  errors     {}\n", self.errors.len());
            for e in &self.errors {
                s += &format!("    {e}\n");
            }
        }
        s
    }
}

/// Builds the runtime the load runs on: a current-thread runtime for 1 thread (no hand-offs
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

/// State the connections of one run share. Touched once per batch, never per request.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
}

/// Runs the load described by `cfg` and reports on it. Never panics on what the server does:
/// every failure ends up in [`LoadReport::errors`].
pub async fn run(cfg: &LoadConfig) -> LoadReport {
    let cfg = Arc::new(cfg.clone());
    let mut report = empty_report(&cfg);
    if cfg.connections == 0 || cfg.pipeline == 0 {
        report.errors.push("connections and pipeline must be at least 1".into());
        report.ok = false;
        return report;
    }
    let addr = match resolve(&cfg.addr).await {
        Ok(a) => a,
        Err(e) => {
            report.errors.push(e);
            report.ok = false;
            return report;
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
        tasks.spawn(connection(id, addr, cfg.clone(), shared.clone(), gate));
    }
    drop(ready_tx);
    for _ in 0..cfg.connections {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let start = Instant::now();
    let _ = go_tx.send(Some(start));
    report.warmup_secs = (start - setup_start).as_secs_f64();
    let ticker = cfg.progress.then(|| tokio::spawn(progress(shared.clone(), start)));

    let mut all = LatencyHist::new();
    let mut get_hist = LatencyHist::new();
    let mut set_hist = LatencyHist::new();
    let mut end = start;
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let r = match joined {
            Ok(r) => r,
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                report.errors.push(format!("a connection task failed: {e}"));
                continue;
            }
        };
        if let Some(e) = r.error {
            failures.push((r.id, e));
        }
        report.gets += r.gets;
        report.sets += r.sets;
        report.hits += r.hits;
        report.misses += r.misses;
        get_hist.add(&r.get_hist);
        set_hist.add(&r.set_hist);
        end = end.max(r.end);
    }
    if let Some(t) = ticker {
        t.abort();
    }
    all.add(&get_hist);
    all.add(&set_hist);
    report.ops = report.gets + report.sets;
    report.secs = (end - start).as_secs_f64();
    if report.secs > 0.0 {
        report.ops_per_sec = report.ops as f64 / report.secs;
    }
    report.latency = all.summary();
    report.get_latency = get_hist.summary();
    report.set_latency = set_hist.summary();
    report.errors.extend(summarize_failures(failures));
    report.ok = report.errors.is_empty();
    report
}

/// One line per distinct failure: when the server breaks, all connections tend to fail the same
/// way, and fifty copies of one message hide the one that differs.
fn summarize_failures(mut failures: Vec<(usize, String)>) -> Vec<String> {
    failures.sort();
    let mut lines: Vec<(usize, String, usize)> = Vec::new();
    for (id, msg) in failures {
        match lines.iter_mut().find(|(_, m, _)| *m == msg) {
            Some(l) => l.2 += 1,
            None => lines.push((id, msg, 0)),
        }
    }
    lines
        .into_iter()
        .map(|(id, msg, more)| match more {
            0 => format!("connection {id}: {msg}"),
            n => format!("connection {id}: {msg} (and {n} more connections alike)"),
        })
        .collect()
}

fn empty_report(cfg: &LoadConfig) -> LoadReport {
    LoadReport {
        ok: true,
        addr: cfg.addr.clone(),
        protocol: cfg.protocol,
        connections: cfg.connections,
        pipeline: cfg.pipeline,
        keys: cfg.keys.count(),
        key_len: cfg.keys.key_len(),
        value_min: cfg.values.min,
        value_max: cfg.values.max,
        get_ratio: cfg.get_ratio,
        warmup_secs: 0.0,
        secs: 0.0,
        ops: 0,
        gets: 0,
        sets: 0,
        hits: 0,
        misses: 0,
        ops_per_sec: 0.0,
        latency: LatencySummary::default(),
        get_latency: LatencySummary::default(),
        set_latency: LatencySummary::default(),
        errors: Vec::new(),
    }
}

/// Resolves `host:port` to its first address.
pub async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    match tokio::net::lookup_host(addr).await {
        Ok(mut it) => it.next().ok_or_else(|| format!("{addr}: no address")),
        Err(e) => Err(format!("{addr}: {e}")),
    }
}

async fn progress(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval_at((start + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut last = 0;
    loop {
        tick.tick().await;
        let ops = shared.ops.load(Ordering::Relaxed);
        eprintln!("  {:>4.0} s {:>12} ops/s", start.elapsed().as_secs_f64(), ops - last);
        last = ops;
    }
}

/// What one connection did.
struct ConnResult {
    id: usize,
    gets: u64,
    sets: u64,
    hits: u64,
    misses: u64,
    get_hist: LatencyHist,
    set_hist: LatencyHist,
    /// When its last batch completed.
    end: Instant,
    error: Option<String>,
}

/// How a connection waits for the others before measuring.
struct Gate {
    ready: mpsc::Sender<()>,
    /// The start of the measured phase, once every connection is ready.
    go: watch::Receiver<Option<Instant>>,
}

async fn connection(id: usize, addr: SocketAddr, cfg: Arc<LoadConfig>, shared: Arc<Shared>, gate: Gate) -> ConnResult {
    let mut res = ConnResult {
        id,
        gets: 0,
        sets: 0,
        hits: 0,
        misses: 0,
        get_hist: LatencyHist::new(),
        set_hist: LatencyHist::new(),
        end: Instant::now(),
        error: None,
    };
    let setup = async {
        let mut conn = Conn::connect(addr, &cfg, id).await?;
        if cfg.warmup {
            conn.warm_up(id, &shared).await?;
        }
        Ok::<_, String>(conn)
    }
    .await;
    if setup.is_err() {
        // The others stop warming up early.
        shared.stop.store(true, Ordering::Relaxed);
    }
    let Gate { ready, mut go } = gate;
    let _ = ready.send(()).await;
    drop(ready);
    let start = match go.wait_for(Option::is_some).await {
        Ok(start) => *start,
        Err(_) => None,
    };
    let result = match (setup, start) {
        (Ok(mut conn), Some(start)) => conn.measure(start + cfg.duration, &shared, &mut res).await,
        (Ok(_), None) => Err("the run was abandoned before it started".to_string()),
        (Err(e), _) => Err(e),
    };
    res.end = Instant::now();
    if let Err(e) = result {
        shared.stop.store(true, Ordering::Relaxed);
        res.error = Some(e);
    }
    res
}

/// A request of the batch in flight.
#[derive(Clone, Copy)]
struct Pending {
    op: Op,
    key: u64,
    opaque: u32,
}

/// One connection and its reusable buffers.
struct Conn<'c> {
    cfg: &'c LoadConfig,
    stream: TcpStream,
    wbuf: Vec<u8>,
    rbuf: BytesMut,
    batch: Vec<Pending>,
    key: KeyBuf,
    value: Vec<u8>,
    opaque: u32,
    rng: Rng,
}

impl<'c> Conn<'c> {
    async fn connect(addr: SocketAddr, cfg: &'c LoadConfig, id: usize) -> Result<Conn<'c>, String> {
        let stream = match tokio::time::timeout(cfg.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
            Err(_) => return Err(format!("connect to {addr}: timed out after {:?}", cfg.timeout)),
        };
        // Batches are written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        let depth = cfg.pipeline.max(WARMUP_DEPTH);
        let request_max = cfg.keys.key_len() + cfg.values.max + 128;
        Ok(Conn {
            cfg,
            stream,
            // Enough for a batch of small values; a batch of large ones grows it once.
            wbuf: Vec::with_capacity((depth * request_max).min(4 << 20)),
            rbuf: BytesMut::with_capacity(READ_CHUNK.max(2 * request_max)),
            batch: Vec::with_capacity(depth),
            key: [0; riven_proto::MAX_KEY_LEN],
            value: Vec::with_capacity(cfg.values.max),
            opaque: 0,
            rng: Rng::new(cfg.seed.wrapping_add(id as u64)),
        })
    }

    /// Sets this connection's share of the key space (every `connections`-th key from `id`).
    async fn warm_up(&mut self, id: usize, shared: &Shared) -> Result<(), String> {
        let step = self.cfg.connections as u64;
        let depth = self.cfg.pipeline.max(WARMUP_DEPTH);
        let mut next = id as u64;
        while next < self.cfg.keys.count() && !shared.stop.load(Ordering::Relaxed) {
            self.batch.clear();
            while self.batch.len() < depth && next < self.cfg.keys.count() {
                self.push(Op::Set, next);
                next += step;
            }
            self.round_trip(None).await?;
        }
        Ok(())
    }

    /// The measured phase: random gets and sets until the duration is over or another
    /// connection failed.
    async fn measure(&mut self, deadline: Instant, shared: &Shared, res: &mut ConnResult) -> Result<(), String> {
        let gets = Rng::threshold(self.cfg.get_ratio);
        let count = self.cfg.keys.count();
        while Instant::now() < deadline && !shared.stop.load(Ordering::Relaxed) {
            self.batch.clear();
            for _ in 0..self.cfg.pipeline {
                let key = self.rng.below(count);
                let op = if self.rng.chance(gets) { Op::Get } else { Op::Set };
                self.push(op, key);
            }
            self.round_trip(Some(res)).await?;
            shared.ops.fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn push(&mut self, op: Op, key: u64) {
        self.opaque = self.opaque.wrapping_add(1);
        self.batch.push(Pending {
            op,
            key,
            opaque: self.opaque,
        });
    }

    /// Sends the batch with one write and reads, checks and times every reply to it.
    async fn round_trip(&mut self, mut res: Option<&mut ConnResult>) -> Result<(), String> {
        let cfg = self.cfg;
        let proto = cfg.protocol;
        self.wbuf.clear();
        for p in &self.batch {
            let key = cfg.keys.key(p.key, &mut self.key);
            let flags = if p.op == Op::Set {
                let e = cfg.values.expect(key);
                self.value.clear();
                e.write(&mut self.value);
                e.flags
            } else {
                0
            };
            wire::compose(proto, &mut self.wbuf, p.op, key, flags, &self.value, p.opaque);
        }
        if !self.rbuf.is_empty() {
            return Err(format!(
                "{} bytes arrived that answer no request: {}",
                self.rbuf.len(),
                wire::show(&self.rbuf)
            ));
        }

        let sent = Instant::now();
        match tokio::time::timeout(cfg.timeout, self.stream.write_all(&self.wbuf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write: {e}")),
            Err(_) => return Err(format!("write timed out after {:?}", cfg.timeout)),
        }

        let mut done = 0;
        let mut now = sent;
        loop {
            // Parse every whole reply in the buffer.
            while let Some(p) = self.batch.get(done).copied() {
                let key = cfg.keys.key(p.key, &mut self.key);
                let (reply, used) = match wire::parse(proto, p.op, key, p.opaque, &self.rbuf) {
                    Ok(r) => r,
                    Err(WireError::Incomplete) => break,
                    Err(WireError::Unexpected(m)) => return Err(format!("{m} (key {})", wire::show(key))),
                };
                match (p.op, reply) {
                    (Op::Get, Reply::Hit { flags, data }) => {
                        if let Err(m) = cfg.values.expect(key).check(flags, data) {
                            return Err(format!("get {}: wrong value: {m}", wire::show(key)));
                        }
                        if let Some(r) = res.as_deref_mut() {
                            r.hits += 1;
                        }
                    }
                    (Op::Get, Reply::Miss) => {
                        if cfg.fail_on_miss {
                            return Err(format!("get {}: miss on a pre-filled key", wire::show(key)));
                        }
                        if let Some(r) = res.as_deref_mut() {
                            r.misses += 1;
                        }
                    }
                    (Op::Set, Reply::Stored) => {}
                    (op, reply) => return Err(format!("{op:?} {}: unexpected reply {reply:?}", wire::show(key))),
                }
                if let Some(r) = res.as_deref_mut() {
                    let latency = now - sent;
                    match p.op {
                        Op::Get => {
                            r.gets += 1;
                            r.get_hist.record(latency);
                        }
                        Op::Set => {
                            r.sets += 1;
                            r.set_hist.record(latency);
                        }
                    }
                }
                self.rbuf.advance(used);
                done += 1;
            }
            if done == self.batch.len() {
                return Ok(());
            }

            // Room for a large read; reclaims the parsed front of the buffer instead of growing.
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            match tokio::time::timeout(cfg.timeout, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) => {
                    return Err(format!(
                        "the server closed the connection with {} of {} replies outstanding",
                        self.batch.len() - done,
                        self.batch.len()
                    ))
                }
                Ok(Ok(_)) => now = Instant::now(),
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => {
                    return Err(format!(
                        "timed out after {:?} waiting for {} of {} replies",
                        cfg.timeout,
                        self.batch.len() - done,
                        self.batch.len()
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_summarized() {
        let f = vec![
            (3, "timed out".to_string()),
            (1, "timed out".to_string()),
            (2, "wrong value".to_string()),
        ];
        assert_eq!(
            summarize_failures(f),
            vec![
                "connection 1: timed out (and 1 more connections alike)".to_string(),
                "connection 2: wrong value".to_string()
            ]
        );
    }

    #[tokio::test]
    async fn bad_settings_and_addresses_are_reported_not_panicked() {
        let mut cfg = LoadConfig::new("127.0.0.1:1", Protocol::Text);
        cfg.pipeline = 0;
        assert!(!run(&cfg).await.ok);
        cfg.pipeline = 1;
        // No port: refused before any name lookup.
        cfg.addr = "127.0.0.1".into();
        let r = run(&cfg).await;
        assert!(!r.ok && r.errors[0].contains("127.0.0.1"), "{:?}", r.errors);
    }
}
