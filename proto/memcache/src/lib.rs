//! Riven's memcached codec: the classic text protocol, the meta commands and the binary protocol.
//!
//! Every protocol has both sides: servers parse requests and compose replies; clients compose
//! requests and parse replies. The node's front end, the node's link to memcached and the Rust
//! client all use this one codec. Parsers are incremental (they report `Incomplete` instead of
//! blocking) and borrow keys and values from the caller's buffer instead of copying them.

pub mod binary;
pub mod meta;
pub mod plan;
pub mod slab;
pub mod text;

/// memcached's boundary between relative and absolute exptimes: one up to this many seconds (30
/// days) counts from now, a larger one is a unix time (`REALTIME_MAXDELTA` in memcached.c).
pub const REALTIME_MAXDELTA: u32 = 60 * 60 * 24 * 30;

/// A unix time as an exptime memcached reads as one: a time at or below the 30-day line (long
/// past) is lifted just above it, still past, so the item expires at once; later times are
/// capped at what 32 bits hold. (0 is not special here: callers that mean "never" send 0
/// themselves.)
pub fn absolute_exptime(unix: u64) -> u32 {
    unix.clamp(u64::from(REALTIME_MAXDELTA) + 1, u64::from(u32::MAX)) as u32
}

/// memcached's key length limit.
pub const MAX_KEY_LEN: usize = 250;

/// Whether an item fits under memcached's `-I` limit: memcached counts its item header (48),
/// the CAS (8), the key's NUL, the data's `\r\n`, and 4 bytes when client flags are set. Every
/// front end, the store and the planner use this one rule, so the largest accepted value is memcached's for
/// the same `-I`, to the byte.
pub fn item_size_ok(item_size_max: usize, key_len: usize, flags: u32, value_len: usize) -> bool {
    let overhead = 48 + 8 + 1 + 2 + if flags != 0 { 4 } else { 0 };
    key_len + value_len + overhead <= item_size_max
}

/// Whether `key` is a valid memcached text-protocol key: 1 to 250 bytes, none of them a control
/// character or a space.
#[inline]
pub fn key_is_valid(key: &[u8]) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.iter().all(|&b| b > b' ' && b != 0x7f)
}

/// Finds the end of the first line of `buf`: `(line_end, next)` where `buf[..line_end]` is the
/// line without its `\r\n` (or bare `\n`) and `next` is the index after the `\n`.
#[inline]
pub fn find_line(buf: &[u8]) -> Option<(usize, usize)> {
    let nl = memchr_nl(buf)?;
    let end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    Some((end, nl + 1))
}

#[inline]
fn memchr_nl(buf: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(key_is_valid(b"a"));
        assert!(key_is_valid(&[b'k'; 250]));
        assert!(!key_is_valid(&[b'k'; 251]));
        assert!(!key_is_valid(b""));
        assert!(!key_is_valid(b"a b"));
        assert!(!key_is_valid(b"a\x01"));
    }

    #[test]
    fn lines() {
        assert_eq!(find_line(b"get a\r\nrest"), Some((5, 7)));
        assert_eq!(find_line(b"get a\nrest"), Some((5, 6)));
        assert_eq!(find_line(b"get a"), None);
        assert_eq!(find_line(b"\r\n"), Some((0, 2)));
    }
}
