//! What every tool takes besides its own options: the engine's settings (server, protocol,
//! connections, pipeline, keys, duration, timeout, open-loop rate, progress), value sizes, the
//! share of reads, the multi-get batch size and a seed; and how connections divide keys between
//! them.

use super::engine::EngineConfig;
use super::value::{KeySpace, Rng, ValueSpec};
use super::wire::Protocol;

/// Options shared by every tool.
#[derive(Clone, Debug)]
pub struct Common {
    pub engine: EngineConfig,
    pub values: ValueSpec,
    /// Fraction of requests that read.
    pub get_ratio: f64,
    /// Keys per multi-get.
    pub mget: usize,
    /// Seed of every random choice; connection `i` uses `seed + i`.
    pub seed: u64,
}

impl Common {
    /// 50 connections, no pipelining, 100-byte values, 90 % reads, multi-gets of 10 keys, 10
    /// seconds, closed loop.
    pub fn new(addr: impl Into<String>, protocol: Protocol, keys: KeySpace) -> Common {
        Common {
            engine: EngineConfig::new(addr, protocol, keys),
            values: ValueSpec::fixed(100),
            get_ratio: 0.9,
            mget: 10,
            seed: 1,
        }
    }

    pub fn rng(&self, id: usize) -> Rng {
        Rng::new(self.seed.wrapping_add(id as u64))
    }

    /// Checks the settings a tool cannot run without.
    pub fn validate(&self) -> Result<(), String> {
        if self.mget == 0 {
            return Err("the multi-get batch size must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.get_ratio) {
            return Err(format!("the get ratio must be between 0 and 1, not {}", self.get_ratio));
        }
        Ok(())
    }
}

/// The keys one connection owns when each key must have a single writer (so the connection can
/// know exactly what the server holds): every `connections`-th index from the connection's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned {
    first: u64,
    step: u64,
    len: u64,
}

impl Owned {
    /// Connection `id`'s share of `keys` indexes. Empty when there are fewer keys than
    /// connections and `id` gets none.
    pub fn new(keys: u64, connections: usize, id: usize) -> Owned {
        let step = connections.max(1) as u64;
        let first = id as u64;
        let len = if first < keys { (keys - first).div_ceil(step) } else { 0 };
        Owned { first, step, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `j`-th owned key index (`j` taken modulo [`Owned::len`]).
    pub fn key(&self, j: u64) -> u64 {
        self.first + (j % self.len.max(1)) * self.step
    }

    /// A random owned key, with its position.
    pub fn random(&self, rng: &mut Rng) -> (u64, u64) {
        let j = rng.below(self.len.max(1));
        (j, self.key(j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_own_disjoint_keys_covering_the_space() {
        let mut seen = vec![0; 10];
        for id in 0..3 {
            let o = Owned::new(10, 3, id);
            for j in 0..o.len() {
                seen[o.key(j) as usize] += 1;
            }
        }
        assert_eq!(seen, vec![1; 10]);
        assert_eq!(Owned::new(10, 3, 0).len(), 4);
        assert_eq!(Owned::new(10, 3, 2).len(), 3);
        assert!(Owned::new(2, 3, 2).is_empty());
        assert_eq!(Owned::new(10, 3, 1).key(3), 1, "wraps");
        let mut rng = Rng::new(1);
        let o = Owned::new(100, 7, 3);
        assert!((0..100).all(|_| o.random(&mut rng).1 % 7 == 3));
    }

    #[test]
    fn settings_are_validated() {
        let mut c = Common::new("x:1", Protocol::Text, KeySpace::new("k", 0, 10).unwrap());
        assert!(c.validate().is_ok());
        c.mget = 0;
        assert!(c.validate().is_err());
        c.mget = 1;
        c.get_ratio = 1.5;
        assert!(c.validate().is_err());
    }
}
