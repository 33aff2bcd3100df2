//! `riven-bench load`: random gets and sets over many pipelined connections, every hit verified
//! against the value its key stands for. It runs on the [`engine`](super::engine), closed loop
//! or open loop; see there for how batches are sent and latencies measured.
//!
//! A hit of 1 KiB or more is checked through its digest (see [`stream`](super::stream)): every
//! byte counts, but the expected value is not regenerated for each read, which at large values
//! would cost the tool more than the server. The correctness tools compare byte for byte.
//!
//! Any wrong value, unexpected reply, closed connection or call that outlives `timeout` stops the
//! whole run and is listed in the report; [`LoadReport::ok`] is then false and the tool exits 1.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::cpu::CpuUse;
use super::engine::{self, Batch, EngineConfig, Phase, Request, Workload};
use super::hist::LatencySummary;
use super::stream::{DigestCache, DIGEST_MIN_LEN};
use super::value::{KeyBuf, KeySpace, Rng, ValueSpec};
use super::wire::{Args, MultiHit, Op, Protocol, Reply};

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
    /// Keys per get: above 1, each get is a multi-get of this many keys.
    pub mget: usize,
    /// Open loop at this many requests per second over all connections; `None` is closed loop.
    pub rate: Option<f64>,
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
    /// Server processes whose CPU time to read over the measured phase
    /// ([`LoadReport::server_ticks`]).
    pub server_pids: Vec<u32>,
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
            mget: 1,
            rate: None,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            warmup: true,
            fail_on_miss: false,
            seed: 1,
            progress: false,
            server_pids: Vec::new(),
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
    pub mget: usize,
    pub keys: u64,
    pub key_len: usize,
    pub value_min: usize,
    pub value_max: usize,
    pub get_ratio: f64,
    /// Open loop: requests per second asked for.
    pub target_rate: Option<f64>,
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
    /// Open loop: how late requests were sent after their intended time (see
    /// [`engine::RunReport::send_lag`]).
    pub send_lag: Option<LatencySummary>,
    /// What went wrong, one line per failed connection (empty when `ok`).
    pub errors: Vec<String>,
    /// The tool's own CPU use over the measured phase; `cpu.saturated` means the throughput is
    /// the tool's limit, not the server's.
    pub cpu: CpuUse,
    /// Per process of [`LoadConfig::server_pids`]: its CPU time over the measured phase, in clock
    /// ticks (see [`engine::RunReport::server_ticks`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_ticks: Vec<Option<u64>>,
}

impl LoadReport {
    /// The human summary.
    pub fn human(&self) -> String {
        let mode = match self.target_rate {
            Some(r) => format!("open loop at {r:.0}/s"),
            None => "closed loop".into(),
        };
        let mget = if self.mget > 1 {
            format!(" (multi-gets of {})", self.mget)
        } else {
            String::new()
        };
        let mut s = format!(
            "riven-bench load {} on {}: {} connections, pipeline {}, {mode}, {} keys of {} B, values {}, {:.0} % gets{mget}\n",
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
        let lag = self.send_lag.unwrap_or_default();
        for (name, l) in [
            ("all", &self.latency),
            ("get", &self.get_latency),
            ("set", &self.set_latency),
            ("lag", &lag),
        ] {
            if l.count > 0 {
                s += &format!(
                    "    {name:<6} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}\n",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                );
            }
        }
        s += &format!("  tool cpu   {}\n", self.cpu.human());
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

pub use super::engine::{resolve, runtime};

/// Runs the load described by `cfg` and reports on it. Never panics on what the server does:
/// every failure ends up in [`LoadReport::errors`].
pub async fn run(cfg: &LoadConfig) -> LoadReport {
    let mut report = empty_report(cfg);
    if cfg.mget == 0 {
        report.errors.push("the multi-get batch size must be at least 1".into());
        report.ok = false;
        return report;
    }
    let mut engine = EngineConfig::new(cfg.addr.clone(), cfg.protocol, cfg.keys.clone());
    engine.connections = cfg.connections;
    engine.pipeline = cfg.pipeline;
    engine.duration = cfg.duration;
    engine.timeout = cfg.timeout;
    engine.rate = cfg.rate;
    engine.progress = cfg.progress;
    engine.server_pids = cfg.server_pids.clone();
    let shared = Arc::new(cfg.clone());
    let (run, _) = engine::run("load", &engine, |id| GetSet::new(shared.clone(), id)).await;
    let get = |op| run.command(op).cloned();
    let (single, multi) = (get(Op::Get), get(Op::MultiGet));
    let set = get(Op::Set);
    report.gets = single.as_ref().map_or(0, |c| c.count) + multi.as_ref().map_or(0, |c| c.count);
    report.sets = set.as_ref().map_or(0, |c| c.count);
    report.hits = run.hits;
    report.misses = run.misses;
    report.ops = run.ops;
    report.secs = run.secs;
    report.warmup_secs = run.warmup_secs;
    report.ops_per_sec = run.ops_per_sec;
    report.latency = run.latency;
    report.get_latency = single.or(multi).map(|c| c.latency).unwrap_or_default();
    report.set_latency = set.map(|c| c.latency).unwrap_or_default();
    report.send_lag = run.send_lag;
    report.errors = run.errors;
    report.cpu = run.cpu;
    report.server_ticks = run.server_ticks;
    report.ok = report.errors.is_empty();
    report
}

fn empty_report(cfg: &LoadConfig) -> LoadReport {
    LoadReport {
        ok: true,
        addr: cfg.addr.clone(),
        protocol: cfg.protocol,
        connections: cfg.connections,
        pipeline: cfg.pipeline,
        mget: cfg.mget,
        keys: cfg.keys.count(),
        key_len: cfg.keys.key_len(),
        value_min: cfg.values.min,
        value_max: cfg.values.max,
        get_ratio: cfg.get_ratio,
        target_rate: cfg.rate,
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
        send_lag: None,
        errors: Vec::new(),
        cpu: CpuUse::default(),
        server_ticks: Vec::new(),
    }
}

/// The digests of the values `load` checks, shared by every run of the process: a digest is a
/// function of its seed and length only, so a comparison's rounds reuse what its warm-up
/// computed. 2^18 slots (4 MiB, allocated at the first large value) hold the key spaces of a
/// comparison's large values many times over; a larger space only recomputes more often.
fn digests() -> &'static DigestCache {
    static CACHE: std::sync::OnceLock<DigestCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| DigestCache::new(1 << 18))
}

/// The load's workload: random gets (or multi-gets) and sets of values derived from the keys.
/// The warm-up sets this connection's share of the key space (every `connections`-th key from
/// its id), so gets hit.
pub struct GetSet {
    cfg: Arc<LoadConfig>,
    rng: Rng,
    gets: u64,
    next_warm: u64,
    key: KeyBuf,
}

impl GetSet {
    pub fn new(cfg: Arc<LoadConfig>, id: usize) -> GetSet {
        GetSet {
            rng: Rng::new(cfg.seed.wrapping_add(id as u64)),
            gets: Rng::threshold(cfg.get_ratio),
            next_warm: if cfg.warmup { id as u64 } else { u64::MAX },
            key: [0; riven_memcache::MAX_KEY_LEN],
            cfg,
        }
    }

    fn push_set(&mut self, batch: &mut Batch, key: u64, phase: Phase) {
        let e = self.cfg.values.expect(self.cfg.keys.key(key, &mut self.key));
        if phase == Phase::Warmup && e.len >= DIGEST_MIN_LEN {
            // Digest what the warm-up stores while nothing is measured, rather than at the
            // first read of each key.
            digests().expected(e.seed(), e.len);
        }
        let args = Args {
            flags: e.flags,
            ..Args::default()
        };
        batch.push(Op::Set, key, args, Some(e.part()));
    }

    fn check_value(&mut self, key: u64, flags: Option<u32>, data: &[u8]) -> Result<(), String> {
        let k = self.cfg.keys.key(key, &mut self.key);
        let e = self.cfg.values.expect(k);
        digests()
            .check(&e, flags, data)
            .map_err(|m| format!("wrong value: {m}"))
    }
}

impl Workload for GetSet {
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool {
        let count = self.cfg.keys.count();
        if phase == Phase::Warmup {
            if self.next_warm >= count {
                return false;
            }
            let key = self.next_warm;
            self.push_set(batch, key, phase);
            self.next_warm = key.saturating_add(self.cfg.connections as u64);
            return true;
        }
        if self.rng.chance(self.gets) {
            if self.cfg.mget > 1 {
                let first = self.rng.below(count);
                let n = (self.cfg.mget as u64).min(count);
                // Consecutive keys: distinct, so each hit has one place in the reply.
                batch.push_multi(Op::MultiGet, (0..n).map(|i| (first + i) % count), Args::default(), None);
            } else {
                batch.push(Op::Get, self.rng.below(count), Args::default(), None);
            }
        } else {
            let key = self.rng.below(count);
            self.push_set(batch, key, phase);
        }
        true
    }

    fn check(
        &mut self,
        req: &Request,
        keys: &[u64],
        reply: &Reply<'_>,
        hits: &[MultiHit],
        buf: &[u8],
    ) -> Result<(), String> {
        match (req.op, reply) {
            (Op::Get, Reply::Hit { flags, data, .. }) => self.check_value(keys[0], *flags, data),
            (Op::Get, Reply::Miss) if self.cfg.fail_on_miss => Err("miss on a pre-filled key".into()),
            (Op::Get, Reply::Miss) => Ok(()),
            (Op::MultiGet, Reply::Multi) => {
                if self.cfg.fail_on_miss && hits.len() < keys.len() {
                    return Err(format!(
                        "{} of {} pre-filled keys missed",
                        keys.len() - hits.len(),
                        keys.len()
                    ));
                }
                for h in hits {
                    let data = buf.get(h.data.clone()).unwrap_or_default();
                    self.check_value(keys[h.pos], h.flags, data)?;
                }
                Ok(())
            }
            (Op::Set, Reply::Stored { .. }) => Ok(()),
            (op, r) => Err(format!("{op}: unexpected reply {}", super::model::describe(r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
