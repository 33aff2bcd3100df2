//! One multiplexed, pipelined TCP connection to a node over memcached's binary protocol.
//!
//! Many callers share a [`Conn`]. A call encodes its request straight into the connection's
//! write buffer and queues a pending entry, both under one lock, so the bytes on the wire are in
//! the same order as the pending queue. A writer task takes the whole buffer at once and writes
//! it with one `write_all`, so a burst of calls costs one syscall rather than one each. A reader
//! task frames replies and hands each to the oldest pending entry: memcached answers in order,
//! and no quiet opcodes are sent, so every request gets exactly one reply. The opaque (and
//! opcode) of each reply is checked against the entry's; a mismatch means the stream is out of
//! step, and the connection is closed with every pending request failed.
//!
//! A call waits on a completion slot borrowed from the link's slab (module `slots`) rather than a
//! channel of its own, so a call allocates nothing: the slab is reused for the link's life. The
//! pending entry names the slot with its generation, which changes whenever the slot is given
//! back.
//!
//! Timeouts cost no timer per call. Calls are queued in order and all wait equally long, so
//! their deadlines rise along the pending queue: one expiry task per link sleeps until the
//! oldest deadline not yet passed, fails every call whose deadline has come, and sleeps again.
//! Under load it wakes about once per request timeout, however many calls go by.
//!
//! A call that times out (or whose future is dropped) gives its slot back but leaves its entry
//! in the queue: its reply, if it comes, still arrives in order, finds the slot's generation
//! changed (a later call may hold the slot by then) and is dropped. A broken
//! connection fails everything pending on it; the next call connects again, with a backoff after
//! failed attempts. The connection is made lazily, by the first call.

mod slots;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use riven_memcache::binary::{self, Opcode, ParseError, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::error::{NodeError, Unavailable};
use crate::op::{Op, Resp};
use slots::{Outcome, SlotId, Slots};

/// Room the read buffer is topped up to before each read; a reply larger than this gets a
/// buffer of its own size.
const READ_CHUNK: usize = 64 * 1024;
/// The starting size of each of the two write buffers.
const WRITE_BUF: usize = 64 * 1024;
/// Room for this many pending entries is made up front; a larger in-flight limit grows the
/// queue as it fills.
const PREALLOC_PENDING: usize = 4096;
/// Room for this many completion slots is made up front (a slot is larger than an entry, and
/// most connections never have this many calls waiting); beyond it the slab doubles as needed.
const PREALLOC_SLOTS: usize = 256;
/// A write buffer that grew past this (a large value went through) is not kept, so one large
/// value does not pin its size for the connection's life.
const MAX_KEPT_WRITE_BUF: usize = 1024 * 1024;

/// How a connection behaves. Every field has a default ([`ConnConfig::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnConfig {
    /// How long a connect may take. Default 1 s.
    pub connect_timeout: Duration,
    /// How long a call waits for its reply once it is queued (connecting is not counted).
    /// Default 1 s.
    pub request_timeout: Duration,
    /// Requests that may await replies at once; a call beyond this fails at once with
    /// [`NodeError::Overloaded`] rather than queueing without bound. Default 1024.
    pub max_in_flight: usize,
    /// The wait after the first failed connect before another is tried; it doubles with each
    /// further failure. Default 10 ms.
    pub reconnect_min_backoff: Duration,
    /// The longest wait between connect attempts. Default 1 s.
    pub reconnect_max_backoff: Duration,
    /// The largest reply body (extras, key and value) accepted, in bytes. A reply whose header
    /// claims more is taken for a corrupt stream: the connection fails with
    /// [`NodeError::Protocol`] before any room is reserved for it, and the next call connects
    /// again. Set it at or above the nodes' item size limit (`-I`). Default
    /// [`DEFAULT_MAX_REPLY`] (64 MiB).
    pub max_reply: usize,
}

/// The default [`ConnConfig::max_reply`]: 64 MiB, well above memcached's and the node's default
/// item limit of 1 MiB, and far below what a garbage header can claim (4 GiB).
pub const DEFAULT_MAX_REPLY: usize = 64 * 1024 * 1024;

impl Default for ConnConfig {
    fn default() -> ConnConfig {
        ConnConfig {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_in_flight: 1024,
            reconnect_min_backoff: Duration::from_millis(10),
            reconnect_max_backoff: Duration::from_secs(1),
            max_reply: DEFAULT_MAX_REPLY,
        }
    }
}

/// A multiplexed connection to one node, shared by any number of concurrent callers (see the
/// module docs). Dropping it closes the socket.
#[derive(Debug)]
pub struct Conn {
    addr: Arc<str>,
    config: ConnConfig,
    /// The live link, if any. A std mutex: it is held only to clone or swap an `Arc`.
    active: Mutex<Option<Active>>,
    /// Serializes connect attempts, so a burst of calls on a dead connection makes one attempt,
    /// and holds the backoff state between attempts.
    connect: tokio::sync::Mutex<Backoff>,
    /// The live link's pending requests, shared with it, so [`Conn::in_flight`] (read on every
    /// call to pick a connection) is one atomic load. A new link starts it again from zero.
    in_flight: Arc<AtomicUsize>,
}

impl Conn {
    /// A connection to `addr` (`host:port`). Nothing is connected until the first call.
    pub fn new(addr: impl Into<Arc<str>>, config: ConnConfig) -> Conn {
        Conn {
            addr: addr.into(),
            config,
            active: Mutex::new(None),
            connect: tokio::sync::Mutex::new(Backoff::default()),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The configuration this connection was made with.
    pub fn config(&self) -> &ConnConfig {
        &self.config
    }

    /// Requests sent and not yet answered (including timed-out ones whose replies have not come).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The live link's reply slots: how many calls hold one, and how many the link has
    /// allocated (`(0, 0)` with no link). For tests that check slots are given back and reused;
    /// not a stable interface.
    #[doc(hidden)]
    pub fn reply_slots(&self) -> (usize, usize) {
        lock(&self.active).as_ref().map_or((0, 0), |a| {
            let shared = lock(&a.link.shared);
            (shared.slots.in_use(), shared.slots.allocated())
        })
    }

    /// Sends `op` and waits for its reply, connecting first if there is no live connection.
    /// The request timeout runs from when the request is queued.
    pub async fn call(&self, op: &Op<'_>) -> Result<Resp, NodeError> {
        let link = self.link().await?;
        let deadline = Instant::now() + self.config.request_timeout;
        let reply = link.enqueue(op, self.config.max_in_flight, deadline)?;
        reply.await
    }

    /// The live link, connecting if there is none.
    async fn link(&self) -> Result<Arc<Link>, NodeError> {
        if let Some(link) = self.live_link() {
            return Ok(link);
        }
        let mut backoff = self.connect.lock().await;
        // Another caller may have connected while this one waited for the lock.
        if let Some(link) = self.live_link() {
            return Ok(link);
        }
        let now = Instant::now();
        if let Some(left) = backoff.next_try.and_then(|t| t.checked_duration_since(now)) {
            if !left.is_zero() {
                return Err(self.unavailable(Unavailable::ReconnectBackoff(left)));
            }
        }
        match self.open().await {
            Ok(active) => {
                *backoff = Backoff::default();
                let link = active.link.clone();
                *lock(&self.active) = Some(active);
                Ok(link)
            }
            Err(e) => {
                backoff.failures = backoff.failures.saturating_add(1);
                let delay = backoff_delay(
                    self.config.reconnect_min_backoff,
                    self.config.reconnect_max_backoff,
                    backoff.failures,
                );
                backoff.next_try = Some(Instant::now() + delay);
                Err(e)
            }
        }
    }

    /// The current link if it has not failed; a failed one is dropped, which ends its tasks.
    fn live_link(&self) -> Option<Arc<Link>> {
        let mut active = lock(&self.active);
        match active.as_ref() {
            Some(a) if !a.link.has_failed() => Some(a.link.clone()),
            Some(_) => {
                *active = None;
                None
            }
            None => None,
        }
    }

    async fn open(&self) -> Result<Active, NodeError> {
        let connect = TcpStream::connect(&*self.addr);
        let stream = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(self.unavailable(Unavailable::ConnectFailed(Arc::new(e)))),
            Err(_) => {
                let after = self.config.connect_timeout;
                return Err(self.unavailable(Unavailable::ConnectTimeout(after)));
            }
        };
        // Requests are batched by the writer already; Nagle would only add latency on top.
        if let Err(e) = stream.set_nodelay(true) {
            return Err(self.unavailable(Unavailable::ConnectFailed(Arc::new(e))));
        }
        let (read, write) = stream.into_split();
        self.in_flight.store(0, Ordering::Relaxed);
        let link = Arc::new(Link::new(self.addr.clone(), &self.config, self.in_flight.clone()));
        let reader = tokio::spawn(read_loop(link.clone(), read)).abort_handle();
        let writer = tokio::spawn(write_loop(link.clone(), write)).abort_handle();
        let expiry = tokio::spawn(expiry_loop(link.clone())).abort_handle();
        // A task that fails the link before this is set misses the aborts in `fail`; the next
        // call then finds the link failed and drops its `Active`, which aborts them all.
        let _ = link.tasks.set([reader, writer, expiry]);
        Ok(Active { link })
    }

    fn unavailable(&self, reason: Unavailable) -> NodeError {
        NodeError::Unavailable {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// The wait after `failures` consecutive failed attempts: `min` doubled per failure after the
/// first, capped at `max`.
pub(crate) fn backoff_delay(min: Duration, max: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    min.saturating_mul(1 << doublings).min(max)
}

/// Connect attempts that failed in a row, and when the next may be made.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next_try: Option<Instant>,
}

/// The connection's current link, whose tasks end when this is dropped.
#[derive(Debug)]
struct Active {
    link: Arc<Link>,
}

impl Drop for Active {
    fn drop(&mut self) {
        // The tasks hold the socket halves (and an `Arc` of the link each): aborting them
        // closes the socket and frees the link.
        self.link.abort_tasks();
    }
}

/// The state one TCP connection's caller, writer and reader share.
#[derive(Debug)]
struct Link {
    addr: Arc<str>,
    /// [`ConnConfig::max_reply`].
    max_reply: usize,
    /// [`ConnConfig::request_timeout`], for the expiry task.
    request_timeout: Duration,
    shared: Mutex<Shared>,
    /// `shared.pending.len()`, readable without the lock (for least-loaded picking); the
    /// [`Conn`]'s counter.
    in_flight: Arc<AtomicUsize>,
    /// `shared.failed.is_some()`, readable without the lock (checked on every call).
    failed: AtomicBool,
    /// Wakes the writer: bytes were queued, or the link failed.
    wake: Notify,
    /// The reader, writer and expiry tasks, aborted when the link fails so the socket closes at
    /// once (another task may be parked on a socket that will never wake it).
    tasks: OnceLock<[AbortHandle; 3]>,
}

#[derive(Debug)]
struct Shared {
    /// Encoded requests not yet taken by the writer.
    write_buf: Vec<u8>,
    /// Requests sent or queued, oldest first, in the order of their bytes on the wire.
    pending: VecDeque<Pending>,
    /// How many entries at the front of `pending` have passed their deadline and had their
    /// calls failed with a timeout; their replies, when they come, are dropped.
    expired: usize,
    /// Where replies are left for the calls waiting on them.
    slots: Slots,
    next_opaque: u32,
    /// Set once, when the link breaks; every later call fails with it.
    failed: Option<NodeError>,
}

#[derive(Debug)]
struct Pending {
    opaque: u32,
    opcode: Opcode,
    /// The slot of the call waiting for this reply; if the call gave it up, the slot's
    /// generation has moved on and the reply is dropped.
    slot: SlotId,
    /// When the call times out.
    deadline: Instant,
}

/// A queued call's wait for its reply (or its timeout, from the expiry task). Dropping it (the
/// caller's future dropped) gives the slot back; the request's pending entry stays, and its
/// reply is dropped on arrival.
#[derive(Debug)]
struct Reply<'a> {
    link: &'a Link,
    slot: SlotId,
    /// The outcome was taken, and the slot with it given back.
    done: bool,
}

impl Future for Reply<'_> {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        // The state is read and the waker stored under the lock the reader completes slots
        // under, so a reply cannot land between the two and its wakeup be lost.
        let polled = lock(&self.link.shared).slots.poll(self.slot, cx);
        if polled.is_ready() {
            self.done = true;
        }
        polled
    }
}

impl Drop for Reply<'_> {
    fn drop(&mut self) {
        if !self.done {
            let left = lock(&self.link.shared).slots.release(self.slot);
            // A reply that came just too late is dropped here, after the lock is released.
            drop(left);
        }
    }
}

impl Link {
    fn new(addr: Arc<str>, config: &ConnConfig, in_flight: Arc<AtomicUsize>) -> Link {
        let max_in_flight = config.max_in_flight;
        Link {
            addr,
            max_reply: config.max_reply,
            request_timeout: config.request_timeout,
            shared: Mutex::new(Shared {
                write_buf: Vec::with_capacity(WRITE_BUF),
                // Sized for the limit (within reason) up front, so queueing does not reallocate.
                pending: VecDeque::with_capacity(max_in_flight.min(PREALLOC_PENDING)),
                expired: 0,
                slots: Slots::with_capacity(max_in_flight.min(PREALLOC_SLOTS)),
                next_opaque: 0,
                failed: None,
            }),
            in_flight,
            failed: AtomicBool::new(false),
            wake: Notify::new(),
            tasks: OnceLock::new(),
        }
    }

    fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Encodes `op` into the write buffer and queues its pending entry, with a slot for the
    /// reply, to be failed with a timeout at `deadline`.
    fn enqueue(&self, op: &Op<'_>, limit: usize, deadline: Instant) -> Result<Reply<'_>, NodeError> {
        let mut shared = lock(&self.shared);
        if let Some(e) = &shared.failed {
            return Err(e.clone());
        }
        if shared.pending.len() >= limit {
            return Err(NodeError::Overloaded {
                addr: self.addr.clone(),
                limit,
            });
        }
        let opaque = shared.next_opaque;
        op.encode(opaque, &mut shared.write_buf)
            .map_err(|source| NodeError::Invalid {
                addr: self.addr.clone(),
                source,
            })?;
        shared.next_opaque = opaque.wrapping_add(1);
        let slot = shared.slots.take();
        shared.pending.push_back(Pending {
            opaque,
            opcode: op.opcode(),
            slot,
            deadline,
        });
        self.in_flight.store(shared.pending.len(), Ordering::Relaxed);
        drop(shared);
        self.wake.notify_one();
        Ok(Reply {
            link: self,
            slot,
            done: false,
        })
    }

    /// Breaks the link: records `err`, fails every pending request with it and ends both
    /// tasks, which closes the socket. Only the first failure is recorded.
    fn fail(&self, err: NodeError) {
        let mut shared = lock(&self.shared);
        if shared.failed.is_some() {
            return;
        }
        shared.failed = Some(err.clone());
        self.failed.store(true, Ordering::Release);
        let pending = std::mem::take(&mut shared.pending);
        // The expired entries' calls were told already.
        let expired = std::mem::take(&mut shared.expired);
        shared.write_buf = Vec::new();
        self.in_flight.store(0, Ordering::Relaxed);
        // A link fails once, so this allocation is not per request. A caller that timed out has
        // given its slot up: nothing to tell it, and `complete` skips it.
        let wakers: Vec<Waker> = pending
            .into_iter()
            .skip(expired)
            .filter_map(|p| shared.slots.complete(p.slot, Err(err.clone())))
            .collect();
        drop(shared);
        // Woken outside the lock, so a woken caller does not find it held.
        wakers.into_iter().for_each(Waker::wake);
        // The writer also ends by itself when woken to a failed link.
        self.wake.notify_one();
        self.abort_tasks();
    }

    /// Fails with a timeout every call whose deadline is `now` or earlier, pushing their wakers
    /// onto `wake`, and returns when to look again: the next deadline, or a request timeout
    /// from now if nothing is waiting (a call queued later cannot be due sooner). `None` once
    /// the link has failed.
    fn expire(&self, now: Instant, wake: &mut Vec<Waker>) -> Option<Instant> {
        let mut guard = lock(&self.shared);
        let shared = &mut *guard;
        if shared.failed.is_some() {
            return None;
        }
        while let Some(p) = shared.pending.get(shared.expired) {
            if p.deadline > now {
                return Some(p.deadline);
            }
            let timeout = NodeError::Timeout {
                addr: self.addr.clone(),
                after: self.request_timeout,
            };
            wake.extend(shared.slots.complete(p.slot, Err(timeout)));
            shared.expired += 1;
        }
        Some(now + self.request_timeout)
    }

    fn abort_tasks(&self) {
        for task in self.tasks.get().into_iter().flatten() {
            task.abort();
        }
    }

    fn io_error(&self, kind: io::ErrorKind, msg: &str) -> NodeError {
        NodeError::Io {
            addr: self.addr.clone(),
            source: Arc::new(io::Error::new(kind, msg.to_owned())),
        }
    }

    fn protocol_error(&self, detail: String) -> NodeError {
        NodeError::Protocol {
            addr: self.addr.clone(),
            detail: detail.into(),
        }
    }

    /// Frames every whole reply at the front of `buf` and hands each to its pending request,
    /// pushing the wakers of the calls completed onto `wake`, to be woken once the lock is
    /// released. An incomplete reply stays in `buf`, with room reserved for all of it.
    fn deliver(&self, buf: &mut BytesMut, wake: &mut Vec<Waker>) -> Result<(), NodeError> {
        let mut shared: Option<MutexGuard<'_, Shared>> = None;
        loop {
            let head = match binary::parse_response_header(buf) {
                Ok(head) => head,
                Err(ParseError::Incomplete) => return Ok(()),
                Err(e) => return Err(self.protocol_error(e.to_string())),
            };
            let Some(value_len) = head.value_len() else {
                return Err(self.protocol_error(ParseError::BadLengths.to_string()));
            };
            let frame_len = head.frame_len();
            let body_len = frame_len - HEADER_LEN;
            if body_len > self.max_reply {
                let detail = format!(
                    "reply {:?} opaque {} claims a body of {body_len} bytes, over the limit of {} \
                     (max_reply)",
                    head.opcode, head.opaque, self.max_reply
                );
                return Err(self.protocol_error(detail));
            }
            if buf.len() < frame_len {
                buf.reserve(frame_len - buf.len());
                return Ok(());
            }
            // The reply's bytes become a `Bytes` sharing the read buffer: the value is passed on
            // without a copy.
            let frame = buf.split_to(frame_len).freeze();
            let extras_len = usize::from(head.extras_len);
            let extras = &frame[HEADER_LEN..HEADER_LEN + extras_len];
            let resp = Resp {
                status: head.status,
                cas: head.cas,
                flags: binary::parse_u32_extras(extras).unwrap_or(0),
                value: frame.slice(frame_len - value_len..),
            };

            let shared = shared.get_or_insert_with(|| lock(&self.shared));
            let Some(pending) = shared.pending.pop_front() else {
                let detail = format!("reply (opaque {}) with no request pending", head.opaque);
                return Err(self.protocol_error(detail));
            };
            self.in_flight.store(shared.pending.len(), Ordering::Relaxed);
            let was_expired = shared.expired > 0;
            if pending.opaque != head.opaque || pending.opcode != head.opcode {
                let detail = format!(
                    "reply {:?} opaque {} does not match the oldest request, {:?} opaque {}",
                    head.opcode, head.opaque, pending.opcode, pending.opaque
                );
                // Put it back so `fail` tells its caller too.
                shared.pending.push_front(pending);
                return Err(self.protocol_error(detail));
            }
            if was_expired {
                // Its call was failed with a timeout: the reply is dropped here, in order.
                shared.expired -= 1;
                continue;
            }
            // The caller may have given up and gone: then the reply is dropped here too.
            wake.extend(shared.slots.complete(pending.slot, Ok(resp)));
        }
    }
}

/// Takes everything queued and writes it with one `write_all`, until the link fails.
async fn write_loop(link: Arc<Link>, mut socket: OwnedWriteHalf) {
    // Two buffers swap places: callers fill one while this task writes the other, so neither
    // is reallocated in the steady state.
    let mut out = Vec::with_capacity(WRITE_BUF);
    loop {
        link.wake.notified().await;
        {
            let mut shared = lock(&link.shared);
            if shared.failed.is_some() {
                return;
            }
            std::mem::swap(&mut shared.write_buf, &mut out);
        }
        if out.is_empty() {
            continue;
        }
        if let Err(e) = socket.write_all(&out).await {
            link.fail(NodeError::Io {
                addr: link.addr.clone(),
                source: Arc::new(e),
            });
            return;
        }
        out.clear();
        if out.capacity() > MAX_KEPT_WRITE_BUF {
            out = Vec::with_capacity(WRITE_BUF);
        }
    }
}

/// Fails calls whose deadlines have passed, until the link fails.
async fn expiry_loop(link: Arc<Link>) {
    let mut wakers = Vec::new();
    loop {
        let next = link.expire(Instant::now(), &mut wakers);
        wakers.drain(..).for_each(Waker::wake);
        let Some(next) = next else { return };
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Reads replies and delivers them, until the link fails.
async fn read_loop(link: Arc<Link>, mut socket: OwnedReadHalf) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Reused for every batch of replies: it grows to the largest batch and then stays.
    let mut wakers = Vec::new();
    loop {
        let delivered = link.deliver(&mut buf, &mut wakers);
        // Replies completed before a bad one are still handed over.
        wakers.drain(..).for_each(Waker::wake);
        if let Err(e) = delivered {
            link.fail(e);
            return;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match socket.read_buf(&mut buf).await {
            Ok(0) => {
                link.fail(link.io_error(io::ErrorKind::UnexpectedEof, "closed by the node"));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                link.fail(NodeError::Io {
                    addr: link.addr.clone(),
                    source: Arc::new(e),
                });
                return;
            }
        }
    }
}

/// Locks a std mutex, ignoring poisoning: nothing here panics while holding one, and the state
/// is consistent between statements anyway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_min_to_max() {
        let (min, max) = (Duration::from_millis(10), Duration::from_millis(100));
        let delays: Vec<_> = (1..=6).map(|n| backoff_delay(min, max, n).as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 100, 100]);
        assert_eq!(backoff_delay(min, max, u32::MAX), max);
    }
}
