//! The classic text commands: requests composed, and replies framed and judged.

use riven_memcache::text::{self, StoreCmd};

use super::{is_non_numeric, line, show, unexpected, Args, Keys, MultiHit, Op, Reply, WireError};

pub(super) fn compose_text(out: &mut Vec<u8>, op: Op, keys: &Keys, a: &Args, value: &[u8]) {
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

pub(super) fn parse_text<'a>(
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
