//! The binary protocol front end: memcached 1.6's answers to every binary request, down to the
//! quirks a client could observe. Each rule below was checked against memcached 1.6.18 by
//! experiment (and is pinned by `node/tests/diff_binary.rs`):
//!
//! - memcached reads the header, extras and key (the "head") before it acts; only then does it
//!   judge the request. A frame without the request magic closes the connection at once, with
//!   no reply, and memcached drops the replies it has not sent yet: those after the burst's last
//!   NOOP (a NOOP makes memcached send what it has).
//!   Key + extras longer than the body: "Unknown command", then close. A key over 250 bytes, or
//!   extras/key/body lengths an opcode does not allow: "Invalid arguments", then close.
//! - Requests without a value consume just their head. Where memcached does not check the body
//!   length (STAT, TOUCH, GAT*), the rest of the body is read as the next request.
//! - An unknown opcode (VERBOSITY included: memcached 1.6 does not implement it in binary) gets
//!   "Unknown command" and memcached then discards `body length` bytes after the head, i.e. also
//!   `extras + key` bytes of whatever follows the body. We do the same, since a client that
//!   works against memcached must already cope with it.
//! - A value too large for an item gets "Too large." as soon as the head is in, and the value is
//!   swallowed, not buffered; a too-large SET also deletes the key's old value.
//! - Quiet variants send nothing on success, nor on a miss for the reads; errors are always sent.
//! - Every reply echoes the request's opcode (quiet or not) and opaque. CAS is set in replies to
//!   hits and successful stores and arithmetic, 0 in every other reply.

use std::sync::atomic::Ordering;

use riven_memcache::binary::{
    compose_response, compose_response_with_tail, parse_request_header, parse_response, parse_u32_extras, u32_extras,
    ArithExtras, Opcode, ParseError, RequestHeader, Response, Status, StoreExtras, HEADER_LEN,
};
use riven_memcache::MAX_KEY_LEN;

use super::text::item_size_ok;
use super::{Ctx, Step};
use crate::model::{ArithOutcome, ArithReq, DeleteOutcome, Mode, ReadOpts, StoreOutcome, StoreReq};
use crate::model::{Backend, BackendError};
use crate::out::Out;

/// Handles the request at the start of `buf` (which starts at a request header).
pub async fn handle(ctx: &mut Ctx<'_>, buf: &[u8], out: &mut Out) -> Step {
    let h = match parse_request_header(buf) {
        Ok(h) => h,
        Err(ParseError::Incomplete) => return Step::Incomplete,
        Err(_) => {
            drop_unflushed_replies(out);
            return Step::Close;
        }
    };
    let head_len = h.head_len();
    let Some(head) = buf.get(..head_len) else {
        return Step::Incomplete;
    };
    let (extras, key) = head[HEADER_LEN..].split_at(usize::from(h.extras_len));
    let r = Reply {
        opcode: h.opcode,
        opaque: h.opaque,
    };
    let Some(value_len) = h.value_len() else {
        r.error(out, Status::UNKNOWN_COMMAND);
        return Step::Close;
    };
    if key.len() > MAX_KEY_LEN {
        r.error(out, Status::EINVAL);
        return Step::Close;
    }
    let cmd = h.opcode.loud();
    if !shape_ok(cmd, &h) {
        r.error(out, Status::EINVAL);
        return Step::Close;
    }
    let req = Head {
        h,
        cmd,
        quiet: h.opcode.is_quiet(),
        extras,
        key,
        head_len,
        value_len,
    };
    match cmd {
        Opcode::GET | Opcode::GETK | Opcode::TOUCH | Opcode::GAT | Opcode::GATK => read(ctx, &req, &r, out).await,
        Opcode::SET | Opcode::ADD | Opcode::REPLACE | Opcode::APPEND | Opcode::PREPEND => {
            store(ctx, &req, &r, buf, out).await
        }
        Opcode::DELETE => delete(ctx, &req, &r, out).await,
        Opcode::INCREMENT | Opcode::DECREMENT => arith(ctx, &req, &r, out).await,
        Opcode::FLUSH => {
            let exptime = parse_u32_extras(extras).unwrap_or(0);
            let done = ctx.engine.flush_all(i64::from(exptime)).await;
            ctx.state.stats.cmd_flush.fetch_add(1, Ordering::Relaxed);
            match done {
                Ok(()) => r.success(out, &req, 0),
                Err(e) => r.backend_error(out, &e),
            }
            Step::Done(head_len)
        }
        Opcode::NOOP => {
            r.put(out, &r.response(Status::SUCCESS));
            Step::Done(head_len)
        }
        Opcode::VERSION => {
            let res = Response {
                value: crate::state::VERSION.as_bytes(),
                ..r.response(Status::SUCCESS)
            };
            r.put(out, &res);
            Step::Done(head_len)
        }
        Opcode::QUIT => {
            r.success(out, &req, 0);
            Step::Close
        }
        Opcode::STAT => {
            stat(ctx, key, &r, out);
            Step::Done(head_len)
        }
        // Authentication is not enabled (as in memcached without -S): the SASL commands are
        // unknown, but unlike other unknown commands they swallow exactly their value.
        Opcode::SASL_LIST_MECHS | Opcode::SASL_AUTH | Opcode::SASL_STEP => {
            r.error(out, Status::UNKNOWN_COMMAND);
            swallow(head_len, value_len)
        }
        _ => {
            r.error(out, Status::UNKNOWN_COMMAND);
            swallow(head_len, h.body_len as usize)
        }
    }
}

/// On a frame that is not a request memcached hangs up at once, dropping the replies it has not
/// sent. It sends what it has after each NOOP, so of this burst's replies (`out`) those up to the
/// last NOOP reply reached the client; the rest are dropped. (memcached also sends what it has
/// every 20 requests; clients cannot rely on that and we do not copy it.)
fn drop_unflushed_replies(out: &mut Out) {
    out.flatten();
    let mut at = 0;
    let mut sent = 0;
    while let Ok((res, used)) = parse_response(&out[at..]) {
        at += used;
        if res.opcode == Opcode::NOOP {
            sent = at;
        }
    }
    out.truncate(sent);
}

/// The parts of a request known once its head has arrived.
struct Head<'a> {
    h: RequestHeader,
    /// The loud twin of the opcode.
    cmd: Opcode,
    quiet: bool,
    extras: &'a [u8],
    key: &'a [u8],
    head_len: usize,
    value_len: usize,
}

/// memcached's checks of extras, key and body lengths per command; a request that fails them
/// gets "Invalid arguments" and the connection is closed. Commands not listed are not checked.
fn shape_ok(cmd: Opcode, h: &RequestHeader) -> bool {
    let (ext, key, body) = (usize::from(h.extras_len), usize::from(h.key_len), h.body_len as usize);
    match cmd {
        Opcode::VERSION | Opcode::NOOP | Opcode::QUIT | Opcode::SASL_LIST_MECHS => ext == 0 && key == 0 && body == 0,
        Opcode::FLUSH => key == 0 && body == ext && (ext == 0 || ext == 4),
        Opcode::SET | Opcode::ADD | Opcode::REPLACE => ext == StoreExtras::LEN && key != 0,
        Opcode::GET | Opcode::GETK | Opcode::DELETE => ext == 0 && key != 0 && body == key,
        Opcode::INCREMENT | Opcode::DECREMENT => ext == ArithExtras::LEN && key != 0 && body == key + ext,
        Opcode::APPEND | Opcode::PREPEND => ext == 0 && key != 0,
        Opcode::STAT => ext == 0,
        Opcode::TOUCH | Opcode::GAT | Opcode::GATK => ext == 4 && key != 0,
        Opcode::SASL_AUTH | Opcode::SASL_STEP => ext == 0 && key != 0,
        _ => true,
    }
}

fn swallow(consumed: usize, swallow: usize) -> Step {
    if swallow == 0 {
        Step::Done(consumed)
    } else {
        Step::Swallow { consumed, swallow }
    }
}

/// How replies to one request are written.
struct Reply {
    opcode: Opcode,
    opaque: u32,
}

impl Reply {
    fn response(&self, status: Status) -> Response<'static> {
        Response::new(self.opcode, self.opaque, status)
    }

    fn put(&self, out: &mut Vec<u8>, res: &Response<'_>) {
        if compose_response(out, res).is_err() {
            self.internal_error(out);
        }
    }

    /// Replaces a reply too long to frame (a part past its header field's limit; requests are
    /// validated so this should not happen) with an error that always fits.
    fn internal_error(&self, out: &mut Vec<u8>) {
        let _ = compose_response(out, &self.response(Status::EINTERNAL));
    }

    /// An error reply with memcached's message for the status.
    fn error(&self, out: &mut Vec<u8>, status: Status) {
        let msg = status.message().unwrap_or_default();
        let res = Response {
            value: msg.as_bytes(),
            ..self.response(status)
        };
        self.put(out, &res);
    }

    /// A tier could not serve the request: a temporary failure, with the reason as the body.
    fn backend_error(&self, out: &mut Vec<u8>, e: &BackendError) {
        let msg = e.to_string();
        let res = Response {
            value: msg.as_bytes(),
            ..self.response(Status::ETMPFAIL)
        };
        self.put(out, &res);
    }

    /// An empty success reply carrying `cas`, unless the request is quiet.
    fn success(&self, out: &mut Vec<u8>, req: &Head<'_>, cas: u64) {
        if !req.quiet {
            self.put(
                out,
                &Response {
                    cas,
                    ..self.response(Status::SUCCESS)
                },
            );
        }
    }
}

/// GET, GETK, TOUCH, GAT, GATK and their quiet twins.
async fn read(ctx: &Ctx<'_>, req: &Head<'_>, r: &Reply, out: &mut Out) -> Step {
    let engine = &ctx.engine;
    let touch = matches!(req.cmd, Opcode::TOUCH | Opcode::GAT | Opcode::GATK);
    let with_key = matches!(req.cmd, Opcode::GETK | Opcode::GATK);
    // TOUCH answers with the flags and CAS only.
    let with_value = req.cmd != Opcode::TOUCH;
    let opts = ReadOpts {
        touch: if touch {
            let exptime = parse_u32_extras(req.extras).unwrap_or(0);
            Some(engine.clock().expiry(i64::from(exptime)))
        } else {
            None
        },
        ..ReadOpts::default()
    };
    let key = req.key;
    let hit = engine.read_soon(key, &opts, |item| {
        let flags = u32_extras(item.flags);
        let res = Response {
            cas: item.cas,
            extras: &flags,
            key: if with_key { key } else { &[] },
            ..r.response(Status::SUCCESS)
        };
        let tail = if with_value { item.value.len() } else { 0 };
        match compose_response_with_tail(out, &res, tail) {
            Ok(()) if with_value => out.put_value(&item.value),
            Ok(()) => {}
            Err(_) => r.internal_error(out),
        }
    });
    let hit = match hit.await {
        Ok(hit) => hit,
        Err(e) => {
            r.backend_error(out, &e);
            return Step::Done(req.head_len);
        }
    };
    if hit.is_none() && !req.quiet {
        if with_key {
            // GETK and GATK misses echo the key, with no message.
            r.put(
                out,
                &Response {
                    key,
                    ..r.response(Status::KEY_ENOENT)
                },
            );
        } else {
            r.error(out, Status::KEY_ENOENT);
        }
    }
    // Any body past the key (allowed for TOUCH and GAT*) is read as the next request.
    Step::Done(req.head_len)
}

/// SET, ADD, REPLACE, APPEND, PREPEND and their quiet twins.
async fn store(ctx: &Ctx<'_>, req: &Head<'_>, r: &Reply, buf: &[u8], out: &mut Vec<u8>) -> Step {
    let state = ctx.state;
    let engine = ctx.engine;
    let extras = StoreExtras::parse(req.extras).unwrap_or(StoreExtras { flags: 0, exptime: 0 });
    if !item_size_ok(state.config.item_size_max(), req.key.len(), extras.flags, req.value_len) {
        r.error(out, Status::E2BIG);
        // memcached drops the old value of a SET it could not store, so readers do not go on
        // seeing the value the client meant to replace.
        if req.cmd == Opcode::SET {
            let _ = engine.delete(req.key, None).await;
        }
        return swallow(req.head_len, req.value_len);
    }
    let frame_len = req.h.frame_len();
    let Some(value) = buf.get(req.head_len..frame_len) else {
        return Step::Incomplete;
    };
    // A non-zero CAS turns SET, ADD and REPLACE alike into memcached's compare-and-swap, which
    // stores only over an existing item with that CAS.
    let cas = (req.h.cas != 0).then_some(req.h.cas);
    let mode = match req.cmd {
        Opcode::APPEND => Mode::Append,
        Opcode::PREPEND => Mode::Prepend,
        _ if cas.is_some() => Mode::Set,
        Opcode::ADD => Mode::Add,
        Opcode::REPLACE => Mode::Replace,
        _ => Mode::Set,
    };
    let store_req = StoreReq {
        mode,
        key: req.key,
        flags: extras.flags,
        expiry: engine.clock().expiry(i64::from(extras.exptime)),
        value,
        cas,
        invalidate: false,
    };
    let outcome = match engine.store(&store_req).await {
        Ok(o) => o,
        Err(e) => {
            r.backend_error(out, &e);
            return Step::Done(frame_len);
        }
    };
    match outcome {
        StoreOutcome::Stored { cas } => r.success(out, req, cas),
        StoreOutcome::Exists => r.error(out, Status::KEY_EEXISTS),
        StoreOutcome::NotFound => r.error(out, Status::KEY_ENOENT),
        StoreOutcome::OutOfMemory => r.error(out, Status::ENOMEM),
        // memcached words "not stored" after the command: an ADD found the key, a REPLACE did
        // not; an APPEND/PREPEND that would grow too large is "not stored" too.
        StoreOutcome::NotStored | StoreOutcome::TooLarge => r.error(
            out,
            match mode {
                Mode::Add => Status::KEY_EEXISTS,
                Mode::Replace => Status::KEY_ENOENT,
                _ => Status::NOT_STORED,
            },
        ),
    }
    Step::Done(frame_len)
}

async fn delete(ctx: &Ctx<'_>, req: &Head<'_>, r: &Reply, out: &mut Vec<u8>) -> Step {
    let cas = (req.h.cas != 0).then_some(req.h.cas);
    match ctx.engine.delete(req.key, cas).await {
        Ok(DeleteOutcome::Deleted) => r.success(out, req, 0),
        Ok(DeleteOutcome::NotFound) => r.error(out, Status::KEY_ENOENT),
        Ok(DeleteOutcome::Exists) => r.error(out, Status::KEY_EEXISTS),
        Err(e) => r.backend_error(out, &e),
    }
    Step::Done(req.head_len)
}

/// INCREMENT, DECREMENT and their quiet twins: a miss creates the item with the initial value,
/// unless the exptime is 0xffffffff.
async fn arith(ctx: &Ctx<'_>, req: &Head<'_>, r: &Reply, out: &mut Vec<u8>) -> Step {
    let engine = &ctx.engine;
    let Some(a) = ArithExtras::parse(req.extras) else {
        // shape_ok let only 20-byte extras through.
        r.error(out, Status::EINVAL);
        return Step::Close;
    };
    let vivify =
        (a.exptime != ArithExtras::NO_CREATE).then(|| (a.initial, engine.clock().expiry(i64::from(a.exptime))));
    let arith_req = ArithReq {
        key: req.key,
        incr: req.cmd == Opcode::INCREMENT,
        delta: a.delta,
        cas: (req.h.cas != 0).then_some(req.h.cas),
        vivify,
        touch: None,
    };
    let outcome = match engine.arith(&arith_req).await {
        Ok(o) => o,
        Err(e) => {
            r.backend_error(out, &e);
            return Step::Done(req.head_len);
        }
    };
    match outcome {
        ArithOutcome::Done { value, cas, .. } => {
            if !req.quiet {
                let value = value.to_be_bytes();
                r.put(
                    out,
                    &Response {
                        cas,
                        value: &value,
                        ..r.response(Status::SUCCESS)
                    },
                );
            }
        }
        ArithOutcome::NotFound => r.error(out, Status::KEY_ENOENT),
        ArithOutcome::NonNumeric => r.error(out, Status::DELTA_BADVAL),
        ArithOutcome::Exists => r.error(out, Status::KEY_EEXISTS),
        ArithOutcome::NotStored => r.error(out, Status::NOT_STORED),
        ArithOutcome::OutOfMemory => r.error(out, Status::ENOMEM),
    }
    Step::Done(req.head_len)
}

/// STAT: one reply per stat (key = name, value = value), then an empty reply ends the list.
/// memcached matches "reset", "config" and "detail" as prefixes and other groups exactly, and
/// knows no "conns" group in binary.
fn stat(ctx: &Ctx<'_>, group: &[u8], r: &Reply, out: &mut Vec<u8>) {
    let put_stat = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        let res = Response {
            key: name.as_bytes(),
            value,
            ..r.response(Status::SUCCESS)
        };
        r.put(out, &res);
    };
    let group = if group.starts_with(b"reset") {
        crate::stats::reset(ctx.state);
        None
    } else if group.starts_with(b"config") {
        Some("config")
    } else if let Some(sub) = group.strip_prefix(b"detail") {
        // Per-prefix stats are not kept: "on" and "off" are accepted and the dump is empty, as
        // memcached's is before any prefix was seen.
        if sub.starts_with(b" dump") {
            put_stat(out, "detailed", b"END\r\n");
        } else if !(sub.starts_with(b" on") || sub.starts_with(b" off")) {
            r.error(out, Status::KEY_ENOENT);
            return;
        }
        None
    } else if group == b"conns" {
        r.error(out, Status::KEY_ENOENT);
        return;
    } else {
        match std::str::from_utf8(group) {
            Ok(g) => Some(g),
            Err(_) => {
                r.error(out, Status::KEY_ENOENT);
                return;
            }
        }
    };
    if let Some(group) = group {
        let start = out.len();
        let known = crate::stats::for_each_stat(ctx.state, group, &mut |name, value| {
            put_stat(out, name, value.as_bytes())
        });
        if !known {
            out.truncate(start);
            r.error(out, Status::KEY_ENOENT);
            return;
        }
    }
    r.put(out, &r.response(Status::SUCCESS));
}

#[cfg(test)]
mod tests;
