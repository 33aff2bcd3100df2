//! The connection engine every tool runs on: many connections, pipelined batches, a timeout on
//! every network call, closed or open loop, per-command HDR histograms, progress lines. What is
//! sent and how each reply is judged is the [`Workload`]'s business; the engine only moves bytes,
//! frames replies and keeps time.
//!
//! Each connection runs one loop: ask its workload for a batch of up to `pipeline` requests,
//! compose them into one buffer, send it with one write, then read until every reply of the batch
//! has been parsed, checked and timed. Buffers belong to the connection and are reused, so the
//! steady state allocates nothing in the engine: on a 2-core machine shared with the server under
//! test, every cycle the tool spends is one the server does not get.
//!
//! Latency is measured per request up to the read that completed its reply. In closed loop it
//! starts when its batch is written, so with a pipeline it includes the wait behind earlier
//! replies of the batch, as an application issuing the same batch would see it. In open loop it
//! starts at the request's intended send time (see [`schedule`](super::schedule)), which corrects
//! for coordinated omission.
//!
//! Any wrong value, unexpected reply, closed connection or call that outlives the timeout stops
//! the whole run and is listed in the report; [`RunReport::ok`] is then false and the tool exits 1.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::cpu::{self, CpuClock, CpuUse};
use super::hist::{LatencyHist, LatencySummary};
use super::schedule::Schedule;
use super::value::{KeyBuf, KeySpace, Part};
use super::wire::{self, Args, Keys, MultiHit, Op, Protocol, Reply, WireError};

/// Warm-up batches are at least this deep, whatever the run's pipeline: the warm-up is not
/// measured, only waited for.
const WARMUP_DEPTH: usize = 32;

/// Read at least this much at a time.
const READ_CHUNK: usize = 64 * 1024;

/// The most a connection keeps room for in its read buffer, however large its replies.
const MAX_READ_ROOM: usize = 16 << 20;

/// How the engine drives the connections.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `host:port` of the server.
    pub addr: String,
    pub protocol: Protocol,
    pub connections: usize,
    /// Requests per batch on each connection (1 = no pipelining). In open loop, the most
    /// requests sent together when several have fallen due.
    pub pipeline: usize,
    /// The keys requests name by index.
    pub keys: KeySpace,
    /// How long the measured phase lasts (the batch in flight at the end still completes).
    pub duration: Duration,
    /// Bound on every connect, write and read.
    pub timeout: Duration,
    /// Open loop at this many requests per second over all connections; `None` is closed loop.
    pub rate: Option<f64>,
    /// Print a line per second to stderr.
    pub progress: bool,
}

impl EngineConfig {
    pub fn new(addr: impl Into<String>, protocol: Protocol, keys: KeySpace) -> EngineConfig {
        EngineConfig {
            addr: addr.into(),
            protocol,
            connections: 50,
            pipeline: 1,
            keys,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            rate: None,
            progress: false,
        }
    }
}

/// Which part of a run a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the clock starts: checked, not measured.
    Warmup,
    Measure,
}

/// One request of a batch.
#[derive(Clone, Debug)]
pub struct Request {
    pub op: Op,
    /// Where its key indexes lie in [`Batch::keys`] (several for a multi-get).
    pub keys: Range<usize>,
    pub args: Args,
    /// The value of a store.
    pub value: Option<Part>,
    opaque: u32,
    /// Nanoseconds from the start of the measured phase (open loop).
    intended_ns: u64,
}

/// The requests a workload adds before they are sent together.
#[derive(Debug, Default)]
pub struct Batch {
    reqs: Vec<Request>,
    keys: Vec<u64>,
    barrier: bool,
    opaque: u32,
}

impl Batch {
    /// Adds a request on key index `key`.
    pub fn push(&mut self, op: Op, key: u64, args: Args, value: Option<Part>) {
        self.push_multi(op, [key], args, value);
    }

    /// Adds a request on several keys (a multi-get).
    pub fn push_multi(&mut self, op: Op, keys: impl IntoIterator<Item = u64>, args: Args, value: Option<Part>) {
        let start = self.keys.len();
        self.keys.extend(keys);
        self.opaque = self.opaque.wrapping_add(1);
        self.reqs.push(Request {
            op,
            keys: start..self.keys.len(),
            args,
            value,
            opaque: self.opaque,
            intended_ns: 0,
        });
    }

    /// Sends what is batched and waits for the replies before adding more: for a request that
    /// depends on an earlier reply (a `cas` needs the CAS unique a `gets` returns).
    pub fn barrier(&mut self) {
        self.barrier = true;
    }

    pub fn len(&self) -> usize {
        self.reqs.len()
    }

    /// Whether [`Batch::barrier`] was called since the batch was started.
    pub fn at_barrier(&self) -> bool {
        self.barrier
    }

    pub fn requests(&self) -> &[Request] {
        &self.reqs
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The key indexes of a request.
    pub fn keys_of(&self, req: &Request) -> &[u64] {
        &self.keys[req.keys.clone()]
    }

    fn clear(&mut self) {
        self.reqs.clear();
        self.keys.clear();
        self.barrier = false;
    }
}

/// What a tool sends and how it judges the replies. One per connection.
pub trait Workload: Send + 'static {
    /// Adds the next request to `batch`; false when there is none (the warm-up is over, or a
    /// finite workload is done). Adding several at once is allowed.
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool;

    /// Judges the reply to `req`, on key indexes `keys`. A multi-get's hits are in `hits`, their
    /// data in `buf`. An error ends the run with that message.
    fn check(
        &mut self,
        req: &Request,
        keys: &[u64],
        reply: &Reply<'_>,
        hits: &[MultiHit],
        buf: &[u8],
    ) -> Result<(), String>;
}

/// Counts and latencies of one command.
#[derive(Clone, Debug, Default)]
struct OpStats {
    count: u64,
    hits: u64,
    misses: u64,
    hist: LatencyHist,
}

/// A command's share of a run.
#[derive(Clone, Debug, Serialize)]
pub struct OpReport {
    pub op: Op,
    pub count: u64,
    /// Keys found and not found (reads only; a multi-get counts each key).
    pub hits: u64,
    pub misses: u64,
    pub latency: LatencySummary,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub ok: bool,
    pub tool: String,
    pub addr: String,
    pub protocol: Protocol,
    pub connections: usize,
    pub pipeline: usize,
    pub keys: u64,
    pub key_len: usize,
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Open loop: requests per second asked for.
    pub target_rate: Option<f64>,
    pub warmup_secs: f64,
    /// Length of the measured phase.
    pub secs: f64,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub hits: u64,
    pub misses: u64,
    pub latency: LatencySummary,
    /// Open loop: how late requests were sent after their intended time. Latencies include this;
    /// when the server keeps up it is the timer's granularity (tokio's is 1 ms), a floor under
    /// the latencies an open-loop run can show.
    pub send_lag: Option<LatencySummary>,
    /// Per command, in [`Op::ALL`] order, commands not sent left out.
    pub commands: Vec<OpReport>,
    /// Every connection's workload ran out of work before the duration was over.
    pub finished: bool,
    /// What went wrong, one line per distinct failure (empty when `ok`).
    pub errors: Vec<String>,
    /// The tool's own CPU use over the measured phase.
    pub cpu: CpuUse,
}

impl RunReport {
    /// The report of a run that could not start, for the reasons in `errors` (to be added).
    pub fn failed(tool: &str, cfg: &EngineConfig, errors: Vec<String>) -> RunReport {
        RunReport {
            ok: false,
            errors,
            ..empty_report(tool, cfg)
        }
    }

    pub fn command(&self, op: Op) -> Option<&OpReport> {
        self.commands.iter().find(|c| c.op == op)
    }

    /// The human summary: a header, throughput, a latency table per command, errors.
    pub fn human(&self, what: &str) -> String {
        let mode = match self.target_rate {
            Some(r) => format!("open loop at {r:.0}/s"),
            None => "closed loop".into(),
        };
        let mut s = format!(
            "riven-bench {} {} on {}: {} connections, pipeline {}, {mode}, {} keys of {} B{what}\n",
            self.tool, self.protocol, self.addr, self.connections, self.pipeline, self.keys, self.key_len
        );
        let reads = self.hits + self.misses;
        let hit_pct = if reads > 0 {
            format!(
                "; hits {:.2} % of {reads} keys read",
                100.0 * self.hits as f64 / reads as f64
            )
        } else {
            String::new()
        };
        s += &format!(
            "  throughput {:>12.0} ops/s over {:.2} s (warm-up {:.2} s)\n  requests   {:>12}{hit_pct}\n",
            self.ops_per_sec, self.secs, self.warmup_secs, self.ops
        );
        if self.ops > 0 {
            s += "  latency µs       count        p50        p90        p99      p99.9        max\n";
            let mut line = |name: &str, count: u64, l: &LatencySummary| {
                s += &format!(
                    "    {name:<8} {count:>10} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                );
            };
            line("all", self.ops, &self.latency);
            if let Some(lag) = &self.send_lag {
                line("send lag", lag.count, lag);
            }
            if self.commands.len() > 1 {
                for c in &self.commands {
                    line(c.op.name(), c.count, &c.latency);
                }
            }
        }
        s += &format!("  tool cpu   {}\n", self.cpu.human());
        if self.ok {
            s += "  errors     none (every reply checked)\n";
        } else {
            s += &format!("  errors     {}\n", self.errors.len());
            for e in &self.errors {
                s += &format!("    {e}\n");
            }
        }
        s
    }
}

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

/// State the connections of one run share. Touched once per batch, never per request.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
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
    report.finished = finished;
    report.errors.extend(summarize_failures(failures));
    report.ok = report.errors.is_empty();
    (report, workloads.into_iter().map(|(_, w)| w).collect())
}

/// One line per distinct failure: when the server breaks, all connections tend to fail the same
/// way, and fifty copies of one message hide the one that differs.
pub fn summarize_failures(mut failures: Vec<(usize, String)>) -> Vec<String> {
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

fn empty_report(tool: &str, cfg: &EngineConfig) -> RunReport {
    RunReport {
        ok: true,
        tool: tool.to_string(),
        addr: cfg.addr.clone(),
        protocol: cfg.protocol,
        connections: cfg.connections,
        pipeline: cfg.pipeline,
        keys: cfg.keys.count(),
        key_len: cfg.keys.key_len(),
        mode: if cfg.rate.is_some() { "open" } else { "closed" },
        target_rate: cfg.rate,
        warmup_secs: 0.0,
        secs: 0.0,
        ops: 0,
        ops_per_sec: 0.0,
        hits: 0,
        misses: 0,
        latency: LatencySummary::default(),
        send_lag: None,
        commands: Vec::new(),
        finished: false,
        errors: Vec::new(),
        cpu: CpuUse::default(),
    }
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

/// What one connection did.
struct ConnResult<W> {
    id: usize,
    stats: Vec<OpStats>,
    lag: LatencyHist,
    /// When its last batch completed.
    end: Instant,
    /// Its workload ran out of work.
    finished: bool,
    error: Option<String>,
    workload: W,
}

/// How a connection waits for the others before measuring.
struct Gate {
    ready: mpsc::Sender<()>,
    /// The start of the measured phase, once every connection is ready.
    go: watch::Receiver<Option<Instant>>,
}

async fn connection<W: Workload>(
    id: usize,
    addr: SocketAddr,
    cfg: Arc<EngineConfig>,
    shared: Arc<Shared>,
    gate: Gate,
    workload: W,
) -> ConnResult<W> {
    let mut conn = Conn {
        cfg: &cfg,
        stream: None,
        workload,
        wbuf: Vec::new(),
        rbuf: BytesMut::new(),
        read_room: READ_CHUNK,
        batch: Batch::default(),
        key: [0; riven_memcache::MAX_KEY_LEN],
        keys: Keys::default(),
        value: Vec::new(),
        hits: Vec::new(),
        stats: vec![OpStats::default(); Op::COUNT],
        lag: LatencyHist::new(),
        finished: false,
    };
    let setup = async {
        conn.connect(addr).await?;
        conn.warm_up(&shared).await
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
        (Ok(()), Some(start)) => match cfg.rate {
            Some(rate) => {
                let schedule = Schedule::for_connection(rate, cfg.connections, id);
                conn.measure(start, Some(schedule), &shared).await
            }
            None => conn.measure(start, None, &shared).await,
        },
        (Ok(()), None) => Err("the run was abandoned before it started".to_string()),
        (Err(e), _) => Err(e),
    };
    let end = Instant::now();
    let error = result.err();
    if error.is_some() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    ConnResult {
        id,
        stats: conn.stats,
        lag: conn.lag,
        end,
        finished: conn.finished,
        error,
        workload: conn.workload,
    }
}

/// One connection, its workload and its reusable buffers.
struct Conn<'c, W> {
    cfg: &'c EngineConfig,
    stream: Option<TcpStream>,
    workload: W,
    wbuf: Vec<u8>,
    rbuf: BytesMut,
    /// Free room wanted before a read: twice the largest reply seen (at least [`READ_CHUNK`]),
    /// so a large reply arrives in a few big reads into one buffer instead of being moved to
    /// the buffer's front, or into a larger one, while it arrives.
    read_room: usize,
    batch: Batch,
    key: KeyBuf,
    keys: Keys,
    value: Vec<u8>,
    hits: Vec<MultiHit>,
    stats: Vec<OpStats>,
    /// Open loop: send time less intended time, per request.
    lag: LatencyHist,
    finished: bool,
}

impl<W: Workload> Conn<'_, W> {
    async fn connect(&mut self, addr: SocketAddr) -> Result<(), String> {
        let timeout = self.cfg.timeout;
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
            Err(_) => return Err(format!("connect to {addr}: timed out after {timeout:?}")),
        };
        // Batches are written whole; Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        let depth = self.cfg.pipeline.max(WARMUP_DEPTH);
        self.wbuf.reserve(depth * (self.cfg.keys.key_len() + 256));
        self.rbuf.reserve(READ_CHUNK);
        Ok(())
    }

    async fn warm_up(&mut self, shared: &Shared) -> Result<(), String> {
        let depth = self.cfg.pipeline.max(WARMUP_DEPTH);
        while !shared.stop.load(Ordering::Relaxed) {
            self.batch.clear();
            while self.batch.len() < depth && !self.batch.barrier && self.workload.next(Phase::Warmup, &mut self.batch)
            {
            }
            if self.batch.is_empty() {
                break;
            }
            self.round_trip(None).await?;
        }
        Ok(())
    }

    /// The measured phase, until the duration is over, the workload is done or another
    /// connection failed.
    async fn measure(&mut self, start: Instant, mut schedule: Option<Schedule>, shared: &Shared) -> Result<(), String> {
        let cfg = self.cfg;
        let deadline_ns = u64::try_from(cfg.duration.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let now_ns = elapsed_ns(start);
            if now_ns >= deadline_ns || shared.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let room = match &schedule {
                None => cfg.pipeline,
                Some(s) => {
                    let due = s.due(now_ns);
                    if due == 0 {
                        let wake = s.next_ns().min(deadline_ns);
                        tokio::time::sleep_until((start + Duration::from_nanos(wake)).into()).await;
                        continue;
                    }
                    (due as usize).min(cfg.pipeline)
                }
            };
            self.batch.clear();
            while self.batch.len() < room && !self.batch.barrier {
                let before = self.batch.len();
                if !self.workload.next(Phase::Measure, &mut self.batch) {
                    self.finished = true;
                    break;
                }
                if let Some(s) = &mut schedule {
                    for r in &mut self.batch.reqs[before..] {
                        r.intended_ns = s.take();
                    }
                }
            }
            if self.batch.is_empty() {
                return Ok(());
            }
            self.round_trip(Some((start, schedule.is_some()))).await?;
            shared.ops.fetch_add(self.batch.len() as u64, Ordering::Relaxed);
            if self.finished {
                return Ok(());
            }
        }
    }

    /// Sends the batch with one write and reads and checks every reply to it. With `timing`
    /// (the measured phase's start, and whether the run is open-loop) it also counts and times
    /// them: open loop from each request's intended send time, closed loop from the write.
    async fn round_trip(&mut self, timing: Option<(Instant, bool)>) -> Result<(), String> {
        let cfg = self.cfg;
        let proto = cfg.protocol;
        self.wbuf.clear();
        for i in 0..self.batch.reqs.len() {
            load_keys(&cfg.keys, &self.batch, i, &mut self.key, &mut self.keys);
            let r = &self.batch.reqs[i];
            self.value.clear();
            if let Some(p) = &r.value {
                p.write(&mut self.value);
            }
            wire::compose(proto, &mut self.wbuf, r.op, &self.keys, &r.args, &self.value, r.opaque);
        }
        if !self.rbuf.is_empty() {
            return Err(format!(
                "{} bytes arrived that answer no request: {}",
                self.rbuf.len(),
                wire::show(&self.rbuf)
            ));
        }
        // The buffer is empty: taking its room back from the front copies nothing.
        self.rbuf.reserve(self.read_room);
        let Some(stream) = self.stream.as_mut() else {
            return Err("not connected".into());
        };

        let sent = Instant::now();
        if let Some((start, true)) = timing {
            for r in &self.batch.reqs {
                self.lag
                    .record(sent.saturating_duration_since(start + Duration::from_nanos(r.intended_ns)));
            }
        }
        match tokio::time::timeout(cfg.timeout, stream.write_all(&self.wbuf)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write: {e}")),
            Err(_) => return Err(format!("write timed out after {:?}", cfg.timeout)),
        }

        let mut done = 0;
        let mut now = sent;
        loop {
            // Parse and check every whole reply in the buffer.
            while done < self.batch.reqs.len() {
                load_keys(&cfg.keys, &self.batch, done, &mut self.key, &mut self.keys);
                let r = &self.batch.reqs[done];
                let (reply, used) = match wire::parse(proto, r.op, &self.keys, r.opaque, &self.rbuf, &mut self.hits) {
                    Ok(x) => x,
                    Err(WireError::Incomplete) => break,
                    Err(WireError::Unexpected(m)) => return Err(m),
                };
                let keys = &self.batch.keys[r.keys.clone()];
                if let Err(m) = self.workload.check(r, keys, &reply, &self.hits, &self.rbuf) {
                    return Err(format!("{} {}: {m}", r.op, wire::show(self.keys.first())));
                }
                if let Some((start, open)) = timing {
                    let s = &mut self.stats[r.op.index()];
                    s.count += 1;
                    match reply {
                        Reply::Hit { .. } => s.hits += 1,
                        Reply::Miss => s.misses += 1,
                        Reply::Multi => {
                            s.hits += self.hits.len() as u64;
                            s.misses += (keys.len() - self.hits.len().min(keys.len())) as u64;
                        }
                        _ => {}
                    }
                    let from = if open {
                        start + Duration::from_nanos(r.intended_ns)
                    } else {
                        sent
                    };
                    s.hist.record(now.saturating_duration_since(from));
                }
                self.rbuf.advance(used);
                self.read_room = self.read_room.max(used.saturating_mul(2)).min(MAX_READ_ROOM);
                done += 1;
            }
            if done == self.batch.reqs.len() {
                return Ok(());
            }

            // Room for a large read; reclaims the parsed front of the buffer instead of growing.
            if self.rbuf.capacity() - self.rbuf.len() < self.read_room / 4 {
                self.rbuf.reserve(self.read_room);
            }
            match tokio::time::timeout(cfg.timeout, stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) => {
                    return Err(format!(
                        "the server closed the connection with {} of {} replies outstanding",
                        self.batch.reqs.len() - done,
                        self.batch.reqs.len()
                    ))
                }
                Ok(Ok(_)) => now = Instant::now(),
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Err(_) => {
                    return Err(format!(
                        "timed out after {:?} waiting for {} of {} replies",
                        cfg.timeout,
                        self.batch.reqs.len() - done,
                        self.batch.reqs.len()
                    ))
                }
            }
        }
    }
}

/// The keys of request `i` of `batch`, into `keys`.
fn load_keys(space: &KeySpace, batch: &Batch, i: usize, buf: &mut KeyBuf, keys: &mut Keys) {
    keys.clear();
    for &k in batch.keys_of(&batch.reqs[i]) {
        keys.push(space.key(k, buf));
    }
}

fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
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

    #[test]
    fn batches_hold_requests_and_their_keys() {
        let mut b = Batch::default();
        b.push(Op::Get, 7, Args::default(), None);
        b.push_multi(Op::MultiGet, [1, 2, 3], Args::default(), None);
        assert_eq!(b.len(), 2);
        assert_eq!(b.keys_of(&b.reqs[0]), &[7]);
        assert_eq!(b.keys_of(&b.reqs[1]), &[1, 2, 3]);
        assert_ne!(b.reqs[0].opaque, b.reqs[1].opaque);
        b.barrier();
        b.clear();
        assert!(b.is_empty() && !b.barrier);
    }
}
