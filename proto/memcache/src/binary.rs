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

mod codes;

pub use codes::{Opcode, Status};

/// Length of the fixed header that starts every frame.
pub const HEADER_LEN: usize = 24;
/// First byte of a request.
pub const MAGIC_REQUEST: u8 = 0x80;
/// First byte of a response.
pub const MAGIC_RESPONSE: u8 = 0x81;

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
        // Not the tail: the caller may send it from elsewhere (a value where it lies).
        out.reserve(HEADER_LEN + extras.len() + key.len() + value.len());
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
/// it into one slice). No room is reserved for the tail: a large value may be sent from where it
/// lies rather than copied into `out`.
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
mod tests;
