//! `riven-bench blast`: a random mix of every command (set, add, replace, append, prepend, cas,
//! get, gets, multi-get, gat, touch, incr, decr, delete) over one protocol, with per-command
//! latency, every reply checked against the [`model`](super::model).
//!
//! Each connection owns its own keys ([`Owned`]), so it knows what the server must answer to
//! anything it sends, even under heavy pipelining: a wrong value, a lost write, a wrong status or
//! a stale read all end the run with exit code 1. Values change with every write (a fresh seed per
//! store), so a stale read is caught, not mistaken for the current value. Some commands only make
//! sense in some states; the mix adapts instead of sending what the model cannot predict: a key
//! not yet known is deleted first, `incr` on a value whose number-ness servers may disagree on
//! becomes a `set` of a number, an `append` to a value too long in parts becomes a `set`.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use super::common::{Common, Owned};
use super::engine::{self, Batch, Phase, Request, RunReport, Workload};
use super::model::{Expect, Model, Numeric, BAD_CAS, MAX_PARTS};
use super::value::{derive_seed, seed, KeyBuf, Part, Rng};
use super::wire::{Args, MultiHit, Op, Reply};

/// Relative weights of the reads (scaled to the get ratio) and of the writes (scaled to the
/// rest).
const READS: [(Op, u64); 4] = [(Op::Get, 8), (Op::Gets, 3), (Op::MultiGet, 4), (Op::Gat, 2)];
const WRITES: [(Op, u64); 10] = [
    (Op::Set, 8),
    (Op::Add, 3),
    (Op::Replace, 3),
    (Op::Append, 3),
    (Op::Prepend, 3),
    (Op::Cas, 4),
    (Op::Incr, 3),
    (Op::Decr, 2),
    (Op::Touch, 3),
    (Op::Delete, 3),
];

/// What a blast run found.
#[derive(Clone, Debug, Serialize)]
pub struct BlastReport {
    #[serde(flatten)]
    pub run: RunReport,
    pub value_min: usize,
    pub value_max: usize,
    pub get_ratio: f64,
    pub mget: usize,
}

impl BlastReport {
    pub fn ok(&self) -> bool {
        self.run.ok
    }

    pub fn human(&self) -> String {
        self.run.human(&format!(
            ", values {}..{} B, {:.0} % reads, multi-gets of {}",
            self.value_min,
            self.value_max,
            self.get_ratio * 100.0,
            self.mget
        ))
    }
}

/// Runs the blast. Every connection needs at least one key of its own, so the key space must
/// hold at least as many keys as there are connections.
pub async fn run(c: &Common) -> BlastReport {
    let mut report = BlastReport {
        run: RunReport::failed("blast", &c.engine, Vec::new()),
        value_min: c.values.min,
        value_max: c.values.max,
        get_ratio: c.get_ratio,
        mget: c.mget,
    };
    if let Err(e) = c.validate().and_then(|_| enough_keys(c)) {
        report.run.errors.push(e);
        return report;
    }
    let shared = Arc::new(c.clone());
    let (run, _) = engine::run("blast", &c.engine, |id| Blast::new(shared.clone(), id)).await;
    report.run = run;
    report
}

/// Key-owning tools need a key per connection at least.
pub fn enough_keys(c: &Common) -> Result<(), String> {
    if c.engine.keys.count() < c.engine.connections as u64 {
        return Err(format!(
            "{} keys for {} connections: each connection needs keys of its own",
            c.engine.keys.count(),
            c.engine.connections
        ));
    }
    Ok(())
}

/// Cumulative thresholds for picking commands with [`Rng::below`] out of `total`.
fn mix(get_ratio: f64) -> (Vec<(Op, u64)>, u64) {
    const SCALE: f64 = 1_000_000.0;
    let reads: u64 = READS.iter().map(|(_, w)| w).sum();
    let writes: u64 = WRITES.iter().map(|(_, w)| w).sum();
    let mut table = Vec::new();
    let mut total = 0;
    for (list, sum, share) in [(&READS[..], reads, get_ratio), (&WRITES[..], writes, 1.0 - get_ratio)] {
        for &(op, w) in list {
            let weight = (share * SCALE * w as f64 / sum as f64) as u64;
            if weight > 0 {
                total += weight;
                table.push((op, total));
            }
        }
    }
    (table, total)
}

/// One connection's blast.
pub struct Blast {
    c: Arc<Common>,
    owned: Owned,
    rng: Rng,
    model: Model,
    expects: VecDeque<Expect>,
    table: Vec<(Op, u64)>,
    total: u64,
    key: KeyBuf,
}

impl Blast {
    pub fn new(c: Arc<Common>, id: usize) -> Blast {
        let (table, total) = mix(c.get_ratio);
        Blast {
            owned: Owned::new(c.engine.keys.count(), c.engine.connections, id),
            rng: c.rng(id),
            model: Model::new(),
            expects: VecDeque::new(),
            table,
            total,
            key: [0; riven_memcache::MAX_KEY_LEN],
            c,
        }
    }

    fn pick(&mut self) -> Op {
        let x = self.rng.below(self.total.max(1));
        self.table.iter().find(|(_, t)| x < *t).map_or(Op::Get, |(op, _)| *op)
    }

    /// A fresh value for `key`: mostly bytes of the configured sizes, sometimes a number (small, or
    /// close enough to 2^64 for an incr to wrap).
    fn value(&mut self, key: u64) -> Part {
        if self.rng.below(5) == 0 {
            let n = if self.rng.below(4) == 0 {
                u64::MAX - self.rng.below(1000)
            } else {
                self.rng.below(1_000_000)
            };
            return Part::number(n);
        }
        let span = (self.c.values.max - self.c.values.min) as u64 + 1;
        let len = self.c.values.min + self.rng.below(span) as usize;
        let key_seed = seed(self.c.engine.keys.key(key, &mut self.key));
        Part::Stream {
            seed: derive_seed(key_seed, self.rng.next_u64()),
            len,
        }
    }

    /// A short piece to append or prepend.
    fn piece(&mut self) -> Part {
        Part::Stream {
            seed: self.rng.next_u64(),
            len: 1 + self.rng.below(32) as usize,
        }
    }

    /// Composes `op` on `key` into the batch with the reply the model expects.
    fn send(&mut self, batch: &mut Batch, key: u64, op: Op, args: Args, value: Option<Part>) {
        let expect = match self.model.apply(key, op, &args, value) {
            Some(e) => e,
            None => {
                // The model could not predict it and forgot the key: make it known again.
                return self.send(batch, key, Op::Delete, Args::default(), None);
            }
        };
        self.expects.push_back(expect);
        batch.push(op, key, args, value);
    }
}

impl Workload for Blast {
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool {
        if phase == Phase::Warmup || self.owned.is_empty() {
            return false;
        }
        let (j, key) = self.owned.random(&mut self.rng);
        if !self.model.is_known(key) {
            self.send(batch, key, Op::Delete, Args::default(), None);
            return true;
        }
        let mut op = self.pick();
        let mut args = Args {
            flags: self.rng.next_u64() as u32,
            // Expiry far enough that nothing expires during a run; 0 (never) half the time.
            exptime: if self.rng.below(2) == 0 { 0 } else { 3600 },
            ..Args::default()
        };
        let item = self.model.item(key);
        match op {
            Op::MultiGet => {
                let n = (self.c.mget as u64).min(self.owned.len());
                let keys: Vec<u64> = (0..n).map(|i| self.owned.key(j + i)).collect();
                if let Some(&unknown) = keys.iter().find(|&&k| !self.model.is_known(k)) {
                    self.send(batch, unknown, Op::Delete, Args::default(), None);
                } else if let Some(e) = self.model.apply_multi(&keys) {
                    self.expects.push_back(e);
                    batch.push_multi(Op::MultiGet, keys, args, None);
                }
                return true;
            }
            Op::Cas => {
                // The right CAS when known (three times in four), else one no item has.
                args.cas = match item.and_then(|i| i.cas) {
                    Some(c) if self.rng.below(4) != 0 => c,
                    _ => BAD_CAS,
                };
            }
            Op::Incr | Op::Decr => {
                if self.model.numeric(key) == Some(Numeric::Unsure) {
                    op = Op::Set;
                }
                args.delta = match self.rng.below(10) {
                    0 => u64::MAX - self.rng.below(1000),
                    _ => self.rng.below(1000),
                };
            }
            Op::Append | Op::Prepend => match item {
                // Its length is not settled (an incr result not read since): read it.
                Some(i) if i.exact_len().is_none() => op = Op::Get,
                Some(i) if i.parts.len() >= MAX_PARTS => op = Op::Set,
                _ => {}
            },
            _ => {}
        }
        let value = match op {
            Op::Append | Op::Prepend => Some(self.piece()),
            op if op.has_value() => Some(self.value(key)),
            _ => None,
        };
        self.send(batch, key, op, args, value);
        true
    }

    fn check(
        &mut self,
        _req: &Request,
        _keys: &[u64],
        reply: &Reply<'_>,
        hits: &[MultiHit],
        buf: &[u8],
    ) -> Result<(), String> {
        self.model.check_next(&mut self.expects, reply, hits, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_follows_the_get_ratio() {
        let (table, total) = mix(0.4);
        assert_eq!(table.len(), Op::COUNT);
        let reads = table
            .iter()
            .take_while(|(op, _)| READS.iter().any(|(r, _)| r == op))
            .last()
            .map(|(_, t)| *t)
            .unwrap();
        let share = reads as f64 / total as f64;
        assert!((share - 0.4).abs() < 0.001, "{share}");
        let (table, _) = mix(1.0);
        assert!(table.iter().all(|(op, _)| READS.iter().any(|(r, _)| r == op)));
    }
}
