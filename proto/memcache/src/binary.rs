//! The memcached binary protocol (memcached 1.6).
//!
//! Every frame is a 24-byte header followed by a body of `extras`, `key` and `value`, in that
//! order; the header gives the length of the extras, of the key and of the whole body, so the value
//! length is what remains. All integers are big-endian.
//!
//! Server side: [`parse_request_header`] looks at a header alone, so a front end can act on the
//! lengths before the body arrives (memcached answers an oversized SET with E2BIG and discards the
//! body instead of buffering it); [`parse_request`] frames a whole request, borrowing extras, key
//! and value from the caller's buffer; [`compose_response`] writes a reply with one reservation.
//! Client side: [`compose_request`] and [`parse_response`], the mirror images.
//!
//! This module only frames bytes: which opcode needs which extras, and what memcached answers to
//! each request, belongs to the node's front end.

use std::fmt;

/// Length of the fixed header that starts every frame.
pub const HEADER_LEN: usize = 24;
/// First byte of a request.
pub const MAGIC_REQUEST: u8 = 0x80;
/// First byte of a response.
pub const MAGIC_RESPONSE: u8 = 0x81;

/// A command code. A newtype rather than an enum: servers must echo codes they do not know
/// (memcached answers "Unknown command" with the request's opcode), and clients may meet codes
/// from newer servers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const GET: Opcode = Opcode(0x00);
    pub const SET: Opcode = Opcode(0x01);
    pub const ADD: Opcode = Opcode(0x02);
    pub const REPLACE: Opcode = Opcode(0x03);
    pub const DELETE: Opcode = Opcode(0x04);
    pub const INCREMENT: Opcode = Opcode(0x05);
    pub const DECREMENT: Opcode = Opcode(0x06);
    pub const QUIT: Opcode = Opcode(0x07);
    pub const FLUSH: Opcode = Opcode(0x08);
    pub const GETQ: Opcode = Opcode(0x09);
    pub const NOOP: Opcode = Opcode(0x0a);
    pub const VERSION: Opcode = Opcode(0x0b);
    pub const GETK: Opcode = Opcode(0x0c);
    pub const GETKQ: Opcode = Opcode(0x0d);
    pub const APPEND: Opcode = Opcode(0x0e);
    pub const PREPEND: Opcode = Opcode(0x0f);
    pub const STAT: Opcode = Opcode(0x10);
    pub const SETQ: Opcode = Opcode(0x11);
    pub const ADDQ: Opcode = Opcode(0x12);
    pub const REPLACEQ: Opcode = Opcode(0x13);
    pub const DELETEQ: Opcode = Opcode(0x14);
    pub const INCREMENTQ: Opcode = Opcode(0x15);
    pub const DECREMENTQ: Opcode = Opcode(0x16);
    pub const QUITQ: Opcode = Opcode(0x17);
    pub const FLUSHQ: Opcode = Opcode(0x18);
    pub const APPENDQ: Opcode = Opcode(0x19);
    pub const PREPENDQ: Opcode = Opcode(0x1a);
    pub const VERBOSITY: Opcode = Opcode(0x1b);
    pub const TOUCH: Opcode = Opcode(0x1c);
    pub const GAT: Opcode = Opcode(0x1d);
    pub const GATQ: Opcode = Opcode(0x1e);
    pub const SASL_LIST_MECHS: Opcode = Opcode(0x20);
    pub const SASL_AUTH: Opcode = Opcode(0x21);
    pub const SASL_STEP: Opcode = Opcode(0x22);
    pub const GATK: Opcode = Opcode(0x23);
    pub const GATKQ: Opcode = Opcode(0x24);

    /// (quiet, loud) pairs: a quiet command is its loud twin that sends no reply on success
    /// (and, for the reads, none on a miss either).
    const QUIET_PAIRS: [(Opcode, Opcode); 14] = [
        (Opcode::GETQ, Opcode::GET),
        (Opcode::GETKQ, Opcode::GETK),
        (Opcode::SETQ, Opcode::SET),
        (Opcode::ADDQ, Opcode::ADD),
        (Opcode::REPLACEQ, Opcode::REPLACE),
        (Opcode::DELETEQ, Opcode::DELETE),
        (Opcode::INCREMENTQ, Opcode::INCREMENT),
        (Opcode::DECREMENTQ, Opcode::DECREMENT),
        (Opcode::QUITQ, Opcode::QUIT),
        (Opcode::FLUSHQ, Opcode::FLUSH),
        (Opcode::APPENDQ, Opcode::APPEND),
        (Opcode::PREPENDQ, Opcode::PREPEND),
        (Opcode::GATQ, Opcode::GAT),
        (Opcode::GATKQ, Opcode::GATK),
    ];

    /// Whether this is a quiet variant.
    pub fn is_quiet(self) -> bool {
        Self::QUIET_PAIRS.iter().any(|&(q, _)| q == self)
    }

    /// The loud twin of a quiet opcode; any other opcode is returned unchanged.
    pub fn loud(self) -> Opcode {
        Self::QUIET_PAIRS
            .iter()
            .find(|&&(q, _)| q == self)
            .map_or(self, |&(_, l)| l)
    }

    /// The quiet twin of an opcode, if it has one (a quiet opcode is its own twin).
    pub fn quiet(self) -> Option<Opcode> {
        Self::QUIET_PAIRS
            .iter()
            .find(|&&(q, l)| l == self || q == self)
            .map(|&(q, _)| q)
    }

    /// memcached's name for the opcode, if it is one memcached knows.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Opcode::GET => "GET",
            Opcode::SET => "SET",
            Opcode::ADD => "ADD",
            Opcode::REPLACE => "REPLACE",
            Opcode::DELETE => "DELETE",
            Opcode::INCREMENT => "INCREMENT",
            Opcode::DECREMENT => "DECREMENT",
            Opcode::QUIT => "QUIT",
            Opcode::FLUSH => "FLUSH",
            Opcode::GETQ => "GETQ",
            Opcode::NOOP => "NOOP",
            Opcode::VERSION => "VERSION",
            Opcode::GETK => "GETK",
            Opcode::GETKQ => "GETKQ",
            Opcode::APPEND => "APPEND",
            Opcode::PREPEND => "PREPEND",
            Opcode::STAT => "STAT",
            Opcode::SETQ => "SETQ",
            Opcode::ADDQ => "ADDQ",
            Opcode::REPLACEQ => "REPLACEQ",
            Opcode::DELETEQ => "DELETEQ",
            Opcode::INCREMENTQ => "INCREMENTQ",
            Opcode::DECREMENTQ => "DECREMENTQ",
            Opcode::QUITQ => "QUITQ",
            Opcode::FLUSHQ => "FLUSHQ",
            Opcode::APPENDQ => "APPENDQ",
            Opcode::PREPENDQ => "PREPENDQ",
            Opcode::VERBOSITY => "VERBOSITY",
            Opcode::TOUCH => "TOUCH",
            Opcode::GAT => "GAT",
            Opcode::GATQ => "GATQ",
            Opcode::SASL_LIST_MECHS => "SASL_LIST_MECHS",
            Opcode::SASL_AUTH => "SASL_AUTH",
            Opcode::SASL_STEP => "SASL_STEP",
            Opcode::GATK => "GATK",
            Opcode::GATKQ => "GATKQ",
            _ => return None,
        })
    }
}

impl fmt::Debug for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Opcode({:#04x})", self.0),
        }
    }
}

/// A response status. A newtype for the same reason as [`Opcode`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub u16);

impl Status {
    pub const SUCCESS: Status = Status(0x0000);
    pub const KEY_ENOENT: Status = Status(0x0001);
    pub const KEY_EEXISTS: Status = Status(0x0002);
    pub const E2BIG: Status = Status(0x0003);
    pub const EINVAL: Status = Status(0x0004);
    pub const NOT_STORED: Status = Status(0x0005);
    pub const DELTA_BADVAL: Status = Status(0x0006);
    pub const NOT_MY_VBUCKET: Status = Status(0x0007);
    pub const AUTH_ERROR: Status = Status(0x0020);
    pub const AUTH_CONTINUE: Status = Status(0x0021);
    pub const UNKNOWN_COMMAND: Status = Status(0x0081);
    pub const ENOMEM: Status = Status(0x0082);
    pub const NOT_SUPPORTED: Status = Status(0x0083);
    pub const EINTERNAL: Status = Status(0x0084);
    pub const EBUSY: Status = Status(0x0085);
    pub const ETMPFAIL: Status = Status(0x0086);

    /// The body memcached 1.6 sends with this error status (checked against memcached 1.6.18),
    /// or None for statuses it never sends with a message.
    pub fn message(self) -> Option<&'static str> {
        Some(match self {
            Status::KEY_ENOENT => "Not found",
            Status::KEY_EEXISTS => "Data exists for key.",
            Status::E2BIG => "Too large.",
            Status::EINVAL => "Invalid arguments",
            Status::NOT_STORED => "Not stored.",
            Status::DELTA_BADVAL => "Non-numeric server-side value for incr or decr",
            Status::AUTH_ERROR => "Auth failure.",
            Status::UNKNOWN_COMMAND => "Unknown command",
            Status::ENOMEM => "Out of memory",
            _ => return None,
        })
    }

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Status::SUCCESS => "SUCCESS",
            Status::KEY_ENOENT => "KEY_ENOENT",
            Status::KEY_EEXISTS => "KEY_EEXISTS",
            Status::E2BIG => "E2BIG",
            Status::EINVAL => "EINVAL",
            Status::NOT_STORED => "NOT_STORED",
            Status::DELTA_BADVAL => "DELTA_BADVAL",
            Status::NOT_MY_VBUCKET => "NOT_MY_VBUCKET",
            Status::AUTH_ERROR => "AUTH_ERROR",
            Status::AUTH_CONTINUE => "AUTH_CONTINUE",
            Status::UNKNOWN_COMMAND => "UNKNOWN_COMMAND",
            Status::ENOMEM => "ENOMEM",
            Status::NOT_SUPPORTED => "NOT_SUPPORTED",
            Status::EINTERNAL => "EINTERNAL",
            Status::EBUSY => "EBUSY",
            Status::ETMPFAIL => "ETMPFAIL",
            _ => return None,
        })
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Status({:#06x})", self.0),
        }
    }
}

/// Why bytes could not be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a whole frame yet: read more and call again with the same bytes and more.
    Incomplete,
    /// The first byte is not the magic expected (memcached closes the connection on this).
    BadMagic(u8),
    /// The header's key and extras lengths add up to more than its body length.
    BadLengths,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Incomplete => f.write_str("incomplete frame"),
            ParseError::BadMagic(m) => write!(f, "bad magic byte {m:#04x}"),
            ParseError::BadLengths => f.write_str("key and extras longer than the body"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Why a frame could not be written: a part is longer than its header field can express.
/// Nothing is written to the output when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComposeError {
    /// Extras longer than 255 bytes.
    ExtrasTooLong,
    /// Key longer than 65535 bytes.
    KeyTooLong,
    /// Body longer than 4 GiB - 1.
    BodyTooLong,
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComposeError::ExtrasTooLong => "extras longer than 255 bytes",
            ComposeError::KeyTooLong => "key longer than 65535 bytes",
            ComposeError::BodyTooLong => "body longer than 4 GiB",
        })
    }
}

impl std::error::Error for ComposeError {}

/// The fixed fields of a frame, as read from its first 24 bytes. The same layout serves requests
/// (where `vbucket_or_status` is the vbucket) and responses (where it is the status).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RawHeader {
    magic: u8,
    opcode: u8,
    key_len: u16,
    extras_len: u8,
    data_type: u8,
    vbucket_or_status: u16,
    body_len: u32,
    opaque: u32,
    cas: u64,
}

impl RawHeader {
    /// Reads a header; `buf` must hold at least [`HEADER_LEN`] bytes.
    fn read(buf: &[u8; HEADER_LEN]) -> RawHeader {
        let u16_at = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        RawHeader {
            magic: buf[0],
            opcode: buf[1],
            key_len: u16_at(2),
            extras_len: buf[4],
            data_type: buf[5],
            vbucket_or_status: u16_at(6),
            body_len: u32_at(8),
            opaque: u32_at(12),
            cas: (u64::from(u32_at(16)) << 32) | u64::from(u32_at(20)),
        }
    }

    /// Reads the header at the start of `buf`, checking the magic only once all 24 bytes are
    /// there (memcached waits for a whole header before it judges one).
    fn parse(buf: &[u8], magic: u8) -> Result<RawHeader, ParseError> {
        let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
            return Err(ParseError::Incomplete);
        };
        if head[0] != magic {
            return Err(ParseError::BadMagic(head[0]));
        }
        Ok(RawHeader::read(head))
    }

    fn lengths_valid(&self) -> bool {
        u32::from(self.key_len) + u32::from(self.extras_len) <= self.body_len
    }

    /// Splits the whole frame at the start of `buf` into its body's parts.
    fn split<'a>(&self, buf: &'a [u8]) -> Result<Parts<'a>, ParseError> {
        if !self.lengths_valid() {
            return Err(ParseError::BadLengths);
        }
        let used = HEADER_LEN + self.body_len as usize;
        let Some(frame) = buf.get(..used) else {
            return Err(ParseError::Incomplete);
        };
        let body = &frame[HEADER_LEN..];
        let (extras, rest) = body.split_at(usize::from(self.extras_len));
        let (key, value) = rest.split_at(usize::from(self.key_len));
        Ok(Parts {
            extras,
            key,
            value,
            used,
        })
    }

    /// Writes the header and `extras`, `key`, `value`, with a body length counting `tail_len`
    /// more bytes that the caller appends.
    fn compose(
        &self,
        out: &mut Vec<u8>,
        extras: &[u8],
        key: &[u8],
        value: &[u8],
        tail_len: usize,
    ) -> Result<(), ComposeError> {
        let extras_len = u8::try_from(extras.len()).map_err(|_| ComposeError::ExtrasTooLong)?;
        let key_len = u16::try_from(key.len()).map_err(|_| ComposeError::KeyTooLong)?;
        let body_len = extras
            .len()
            .checked_add(key.len())
            .and_then(|n| n.checked_add(value.len()))
            .and_then(|n| n.checked_add(tail_len))
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(ComposeError::BodyTooLong)?;
        out.reserve(HEADER_LEN + extras.len() + key.len() + value.len() + tail_len);
        // The header is built whole and copied once: a push per field, each checking the
        // capacity, cost the node's requests to memcached several times as many instructions.
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.magic;
        h[1] = self.opcode;
        h[2..4].copy_from_slice(&key_len.to_be_bytes());
        h[4] = extras_len;
        h[5] = self.data_type;
        h[6..8].copy_from_slice(&self.vbucket_or_status.to_be_bytes());
        h[8..12].copy_from_slice(&body_len.to_be_bytes());
        h[12..16].copy_from_slice(&self.opaque.to_be_bytes());
        h[16..24].copy_from_slice(&self.cas.to_be_bytes());
        out.extend_from_slice(&h);
        // Most frames lack one part or another: skip the copy call for it.
        for part in [extras, key, value] {
            if !part.is_empty() {
                out.extend_from_slice(part);
            }
        }
        Ok(())
    }
}

/// A framed body, and the bytes the frame used.
struct Parts<'a> {
    extras: &'a [u8],
    key: &'a [u8],
    value: &'a [u8],
    used: usize,
}

/// The header of a request, readable before its body has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub opcode: Opcode,
    pub key_len: u16,
    pub extras_len: u8,
    pub data_type: u8,
    pub vbucket: u16,
    /// Length of extras + key + value.
    pub body_len: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl RequestHeader {
    /// Bytes of header, extras and key: what memcached reads before it acts on a request.
    pub fn head_len(&self) -> usize {
        HEADER_LEN + usize::from(self.extras_len) + usize::from(self.key_len)
    }

    /// Bytes of the whole frame: header and body.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    /// Length of the value (body minus extras and key), or None when extras and key alone are
    /// longer than the body.
    pub fn value_len(&self) -> Option<usize> {
        let head = u32::from(self.key_len) + u32::from(self.extras_len);
        self.body_len.checked_sub(head).map(|v| v as usize)
    }

    fn from_raw(h: &RawHeader) -> RequestHeader {
        RequestHeader {
            opcode: Opcode(h.opcode),
            key_len: h.key_len,
            extras_len: h.extras_len,
            data_type: h.data_type,
            vbucket: h.vbucket_or_status,
            body_len: h.body_len,
            opaque: h.opaque,
            cas: h.cas,
        }
    }
}

/// The header of a response, readable before its body has arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    pub opcode: Opcode,
    pub key_len: u16,
    pub extras_len: u8,
    pub data_type: u8,
    pub status: Status,
    /// Length of extras + key + value.
    pub body_len: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl ResponseHeader {
    /// Bytes of the whole frame: header and body.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    /// Length of the value, or None when extras and key alone are longer than the body.
    pub fn value_len(&self) -> Option<usize> {
        let head = u32::from(self.key_len) + u32::from(self.extras_len);
        self.body_len.checked_sub(head).map(|v| v as usize)
    }
}

/// A whole request. Extras, key and value borrow from the buffer it was parsed from; lengths are
/// those of the slices, so a request composes back to the exact bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub opcode: Opcode,
    pub data_type: u8,
    pub vbucket: u16,
    pub opaque: u32,
    pub cas: u64,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Request<'a> {
    /// A request with the given opcode and everything else zero or empty.
    pub fn new(opcode: Opcode) -> Request<'a> {
        Request {
            opcode,
            data_type: 0,
            vbucket: 0,
            opaque: 0,
            cas: 0,
            extras: &[],
            key: &[],
            value: &[],
        }
    }

    fn raw(&self) -> RawHeader {
        RawHeader {
            magic: MAGIC_REQUEST,
            opcode: self.opcode.0,
            key_len: 0,
            extras_len: 0,
            data_type: self.data_type,
            vbucket_or_status: self.vbucket,
            body_len: 0,
            opaque: self.opaque,
            cas: self.cas,
        }
    }
}

/// A whole response, borrowing like [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response<'a> {
    pub opcode: Opcode,
    pub data_type: u8,
    pub status: Status,
    pub opaque: u32,
    pub cas: u64,
    pub extras: &'a [u8],
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Response<'a> {
    /// A reply to `opcode`/`opaque` with the given status and everything else zero or empty.
    pub fn new(opcode: Opcode, opaque: u32, status: Status) -> Response<'a> {
        Response {
            opcode,
            data_type: 0,
            status,
            opaque,
            cas: 0,
            extras: &[],
            key: &[],
            value: &[],
        }
    }

    fn raw(&self) -> RawHeader {
        RawHeader {
            magic: MAGIC_RESPONSE,
            opcode: self.opcode.0,
            key_len: 0,
            extras_len: 0,
            data_type: self.data_type,
            vbucket_or_status: self.status.0,
            body_len: 0,
            opaque: self.opaque,
            cas: self.cas,
        }
    }
}

/// Server side: reads the header of the request at the start of `buf`, body or no body.
/// `Incomplete` below 24 bytes; `BadMagic` if the first byte is not 0x80. Lengths are not checked
/// (see [`RequestHeader::value_len`]), because memcached answers inconsistent lengths with a reply
/// that echoes the header's opcode and opaque.
pub fn parse_request_header(buf: &[u8]) -> Result<RequestHeader, ParseError> {
    RawHeader::parse(buf, MAGIC_REQUEST).map(|h| RequestHeader::from_raw(&h))
}

/// Server side: frames the request at the start of `buf`, returning it and the bytes it used.
/// Errors, in the order they are checked: `Incomplete` (no whole header), `BadMagic`,
/// `BadLengths`, `Incomplete` (no whole body).
pub fn parse_request(buf: &[u8]) -> Result<(Request<'_>, usize), ParseError> {
    let h = RawHeader::parse(buf, MAGIC_REQUEST)?;
    let Parts {
        extras,
        key,
        value,
        used,
    } = h.split(buf)?;
    let req = Request {
        opcode: Opcode(h.opcode),
        data_type: h.data_type,
        vbucket: h.vbucket_or_status,
        opaque: h.opaque,
        cas: h.cas,
        extras,
        key,
        value,
    };
    Ok((req, used))
}

/// Server side: appends `res` (header, extras, key, value) to `out`, reserving once.
pub fn compose_response(out: &mut Vec<u8>, res: &Response<'_>) -> Result<(), ComposeError> {
    res.raw().compose(out, res.extras, res.key, res.value, 0)
}

/// Server side: like [`compose_response`], but the body length also counts `tail_len` bytes that
/// the caller must append right after (a value held in pieces, written without first gathering
/// it into one slice). Room for the tail is reserved too.
pub fn compose_response_with_tail(out: &mut Vec<u8>, res: &Response<'_>, tail_len: usize) -> Result<(), ComposeError> {
    res.raw().compose(out, res.extras, res.key, res.value, tail_len)
}

/// Client side: appends `req` to `out`, reserving once.
pub fn compose_request(out: &mut Vec<u8>, req: &Request<'_>) -> Result<(), ComposeError> {
    req.raw().compose(out, req.extras, req.key, req.value, 0)
}

/// Client side: reads the header of the response at the start of `buf`, so a client can see a
/// large value's length before it arrives.
pub fn parse_response_header(buf: &[u8]) -> Result<ResponseHeader, ParseError> {
    let h = RawHeader::parse(buf, MAGIC_RESPONSE)?;
    Ok(ResponseHeader {
        opcode: Opcode(h.opcode),
        key_len: h.key_len,
        extras_len: h.extras_len,
        data_type: h.data_type,
        status: Status(h.vbucket_or_status),
        body_len: h.body_len,
        opaque: h.opaque,
        cas: h.cas,
    })
}

/// Client side: frames the response at the start of `buf`, returning it and the bytes it used.
/// Errors as for [`parse_request`], with 0x81 as the magic.
pub fn parse_response(buf: &[u8]) -> Result<(Response<'_>, usize), ParseError> {
    let h = RawHeader::parse(buf, MAGIC_RESPONSE)?;
    let Parts {
        extras,
        key,
        value,
        used,
    } = h.split(buf)?;
    let res = Response {
        opcode: Opcode(h.opcode),
        data_type: h.data_type,
        status: Status(h.vbucket_or_status),
        opaque: h.opaque,
        cas: h.cas,
        extras,
        key,
        value,
    };
    Ok((res, used))
}

/// Extras of SET, ADD and REPLACE requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreExtras {
    pub flags: u32,
    /// memcached exptime: 0 never, up to 30 days relative, more an absolute unix time.
    pub exptime: u32,
}

impl StoreExtras {
    pub const LEN: usize = 8;

    pub fn parse(extras: &[u8]) -> Option<StoreExtras> {
        let e: &[u8; 8] = extras.try_into().ok()?;
        Some(StoreExtras {
            flags: u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            exptime: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0; 8];
        b[..4].copy_from_slice(&self.flags.to_be_bytes());
        b[4..].copy_from_slice(&self.exptime.to_be_bytes());
        b
    }
}

/// Extras of INCREMENT and DECREMENT requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArithExtras {
    pub delta: u64,
    /// Value to create the item with on a miss.
    pub initial: u64,
    /// Expiry of an item created on a miss; [`ArithExtras::NO_CREATE`] means do not create.
    pub exptime: u32,
}

impl ArithExtras {
    pub const LEN: usize = 20;
    /// The exptime that tells the server to answer a miss with KEY_ENOENT instead of creating.
    pub const NO_CREATE: u32 = 0xffff_ffff;

    pub fn parse(extras: &[u8]) -> Option<ArithExtras> {
        let e: &[u8; 20] = extras.try_into().ok()?;
        let u64_at = |i: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&e[i..i + 8]);
            u64::from_be_bytes(b)
        };
        Some(ArithExtras {
            delta: u64_at(0),
            initial: u64_at(8),
            exptime: u32::from_be_bytes([e[16], e[17], e[18], e[19]]),
        })
    }

    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0; 20];
        b[..8].copy_from_slice(&self.delta.to_be_bytes());
        b[8..16].copy_from_slice(&self.initial.to_be_bytes());
        b[16..].copy_from_slice(&self.exptime.to_be_bytes());
        b
    }
}

/// Four-byte extras: the exptime of TOUCH, GAT* and FLUSH requests, the level of VERBOSITY, and
/// the flags of GET*, GAT* and TOUCH replies.
pub fn u32_extras(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Reads four-byte extras; None if `extras` is not four bytes long.
pub fn parse_u32_extras(extras: &[u8]) -> Option<u32> {
    extras.try_into().ok().map(u32::from_be_bytes)
}

/// Reads the 8-byte value of an INCREMENT/DECREMENT reply.
pub fn parse_u64_value(value: &[u8]) -> Option<u64> {
    value.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_request() -> (Vec<u8>, Request<'static>) {
        let req = Request {
            opcode: Opcode::SET,
            data_type: 0,
            vbucket: 7,
            opaque: 0xdead_beef,
            cas: 0x0102_0304_0506_0708,
            extras: &[0, 0, 0, 5, 0, 0, 0, 60],
            key: b"key",
            value: b"hello",
        };
        let mut out = Vec::new();
        compose_request(&mut out, &req).unwrap();
        (out, req)
    }

    #[test]
    fn request_wire_format() {
        let (bytes, _) = sample_request();
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0x80, 0x01, 0x00, 0x03, 0x08, 0x00, 0x00, 0x07,
            0x00, 0x00, 0x00, 0x10,
            0xde, 0xad, 0xbe, 0xef,
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
            0, 0, 0, 5, 0, 0, 0, 60,
            b'k', b'e', b'y', b'h', b'e', b'l', b'l', b'o',
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn request_round_trip() {
        let (bytes, req) = sample_request();
        let mut buf = bytes.clone();
        buf.extend_from_slice(b"\x80trailing");
        let (parsed, used) = parse_request(&buf).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(parsed, req);
        let h = parse_request_header(&buf).unwrap();
        assert_eq!(h.opcode, Opcode::SET);
        assert_eq!(h.head_len(), 24 + 8 + 3);
        assert_eq!(h.frame_len(), bytes.len());
        assert_eq!(h.value_len(), Some(5));
        assert_eq!(h.vbucket, 7);
        assert_eq!(
            StoreExtras::parse(parsed.extras),
            Some(StoreExtras { flags: 5, exptime: 60 })
        );
    }

    #[test]
    fn response_round_trip() {
        let flags = u32_extras(0xdead_beef);
        let res = Response {
            opcode: Opcode::GETK,
            data_type: 0,
            status: Status::SUCCESS,
            opaque: 9,
            cas: 42,
            extras: &flags,
            key: b"k",
            value: b"value",
        };
        let mut out = Vec::new();
        compose_response(&mut out, &res).unwrap();
        assert_eq!(out[0], MAGIC_RESPONSE);
        let (parsed, used) = parse_response(&out).unwrap();
        assert_eq!((parsed, used), (res, out.len()));
        assert_eq!(parse_u32_extras(parsed.extras), Some(0xdead_beef));
        let h = parse_response_header(&out).unwrap();
        assert_eq!(
            (h.status, h.value_len(), h.frame_len()),
            (Status::SUCCESS, Some(5), out.len())
        );
    }

    #[test]
    fn response_with_tail() {
        let mut whole = Vec::new();
        let res = Response {
            value: b"abcdef",
            ..Response::new(Opcode::GET, 1, Status::SUCCESS)
        };
        compose_response(&mut whole, &res).unwrap();
        let mut pieces = Vec::new();
        let head = Response { value: b"ab", ..res };
        compose_response_with_tail(&mut pieces, &head, 4).unwrap();
        pieces.extend_from_slice(b"cd");
        pieces.extend_from_slice(b"ef");
        assert_eq!(whole, pieces);
    }

    #[test]
    fn incomplete_at_every_split() {
        let (bytes, req) = sample_request();
        for cut in 0..bytes.len() {
            assert_eq!(parse_request(&bytes[..cut]), Err(ParseError::Incomplete), "cut {cut}");
            let want = if cut < HEADER_LEN {
                Err(ParseError::Incomplete)
            } else {
                Ok(())
            };
            assert_eq!(parse_request_header(&bytes[..cut]).map(|_| ()), want, "cut {cut}");
        }
        assert_eq!(parse_request(&bytes), Ok((req, bytes.len())));

        let mut res = Vec::new();
        compose_response(
            &mut res,
            &Response {
                key: b"k",
                ..Response::new(Opcode::GETK, 0, Status::KEY_ENOENT)
            },
        )
        .unwrap();
        for cut in 0..res.len() {
            assert_eq!(parse_response(&res[..cut]), Err(ParseError::Incomplete), "cut {cut}");
        }
    }

    #[test]
    fn bad_magic() {
        let (mut bytes, _) = sample_request();
        // A short buffer is Incomplete whatever its first byte: memcached waits for 24 bytes.
        assert_eq!(parse_request(&[0x81]), Err(ParseError::Incomplete));
        // A response where a request belongs, and the other way round.
        bytes[0] = MAGIC_RESPONSE;
        assert_eq!(parse_request(&bytes), Err(ParseError::BadMagic(0x81)));
        assert_eq!(parse_request_header(&bytes), Err(ParseError::BadMagic(0x81)));
        bytes[0] = MAGIC_REQUEST;
        assert_eq!(parse_response(&bytes), Err(ParseError::BadMagic(0x80)));
        // Text protocol bytes.
        let text = b"get some_key_that_is_long_enough\r\n";
        assert_eq!(parse_request(text), Err(ParseError::BadMagic(b'g')));
    }

    #[test]
    fn bad_lengths_detected_from_header_alone() {
        let mut h = [0u8; HEADER_LEN];
        h[0] = MAGIC_REQUEST;
        h[3] = 5; // key length 5
        h[11] = 4; // body length 4
        assert_eq!(parse_request(&h), Err(ParseError::BadLengths));
        let hdr = parse_request_header(&h).unwrap();
        assert_eq!(hdr.value_len(), None);
        assert_eq!(hdr.head_len(), 29);
    }

    #[test]
    fn huge_body_len_is_incomplete_not_a_panic() {
        let mut h = [0u8; HEADER_LEN];
        h[0] = MAGIC_REQUEST;
        h[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse_request(&h), Err(ParseError::Incomplete));
        assert_eq!(parse_request_header(&h).unwrap().value_len(), Some(u32::MAX as usize));
    }

    #[test]
    fn compose_rejects_oversized_parts_without_writing() {
        let mut out = vec![1, 2, 3];
        let long_key = vec![b'k'; 65536];
        let r = compose_request(
            &mut out,
            &Request {
                key: &long_key,
                ..Request::new(Opcode::GET)
            },
        );
        assert_eq!(r, Err(ComposeError::KeyTooLong));
        let long_extras = [0u8; 256];
        let r = compose_request(
            &mut out,
            &Request {
                extras: &long_extras,
                ..Request::new(Opcode::GET)
            },
        );
        assert_eq!(r, Err(ComposeError::ExtrasTooLong));
        let r = compose_response_with_tail(&mut out, &Response::new(Opcode::GET, 0, Status::SUCCESS), usize::MAX);
        assert_eq!(r, Err(ComposeError::BodyTooLong));
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn pipelined_frames() {
        let mut buf = Vec::new();
        for (i, op) in [Opcode::GETKQ, Opcode::GETKQ, Opcode::NOOP].into_iter().enumerate() {
            let key: &[u8] = if op == Opcode::NOOP { b"" } else { b"abc" };
            compose_request(
                &mut buf,
                &Request {
                    opaque: i as u32,
                    key,
                    ..Request::new(op)
                },
            )
            .unwrap();
        }
        let mut at = 0;
        let mut seen = Vec::new();
        while at < buf.len() {
            let (req, used) = parse_request(&buf[at..]).unwrap();
            seen.push((req.opcode, req.opaque));
            at += used;
        }
        assert_eq!(seen, [(Opcode::GETKQ, 0), (Opcode::GETKQ, 1), (Opcode::NOOP, 2)]);
    }

    #[test]
    fn quiet_twins() {
        assert!(Opcode::GETKQ.is_quiet());
        assert!(!Opcode::GETK.is_quiet());
        assert_eq!(Opcode::GATKQ.loud(), Opcode::GATK);
        assert_eq!(Opcode::SETQ.loud(), Opcode::SET);
        assert_eq!(Opcode::NOOP.loud(), Opcode::NOOP);
        assert_eq!(Opcode::DELETE.quiet(), Some(Opcode::DELETEQ));
        assert_eq!(Opcode::DELETEQ.quiet(), Some(Opcode::DELETEQ));
        assert_eq!(Opcode::STAT.quiet(), None);
        for op in 0..=255u8 {
            let op = Opcode(op);
            if op.is_quiet() {
                assert_eq!(op.loud().quiet(), Some(op));
                assert!(!op.loud().is_quiet());
            }
        }
        assert_eq!(format!("{:?}", Opcode::GATKQ), "GATKQ");
        assert_eq!(format!("{:?}", Opcode(0x40)), "Opcode(0x40)");
        assert_eq!(format!("{:?}", Status::E2BIG), "E2BIG");
    }

    #[test]
    fn extras_round_trip() {
        let a = ArithExtras {
            delta: 1,
            initial: u64::MAX,
            exptime: ArithExtras::NO_CREATE,
        };
        assert_eq!(ArithExtras::parse(&a.to_bytes()), Some(a));
        assert_eq!(ArithExtras::parse(&[0; 19]), None);
        let s = StoreExtras {
            flags: u32::MAX,
            exptime: 3,
        };
        assert_eq!(StoreExtras::parse(&s.to_bytes()), Some(s));
        assert_eq!(StoreExtras::parse(&[0; 4]), None);
        assert_eq!(parse_u32_extras(&u32_extras(77)), Some(77));
        assert_eq!(parse_u32_extras(&[]), None);
        assert_eq!(parse_u64_value(&7u64.to_be_bytes()), Some(7));
    }

    /// A small deterministic generator, so these tests need no extra crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = (self.next() as usize) % (max + 1);
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// The fuzz target's invariants on random input, so `cargo test` checks them too.
    #[test]
    fn random_input_invariants() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut buf = rng.bytes(64);
            // Make well-formed-looking frames common.
            if rng.next() & 1 == 0 && buf.len() >= HEADER_LEN {
                buf[0] = if rng.next() & 1 == 0 {
                    MAGIC_REQUEST
                } else {
                    MAGIC_RESPONSE
                };
                buf[2] = 0;
                buf[3] %= 8;
                buf[4] %= 8;
                buf[8..11].fill(0);
                buf[11] %= 40;
            }
            if let Ok((req, used)) = parse_request(&buf) {
                assert!(used <= buf.len());
                let mut again = Vec::new();
                compose_request(&mut again, &req).unwrap();
                assert_eq!(again, &buf[..used]);
            }
            if let Ok((res, used)) = parse_response(&buf) {
                assert!(used <= buf.len());
                let mut again = Vec::new();
                compose_response(&mut again, &res).unwrap();
                assert_eq!(again, &buf[..used]);
            }
        }
    }
}
