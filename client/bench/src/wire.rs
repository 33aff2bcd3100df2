//! The requests the tools send and the replies they accept, over each protocol, composed and
//! parsed with `riven-memcache`'s client side.
//!
//! Each request expects exactly one reply (a multi-get's reply is all its frames up to its end
//! marker), and a reply is accepted only if it is one a correct server can give to that request:
//! anything else (an error line, a reply for another opcode or opaque, a value under another key)
//! is a [`WireError::Unexpected`] that ends the run, because a load tool that shrugs off odd
//! replies would report a broken server as a fast one.
//!
//! Replies are normalised across protocols into [`Reply`], so the tools judge them by meaning:
//! binary `ADD` on an existing key answers `KEY_EEXISTS` and meta `ms ME` answers `NS`, and both
//! are [`Reply::NotStored`]. Which reply is the *right* one is for the caller (see
//! [`model`](super::model)).

mod binary;
mod meta;
mod text;

use std::fmt;
use std::ops::Range;

/// The wire protocol a run speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Classic text commands (`get`, `set`, ...).
    Text,
    /// Meta commands (`mg`, `ms`, `md`, `ma`, `mn`).
    Meta,
    /// The binary protocol.
    Binary,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Text, Protocol::Meta, Protocol::Binary];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Text => "text",
            Protocol::Meta => "meta",
            Protocol::Binary => "binary",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Protocol, String> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown protocol {s:?} (text, meta or binary)"))
    }
}

/// The commands the tools send. Each maps onto the nearest command of every protocol: `Gat` is
/// text `gat`, meta `mg ... T`, binary `GAT`; `Touch` over meta is `mg <key> T` without a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Get,
    /// A get that also returns the CAS unique.
    Gets,
    /// A get of several keys in one request: text `get k1 k2 ...`, meta quiet `mg`s closed by
    /// `mn`, binary `GETKQ`s closed by `NOOP`.
    MultiGet,
    Gat,
    Touch,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Incr,
    Decr,
    Delete,
}

impl Op {
    pub const COUNT: usize = 14;
    pub const ALL: [Op; Op::COUNT] = [
        Op::Get,
        Op::Gets,
        Op::MultiGet,
        Op::Gat,
        Op::Touch,
        Op::Set,
        Op::Add,
        Op::Replace,
        Op::Append,
        Op::Prepend,
        Op::Cas,
        Op::Incr,
        Op::Decr,
        Op::Delete,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Gets => "gets",
            Op::MultiGet => "mget",
            Op::Gat => "gat",
            Op::Touch => "touch",
            Op::Set => "set",
            Op::Add => "add",
            Op::Replace => "replace",
            Op::Append => "append",
            Op::Prepend => "prepend",
            Op::Cas => "cas",
            Op::Incr => "incr",
            Op::Decr => "decr",
            Op::Delete => "delete",
        }
    }

    /// Whether the request carries a value.
    pub fn has_value(self) -> bool {
        matches!(
            self,
            Op::Set | Op::Add | Op::Replace | Op::Append | Op::Prepend | Op::Cas
        )
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A request's arguments besides its keys and value. Unused ones are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// Client flags of `Set`, `Add`, `Replace` and `Cas`.
    pub flags: u32,
    /// Expiry of stores, `Gat` and `Touch` (memcached rules; the tools keep it small).
    pub exptime: u32,
    /// The CAS unique a `Cas` compares with.
    pub cas: u64,
    /// `Incr`/`Decr` amount.
    pub delta: u64,
}

/// The keys of one request, back to back (a multi-get has several). Kept and reused by a
/// connection, so composing a request does not allocate.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    pub fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Key `i`; empty when out of range.
    pub fn get(&self, i: usize) -> &[u8] {
        let Some(&end) = self.ends.get(i) else { return &[] };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..end]
    }

    pub fn first(&self) -> &[u8] {
        self.get(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Where `key` is among the keys, looking from `from` on (a server answers a multi-get's hits
    /// in request order).
    fn position(&self, key: &[u8], from: usize) -> Option<usize> {
        (from..self.len()).find(|&i| self.get(i) == key)
    }
}

/// A reply, normalised across protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A value, with its flags and CAS unique when the protocol returned them.
    Hit {
        flags: Option<u32>,
        cas: Option<u64>,
        data: &'a [u8],
    },
    Miss,
    /// The end of a multi-get; its hits were put in the caller's [`MultiHit`] list.
    Multi,
    /// Stored, with the new CAS unique when the protocol returned it (binary, meta).
    Stored {
        cas: Option<u64>,
    },
    /// A conditional store that did not happen: `add` of an existing key, `replace`, `append` or
    /// `prepend` of a missing one.
    NotStored,
    /// `cas` with a CAS unique that is not the item's.
    Exists,
    /// `cas`, `touch`, `incr`/`decr` or `delete` of a missing key.
    NotFound,
    Deleted,
    Touched,
    /// The value after `incr`/`decr`.
    Number(u64),
    /// `incr`/`decr` of a value that is not a number (an error reply, but the right one).
    NonNumeric,
}

/// One hit of a multi-get: the position of its key among the request's keys, and where its data
/// lies in the buffer given to [`parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MultiHit {
    pub pos: usize,
    pub flags: Option<u32>,
    pub cas: Option<u64>,
    pub data: Range<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The reply has not fully arrived: read more and parse again from the same start.
    Incomplete,
    /// Not a reply a correct server gives to this request.
    Unexpected(String),
}

/// Appends one request for `op` on `keys` (one key, or several for [`Op::MultiGet`]) to `out`.
/// `value` is the data of a store; `opaque` tags a binary or meta request so its reply can be
/// matched to it.
pub fn compose(proto: Protocol, out: &mut Vec<u8>, op: Op, keys: &Keys, args: &Args, value: &[u8], opaque: u32) {
    match proto {
        Protocol::Text => text::compose_text(out, op, keys, args, value),
        Protocol::Meta => meta::compose(out, op, keys, args, value, opaque),
        Protocol::Binary => binary::compose_binary(out, op, keys, args, value, opaque),
    }
}

/// Parses the reply to `op` on `keys` (sent with `opaque`) from the front of `buf`, returning it
/// and the number of bytes it used. A multi-get's hits go to `hits` (cleared first), their data
/// as ranges of `buf`.
pub fn parse<'a>(
    proto: Protocol,
    op: Op,
    keys: &Keys,
    opaque: u32,
    buf: &'a [u8],
    hits: &mut Vec<MultiHit>,
) -> Result<(Reply<'a>, usize), WireError> {
    hits.clear();
    match proto {
        Protocol::Text => text::parse_text(op, keys, buf, hits),
        Protocol::Meta => meta::parse(op, keys, opaque, buf, hits),
        Protocol::Binary => binary::parse_binary(op, keys, opaque, buf, hits),
    }
}

fn is_non_numeric(msg: &[u8]) -> bool {
    msg.windows(11).any(|w| w == b"non-numeric")
}

fn unexpected(op: Op, key: &[u8], buf: &[u8]) -> WireError {
    WireError::Unexpected(format!("{op} {}: unexpected reply {}", show(key), line(buf)))
}

/// The first line of `buf`, for an error message.
fn line(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    show(&buf[..end])
}

/// Bytes for an error message: quoted, escaped, cut at 80 bytes.
pub fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(80)];
    let mut s = format!("\"{}\"", cut.escape_ascii());
    if cut.len() < bytes.len() {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

#[cfg(test)]
mod tests;
