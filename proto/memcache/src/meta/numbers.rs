//! Numbers as memcached's meta parser reads them: C's `strtol`/`strtoull` with its `safe_`
//! checks.

/// C's `isspace` in the C locale.
#[inline]
pub(super) fn c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits a token as `strtol`/`strtoull` read it: whitespace, sign, digits; None when there are
/// no digits or what follows them does not start with whitespace (memcached's `safe_` checks).
pub(super) fn c_number(t: &[u8]) -> Option<(bool, &[u8])> {
    let start = t.iter().position(|&c| !c_space(c)).unwrap_or(t.len());
    let t = &t[start..];
    let (neg, t) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let end = t.iter().position(|c| !c.is_ascii_digit()).unwrap_or(t.len());
    if end == 0 || t.get(end).is_some_and(|&c| !c_space(c)) {
        return None;
    }
    Some((neg, &t[..end]))
}

/// A token of at most 18 plain digits (no sign, no whitespace: nearly every number a client
/// sends): its value, without the general path's checks, which cannot fail for it.
pub(super) fn plain_digits(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 18 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(t.iter().fold(0u64, |v, &c| v * 10 + u64::from(c - b'0')))
}

/// The magnitude of a run of ASCII digits, None past `u64::MAX` (`ERANGE`).
pub(super) fn digits_value(d: &[u8]) -> Option<u64> {
    d.iter()
        .try_fold(0u64, |v, &c| v.checked_mul(10)?.checked_add((c - b'0') as u64))
}

/// memcached's `safe_strtol` on a 64-bit `long`: out of `i64` range is an error.
pub(super) fn strtol(t: &[u8]) -> Option<i64> {
    if let Some(v) = plain_digits(t) {
        return Some(v as i64);
    }
    let (neg, d) = c_number(t)?;
    let m = digits_value(d)?;
    if neg {
        (m <= 1 << 63).then(|| (m as i64).wrapping_neg())
    } else {
        i64::try_from(m).ok()
    }
}

/// `safe_strtol` into memcached's 32-bit int: truncated, not range-checked.
pub(super) fn strtol32(t: &[u8]) -> Option<i32> {
    strtol(t).map(|v| v as i32)
}

/// memcached's `safe_strtoull` (and `safe_strtoul` on 64-bit Linux): a negated value wraps, as
/// in C, and is refused only when it reads as negative and the token holds a '-'
/// (so `-0` is 0 and `-9223372036854775809` is 9223372036854775807).
pub(super) fn strtoull(t: &[u8]) -> Option<u64> {
    if let Some(v) = plain_digits(t) {
        return Some(v);
    }
    let (neg, d) = c_number(t)?;
    let v = digits_value(d)?;
    let v = if neg { v.wrapping_neg() } else { v };
    if (v as i64) < 0 && t.contains(&b'-') {
        return None;
    }
    Some(v)
}
