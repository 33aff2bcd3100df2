//! `riven-bench setops`: every storage command in every state a key can be in, each reply checked
//! against memcached's semantics as the [`model`](super::model) predicts them.
//!
//! Each connection walks its own keys ([`Owned`]) through one [`SCRIPT`]: the commands that must
//! fail on a missing key (`replace`, `append`, `prepend`, `cas`, `touch`, `incr`, `decr`,
//! `delete`), then `add` twice, `replace`, `append`, `prepend`, `cas` with a wrong and a right CAS
//! unique, `incr`/`decr` with wrap-around and the floor at 0 and the space padding memcached
//! leaves, `incr` on a value that is not a number, and deletes. The script only chooses the
//! commands; what each must answer comes from the model, so the script cannot get a reply wrong
//! that the model gets right. The run ends when every key went through the script: a run cut
//! short by the duration is a failure, since what was not checked was not checked.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use super::blast::enough_keys;
use super::common::{Common, Owned};
use super::engine::{self, Batch, Phase, Request, RunReport, Workload};
use super::model::{Expect, Model, BAD_CAS};
use super::value::{derive_seed, Part, Rng};
use super::wire::{Args, MultiHit, Op, Reply};

/// The value a step sends.
#[derive(Clone, Copy, Debug)]
enum Value {
    None,
    /// Bytes of the configured sizes.
    Bytes,
    /// A few bytes to append or prepend.
    Piece,
    /// A small number.
    Number,
    /// A number a few below 2^64, for incr to wrap.
    NearMax,
}

/// One command of the script.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    op: Op,
    value: Value,
    /// `cas` with the item's CAS unique (when the model knows it) rather than a wrong one.
    right_cas: bool,
    delta: u64,
    /// Wait for the replies before the next step (which needs what they tell: a CAS, a length).
    barrier: bool,
}

const fn step(op: Op, value: Value) -> Step {
    Step {
        op,
        value,
        right_cas: false,
        delta: 0,
        barrier: false,
    }
}

const fn then_wait(s: Step) -> Step {
    Step { barrier: true, ..s }
}

const fn right_cas(s: Step) -> Step {
    Step { right_cas: true, ..s }
}

const fn delta(s: Step, d: u64) -> Step {
    Step { delta: d, ..s }
}

use Value::{Bytes, NearMax, Number, Piece};

/// What each key goes through, from an unknown state (deleted first).
pub const SCRIPT: &[Step] = &[
    step(Op::Delete, Value::None),
    // Missing key.
    step(Op::Get, Value::None),
    step(Op::Replace, Bytes),
    step(Op::Append, Piece),
    step(Op::Prepend, Piece),
    step(Op::Cas, Bytes),
    step(Op::Touch, Value::None),
    delta(step(Op::Incr, Value::None), 1),
    delta(step(Op::Decr, Value::None), 1),
    step(Op::Delete, Value::None),
    // Stored by add (binary and meta return its CAS).
    then_wait(step(Op::Add, Bytes)),
    right_cas(step(Op::Cas, Bytes)),
    step(Op::Add, Bytes),
    step(Op::Get, Value::None),
    step(Op::Replace, Bytes),
    step(Op::Append, Piece),
    step(Op::Prepend, Piece),
    then_wait(step(Op::Gets, Value::None)),
    step(Op::Cas, Bytes),
    right_cas(step(Op::Cas, Bytes)),
    step(Op::Get, Value::None),
    step(Op::Gat, Value::None),
    step(Op::Touch, Value::None),
    // Numbers.
    step(Op::Set, Number),
    delta(step(Op::Incr, Value::None), 5),
    delta(step(Op::Decr, Value::None), u64::MAX),
    then_wait(step(Op::Get, Value::None)),
    step(Op::Append, Piece),
    step(Op::Get, Value::None),
    step(Op::Set, NearMax),
    delta(step(Op::Incr, Value::None), 1000),
    then_wait(step(Op::Get, Value::None)),
    step(Op::Set, Bytes),
    delta(step(Op::Incr, Value::None), 1),
    delta(step(Op::Decr, Value::None), 1),
    // Gone again.
    step(Op::Delete, Value::None),
    step(Op::Get, Value::None),
    step(Op::Touch, Value::None),
    step(Op::Delete, Value::None),
];

/// What a setops run found.
#[derive(Clone, Debug, Serialize)]
pub struct SetopsReport {
    #[serde(flatten)]
    pub run: RunReport,
    /// Keys taken through the whole script.
    pub keys_done: u64,
    pub script_steps: usize,
}

impl SetopsReport {
    pub fn ok(&self) -> bool {
        self.run.ok
    }

    pub fn human(&self) -> String {
        let mut s = self
            .run
            .human(&format!(", a script of {} commands per key", self.script_steps));
        s += &format!("  keys done  {:>12} of {}\n", self.keys_done, self.run.keys);
        s
    }
}

/// Runs the script over every key of the key space.
pub async fn run(c: &Common) -> SetopsReport {
    let mut report = SetopsReport {
        run: RunReport::failed("setops", &c.engine, Vec::new()),
        keys_done: 0,
        script_steps: SCRIPT.len(),
    };
    if let Err(e) = c.validate().and_then(|_| enough_keys(c)) {
        report.run.errors.push(e);
        return report;
    }
    let shared = Arc::new(c.clone());
    let (mut run, workloads) = engine::run("setops", &c.engine, |id| Setops::new(shared.clone(), id)).await;
    report.keys_done = workloads.iter().map(|w| w.done).sum();
    if run.ok && !run.finished {
        run.errors.push(format!(
            "only {} of {} keys went through the script within {:?}: give it more time or fewer keys",
            report.keys_done,
            c.engine.keys.count(),
            c.engine.duration
        ));
        run.ok = false;
    }
    report.run = run;
    report
}

/// One connection's walk through its keys.
pub struct Setops {
    c: Arc<Common>,
    owned: Owned,
    rng: Rng,
    model: Model,
    expects: VecDeque<Expect>,
    /// Position in the owned keys, and in the script.
    key: u64,
    step: usize,
    done: u64,
}

impl Setops {
    pub fn new(c: Arc<Common>, id: usize) -> Setops {
        Setops {
            owned: Owned::new(c.engine.keys.count(), c.engine.connections, id),
            rng: c.rng(id),
            model: Model::new(),
            expects: VecDeque::new(),
            key: 0,
            step: 0,
            done: 0,
            c,
        }
    }

    fn value(&mut self, v: Value) -> Option<Part> {
        Some(match v {
            Value::None => return None,
            Value::Bytes => {
                let span = (self.c.values.max - self.c.values.min) as u64 + 1;
                Part::Stream {
                    seed: derive_seed(self.c.seed, self.rng.next_u64()),
                    len: self.c.values.min + self.rng.below(span) as usize,
                }
            }
            Value::Piece => Part::Stream {
                seed: self.rng.next_u64(),
                len: 1 + self.rng.below(16) as usize,
            },
            Value::Number => Part::number(10 + self.rng.below(1_000_000)),
            Value::NearMax => Part::number(u64::MAX - self.rng.below(100)),
        })
    }
}

impl Workload for Setops {
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool {
        if phase == Phase::Warmup || self.key >= self.owned.len() {
            return false;
        }
        let s = SCRIPT[self.step];
        let key = self.owned.key(self.key);
        let cas = self.model.item(key).and_then(|i| i.cas);
        let args = Args {
            flags: self.rng.next_u64() as u32,
            exptime: 0,
            cas: match cas {
                Some(c) if s.right_cas => c,
                _ => BAD_CAS,
            },
            delta: s.delta,
        };
        let value = self.value(s.value);
        match self.model.apply(key, s.op, &args, value) {
            Some(e) => {
                self.expects.push_back(e);
                batch.push(s.op, key, args, value);
            }
            // A value the model cannot judge incr on (a stream of bytes that starts like a
            // negative number, say): delete it and carry on from a known state.
            None => {
                let e = self.model.apply(key, Op::Delete, &Args::default(), None);
                self.expects.push_back(e.unwrap_or(Expect::Cleared));
                batch.push(Op::Delete, key, Args::default(), None);
            }
        }
        if s.barrier {
            batch.barrier();
        }
        self.step += 1;
        if self.step == SCRIPT.len() {
            self.step = 0;
            self.key += 1;
            self.done += 1;
        }
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
    use crate::value::KeySpace;
    use crate::wire::Protocol;

    /// Plays the script against the model alone, answering each request with the reply the model
    /// expects (CAS uniques made up, as a server would), barrier by barrier, and checks that it
    /// covers every storage command on a present and on a missing key.
    #[test]
    fn the_script_covers_every_storage_command_in_both_states() {
        let mut c = Common::new("x:1", Protocol::Binary, KeySpace::new("k", 0, 1).unwrap());
        c.engine.connections = 1;
        c.values = crate::value::ValueSpec { min: 5, max: 50 };
        let mut w = Setops::new(Arc::new(c), 0);
        let mut seen = std::collections::HashSet::new();
        let mut cas = 100;
        let mut outcomes = Vec::new();
        loop {
            let mut b = Batch::default();
            let more = loop {
                let (step, present) = (SCRIPT[w.step], w.model.item(0).is_some());
                if !w.next(Phase::Measure, &mut b) {
                    break false;
                }
                seen.insert((step.op, present));
                if b.at_barrier() {
                    break true;
                }
            };
            let req = b.requests().first().cloned();
            while let Some(e) = w.expects.front().cloned() {
                let mut data = Vec::new();
                cas += 1;
                let reply = match &e {
                    Expect::Value(want) => {
                        for p in &want.parts {
                            p.write(&mut data);
                        }
                        Reply::Hit {
                            flags: Some(want.flags),
                            cas: Some(cas),
                            data: &data,
                        }
                    }
                    Expect::Stored { .. } => Reply::Stored { cas: Some(cas) },
                    Expect::Number(n) | Expect::NumberOrRefusal(n) => Reply::Number(*n),
                    Expect::NonNumeric => Reply::NonNumeric,
                    Expect::Exists => Reply::Exists,
                    Expect::NotStored => Reply::NotStored,
                    Expect::NotFound | Expect::Cleared => Reply::NotFound,
                    Expect::Deleted => Reply::Deleted,
                    Expect::Touched => Reply::Touched,
                    Expect::Miss => Reply::Miss,
                    Expect::Multi(_) => Reply::Multi,
                };
                w.check(req.as_ref().unwrap(), &[], &reply, &[], &[]).unwrap();
                outcomes.push(e);
            }
            if !more {
                break;
            }
        }
        assert_eq!(w.done, 1);
        assert_eq!(outcomes.len(), SCRIPT.len());
        for op in [
            Op::Add,
            Op::Replace,
            Op::Append,
            Op::Prepend,
            Op::Cas,
            Op::Incr,
            Op::Decr,
            Op::Touch,
            Op::Delete,
        ] {
            assert!(
                seen.contains(&(op, true)) && seen.contains(&(op, false)),
                "{op}: {seen:?}"
            );
        }
        // Both cas outcomes on a present key, the floor, the wrap and the non-numeric error.
        let stored_by_cas = SCRIPT
            .iter()
            .zip(&outcomes)
            .filter(|(s, e)| s.op == Op::Cas && matches!(e, Expect::Stored { .. }))
            .count();
        assert_eq!(stored_by_cas, 2);
        assert!(outcomes.contains(&Expect::Exists));
        assert!(outcomes.contains(&Expect::Number(0)));
        assert!(outcomes
            .iter()
            .any(|e| matches!(e, Expect::NumberOrRefusal(n) if *n < 1000)));
        assert!(outcomes.contains(&Expect::NonNumeric));
    }
}
