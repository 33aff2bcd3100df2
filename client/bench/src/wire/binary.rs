//! The binary protocol: requests composed, and replies framed and judged by opcode, opaque and
//! status.

use riven_memcache::binary::{self, ArithExtras, Opcode, Status, StoreExtras};

use super::{line, show, Args, Keys, MultiHit, Op, Reply, WireError};

/// Binary extras of a multi-get frame and the end marker share the request's opaque.
const NO_CREATE: u32 = ArithExtras::NO_CREATE;

pub(super) fn compose_binary(out: &mut Vec<u8>, op: Op, keys: &Keys, a: &Args, value: &[u8], opaque: u32) {
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

pub(super) fn parse_binary<'a>(
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
