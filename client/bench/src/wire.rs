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

use std::fmt;
use std::ops::Range;

use riven_memcache::binary::{self, ArithExtras, Opcode, Status, StoreExtras};
use riven_memcache::text::{self, StoreCmd};

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

/// Binary extras of a multi-get frame and the end marker share the request's opaque.
const NO_CREATE: u32 = ArithExtras::NO_CREATE;

/// Appends one request for `op` on `keys` (one key, or several for [`Op::MultiGet`]) to `out`.
/// `value` is the data of a store; `opaque` tags a binary or meta request so its reply can be
/// matched to it.
pub fn compose(proto: Protocol, out: &mut Vec<u8>, op: Op, keys: &Keys, args: &Args, value: &[u8], opaque: u32) {
    match proto {
        Protocol::Text => compose_text(out, op, keys, args, value),
        Protocol::Meta => meta::compose(out, op, keys, args, value, opaque),
        Protocol::Binary => compose_binary(out, op, keys, args, value, opaque),
    }
}

fn compose_text(out: &mut Vec<u8>, op: Op, keys: &Keys, a: &Args, value: &[u8]) {
    use text::client as c;
    let key = keys.first();
    let exptime = i64::from(a.exptime);
    match op {
        Op::Get => c::get(out, false, [key]),
        Op::Gets => c::get(out, true, [key]),
        Op::MultiGet => c::get(out, false, keys.iter()),
        Op::Gat => c::gat(out, false, exptime, [key]),
        Op::Touch => c::touch(out, key, exptime, false),
        Op::Set => c::store(out, StoreCmd::Set, key, a.flags, exptime, value, 0, false),
        Op::Add => c::store(out, StoreCmd::Add, key, a.flags, exptime, value, 0, false),
        Op::Replace => c::store(out, StoreCmd::Replace, key, a.flags, exptime, value, 0, false),
        Op::Append => c::store(out, StoreCmd::Append, key, 0, 0, value, 0, false),
        Op::Prepend => c::store(out, StoreCmd::Prepend, key, 0, 0, value, 0, false),
        Op::Cas => c::store(out, StoreCmd::Cas, key, a.flags, exptime, value, a.cas, false),
        Op::Incr => c::arith(out, true, key, a.delta, false),
        Op::Decr => c::arith(out, false, key, a.delta, false),
        Op::Delete => c::delete(out, key, false),
    }
}

fn compose_binary(out: &mut Vec<u8>, op: Op, keys: &Keys, a: &Args, value: &[u8], opaque: u32) {
    let key = keys.first();
    let store = StoreExtras {
        flags: a.flags,
        exptime: a.exptime,
    }
    .to_bytes();
    let expiry = binary::u32_extras(a.exptime);
    let arith = ArithExtras {
        delta: a.delta,
        initial: 0,
        exptime: NO_CREATE,
    }
    .to_bytes();
    let (opcode, extras, value, cas): (Opcode, &[u8], &[u8], u64) = match op {
        Op::Get | Op::Gets => (Opcode::GET, &[], &[], 0),
        Op::Gat => (Opcode::GAT, &expiry, &[], 0),
        Op::Touch => (Opcode::TOUCH, &expiry, &[], 0),
        Op::Set => (Opcode::SET, &store, value, 0),
        Op::Add => (Opcode::ADD, &store, value, 0),
        Op::Replace => (Opcode::REPLACE, &store, value, 0),
        Op::Append => (Opcode::APPEND, &[], value, 0),
        Op::Prepend => (Opcode::PREPEND, &[], value, 0),
        Op::Cas => (Opcode::SET, &store, value, a.cas),
        Op::Incr => (Opcode::INCREMENT, &arith, &[], 0),
        Op::Decr => (Opcode::DECREMENT, &arith, &[], 0),
        Op::Delete => (Opcode::DELETE, &[], &[], 0),
        Op::MultiGet => {
            for k in keys.iter() {
                binary_request(out, Opcode::GETKQ, opaque, k, &[], &[], 0);
            }
            binary_request(out, Opcode::NOOP, opaque, &[], &[], &[], 0);
            return;
        }
    };
    binary_request(out, opcode, opaque, key, extras, value, cas);
}

fn binary_request(out: &mut Vec<u8>, opcode: Opcode, opaque: u32, key: &[u8], extras: &[u8], value: &[u8], cas: u64) {
    let req = binary::Request {
        opaque,
        cas,
        extras,
        key,
        value,
        ..binary::Request::new(opcode)
    };
    // Keys are at most 250 bytes and values far below 4 GiB, so composing cannot fail.
    let _ = binary::compose_request(out, &req);
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
        Protocol::Text => parse_text(op, keys, buf, hits),
        Protocol::Meta => meta::parse(op, keys, opaque, buf, hits),
        Protocol::Binary => parse_binary(op, keys, opaque, buf, hits),
    }
}

fn parse_text<'a>(
    op: Op,
    keys: &Keys,
    buf: &'a [u8],
    hits: &mut Vec<MultiHit>,
) -> Result<(Reply<'a>, usize), WireError> {
    use text::client::{parse_response, ParseError, Response};
    let key = keys.first();
    let next = |at: usize| {
        parse_response(&buf[at..]).map_err(|e| match e {
            ParseError::Incomplete => WireError::Incomplete,
            ParseError::Invalid => unexpected(op, key, &buf[at..]),
        })
    };
    let (first, n) = next(0)?;
    let reply = match (op, first) {
        (Op::Get | Op::Gets | Op::Gat, Response::End) => Reply::Miss,
        (
            Op::Get | Op::Gets | Op::Gat,
            Response::Value {
                key: k,
                flags,
                cas,
                data,
            },
        ) => {
            if k != key {
                return Err(WireError::Unexpected(format!(
                    "{op} {}: VALUE for another key {}",
                    show(key),
                    show(k)
                )));
            }
            if op == Op::Gets && cas.is_none() {
                return Err(WireError::Unexpected(format!(
                    "gets {}: VALUE without a CAS unique",
                    show(key)
                )));
            }
            // A single-key get ends with END after the value.
            return match next(n) {
                Ok((Response::End, m)) => Ok((
                    Reply::Hit {
                        flags: Some(flags),
                        cas,
                        data,
                    },
                    n + m,
                )),
                Err(WireError::Incomplete) => Err(WireError::Incomplete),
                _ => Err(WireError::Unexpected(format!(
                    "{op} {}: after the value, {} instead of END",
                    show(key),
                    line(&buf[n..])
                ))),
            };
        }
        (Op::MultiGet, _) => {
            let mut at = 0;
            let mut from = 0;
            loop {
                let (r, used) = next(at)?;
                match r {
                    Response::End => return Ok((Reply::Multi, at + used)),
                    Response::Value {
                        key: k,
                        flags,
                        cas,
                        data,
                    } => {
                        let Some(pos) = keys.position(k, from) else {
                            return Err(WireError::Unexpected(format!(
                                "multi-get: VALUE for {}, not a key requested (or out of order)",
                                show(k)
                            )));
                        };
                        let start = at + used - data.len() - 2;
                        hits.push(MultiHit {
                            pos,
                            flags: Some(flags),
                            cas,
                            data: start..start + data.len(),
                        });
                        from = pos + 1;
                    }
                    _ => return Err(unexpected(op, key, &buf[at..])),
                }
                at += used;
            }
        }
        (Op::Touch, Response::Touched) => Reply::Touched,
        (Op::Set, Response::Stored) => Reply::Stored { cas: None },
        (Op::Add | Op::Replace | Op::Append | Op::Prepend | Op::Cas, Response::Stored) => Reply::Stored { cas: None },
        (Op::Add | Op::Replace | Op::Append | Op::Prepend, Response::NotStored) => Reply::NotStored,
        (Op::Cas, Response::Exists) => Reply::Exists,
        (Op::Incr | Op::Decr, Response::Number(v)) => Reply::Number(v),
        (Op::Incr | Op::Decr, Response::ClientError(m)) if is_non_numeric(m) => Reply::NonNumeric,
        (Op::Delete, Response::Deleted) => Reply::Deleted,
        (Op::Touch | Op::Cas | Op::Incr | Op::Decr | Op::Delete, Response::NotFound) => Reply::NotFound,
        _ => return Err(unexpected(op, key, buf)),
    };
    Ok((reply, n))
}

fn is_non_numeric(msg: &[u8]) -> bool {
    msg.windows(11).any(|w| w == b"non-numeric")
}

fn parse_binary<'a>(
    op: Op,
    keys: &Keys,
    opaque: u32,
    buf: &'a [u8],
    hits: &mut Vec<MultiHit>,
) -> Result<(Reply<'a>, usize), WireError> {
    if op == Op::MultiGet {
        let mut at = 0;
        let mut from = 0;
        loop {
            let (res, used) = binary_frame(op, opaque, &buf[at..], &[Opcode::GETKQ, Opcode::NOOP])?;
            if res.opcode == Opcode::NOOP {
                return Ok((Reply::Multi, at + used));
            }
            if res.status != Status::SUCCESS {
                return Err(WireError::Unexpected(format!(
                    "binary GETKQ: status {:?} for {} (a quiet get answers hits only)",
                    res.status,
                    show(res.key)
                )));
            }
            let Some(pos) = keys.position(res.key, from) else {
                return Err(WireError::Unexpected(format!(
                    "binary GETKQ: value for {}, not a key requested (or out of order)",
                    show(res.key)
                )));
            };
            let flags = binary_flags(op, res.extras)?;
            // The value is the last thing in the frame.
            let start = at + used - res.value.len();
            hits.push(MultiHit {
                pos,
                flags: Some(flags),
                cas: Some(res.cas),
                data: start..start + res.value.len(),
            });
            from = pos + 1;
            at += used;
        }
    }
    let want = match op {
        Op::Get | Op::Gets => Opcode::GET,
        Op::Gat => Opcode::GAT,
        Op::Touch => Opcode::TOUCH,
        Op::Set | Op::Cas => Opcode::SET,
        Op::Add => Opcode::ADD,
        Op::Replace => Opcode::REPLACE,
        Op::Append => Opcode::APPEND,
        Op::Prepend => Opcode::PREPEND,
        Op::Incr => Opcode::INCREMENT,
        Op::Decr => Opcode::DECREMENT,
        Op::Delete => Opcode::DELETE,
        Op::MultiGet => Opcode::GETKQ,
    };
    let (res, n) = binary_frame(op, opaque, buf, &[want])?;
    let reply = match (op, res.status) {
        (Op::Get | Op::Gets | Op::Gat, Status::SUCCESS) => Reply::Hit {
            flags: Some(binary_flags(op, res.extras)?),
            cas: Some(res.cas),
            data: res.value,
        },
        (Op::Get | Op::Gets | Op::Gat, Status::KEY_ENOENT) => Reply::Miss,
        (Op::Touch, Status::SUCCESS) => Reply::Touched,
        (Op::Set | Op::Add | Op::Replace | Op::Append | Op::Prepend | Op::Cas, Status::SUCCESS) => {
            Reply::Stored { cas: Some(res.cas) }
        }
        // memcached's binary protocol tells why a conditional store failed in its status.
        (Op::Add, Status::KEY_EEXISTS) => Reply::NotStored,
        (Op::Replace, Status::KEY_ENOENT) => Reply::NotStored,
        (Op::Append | Op::Prepend, Status::NOT_STORED) => Reply::NotStored,
        (Op::Cas, Status::KEY_EEXISTS) => Reply::Exists,
        (Op::Incr | Op::Decr, Status::SUCCESS) => match binary::parse_u64_value(res.value) {
            Some(v) => Reply::Number(v),
            None => {
                return Err(WireError::Unexpected(format!(
                    "binary {op}: {} bytes of value instead of an 8-byte number",
                    res.value.len()
                )))
            }
        },
        (Op::Incr | Op::Decr, Status::DELTA_BADVAL) => Reply::NonNumeric,
        (Op::Delete, Status::SUCCESS) => Reply::Deleted,
        (Op::Touch | Op::Cas | Op::Incr | Op::Decr | Op::Delete, Status::KEY_ENOENT) => Reply::NotFound,
        (_, status) => {
            return Err(WireError::Unexpected(format!(
                "binary {op} {}: status {status:?} {}",
                show(keys.first()),
                show(res.value)
            )))
        }
    };
    Ok((reply, n))
}

fn binary_flags(op: Op, extras: &[u8]) -> Result<u32, WireError> {
    binary::parse_u32_extras(extras).ok_or_else(|| {
        WireError::Unexpected(format!(
            "binary {op}: {} bytes of extras instead of 4 flags",
            extras.len()
        ))
    })
}

/// Frames one binary reply and checks it answers one of `want` with `opaque`.
fn binary_frame<'a>(
    op: Op,
    opaque: u32,
    buf: &'a [u8],
    want: &[Opcode],
) -> Result<(binary::Response<'a>, usize), WireError> {
    // Judge the magic byte at once: a text error line is shorter than a binary header and would
    // otherwise be waited on until the timeout.
    if let Some(&magic) = buf.first() {
        if magic != binary::MAGIC_RESPONSE {
            return Err(WireError::Unexpected(format!(
                "binary {op}: reply starts with {magic:#04x}, not the response magic: {}",
                line(buf)
            )));
        }
    }
    let (res, n) = binary::parse_response(buf).map_err(|e| match e {
        binary::ParseError::Incomplete => WireError::Incomplete,
        e => WireError::Unexpected(format!("binary {op}: cannot frame the reply: {e}")),
    })?;
    if !want.contains(&res.opcode) || res.opaque != opaque {
        return Err(WireError::Unexpected(format!(
            "binary {op}: reply for opcode {:#04x} opaque {} (expected {:#04x} opaque {opaque}): replies lost or reordered",
            res.opcode.0, res.opaque, want[0].0
        )));
    }
    Ok((res, n))
}

/// The meta commands. The opaque comes back on every reply but `mn`'s and errors, so a lost or
/// reordered reply is caught whatever it was.
mod meta {
    use riven_memcache::meta::client::{self as mc, ErrorKind, Flag, ParseError, Response, ReturnFlags};
    use riven_memcache::meta::{ArithMode as Arith, Code, SetMode as Mode};

    use super::{is_non_numeric, line, show, Args, Keys, MultiHit, Op, Reply, WireError};

    pub(super) fn compose(out: &mut Vec<u8>, op: Op, keys: &Keys, a: &Args, value: &[u8], opaque: u32) {
        use Flag::*;
        let mut num = itoa::Buffer::new();
        let o = Opaque(num.format(opaque).as_bytes());
        let key = keys.first();
        let ttl = Ttl(i32::try_from(a.exptime).unwrap_or(i32::MAX));
        let set = |out: &mut Vec<u8>, flags: &[Flag<'_>]| mc::compose_set(out, key, value, flags);
        // Keys come from a validated key space and the flags are distinct, so composing cannot
        // fail; a request that did would go unanswered and the run would time out loudly.
        let _ = match op {
            Op::Get => mc::compose_get(out, key, &[ReturnClientFlags, ReturnValue, o]),
            Op::Gets => mc::compose_get(out, key, &[ReturnClientFlags, ReturnValue, ReturnCas, o]),
            Op::Gat => mc::compose_get(out, key, &[ReturnClientFlags, ReturnValue, ttl, o]),
            Op::Touch => mc::compose_get(out, key, &[ttl, o]),
            Op::MultiGet => {
                for k in keys.iter() {
                    let _ = mc::compose_get(out, k, &[ReturnClientFlags, ReturnValue, ReturnKey, Quiet, o]);
                }
                mc::compose_noop(out);
                Ok(())
            }
            Op::Set => set(out, &[ClientFlags(a.flags), ttl, ReturnCas, o]),
            Op::Add => set(out, &[ClientFlags(a.flags), ttl, SetMode(Mode::Add), ReturnCas, o]),
            Op::Replace => set(out, &[ClientFlags(a.flags), ttl, SetMode(Mode::Replace), ReturnCas, o]),
            Op::Append => set(out, &[SetMode(Mode::Append), ReturnCas, o]),
            Op::Prepend => set(out, &[SetMode(Mode::Prepend), ReturnCas, o]),
            Op::Cas => set(out, &[ClientFlags(a.flags), ttl, CompareCas(a.cas), ReturnCas, o]),
            Op::Incr => mc::compose_arith(out, key, &[Delta(a.delta), ReturnValue, o]),
            Op::Decr => mc::compose_arith(out, key, &[ArithMode(Arith::Decr), Delta(a.delta), ReturnValue, o]),
            Op::Delete => mc::compose_delete(out, key, &[o]),
        };
    }

    fn frame<'a>(op: Op, key: &[u8], buf: &'a [u8]) -> Result<(Response<'a>, usize), WireError> {
        mc::parse_response(buf).map_err(|e| match e {
            ParseError::Incomplete => WireError::Incomplete,
            ParseError::Invalid => {
                WireError::Unexpected(format!("meta {op} {}: not a meta reply: {}", show(key), line(buf)))
            }
        })
    }

    fn check_opaque(op: Op, key: &[u8], flags: ReturnFlags<'_>, opaque: u32) -> Result<(), WireError> {
        let mut num = itoa::Buffer::new();
        let want = num.format(opaque).as_bytes();
        if flags.opaque() == Some(want) {
            return Ok(());
        }
        Err(WireError::Unexpected(format!(
            "meta {op} {}: reply with opaque {} (expected O{opaque}): replies lost or reordered",
            show(key),
            flags.opaque().map(show).unwrap_or_else(|| "none".into())
        )))
    }

    fn client_flags(op: Op, key: &[u8], flags: ReturnFlags<'_>, buf: &[u8]) -> Result<u32, WireError> {
        flags.client_flags().ok_or_else(|| {
            WireError::Unexpected(format!(
                "meta {op} {}: value without its flags: {}",
                show(key),
                line(buf)
            ))
        })
    }

    pub(super) fn parse<'a>(
        op: Op,
        keys: &Keys,
        opaque: u32,
        buf: &'a [u8],
        hits: &mut Vec<MultiHit>,
    ) -> Result<(Reply<'a>, usize), WireError> {
        let key = keys.first();
        if op == Op::MultiGet {
            let mut at = 0;
            let mut from = 0;
            loop {
                let (res, used) = frame(op, key, &buf[at..])?;
                match res {
                    Response::Noop => return Ok((Reply::Multi, at + used)),
                    Response::Value { flags, data } => {
                        check_opaque(op, key, flags, opaque)?;
                        let k = flags.key().unwrap_or_default();
                        let Some(pos) = keys.position(k, from) else {
                            return Err(WireError::Unexpected(format!(
                                "meta multi-get: value for {}, not a key requested (or out of order)",
                                show(k)
                            )));
                        };
                        let start = at + used - data.len() - 2;
                        hits.push(MultiHit {
                            pos,
                            flags: Some(client_flags(op, k, flags, &buf[at..])?),
                            cas: None,
                            data: start..start + data.len(),
                        });
                        from = pos + 1;
                    }
                    _ => {
                        return Err(WireError::Unexpected(format!(
                            "meta multi-get: {} (a quiet mg answers hits only)",
                            line(&buf[at..])
                        )))
                    }
                }
                at += used;
            }
        }

        let (res, n) = frame(op, key, buf)?;
        if let Response::Error {
            kind: ErrorKind::Client,
            message,
        } = res
        {
            // memcached's non-numeric error carries no opaque; it is the only error expected.
            if matches!(op, Op::Incr | Op::Decr) && is_non_numeric(message) {
                return Ok((Reply::NonNumeric, n));
            }
        }
        let flags = match res {
            Response::Value { flags, .. } | Response::Status { flags, .. } => flags,
            _ => return Err(WireError::Unexpected(format!("meta {op} {}: {}", show(key), line(buf)))),
        };
        check_opaque(op, key, flags, opaque)?;
        use Code::*;
        let reply = match (op, res) {
            (Op::Get | Op::Gets | Op::Gat, Response::Value { flags, data }) => {
                let cas = flags.cas();
                if op == Op::Gets && cas.is_none() {
                    return Err(WireError::Unexpected(format!(
                        "meta gets {}: value without its CAS",
                        show(key)
                    )));
                }
                Reply::Hit {
                    flags: Some(client_flags(op, key, flags, buf)?),
                    cas,
                    data,
                }
            }
            (Op::Get | Op::Gets | Op::Gat, Response::Status { code: En, .. }) => Reply::Miss,
            (Op::Touch, Response::Status { code: Hd, .. }) => Reply::Touched,
            (Op::Touch, Response::Status { code: En, .. }) => Reply::NotFound,
            (
                Op::Set | Op::Add | Op::Replace | Op::Append | Op::Prepend | Op::Cas,
                Response::Status { code: Hd, flags },
            ) => Reply::Stored { cas: flags.cas() },
            (Op::Add | Op::Replace | Op::Append | Op::Prepend, Response::Status { code: Ns, .. }) => Reply::NotStored,
            (Op::Cas, Response::Status { code: Ex, .. }) => Reply::Exists,
            (Op::Cas | Op::Incr | Op::Decr | Op::Delete, Response::Status { code: Nf, .. }) => Reply::NotFound,
            (Op::Incr | Op::Decr, Response::Value { data, .. }) => {
                match std::str::from_utf8(data).ok().and_then(|s| s.parse().ok()) {
                    Some(v) => Reply::Number(v),
                    None => {
                        return Err(WireError::Unexpected(format!(
                            "meta {op} {}: value {} is not a number",
                            show(key),
                            show(data)
                        )))
                    }
                }
            }
            (Op::Delete, Response::Status { code: Hd, .. }) => Reply::Deleted,
            _ => return Err(WireError::Unexpected(format!("meta {op} {}: {}", show(key), line(buf)))),
        };
        Ok((reply, n))
    }
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
