//! `riven-bench fill`: sets only (or mostly), to measure the set rate and watch a server evict
//! under its memory bound. Each connection sets fresh keys in sequence (its share of the key
//! space, wrapping around), so once the data outgrows the server's memory every set forces an
//! eviction. A second connection polls `stats` every interval and records `evictions`,
//! `curr_items`, `bytes` and `limit_maxbytes`, so the report shows when eviction started and how
//! fast it went.
//!
//! With a get ratio above 0, reads of random keys are mixed in: a hit is checked against the
//! value its key stands for, a miss is expected (the key may have been evicted, or not yet set).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::common::Common;
use super::engine::{self, Batch, Phase, Request, RunReport, Workload};
use super::value::{KeyBuf, Rng};
use super::wire::{self, Args, MultiHit, Op, Reply};

/// One `stats` reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct StatsSample {
    /// Seconds since the measured phase started (negative: before it).
    pub secs: f64,
    /// Sets completed by then.
    pub sets: u64,
    pub evictions: u64,
    pub curr_items: u64,
    pub bytes: u64,
    pub limit_maxbytes: u64,
}

/// What a fill run found.
#[derive(Clone, Debug, Serialize)]
pub struct FillReport {
    #[serde(flatten)]
    pub run: RunReport,
    pub value_min: usize,
    pub value_max: usize,
    pub sets_per_sec: f64,
    /// Evictions during the run (last reading less the first).
    pub evictions: u64,
    /// When the first eviction was seen, in seconds from the start.
    pub first_eviction_secs: Option<f64>,
    /// Evictions per second from the first one to the end.
    pub evictions_per_sec: Option<f64>,
    pub samples: Vec<StatsSample>,
}

impl FillReport {
    pub fn ok(&self) -> bool {
        self.run.ok
    }

    pub fn human(&self) -> String {
        let mut s = self
            .run
            .human(&format!(", values {}..{} B", self.value_min, self.value_max));
        s += &format!("  sets       {:>12.0} /s\n", self.sets_per_sec);
        match (self.first_eviction_secs, self.evictions_per_sec) {
            (Some(t), Some(r)) => {
                s += &format!(
                    "  evictions  {:>12} (the first {t:.1} s in, {r:.0}/s from then on)\n",
                    self.evictions
                )
            }
            _ => s += "  evictions  none seen\n",
        }
        if let Some(last) = self.samples.last() {
            s += &format!(
                "  at the end {:>12} items, {} of {} bytes\n",
                last.curr_items, last.bytes, last.limit_maxbytes
            );
        }
        s += "  stats from the server, every interval:\n";
        s += &format!(
            "    {:>10} {:>12} {:>12} {:>12} {:>12}\n",
            "secs", "sets", "evictions", "items", "bytes"
        );
        // A long run has many readings: show about 20 rows.
        let step = self.samples.len().div_ceil(20).max(1);
        for (i, x) in self.samples.iter().enumerate() {
            if i % step == 0 || i + 1 == self.samples.len() {
                s += &format!(
                    "    {:>10.1} {:>12} {:>12} {:>12} {:>12}\n",
                    x.secs, x.sets, x.evictions, x.curr_items, x.bytes
                );
            }
        }
        s
    }
}

/// Fills the server, polling its stats every `interval`.
pub async fn run(c: &Common, interval: Duration) -> FillReport {
    let mut report = FillReport {
        run: RunReport::failed("fill", &c.engine, Vec::new()),
        value_min: c.values.min,
        value_max: c.values.max,
        sets_per_sec: 0.0,
        evictions: 0,
        first_eviction_secs: None,
        evictions_per_sec: None,
        samples: Vec::new(),
    };
    if let Err(e) = c.validate() {
        report.run.errors.push(e);
        return report;
    }
    let mut c = c.clone();
    // The stats poller prints the progress lines, with the eviction counts.
    let progress = std::mem::replace(&mut c.engine.progress, false);
    let shared = Arc::new(c);
    let sets = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = watch::channel(false);
    let load = async {
        let r = engine::run("fill", &shared.engine, |id| Fill::new(shared.clone(), sets.clone(), id)).await;
        let _ = done_tx.send(true);
        r
    };
    let poll = poll_stats(&shared, interval, sets.clone(), done_rx, progress);
    let ((run, _), polled) = tokio::join!(load, poll);
    report.run = run;
    match polled {
        Ok(samples) => report.samples = samples,
        Err(e) => {
            report.run.errors.push(format!("stats: {e}"));
            report.run.ok = false;
        }
    }
    report.sets_per_sec = report.run.command(Op::Set).map_or(0.0, |s| {
        if report.run.secs > 0.0 {
            s.count as f64 / report.run.secs
        } else {
            0.0
        }
    });
    if let (Some(first), Some(last)) = (report.samples.first(), report.samples.last()) {
        report.evictions = last.evictions.saturating_sub(first.evictions);
        let start = report.samples.iter().find(|x| x.evictions > first.evictions);
        report.first_eviction_secs = start.map(|x| x.secs);
        report.evictions_per_sec = start
            .filter(|x| last.secs > x.secs)
            .map(|x| (last.evictions - x.evictions) as f64 / (last.secs - x.secs));
    }
    report
}

/// Reads `stats` when asked, every `interval` during the run and once after it.
async fn poll_stats(
    c: &Common,
    interval: Duration,
    sets: Arc<AtomicU64>,
    mut done: watch::Receiver<bool>,
    progress: bool,
) -> Result<Vec<StatsSample>, String> {
    let timeout = c.engine.timeout;
    let addr = engine::resolve(&c.engine.addr).await?;
    let mut conn = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connect to {addr}: {e}")),
        Err(_) => return Err(format!("connect to {addr}: timed out after {timeout:?}")),
    };
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut buf = Vec::new();
    loop {
        let finished = *done.borrow();
        let mut x = read_stats(&mut conn, &mut buf, timeout).await?;
        x.secs = start.elapsed().as_secs_f64();
        x.sets = sets.load(Ordering::Relaxed);
        if progress {
            eprintln!(
                "  {:>6.1} s {:>12} sets {:>12} evictions {:>12} items {:>14} bytes",
                x.secs, x.sets, x.evictions, x.curr_items, x.bytes
            );
        }
        samples.push(x);
        if finished {
            return Ok(samples);
        }
        // Wake at the next interval, or at once when the run ends (for the last reading).
        let _ = tokio::time::timeout(interval, done.wait_for(|d| *d)).await;
    }
}

/// Sends `stats` and reads the reply up to `END`.
async fn read_stats(conn: &mut TcpStream, buf: &mut Vec<u8>, timeout: Duration) -> Result<StatsSample, String> {
    let call = async {
        conn.write_all(b"stats\r\n").await.map_err(|e| format!("write: {e}"))?;
        buf.clear();
        loop {
            if buf.ends_with(b"END\r\n") {
                return parse_stats(buf);
            }
            if buf.starts_with(b"ERROR") || buf.starts_with(b"SERVER_ERROR") || buf.starts_with(b"CLIENT_ERROR") {
                return Err(format!("the server refused `stats`: {}", wire::show(buf)));
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) => return Err("the server closed the stats connection".into()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| format!("no reply to `stats` within {timeout:?}"))?
}

/// Picks the counters fill reports from a `stats` reply.
pub fn parse_stats(reply: &[u8]) -> Result<StatsSample, String> {
    let mut x = StatsSample::default();
    let mut seen = 0;
    for line in reply.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut words = line.split(|&b| b == b' ');
        if words.next() != Some(b"STAT") {
            continue;
        }
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let slot = match name {
            b"evictions" => &mut x.evictions,
            b"curr_items" => &mut x.curr_items,
            b"bytes" => &mut x.bytes,
            b"limit_maxbytes" => &mut x.limit_maxbytes,
            _ => continue,
        };
        *slot = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("stat {} is not a number: {}", wire::show(name), wire::show(value)))?;
        seen += 1;
    }
    if seen < 4 {
        return Err(format!(
            "`stats` lacks evictions, curr_items, bytes or limit_maxbytes: {}",
            wire::show(reply)
        ));
    }
    Ok(x)
}

/// One connection's sets, in key order.
pub struct Fill {
    c: Arc<Common>,
    sets: Arc<AtomicU64>,
    rng: Rng,
    gets: u64,
    next: u64,
    key: KeyBuf,
}

impl Fill {
    pub fn new(c: Arc<Common>, sets: Arc<AtomicU64>, id: usize) -> Fill {
        Fill {
            rng: c.rng(id),
            gets: Rng::threshold(c.get_ratio),
            next: id as u64,
            key: [0; riven_memcache::MAX_KEY_LEN],
            sets,
            c,
        }
    }
}

impl Workload for Fill {
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool {
        if phase == Phase::Warmup {
            return false;
        }
        let count = self.c.engine.keys.count();
        if self.rng.chance(self.gets) {
            batch.push(Op::Get, self.rng.below(count), Args::default(), None);
            return true;
        }
        let key = self.next % count;
        self.next = self.next.wrapping_add(self.c.engine.connections as u64);
        let e = self.c.values.expect(self.c.engine.keys.key(key, &mut self.key));
        let args = Args {
            flags: e.flags,
            ..Args::default()
        };
        batch.push(Op::Set, key, args, Some(e.part()));
        true
    }

    fn check(
        &mut self,
        req: &Request,
        keys: &[u64],
        reply: &Reply<'_>,
        _hits: &[MultiHit],
        _buf: &[u8],
    ) -> Result<(), String> {
        match (req.op, reply) {
            (Op::Set, Reply::Stored { .. }) => {
                self.sets.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            (Op::Get, Reply::Miss) => Ok(()),
            (Op::Get, Reply::Hit { flags, data, .. }) => {
                let k = self.c.engine.keys.key(keys[0], &mut self.key);
                self.c
                    .values
                    .expect(k)
                    .check(*flags, data)
                    .map_err(|m| format!("wrong value: {m}"))
            }
            (op, r) => Err(format!("{op}: unexpected reply {}", super::model::describe(r))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_replies() {
        let reply = b"STAT pid 1\r\nSTAT evictions 12\r\nSTAT curr_items 3\r\nSTAT bytes 4096\r\nSTAT limit_maxbytes 67108864\r\nSTAT version 1.6.18\r\nEND\r\n";
        assert_eq!(
            parse_stats(reply),
            Ok(StatsSample {
                evictions: 12,
                curr_items: 3,
                bytes: 4096,
                limit_maxbytes: 64 << 20,
                ..StatsSample::default()
            })
        );
        assert!(parse_stats(b"STAT pid 1\r\nEND\r\n").unwrap_err().contains("lacks"));
        assert!(parse_stats(b"STAT evictions x\r\nEND\r\n")
            .unwrap_err()
            .contains("not a number"));
    }
}
