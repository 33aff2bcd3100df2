//! `riven-bench client`: the smart client (`riven-client`) measured, in two parts.
//!
//! - [`throughput`]: the client's throughput against the raw pipelined engine's ([`load`]) on
//!   the same node, at the same concurrency: `connections × pipeline` requests in flight for
//!   both, 90 % gets, every hit checked. The two alternate round by round, so the machine's
//!   drift falls on both. Besides ops/s, each round reads the generator's CPU time (this
//!   process; both run on one runtime of the same threads) and the node's, per operation: the
//!   client's cost over the raw engine is there, whichever side is the bottleneck.
//! - [`hedge`](mod@hedge): the read latency with one zone slowed by a delay proxy, with hedged
//!   reads and without.

pub mod hedge;
pub mod suite;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use riven_client::{Client, ClientConfig, ConnConfig, NodeConfig, Topology, Ttl};
use serde::Serialize;

use crate::cpu::{CpuClock, CpuUse};
use crate::hist::{median, LatencyHist, LatencySummary};
use crate::load::{self, LoadConfig};
use crate::proc;
use crate::value::{KeyBuf, KeySpace, Rng, ValueSpec};
use crate::wire::Protocol;

/// What [`throughput`] runs.
#[derive(Clone, Debug)]
pub struct ThroughputConfig {
    /// The node, `host:port`.
    pub addr: String,
    /// The raw engine's connections.
    pub connections: usize,
    /// The raw engine's requests per batch on each connection. The client runs
    /// `connections × pipeline` concurrent callers, so both keep as many requests in flight.
    pub pipeline: usize,
    /// The client's connections to the node (its `NodeConfig::connections`).
    pub client_connections: usize,
    pub keys: u64,
    pub value_len: usize,
    pub get_ratio: f64,
    /// Each round's measured phase, per side.
    pub duration: Duration,
    pub rounds: usize,
    /// The node's process, whose CPU time is read around each round.
    pub node_pid: Option<u32>,
}

/// One side's figures over one round.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Round {
    pub ops_per_sec: f64,
    pub ops: u64,
    /// The generator's CPU (this process, user + system) per operation, in µs.
    pub gen_us_per_op: f64,
    pub gen_cpu: CpuUse,
    /// The node's CPU per operation, in µs (`None` without a pid).
    pub node_us_per_op: Option<f64>,
    pub latency: LatencySummary,
    /// Failed requests and wrong values; a round with any is not a measurement.
    pub errors: u64,
}

/// The medians of one side over the rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Side {
    pub rounds: Vec<Round>,
    pub ops_per_sec: f64,
    pub gen_us_per_op: f64,
    pub gen_cpu: f64,
    pub node_us_per_op: Option<f64>,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Side {
    fn finish(&mut self) {
        let of = |f: fn(&Round) -> f64| median(&self.rounds.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
        self.ops_per_sec = of(|r| r.ops_per_sec);
        self.gen_us_per_op = of(|r| r.gen_us_per_op);
        self.gen_cpu = of(|r| r.gen_cpu.fraction);
        self.p50_us = of(|r| r.latency.p50_us);
        self.p99_us = of(|r| r.latency.p99_us);
        let node: Vec<f64> = self.rounds.iter().filter_map(|r| r.node_us_per_op).collect();
        self.node_us_per_op = median(&node);
    }
}

/// What [`throughput`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputReport {
    pub connections: usize,
    pub pipeline: usize,
    pub client_connections: usize,
    pub value_len: usize,
    pub raw: Side,
    pub client: Side,
    /// Median client ops/s over median raw ops/s.
    pub ratio: f64,
    /// The ratio of each round, client over raw.
    pub round_ratios: Vec<f64>,
    pub errors: Vec<String>,
}

/// Runs the raw engine and the client in turn, `rounds` times each.
pub async fn throughput(cfg: &ThroughputConfig) -> ThroughputReport {
    let keys = KeySpace::new("rb:", 0, cfg.keys).expect("a key count is a valid key space");
    let values = ValueSpec::fixed(cfg.value_len);
    let in_flight = cfg.connections * cfg.pipeline;
    let mut load_cfg = LoadConfig::new(cfg.addr.clone(), Protocol::Binary);
    load_cfg.connections = cfg.connections;
    load_cfg.pipeline = cfg.pipeline;
    load_cfg.keys = keys.clone();
    load_cfg.values = values;
    load_cfg.get_ratio = cfg.get_ratio;
    load_cfg.duration = cfg.duration;
    load_cfg.server_pids = cfg.node_pid.into_iter().collect();
    let client = Arc::new(single_node_client(&cfg.addr, cfg.client_connections, in_flight));
    let ticks_per_sec = proc::clock_ticks_per_sec().unwrap_or(100) as f64;
    let (mut raw, mut own, mut errors) = (Side::default(), Side::default(), Vec::new());
    for round in 0..cfg.rounds {
        // The first raw round sets every key, so every get of both sides hits.
        load_cfg.warmup = round == 0;
        let r = load::run(&load_cfg).await;
        errors.extend(r.errors.iter().map(|e| format!("raw engine, round {}: {e}", round + 1)));
        let node_us = match r.server_ticks.first() {
            Some(Some(t)) if r.ops > 0 => Some(*t as f64 / ticks_per_sec * 1e6 / r.ops as f64),
            _ => None,
        };
        raw.rounds.push(Round {
            ops_per_sec: r.ops_per_sec,
            ops: r.ops,
            gen_us_per_op: per_op_us(&r.cpu, r.ops),
            gen_cpu: r.cpu,
            node_us_per_op: node_us,
            latency: r.latency,
            errors: r.errors.len() as u64,
        });
        let c = client_round(&client, cfg, &keys, values, in_flight, round as u64, ticks_per_sec).await;
        if c.errors > 0 {
            errors.push(format!(
                "client, round {}: {} failed or wrong reads",
                round + 1,
                c.errors
            ));
        }
        own.rounds.push(c);
    }
    raw.finish();
    own.finish();
    let round_ratios = raw
        .rounds
        .iter()
        .zip(&own.rounds)
        .map(|(r, c)| {
            if r.ops_per_sec > 0.0 {
                c.ops_per_sec / r.ops_per_sec
            } else {
                0.0
            }
        })
        .collect();
    ThroughputReport {
        connections: cfg.connections,
        pipeline: cfg.pipeline,
        client_connections: cfg.client_connections,
        value_len: cfg.value_len,
        ratio: if raw.ops_per_sec > 0.0 {
            own.ops_per_sec / raw.ops_per_sec
        } else {
            0.0
        },
        raw,
        client: own,
        round_ratios,
        errors,
    }
}

fn per_op_us(cpu: &CpuUse, ops: u64) -> f64 {
    if ops == 0 {
        return 0.0;
    }
    (cpu.user_secs + cpu.sys_secs) * 1e6 / ops as f64
}

/// A client of the one node at `addr`, whose in-flight limit takes `in_flight` callers.
pub fn single_node_client(addr: &str, connections: usize, in_flight: usize) -> Client {
    let topology = Topology::builder("bench", "z")
        .zone("z", [addr.to_string()])
        .build()
        .expect("one node is a valid topology");
    let config = ClientConfig {
        node: NodeConfig {
            connections,
            conn: ConnConfig {
                max_in_flight: in_flight.max(1024),
                request_timeout: Duration::from_secs(5),
                ..ConnConfig::default()
            },
            ..NodeConfig::default()
        },
        ..ClientConfig::default()
    };
    Client::new(topology, config).expect("a default configuration is valid")
}

/// One round of the client: `callers` tasks, each a closed loop of gets and sets.
async fn client_round(
    client: &Arc<Client>,
    cfg: &ThroughputConfig,
    keys: &KeySpace,
    values: ValueSpec,
    callers: usize,
    round: u64,
    ticks_per_sec: f64,
) -> Round {
    let ops = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let node_before = cfg.node_pid.and_then(proc::cpu_ticks);
    let clock = CpuClock::start();
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let get_threshold = Rng::threshold(cfg.get_ratio);
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let (client, keys, ops, errors) = (client.clone(), keys.clone(), ops.clone(), errors.clone());
            tokio::spawn(async move {
                let mut rng = Rng::new(round.wrapping_mul(1_000_003) + i as u64 + 1);
                let mut key_buf: KeyBuf = [0; riven_memcache::MAX_KEY_LEN];
                let mut value = Vec::with_capacity(values.max);
                let mut hist = LatencyHist::new();
                let mut n = 0;
                // One clock read per operation: each one's end is the next one's start, as
                // the raw engine reads the clock once per batch rather than twice per request.
                let mut t = Instant::now();
                loop {
                    if t >= deadline {
                        break;
                    }
                    let key = keys.key(rng.below(keys.count()), &mut key_buf);
                    let expected = values.expect(key);
                    let ok = if rng.chance(get_threshold) {
                        match client.get(key).await {
                            Ok(Some((v, flags))) => expected.check(Some(flags), &v).is_ok(),
                            // Every key was set by the raw side's warm-up.
                            _ => false,
                        }
                    } else {
                        value.clear();
                        expected.write(&mut value);
                        client.set(key, &value, expected.flags, Ttl::Never).await.is_ok()
                    };
                    let end = Instant::now();
                    hist.record(end - t);
                    t = end;
                    n += 1;
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ops.fetch_add(n, Ordering::Relaxed);
                hist
            })
        })
        .collect();
    let mut hist = LatencyHist::new();
    for t in tasks {
        if let Ok(h) = t.await {
            hist.add(&h);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = clock.stop(crate::cpu::runtime_threads());
    let ops = ops.load(Ordering::Relaxed);
    let node_us = match (node_before, cfg.node_pid.and_then(proc::cpu_ticks)) {
        (Some(a), Some(b)) if ops > 0 => Some(b.saturating_sub(a) as f64 / ticks_per_sec * 1e6 / ops as f64),
        _ => None,
    };
    Round {
        ops_per_sec: ops as f64 / secs,
        ops,
        gen_us_per_op: per_op_us(&cpu, ops),
        gen_cpu: cpu,
        node_us_per_op: node_us,
        latency: hist.summary(),
        errors: errors.load(Ordering::Relaxed),
    }
}

/// The throughput comparison as a markdown table.
pub fn throughput_markdown(reports: &[ThroughputReport]) -> String {
    let mut out = String::from(
        "| in flight | side | ops/s (median) | gen cpu | gen µs/op | node µs/op | p50 µs | p99 µs | client / raw |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let flight = format!(
            "{} ({} conns × pipeline {} raw; {} callers on {} conns client)",
            r.connections * r.pipeline,
            r.connections,
            r.pipeline,
            r.connections * r.pipeline,
            r.client_connections
        );
        for (name, side, ratio) in [("raw engine", &r.raw, 1.0), ("riven-client", &r.client, r.ratio)] {
            let node = side.node_us_per_op.map_or("-".into(), |u| format!("{u:.1}"));
            let mark = if crate::cpu::is_saturated(side.gen_cpu) {
                " *"
            } else {
                ""
            };
            out += &format!(
                "| {flight} | {name} | {:.0} | {:.0} %{mark} | {:.2} | {node} | {:.0} | {:.0} | {ratio:.2} |\n",
                side.ops_per_sec,
                side.gen_cpu * 100.0,
                side.gen_us_per_op,
                side.p50_us,
                side.p99_us,
            );
        }
    }
    out
}
