//! One client connection: read, hand every complete request to the front end, write all replies
//! of the batch with one write.
//!
//! An idle connection holds no buffers: they are taken from a per-thread pool when bytes arrive
//! and given back once everything read has been answered. This is what keeps tens of thousands
//! of idle connections cheap.

use std::cell::RefCell;
use std::io;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::protocol::{binary, text, ConnState, Ctx, Step};
use crate::server::{ConnInfo, ServerState};

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
        TcpStream::try_read_buf(self, buf)
    }
}

impl Socket for UnixStream {
    fn readable(&self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        UnixStream::readable(self)
    }
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        UnixStream::try_read_buf(self, buf)
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

fn take_buf() -> Vec<u8> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
}

fn give_buf(buf: &mut Vec<u8>) {
    let mut b = std::mem::take(buf);
    if b.capacity() == 0 || b.capacity() > POOL_MAX_BUF {
        return;
    }
    b.clear();
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_DEPTH {
            p.push(b);
        }
    });
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proto {
    Text,
    Binary,
}

/// memcached's binary protocol request magic.
const BINARY_MAGIC: u8 = 0x80;

/// Everything one batch of requests (the complete requests of one read) works on.
struct Batch<'a> {
    state: &'a ServerState,
    engine: &'a Engine,
    conn: &'a mut ConnState,
    proto: &'a mut Option<Proto>,
    swallow: &'a mut usize,
}

impl Batch<'_> {
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
                let run = self.concurrent_reads(p, &rbuf[pos..], out).await;
                if run > 0 {
                    pos += run;
                    continue;
                }
            }
            let mut ctx = Ctx {
                state: self.state,
                engine: self.engine,
                conn: self.conn,
            };
            let step = match p {
                Proto::Text => text::handle(&mut ctx, &rbuf[pos..], out).await,
                Proto::Binary => binary::handle(&mut ctx, &rbuf[pos..], out).await,
            };
            match step {
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

impl Batch<'_> {
    /// Pipelined reads in a row (`get`, `gets`, `mg` without touch/vivify/recache, binary
    /// GET/GETQ/GETK/GETKQ) change nothing, so against a tier that makes requests wait they are
    /// run together, and their replies appended in order. Answering them one after another would
    /// cost a round trip to the tier each. Returns the bytes used (0: not a run of two or more).
    async fn concurrent_reads(&mut self, p: Proto, buf: &[u8], out: &mut Vec<u8>) -> usize {
        const MAX_RUN: usize = 64;
        let mut ends = [0usize; MAX_RUN];
        let mut n = 0;
        let mut at = 0;
        while n < MAX_RUN {
            match read_only_request(p, &buf[at..]) {
                Some(len) => {
                    at += len;
                    ends[n] = at;
                    n += 1;
                }
                None => break,
            }
        }
        if n < 2 {
            return 0;
        }
        let (state, engine) = (self.state, self.engine);
        let runs = (0..n).map(|i| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            let request = &buf[start..ends[i]];
            async move {
                // Reads use no per-connection state: each gets its own.
                let mut conn = ConnState::default();
                let mut ctx = Ctx {
                    state,
                    engine,
                    conn: &mut conn,
                };
                let mut reply = Vec::new();
                match p {
                    Proto::Text => text::handle(&mut ctx, request, &mut reply).await,
                    Proto::Binary => binary::handle(&mut ctx, request, &mut reply).await,
                };
                reply
            }
        });
        for reply in futures_util::future::join_all(runs).await {
            out.extend_from_slice(&reply);
        }
        at
    }
}

/// The length of the complete request at the start of `buf` if it only reads.
fn read_only_request(p: Proto, buf: &[u8]) -> Option<usize> {
    use riven_proto::binary::{parse_request_header, Opcode};
    match p {
        Proto::Text => {
            let (line_end, next) = riven_proto::find_line(buf)?;
            let line = &buf[..line_end];
            if line.starts_with(b"get ") || line.starts_with(b"gets ") {
                return Some(next);
            }
            let flags = line.strip_prefix(b"mg ")?;
            // T touches, N creates, R may hand out the recache token: those change the item.
            let changes = flags
                .split(|&b| b == b' ')
                .skip(1)
                .any(|f| matches!(f.first(), Some(b'T' | b'N' | b'R')));
            (!changes).then_some(next)
        }
        Proto::Binary => {
            let h = parse_request_header(buf).ok()?;
            let get = matches!(h.opcode, Opcode::GET | Opcode::GETQ | Opcode::GETK | Opcode::GETKQ);
            let plain = h.extras_len == 0 && h.body_len == u32::from(h.key_len);
            (get && plain && buf.len() >= h.frame_len()).then_some(h.frame_len())
        }
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
                state.stats.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
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
        let batch = Batch {
            state,
            engine,
            conn: &mut conn,
            proto: &mut proto,
            swallow: &mut swallow,
        };
        // The embedded store answers at once: run the batch on the stack, so its (large) future
        // is not part of this connection's task and an idle connection stays small. Tiers that
        // may wait (a disk, a remote memcached) get the batch boxed, once per read.
        let (pos, close) = if engine.answers_at_once() {
            run_now(batch.run(&rbuf, &mut out))
        } else {
            Box::pin(batch.run(&rbuf, &mut out)).await
        };
        if !out.is_empty() {
            sock.write_all(&out).await?;
            state.stats.bytes_written.fetch_add(out.len() as u64, Ordering::Relaxed);
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
