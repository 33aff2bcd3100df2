//! One client connection: read, hand every complete request to the front end, write all replies
//! of the burst with one write.
//!
//! An idle connection holds no buffers: they are taken from a per-thread pool when bytes arrive
//! and given back once everything read has been answered. This is what keeps tens of thousands
//! of idle connections cheap.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

use riven_memcache::plan::{for_each_read_key, meta_get_line, nth_request, KeyAt, Kind, Proto, Run, MAX_RUN};

use crate::engine::{Engine, ReadAhead};
use crate::model::item_size_ok;
use crate::out::Out;
use crate::protocol::{binary, text, ConnState, Ctx, Step};
use crate::state::{ConnInfo, ServerState};

/// What the connection loop needs of a socket: readiness, a non-blocking read and writes.
pub trait Socket: AsyncWrite + Unpin + Send {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send;
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize>;
}

impl Socket for TcpStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        read_draining(
            buf,
            |b| TcpStream::try_read_buf(self, b),
            |f| self.try_io(Interest::READABLE, f),
        )
    }
}

impl Socket for UnixStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        UnixStream::readable(self)
    }
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        read_draining(
            buf,
            |b| UnixStream::try_read_buf(self, b),
            |f| self.try_io(Interest::READABLE, f),
        )
    }
}

/// Reads what the socket has. A read that does not fill the buffer emptied the socket, so its
/// readiness is cleared as a `WouldBlock` would: the next wait goes straight to the reactor
/// instead of costing one more `recv` that finds nothing (one per request at pipeline depth 1).
/// Data that arrives meanwhile is a new readiness event, which the reactor keeps.
fn read_draining(
    buf: &mut Vec<u8>,
    read: impl Fn(&mut Vec<u8>) -> io::Result<usize>,
    try_io: impl FnOnce(&mut dyn FnMut() -> io::Result<()>) -> io::Result<()>,
) -> io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut got = None;
    let mut step = || match read(buf) {
        Ok(n) if n > 0 && n < spare => {
            got = Some(n);
            Err(io::ErrorKind::WouldBlock.into())
        }
        Ok(n) => {
            got = Some(n);
            Ok(())
        }
        Err(e) => Err(e),
    };
    let r = try_io(&mut step);
    match (got, r) {
        (Some(n), _) => Ok(n),
        (None, Err(e)) => Err(e),
        (None, Ok(())) => unreachable!("a successful read records its length"),
    }
}

/// Size of a pooled read or write buffer.
const BUF_SIZE: usize = 16 * 1024;
/// Buffers that grew past this (a large value) are freed instead of pooled.
const POOL_MAX_BUF: usize = 64 * 1024;
/// Buffers kept per worker thread.
const POOL_DEPTH: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

type BufPool = std::thread::LocalKey<RefCell<Vec<Vec<u8>>>>;

/// A buffer from `pool`, or a new one of `capacity`.
fn take_from(pool: &'static BufPool, capacity: usize) -> Vec<u8> {
    pool.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Puts `buf` back in `pool`, emptied, unless it holds nothing, grew past `max_capacity` or the
/// pool already keeps `depth`.
fn give_to(pool: &'static BufPool, depth: usize, max_capacity: usize, mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > max_capacity {
        return;
    }
    buf.clear();
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < depth {
            p.push(buf);
        }
    });
}

fn take_buf() -> Vec<u8> {
    take_from(&POOL, BUF_SIZE)
}

fn give_buf(buf: &mut Vec<u8>) {
    give_to(&POOL, POOL_DEPTH, POOL_MAX_BUF, std::mem::take(buf));
}

/// memcached's binary protocol request magic.
const BINARY_MAGIC: u8 = 0x80;

/// A burst: the complete requests of one read from the connection, and everything answering
/// them works on. (A *run* is a stretch of a burst answered together, see [`Run`].)
struct Burst<'a> {
    state: &'a ServerState,
    engine: &'a Engine,
    conn: &'a mut ConnState,
    proto: &'a mut Option<Proto>,
    swallow: &'a mut usize,
}

impl Burst<'_> {
    /// Handles every complete request in `rbuf`, replies appended to `out`. Returns how many
    /// bytes were used and whether the connection must close.
    async fn run(mut self, rbuf: &[u8], out: &mut Out) -> (usize, bool) {
        let mut pos = 0;
        if *self.swallow > 0 {
            let k = (*self.swallow).min(rbuf.len());
            pos = k;
            *self.swallow -= k;
        }
        while pos < rbuf.len() {
            let p = *self.proto.get_or_insert(if rbuf[pos] == BINARY_MAGIC {
                Proto::Binary
            } else {
                Proto::Text
            });
            if !self.engine.answers_at_once() {
                let write_max = self.engine.one_round_write_max();
                let max = self.state.config.item_size_max();
                let size_ok = |key: &[u8], flags: u32, len: usize| item_size_ok(max, key.len(), flags, len);
                if let Some(run) = Run::plan(p, &rbuf[pos..], write_max, &size_ok) {
                    // Boxed apart: a burst of one request (pipeline depth 1) then boxes a small
                    // future, not one with room for a run's.
                    let at = run.at;
                    crate::reuse::Reused::new(|| self.concurrent_run(p, &rbuf[pos..], run, out)).await;
                    pos += at;
                    continue;
                }
            }
            let mut ctx = Ctx {
                state: self.state,
                engine: self.engine,
                conn: self.conn,
            };
            match handle(p, &mut ctx, &rbuf[pos..], out).await {
                Step::Done(n) => pos += n,
                Step::Swallow { consumed, swallow } => {
                    pos += consumed;
                    let k = swallow.min(rbuf.len() - pos);
                    pos += k;
                    *self.swallow = swallow - k;
                }
                Step::Incomplete => break,
                Step::Close => return (pos, true),
                Step::Abort => {
                    out.clear();
                    return (pos, true);
                }
            }
        }
        (pos, false)
    }
}

impl Burst<'_> {
    /// Pipelined requests that each finish in one round trip to the tier (reads: `get`, `gets`,
    /// `mg` without touch/vivify/recache, binary GET/GETQ/GETK/GETKQ; and where the engine
    /// allows, plain sets of small values) are run together, and their replies appended in
    /// order. Answering them one after another would cost a round trip each. Their first (and
    /// for a write, only visible) request to the tier is made on their first poll, in request
    /// order, over one link (see [`Engine::burst_scope`]), so the tier sees them in the order the client
    /// sent them: a `get` after a `set` reads what the `set` wrote. `run` is what
    /// [`Run::plan`] found.
    async fn concurrent_run(&mut self, p: Proto, buf: &[u8], run: Run, out: &mut Out) {
        let Run {
            ends, kinds, keys, n, ..
        } = run;
        if let Some(ahead) = self.engine.read_ahead() {
            self.prefetched_run(p, buf, &ends[..n], &kinds[..n], &keys[..n], &ahead, out)
                .await;
            return;
        }
        let (state, engine) = (self.state, self.engine);
        let runs = (0..n).map(|i| answer_alone(state, engine, p, nth_request(buf, &ends[..n], i)));
        for reply in futures_util::future::join_all(runs).await {
            append_reply(out, reply);
        }
    }
}

impl Burst<'_> {
    /// A run over an external memcached, in two passes. First, in request order, every read's
    /// GETs are sent (and kept, see `Links::prefetch`) and every write is started, which sends its
    /// one request: memcached gets the whole run in the client's order, in one write. Then each
    /// request runs in order through the ordinary front end and engine, whose GET finds its reply
    /// already asked for: a read is answered straight into `out` (no future kept per request, no
    /// buffer per reply), and anything unusual (a chunked value, a stale item) simply carries on
    /// with more round trips.
    #[allow(clippy::too_many_arguments)]
    async fn prefetched_run(
        &mut self,
        p: Proto,
        buf: &[u8],
        ends: &[usize],
        kinds: &[Kind],
        keys: &[KeyAt],
        ahead: &ReadAhead<'_>,
        out: &mut Out,
    ) {
        let (state, engine) = (self.state, self.engine);
        let request = |i: usize| nth_request(buf, ends, i);
        // Pass 1. `stashed[i]`: GETs kept for request i; writes keep their started future. The
        // GETs of consecutive reads whose key the planner saw are sent together, before the next
        // write starts, so memcached still sees the run in the client's order.
        let mut stashed = [0u8; MAX_RUN];
        let mut writes = Vec::new();
        let mut done: Vec<(usize, Out)> = Vec::new();
        let mut gathered = Gathered::new();
        ahead.open(0);
        for (i, kind) in kinds.iter().enumerate() {
            let req = request(i);
            if *kind != Kind::Write {
                match keys[i].of(req) {
                    Some(key) => {
                        if riven_memcache::key_is_valid(key) {
                            gathered.push(i);
                        }
                    }
                    None => {
                        gathered.send(ahead, &request, keys, &mut stashed);
                        stashed[i] = for_each_read_key(p, req, |key| ahead.send_gets(&[key]));
                    }
                }
                continue;
            }
            gathered.send(ahead, &request, keys, &mut stashed);
            let mut fut = crate::reuse::Reused::new(|| answer_alone(state, engine, p, req));
            // Its first poll sends its write (see `one_round_request`).
            match futures_util::poll!(&mut fut) {
                std::task::Poll::Ready(reply) => done.push((i, reply)),
                std::task::Poll::Pending => writes.push((i, fut)),
            }
        }
        gathered.send(ahead, &request, keys, &mut stashed);
        // Pass 2, in order.
        let mut left: usize = stashed.iter().map(|&k| usize::from(k)).sum();
        let (mut writes, mut done) = (writes.into_iter().peekable(), done.into_iter().peekable());
        for (i, kind) in kinds.iter().enumerate() {
            if *kind == Kind::Write {
                // Closed while a write carries on: a lookup of its own goes to memcached. (A
                // read opens it for its own GETs, below, so it is not closed after each read.)
                ahead.open(0);
                if let Some((_, reply)) = done.next_if(|(j, _)| *j == i) {
                    append_reply(out, reply);
                } else if let Some((_, fut)) = writes.next_if(|(j, _)| *j == i) {
                    append_reply(out, fut.await);
                }
                continue;
            }
            // What earlier requests did not take is dropped, so this one's GETs come first.
            ahead.keep_and_open(left, usize::from(stashed[i]));
            left -= usize::from(stashed[i]);
            let mut ctx = Ctx {
                state,
                engine,
                conn: self.conn,
            };
            let req = request(i);
            match meta_get_line(p, req) {
                // The planner saw a whole `mg` line: straight to the meta front end.
                Some(line_end) => {
                    crate::protocol::meta::handle(&mut ctx, req, line_end, req.len(), out).await;
                }
                None => {
                    handle(p, &mut ctx, req, out).await;
                }
            }
        }
        ahead.close();
    }
}

/// Reads of a run whose GETs are to be sent together (see `Burst::prefetched_run`).
struct Gathered {
    /// Their requests' indices in the run.
    reads: [u8; MAX_RUN],
    n: usize,
}

impl Gathered {
    fn new() -> Gathered {
        Gathered {
            reads: [0; MAX_RUN],
            n: 0,
        }
    }

    fn push(&mut self, i: usize) {
        self.reads[self.n] = i as u8;
        self.n += 1;
    }

    /// Sends the gathered reads' GETs, each read's key found at `keys[i]` in `request(i)`, and
    /// notes them in `stashed`.
    fn send<'b>(
        &mut self,
        ahead: &ReadAhead<'_>,
        request: &impl Fn(usize) -> &'b [u8],
        keys: &[KeyAt],
        stashed: &mut [u8; MAX_RUN],
    ) {
        let reads = &self.reads[..self.n];
        if reads.is_empty() {
            return;
        }
        let mut ks: [&[u8]; MAX_RUN] = [&[]; MAX_RUN];
        for (k, &i) in ks.iter_mut().zip(reads) {
            let i = usize::from(i);
            *k = keys[i].of(request(i)).unwrap_or_default();
        }
        if ahead.send_gets(&ks[..reads.len()]) {
            for &i in reads {
                stashed[usize::from(i)] = 1;
            }
        }
        self.n = 0;
    }
}

/// Hands the request at the start of `buf` to the front end of its protocol.
async fn handle(p: Proto, ctx: &mut Ctx<'_>, buf: &[u8], out: &mut Out) -> Step {
    match p {
        Proto::Text => text::handle(ctx, buf, out).await,
        Proto::Binary => binary::handle(ctx, buf, out).await,
    }
}

/// Answers one whole request of a run into a buffer of its own, so it can run beside the
/// others. These requests use no per-connection state: each gets its own.
async fn answer_alone(state: &ServerState, engine: &Engine, p: Proto, request: &[u8]) -> Out {
    let mut conn = ConnState::default();
    let mut ctx = Ctx {
        state,
        engine,
        conn: &mut conn,
    };
    let mut reply = Out::with_buf(take_reply_buf());
    let step = handle(p, &mut ctx, request, &mut reply).await;
    debug_assert_eq!(step, Step::Done(request.len()), "a request of a run used other bytes");
    reply
}

/// Capacity of a pooled reply buffer: a reply with a value of a few hundred bytes, so most
/// replies of a run never grow theirs.
const REPLY_BUF: usize = 1024;
/// Reply buffers kept per thread: a few runs' worth.
const REPLY_POOL_DEPTH: usize = 256;
/// A reply buffer that grew past this (a large value) is freed: the pool keeps at most 1 MiB
/// per thread.
const REPLY_POOL_MAX_BUF: usize = 4 * REPLY_BUF;

thread_local! {
    static REPLY_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer for one request's reply in a run (see `answer_alone`). Pooled per thread: a fresh
/// `Vec` each, allocated and grown per request, showed in the node's profile over an L2.
fn take_reply_buf() -> Vec<u8> {
    take_from(&REPLY_POOL, REPLY_BUF)
}

/// Moves a reply of a run into `out` and gives its buffer back (one that grew large is freed).
fn append_reply(out: &mut Out, mut reply: Out) {
    out.append(&mut reply);
    give_to(&REPLY_POOL, REPLY_POOL_DEPTH, REPLY_POOL_MAX_BUF, reply.take_buf());
}

/// Runs a future that cannot wait (every await in it is on the embedded store) to completion
/// right here.
fn run_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the embedded store never makes a request wait"),
    }
}

/// Serves one connection until the peer closes, a front end asks to close, or shutdown (checked
/// only between requests, so a request already started is read to its end and answered).
pub async fn serve<S: Socket>(
    mut sock: S,
    state: &ServerState,
    engine: &Engine,
    info: &ConnInfo,
    shutdown: &CancellationToken,
) -> io::Result<()> {
    let mut rbuf: Vec<u8> = Vec::new();
    let mut out = Out::default();
    let mut swallow = 0usize;
    let mut proto = None;
    let mut conn = ConnState::default();
    // Created once: polling it registers with the token a single time, instead of taking the
    // token's lock on every request.
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let result = loop {
        if rbuf.is_empty() {
            // Between requests: shutdown may end the connection here.
            tokio::select! {
                biased;
                _ = &mut cancelled => break Ok(()),
                r = sock.readable() => r?,
            }
        } else {
            // Part of a request is read: finish it first (the server's drain timeout bounds this).
            sock.readable().await?;
        }
        if rbuf.capacity() == 0 {
            rbuf = take_buf();
        } else if rbuf.len() == rbuf.capacity() {
            // A request larger than the buffer (a big value): grow geometrically.
            rbuf.reserve(rbuf.len());
        }
        match sock.try_read_buf(&mut rbuf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                state.stats.bytes_read.add(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if rbuf.is_empty() {
                    give_buf(&mut rbuf);
                }
                continue;
            }
            Err(e) => break Err(e),
        }
        info.last_cmd.store(state.engine.clock().now(), Ordering::Relaxed);

        if out.capacity() == 0 {
            out = Out::with_buf(take_buf());
        }
        let burst = Burst {
            state,
            engine,
            conn: &mut conn,
            proto: &mut proto,
            swallow: &mut swallow,
        };
        // The embedded store answers at once: run the burst on the stack, so its (large) future
        // is not part of this connection's task and an idle connection stays small. Tiers that
        // may wait (a disk, a remote memcached) get the burst boxed, once per read.
        let (pos, close) = if engine.answers_at_once() {
            run_now(burst.run(&rbuf, &mut out))
        } else {
            // Over memcached the burst's requests share one link and one wake-up per reply pass.
            let scope = engine.burst_scope();
            crate::reuse::Reused::new(|| scope.run(burst.run(&rbuf, &mut out))).await
        };
        if !out.is_empty() {
            let n = out.total_len();
            out.write_to(&mut sock).await?;
            state.stats.bytes_written.add(n as u64);
        }
        if close {
            break Ok(());
        }
        if pos == rbuf.len() {
            rbuf.clear();
            give_buf(&mut rbuf);
            give_buf(&mut out.take_buf());
        } else {
            rbuf.drain(..pos);
        }
    };
    give_buf(&mut rbuf);
    give_buf(&mut out.take_buf());
    let _ = sock.shutdown().await;
    result
}
