//! Reply writers for the server side. Each appends to `out`; none allocates beyond growing it.

use super::*;

/// `"<code>"`, to be followed by [`flags`], maybe [`recache`], then [`end`].
pub fn code(out: &mut Vec<u8>, code: Code) {
    out.extend_from_slice(code.as_bytes());
}

/// `"VA <len>"`, to be followed by [`flags`], [`end`], the value and [`end`].
pub fn value_header(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(b"VA ");
    push_int(out, len);
}

/// The return flags the request asked for, in its order, from `v`.
pub fn flags(out: &mut Vec<u8>, req: &Flags<'_>, v: &ReturnValues<'_>) {
    let mut touched = false;
    for &c in req.order() {
        match c {
            b'O' => {
                if let Some(o) = req.opaque {
                    out.extend_from_slice(b" O");
                    out.extend_from_slice(o);
                }
            }
            b'k' => {
                if let Some(k) = v.key {
                    out.extend_from_slice(b" k");
                    if v.key_base64 {
                        b64::encode(k, out);
                        out.extend_from_slice(b" b");
                    } else {
                        out.extend_from_slice(k);
                    }
                }
            }
            b'c' => flag_u64(out, b'c', v.cas),
            b'f' => flag_u64(out, b'f', v.client_flags.map(u64::from)),
            b'h' => flag_u64(out, b'h', v.hit_before.map(u64::from)),
            b'l' => flag_u64(out, b'l', v.last_access),
            b's' => flag_u64(out, b's', v.size.map(|s| s as u64)),
            b't' => {
                let ttl = if touched { v.ttl_after_touch.or(v.ttl) } else { v.ttl };
                if let Some(t) = ttl {
                    out.extend_from_slice(b" t");
                    push_int(out, t);
                }
            }
            b'T' => touched = true,
            _ => {}
        }
    }
}

/// The recache flags `mg` adds after the requested ones, in memcached's order: `Z` (another
/// client holds the win), `X` (stale), `W` (this client won).
pub fn recache(out: &mut Vec<u8>, win_taken: bool, stale: bool, win: bool) {
    if win_taken {
        out.extend_from_slice(b" Z");
    }
    if stale {
        out.extend_from_slice(b" X");
    }
    if win {
        out.extend_from_slice(b" W");
    }
}

/// Ends a line (or a value).
pub fn end(out: &mut Vec<u8>) {
    out.extend_from_slice(CRLF);
}

/// A whole status line: code, return flags, `\r\n`.
pub fn status(out: &mut Vec<u8>, code: Code, req: &Flags<'_>, v: &ReturnValues<'_>) {
    self::code(out, code);
    flags(out, req, v);
    end(out);
}

/// An error line (`message` from [`errors`] or [`RequestError::message`]).
pub fn error(out: &mut Vec<u8>, message: &str) {
    out.extend_from_slice(message.as_bytes());
    end(out);
}

/// `MN\r\n`
pub fn noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"MN\r\n");
}

/// The item facts `me` prints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugInfo {
    /// Remaining TTL in seconds, -1 for never. memcached prints it negated (`exp=-100` for
    /// 100 seconds left); [`debug`] does the same.
    pub ttl: i64,
    /// Seconds since last access.
    pub last_access: u64,
    pub cas: u64,
    pub fetched: bool,
    /// memcached's slab class id.
    pub class: u32,
    /// memcached's total item size in bytes (header, key and value).
    pub size: u64,
}

/// `ME <key> exp=.. la=.. cas=.. fetch=yes|no cls=.. size=..\r\n`.
pub fn debug(out: &mut Vec<u8>, key: &[u8], key_base64: bool, d: &DebugInfo) {
    out.extend_from_slice(b"ME ");
    if key_base64 {
        b64::encode(key, out);
    } else {
        out.extend_from_slice(key);
    }
    out.extend_from_slice(b" exp=");
    push_int(out, if d.ttl < 0 { -1 } else { -d.ttl });
    out.extend_from_slice(b" la=");
    push_int(out, d.last_access);
    out.extend_from_slice(b" cas=");
    push_int(out, d.cas);
    out.extend_from_slice(if d.fetched { b" fetch=yes" } else { b" fetch=no" });
    out.extend_from_slice(b" cls=");
    push_int(out, d.class);
    out.extend_from_slice(b" size=");
    push_int(out, d.size);
    end(out);
}

fn flag_u64(out: &mut Vec<u8>, c: u8, v: Option<u64>) {
    match v {
        // One digit (client flags are mostly 0): one fixed-size append, which compiles to a
        // store, where the general path formats a number.
        Some(v) if v < 10 => out.extend_from_slice(&[b' ', c, b'0' + v as u8]),
        Some(v) => {
            out.extend_from_slice(&[b' ', c]);
            push_int(out, v);
        }
        None => {}
    }
}
