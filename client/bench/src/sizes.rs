//! `riven-bench sizes`: values of every interesting size from 0 up to a maximum, each set, read
//! back and compared byte for byte.
//!
//! "Interesting" is where a server's storage changes shape: every size up to `dense`, then the
//! sizes on and beside each chunk boundary (`k * chunk - offset + {-1, 0, 1}`, where `offset` is
//! what the server stores in the first chunk besides the value: header and key), and the maximum.
//! A server that splits values into chunks (Riven's memory store, its chunking over memcached)
//! gets every boundary case; the chunk size is a flag so the same tool serves both. Each size is
//! its own key, so a value torn across chunks of another size would show.

use std::sync::Arc;

use serde::Serialize;

use super::common::{Common, Owned};
use super::engine::{self, Batch, Phase, Request, RunReport, Workload};
use super::value::{check_parts, seed, KeyBuf, Part};
use super::wire::{Args, MultiHit, Op, Reply};

/// Which sizes to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SizesOpts {
    /// The largest value.
    pub max: usize,
    /// The server's chunk size.
    pub chunk: usize,
    /// Bytes the server stores before the value in the first chunk (0 if unknown).
    pub offset: usize,
    /// Every size up to this one is checked.
    pub dense: usize,
}

impl Default for SizesOpts {
    /// Up to 128 KiB, around boundaries of 256-byte chunks (Riven's memory store), every size up
    /// to 512.
    fn default() -> Self {
        SizesOpts {
            max: 128 * 1024,
            chunk: 256,
            offset: 0,
            dense: 512,
        }
    }
}

/// The sizes to check, ascending, without repeats.
pub fn sizes(o: &SizesOpts) -> Vec<usize> {
    let mut v: Vec<usize> = (0..=o.dense.min(o.max)).collect();
    if o.chunk > 0 {
        let mut k = 1;
        while k * o.chunk <= o.max + o.offset + 1 {
            let at = (k * o.chunk).saturating_sub(o.offset);
            for s in [at.saturating_sub(1), at, at + 1] {
                if s <= o.max {
                    v.push(s);
                }
            }
            k += 1;
        }
    }
    v.push(o.max);
    v.sort_unstable();
    v.dedup();
    v
}

/// What a sizes run found.
#[derive(Clone, Debug, Serialize)]
pub struct SizesReport {
    #[serde(flatten)]
    pub run: RunReport,
    pub opts: SizesOpts,
    /// Sizes in the list, and sizes set and read back correctly.
    pub sizes: usize,
    pub sizes_checked: u64,
    pub bytes_checked: u64,
}

impl SizesReport {
    pub fn ok(&self) -> bool {
        self.run.ok
    }

    pub fn human(&self) -> String {
        let o = &self.opts;
        let mut s = self.run.human(&format!(
            ", sizes 0..={} around {}-byte chunks (offset {}), every size to {}",
            o.max, o.chunk, o.offset, o.dense
        ));
        s += &format!(
            "  sizes      {:>12} of {} set, read back and matched ({} bytes)\n",
            self.sizes_checked, self.sizes, self.bytes_checked
        );
        s
    }
}

/// Checks every size of `opts`; the key space's prefix and length name the keys (one per size).
pub async fn run(c: &Common, opts: &SizesOpts) -> SizesReport {
    let list = sizes(opts);
    let mut report = SizesReport {
        run: RunReport::failed("sizes", &c.engine, Vec::new()),
        opts: *opts,
        sizes: list.len(),
        sizes_checked: 0,
        bytes_checked: 0,
    };
    let mut c = c.clone();
    match c.engine.keys.with_count(list.len() as u64) {
        Ok(k) => c.engine.keys = k,
        Err(e) => {
            report.run.errors.push(e);
            return report;
        }
    }
    let list = Arc::new(list);
    let shared = Arc::new(c);
    let (mut run, workloads) = engine::run("sizes", &shared.engine, |id| {
        Sizes::new(shared.clone(), list.clone(), id)
    })
    .await;
    report.sizes_checked = workloads.iter().map(|w| w.checked).sum();
    report.bytes_checked = workloads.iter().map(|w| w.bytes).sum();
    if run.ok && report.sizes_checked < list.len() as u64 {
        run.errors.push(format!(
            "only {} of {} sizes were checked within {:?}: give it more time",
            report.sizes_checked,
            list.len(),
            shared.engine.duration
        ));
        run.ok = false;
    }
    report.run = run;
    report
}

/// One connection's share of the sizes.
pub struct Sizes {
    c: Arc<Common>,
    sizes: Arc<Vec<usize>>,
    owned: Owned,
    next: u64,
    key: KeyBuf,
    checked: u64,
    bytes: u64,
}

impl Sizes {
    pub fn new(c: Arc<Common>, sizes: Arc<Vec<usize>>, id: usize) -> Sizes {
        Sizes {
            owned: Owned::new(sizes.len() as u64, c.engine.connections, id),
            next: 0,
            key: [0; riven_memcache::MAX_KEY_LEN],
            checked: 0,
            bytes: 0,
            sizes,
            c,
        }
    }

    /// The value of size number `idx`, and its flags.
    fn value(&mut self, idx: u64) -> (Part, u32) {
        let s = seed(self.c.engine.keys.key(idx, &mut self.key));
        let len = self.sizes.get(idx as usize).copied().unwrap_or(0);
        (Part::Stream { seed: s, len }, (s >> 32) as u32)
    }
}

impl Workload for Sizes {
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool {
        if phase == Phase::Warmup || self.next >= self.owned.len() {
            return false;
        }
        let idx = self.owned.key(self.next);
        self.next += 1;
        let (part, flags) = self.value(idx);
        let args = Args {
            flags,
            ..Args::default()
        };
        batch.push(Op::Set, idx, args, Some(part));
        batch.push(Op::Get, idx, Args::default(), None);
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
        let idx = keys[0];
        let (part, flags) = self.value(idx);
        let size = part.max_len();
        match (req.op, reply) {
            (Op::Set, Reply::Stored { .. }) => Ok(()),
            (Op::Get, Reply::Hit { flags: f, data, .. }) => {
                if let Some(f) = f {
                    if *f != flags {
                        return Err(format!("size {size}: flags {f}, expected {flags}"));
                    }
                }
                check_parts(&[part], data).map_err(|m| format!("size {size}: wrong value: {m}"))?;
                self.checked += 1;
                self.bytes += size as u64;
                Ok(())
            }
            (Op::Get, Reply::Miss) => Err(format!("size {size}: a miss right after the set")),
            (op, r) => Err(format!(
                "size {size}: {op}: unexpected reply {}",
                super::model::describe(r)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_hit_every_chunk_boundary() {
        let o = SizesOpts {
            max: 1000,
            chunk: 256,
            offset: 0,
            dense: 10,
        };
        let v = sizes(&o);
        assert_eq!(&v[..11], &(0..=10).collect::<Vec<_>>()[..]);
        for b in [256, 512, 768] {
            for s in [b - 1, b, b + 1] {
                assert!(v.contains(&s), "{s}");
            }
        }
        assert_eq!(*v.last().unwrap(), 1000);
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(v.len(), 11 + 9 + 1);

        // With 48 bytes of header and key in the first chunk, the value boundaries move down.
        let v = sizes(&SizesOpts { offset: 48, ..o });
        assert!(v.contains(&207) && v.contains(&208) && v.contains(&209) && v.contains(&976));
        assert!(!v.contains(&256));

        // Everything when dense covers the maximum; no boundary past the maximum.
        let v = sizes(&SizesOpts {
            max: 300,
            chunk: 100,
            offset: 0,
            dense: 1000,
        });
        assert_eq!(v, (0..=300).collect::<Vec<_>>());
        assert_eq!(
            sizes(&SizesOpts {
                max: 0,
                chunk: 0,
                offset: 0,
                dense: 0
            }),
            vec![0]
        );
    }
}
