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

use crate::engine::{Engine, ReadAhead};
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
const POOL_DEPTH: usize = 64;

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Text,
    Binary,
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
    async fn run(mut self, rbuf: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
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
                if let Some(run) = Run::plan(p, &rbuf[pos..], write_max, self.state.config.item_size_max()) {
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
    async fn concurrent_run(&mut self, p: Proto, buf: &[u8], run: Run, out: &mut Vec<u8>) {
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
        out: &mut Vec<u8>,
    ) {
        let (state, engine) = (self.state, self.engine);
        let request = |i: usize| nth_request(buf, ends, i);
        // Pass 1. `stashed[i]`: GETs kept for request i; writes keep their started future. The
        // GETs of consecutive reads whose key the planner saw are sent together, before the next
        // write starts, so memcached still sees the run in the client's order.
        let mut stashed = [0u8; MAX_RUN];
        let mut writes = Vec::new();
        let mut done: Vec<(usize, Vec<u8>)> = Vec::new();
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

/// Where the line of `req` ends, if `req` is exactly one `mg` line with its terminator (what the
/// planner took for a read).
fn meta_get_line(p: Proto, req: &[u8]) -> Option<usize> {
    if p != Proto::Text || !req.starts_with(b"mg ") {
        return None;
    }
    let line = req.strip_suffix(b"\n")?;
    Some(line.strip_suffix(b"\r").unwrap_or(line).len())
}

/// Hands the request at the start of `buf` to the front end of its protocol.
async fn handle(p: Proto, ctx: &mut Ctx<'_>, buf: &[u8], out: &mut Vec<u8>) -> Step {
    match p {
        Proto::Text => text::handle(ctx, buf, out).await,
        Proto::Binary => binary::handle(ctx, buf, out).await,
    }
}

/// Answers one whole request of a run into a buffer of its own, so it can run beside the
/// others. These requests use no per-connection state: each gets its own.
async fn answer_alone(state: &ServerState, engine: &Engine, p: Proto, request: &[u8]) -> Vec<u8> {
    let mut conn = ConnState::default();
    let mut ctx = Ctx {
        state,
        engine,
        conn: &mut conn,
    };
    let mut reply = take_reply_buf();
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

/// A buffer for one request's reply in a run (see `answer_alone`). Pooled per thread: with a
/// fresh `Vec` each, allocating and growing them was about 8 % of the node's CPU at pipeline
/// depth 16 over an L2.
fn take_reply_buf() -> Vec<u8> {
    take_from(&REPLY_POOL, REPLY_BUF)
}

/// Copies a reply of a run into `out` and gives its buffer back (one that grew large is freed).
fn append_reply(out: &mut Vec<u8>, reply: Vec<u8>) {
    out.extend_from_slice(&reply);
    give_to(&REPLY_POOL, REPLY_POOL_DEPTH, REPLY_POOL_MAX_BUF, reply);
}

/// Calls `f` with each key a read request (of a run) will GET, in order; how many `f` accepted.
fn for_each_read_key(p: Proto, req: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> u8 {
    let mut n = 0u8;
    let mut take = |key: &[u8]| {
        if riven_memcache::key_is_valid(key) && f(key) {
            n += 1;
        }
    };
    match p {
        Proto::Text => {
            let Some((line_end, _)) = riven_memcache::find_line(req) else {
                return 0;
            };
            let line = &req[..line_end];
            if line.starts_with(b"mg ") {
                let mut tokens = line.split(|&b| b == b' ').filter(|t| !t.is_empty()).skip(1);
                let key = tokens.next().unwrap_or_default();
                if tokens.any(|t| t == b"b") {
                    // A base64 key: GET what it decodes to.
                    let mut key_buf: riven_memcache::meta::KeyBuf = [0; riven_memcache::MAX_KEY_LEN];
                    if let Ok(r) = riven_memcache::meta::parse_request(line, &mut key_buf) {
                        take(r.key);
                    }
                } else {
                    take(key);
                }
            } else {
                // get/gets: the keys after the command, at most a run's worth.
                for key in line.split(|&b| b == b' ').filter(|k| !k.is_empty()).skip(1).take(32) {
                    take(key);
                }
            }
        }
        Proto::Binary => {
            if let Ok(h) = riven_memcache::binary::parse_request_header(req) {
                let start = riven_memcache::binary::HEADER_LEN + usize::from(h.extras_len);
                if let Some(key) = req.get(start..start + usize::from(h.key_len)) {
                    take(key);
                }
            }
        }
    }
    n
}

/// Request `i` of a run in `buf`, whose requests end at `ends`.
fn nth_request<'b>(buf: &'b [u8], ends: &[usize], i: usize) -> &'b [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &buf[start..ends[i]]
}

/// The most requests one run takes.
const MAX_RUN: usize = 64;

/// Pipelined requests to run together (see `Burst::concurrent_run`).
struct Run {
    /// Where each request ends, from the start of the run.
    ends: [usize; MAX_RUN],
    kinds: [Kind; MAX_RUN],
    /// Where a read's key is in its request, when the planner saw it (saves the prefetch
    /// tokenising the line again).
    keys: [KeyAt; MAX_RUN],
    n: usize,
    /// Bytes the run takes.
    at: usize,
}

impl Run {
    /// The run at the start of `buf`, if it has two requests or more.
    fn plan(p: Proto, buf: &[u8], write_max: Option<usize>, item_size_max: usize) -> Option<Run> {
        let mut run = Run {
            ends: [0; MAX_RUN],
            kinds: [Kind::Read; MAX_RUN],
            keys: [KeyAt::NONE; MAX_RUN],
            n: 0,
            at: 0,
        };
        // A multi-key get reads its keys one after another, so its later keys would be read
        // after the writes that follow it in the run: no write may follow one.
        let mut multi_read = false;
        while run.n < MAX_RUN {
            match one_round_request(p, &buf[run.at..], write_max, item_size_max) {
                Some((_, Kind::Write, _)) if multi_read => break,
                Some((len, kind, key)) => {
                    multi_read |= kind == Kind::MultiRead;
                    run.at += len;
                    run.ends[run.n] = run.at;
                    run.kinds[run.n] = kind;
                    run.keys[run.n] = key;
                    run.n += 1;
                }
                None => break,
            }
        }
        (run.n >= 2).then_some(run)
    }
}

/// Where a key is in its request: (start, length), length 0 for not known.
#[derive(Clone, Copy)]
struct KeyAt(u16, u8);

impl KeyAt {
    const NONE: KeyAt = KeyAt(0, 0);

    fn new(start: usize, len: usize) -> KeyAt {
        match (u16::try_from(start), u8::try_from(len)) {
            (Ok(s), Ok(l)) => KeyAt(s, l),
            _ => KeyAt::NONE,
        }
    }

    /// The key in `req`, if known.
    fn of<'r>(&self, req: &'r [u8]) -> Option<&'r [u8]> {
        let start = usize::from(self.0);
        (self.1 > 0).then(|| &req[start..start + usize::from(self.1)])
    }
}

/// What a request of a run does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads one key.
    Read,
    /// Reads several keys, one after another.
    MultiRead,
    Write,
}

/// The length of the complete request at the start of `buf` if it may join a run: reads, and
/// sets of at most `write_max` bytes (`None`: no writes) whose only visible request to the tier
/// is made on their first poll, well formed, so they are answered and use exactly the bytes
/// measured here.
fn one_round_request(
    p: Proto,
    buf: &[u8],
    write_max: Option<usize>,
    item_size_max: usize,
) -> Option<(usize, Kind, KeyAt)> {
    use riven_memcache::binary::{parse_request_header, Opcode};
    use riven_memcache::meta::Tokens;
    match p {
        Proto::Text => {
            let (line_end, next) = riven_memcache::find_line(buf)?;
            let line = &buf[..line_end];
            if let Some(keys) = line.strip_prefix(b"get ").or_else(|| line.strip_prefix(b"gets ")) {
                let mut toks = Tokens::new(keys);
                let first = toks.next_at();
                return Some(match (first, toks.next()) {
                    (Some((at, key)), None) => (next, Kind::Read, KeyAt::new(line.len() - keys.len() + at, key.len())),
                    _ => (next, Kind::MultiRead, KeyAt::NONE),
                });
            }
            if line.starts_with(b"set ") {
                return text_set_len(buf, write_max?, item_size_max).map(|len| (len, Kind::Write, KeyAt::NONE));
            }
            if line.starts_with(b"ms ") {
                let write_max = write_max?;
                return plain_ms_len(buf, line_end, next, write_max, item_size_max)
                    .or_else(|| meta_set_len(buf, line_end, next, write_max, item_size_max))
                    .map(|len| (len, Kind::Write, KeyAt::NONE));
            }
            let rest = line.strip_prefix(b"mg ")?;
            let mut toks = Tokens::new(rest);
            let (at, k) = toks.next_at()?;
            let mut key = KeyAt::new(3 + at, k.len());
            // Most lines hold none of these bytes past the key: one look at the bytes, and the
            // flags are split only when one is there.
            if toks.rest().iter().any(|&c| matches!(c, b'T' | b'N' | b'R' | b'b')) {
                for flag in toks {
                    match flag[0] {
                        // T touches, N creates, R may hand out the recache token: those change
                        // the item.
                        b'T' | b'N' | b'R' => return None,
                        // A base64 key: the prefetch finds what it decodes to.
                        b'b' => key = KeyAt::NONE,
                        _ => {}
                    }
                }
            }
            Some((next, Kind::Read, key))
        }
        Proto::Binary => {
            let h = parse_request_header(buf).ok()?;
            if buf.len() < h.frame_len() || h.data_type != 0 {
                return None;
            }
            let get = matches!(h.opcode, Opcode::GET | Opcode::GETQ | Opcode::GETK | Opcode::GETKQ);
            if get {
                let plain = h.extras_len == 0 && h.body_len == u32::from(h.key_len);
                let key = KeyAt::new(riven_memcache::binary::HEADER_LEN, usize::from(h.key_len));
                return plain.then_some((h.frame_len(), Kind::Read, key));
            }
            let set = matches!(h.opcode, Opcode::SET | Opcode::SETQ);
            let head = usize::from(h.extras_len) + usize::from(h.key_len);
            let value_len = (h.body_len as usize).checked_sub(head)?;
            let ok = set
                && h.cas == 0
                && h.extras_len == 8
                && (1..=riven_memcache::MAX_KEY_LEN).contains(&usize::from(h.key_len))
                && value_len <= write_max?
                && crate::model::item_size_ok(item_size_max, usize::from(h.key_len), u32::MAX, value_len);
            ok.then_some((h.frame_len(), Kind::Write, KeyAt::NONE))
        }
    }
}

/// A whole, well-formed text `set` of a small value: its length.
fn text_set_len(buf: &[u8], write_max: usize, item_size_max: usize) -> Option<usize> {
    let limits = riven_memcache::text::Limits { max_get_line: 0 };
    let size_ok = |key: &[u8], flags: u32, len: usize| crate::model::item_size_ok(item_size_max, key.len(), flags, len);
    match riven_memcache::text::parse_request(buf, &limits, size_ok) {
        Ok((riven_memcache::text::Request::Store { cmd, data, .. }, used))
            if cmd == riven_memcache::text::StoreCmd::Set && data.len() <= write_max =>
        {
            Some(used)
        }
        _ => None,
    }
}

/// Like [`meta_set_len`], by a light scan instead of a parse, for the `ms` lines clients send
/// most (`F`, `T`, `O` and return flags only): the front end then parses the request once, not
/// twice. It accepts a subset of what `meta_set_len` accepts, checking each flag's argument as
/// the parser would (a test holds it to that); anything else is left to `meta_set_len`.
fn plain_ms_len(buf: &[u8], line_end: usize, next: usize, write_max: usize, item_size_max: usize) -> Option<usize> {
    use riven_memcache::meta::MAX_OPAQUE_LEN;
    let digits = |t: &[u8]| !t.is_empty() && t.len() <= 18 && t.iter().all(u8::is_ascii_digit);
    let mut toks = buf[..line_end].split(|&b| b == b' ').filter(|t| !t.is_empty());
    if toks.next()? != b"ms" {
        return None;
    }
    let key = toks.next()?;
    let len = toks.next()?;
    if key.len() > riven_memcache::MAX_KEY_LEN || len.len() > 9 || !digits(len) {
        return None;
    }
    let datalen = len.iter().fold(0usize, |v, &c| v * 10 + usize::from(c - b'0'));
    // The parser refuses 20 tokens or more, and a flag sent twice.
    let (mut count, mut seen, mut client_flags) = (3, 0u128, 0u32);
    for t in toks {
        count += 1;
        let (c, arg) = (t[0], &t[1..]);
        if count >= 20 || c >= 0x80 || seen & (1 << c) != 0 {
            return None;
        }
        seen |= 1 << c;
        match c {
            b'F' if digits(arg) => {
                client_flags = u32::from(arg.iter().any(|&d| d != b'0'));
            }
            b'T' if digits(arg.strip_prefix(b"-").unwrap_or(arg)) => {}
            b'O' if arg.len() <= MAX_OPAQUE_LEN => {}
            b'q' | b'c' | b'k' | b's' | b't' | b'f' | b'h' | b'l' => {}
            _ => return None,
        }
    }
    // Any nonzero client flags cost the item 4 bytes, whatever the value.
    if datalen > write_max || !crate::model::item_size_ok(item_size_max, key.len(), client_flags, datalen) {
        return None;
    }
    (buf.get(next + datalen..next + datalen + 2)? == b"\r\n").then_some(next + datalen + 2)
}

/// A whole, well-formed meta `ms` in set mode, without CAS, of a small value: its length.
fn meta_set_len(buf: &[u8], line_end: usize, next: usize, write_max: usize, item_size_max: usize) -> Option<usize> {
    use riven_memcache::meta::{self, Command, DataBlock, SetMode};
    let mut key_buf: meta::KeyBuf = [0; riven_memcache::MAX_KEY_LEN];
    let req = meta::parse_request(&buf[..line_end], &mut key_buf).ok()?;
    let f = &req.flags;
    let plain = req.command == Command::Set
        && f.set_mode() == Some(SetMode::Set)
        && f.cas.is_none()
        && !f.invalidate
        && req.late_error.is_none()
        && req.datalen <= write_max
        && crate::model::item_size_ok(item_size_max, req.key.len(), f.client_flags.unwrap_or(0), req.datalen);
    if !plain {
        return None;
    }
    match meta::data_block(&buf[next..], req.datalen) {
        DataBlock::Ok(_) => Some(next + req.datalen + 2),
        _ => None,
    }
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
    let mut out: Vec<u8> = Vec::new();
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
            out = take_buf();
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
            sock.write_all(&out).await?;
            state.stats.bytes_written.add(out.len() as u64);
            out.clear();
        }
        if close {
            break Ok(());
        }
        if pos == rbuf.len() {
            rbuf.clear();
            give_buf(&mut rbuf);
            give_buf(&mut out);
        } else {
            rbuf.drain(..pos);
        }
    };
    give_buf(&mut rbuf);
    give_buf(&mut out);
    let _ = sock.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys the planner hands to the prefetch: those of plain reads, none for a base64 key
    /// (the prefetch decodes it) or a write.
    fn planned_keys(p: Proto, buf: &[u8]) -> Vec<Option<Vec<u8>>> {
        let run = Run::plan(p, buf, Some(1024), 1 << 20).expect("a run");
        (0..run.n)
            .map(|i| {
                run.keys[i]
                    .of(nth_request(buf, &run.ends[..run.n], i))
                    .map(<[u8]>::to_vec)
            })
            .collect()
    }

    #[test]
    fn the_planner_finds_each_reads_key() {
        let buf = b"mg  alpha v f O1\r\nmg YmV0YQ== v b\r\nms w 1 T0\r\nx\r\nget gamma\r\ngets  delta \r\nmg e\r\n";
        let keys = planned_keys(Proto::Text, buf);
        let want: Vec<Option<Vec<u8>>> = vec![
            Some(b"alpha".to_vec()),
            None,
            None,
            Some(b"gamma".to_vec()),
            Some(b"delta".to_vec()),
            Some(b"e".to_vec()),
        ];
        assert_eq!(keys, want);
        // A touch changes the item, so it ends the run; a multi-key get reads no key ahead.
        assert!(Run::plan(Proto::Text, b"mg a T30 v\r\nmg b v\r\n", Some(1024), 1 << 20).is_none());
        let multi = planned_keys(Proto::Text, b"get a b\r\nget c\r\n");
        assert_eq!(multi, vec![None, Some(b"c".to_vec())]);
    }

    /// The light scan for `ms` accepts only what the full check accepts, with the same length,
    /// over lines built from valid and invalid pieces alike.
    #[test]
    fn the_light_ms_scan_accepts_only_what_the_parser_does() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let pieces: &[&str] = &[
            "F0",
            "F7",
            "F4294967296",
            "F-1",
            "Fx",
            "F",
            "T0",
            "T-1",
            "T30",
            "T99999999999999999999",
            "T",
            "T+5",
            "c",
            "k",
            "q",
            "s",
            "t",
            "f",
            "h",
            "l",
            "v",
            "b",
            "I",
            "C5",
            "MS",
            "ME",
            "N0",
            "R5",
            "O",
            "O1",
            "Oabcdefghijklmnopqrstuvwxyz01234",
            "Oabcdefghijklmnopqrstuvwxyz012345",
            "u",
            "P",
            "L",
            "Z",
            "\u{7f}",
        ];
        let (mut accepted, mut tried) = (0, 0);
        for _ in 0..20_000 {
            let key = match rng.gen_range(0..4) {
                0 => "k".repeat(250),
                1 => "k".repeat(251),
                _ => "key".to_string(),
            };
            let len: usize = rng.gen_range(0..6);
            let len_tok = match rng.gen_range(0..6) {
                0 => "-1".to_string(),
                1 => "x".to_string(),
                2 => "0005".to_string(),
                _ => len.to_string(),
            };
            let mut line = format!("ms{}{key} {len_tok}", if rng.gen_bool(0.1) { "  " } else { " " });
            for _ in 0..rng.gen_range(0..20) {
                line.push_str(if rng.gen_bool(0.1) { "  " } else { " " });
                line.push_str(pieces[rng.gen_range(0..pieces.len())]);
            }
            let data = if rng.gen_bool(0.9) {
                "x".repeat(len)
            } else {
                "y".repeat(len + 1)
            };
            let buf = format!("{line}\r\n{data}\r\nmg next\r\n").into_bytes();
            let (line_end, next) = (line.len(), line.len() + 2);
            let item_max = if rng.gen_bool(0.5) { 1 << 20 } else { 320 };
            tried += 1;
            if let Some(n) = plain_ms_len(&buf, line_end, next, 4, item_max) {
                accepted += 1;
                assert_eq!(meta_set_len(&buf, line_end, next, 4, item_max), Some(n), "{line}");
            }
        }
        // The scan must take the common lines, or it saves nothing.
        assert!(accepted > tried / 50, "{accepted} of {tried}");
        let common = b"ms rb:74578 100 F0 T0 c O12346\r\n";
        let mut buf = common.to_vec();
        buf.extend_from_slice(&[b'v'; 100]);
        buf.extend_from_slice(b"\r\n");
        assert_eq!(
            plain_ms_len(&buf, common.len() - 2, common.len(), 1024, 1 << 20),
            Some(buf.len())
        );
    }

    #[test]
    fn the_planner_finds_binary_keys() {
        let mut buf = Vec::new();
        for key in [&b"one"[..], b"three"] {
            let req = riven_memcache::binary::Request {
                key,
                ..riven_memcache::binary::Request::new(riven_memcache::binary::Opcode::GETK)
            };
            riven_memcache::binary::compose_request(&mut buf, &req).unwrap();
        }
        assert_eq!(
            planned_keys(Proto::Binary, &buf),
            vec![Some(b"one".to_vec()), Some(b"three".to_vec())]
        );
    }
}
