//! The classic memcached text protocol.
//!
//! Server side: [`parse_request`] frames one request from the front of a buffer and borrows its
//! keys and data block from it. Meta commands share the text framing but have their own parser
//! ([`crate::meta`]); this parser only recognises them and hands the line over.
//!
//! Client side: [`client`] composes requests and parses replies.
//!
//! The grammar follows memcached 1.6, including its quirks, because the node is tested byte for
//! byte against a real memcached: tokens are separated by runs of spaces only, at most 24 tokens
//! are split (the rest stays in the last one), and a malformed line's data block is not skipped
//! (memcached reads it as the next command).

use crate::{find_line, MAX_KEY_LEN};

/// memcached splits a command line into at most this many tokens.
const MAX_TOKENS: usize = 24;

/// memcached closes a connection that sends this many bytes without a newline, unless the line
/// is a `get`/`gets` (multi-gets may be long).
pub const MAX_COMMAND_LINE: usize = 2048;

/// Limits the parser enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest `get`/`gets` line accepted without a newline before the connection is closed.
    pub max_get_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_get_line: 1 << 20 }
    }
}

/// The storage commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreCmd {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
}

impl StoreCmd {
    pub fn name(self) -> &'static str {
        match self {
            StoreCmd::Set => "set",
            StoreCmd::Add => "add",
            StoreCmd::Replace => "replace",
            StoreCmd::Append => "append",
            StoreCmd::Prepend => "prepend",
            StoreCmd::Cas => "cas",
        }
    }
}

/// The keys of a retrieval command, split lazily (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys<'a>(pub &'a [u8]);

impl<'a> Keys<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0.split(|&b| b == b' ').filter(|k| !k.is_empty())
    }
}

/// A parsed text request.
#[derive(Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `get`/`gets` (`cas` = gets).
    Get {
        cas: bool,
        keys: Keys<'a>,
    },
    /// `gat`/`gats`.
    Gat {
        cas: bool,
        exptime: i64,
        keys: Keys<'a>,
    },
    Store {
        cmd: StoreCmd,
        key: &'a [u8],
        flags: u32,
        exptime: i64,
        /// Only for `cas`.
        cas: u64,
        data: &'a [u8],
        noreply: bool,
    },
    Delete {
        key: &'a [u8],
        noreply: bool,
    },
    Arith {
        incr: bool,
        key: &'a [u8],
        delta: u64,
        noreply: bool,
    },
    Touch {
        key: &'a [u8],
        exptime: i64,
        noreply: bool,
    },
    FlushAll {
        delay: i64,
        noreply: bool,
    },
    Version,
    Verbosity {
        noreply: bool,
    },
    Quit,
    /// `stats [args]`: `args` is the rest of the line.
    Stats {
        args: Keys<'a>,
    },
    /// A meta command (`mg`, `ms`, ...): `line[..line_end]` is its line, the request continues at
    /// `next`. The caller parses it with [`crate::meta`].
    Meta {
        cmd: u8,
        line_end: usize,
        next: usize,
    },
}

/// Why no request came out, sorted by what the connection does next.
#[derive(Debug, PartialEq, Eq)]
pub enum Error<'a> {
    /// Not a whole request yet: read more.
    Incomplete,
    /// Reply with this line (without `\r\n`), drop `consumed` bytes and carry on.
    Reply {
        msg: &'static str,
        consumed: usize,
        noreply: bool,
    },
    /// A storage command whose data block is larger than the caller's limit: reply
    /// `SERVER_ERROR object too large for cache`, drop `consumed` bytes and discard the next
    /// `swallow` bytes unread.
    TooLarge {
        cmd: StoreCmd,
        key: &'a [u8],
        consumed: usize,
        swallow: usize,
        noreply: bool,
    },
    /// The data block did not end in `\r\n`; `consumed` covers line and block.
    BadDataChunk { consumed: usize, noreply: bool },
    /// memcached closes the connection on this input (an overlong line).
    Close,
}

pub const ERROR: &str = "ERROR";
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
pub const OUT_OF_MEMORY: &str = "SERVER_ERROR out of memory storing object";
pub const INVALID_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
pub const INVALID_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";
pub const DELETE_USAGE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";

/// Splits a line into tokens as memcached does (runs of spaces separate; the 24th token keeps
/// the rest of the line).
fn tokenize(line: &[u8]) -> ([&[u8]; MAX_TOKENS], usize) {
    let mut tokens: [&[u8]; MAX_TOKENS] = [&[]; MAX_TOKENS];
    let mut n = 0;
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        if line[i] == b' ' {
            if i > start {
                tokens[n] = &line[start..i];
                n += 1;
                if n == MAX_TOKENS - 1 {
                    start = i + 1;
                    break;
                }
            }
            start = i + 1;
        }
        i += 1;
    }
    if n == MAX_TOKENS - 1 {
        if start < line.len() {
            tokens[n] = &line[start..];
            n += 1;
        }
    } else if start < line.len() {
        tokens[n] = &line[start..];
        n += 1;
    }
    (tokens, n)
}

/// memcached's `safe_strtoull`: decimal with an optional '+', nothing after it.
pub fn parse_u64(t: &[u8]) -> Option<u64> {
    let t = t.strip_prefix(b"+").unwrap_or(t);
    if t.is_empty() || t.len() > 20 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// memcached's `safe_strtol` into a 64-bit long.
pub fn parse_i64(t: &[u8]) -> Option<i64> {
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    let v = parse_u64(digits)?;
    if neg {
        (v <= i64::MAX as u64 + 1).then(|| (v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// memcached's flags parsing: an unsigned number truncated to 32 bits (1.6 behaviour).
fn parse_flags(t: &[u8]) -> Option<u32> {
    parse_u64(t).map(|v| v as u32)
}

/// memcached's `safe_strtol`: a 64-bit parse stored into a 32-bit int. memcached 1.6 truncates
/// rather than rejects out-of-range values (a data length of 4294967297 means 1, an exptime of
/// 4102444800 becomes negative, i.e. already expired), and the node must read the same bytes the
/// same way.
pub fn parse_i32(t: &[u8]) -> Option<i32> {
    parse_i64(t).map(|v| v as i32)
}

/// An exptime token, as memcached reads it (see [`parse_i32`]).
fn parse_exptime(t: &[u8]) -> Option<i64> {
    parse_i32(t).map(i64::from)
}

fn reply<'a>(msg: &'static str, consumed: usize, noreply: bool) -> Error<'a> {
    Error::Reply { msg, consumed, noreply }
}

/// Parses one request from the front of `buf`.
///
/// `item_size_ok(key, flags, len)` decides whether a data block of `len` bytes is accepted;
/// a refused one yields [`Error::TooLarge`] before the block has arrived, so it can be skipped
/// without ever being buffered.
pub fn parse_request<'a>(
    buf: &'a [u8],
    limits: &Limits,
    item_size_ok: impl Fn(&[u8], u32, usize) -> bool,
) -> Result<(Request<'a>, usize), Error<'a>> {
    let Some((line_end, next)) = find_line(buf) else {
        return Err(overlong(buf, limits));
    };
    let line = &buf[..line_end];
    // Meta commands are two letters starting with 'm'.
    if line.len() >= 2 && line[0] == b'm' && (line.len() == 2 || line[2] == b' ') {
        return Ok((
            Request::Meta {
                cmd: line[1],
                line_end,
                next,
            },
            next,
        ));
    }
    let (t, n) = tokenize(line);
    if n == 0 {
        return Err(reply(ERROR, next, false));
    }
    // memcached's count includes a final empty token; `want` below uses the real count.
    let noreply = n > 1 && t[n - 1] == b"noreply";
    let cmd = t[0];
    let req = match cmd {
        b"get" | b"gets" => {
            if n < 2 {
                return Err(reply(ERROR, next, false));
            }
            let rest = rest_after(line, t[1]);
            let keys = Keys(rest);
            if keys.iter().any(|k| k.len() > MAX_KEY_LEN) {
                return Err(reply(BAD_FORMAT, next, false));
            }
            Request::Get {
                cas: cmd == b"gets",
                keys,
            }
        }
        b"gat" | b"gats" => {
            if n < 3 {
                return Err(reply(ERROR, next, false));
            }
            let Some(exptime) = parse_exptime(t[1]) else {
                return Err(reply(INVALID_EXPTIME, next, false));
            };
            let keys = Keys(rest_after(line, t[2]));
            if keys.iter().any(|k| k.len() > MAX_KEY_LEN) {
                return Err(reply(BAD_FORMAT, next, false));
            }
            Request::Gat {
                cas: cmd == b"gats",
                exptime,
                keys,
            }
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            let sc = match cmd {
                b"set" => StoreCmd::Set,
                b"add" => StoreCmd::Add,
                b"replace" => StoreCmd::Replace,
                b"append" => StoreCmd::Append,
                b"prepend" => StoreCmd::Prepend,
                _ => StoreCmd::Cas,
            };
            let base = if sc == StoreCmd::Cas { 6 } else { 5 };
            if n != base && n != base + 1 {
                return Err(reply(ERROR, next, false));
            }
            let key = t[1];
            if key.len() > MAX_KEY_LEN {
                return Err(reply(BAD_FORMAT, next, noreply));
            }
            let (Some(flags), Some(exptime), Some(vlen)) = (parse_flags(t[2]), parse_exptime(t[3]), parse_i32(t[4]))
            else {
                return Err(reply(BAD_FORMAT, next, noreply));
            };
            let cas = if sc == StoreCmd::Cas {
                match parse_u64(t[5]) {
                    Some(c) => c,
                    None => return Err(reply(BAD_FORMAT, next, noreply)),
                }
            } else {
                0
            };
            if !(0..=i32::MAX - 2).contains(&vlen) {
                return Err(reply(BAD_FORMAT, next, noreply));
            }
            let vlen = vlen as usize;
            if !item_size_ok(key, flags, vlen) {
                return Err(Error::TooLarge {
                    cmd: sc,
                    key,
                    consumed: next,
                    swallow: vlen + 2,
                    noreply,
                });
            }
            let end = next + vlen + 2;
            if buf.len() < end {
                return Err(Error::Incomplete);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(Error::BadDataChunk { consumed: end, noreply });
            }
            return Ok((
                Request::Store {
                    cmd: sc,
                    key,
                    flags,
                    exptime,
                    cas,
                    data: &buf[next..next + vlen],
                    noreply,
                },
                end,
            ));
        }
        b"delete" => {
            if !(2..=4).contains(&n) {
                return Err(reply(ERROR, next, false));
            }
            if n > 2 {
                let hold_zero = t[2] == b"0";
                let valid = (n == 3 && (hold_zero || noreply)) || (n == 4 && hold_zero && noreply);
                if !valid {
                    return Err(reply(DELETE_USAGE, next, noreply));
                }
            }
            if t[1].len() > MAX_KEY_LEN {
                return Err(reply(BAD_FORMAT, next, noreply));
            }
            Request::Delete { key: t[1], noreply }
        }
        b"incr" | b"decr" => {
            if n != 3 && n != 4 {
                return Err(reply(ERROR, next, false));
            }
            if t[1].len() > MAX_KEY_LEN {
                return Err(reply(BAD_FORMAT, next, noreply));
            }
            let Some(delta) = parse_u64(t[2]) else {
                return Err(reply(INVALID_DELTA, next, noreply));
            };
            Request::Arith {
                incr: cmd == b"incr",
                key: t[1],
                delta,
                noreply,
            }
        }
        b"touch" => {
            if n != 3 && n != 4 {
                return Err(reply(ERROR, next, false));
            }
            if t[1].len() > MAX_KEY_LEN {
                return Err(reply(BAD_FORMAT, next, noreply));
            }
            let Some(exptime) = parse_exptime(t[2]) else {
                return Err(reply(INVALID_EXPTIME, next, noreply));
            };
            Request::Touch {
                key: t[1],
                exptime,
                noreply,
            }
        }
        b"flush_all" => {
            if n > 3 {
                return Err(reply(ERROR, next, false));
            }
            let delay = if n == (if noreply { 2 } else { 1 }) {
                0
            } else {
                match parse_exptime(t[1]) {
                    Some(d) => d,
                    None => return Err(reply(INVALID_EXPTIME, next, noreply)),
                }
            };
            Request::FlushAll { delay, noreply }
        }
        b"version" => Request::Version,
        b"quit" => Request::Quit,
        b"verbosity" => {
            if n != 2 && n != 3 {
                return Err(reply(ERROR, next, false));
            }
            Request::Verbosity { noreply }
        }
        b"stats" => Request::Stats {
            args: Keys(if n > 1 { rest_after(line, t[1]) } else { &[] }),
        },
        _ => return Err(reply(ERROR, next, false)),
    };
    Ok((req, next))
}

/// The rest of `line` starting at token `tok` (a subslice of `line`).
fn rest_after<'a>(line: &'a [u8], tok: &'a [u8]) -> &'a [u8] {
    let start = tok.as_ptr() as usize - line.as_ptr() as usize;
    &line[start..]
}

/// What to do with a buffer that holds no newline yet.
fn overlong<'a>(buf: &[u8], limits: &Limits) -> Error<'a> {
    if buf.len() <= MAX_COMMAND_LINE {
        return Error::Incomplete;
    }
    let trimmed = buf.iter().position(|&b| b != b' ').unwrap_or(buf.len());
    let rest = &buf[trimmed..];
    let is_get = rest.starts_with(b"get ") || rest.starts_with(b"gets ");
    if trimmed > 100 || !is_get || buf.len() > limits.max_get_line {
        Error::Close
    } else {
        Error::Incomplete
    }
}

/// Server-side reply helpers.
pub mod reply;

/// Client side: compose requests, parse replies.
pub mod client;

#[cfg(test)]
mod tests;
