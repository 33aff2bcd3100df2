//! The classic text front end: get/gets/gat/gats, the storage commands, delete, incr/decr, touch,
//! flush_all, stats, version, verbosity, quit. Meta lines go to [`super::meta`].

use std::sync::atomic::Ordering;

use riven_proto::text::{self, reply, Error, Keys, Request, StoreCmd};

use super::{meta, Ctx, Step};
use crate::store::{ArithOutcome, ArithReq, DeleteOutcome, Mode, ReadOpts, StoreOutcome, StoreReq};

pub use crate::store::item_size_ok;

pub fn handle(ctx: &mut Ctx<'_>, buf: &[u8], out: &mut Vec<u8>) -> Step {
    let settings = &ctx.state.settings;
    let limits = text::Limits {
        max_get_line: settings.max_line,
    };
    let max = settings.item_size_max;
    let parsed = text::parse_request(buf, &limits, |key, flags, len| item_size_ok(max, key.len(), flags, len));
    match parsed {
        Ok((Request::Meta { cmd, line_end, next }, _)) => {
            if matches!(cmd, b'g' | b's' | b'd' | b'a' | b'n' | b'e') {
                meta::handle(ctx, buf, line_end, next, out)
            } else {
                reply::line(out, text::ERROR);
                Step::Done(next)
            }
        }
        Ok((req, consumed)) => execute(ctx, req, out).unwrap_or(Step::Done(consumed)),
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
                ctx.state.store.delete(key, None);
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
fn execute(ctx: &mut Ctx<'_>, req: Request<'_>, out: &mut Vec<u8>) -> Option<Step> {
    let state = ctx.state;
    let store = &state.store;
    let clock = store.clock();
    match req {
        Request::Get { cas, keys } => get(ctx, keys, cas, None, out),
        Request::Gat { cas, exptime, keys } => get(ctx, keys, cas, Some(exptime), out),
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
            let outcome = store.store(&StoreReq {
                mode,
                key,
                flags,
                expiry: clock.expiry(exptime),
                value: data,
                cas: (cmd == StoreCmd::Cas).then_some(cas),
                invalidate: false,
            });
            if !noreply {
                reply::line(
                    out,
                    match outcome {
                        StoreOutcome::Stored { .. } => "STORED",
                        StoreOutcome::NotStored => "NOT_STORED",
                        StoreOutcome::Exists => "EXISTS",
                        StoreOutcome::NotFound => "NOT_FOUND",
                        StoreOutcome::TooLarge => text::TOO_LARGE,
                        StoreOutcome::OutOfMemory => text::OUT_OF_MEMORY,
                    },
                );
            }
        }
        Request::Delete { key, noreply } => {
            let outcome = store.delete(key, None);
            if !noreply {
                reply::line(out, if outcome == DeleteOutcome::Deleted { "DELETED" } else { "NOT_FOUND" });
            }
        }
        Request::Arith { incr, key, delta, noreply } => {
            let outcome = store.arith(&ArithReq {
                key,
                incr,
                delta,
                cas: None,
                vivify: None,
                touch: None,
            });
            if !noreply {
                match outcome {
                    ArithOutcome::Done { value, .. } => reply::number(out, value),
                    ArithOutcome::NonNumeric => reply::line(out, text::NON_NUMERIC),
                    ArithOutcome::OutOfMemory => reply::line(out, "SERVER_ERROR out of memory"),
                    _ => reply::line(out, "NOT_FOUND"),
                }
            }
        }
        Request::Touch { key, exptime, noreply } => {
            let hit = store.touch(key, clock.expiry(exptime));
            if !noreply {
                reply::line(out, if hit { "TOUCHED" } else { "NOT_FOUND" });
            }
        }
        Request::FlushAll { delay, noreply } => {
            store.flush_all(delay);
            state.stats.cmd_flush.fetch_add(1, Ordering::Relaxed);
            if !noreply {
                reply::line(out, "OK");
            }
        }
        Request::Version => {
            out.extend_from_slice(b"VERSION ");
            reply::line(out, crate::server::VERSION);
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

fn get(ctx: &mut Ctx<'_>, keys: Keys<'_>, cas: bool, exptime: Option<i64>, out: &mut Vec<u8>) {
    let store = &ctx.state.store;
    let opts = ReadOpts {
        touch: exptime.map(|e| store.clock().expiry(e)),
        ..ReadOpts::default()
    };
    for key in keys.iter() {
        store.read(key, &opts, |item| {
            reply::value_header(out, key, item.flags, item.value.len(), cas.then_some(item.cas));
            item.value.copy_to(out);
            out.extend_from_slice(b"\r\n");
        });
    }
    out.extend_from_slice(b"END\r\n");
}

fn stats(ctx: &mut Ctx<'_>, args: Keys<'_>, out: &mut Vec<u8>) {
    let mut words = args.iter();
    let group = words.next().unwrap_or(b"");
    let Ok(group) = std::str::from_utf8(group) else {
        reply::line(out, text::ERROR);
        return;
    };
    let start = out.len();
    let known = crate::stats::for_each_stat(ctx.state, group, &mut |name, value| reply::stat(out, name, value));
    if known {
        out.extend_from_slice(b"END\r\n");
    } else {
        out.truncate(start);
        reply::line(out, text::ERROR);
    }
}
