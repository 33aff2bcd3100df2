//! `riven-bench setget`: set keys, then read them straight back and check every byte. Value sizes
//! are drawn per key from a range (5 B to 20 KiB by default), so values cross every size class
//! and chunk boundary the server has. With a multi-get batch size above 1, a batch of sets is
//! read back with one multi-get.
//!
//! Several connections may write the same key, but always with the value the key stands for, so
//! a read right after a set must hit and must return exactly that value: a miss is an error too.

use std::sync::Arc;

use serde::Serialize;

use super::common::Common;
use super::engine::{self, Batch, Phase, Request, RunReport, Workload};
use super::value::{KeyBuf, Rng};
use super::wire::{Args, MultiHit, Op, Reply};

/// What a setget run found.
#[derive(Clone, Debug, Serialize)]
pub struct SetGetReport {
    #[serde(flatten)]
    pub run: RunReport,
    pub value_min: usize,
    pub value_max: usize,
    pub mget: usize,
}

impl SetGetReport {
    pub fn ok(&self) -> bool {
        self.run.ok
    }

    pub fn human(&self) -> String {
        let mget = if self.mget > 1 {
            format!(", read back {} at a time", self.mget)
        } else {
            String::new()
        };
        self.run
            .human(&format!(", values {}..{} B{mget}", self.value_min, self.value_max))
    }
}

pub async fn run(c: &Common) -> SetGetReport {
    let mut report = SetGetReport {
        run: RunReport::failed("setget", &c.engine, Vec::new()),
        value_min: c.values.min,
        value_max: c.values.max,
        mget: c.mget,
    };
    if let Err(e) = c.validate() {
        report.run.errors.push(e);
        return report;
    }
    let shared = Arc::new(c.clone());
    let (run, _) = engine::run("setget", &c.engine, |id| SetGet::new(shared.clone(), id)).await;
    report.run = run;
    report
}

/// One connection's sets and reads.
pub struct SetGet {
    c: Arc<Common>,
    rng: Rng,
    key: KeyBuf,
}

impl SetGet {
    pub fn new(c: Arc<Common>, id: usize) -> SetGet {
        SetGet {
            rng: c.rng(id),
            key: [0; riven_memcache::MAX_KEY_LEN],
            c,
        }
    }

    fn check_value(&mut self, key: u64, flags: Option<u32>, data: &[u8]) -> Result<(), String> {
        let k = self.c.engine.keys.key(key, &mut self.key);
        self.c
            .values
            .expect(k)
            .check(flags, data)
            .map_err(|m| format!("wrong value: {m}"))
    }
}

impl Workload for SetGet {
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool {
        if phase == Phase::Warmup {
            return false;
        }
        let count = self.c.engine.keys.count();
        let n = (self.c.mget as u64).min(count);
        let first = self.rng.below(count);
        let keys = (0..n).map(|i| (first + i) % count);
        for k in keys.clone() {
            let e = self.c.values.expect(self.c.engine.keys.key(k, &mut self.key));
            let args = Args {
                flags: e.flags,
                ..Args::default()
            };
            batch.push(Op::Set, k, args, Some(e.part()));
        }
        if n == 1 {
            batch.push(Op::Get, first, Args::default(), None);
        } else {
            batch.push_multi(Op::MultiGet, keys, Args::default(), None);
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
            (Op::Set, Reply::Stored { .. }) => Ok(()),
            (Op::Get, Reply::Hit { flags, data, .. }) => self.check_value(keys[0], *flags, data),
            (Op::Get, Reply::Miss) => Err("a miss right after the set".into()),
            (Op::MultiGet, Reply::Multi) => {
                if hits.len() < keys.len() {
                    let missed = (0..keys.len()).find(|&p| hits.iter().all(|h| h.pos != p)).unwrap_or(0);
                    return Err(format!(
                        "{} of {} keys missed right after their sets (key {} of the multi-get first)",
                        keys.len() - hits.len(),
                        keys.len(),
                        missed + 1
                    ));
                }
                for h in hits {
                    self.check_value(keys[h.pos], h.flags, buf.get(h.data.clone()).unwrap_or_default())?;
                }
                Ok(())
            }
            (op, r) => Err(format!("{op}: unexpected reply {}", super::model::describe(r))),
        }
    }
}
