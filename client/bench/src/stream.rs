//! A value's bytes (the stream its key's seed stands for), generated, compared and digested a
//! word at a time, and the cache of digests that lets `load` check a large hit without
//! regenerating it.
//!
//! Chunk `i` of the stream of `seed` is the splitmix64 finaliser of `seed + (i + 1) * GAMMA`,
//! each byte's low six bits mapped onto [`ALPHABET`]. Every chunk is a function of its index, so
//! the stream can be made and compared eight bytes at a time with no state carried between
//! chunks but a counter, and without a per-byte table lookup (see [`map_word`]).
//!
//! Generating a value costs far more than reading it: on a load of large values, a tool that
//! regenerates every hit to compare it spends more on that than the server spends answering.
//! [`DigestCache::check`] instead hashes the bytes read (a pass at memory speed) and compares the
//! hash with the one of the expected value, which is computed once per key and value length
//! and then shared by every connection. Every byte of every hit still counts: a change of any
//! one word always changes the digest (each lane's step is a bijection of its state), and any
//! other change escapes it only by a 64-bit collision. When the digests differ, the value is
//! compared byte by byte, so the error names the first wrong byte as a full check would.

use std::sync::atomic::{AtomicU64, Ordering};

use super::value::{Expected, Mismatch};

/// The characters values are made of.
pub const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The splitmix64 finaliser: a cheap bijective mix of 64 bits.
#[inline]
pub fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps each byte of `z` onto `ALPHABET[byte & 63]`, all eight at once. With `b` the six bits,
/// the character is `b + 65` below 26, `b + 71` below 52, `b - 4` below 62, then `'-'` and `'_'`:
/// an offset built from one mask per range boundary. No step takes a byte out of 0..=255, so
/// plain 64-bit adds and subtracts never carry from one byte into the next.
#[inline(always)]
fn map_word(z: u64) -> u64 {
    let b = z & (0x3f * ONES);
    // 0xff in each byte whose six bits are at least `n` (the sum stays under 0x100).
    let at_least = |n: u64| {
        let bit = ((b + (0x80 - n) * ONES) >> 7) & ONES;
        (bit << 8).wrapping_sub(bit)
    };
    let mut r = b + 65 * ONES;
    r += at_least(26) & (6 * ONES);
    r -= at_least(52) & (75 * ONES);
    r -= at_least(62) & (13 * ONES);
    r + (at_least(63) & (49 * ONES))
}

/// Chunk `i` of the stream of `seed`, as a little-endian word.
#[inline(always)]
fn chunk(seed: u64, i: usize) -> u64 {
    map_word(splitmix(seed.wrapping_add(GAMMA.wrapping_mul(i as u64 + 1))))
}

/// Defines `$name` as `$generic` compiled three times: for AVX-512, for AVX2 and for the
/// baseline, picking the widest the CPU has at each call (the detection is cached by std). The
/// loops here are written so the compiler vectorises them, and with 64-bit multiplies in
/// vector registers (AVX-512DQ) they run several times faster than on the baseline's SSE2,
/// which has none.
macro_rules! widest {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $generic:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx512bw")]
                fn avx512($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    $generic($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                {
                    // SAFETY: the CPU has every feature `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $generic($($arg),*)
        }
    };
}

/// Appends `len` bytes of the stream of `seed` to `out`.
pub fn write(seed: u64, len: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + len, 0);
    fill(seed, &mut out[start..]);
}

widest! {
    /// Fills `dst` with the start of the stream of `seed`.
    fn fill(seed: u64, dst: &mut [u8]) -> () = fill_generic
}

#[inline(always)]
fn fill_generic(seed: u64, dst: &mut [u8]) {
    let len = dst.len();
    let mut words = dst.chunks_exact_mut(8);
    for (i, w) in (&mut words).enumerate() {
        w.copy_from_slice(&chunk(seed, i).to_le_bytes());
    }
    let tail = words.into_remainder();
    let n = tail.len();
    tail.copy_from_slice(&chunk(seed, len / 8).to_le_bytes()[..n]);
}

/// Words compared before looking for a difference: the loop over a block has no early exit,
/// so it vectorises.
const CHECK_BLOCK: usize = 64;

/// Compares `data` with the start of the stream of `seed`; `base` is where `data` starts in the
/// whole value, for the error message.
pub fn check(seed: u64, data: &[u8], base: usize) -> Result<(), Mismatch> {
    match first_wrong_block(seed, data) {
        None => Ok(()),
        // Not finding the difference again would be a bug here; the bytes then count as right
        // rather than as a server's error.
        Some(block) => check_scalar(seed, data, block * CHECK_BLOCK, base).map_or(Ok(()), Err),
    }
}

widest! {
    /// The first block of [`CHECK_BLOCK`] words (the last one may be shorter) that differs from
    /// the stream.
    fn first_wrong_block(seed: u64, data: &[u8]) -> Option<usize> = first_wrong_block_generic
}

#[inline(always)]
fn first_wrong_block_generic(seed: u64, data: &[u8]) -> Option<usize> {
    for (b, block) in data.chunks(8 * CHECK_BLOCK).enumerate() {
        let first = b * CHECK_BLOCK;
        let mut words = block.chunks_exact(8);
        let mut diff = 0;
        for (j, w) in (&mut words).enumerate() {
            diff |= u64::from_le_bytes(w.try_into().expect("chunks of 8")) ^ chunk(seed, first + j);
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut w = chunk(seed, first + block.len() / 8).to_le_bytes();
            w[..tail.len()].copy_from_slice(tail);
            diff |= u64::from_le_bytes(w) ^ chunk(seed, first + block.len() / 8);
        }
        if diff != 0 {
            return Some(b);
        }
    }
    None
}

/// The first difference from word `from` on.
fn check_scalar(seed: u64, data: &[u8], from: usize, base: usize) -> Option<Mismatch> {
    for (i, w) in data.chunks(8).enumerate().skip(from) {
        let want = chunk(seed, i).to_le_bytes();
        if w != &want[..w.len()] {
            return Some(first_difference(base + i * 8, &want, w));
        }
    }
    None
}

fn first_difference(at: usize, want: &[u8], got: &[u8]) -> Mismatch {
    let j = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
    Mismatch::Byte {
        offset: at + j,
        expected: want[j],
        got: got[j],
    }
}

/// Independent accumulators: a digest step waits for a multiply, so one chain would leave the
/// multiplier idle most of the time.
const LANES: usize = 8;

/// A 64-bit digest of a byte string, fed a little-endian word at a time (the last word
/// zero-padded). Each step `a = rotl((a ^ w) * K, 29)` is a bijection of the lane's state for a
/// given word, so two strings that differ in one word always differ in that lane, and so in the
/// result; the rotation carries the high bits of a product back into the low ones.
struct Digest {
    lanes: [u64; LANES],
}

impl Digest {
    const K: u64 = 0xff51_afd7_ed55_8ccd;

    fn new() -> Digest {
        let mut lanes = [0; LANES];
        for (i, l) in lanes.iter_mut().enumerate() {
            *l = splitmix(i as u64 + 1);
        }
        Digest { lanes }
    }

    #[inline(always)]
    fn step(lane: &mut u64, w: u64) {
        *lane = (*lane ^ w).wrapping_mul(Self::K).rotate_left(29);
    }

    #[inline(always)]
    fn block(&mut self, words: [u64; LANES]) {
        for (l, w) in self.lanes.iter_mut().zip(words) {
            Self::step(l, w);
        }
    }

    /// Feeds the last words (fewer than a block: `words[i]` goes to lane `i`) and the length.
    fn finish(mut self, words: &[u64], len: usize) -> u64 {
        for (l, &w) in self.lanes.iter_mut().zip(words) {
            Self::step(l, w);
        }
        let mut h = splitmix(len as u64);
        for l in self.lanes {
            h = splitmix(h ^ l);
        }
        h
    }
}

widest! {
    /// The digest of `data`.
    pub fn digest(data: &[u8]) -> u64 = digest_generic
}

#[inline(always)]
fn digest_generic(data: &[u8]) -> u64 {
    let mut d = Digest::new();
    let mut blocks = data.chunks_exact(8 * LANES);
    for b in &mut blocks {
        let mut words = [0u64; LANES];
        for (w, bytes) in words.iter_mut().zip(b.chunks_exact(8)) {
            *w = u64::from_le_bytes(bytes.try_into().expect("chunks of 8"));
        }
        d.block(words);
    }
    let rest = blocks.remainder();
    let mut words = [0u64; LANES];
    let mut n = 0;
    for bytes in rest.chunks(8) {
        let mut w = [0u8; 8];
        w[..bytes.len()].copy_from_slice(bytes);
        words[n] = u64::from_le_bytes(w);
        n += 1;
    }
    d.finish(&words[..n], data.len())
}

widest! {
    /// The digest of the first `len` bytes of the stream of `seed`, without writing them anywhere.
    pub fn stream_digest(seed: u64, len: usize) -> u64 = stream_digest_generic
}

#[inline(always)]
fn stream_digest_generic(seed: u64, len: usize) -> u64 {
    let mut d = Digest::new();
    let full = len / (8 * LANES);
    for b in 0..full {
        let mut words = [0u64; LANES];
        for (j, w) in words.iter_mut().enumerate() {
            *w = chunk(seed, b * LANES + j);
        }
        d.block(words);
    }
    let mut words = [0u64; LANES];
    let rest = len - full * 8 * LANES;
    let n = rest.div_ceil(8);
    for (j, w) in words[..n].iter_mut().enumerate() {
        *w = chunk(seed, full * LANES + j);
    }
    if !rest.is_multiple_of(8) {
        // The last word keeps only the bytes the value has, as `digest` reads them.
        words[n - 1] &= u64::MAX >> (8 * (8 - rest % 8));
    }
    d.finish(&words[..n], len)
}

/// Values shorter than this are compared byte for byte: regenerating them costs about what
/// hashing them does, and the cache would only add a lookup.
pub const DIGEST_MIN_LEN: usize = 1024;

/// The digests of expected values, by seed and length, shared by a run's connections. Direct
/// mapped: a slot holds the last value that hashed to it, and a value whose slot holds another
/// is simply digested again. Lock-free: a slot is two words, the digest and the digest xor the
/// value's tag, so a reader that catches a slot half rewritten sees a tag that matches neither
/// value and treats it as empty.
pub struct DigestCache {
    slots: Box<[[AtomicU64; 2]]>,
}

impl DigestCache {
    /// A cache of at least `slots` slots (rounded up to a power of two).
    pub fn new(slots: usize) -> DigestCache {
        let n = slots.max(1).next_power_of_two();
        DigestCache {
            slots: (0..n).map(|_| [AtomicU64::new(0), AtomicU64::new(0)]).collect(),
        }
    }

    /// Never 0, which an empty slot reads as.
    fn tag(seed: u64, len: usize) -> u64 {
        splitmix(seed ^ splitmix(len as u64)) | 1
    }

    fn slot(&self, tag: u64) -> &[AtomicU64; 2] {
        &self.slots[(tag >> 1) as usize & (self.slots.len() - 1)]
    }

    /// The digest of the value of `seed` and `len`, from the cache or computed and stored.
    pub fn expected(&self, seed: u64, len: usize) -> u64 {
        let tag = Self::tag(seed, len);
        let slot = self.slot(tag);
        let sum = slot[0].load(Ordering::Relaxed);
        if slot[1].load(Ordering::Relaxed) ^ sum == tag {
            return sum;
        }
        let sum = stream_digest(seed, len);
        slot[0].store(sum, Ordering::Relaxed);
        slot[1].store(sum ^ tag, Ordering::Relaxed);
        sum
    }

    /// Checks a value read back as [`Expected::check`] does, every byte through its digest for
    /// long values; the same errors.
    pub fn check(&self, e: &Expected, flags: Option<u32>, data: &[u8]) -> Result<(), Mismatch> {
        if data.len() < DIGEST_MIN_LEN || data.len() != e.len {
            return e.check(flags, data);
        }
        if let Some(f) = flags {
            if f != e.flags {
                return Err(Mismatch::Flags {
                    expected: e.flags,
                    got: f,
                });
            }
        }
        if digest(data) == self.expected(e.seed(), e.len) {
            return Ok(());
        }
        // Find the byte; a digest that differs for equal bytes would be a bug here, and then the
        // full comparison is the one to believe.
        e.check(flags, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ValueSpec;

    #[test]
    fn words_map_like_the_alphabet() {
        for b in 0..=255u8 {
            let z = u64::from(b) * ONES;
            assert_eq!(map_word(z), u64::from(ALPHABET[usize::from(b & 63)]) * ONES, "{b}");
        }
        let z = 0x0123_4567_89ab_cdef_u64;
        let want = u64::from_le_bytes(z.to_le_bytes().map(|b| ALPHABET[usize::from(b & 63)]));
        assert_eq!(map_word(z), want);
    }

    #[test]
    fn streams_are_checked_and_digested_alike_at_every_length() {
        for len in (0..200).chain([1023, 1024, 1025, 4096 + 13, 100 * 1024]) {
            let mut v = vec![b'x'; 3];
            write(42, len, &mut v);
            let v = &v[3..];
            assert_eq!(v.len(), len);
            assert_eq!(check(42, v, 0), Ok(()), "{len}");
            assert_eq!(digest(v), stream_digest(42, len), "{len}");
            if len > 0 {
                let mut bad = v.to_vec();
                bad[len / 2] ^= 0x40;
                assert!(matches!(check(42, &bad, 0), Err(Mismatch::Byte { offset, .. }) if offset == len / 2));
                assert_ne!(digest(&bad), digest(v), "{len}");
                assert_ne!(stream_digest(42, len), stream_digest(43, len), "{len}");
            }
        }
    }

    #[test]
    fn every_build_of_the_loops_agrees() {
        // The dispatching functions run the widest build this CPU has; the baseline's must give
        // the same bytes, digests and verdicts.
        for len in [0, 7, 8, 511, 512, 513, 4100, 100 * 1024] {
            let mut wide = vec![0; len];
            fill(9, &mut wide);
            let mut base = vec![0; len];
            fill_generic(9, &mut base);
            assert_eq!(wide, base, "{len}");
            assert_eq!(digest(&wide), digest_generic(&base), "{len}");
            assert_eq!(stream_digest(9, len), stream_digest_generic(9, len), "{len}");
            assert_eq!(first_wrong_block_generic(9, &base), None, "{len}");
            if len > 0 {
                base[len - 1] ^= 2;
                let block = (len - 1) / (8 * CHECK_BLOCK);
                assert_eq!(first_wrong_block(9, &base), Some(block), "{len}");
                assert_eq!(first_wrong_block_generic(9, &base), Some(block), "{len}");
            }
        }
    }

    /// Corruptions a server could plausibly make of a large value, every one caught, with the
    /// first wrong byte named.
    #[test]
    fn corrupted_large_values_are_caught() {
        let spec = ValueSpec::fixed(100 * 1024);
        let e = spec.expect(b"rb:0042");
        let mut good = Vec::new();
        e.write(&mut good);
        let cache = DigestCache::new(16);
        assert_eq!(cache.check(&e, Some(e.flags), &good), Ok(()));
        assert_eq!(cache.check(&e, Some(e.flags), &good), Ok(()), "from the cache");

        let mut other = Vec::new();
        spec.expect(b"rb:0043").write(&mut other);
        let mut cases: Vec<(Vec<u8>, usize)> = vec![(other, 0)];
        for at in [0, 1, 4095, 4096, 51_200, 100 * 1024 - 1] {
            for flip in [0x01, 0x20, 0x80] {
                let mut v = good.clone();
                v[at] ^= flip;
                cases.push((v, at));
            }
        }
        // Two 4 KiB pages swapped, a page zeroed, a page repeated.
        let mut swapped = good.clone();
        let (a, b) = swapped.split_at_mut(8192);
        a[4096..].swap_with_slice(&mut b[..4096]);
        cases.push((swapped, 4096));
        let mut zeroed = good.clone();
        zeroed[65_536..69_632].fill(0);
        cases.push((zeroed, 65_536));
        let mut repeated = good.clone();
        repeated.copy_within(0..4096, 4096);
        cases.push((repeated, 4096));
        for (i, (v, at)) in cases.iter().enumerate() {
            match cache.check(&e, Some(e.flags), v) {
                Err(Mismatch::Byte { offset, .. }) => {
                    assert!(offset >= *at && offset < at + 4096, "case {i}: {offset}")
                }
                r => panic!("case {i}: {r:?}"),
            }
        }
        assert!(matches!(
            cache.check(&e, Some(e.flags), &good[1..]),
            Err(Mismatch::Length { .. })
        ));
        assert!(matches!(
            cache.check(&e, Some(e.flags ^ 1), &good),
            Err(Mismatch::Flags { .. })
        ));
    }

    /// `cargo test --release -p riven-bench --lib stream::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing, not a test"]
    fn speed() {
        let len = 100 * 1024;
        let mut v = Vec::with_capacity(len);
        let time = |what: &str, f: &mut dyn FnMut() -> u64| {
            let t = std::time::Instant::now();
            let mut x = 0;
            for _ in 0..2000 {
                x ^= std::hint::black_box(f());
            }
            eprintln!(
                "{what}: {:.1} µs per 100 KiB ({x})",
                t.elapsed().as_secs_f64() / 2000.0 * 1e6
            );
        };
        time("write", &mut || {
            v.clear();
            write(7, len, &mut v);
            v[len / 2].into()
        });
        let data = v.clone();
        time("check", &mut || check(7, &data, 0).is_ok().into());
        time("digest", &mut || digest(&data));
        time("stream_digest", &mut || stream_digest(7, len));
    }

    #[test]
    fn a_slot_holds_one_value_at_a_time() {
        // One slot: every value evicts the previous one, and each is still right.
        let cache = DigestCache::new(1);
        for seed in 0..20 {
            for len in [2000, 3000] {
                assert_eq!(cache.expected(seed, len), stream_digest(seed, len));
            }
        }
        // A slot half rewritten (digest of one value, tag of another) reads as empty.
        let tag = DigestCache::tag(5, 2000);
        let slot = cache.slot(tag);
        slot[0].store(stream_digest(6, 2000), Ordering::Relaxed);
        slot[1].store(stream_digest(5, 2000) ^ tag, Ordering::Relaxed);
        assert_eq!(cache.expected(5, 2000), stream_digest(5, 2000));
    }
}
