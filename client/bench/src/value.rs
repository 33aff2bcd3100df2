//! Keys and values derived from one another, so every read can be checked.
//!
//! A key is a prefix and a zero-padded decimal index. Everything about its value (length, flags
//! and bytes) is a pure function of the key's bytes, so any reader can tell the right value from a
//! wrong one without remembering what was written, whichever connection, run or tool wrote it.
//! The bytes come from a splitmix64 stream seeded by a hash of the key, mapped onto 64 printable
//! characters so a value seen through `nc` or a packet capture is still readable.

use std::fmt;

use riven_memcache::{key_is_valid, MAX_KEY_LEN};

#[cfg(test)]
use super::stream::ALPHABET;
use super::stream::{self, splitmix};

/// Room for one key, on the stack: composing a request never allocates for its key.
pub type KeyBuf = [u8; MAX_KEY_LEN];

/// The keys a run uses: `count` keys of exactly `len` bytes, `prefix` then the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    prefix: Vec<u8>,
    len: usize,
    count: u64,
}

impl KeySpace {
    /// Checks that every key of the space is a valid memcached key of `len` bytes. `len` 0 picks
    /// the shortest length that fits the largest index.
    pub fn new(prefix: &str, len: usize, count: u64) -> Result<KeySpace, String> {
        if count == 0 {
            return Err("the key space must hold at least one key".into());
        }
        let digits = decimal_digits(count - 1);
        let min = prefix.len() + digits;
        let len = if len == 0 { min } else { len };
        if len < min {
            return Err(format!(
                "keys of {len} bytes cannot hold prefix {prefix:?} and {count} indexes (need {min})"
            ));
        }
        if len > MAX_KEY_LEN {
            return Err(format!(
                "keys of {len} bytes are over memcached's limit of {MAX_KEY_LEN}"
            ));
        }
        if !prefix.is_empty() && !key_is_valid(prefix.as_bytes()) {
            return Err(format!("key prefix {prefix:?} has spaces or control characters"));
        }
        Ok(KeySpace {
            prefix: prefix.as_bytes().to_vec(),
            len,
            count,
        })
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The same prefix and key length with another count (the length grows if the indexes no
    /// longer fit).
    pub fn with_count(&self, count: u64) -> Result<KeySpace, String> {
        let prefix = String::from_utf8_lossy(&self.prefix).into_owned();
        let need = self.prefix.len() + decimal_digits(count.saturating_sub(1));
        KeySpace::new(&prefix, self.len.max(need), count)
    }

    pub fn key_len(&self) -> usize {
        self.len
    }

    /// Writes key number `idx` (taken modulo the count) into `buf` and returns it.
    pub fn key<'b>(&self, idx: u64, buf: &'b mut KeyBuf) -> &'b [u8] {
        let mut idx = idx % self.count;
        let p = self.prefix.len();
        buf[..p].copy_from_slice(&self.prefix);
        // Zero-padded decimal, filled from the right.
        for slot in buf[p..self.len].iter_mut().rev() {
            *slot = b'0' + (idx % 10) as u8;
            idx /= 10;
        }
        &buf[..self.len]
    }
}

fn decimal_digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Value lengths: one size, or a range from which each key draws its own size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueSpec {
    pub min: usize,
    pub max: usize,
}

impl ValueSpec {
    pub fn fixed(len: usize) -> ValueSpec {
        ValueSpec { min: len, max: len }
    }

    /// What the value of `key` must be.
    pub fn expect(&self, key: &[u8]) -> Expected {
        let seed = seed(key);
        let span = (self.max - self.min) as u64 + 1;
        // The length uses other bits than the flags and the byte stream's start do.
        let len = self.min + (splitmix(seed ^ 0x6c65_6e67_7468) % span) as usize;
        Expected {
            seed,
            flags: (seed >> 32) as u32,
            len,
        }
    }
}

impl std::str::FromStr for ValueSpec {
    type Err = String;

    /// `100` or `5..20000` (both ends included); `k` and `m` suffixes mean KiB and MiB.
    fn from_str(s: &str) -> Result<ValueSpec, String> {
        let spec = match s.split_once("..") {
            Some((a, b)) => ValueSpec {
                min: parse_size(a)?,
                max: parse_size(b)?,
            },
            None => ValueSpec::fixed(parse_size(s)?),
        };
        if spec.min > spec.max {
            return Err(format!("empty value size range {s:?}"));
        }
        Ok(spec)
    }
}

impl fmt::Display for ValueSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{} B", self.min)
        } else {
            write!(f, "{}..{} B", self.min, self.max)
        }
    }
}

/// A byte count: digits with an optional `k`/`K` (KiB) or `m`/`M` (MiB) suffix.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1024),
        Some((i, 'm' | 'M')) => (&s[..i], 1024 * 1024),
        _ => (s, 1),
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("bad size {s:?} (expected e.g. 100, 20k, 1m)"))
}

/// The value a key must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    seed: u64,
    pub flags: u32,
    pub len: usize,
}

impl Expected {
    /// The value of `len` bytes from the stream of `seed`, with `flags`.
    pub fn new(seed: u64, flags: u32, len: usize) -> Expected {
        Expected { seed, flags, len }
    }

    /// Appends the value's bytes to `out` (which should have room: this is the hot path).
    pub fn write(&self, out: &mut Vec<u8>) {
        write_stream(self.seed, self.len, out);
    }

    /// Checks a value read back, with its flags when the protocol returned them.
    pub fn check(&self, flags: Option<u32>, data: &[u8]) -> Result<(), Mismatch> {
        if data.len() != self.len {
            return Err(Mismatch::Length {
                expected: self.len,
                got: data.len(),
            });
        }
        if let Some(f) = flags {
            if f != self.flags {
                return Err(Mismatch::Flags {
                    expected: self.flags,
                    got: f,
                });
            }
        }
        check_stream(self.seed, data, 0)
    }

    /// The seed of the value's byte stream.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The value as a [`Part`].
    pub fn part(&self) -> Part {
        Part::Stream {
            seed: self.seed,
            len: self.len,
        }
    }
}

/// How a value read back differs from the one its key stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    Length {
        expected: usize,
        got: usize,
    },
    Flags {
        expected: u32,
        got: u32,
    },
    Byte {
        offset: usize,
        expected: u8,
        got: u8,
    },
    /// Not the decimal number (and space padding) incr/decr left.
    Number {
        expected: u64,
    },
}

impl Mismatch {
    fn shifted(self, by: usize) -> Mismatch {
        match self {
            Mismatch::Byte { offset, expected, got } => Mismatch::Byte {
                offset: offset + by,
                expected,
                got,
            },
            m => m,
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mismatch::Length { expected, got } => write!(f, "value length {got}, expected {expected}"),
            Mismatch::Flags { expected, got } => write!(f, "flags {got}, expected {expected}"),
            Mismatch::Byte { offset, expected, got } => {
                write!(
                    f,
                    "byte {offset} is {got:#04x}, expected {expected:#04x} ({:?})",
                    expected as char
                )
            }
            Mismatch::Number { expected } => write!(f, "not the number {expected} (space-padded)"),
        }
    }
}

/// A piece of a value the tools can regenerate, so a value built by several commands (a set,
/// then appends and prepends, or an incr) can still be checked byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// `len` bytes of the stream seeded with `seed` (see [`Expected`]).
    Stream { seed: u64, len: usize },
    /// A decimal number as incr and decr leave it: the digits, then spaces up to the stored
    /// length. memcached rewrites a shorter result in place, padded to the old length, unless the
    /// item is busy, so the length is only known to lie in `min_len..=max_len` until a read shows
    /// it.
    Number { n: u64, min_len: usize, max_len: usize },
}

impl Part {
    /// A number stored as its digits and nothing else.
    pub fn number(n: u64) -> Part {
        let len = decimal_digits(n);
        Part::Number {
            n,
            min_len: len,
            max_len: len,
        }
    }

    /// The length when it is known exactly.
    pub fn exact_len(&self) -> Option<usize> {
        match *self {
            Part::Stream { len, .. } => Some(len),
            Part::Number { min_len, max_len, .. } => (min_len == max_len).then_some(min_len),
        }
    }

    /// The longest this part may be.
    pub fn max_len(&self) -> usize {
        match *self {
            Part::Stream { len, .. } => len,
            Part::Number { max_len, .. } => max_len,
        }
    }

    /// Appends the bytes to send (a number is sent as its digits, padded to `min_len`).
    pub fn write(&self, out: &mut Vec<u8>) {
        match *self {
            Part::Stream { seed, len } => write_stream(seed, len, out),
            Part::Number { n, min_len, .. } => {
                let start = out.len();
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                let pad = min_len.saturating_sub(out.len() - start);
                out.resize(out.len() + pad, b' ');
            }
        }
    }
}

/// Checks `data` against a value made of `parts` (in order). Only a value that is a single
/// number may have an uncertain length; the length read back is returned so the caller can
/// record it.
pub fn check_parts(parts: &[Part], data: &[u8]) -> Result<usize, Mismatch> {
    if let [Part::Number { n, min_len, max_len }] = *parts {
        return check_number(n, min_len, max_len, data);
    }
    let want: usize = parts.iter().map(Part::max_len).sum();
    if want != data.len() {
        return Err(Mismatch::Length {
            expected: want,
            got: data.len(),
        });
    }
    let mut at = 0;
    for p in parts {
        let len = p.max_len();
        let got = &data[at..at + len];
        match *p {
            Part::Stream { seed, .. } => check_stream(seed, got, at)?,
            Part::Number { n, .. } => {
                check_number(n, len, len, got).map_err(|m| m.shifted(at))?;
            }
        }
        at += len;
    }
    Ok(data.len())
}

fn check_number(n: u64, min_len: usize, max_len: usize, data: &[u8]) -> Result<usize, Mismatch> {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n).as_bytes();
    let min = min_len.min(digits.len());
    let max = max_len.max(digits.len());
    if data.len() < min || data.len() > max {
        return Err(Mismatch::Length {
            expected: max,
            got: data.len(),
        });
    }
    let (head, pad) = data.split_at(digits.len().min(data.len()));
    if head != digits || pad.iter().any(|&b| b != b' ') {
        return Err(Mismatch::Number { expected: n });
    }
    Ok(data.len())
}

fn write_stream(seed: u64, len: usize, out: &mut Vec<u8>) {
    stream::write(seed, len, out);
}

/// Compares `data` with the start of the stream of `seed`; `base` is where `data` starts in the
/// whole value, for the error message.
fn check_stream(seed: u64, data: &[u8], base: usize) -> Result<(), Mismatch> {
    stream::check(seed, data, base)
}

/// The seed of a key's value: FNV-1a over the key, then mixed so close keys get unrelated seeds.
pub fn seed(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    splitmix(h)
}

/// A seed derived from two numbers (a key's seed and a write's nonce, say): unrelated inputs give
/// unrelated seeds.
pub fn derive_seed(a: u64, b: u64) -> u64 {
    splitmix(a ^ splitmix(b.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// A small, fast, seedable generator for picking keys and operations (splitmix64). Not for
/// anything that needs unpredictability.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.0)
    }

    /// Uniform in `0..n` (`n` > 0), by multiply-high: no division, negligible bias for the
    /// key-space sizes used here.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `p`, where `p` was turned into a threshold by [`Rng::threshold`].
    #[inline]
    pub fn chance(&mut self, threshold: u64) -> bool {
        self.next_u64() < threshold
    }

    /// The threshold for [`Rng::chance`] that gives probability `p` (clamped to 0..=1).
    pub fn threshold(p: f64) -> u64 {
        if p >= 1.0 {
            u64::MAX
        } else if p <= 0.0 {
            0
        } else {
            (p * u64::MAX as f64) as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_length_and_valid() {
        let ks = KeySpace::new("rb:", 12, 1000).unwrap();
        let mut buf = [0; MAX_KEY_LEN];
        assert_eq!(ks.key(7, &mut buf), b"rb:000000007");
        assert_eq!(ks.key(999, &mut buf), b"rb:000000999");
        assert_eq!(ks.key(1000, &mut buf), b"rb:000000000", "wraps");
        assert!(key_is_valid(ks.key(5, &mut buf)));
        assert_eq!(KeySpace::new("k", 0, 100).unwrap().key_len(), 3);
        assert!(KeySpace::new("rb:", 4, 1000).is_err());
        assert!(KeySpace::new("rb:", 251, 10).is_err());
        assert!(KeySpace::new("a b", 10, 10).is_err());
        assert!(KeySpace::new("k", 10, 0).is_err());
    }

    #[test]
    fn values_are_deterministic_and_checkable() {
        let spec = ValueSpec::fixed(100);
        let e = spec.expect(b"rb:000000001");
        assert_eq!(e, spec.expect(b"rb:000000001"));
        assert_eq!(e.len, 100);
        let mut v = Vec::new();
        e.write(&mut v);
        assert_eq!(v.len(), 100);
        assert!(v.iter().all(|b| ALPHABET.contains(b)));
        assert_eq!(e.check(Some(e.flags), &v), Ok(()));
        assert_eq!(e.check(None, &v), Ok(()));

        // Another key's value is caught.
        let other = spec.expect(b"rb:000000002");
        assert_ne!(e.seed, other.seed);
        let mut w = Vec::new();
        other.write(&mut w);
        assert!(e.check(None, &w).is_err());
    }

    #[test]
    fn every_kind_of_mismatch_is_reported() {
        let e = ValueSpec::fixed(20).expect(b"k");
        let mut v = Vec::new();
        e.write(&mut v);
        assert_eq!(e.check(None, &v[..19]), Err(Mismatch::Length { expected: 20, got: 19 }));
        assert_eq!(
            e.check(Some(e.flags ^ 1), &v),
            Err(Mismatch::Flags {
                expected: e.flags,
                got: e.flags ^ 1
            })
        );
        for i in [0, 7, 8, 19] {
            let mut bad = v.clone();
            bad[i] ^= 0x20;
            match e.check(None, &bad) {
                Err(Mismatch::Byte { offset, .. }) => assert_eq!(offset, i),
                r => panic!("byte {i}: {r:?}"),
            }
        }
        assert!(Mismatch::Byte {
            offset: 3,
            expected: b'a',
            got: b'b'
        }
        .to_string()
        .contains("byte 3"));
    }

    #[test]
    fn zero_length_and_ranges() {
        let e = ValueSpec::fixed(0).expect(b"k");
        let mut v = Vec::new();
        e.write(&mut v);
        assert!(v.is_empty());
        assert_eq!(e.check(None, b""), Ok(()));

        let spec: ValueSpec = "5..20k".parse().unwrap();
        assert_eq!(spec, ValueSpec { min: 5, max: 20 * 1024 });
        let mut seen = std::collections::HashSet::new();
        for i in 0..200u32 {
            let e = spec.expect(i.to_string().as_bytes());
            assert!((5..=20 * 1024).contains(&e.len));
            seen.insert(e.len);
        }
        assert!(seen.len() > 150, "lengths spread over the range");
        assert!("10..5".parse::<ValueSpec>().is_err());
        assert_eq!(parse_size("1m"), Ok(1 << 20));
        assert!(parse_size("x").is_err());
    }

    #[test]
    fn rng_ranges_and_chance() {
        let mut r = Rng::new(1);
        assert!((0..10_000).all(|_| r.below(7) < 7));
        let t = Rng::threshold(0.9);
        let hits = (0..100_000).filter(|_| r.chance(t)).count();
        assert!((89_000..91_000).contains(&hits), "{hits}");
        assert!((0..100).all(|_| r.chance(Rng::threshold(1.0))));
        assert!((0..100).all(|_| !r.chance(Rng::threshold(0.0))));
    }

    #[test]
    fn values_made_of_parts() {
        let a = Part::Stream { seed: 7, len: 10 };
        let b = Part::number(42);
        let mut v = Vec::new();
        b.write(&mut v);
        a.write(&mut v);
        assert_eq!(&v[..2], b"42");
        assert_eq!(check_parts(&[b, a], &v), Ok(12));
        assert_eq!(check_parts(&[a, b], &v).map_err(|_| ()), Err(()));
        let mut bad = v.clone();
        bad[5] ^= 1;
        assert!(matches!(
            check_parts(&[b, a], &bad),
            Err(Mismatch::Byte { offset: 5, .. })
        ));
        assert_eq!(check_parts(&[], b""), Ok(0));

        // An incr result padded in place to the old length, or not.
        let n = Part::Number {
            n: 9,
            min_len: 1,
            max_len: 3,
        };
        assert_eq!(check_parts(&[n], b"9"), Ok(1));
        assert_eq!(check_parts(&[n], b"9  "), Ok(3));
        assert!(check_parts(&[n], b"9   ").is_err());
        assert!(check_parts(&[n], b"8  ").is_err());
        assert!(check_parts(&[n], b"9 x").is_err());
        let mut padded = Vec::new();
        Part::Number {
            n: 5,
            min_len: 4,
            max_len: 4,
        }
        .write(&mut padded);
        assert_eq!(padded, b"5   ");
        assert_eq!(Part::number(0).exact_len(), Some(1));
        assert_ne!(derive_seed(1, 2), derive_seed(2, 1));
    }
}
