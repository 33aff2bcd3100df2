//! The classic text front end: get/gets/gat/gats, the storage commands, delete, incr/decr, touch,
//! flush_all, stats, version, verbosity, quit. Meta lines go to [`super::meta`].

use std::sync::atomic::Ordering;

use riven_memcache::text::{self, reply, Error, Keys, Request, StoreCmd};

use super::{meta, Ctx, Step};
use crate::model::{ArithOutcome, ArithReq, DeleteOutcome, Mode, ReadOpts, StoreOutcome, StoreReq};
use crate::model::{Backend, BackendError};
use crate::out::Out;

pub use crate::model::item_size_ok;

pub async fn handle(ctx: &mut Ctx<'_>, buf: &[u8], out: &mut Out) -> Step {
    let config = &ctx.state.config;
    let limits = text::Limits {
        max_get_line: config.limits.max_line,
    };
    let max = config.item_size_max();
    let parsed = text::parse_request(buf, &limits, |key, flags, len| item_size_ok(max, key.len(), flags, len));
    match parsed {
        Ok((Request::Meta { cmd, line_end, next }, _)) => {
            if matches!(cmd, b'g' | b's' | b'd' | b'a' | b'n' | b'e') {
                meta::handle(ctx, buf, line_end, next, out).await
            } else {
                reply::line(out, text::ERROR);
                Step::Done(next)
            }
        }
        Ok((req, consumed)) => execute(ctx, req, out).await.unwrap_or(Step::Done(consumed)),
        Err(Error::Incomplete) => Step::Incomplete,
        Err(Error::Reply { msg, consumed, noreply }) => {
            if !noreply {
                reply::line(out, msg);
            }
            Step::Done(consumed)
        }
        Err(Error::TooLarge {
            cmd,
            key,
            consumed,
            swallow,
            noreply,
        }) => {
            if !noreply {
                reply::line(out, text::TOO_LARGE);
            }
            // memcached drops the old value of a `set` it could not store, so a reader never sees
            // the value the client meant to replace.
            if cmd == StoreCmd::Set {
                let _ = ctx.engine.delete(key, None).await;
            }
            Step::Swallow { consumed, swallow }
        }
        Err(Error::BadDataChunk { consumed, noreply }) => {
            if !noreply {
                reply::line(out, text::BAD_DATA_CHUNK);
            }
            Step::Done(consumed)
        }
        Err(Error::Close) => Step::Abort,
    }
}

/// Runs a request; `Some(step)` overrides the default "done, consumed the request".
async fn execute(ctx: &mut Ctx<'_>, req: Request<'_>, out: &mut Out) -> Option<Step> {
    let state = ctx.state;
    let engine = ctx.engine;
    let clock = engine.clock();
    match req {
        Request::Get { cas, keys } => get(ctx, keys, cas, None, out).await,
        Request::Gat { cas, exptime, keys } => get(ctx, keys, cas, Some(exptime), out).await,
        Request::Store {
            cmd,
            key,
            flags,
            exptime,
            cas,
            data,
            noreply,
        } => {
            let mode = match cmd {
                StoreCmd::Set | StoreCmd::Cas => Mode::Set,
                StoreCmd::Add => Mode::Add,
                StoreCmd::Replace => Mode::Replace,
                StoreCmd::Append => Mode::Append,
                StoreCmd::Prepend => Mode::Prepend,
            };
            let req = StoreReq {
                mode,
                key,
                flags,
                expiry: clock.expiry(exptime),
                value: data,
                cas: (cmd == StoreCmd::Cas).then_some(cas),
                invalidate: false,
            };
            let outcome = engine.store(&req);
            if !noreply {
                match outcome.await {
                    Ok(outcome) => reply::line(
                        out,
                        match outcome {
                            StoreOutcome::Stored { .. } => "STORED",
                            StoreOutcome::NotStored => "NOT_STORED",
                            StoreOutcome::Exists => "EXISTS",
                            StoreOutcome::NotFound => "NOT_FOUND",
                            StoreOutcome::TooLarge => text::TOO_LARGE,
                            StoreOutcome::OutOfMemory => text::OUT_OF_MEMORY,
                        },
                    ),
                    Err(e) => server_error(out, &e),
                }
            } else {
                let _ = outcome.await;
            }
        }
        Request::Delete { key, noreply } => {
            let outcome = engine.delete(key, None).await;
            if !noreply {
                match outcome {
                    Ok(DeleteOutcome::Deleted) => reply::line(out, "DELETED"),
                    Ok(_) => reply::line(out, "NOT_FOUND"),
                    Err(e) => server_error(out, &e),
                }
            }
        }
        Request::Arith {
            incr,
            key,
            delta,
            noreply,
        } => {
            let req = ArithReq {
                key,
                incr,
                delta,
                cas: None,
                vivify: None,
                touch: None,
            };
            let outcome = engine.arith(&req).await;
            if !noreply {
                match outcome {
                    Ok(ArithOutcome::Done { value, .. }) => reply::number(out, value),
                    Ok(ArithOutcome::NonNumeric) => reply::line(out, text::NON_NUMERIC),
                    Ok(ArithOutcome::OutOfMemory) => reply::line(out, "SERVER_ERROR out of memory"),
                    Ok(_) => reply::line(out, "NOT_FOUND"),
                    Err(e) => server_error(out, &e),
                }
            }
        }
        Request::Touch { key, exptime, noreply } => {
            let hit = engine.touch(key, clock.expiry(exptime)).await;
            if !noreply {
                match hit {
                    Ok(true) => reply::line(out, "TOUCHED"),
                    Ok(false) => reply::line(out, "NOT_FOUND"),
                    Err(e) => server_error(out, &e),
                }
            }
        }
        Request::FlushAll { delay, noreply } => {
            let done = engine.flush_all(delay).await;
            state.stats.cmd_flush.fetch_add(1, Ordering::Relaxed);
            if !noreply {
                match done {
                    Ok(()) => reply::line(out, "OK"),
                    Err(e) => server_error(out, &e),
                }
            }
        }
        Request::Version => {
            out.extend_from_slice(b"VERSION ");
            reply::line(out, crate::state::VERSION);
        }
        Request::Verbosity { noreply } => {
            // memcached accepts any argument here and answers OK.
            if !noreply {
                reply::line(out, "OK");
            }
        }
        Request::Quit => return Some(Step::Close),
        Request::Stats { args } => stats(ctx, args, out),
        Request::Meta { .. } => unreachable!("meta lines are dispatched before execute"),
    }
    None
}

async fn get(ctx: &mut Ctx<'_>, keys: Keys<'_>, cas: bool, exptime: Option<i64>, out: &mut Out) {
    let engine = &ctx.engine;
    let opts = ReadOpts {
        touch: exptime.map(|e| engine.clock().expiry(e)),
        ..ReadOpts::default()
    };
    let start = out.len();
    for key in keys.iter() {
        let found = engine
            .read_soon(key, &opts, |item| {
                reply::value_header(out, key, item.flags, item.value.len(), cas.then_some(item.cas));
                out.put_value(&item.value);
                out.extend_from_slice(b"\r\n");
            })
            .await;
        if let Err(e) = found {
            // A multi-get that cannot be completed is one error, not a partial answer.
            out.truncate(start);
            server_error(out, &e);
            return;
        }
    }
    out.extend_from_slice(b"END\r\n");
}

/// The reply to a request a tier could not serve.
pub fn server_error(out: &mut Vec<u8>, e: &BackendError) {
    out.extend_from_slice(b"SERVER_ERROR ");
    reply::line(out, &e.to_string());
}

fn stats(ctx: &mut Ctx<'_>, args: Keys<'_>, out: &mut Vec<u8>) {
    let mut words = args.iter();
    let group = words.next().unwrap_or(b"");
    let Ok(group) = std::str::from_utf8(group) else {
        reply::line(out, text::ERROR);
        return;
    };
    if group == "reset" {
        // memcached ignores what follows the word.
        crate::stats::reset(ctx.state);
        out.extend_from_slice(b"RESET\r\n");
        return;
    }
    let start = out.len();
    let known = crate::stats::for_each_stat(ctx.state, group, &mut |name, value| reply::stat(out, name, value));
    if known {
        out.extend_from_slice(b"END\r\n");
    } else {
        out.truncate(start);
        reply::line(out, text::ERROR);
    }
}
