//! The read latency of the smart client with one zone slowed: the local zone's node sits behind
//! a [`DelayProxy`] that holds every reply back by a fixed delay, and the other zone answers at
//! loopback speed. Each variant (no hedging, hedging with one setting or another) reads in an
//! open loop at a fixed rate, so a slow answer cannot slow the sending down and hide itself
//! (latency is counted from each read's scheduled time); the variants alternate round by round.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use riven_client::{Client, ClientConfig, ConnConfig, HedgeConfig, NodeConfig, Topology, Ttl, Wait, WritePolicy};
use serde::Serialize;
use tokio::time::Instant;

use crate::delay::DelayProxy;
use crate::hist::{median, LatencyHist, LatencySummary};
use crate::value::{KeyBuf, KeySpace};

/// One way of reading: a name for the table and the hedging it uses (`None`: none).
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    pub hedge: Option<HedgeConfig>,
}

/// What [`run`] measures.
#[derive(Clone, Debug)]
pub struct HedgeBenchConfig {
    /// The local zone's node, reached through the delay proxy.
    pub slow: String,
    /// The other zone's node, reached directly.
    pub fast: String,
    /// The delay the proxy adds to every reply of the slow zone.
    pub delay: Duration,
    /// Reads per second, open loop.
    pub rate: f64,
    pub duration: Duration,
    pub rounds: usize,
    pub keys: u64,
    pub value_len: usize,
    pub variants: Vec<Variant>,
}

/// One variant's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VariantReport {
    pub name: String,
    pub rounds: Vec<LatencySummary>,
    /// Medians over the rounds.
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Hedges sent, as a share of reads (over all rounds).
    pub hedged: f64,
    /// Reads that failed or read a wrong value; any makes the run fail.
    pub errors: u64,
}

/// What [`run`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct HedgeReport {
    pub delay_ms: f64,
    pub rate: f64,
    pub variants: Vec<VariantReport>,
    pub errors: Vec<String>,
}

fn topology(local: &str, other: &str) -> Topology {
    Topology::builder("bench", "slow")
        .zone("slow", [local.to_string()])
        .zone("fast", [other.to_string()])
        .build()
        .expect("two one-node zones are a valid topology")
}

fn client(topology: &Topology, hedge: Option<HedgeConfig>, write_policy: WritePolicy) -> Client {
    let config = ClientConfig {
        node: NodeConfig {
            conn: ConnConfig {
                max_in_flight: 16 * 1024,
                ..ConnConfig::default()
            },
            ..NodeConfig::default()
        },
        hedge,
        write_policy,
        ..ClientConfig::default()
    };
    Client::new(topology.clone(), config).expect("a valid client configuration")
}

/// Starts the proxy, fills both zones with every key, then runs each variant in turn, round
/// after round.
pub async fn run(cfg: &HedgeBenchConfig) -> Result<HedgeReport, String> {
    let proxy = DelayProxy::start(&cfg.slow, cfg.delay).map_err(|e| format!("delay proxy: {e}"))?;
    let topology = topology(&proxy.addr, &cfg.fast);
    let keys = KeySpace::new("hb:", 0, cfg.keys)?;
    let value = vec![b'h'; cfg.value_len];
    let filler = client(&topology, None, WritePolicy::AllZones { wait: Wait::All });
    // Many sets at once: each waits out the slow zone's delay.
    let all: Vec<u64> = (0..keys.count()).collect();
    for batch in all.chunks(256) {
        let sets = batch.iter().map(|&i| {
            let (filler, keys, value) = (&filler, &keys, &value);
            async move {
                let mut key_buf: KeyBuf = [0; riven_memcache::MAX_KEY_LEN];
                filler.set(keys.key(i, &mut key_buf), value, 0, Ttl::Never).await
            }
        });
        for result in futures_util::future::join_all(sets).await {
            result.map_err(|e| format!("filling both zones: {e}"))?;
        }
    }
    let clients: Vec<Arc<Client>> = cfg
        .variants
        .iter()
        .map(|v| Arc::new(client(&topology, v.hedge.clone(), WritePolicy::Local)))
        .collect();
    let mut reports: Vec<VariantReport> = cfg
        .variants
        .iter()
        .map(|v| VariantReport {
            name: v.name.clone(),
            ..VariantReport::default()
        })
        .collect();
    let mut errors = Vec::new();
    for round in 0..cfg.rounds {
        for (client, report) in clients.iter().zip(&mut reports) {
            let (summary, failed) = open_loop(client, cfg, &keys, round as u64).await;
            if failed > 0 {
                errors.push(format!(
                    "{}, round {}: {failed} reads failed or were wrong",
                    report.name,
                    round + 1
                ));
            }
            report.errors += failed;
            report.rounds.push(summary);
        }
    }
    for (client, report) in clients.iter().zip(&mut reports) {
        let of =
            |f: fn(&LatencySummary) -> f64| median(&report.rounds.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0);
        report.p50_us = of(|s| s.p50_us);
        report.p99_us = of(|s| s.p99_us);
        report.p999_us = of(|s| s.p999_us);
        let stats = client.stats();
        report.hedged = if stats.reads > 0 {
            stats.hedges as f64 / stats.reads as f64
        } else {
            0.0
        };
    }
    Ok(HedgeReport {
        delay_ms: cfg.delay.as_secs_f64() * 1000.0,
        rate: cfg.rate,
        variants: reports,
        errors,
    })
}

/// Reads at `cfg.rate` for `cfg.duration`, each read its own task started at its scheduled time.
async fn open_loop(client: &Arc<Client>, cfg: &HedgeBenchConfig, keys: &KeySpace, round: u64) -> (LatencySummary, u64) {
    let total = (cfg.rate * cfg.duration.as_secs_f64()).max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / cfg.rate.max(1.0));
    let failed = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        let (client, failed, tx) = (client.clone(), failed.clone(), tx.clone());
        let index = (i.wrapping_mul(2_654_435_761).wrapping_add(round)) % keys.count();
        let mut key_buf: KeyBuf = [0; riven_memcache::MAX_KEY_LEN];
        let key = keys.key(index, &mut key_buf).to_vec();
        let len = cfg.value_len;
        tokio::spawn(async move {
            match client.get(&key).await {
                Ok(Some((v, _))) if v.len() == len => {}
                _ => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = tx.send(due.elapsed());
        });
    }
    drop(tx);
    let mut hist = LatencyHist::new();
    while let Some(latency) = rx.recv().await {
        hist.record(latency);
    }
    (hist.summary(), failed.load(Ordering::Relaxed))
}

/// The report as a markdown table.
pub fn markdown(r: &HedgeReport) -> String {
    let mut out = String::from("| reads | p50 µs | p99 µs | p99.9 µs | hedged |\n|---|---:|---:|---:|---:|\n");
    for v in &r.variants {
        out += &format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.1} % |\n",
            v.name,
            v.p50_us,
            v.p99_us,
            v.p999_us,
            v.hedged * 100.0
        );
    }
    out
}
