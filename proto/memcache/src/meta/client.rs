//! Client side of the meta commands: compose requests, parse replies incrementally.
//!
//! Replies borrow from the read buffer: a value is a slice of it, return flags are parsed on
//! demand from the reply line. [`parse_response`] reports `Incomplete` until a whole reply is
//! buffered, so a caller reads more and tries again.

use super::{b64, push_int, ArithMode, Code, SetMode, CRLF, MAX_FLAGS, MAX_OPAQUE_LEN};
use crate::{find_line, key_is_valid, MAX_KEY_LEN};

/// A request flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag<'a> {
    /// `b`: the key given to `compose_*` is binary; it is sent base64-encoded.
    Base64,
    /// `c`
    ReturnCas,
    /// `f`
    ReturnClientFlags,
    /// `h`
    ReturnHit,
    /// `k`
    ReturnKey,
    /// `l`
    ReturnLastAccess,
    /// `s`
    ReturnSize,
    /// `t`
    ReturnTtl,
    /// `v`
    ReturnValue,
    /// `u`
    NoBump,
    /// `q`
    Quiet,
    /// `I`
    Invalidate,
    /// `O<opaque>`: up to 31 bytes, no spaces or control characters.
    Opaque(&'a [u8]),
    /// `N<exptime>`
    Vivify(i32),
    /// `R<seconds>`
    Recache(i32),
    /// `T<exptime>`
    Ttl(i32),
    /// `C<cas>`
    CompareCas(u64),
    /// `F<flags>`
    ClientFlags(u32),
    /// `M<mode>` for `ms`
    SetMode(SetMode),
    /// `M<mode>` for `ma`
    ArithMode(ArithMode),
    /// `D<delta>`
    Delta(u64),
    /// `J<initial>`
    Initial(u64),
}

impl Flag<'_> {
    fn byte(&self) -> u8 {
        match self {
            Flag::Base64 => b'b',
            Flag::ReturnCas => b'c',
            Flag::ReturnClientFlags => b'f',
            Flag::ReturnHit => b'h',
            Flag::ReturnKey => b'k',
            Flag::ReturnLastAccess => b'l',
            Flag::ReturnSize => b's',
            Flag::ReturnTtl => b't',
            Flag::ReturnValue => b'v',
            Flag::NoBump => b'u',
            Flag::Quiet => b'q',
            Flag::Invalidate => b'I',
            Flag::Opaque(_) => b'O',
            Flag::Vivify(_) => b'N',
            Flag::Recache(_) => b'R',
            Flag::Ttl(_) => b'T',
            Flag::CompareCas(_) => b'C',
            Flag::ClientFlags(_) => b'F',
            Flag::SetMode(_) | Flag::ArithMode(_) => b'M',
            Flag::Delta(_) => b'D',
            Flag::Initial(_) => b'J',
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(b' ');
        out.push(self.byte());
        match *self {
            Flag::Opaque(o) => out.extend_from_slice(o),
            Flag::Vivify(v) | Flag::Recache(v) | Flag::Ttl(v) => push_int(out, v),
            Flag::CompareCas(v) | Flag::Delta(v) | Flag::Initial(v) => push_int(out, v),
            Flag::ClientFlags(v) => push_int(out, v),
            Flag::SetMode(m) => out.push(m.byte()),
            Flag::ArithMode(m) => out.push(m.byte()),
            _ => {}
        }
    }
}

/// Why a request could not be composed (nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComposeError {
    /// Not a valid key (1 to 250 bytes, no spaces or control characters), or with
    /// [`Flag::Base64`] a binary key of 0 or more than 187 bytes.
    InvalidKey,
    /// An opaque over 31 bytes or with spaces or control characters.
    InvalidOpaque,
    /// A flag given twice (memcached refuses the request).
    DuplicateFlag,
    /// More flags than memcached accepts on one line.
    TooManyFlags,
}

impl std::fmt::Display for ComposeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ComposeError::InvalidKey => "invalid key",
            ComposeError::InvalidOpaque => "invalid opaque",
            ComposeError::DuplicateFlag => "duplicate flag",
            ComposeError::TooManyFlags => "too many flags",
        })
    }
}

impl std::error::Error for ComposeError {}

/// Longest binary key whose base64 form fits memcached's 250-byte key limit.
pub const MAX_BINARY_KEY_LEN: usize = MAX_KEY_LEN / 4 * 3;

fn check(key: &[u8], flags: &[Flag<'_>], max_flags: usize) -> Result<(), ComposeError> {
    if flags.len() > max_flags {
        return Err(ComposeError::TooManyFlags);
    }
    let mut seen = [false; 128];
    let mut base64 = false;
    for f in flags {
        let b = f.byte() as usize;
        if std::mem::replace(&mut seen[b], true) {
            return Err(ComposeError::DuplicateFlag);
        }
        match f {
            Flag::Base64 => base64 = true,
            Flag::Opaque(o) if o.len() > MAX_OPAQUE_LEN || !o.iter().all(|&c| c > b' ' && c != 0x7f) => {
                return Err(ComposeError::InvalidOpaque)
            }
            _ => {}
        }
    }
    let key_ok = if base64 {
        !key.is_empty() && key.len() <= MAX_BINARY_KEY_LEN
    } else {
        key_is_valid(key)
    };
    if key_ok {
        Ok(())
    } else {
        Err(ComposeError::InvalidKey)
    }
}

fn write_line(out: &mut Vec<u8>, cmd: &[u8], key: &[u8], datalen: Option<usize>, flags: &[Flag<'_>]) {
    out.extend_from_slice(cmd);
    out.push(b' ');
    if flags.contains(&Flag::Base64) {
        b64::encode(key, out);
    } else {
        out.extend_from_slice(key);
    }
    if let Some(len) = datalen {
        out.push(b' ');
        push_int(out, len);
    }
    for f in flags {
        f.write(out);
    }
    out.extend_from_slice(CRLF);
}

/// `mg <key> <flags>*\r\n`
pub fn compose_get(out: &mut Vec<u8>, key: &[u8], flags: &[Flag<'_>]) -> Result<(), ComposeError> {
    check(key, flags, MAX_FLAGS)?;
    write_line(out, b"mg", key, None, flags);
    Ok(())
}

/// `ms <key> <datalen> <flags>*\r\n<value>\r\n`
pub fn compose_set(out: &mut Vec<u8>, key: &[u8], value: &[u8], flags: &[Flag<'_>]) -> Result<(), ComposeError> {
    check(key, flags, MAX_FLAGS - 1)?;
    write_line(out, b"ms", key, Some(value.len()), flags);
    out.extend_from_slice(value);
    out.extend_from_slice(CRLF);
    Ok(())
}

/// `md <key> <flags>*\r\n`
pub fn compose_delete(out: &mut Vec<u8>, key: &[u8], flags: &[Flag<'_>]) -> Result<(), ComposeError> {
    check(key, flags, MAX_FLAGS)?;
    write_line(out, b"md", key, None, flags);
    Ok(())
}

/// `ma <key> <flags>*\r\n`
pub fn compose_arith(out: &mut Vec<u8>, key: &[u8], flags: &[Flag<'_>]) -> Result<(), ComposeError> {
    check(key, flags, MAX_FLAGS)?;
    write_line(out, b"ma", key, None, flags);
    Ok(())
}

/// `mn\r\n`
pub fn compose_noop(out: &mut Vec<u8>) {
    out.extend_from_slice(b"mn\r\n");
}

/// `me <key>[ b]\r\n` (`base64`: `key` is binary and is sent encoded).
pub fn compose_debug(out: &mut Vec<u8>, key: &[u8], base64: bool) -> Result<(), ComposeError> {
    let flags: &[Flag<'_>] = if base64 { &[Flag::Base64] } else { &[] };
    check(key, flags, 1)?;
    out.extend_from_slice(b"me ");
    if base64 {
        b64::encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
    out.extend_from_slice(CRLF);
    Ok(())
}

/// The return flags of a reply line, parsed on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnFlags<'a>(pub &'a [u8]);

impl<'a> ReturnFlags<'a> {
    /// `(flag, argument)` pairs in the order the server sent them.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &'a [u8])> + 'a {
        self.0
            .split(|&b| b == b' ')
            .filter(|t| !t.is_empty())
            .map(|t| (t[0], &t[1..]))
    }

    /// The argument of flag `c`, if the server sent it.
    pub fn get(&self, c: u8) -> Option<&'a [u8]> {
        self.iter().find(|&(f, _)| f == c).map(|(_, a)| a)
    }

    pub fn has(&self, c: u8) -> bool {
        self.get(c).is_some()
    }

    fn number<T: std::str::FromStr>(&self, c: u8) -> Option<T> {
        std::str::from_utf8(self.get(c)?).ok()?.parse().ok()
    }

    pub fn cas(&self) -> Option<u64> {
        self.number(b'c')
    }

    pub fn client_flags(&self) -> Option<u32> {
        self.number(b'f')
    }

    /// Remaining TTL; -1 is never.
    pub fn ttl(&self) -> Option<i64> {
        self.number(b't')
    }

    pub fn size(&self) -> Option<usize> {
        self.number(b's')
    }

    pub fn last_access(&self) -> Option<u64> {
        self.number(b'l')
    }

    pub fn hit_before(&self) -> Option<bool> {
        match self.get(b'h')? {
            b"0" => Some(false),
            b"1" => Some(true),
            _ => None,
        }
    }

    pub fn opaque(&self) -> Option<&'a [u8]> {
        self.get(b'O')
    }

    /// The key as sent: base64 text when [`ReturnFlags::key_is_base64`].
    pub fn key(&self) -> Option<&'a [u8]> {
        self.get(b'k')
    }

    pub fn key_is_base64(&self) -> bool {
        self.has(b'b')
    }

    /// `W`: this client won the right to recache.
    pub fn won(&self) -> bool {
        self.has(b'W')
    }

    /// `X`: the item is stale.
    pub fn stale(&self) -> bool {
        self.has(b'X')
    }

    /// `Z`: another client already won the recache.
    pub fn win_taken(&self) -> bool {
        self.has(b'Z')
    }
}

/// The `key=value` fields of a `ME` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugFields<'a>(pub &'a [u8]);

impl<'a> DebugFields<'a> {
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.0
            .split(|&b| b == b' ')
            .filter(|t| !t.is_empty())
            .map(|t| match t.iter().position(|&b| b == b'=') {
                Some(i) => (&t[..i], &t[i + 1..]),
                None => (t, &t[t.len()..]),
            })
    }

    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter().find(|&(n, _)| n == name.as_bytes()).map(|(_, v)| v)
    }
}

/// The error replies every text command may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ERROR`: unknown command.
    Error,
    /// `CLIENT_ERROR <message>`
    Client,
    /// `SERVER_ERROR <message>`
    Server,
}

/// A meta reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response<'a> {
    /// `VA <len> <flags>*\r\n<data>\r\n`
    Value { flags: ReturnFlags<'a>, data: &'a [u8] },
    /// `HD`, `EN`, `NF`, `NS` or `EX` with return flags.
    Status { code: Code, flags: ReturnFlags<'a> },
    /// `MN`
    Noop,
    /// `ME <key> <k>=<v>*`
    Debug { key: &'a [u8], fields: DebugFields<'a> },
    /// `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`
    Error { kind: ErrorKind, message: &'a [u8] },
}

/// Why no reply came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a whole reply yet: read more.
    Incomplete,
    /// Not a meta reply: the connection is out of step and should be closed.
    Invalid,
}

/// Parses one reply from the front of `buf`; on success also returns how many bytes it used.
pub fn parse_response(buf: &[u8]) -> Result<(Response<'_>, usize), ParseError> {
    let (line_end, next) = find_line(buf).ok_or(ParseError::Incomplete)?;
    let line = &buf[..line_end];
    if line == b"ERROR" {
        return Ok((
            Response::Error {
                kind: ErrorKind::Error,
                message: &[],
            },
            next,
        ));
    }
    for (prefix, kind) in [
        (&b"CLIENT_ERROR"[..], ErrorKind::Client),
        (b"SERVER_ERROR", ErrorKind::Server),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let message = rest.strip_prefix(b" ").unwrap_or(rest);
            return Ok((Response::Error { kind, message }, next));
        }
    }
    let code = line.get(..2).and_then(Code::from_bytes).ok_or(ParseError::Invalid)?;
    let rest = match &line[2..] {
        [] => &[][..],
        [b' ', rest @ ..] => rest,
        _ => return Err(ParseError::Invalid),
    };
    let response = match code {
        Code::Va => {
            let (len, flags) = split_token(rest);
            if len.is_empty() || len.len() > 19 || !len.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::Invalid);
            }
            let len = len.iter().fold(0usize, |v, &c| v * 10 + (c - b'0') as usize);
            let end = next
                .checked_add(len)
                .and_then(|e| e.checked_add(2))
                .ok_or(ParseError::Invalid)?;
            let block = buf.get(next..end).ok_or(ParseError::Incomplete)?;
            if !block.ends_with(CRLF) {
                return Err(ParseError::Invalid);
            }
            return Ok((
                Response::Value {
                    flags: ReturnFlags(flags),
                    data: &block[..len],
                },
                end,
            ));
        }
        Code::Mn => Response::Noop,
        Code::Me => {
            let (key, fields) = split_token(rest);
            if key.is_empty() {
                return Err(ParseError::Invalid);
            }
            Response::Debug {
                key,
                fields: DebugFields(fields),
            }
        }
        code => Response::Status {
            code,
            flags: ReturnFlags(rest),
        },
    };
    Ok((response, next))
}

/// The first space-separated token of `s` and what follows it.
fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &s[s.len()..]),
    }
}

#[cfg(test)]
mod tests;
