use super::{parse_u64, StoreCmd};
use crate::find_line;

/// `get`/`gets` for several keys.
pub fn get<'k>(out: &mut Vec<u8>, cas: bool, keys: impl IntoIterator<Item = &'k [u8]>) {
    out.extend_from_slice(if cas { b"gets" } else { b"get" });
    for k in keys {
        out.push(b' ');
        out.extend_from_slice(k);
    }
    out.extend_from_slice(b"\r\n");
}

/// `gat`/`gats`.
pub fn gat<'k>(out: &mut Vec<u8>, cas: bool, exptime: i64, keys: impl IntoIterator<Item = &'k [u8]>) {
    out.extend_from_slice(if cas { b"gats " } else { b"gat " });
    out.extend_from_slice(itoa::Buffer::new().format(exptime).as_bytes());
    for k in keys {
        out.push(b' ');
        out.extend_from_slice(k);
    }
    out.extend_from_slice(b"\r\n");
}

/// A storage command with its data block. `cas` is used only by [`StoreCmd::Cas`].
#[allow(clippy::too_many_arguments)]
pub fn store(
    out: &mut Vec<u8>,
    cmd: StoreCmd,
    key: &[u8],
    flags: u32,
    exptime: i64,
    data: &[u8],
    cas: u64,
    noreply: bool,
) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(cmd.name().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b' ');
    out.extend_from_slice(b.format(flags).as_bytes());
    out.push(b' ');
    out.extend_from_slice(b.format(exptime).as_bytes());
    out.push(b' ');
    out.extend_from_slice(b.format(data.len()).as_bytes());
    if cmd == StoreCmd::Cas {
        out.push(b' ');
        out.extend_from_slice(b.format(cas).as_bytes());
    }
    if noreply {
        out.extend_from_slice(b" noreply");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `delete <key>`.
pub fn delete(out: &mut Vec<u8>, key: &[u8], noreply: bool) {
    simple(out, b"delete", key, None, noreply)
}

/// `incr`/`decr`.
pub fn arith(out: &mut Vec<u8>, incr: bool, key: &[u8], delta: u64, noreply: bool) {
    simple(
        out,
        if incr { b"incr" } else { b"decr" },
        key,
        Some(delta as i128),
        noreply,
    )
}

/// `touch <key> <exptime>`.
pub fn touch(out: &mut Vec<u8>, key: &[u8], exptime: i64, noreply: bool) {
    simple(out, b"touch", key, Some(exptime as i128), noreply)
}

fn simple(out: &mut Vec<u8>, cmd: &[u8], key: &[u8], arg: Option<i128>, noreply: bool) {
    out.extend_from_slice(cmd);
    out.push(b' ');
    out.extend_from_slice(key);
    if let Some(a) = arg {
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(a).as_bytes());
    }
    if noreply {
        out.extend_from_slice(b" noreply");
    }
    out.extend_from_slice(b"\r\n");
}

/// A reply from a memcached-compatible server.
#[derive(Debug, PartialEq, Eq)]
pub enum Response<'a> {
    Value {
        key: &'a [u8],
        flags: u32,
        cas: Option<u64>,
        data: &'a [u8],
    },
    End,
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    Ok,
    Number(u64),
    Version(&'a [u8]),
    Stat {
        name: &'a [u8],
        value: &'a [u8],
    },
    Error,
    ClientError(&'a [u8]),
    ServerError(&'a [u8]),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    Incomplete,
    /// Not a reply this protocol knows.
    Invalid,
}

/// Parses one reply line (and a VALUE's data block) from the front of `buf`.
pub fn parse_response(buf: &[u8]) -> Result<(Response<'_>, usize), ParseError> {
    let (end, next) = find_line(buf).ok_or(ParseError::Incomplete)?;
    let line = &buf[..end];
    let r = match line {
        b"END" => Response::End,
        b"STORED" => Response::Stored,
        b"NOT_STORED" => Response::NotStored,
        b"EXISTS" => Response::Exists,
        b"NOT_FOUND" => Response::NotFound,
        b"DELETED" => Response::Deleted,
        b"TOUCHED" => Response::Touched,
        b"OK" => Response::Ok,
        b"ERROR" => Response::Error,
        _ => {
            if let Some(rest) = line.strip_prefix(b"VALUE ") {
                let mut it = rest.split(|&b| b == b' ');
                let key = it.next().ok_or(ParseError::Invalid)?;
                let flags = it.next().and_then(parse_u64).ok_or(ParseError::Invalid)? as u32;
                let len = it.next().and_then(parse_u64).ok_or(ParseError::Invalid)? as usize;
                let cas = match it.next() {
                    Some(c) => Some(parse_u64(c).ok_or(ParseError::Invalid)?),
                    None => None,
                };
                let total = next
                    .checked_add(len)
                    .and_then(|x| x.checked_add(2))
                    .ok_or(ParseError::Invalid)?;
                if buf.len() < total {
                    return Err(ParseError::Incomplete);
                }
                if &buf[total - 2..total] != b"\r\n" {
                    return Err(ParseError::Invalid);
                }
                return Ok((
                    Response::Value {
                        key,
                        flags,
                        cas,
                        data: &buf[next..next + len],
                    },
                    total,
                ));
            } else if let Some(v) = line.strip_prefix(b"VERSION ") {
                Response::Version(v)
            } else if let Some(s) = line.strip_prefix(b"STAT ") {
                let sp = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
                Response::Stat {
                    name: &s[..sp],
                    value: s.get(sp + 1..).unwrap_or(&[]),
                }
            } else if let Some(m) = line.strip_prefix(b"CLIENT_ERROR ") {
                Response::ClientError(m)
            } else if let Some(m) = line.strip_prefix(b"SERVER_ERROR ") {
                Response::ServerError(m)
            } else if let Some(n) = parse_u64(line) {
                Response::Number(n)
            } else {
                return Err(ParseError::Invalid);
            }
        }
    };
    Ok((r, next))
}
