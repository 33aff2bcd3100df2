//! The meta commands. The opaque comes back on every reply but `mn`'s and errors, so a lost or
//! reordered reply is caught whatever it was.

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
