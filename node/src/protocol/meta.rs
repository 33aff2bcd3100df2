//! The meta front end: `mg`, `ms`, `md`, `ma`, `mn`, `me` on top of the store.
//!
//! Parsing and reply formats live in `riven_memcache::meta`; this module only maps flags to store
//! requests and outcomes to replies, with memcached 1.6.18's choices of what each reply carries:
//! - a miss (`EN`, `NF`, `EX`, `NS`) carries only `O` and `k`; `ms` also `c` (0 unless stored);
//! - `q` hides `EN` for `mg` (a hit is still answered) and `HD` (or `ma`'s `VA`) otherwise;
//! - errors are always answered and never close the connection.

use riven_memcache::meta::reply::{self, DebugInfo};
use riven_memcache::meta::{self, errors, ArithMode, Code, Command, DataBlock, KeyBuf, Request, ReturnValues, SetMode};
use riven_memcache::MAX_KEY_LEN;

use super::text::item_size_ok;
use super::text::server_error;
use super::{Ctx, Step};
use crate::model::Backend;
use crate::model::{ArithOutcome, ArithReq, DeleteOutcome, Expiry, Mode, ReadOpts, StoreOutcome, StoreReq};
use crate::out::Out;

/// Handles one meta request. `buf[..line_end]` is its line without the terminator and `next`
/// the index after the `\n`; an `ms` data block follows at `buf[next..]`.
pub async fn handle(ctx: &mut Ctx<'_>, buf: &[u8], line_end: usize, next: usize, out: &mut Out) -> Step {
    let mut key_buf: KeyBuf = [0; MAX_KEY_LEN];
    // Used where it lies: the request is a few hundred bytes, and a copy of it is a `memcpy`.
    let parsed = meta::parse_request(&buf[..line_end], &mut key_buf);
    let req = match &parsed {
        Ok(req) => req,
        Err(e) => {
            reply::error(out, e.message);
            // An `ms` refused after its length was read loses its data block, as in memcached.
            return if e.swallow > 0 {
                Step::Swallow {
                    consumed: next,
                    swallow: e.swallow,
                }
            } else {
                Step::Done(next)
            };
        }
    };
    let start = out.len();
    match req.command {
        Command::Get => get(ctx, req, out).await,
        Command::Set => return set(ctx, req, &buf[next..], next, out).await,
        Command::Delete => delete(ctx, req, out).await,
        Command::Arith => arith(ctx, req, out).await,
        Command::Noop => reply::noop(out),
        Command::Debug => debug(ctx, req, out).await,
    }
    // memcached checks some things only while writing the reply, after the command took effect.
    if let Some(e) = req.late_error {
        out.truncate(start);
        reply::error(out, e.message);
    }
    Step::Done(next)
}

/// An exptime token as memcached reads it (0 never, <= 30 days relative, else absolute).
fn expiry(ctx: &Ctx<'_>, exptime: i32) -> Expiry {
    ctx.engine.clock().expiry(exptime as i64)
}

/// `O` and `k` only: what every reply without an item carries.
fn key_only<'k>(req: &Request<'k>) -> ReturnValues<'k> {
    ReturnValues {
        key: Some(req.key),
        key_base64: req.flags.base64,
        ..ReturnValues::default()
    }
}

/// Whether flag `a` comes before flag `b` in a request's flags (both present).
fn before(order: &[u8], a: u8, b: u8) -> bool {
    let at = |c| order.iter().position(|&x| x == c);
    matches!((at(a), at(b)), (Some(i), Some(j)) if i < j)
}

async fn get(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Out) {
    let engine = &ctx.engine;
    let f = &req.flags;
    let touch = f.ttl.map(|t| expiry(ctx, t));
    let opts = ReadOpts {
        touch,
        no_bump: f.no_bump,
        vivify: f.vivify.map(|t| expiry(ctx, t)),
        // memcached compares the item's expiry with R read as an exptime: a win when the item
        // expires before that moment. R0 (never) or an item that never expires cannot win.
        recache_below: f
            .recache
            .map(|r| expiry(ctx, r))
            .filter(|e| *e != Expiry::NEVER)
            .map(|e| e.0.saturating_sub(engine.clock().now())),
        recache_before_touch: before(f.order(), b'R', b'T'),
        peek: false,
    };
    let ttl_after_touch = touch.map(|e| engine.clock().ttl(e));
    let hit = engine.read_soon(req.key, &opts, |item| {
        let values = ReturnValues {
            cas: Some(item.cas),
            client_flags: Some(item.flags),
            hit_before: Some(item.fetched_before),
            last_access: Some(item.idle_secs as u64),
            size: Some(item.value.len()),
            // The TTL before this request's touch; `t` after `T` shows `ttl_after_touch`.
            ttl: Some(item.ttl),
            ttl_after_touch,
            ..key_only(req)
        };
        if f.value {
            reply::value_header(out, item.value.len());
        } else {
            reply::code(out, Code::Hd);
        }
        reply::flags(out, f, &values);
        reply::recache(out, item.win_taken, item.stale, item.win);
        reply::end(out);
        if f.value {
            out.put_value(&item.value);
            reply::end(out);
        }
    });
    match hit.await {
        Ok(Some(())) => {}
        Ok(None) if f.quiet => {}
        Ok(None) => reply::status(out, Code::En, f, &key_only(req)),
        Err(e) => server_error(out, &e),
    }
}

async fn set(ctx: &Ctx<'_>, req: &Request<'_>, data: &[u8], next: usize, out: &mut Vec<u8>) -> Step {
    let engine = &ctx.engine;
    let f = &req.flags;
    let flags = f.client_flags.unwrap_or(0);
    let block_end = next + req.datalen + 2;
    if !item_size_ok(ctx.state.config.item_size_max(), req.key.len(), flags, req.datalen) {
        reply::error(out, errors::TOO_LARGE);
        // memcached drops the old value whatever the mode, so a reader never sees the value the
        // client meant to replace.
        let _ = engine.delete(req.key, None).await;
        return Step::Swallow {
            consumed: next,
            swallow: req.datalen + 2,
        };
    }
    let value = match meta::data_block(data, req.datalen) {
        DataBlock::Incomplete => return Step::Incomplete,
        DataBlock::BadChunk => {
            reply::error(out, errors::BAD_DATA_CHUNK);
            return Step::Done(block_end);
        }
        DataBlock::Ok(value) => value,
    };
    let mode = match f.set_mode().unwrap_or_default() {
        SetMode::Set => Mode::Set,
        SetMode::Add => Mode::Add,
        SetMode::Replace => Mode::Replace,
        SetMode::Append => Mode::Append,
        SetMode::Prepend => Mode::Prepend,
    };
    let store_req = StoreReq {
        mode,
        key: req.key,
        flags,
        expiry: expiry(ctx, f.ttl.unwrap_or(0)),
        value,
        // memcached's add ignores C (it only turns set and replace into cas, and append and
        // prepend check it).
        cas: if mode == Mode::Add { None } else { f.cas },
        invalidate: f.invalidate,
    };
    let outcome = match engine.store(&store_req).await {
        Ok(o) => o,
        Err(e) => {
            server_error(out, &e);
            return Step::Done(block_end);
        }
    };
    let (code, cas) = match outcome {
        StoreOutcome::Stored { cas } => (Code::Hd, cas),
        StoreOutcome::NotStored => (Code::Ns, 0),
        StoreOutcome::Exists => (Code::Ex, 0),
        StoreOutcome::NotFound => (Code::Nf, 0),
        StoreOutcome::TooLarge => {
            reply::error(out, errors::TOO_LARGE);
            return Step::Done(block_end);
        }
        StoreOutcome::OutOfMemory => {
            reply::error(out, errors::OUT_OF_MEMORY_STORING);
            return Step::Done(block_end);
        }
    };
    if !(f.quiet && code == Code::Hd) {
        let values = ReturnValues {
            // memcached answers c0 when nothing was stored.
            cas: Some(cas),
            ..key_only(req)
        };
        reply::status(out, code, f, &values);
    }
    Step::Done(block_end)
}

async fn delete(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Vec<u8>) {
    let engine = &ctx.engine;
    let f = &req.flags;
    // T only counts with I: a plain delete removes the item whatever its TTL.
    let outcome = if f.invalidate {
        engine.invalidate(req.key, f.cas, f.ttl.map(|t| expiry(ctx, t))).await
    } else {
        engine.delete(req.key, f.cas).await
    };
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return server_error(out, &e),
    };
    let code = match outcome {
        DeleteOutcome::Deleted => Code::Hd,
        DeleteOutcome::NotFound => Code::Nf,
        DeleteOutcome::Exists => Code::Ex,
    };
    if !(f.quiet && code == Code::Hd) {
        reply::status(out, code, f, &key_only(req));
    }
}

async fn arith(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Vec<u8>) {
    let engine = &ctx.engine;
    let f = &req.flags;
    let arith_req = ArithReq {
        key: req.key,
        incr: f.arith_mode().unwrap_or_default() == ArithMode::Incr,
        delta: f.delta.unwrap_or(1),
        cas: f.cas,
        // The created item gets N's TTL; T applies to an existing item only.
        vivify: f.vivify.map(|n| (f.initial.unwrap_or(0), expiry(ctx, n))),
        touch: f.ttl.map(|t| expiry(ctx, t)),
    };
    let outcome = match engine.arith(&arith_req).await {
        Ok(o) => o,
        Err(e) => return server_error(out, &e),
    };
    let code = match outcome {
        ArithOutcome::Done {
            value,
            cas,
            ttl,
            created,
        } => {
            // memcached's quiet mode hides the HD of an update, but still answers when `N`
            // created the item.
            if f.quiet && !created {
                return;
            }
            let values = ReturnValues {
                cas: Some(cas),
                ttl: Some(ttl),
                ..key_only(req)
            };
            let mut buf = itoa::Buffer::new();
            let digits = buf.format(value).as_bytes();
            if f.value {
                reply::value_header(out, digits.len());
            } else {
                reply::code(out, Code::Hd);
            }
            reply::flags(out, f, &values);
            reply::end(out);
            if f.value {
                out.extend_from_slice(digits);
                reply::end(out);
            }
            return;
        }
        ArithOutcome::NotFound => Code::Nf,
        ArithOutcome::Exists => Code::Ex,
        ArithOutcome::NotStored => Code::Ns,
        ArithOutcome::NonNumeric => return reply::error(out, errors::NON_NUMERIC),
        ArithOutcome::OutOfMemory => return reply::error(out, errors::OUT_OF_MEMORY),
    };
    reply::status(out, code, f, &key_only(req));
}

async fn debug(ctx: &Ctx<'_>, req: &Request<'_>, out: &mut Vec<u8>) {
    let engine = &ctx.engine;
    // memcached's `me` only looks: no access, no win token, no stats.
    let opts = ReadOpts {
        no_bump: true,
        peek: true,
        ..ReadOpts::default()
    };
    let found = engine.read(req.key, &opts, |item| {
        let (class, size) = meta::memcached_item_size(req.key.len(), item.value.len(), item.flags);
        let info = DebugInfo {
            ttl: item.ttl,
            last_access: item.idle_secs as u64,
            cas: item.cas,
            fetched: item.fetched_before,
            class,
            size,
        };
        reply::debug(out, req.key, req.flags.base64, &info);
    });
    match found.await {
        Ok(Some(())) => {}
        Ok(None) => {
            reply::code(out, Code::En);
            reply::end(out);
        }
        Err(e) => server_error(out, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::protocol::ConnState;
    use crate::state::ServerState;
    use std::sync::Arc;

    fn state() -> Arc<ServerState> {
        let mut config = Config::default();
        config.l1.memory.limit_mb = 8;
        ServerState::embedded(config)
    }

    /// One call of the front end on `input`, which starts with a whole line.
    fn call(state: &ServerState, input: &[u8]) -> (Step, String) {
        let (line_end, next) = riven_memcache::find_line(input).expect("a line");
        let mut conn = ConnState::default();
        let mut ctx = Ctx {
            state,
            engine: &state.engine,
            conn: &mut conn,
        };
        let mut out = crate::out::Out::default();
        let step = crate::protocol::block_on(handle(&mut ctx, input, line_end, next, &mut out));
        (step, String::from_utf8(out.take_buf_flat()).unwrap())
    }

    #[test]
    fn ms_waits_for_the_whole_block() {
        let st = state();
        assert_eq!(call(&st, b"ms k 5\r\nhel"), (Step::Incomplete, String::new()));
        assert_eq!(call(&st, b"ms k 5\r\nhello\r"), (Step::Incomplete, String::new()));
        assert_eq!(
            call(&st, b"ms k 5 T0\r\nhello\r\nmn\r\n"),
            (Step::Done(18), "HD\r\n".into())
        );
        assert_eq!(call(&st, b"mg k v\r\n"), (Step::Done(8), "VA 5\r\nhello\r\n".into()));
    }

    #[test]
    fn ms_errors_consume_as_memcached_does() {
        let st = state();
        // A bad terminator costs exactly the announced bytes.
        assert_eq!(
            call(&st, b"ms k 3\r\nbarx\r\n"),
            (Step::Done(13), "CLIENT_ERROR bad data chunk\r\n".into())
        );
        // A refused flag swallows the block, which may not have arrived yet.
        assert_eq!(
            call(&st, b"ms k 3 x\r\n"),
            (
                Step::Swallow {
                    consumed: 10,
                    swallow: 5
                },
                "CLIENT_ERROR invalid flag\r\n".into()
            )
        );
        // Refused before the length is known: nothing to swallow.
        assert_eq!(
            call(&st, b"ms k abc\r\n"),
            (Step::Done(10), "CLIENT_ERROR bad command line format\r\n".into())
        );
    }

    #[test]
    fn oversized_ms_is_swallowed_and_drops_the_old_value() {
        let st = state();
        call(&st, b"ms big 1\r\nx\r\n");
        let line = format!("ms big {}\r\n", 2 << 20);
        let (step, out) = call(&st, line.as_bytes());
        assert_eq!(
            step,
            Step::Swallow {
                consumed: line.len(),
                swallow: (2 << 20) + 2
            }
        );
        assert_eq!(out, "SERVER_ERROR object too large for cache\r\n");
        assert_eq!(call(&st, b"mg big v\r\n").1, "EN\r\n");
    }

    #[test]
    fn quiet_and_opaque() {
        let st = state();
        assert_eq!(call(&st, b"mg q1 q v O5\r\n").1, "");
        assert_eq!(call(&st, b"mg q1 v O5 k\r\n").1, "EN O5 kq1\r\n");
        assert_eq!(call(&st, b"ms q1 1 q c\r\n1\r\n").1, "");
        assert_eq!(call(&st, b"ms q1 1 q ME\r\n1\r\n").1, "NS\r\n");
        // A hit is answered even with q.
        assert_eq!(call(&st, b"mg q1 q s\r\n").1, "HD s1\r\n");
        assert_eq!(call(&st, b"md q1 q\r\n").1, "");
        assert_eq!(call(&st, b"md q1 q\r\n").1, "NF\r\n");
    }

    #[test]
    fn ma_runs_before_a_late_opaque_error() {
        let st = state();
        call(&st, b"ms n 1\r\n5\r\n");
        let long = format!("ma n O{}\r\n", "o".repeat(32));
        assert_eq!(call(&st, long.as_bytes()).1, "CLIENT_ERROR opaque token too long\r\n");
        assert_eq!(call(&st, b"mg n v\r\n").1, "VA 1\r\n6\r\n");
        assert_eq!(call(&st, b"ma n v t D10 MD\r\n").1, "VA 1 t-1\r\n0\r\n");
    }

    #[test]
    fn vivify_and_stale() {
        let st = state();
        assert_eq!(call(&st, b"mg v N30 s t\r\n").1, "HD s0 t30 W\r\n");
        assert_eq!(call(&st, b"mg v N30 s\r\n").1, "HD s0 Z\r\n");
        assert_eq!(call(&st, b"md v I\r\n").1, "HD\r\n");
        assert_eq!(call(&st, b"mg v\r\n").1, "HD X W\r\n");
        assert_eq!(call(&st, b"mg v\r\n").1, "HD Z X\r\n");
    }

    #[test]
    fn base64_keys_come_back_encoded() {
        let st = state();
        assert_eq!(call(&st, b"ms Zm9v 1 b k\r\nx\r\n").1, "HD kZm9v b\r\n");
        assert_eq!(call(&st, b"mg foo v\r\n").1, "VA 1\r\nx\r\n");
        assert!(call(&st, b"me Zm9v b\r\n").1.starts_with("ME Zm9v exp=-1 la=0 cas="));
        assert_eq!(call(&st, b"me nothing\r\n").1, "EN\r\n");
        assert_eq!(call(&st, b"mn\r\n").1, "MN\r\n");
    }
}
