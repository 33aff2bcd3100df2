//! The requests the load tools send and the replies they accept, over each protocol, composed and
//! parsed with `riven-proto`'s client side.
//!
//! Each request expects exactly one reply, and a reply is accepted only if it is the one a
//! correct server gives to that request: anything else (an error line, a reply for another
//! opcode or opaque, a value under another key) is an [`WireError::Unexpected`] that ends the run,
//! because a load tool that shrugs off odd replies would report a broken server as a fast one.

use std::fmt;

use riven_proto::binary::{self, Opcode, Status, StoreExtras};
use riven_proto::text::{self, StoreCmd};

/// The wire protocol a run speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Classic text commands (`get`, `set`).
    Text,
    /// Meta commands (`mg`, `ms`).
    Meta,
    /// The binary protocol (`GET`, `SET`).
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

/// The operations a load run issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Set,
}

/// A reply, as far as the load tools care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A value, with its flags when the protocol returned them.
    Hit {
        flags: Option<u32>,
        data: &'a [u8],
    },
    Miss,
    Stored,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The reply has not fully arrived: read more and parse again from the same start.
    Incomplete,
    /// Not the reply a correct server gives to this request.
    Unexpected(String),
}

/// Appends one request for `op` on `key` to `out`. `value` is the data of a set (ignored by a
/// get); `opaque` tags a binary or meta request so its reply can be matched to it.
pub fn compose(proto: Protocol, out: &mut Vec<u8>, op: Op, key: &[u8], flags: u32, value: &[u8], opaque: u32) {
    match (proto, op) {
        (Protocol::Text, Op::Get) => text::client::get(out, false, [key]),
        (Protocol::Text, Op::Set) => text::client::store(out, StoreCmd::Set, key, flags, 0, value, 0, false),
        (Protocol::Meta, _) => meta::compose(out, op, key, flags, value, opaque),
        (Protocol::Binary, Op::Get) => {
            let req = binary::Request {
                opaque,
                key,
                ..binary::Request::new(Opcode::GET)
            };
            // Keys are at most 250 bytes and values far below 4 GiB, so composing cannot fail.
            let _ = binary::compose_request(out, &req);
        }
        (Protocol::Binary, Op::Set) => {
            let extras = StoreExtras { flags, exptime: 0 }.to_bytes();
            let req = binary::Request {
                opaque,
                extras: &extras,
                key,
                value,
                ..binary::Request::new(Opcode::SET)
            };
            let _ = binary::compose_request(out, &req);
        }
    }
}

/// Parses the reply to `op` on `key` (sent with `opaque`) from the front of `buf`, returning it
/// and the number of bytes it used.
pub fn parse<'a>(
    proto: Protocol,
    op: Op,
    key: &[u8],
    opaque: u32,
    buf: &'a [u8],
) -> Result<(Reply<'a>, usize), WireError> {
    match proto {
        Protocol::Text => parse_text(op, key, buf),
        Protocol::Meta => meta::parse(op, key, opaque, buf),
        Protocol::Binary => parse_binary(op, opaque, buf),
    }
}

fn parse_text<'a>(op: Op, key: &[u8], buf: &'a [u8]) -> Result<(Reply<'a>, usize), WireError> {
    use text::client::{parse_response, ParseError, Response};
    let first = parse_response(buf).map_err(|e| match e {
        ParseError::Incomplete => WireError::Incomplete,
        ParseError::Invalid => unexpected(op, buf),
    })?;
    match (op, first) {
        (Op::Get, (Response::End, n)) => Ok((Reply::Miss, n)),
        (
            Op::Get,
            (
                Response::Value {
                    key: k, flags, data, ..
                },
                n,
            ),
        ) => {
            if k != key {
                return Err(WireError::Unexpected(format!(
                    "get {}: VALUE for another key {}",
                    show(key),
                    show(k)
                )));
            }
            // A single-key get ends with END after the value.
            match parse_response(&buf[n..]) {
                Ok((Response::End, m)) => Ok((
                    Reply::Hit {
                        flags: Some(flags),
                        data,
                    },
                    n + m,
                )),
                Err(ParseError::Incomplete) => Err(WireError::Incomplete),
                _ => Err(WireError::Unexpected(format!(
                    "get {}: after the value, {} instead of END",
                    show(key),
                    line(&buf[n..])
                ))),
            }
        }
        (Op::Set, (Response::Stored, n)) => Ok((Reply::Stored, n)),
        _ => Err(unexpected(op, buf)),
    }
}

fn parse_binary(op: Op, opaque: u32, buf: &[u8]) -> Result<(Reply<'_>, usize), WireError> {
    // Judge the magic byte at once: a text error line is shorter than a binary header and would
    // otherwise be waited on until the timeout.
    if let Some(&magic) = buf.first() {
        if magic != binary::MAGIC_RESPONSE {
            return Err(WireError::Unexpected(format!(
                "binary {op:?}: reply starts with {magic:#04x}, not the response magic: {}",
                line(buf)
            )));
        }
    }
    let (res, n) = binary::parse_response(buf).map_err(|e| match e {
        binary::ParseError::Incomplete => WireError::Incomplete,
        e => WireError::Unexpected(format!("binary {op:?}: cannot frame the reply: {e}")),
    })?;
    let want = match op {
        Op::Get => Opcode::GET,
        Op::Set => Opcode::SET,
    };
    if res.opcode != want || res.opaque != opaque {
        return Err(WireError::Unexpected(format!(
            "binary {op:?}: reply for opcode {:#04x} opaque {} (expected {:#04x} opaque {opaque}): replies lost or reordered",
            res.opcode.0, res.opaque, want.0
        )));
    }
    match (op, res.status) {
        (Op::Get, Status::SUCCESS) => match binary::parse_u32_extras(res.extras) {
            Some(flags) => Ok((
                Reply::Hit {
                    flags: Some(flags),
                    data: res.value,
                },
                n,
            )),
            None => Err(WireError::Unexpected(format!(
                "binary GET: {} bytes of extras instead of 4 flags",
                res.extras.len()
            ))),
        },
        (Op::Get, Status::KEY_ENOENT) => Ok((Reply::Miss, n)),
        (Op::Set, Status::SUCCESS) => Ok((Reply::Stored, n)),
        (_, status) => Err(WireError::Unexpected(format!(
            "binary {op:?}: status {status:?} {}",
            show(res.value)
        ))),
    }
}

/// The meta commands: `mg <key> f v O<opaque>` and `ms <key> <len> F<flags> O<opaque>`. The
/// opaque comes back on every reply, a miss included, so a lost or reordered reply is caught
/// whatever it was.
mod meta {
    use riven_proto::meta::client::{self as mc, Flag, ParseError, Response};
    use riven_proto::meta::Code;

    use super::{line, show, Op, Reply, WireError};

    pub(super) fn compose(out: &mut Vec<u8>, op: Op, key: &[u8], flags: u32, value: &[u8], opaque: u32) {
        let mut num = itoa::Buffer::new();
        let o = Flag::Opaque(num.format(opaque).as_bytes());
        // Keys come from a validated key space and the flags are distinct, so composing cannot
        // fail; a request that did would go unanswered and the run would time out loudly.
        let _ = match op {
            Op::Get => mc::compose_get(out, key, &[Flag::ReturnClientFlags, Flag::ReturnValue, o]),
            Op::Set => mc::compose_set(out, key, value, &[Flag::ClientFlags(flags), o]),
        };
    }

    pub(super) fn parse<'a>(op: Op, key: &[u8], opaque: u32, buf: &'a [u8]) -> Result<(Reply<'a>, usize), WireError> {
        let (res, n) = mc::parse_response(buf).map_err(|e| match e {
            ParseError::Incomplete => WireError::Incomplete,
            ParseError::Invalid => WireError::Unexpected(format!("meta {op:?}: not a meta reply: {}", line(buf))),
        })?;
        let mut num = itoa::Buffer::new();
        let want = num.format(opaque).as_bytes();
        let returned = match res {
            Response::Value { flags, .. } | Response::Status { flags, .. } => flags,
            _ => {
                return Err(WireError::Unexpected(format!(
                    "meta {op:?} {}: {}",
                    show(key),
                    line(buf)
                )))
            }
        };
        if returned.opaque() != Some(want) {
            return Err(WireError::Unexpected(format!(
                "meta {op:?} {}: reply with opaque {} (expected O{opaque}): replies lost or reordered",
                show(key),
                returned.opaque().map(show).unwrap_or_else(|| "none".into())
            )));
        }
        match (op, res) {
            (Op::Get, Response::Value { flags, data }) => match flags.client_flags() {
                Some(f) => Ok((Reply::Hit { flags: Some(f), data }, n)),
                None => Err(WireError::Unexpected(format!(
                    "meta get {}: value without its flags: {}",
                    show(key),
                    line(buf)
                ))),
            },
            (Op::Get, Response::Status { code: Code::En, .. }) => Ok((Reply::Miss, n)),
            (Op::Set, Response::Status { code: Code::Hd, .. }) => Ok((Reply::Stored, n)),
            _ => Err(WireError::Unexpected(format!(
                "meta {op:?} {}: {}",
                show(key),
                line(buf)
            ))),
        }
    }
}

fn unexpected(op: Op, buf: &[u8]) -> WireError {
    WireError::Unexpected(format!("{op:?}: unexpected reply {}", line(buf)))
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
mod tests {
    use super::*;

    fn round_trip<'a>(
        proto: Protocol,
        reply: &'a [u8],
        op: Op,
        key: &[u8],
        opaque: u32,
    ) -> Result<(Reply<'a>, usize), WireError> {
        // Every split point but the last is incomplete.
        for cut in 0..reply.len() {
            assert_eq!(
                parse(proto, op, key, opaque, &reply[..cut]),
                Err(WireError::Incomplete),
                "cut {cut}"
            );
        }
        parse(proto, op, key, opaque, reply)
    }

    #[test]
    fn text_requests() {
        let mut out = Vec::new();
        compose(Protocol::Text, &mut out, Op::Get, b"k1", 0, b"", 0);
        compose(Protocol::Text, &mut out, Op::Set, b"k1", 7, b"abc", 0);
        assert_eq!(out, b"get k1\r\nset k1 7 0 3\r\nabc\r\n");
    }

    #[test]
    fn text_replies() {
        let hit = b"VALUE k1 7 3\r\nabc\r\nEND\r\n";
        assert_eq!(
            round_trip(Protocol::Text, hit, Op::Get, b"k1", 0),
            Ok((
                Reply::Hit {
                    flags: Some(7),
                    data: b"abc"
                },
                hit.len()
            ))
        );
        assert_eq!(
            round_trip(Protocol::Text, b"END\r\n", Op::Get, b"k1", 0),
            Ok((Reply::Miss, 5))
        );
        assert_eq!(
            round_trip(Protocol::Text, b"STORED\r\n", Op::Set, b"k1", 0),
            Ok((Reply::Stored, 8))
        );

        let bad = |reply: &[u8], op| match parse(Protocol::Text, op, b"k1", 0, reply) {
            Err(WireError::Unexpected(m)) => m,
            r => panic!("{r:?}"),
        };
        assert!(bad(b"VALUE k2 7 3\r\nabc\r\nEND\r\n", Op::Get).contains("another key"));
        assert!(bad(b"VALUE k1 7 3\r\nabc\r\nSTORED\r\n", Op::Get).contains("instead of END"));
        assert!(bad(b"SERVER_ERROR out of memory\r\n", Op::Set).contains("SERVER_ERROR"));
        assert!(bad(b"STORED\r\n", Op::Get).contains("STORED"));
        assert!(bad(b"END\r\n", Op::Set).contains("END"));
        assert!(bad(b"garbage\r\n", Op::Get).contains("garbage"));
    }

    fn binary_reply(opcode: Opcode, opaque: u32, status: Status, extras: &[u8], value: &[u8]) -> Vec<u8> {
        let res = binary::Response {
            extras,
            value,
            ..binary::Response::new(opcode, opaque, status)
        };
        let mut out = Vec::new();
        binary::compose_response(&mut out, &res).unwrap();
        out
    }

    #[test]
    fn binary_requests_and_replies() {
        let mut out = Vec::new();
        compose(Protocol::Binary, &mut out, Op::Set, b"k", 9, b"vv", 42);
        let (req, n) = binary::parse_request(&out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!(
            (req.opcode, req.opaque, req.key, req.value),
            (Opcode::SET, 42, &b"k"[..], &b"vv"[..])
        );
        assert_eq!(
            StoreExtras::parse(req.extras),
            Some(StoreExtras { flags: 9, exptime: 0 })
        );

        let hit = binary_reply(Opcode::GET, 5, Status::SUCCESS, &9u32.to_be_bytes(), b"vv");
        assert_eq!(
            round_trip(Protocol::Binary, &hit, Op::Get, b"k", 5),
            Ok((
                Reply::Hit {
                    flags: Some(9),
                    data: b"vv"
                },
                hit.len()
            ))
        );
        let miss = binary_reply(Opcode::GET, 5, Status::KEY_ENOENT, &[], b"Not found");
        assert_eq!(
            round_trip(Protocol::Binary, &miss, Op::Get, b"k", 5),
            Ok((Reply::Miss, miss.len()))
        );
        let stored = binary_reply(Opcode::SET, 6, Status::SUCCESS, &[], &[]);
        assert_eq!(
            round_trip(Protocol::Binary, &stored, Op::Set, b"k", 6),
            Ok((Reply::Stored, 24))
        );

        // Wrong opaque (a dropped reply), wrong opcode, error status, bad extras.
        for (reply, op, opaque) in [
            (hit.clone(), Op::Get, 4),
            (stored.clone(), Op::Get, 6),
            (
                binary_reply(Opcode::SET, 6, Status::E2BIG, &[], b"Too large."),
                Op::Set,
                6,
            ),
            (binary_reply(Opcode::GET, 6, Status::SUCCESS, &[], b"vv"), Op::Get, 6),
        ] {
            assert!(matches!(
                parse(Protocol::Binary, op, b"k", opaque, &reply),
                Err(WireError::Unexpected(_))
            ));
        }
        assert!(matches!(
            parse(Protocol::Binary, Op::Get, b"k", 0, b"VALUE k 0 1\r\n"),
            Err(WireError::Unexpected(_))
        ));
    }

    #[test]
    fn meta_requests_and_replies() {
        let mut out = Vec::new();
        compose(Protocol::Meta, &mut out, Op::Get, b"k1", 0, b"", 6);
        compose(Protocol::Meta, &mut out, Op::Set, b"k1", 7, b"abc", 5);
        assert_eq!(out, b"mg k1 f v O6\r\nms k1 3 F7 O5\r\nabc\r\n");

        // Replies as memcached 1.6.18 gives them.
        let hit = b"VA 3 f7 O6\r\nabc\r\n";
        assert_eq!(
            round_trip(Protocol::Meta, hit, Op::Get, b"k1", 6),
            Ok((
                Reply::Hit {
                    flags: Some(7),
                    data: b"abc"
                },
                hit.len()
            ))
        );
        assert_eq!(
            round_trip(Protocol::Meta, b"EN O7\r\n", Op::Get, b"k1", 7),
            Ok((Reply::Miss, 7))
        );
        assert_eq!(
            round_trip(Protocol::Meta, b"HD O5\r\n", Op::Set, b"k1", 5),
            Ok((Reply::Stored, 7))
        );

        for (reply, op, opaque) in [
            (&b"HD O4\r\n"[..], Op::Set, 5),
            (b"HD\r\n", Op::Set, 5),
            (b"EN O5\r\n", Op::Set, 5),
            (b"HD O5\r\n", Op::Get, 5),
            (b"NS O5\r\n", Op::Set, 5),
            (b"VA 3 O6\r\nabc\r\n", Op::Get, 6),
            (b"SERVER_ERROR out of memory\r\n", Op::Set, 5),
            (b"STORED\r\n", Op::Set, 5),
        ] {
            assert!(
                matches!(
                    parse(Protocol::Meta, op, b"k1", opaque, reply),
                    Err(WireError::Unexpected(_))
                ),
                "{}",
                show(reply)
            );
        }
    }

    #[test]
    fn protocol_names() {
        for p in Protocol::ALL {
            assert_eq!(p.name().parse::<Protocol>(), Ok(p));
        }
        assert!("udp".parse::<Protocol>().is_err());
        assert_eq!(show(b"a\r\n"), "\"a\\r\\n\"");
    }
}
