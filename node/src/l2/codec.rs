//! Binary layout of the two record kinds the L2 keeps on disk.
//!
//! Both start with a format byte so the layout can change later without a migration: a reader that
//! meets a format it does not know treats the record as absent (a cache miss is always a legal
//! answer), and the compaction filter keeps it rather than guess. All integers are little-endian
//! and fixed-width: decoding is a handful of loads, and the few bytes varints would save are
//! nothing next to a value.
//!
//! * **log record** (value of the `log` keyspace, under an 8-byte big-endian sequence number):
//!   everything about one write except its expiry, which lives in the index so that `touch`
//!   rewrites 17 bytes instead of the value.
//!
//!   ```text
//!   0      u8   format = 1
//!   1..5   u32  client flags
//!   5..13  u64  CAS
//!   13..21 u64  version: hybrid logical clock
//!   21..23 u16  version: zone id
//!   23..25 u16  key length (k)
//!   25..   k    key (checked on read, see `L2Store::get`)
//!   ..          value (the rest)
//!   ```
//!
//! * **index record** (value of the `index` keyspace, under the user's key):
//!
//!   ```text
//!   0      u8   format = 1
//!   1..9   u64  sequence number of the log record
//!   9..17  u64  absolute expiry, unix seconds, 0 = never
//!   ```

use crate::model::Version;

/// Format byte of the records this code writes.
pub const FORMAT_V1: u8 = 1;

/// Bytes a log record adds to key + value.
pub const LOG_HEADER_LEN: usize = 25;

/// Length of an index record.
pub const INDEX_LEN: usize = 17;

/// The key under which a log record is stored: big-endian, so the keyspace's byte order is the
/// write order, which is what keeps every flushed table of the log disjoint from the older ones
/// (the FIFO strategy requires it).
pub fn log_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Inverse of [`log_key`]; `None` for a key of another length.
pub fn seq_of_log_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Fields of a log record other than the key and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogMeta {
    pub flags: u32,
    pub cas: u64,
    pub version: Version,
}

/// Encodes a log record. The caller has checked that `key.len()` fits in a u16.
pub fn encode_log(key: &[u8], value: &[u8], meta: &LogMeta) -> Vec<u8> {
    debug_assert!(key.len() <= u16::MAX as usize);
    let mut out = Vec::with_capacity(LOG_HEADER_LEN + key.len() + value.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&meta.flags.to_le_bytes());
    out.extend_from_slice(&meta.cas.to_le_bytes());
    out.extend_from_slice(&meta.version.hlc.to_le_bytes());
    out.extend_from_slice(&meta.version.zone.to_le_bytes());
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// A decoded log record, borrowing key and value from the stored bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub meta: LogMeta,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Decodes a log record; `None` if it is truncated or of an unknown format.
pub fn decode_log(raw: &[u8]) -> Option<LogRecord<'_>> {
    let (&format, rest) = raw.split_first()?;
    if format != FORMAT_V1 || raw.len() < LOG_HEADER_LEN {
        return None;
    }
    let flags = u32::from_le_bytes(rest[0..4].try_into().ok()?);
    let cas = u64::from_le_bytes(rest[4..12].try_into().ok()?);
    let hlc = u64::from_le_bytes(rest[12..20].try_into().ok()?);
    let zone = u16::from_le_bytes(rest[20..22].try_into().ok()?);
    let key_len = u16::from_le_bytes(rest[22..24].try_into().ok()?) as usize;
    let body = &raw[LOG_HEADER_LEN..];
    if body.len() < key_len {
        return None;
    }
    let (key, value) = body.split_at(key_len);
    Some(LogRecord {
        meta: LogMeta {
            flags,
            cas,
            version: Version { hlc, zone },
        },
        key,
        value,
    })
}

/// A decoded index record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexRecord {
    pub seq: u64,
    pub expiry: u64,
}

pub fn encode_index(rec: &IndexRecord) -> [u8; INDEX_LEN] {
    let mut out = [0u8; INDEX_LEN];
    out[0] = FORMAT_V1;
    out[1..9].copy_from_slice(&rec.seq.to_le_bytes());
    out[9..17].copy_from_slice(&rec.expiry.to_le_bytes());
    out
}

/// Decodes an index record; `None` if it is not exactly a known format.
pub fn decode_index(raw: &[u8]) -> Option<IndexRecord> {
    if raw.len() != INDEX_LEN || raw[0] != FORMAT_V1 {
        return None;
    }
    Some(IndexRecord {
        seq: u64::from_le_bytes(raw[1..9].try_into().ok()?),
        expiry: u64::from_le_bytes(raw[9..17].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_record_round_trips_every_field() {
        let meta = LogMeta {
            flags: u32::MAX,
            cas: u64::MAX - 1,
            version: Version {
                hlc: 0x0123_4567_89ab_cdef,
                zone: u16::MAX,
            },
        };
        for (key, value) in [(&b"k"[..], &b""[..]), (b"some:key", b"value\r\nwith\0bytes")] {
            let raw = encode_log(key, value, &meta);
            assert_eq!(raw.len(), LOG_HEADER_LEN + key.len() + value.len());
            let rec = decode_log(&raw).unwrap();
            assert_eq!(rec, LogRecord { meta, key, value });
        }
    }

    #[test]
    fn index_record_round_trips() {
        for rec in [
            IndexRecord { seq: 0, expiry: 0 },
            IndexRecord {
                seq: u64::MAX,
                expiry: u64::MAX,
            },
            IndexRecord {
                seq: 42,
                expiry: 1_700_000_000,
            },
        ] {
            assert_eq!(decode_index(&encode_index(&rec)), Some(rec));
        }
    }

    #[test]
    fn log_keys_sort_in_write_order() {
        let keys: Vec<_> = [0u64, 1, 255, 256, 1 << 40, u64::MAX]
            .iter()
            .map(|&s| log_key(s))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seq_of_log_key(&log_key(77)), Some(77));
        assert_eq!(seq_of_log_key(b"short"), None);
    }

    #[test]
    fn garbage_and_unknown_formats_decode_as_absent() {
        let meta = LogMeta {
            flags: 1,
            cas: 2,
            version: Version { hlc: 3, zone: 4 },
        };
        let good = encode_log(b"key", b"value", &meta);
        // Every truncation that cuts into the header or the key is rejected, never a panic.
        for len in 0..LOG_HEADER_LEN + 3 {
            assert_eq!(decode_log(&good[..len]), None, "len {len}");
        }
        let mut future = good.clone();
        future[0] = 2;
        assert_eq!(decode_log(&future), None);

        let idx = encode_index(&IndexRecord { seq: 1, expiry: 2 });
        for len in 0..INDEX_LEN {
            assert_eq!(decode_index(&idx[..len]), None);
        }
        let mut longer = idx.to_vec();
        longer.push(0);
        assert_eq!(decode_index(&longer), None);
        let mut future = idx;
        future[0] = 9;
        assert_eq!(decode_index(&future), None);

        // Arbitrary bytes never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_log(&bytes);
            let _ = decode_index(&bytes);
        }
    }
}
