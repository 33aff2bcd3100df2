//! What the chunking layer writes into memcached: the index envelope, chunk keys and chunk
//! headers. Pure encoding, no I/O.
//!
//! # Index item (under the user's key)
//!
//! A 48-byte envelope, big-endian, then the value itself when it fits one chunk (inline), or
//! nothing when it is chunked:
//!
//! ```text
//!  0  u8   format (0xA1: version 1 of this layout)
//!  1  u8   bits: 1 = stale (md I / ms I), 2 = token sent (a client won the recache)
//!  2  u16  zone of the write
//!  4  u32  client flags
//!  8  u32  expiry, absolute unix seconds (0 = never)
//! 12  u32  total value length
//! 16  u32  chunk size (data bytes per chunk)
//! 20  u32  chunk count (0 = inline)
//! 24  u64  version (hybrid logical clock)
//! 32  u64  token: random, new for every value written; binds the chunks to this index
//! 40  u64  cas the client sees
//! ```
//!
//! The expiry is in the envelope because memcached's binary protocol never tells a TTL back, and
//! `mg t`, `ma` and the orchestrator's backfill need it. The client's CAS is in the envelope (not
//! memcached's CAS of the index item) because this layer rewrites the index to record a touch or
//! a recache win, and memcached gives every rewrite a new CAS where memcached's own touch keeps
//! it; with the CAS in the envelope, `gets` + `touch` + `cas` behaves as on memcached.
//!
//! # Chunk items (under derived keys)
//!
//! `~` + 16 hex digits of a stable hash of the user key + 16 of the token + 8 of the chunk number:
//! 41 bytes whatever the user key, so every full chunk item has the same size. A chunk's value is a
//! 12-byte header (token u64, chunk number u32) and `chunk size` data bytes; the last chunk holds
//! only the rest of the value. (Earlier builds padded the last chunk to full size with zeros;
//! such chunks still read.)
//!
//! A new value always gets a new token, so the chunks under a token are written once and never
//! change; a reader that finds every chunk under the index's token, each carrying that token and
//! its number, has read exactly one value.

use crate::model::Version;

/// Length of the index envelope.
pub const ENV_LEN: usize = 48;
/// Format byte of this layout.
pub const FORMAT_V1: u8 = 0xA1;
/// Envelope bit: the value was invalidated (`md I`, `ms I` with an old CAS).
pub const STALE: u8 = 1;
/// Envelope bit: a client has been handed the right to recache (`mg` W/Z).
pub const TOKEN_SENT: u8 = 2;

/// Length of a chunk key.
pub const CHUNK_KEY_LEN: usize = 41;
/// Length of the header at the start of every chunk's value.
pub const CHUNK_HEADER_LEN: usize = 12;

/// The decoded envelope of an index item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub bits: u8,
    pub flags: u32,
    /// Absolute unix seconds, 0 = never.
    pub expiry: u32,
    pub total_len: u32,
    pub chunk_size: u32,
    /// 0 when the value is inline.
    pub chunk_count: u32,
    /// The write's version (its zone in bytes 2..4, its clock in 24..32).
    pub version: Version,
    pub token: u64,
    pub cas: u64,
}

impl Envelope {
    pub fn is_chunked(&self) -> bool {
        self.chunk_count != 0
    }

    pub fn encode(&self) -> [u8; ENV_LEN] {
        let mut b = [0u8; ENV_LEN];
        b[0] = FORMAT_V1;
        b[1] = self.bits;
        b[2..4].copy_from_slice(&self.version.zone.to_be_bytes());
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.expiry.to_be_bytes());
        b[12..16].copy_from_slice(&self.total_len.to_be_bytes());
        b[16..20].copy_from_slice(&self.chunk_size.to_be_bytes());
        b[20..24].copy_from_slice(&self.chunk_count.to_be_bytes());
        b[24..32].copy_from_slice(&self.version.hlc.to_be_bytes());
        b[32..40].copy_from_slice(&self.token.to_be_bytes());
        b[40..48].copy_from_slice(&self.cas.to_be_bytes());
        b
    }

    /// Decodes an index item's value. None for anything that is not a consistent envelope of this
    /// format (an item some other client wrote, a chunk read as an index): such an item reads as
    /// a miss rather than as garbage.
    pub fn decode(item: &[u8]) -> Option<Envelope> {
        let b: &[u8; ENV_LEN] = item.get(..ENV_LEN)?.try_into().ok()?;
        if b[0] != FORMAT_V1 {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        let env = Envelope {
            bits: b[1],
            flags: u32_at(4),
            expiry: u32_at(8),
            total_len: u32_at(12),
            chunk_size: u32_at(16),
            chunk_count: u32_at(20),
            version: Version {
                hlc: u64_at(24),
                zone: u16::from_be_bytes([b[2], b[3]]),
            },
            token: u64_at(32),
            cas: u64_at(40),
        };
        let rest = item.len() - ENV_LEN;
        let consistent = if env.is_chunked() {
            rest == 0
                && env.chunk_size != 0
                && u64::from(env.chunk_count) == u64::from(env.total_len).div_ceil(u64::from(env.chunk_size))
        } else {
            rest == env.total_len as usize
        };
        consistent.then_some(env)
    }

    /// Bytes of value data chunk `n` holds (the last one may hold fewer than `chunk_size`).
    pub fn chunk_data_len(&self, n: u32) -> usize {
        let start = u64::from(n) * u64::from(self.chunk_size);
        (u64::from(self.total_len).saturating_sub(start)).min(u64::from(self.chunk_size)) as usize
    }
}

/// A stable 64-bit hash of a user key (FNV-1a, then a 64-bit finalizer to spread FNV's weak low
/// bits). It must never change between builds or nodes: it is part of the chunk keys of values
/// already in memcached. It needs no strength: chunk keys are unique by the random token, and
/// the hash only groups a key's chunks for an operator reading a key dump.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn put_hex(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = out.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (4 * (n - 1 - i))) & 0xf) as usize];
    }
}

/// The keys of one value's chunks: everything but the chunk number is computed once.
#[derive(Clone, Copy)]
pub struct ChunkKeys {
    prefix: [u8; CHUNK_KEY_LEN],
}

impl ChunkKeys {
    pub fn new(user_key: &[u8], token: u64) -> ChunkKeys {
        let mut prefix = [0u8; CHUNK_KEY_LEN];
        prefix[0] = b'~';
        put_hex(&mut prefix[1..17], key_hash(user_key));
        put_hex(&mut prefix[17..33], token);
        ChunkKeys { prefix }
    }

    pub fn key(&self, n: u32) -> [u8; CHUNK_KEY_LEN] {
        let mut k = self.prefix;
        put_hex(&mut k[33..], u64::from(n));
        k
    }
}

/// The header that starts chunk `n` of the value with `token`.
pub fn chunk_header(token: u64, n: u32) -> [u8; CHUNK_HEADER_LEN] {
    let mut h = [0u8; CHUNK_HEADER_LEN];
    h[..8].copy_from_slice(&token.to_be_bytes());
    h[8..].copy_from_slice(&n.to_be_bytes());
    h
}

/// The data of chunk `n` as read from memcached, if it is that chunk of that value: the right
/// token and number, and that chunk's length (or the full chunk size: a padded last chunk).
pub fn check_chunk<'a>(item: &'a [u8], env: &Envelope, n: u32) -> Option<&'a [u8]> {
    let data_len = env.chunk_data_len(n);
    let len_ok = item.len() == CHUNK_HEADER_LEN + data_len || item.len() == CHUNK_HEADER_LEN + env.chunk_size as usize;
    if !len_ok || item[..CHUNK_HEADER_LEN] != chunk_header(env.token, n) {
        return None;
    }
    Some(&item[CHUNK_HEADER_LEN..CHUNK_HEADER_LEN + data_len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(chunk_count: u32, total_len: u32) -> Envelope {
        Envelope {
            bits: STALE,
            flags: 0xdead_beef,
            expiry: 1_900_000_000,
            total_len,
            chunk_size: 100,
            chunk_count,
            version: Version {
                hlc: 0x0102_0304_0506_0708,
                zone: 3,
            },
            token: 0x1112_1314_1516_1718,
            cas: 42,
        }
    }

    #[test]
    fn envelope_round_trip_and_layout() {
        let env = sample(3, 250);
        let b = env.encode();
        assert_eq!(b[0], FORMAT_V1);
        assert_eq!(&b[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&b[32..40], &[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        assert_eq!(Envelope::decode(&b), Some(env));

        let inline = sample(0, 5);
        let mut item = inline.encode().to_vec();
        item.extend_from_slice(b"hello");
        assert_eq!(Envelope::decode(&item), Some(inline));
    }

    #[test]
    fn decode_rejects_what_is_not_an_envelope() {
        assert_eq!(Envelope::decode(b""), None);
        assert_eq!(
            Envelope::decode(b"hello world, not an envelope at all, nor is this one"),
            None
        );
        // Inline length disagrees with the bytes present.
        let mut item = sample(0, 5).encode().to_vec();
        item.extend_from_slice(b"hell");
        assert_eq!(Envelope::decode(&item), None);
        // Chunk count disagrees with total / chunk size, or bytes after a chunked envelope.
        assert_eq!(Envelope::decode(&sample(2, 250).encode()), None);
        let mut item = sample(3, 250).encode().to_vec();
        item.push(0);
        assert_eq!(Envelope::decode(&item), None);
        let zero_size = Envelope {
            chunk_size: 0,
            ..sample(3, 250)
        };
        assert_eq!(Envelope::decode(&zero_size.encode()), None);
        // A chunk read as an index: its first byte is a token byte, not the format.
        let mut chunk = chunk_header(0x5500_0000_0000_0000, 0).to_vec();
        chunk.resize(100, 0);
        assert_eq!(Envelope::decode(&chunk), None);
    }

    #[test]
    fn chunk_keys_are_fixed_length_and_distinct() {
        let long = [b'k'; 250];
        let a = ChunkKeys::new(&long, 1);
        let b = ChunkKeys::new(b"k", 1);
        let c = ChunkKeys::new(b"k", 2);
        assert_eq!(a.key(0).len(), CHUNK_KEY_LEN);
        assert_ne!(a.key(0), b.key(0));
        assert_ne!(b.key(0), c.key(0));
        assert_ne!(b.key(0), b.key(1));
        let expected = format!("~{:016x}{:016x}{:08x}", key_hash(b"k"), 2, 0x1f);
        assert_eq!(&c.key(0x1f)[..], expected.as_bytes());
        assert!(crate::model::item_size_ok(1 << 20, CHUNK_KEY_LEN, 0, 0));
        assert!(riven_memcache::key_is_valid(&a.key(u32::MAX)));
    }

    #[test]
    fn key_hash_is_stable() {
        // Pinned: chunk keys of values already in memcached depend on it.
        assert_eq!(key_hash(b""), key_hash(b""));
        assert_eq!(format!("{:016x}", key_hash(b"k")), "2ba437a975bf0065");
    }

    #[test]
    fn chunks_are_checked() {
        let env = sample(3, 250);
        let mut item = chunk_header(env.token, 2).to_vec();
        item.extend_from_slice(&[7u8; 50]);
        item.resize(CHUNK_HEADER_LEN + 100, 0);
        assert_eq!(check_chunk(&item, &env, 2), Some(&[7u8; 50][..]));
        assert_eq!(check_chunk(&item, &env, 1), None);
        let other = Envelope { token: 9, ..env };
        assert_eq!(check_chunk(&item, &other, 2), None);
        assert_eq!(check_chunk(&item[..item.len() - 1], &env, 2), None);
        assert_eq!(env.chunk_data_len(0), 100);
        assert_eq!(env.chunk_data_len(2), 50);
        assert_eq!(env.chunk_data_len(3), 0);
    }
}
