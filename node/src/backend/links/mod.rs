//! A link to an external memcached over its binary protocol.
//!
//! A small set of long-lived connections is shared by every client connection of the node (one
//! backend connection per client connection is what costs Rend ~26 KB per idle client). Callers
//! append their request to a link's write buffer under a short lock; the link's writer task sends
//! everything buffered in one write, so requests from many clients are batched; the reader task
//! matches replies to waiters in order, checking the opaque the request carried.
//!
//! The requests a client connection makes while answering one burst of its requests form a
//! [`Group`] (set for the task with [`Group::scope`]): they all go over one link, so memcached
//! runs them in the order they were made, and their replies are dropped into the group's slots,
//! with one wake-up of the connection per pass of the link's reader instead of a channel and a
//! wake-up per request.
//!
//! While memcached is unreachable, calls fail at once with [`LinkError::Down`] (the node answers
//! `SERVER_ERROR`), and each link reconnects on its own with exponential backoff.

mod endpoint;
mod group;
mod io;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use parking_lot::{Mutex, MutexGuard};
use riven_memcache::binary::{self, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

pub use endpoint::{Endpoint, LinkError, LinksConfig, Reply};
use group::*;
pub use group::{Group, SlotWait};
use io::*;
pub(crate) use io::{connect, Stream};

/// Who waits for a reply.
pub(super) enum Waiter {
    /// A call outside any group.
    One(oneshot::Sender<Result<Reply, LinkError>>),
    /// A slot of a group (its generation, then its index).
    Slot(Arc<Group>, u32, u32),
}

impl Waiter {
    /// Hands over the reply. A group call's waker is returned instead of woken, so the reader
    /// wakes a connection once per pass, not once per reply.
    pub(super) fn deliver(self, r: Result<Reply, LinkError>) -> Option<Waker> {
        match self {
            Waiter::One(tx) => {
                let _ = tx.send(r);
                None
            }
            Waiter::Slot(group, generation, idx) => group.fill(generation, idx, r),
        }
    }
}

pub(super) struct LinkState {
    pub(super) up: bool,
    pub(super) wbuf: Vec<u8>,
    /// Requests sent or buffered, oldest first: opaque, who waits.
    pub(super) pending: VecDeque<(u32, Waiter)>,
    pub(super) next_opaque: u32,
}

pub(super) struct Link {
    pub(super) state: Mutex<LinkState>,
    pub(super) wake_writer: Notify,
}

impl Link {
    /// Marks the link down and fails every request in flight.
    pub(super) fn fail_all(&self, why: LinkError) {
        let mut st = self.state.lock();
        st.up = false;
        st.wbuf.clear();
        let pending = std::mem::take(&mut st.pending);
        drop(st);
        for (_, w) in pending {
            if let Some(waker) = w.deliver(Err(why.clone())) {
                waker.wake();
            }
        }
    }
}

/// The links to one memcached. Cheap to share (`Arc`); dropping the last handle stops its tasks.
pub struct Links {
    /// `per_worker` links for each worker thread, worker 0's first.
    pub(super) conns: Vec<Arc<Link>>,
    pub(super) per_worker: usize,
    pub(super) max_buffered: usize,
    pub(super) stop: CancellationToken,
}

impl Drop for Links {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Links {
    /// Creates the links and starts connecting in the background (on the current tokio runtime).
    pub fn start(cfg: LinksConfig) -> Links {
        Links::start_on(cfg, &[tokio::runtime::Handle::current()])
    }

    /// Creates `cfg.connections` links for each worker (see `crate::workers`), each link's tasks
    /// on its worker's runtime: a worker's connections use its own links, so a request and its
    /// reply never cross threads.
    pub fn start_on(cfg: LinksConfig, workers: &[tokio::runtime::Handle]) -> Links {
        let stop = CancellationToken::new();
        let per_worker = cfg.connections.max(1);
        let mut links = Vec::new();
        for handle in workers {
            for _ in 0..per_worker {
                let link = Arc::new(Link {
                    state: Mutex::new(LinkState {
                        up: false,
                        wbuf: Vec::with_capacity(16 * 1024),
                        pending: VecDeque::new(),
                        next_opaque: 0,
                    }),
                    wake_writer: Notify::new(),
                });
                handle.spawn(supervise(link.clone(), cfg.clone(), stop.clone()));
                links.push(link);
            }
        }
        Links {
            conns: links,
            per_worker,
            max_buffered: cfg.max_buffered,
            stop,
        }
    }

    /// The links the calling thread should use first: its worker's, or all of them elsewhere.
    pub(super) fn home(&self) -> (usize, usize) {
        match crate::workers::current() {
            Some(s) if (s + 1) * self.per_worker <= self.conns.len() => (s * self.per_worker, self.per_worker),
            _ => (0, self.conns.len()),
        }
    }

    /// The link a new burst (or a call outside one) goes over: the first of this worker's links
    /// with fewer than [`SPILL_AT`] requests in flight, else the least loaded.
    ///
    /// Filling the first link before the next keeps a light load on one memcached thread: turns
    /// taken over two links wake two memcached threads for half a burst each, which costs
    /// memcached more CPU per request (BENCHMARKS.md, "Design measurements"). A heavy load
    /// (pipeline 16: hundreds in flight) still spreads over every link, which keeps two memcached
    /// threads busy there.
    pub(super) fn pick(&self, base: usize, n: usize) -> usize {
        let mut best = (usize::MAX, base);
        for k in base..base + n {
            let in_flight = {
                let st = self.conns[k].state.lock();
                if !st.up {
                    continue;
                }
                st.pending.len()
            };
            if in_flight < SPILL_AT {
                return k;
            }
            best = best.min((in_flight, k));
        }
        best.1
    }

    /// Whether at least one connection is up.
    /// Stops the links' tasks (what dropping the last handle does, at a point of shutdown's
    /// choosing): requests still waiting get `LinkError::Lost`.
    pub fn close(&self) {
        self.stop.cancel();
    }

    pub fn is_up(&self) -> bool {
        self.conns.iter().any(|l| l.state.lock().up)
    }

    /// Waits until a connection is up, at most `limit`; whether one is.
    pub async fn wait_up(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while !self.is_up() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Sends one request; `req.opaque` is set here.
    pub async fn call(&self, req: binary::Request<'_>) -> Result<Reply, LinkError> {
        self.call_parts(req, &[]).await
    }

    /// Like [`Links::call`], with the value made of `req.value` followed by the `tail` pieces: a
    /// value held in pieces (an envelope and a slice of the user's data) is copied once, into the
    /// link's write buffer, instead of being gathered into one buffer first.
    pub async fn call_parts(&self, req: binary::Request<'_>, tail: &[&[u8]]) -> Result<Reply, LinkError> {
        self.send(req, tail)?.await
    }

    /// Within `group`, the calling task's (see [`Group::scope`]): sends a request for each of
    /// `keys` now, in order (`req` makes each), and keeps each wait for the first call to
    /// [`Links::stashed`] with its key while the stash is open. This is how a burst sends the reads
    /// of many requests at once and then runs each request's own logic, which finds its reply
    /// waiting. The group, the link and the stash are each locked once for all the keys, not once
    /// per key. False, with nothing sent, if they could not be sent.
    pub fn prefetch<'k>(
        &self,
        group: &Arc<Group>,
        keys: &[&'k [u8]],
        req: impl Fn(&'k [u8]) -> binary::Request<'k>,
    ) -> bool {
        let Ok(count) = u32::try_from(keys.len()) else {
            return false;
        };
        if count == 0 {
            return true;
        }
        let (generation, first, preferred) = group.open(count);
        // Until the requests are queued, dropping this gives the slots up again.
        let mut slots = OpenSlots {
            group,
            generation,
            first,
            count,
        };
        let Ok((link, mut st)) = self.lock_link(Some(group), preferred) else {
            return false;
        };
        let (start, queued) = (st.wbuf.len(), st.pending.len());
        for (j, &key) in (0u32..).zip(keys) {
            let opaque = st.next_opaque;
            st.next_opaque = opaque.wrapping_add(1);
            let r = binary::Request { opaque, ..req(key) };
            if binary::compose_request(&mut st.wbuf, &r).is_err() {
                st.wbuf.truncate(start);
                st.pending.truncate(queued);
                return false;
            }
            st.pending
                .push_back((opaque, Waiter::Slot(group.clone(), generation, first + j)));
        }
        unlock_and_wake(link, st, start);
        slots.count = 0;
        group.stash_slots(keys, generation, first);
        true
    }

    /// The wait [`Links::prefetch`] kept for `key`, if it is the oldest one kept and the stash is
    /// open.
    pub fn stashed(&self, key: &[u8]) -> Option<Pending> {
        GROUP.try_with(|g| g.take_stashed(key)).ok().flatten()
    }

    /// Like [`Links::stashed`], but only a reply that is already in, handed to `use_` where it
    /// lies and taken only if `use_` returns `Some` (see `Group::use_ready_stashed`).
    pub fn use_ready_stashed<T>(
        &self,
        key: &[u8],
        use_: impl FnOnce(&Result<Reply, LinkError>) -> Option<T>,
    ) -> Option<T> {
        GROUP.try_with(|g| g.use_ready_stashed(key, use_)).ok().flatten()
    }

    /// Notes `mark` until the end of the calling task's burst (its group), if it has one.
    /// Requests of a burst send their reads ahead, before the requests in front of them have
    /// done their own writes: a mark is how such a write (the chunking layer's record of a
    /// recache win) reaches the requests behind it in the burst.
    pub fn burst_mark(&self, mark: (u64, u64)) {
        let _ = GROUP.try_with(|g| g.stash.lock().marks.push(mark));
    }

    /// Whether `mark` was noted earlier in the calling task's burst.
    pub fn burst_marked(&self, mark: (u64, u64)) -> bool {
        GROUP
            .try_with(|g| g.stash.lock().marks.contains(&mark))
            .unwrap_or(false)
    }

    /// The current task's group, if any.
    pub fn group() -> Option<Arc<Group>> {
        GROUP.try_with(Arc::clone).ok()
    }

    /// Sends a request now (into the link's write buffer, in call order) and returns the wait
    /// for its reply: callers that make several requests start them all, then wait.
    pub fn send(&self, req: binary::Request<'_>, tail: &[&[u8]]) -> Result<Pending, LinkError> {
        self.send_in(Links::group(), req, tail)
    }

    /// The links to try a request on, in order. A group keeps to its link (`preferred`), so
    /// memcached sees its requests in order; otherwise (or when that link is down) the next of
    /// this worker's links that is up, then any other: one broken connection must not fail
    /// requests.
    pub(super) fn candidates(&self, preferred: Option<usize>) -> impl Iterator<Item = usize> {
        let total = self.conns.len();
        let (base, n) = self.home();
        let i = preferred.unwrap_or_else(|| self.pick(base, n));
        std::iter::once(i)
            .chain((0..n).map(move |k| base + (i + k) % n))
            .chain((0..total).map(move |k| (base + n + k) % total))
    }

    /// [`Links::send`] within `group` (the task's, looked up once by the caller).
    pub(super) fn send_in(
        &self,
        group: Option<Arc<Group>>,
        req: binary::Request<'_>,
        tail: &[&[u8]],
    ) -> Result<Pending, LinkError> {
        // The group's slot is opened first, with the group's link read under the same lock; if
        // the request cannot be sent, dropping its wait gives the slot up again.
        let (slot, preferred) = match &group {
            Some(g) => {
                let (generation, idx, link) = g.open(1);
                let wait = SlotWait {
                    group: g.clone(),
                    generation,
                    idx,
                    done: false,
                };
                (Some(wait), link)
            }
            None => (None, None),
        };
        let (link, mut st) = self.lock_link(group.as_deref(), preferred)?;
        let opaque = st.next_opaque;
        st.next_opaque = st.next_opaque.wrapping_add(1);
        let req = binary::Request { opaque, ..req };
        let start = st.wbuf.len();
        if binary::compose_request(&mut st.wbuf, &req).is_err() {
            return Err(LinkError::Protocol);
        }
        if !tail.is_empty() && !append_tail(&mut st.wbuf, start, tail) {
            st.wbuf.truncate(start);
            return Err(LinkError::Protocol);
        }
        let wait = match (slot, group) {
            (Some(slot), Some(group)) => {
                st.pending
                    .push_back((opaque, Waiter::Slot(group, slot.generation, slot.idx)));
                Pending::Slot(slot)
            }
            _ => {
                let (tx, rx) = oneshot::channel();
                st.pending.push_back((opaque, Waiter::One(tx)));
                Pending::One(rx)
            }
        };
        unlock_and_wake(link, st, start);
        Ok(wait)
    }

    /// The link a request of `group` is queued on, locked: the first of
    /// [`Links::candidates`] that is up. The group moves to it if it is not its `preferred` one.
    /// `Overloaded` if its write buffer is over the bound (memcached is not reading), `Down` if
    /// no link is up.
    pub(super) fn lock_link(
        &self,
        group: Option<&Group>,
        preferred: Option<usize>,
    ) -> Result<(&Link, MutexGuard<'_, LinkState>), LinkError> {
        for k in self.candidates(preferred) {
            let link = &*self.conns[k];
            let st = link.state.lock();
            if !st.up {
                continue;
            }
            if let Some(g) = group {
                if preferred != Some(k) {
                    g.state.lock().link = Some(k);
                }
            }
            if st.wbuf.len() > self.max_buffered {
                return Err(LinkError::Overloaded);
            }
            return Ok((link, st));
        }
        Err(LinkError::Down)
    }
}

/// Unlocks a link whose write buffer held `start` bytes before requests were queued on it.
/// The writer takes the whole buffer when it runs, so only requests that found it empty need to
/// wake it: the requests after them ride on that wake-up.
pub(super) fn unlock_and_wake(link: &Link, st: MutexGuard<'_, LinkState>, start: usize) {
    drop(st);
    if start == 0 {
        link.wake_writer.notify_one();
    }
}

/// The wait for one reply (see [`Links::send`]).
///
/// No timer per request: the link's reader fails every waiter at once when the oldest request
/// has waited longer than the timeout (see `read_loop`), which costs one clock read per burst of
/// replies instead of a timer wheel entry per request.
pub enum Pending {
    Slot(SlotWait),
    One(oneshot::Receiver<Result<Reply, LinkError>>),
}

impl Future for Pending {
    type Output = Result<Reply, LinkError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Pending::Slot(slot) => Pin::new(slot).poll(cx),
            Pending::One(rx) => Pin::new(rx).poll(cx).map(|r| r.unwrap_or(Err(LinkError::Lost))),
        }
    }
}

/// Appends `tail` to the request composed at `wbuf[start..]` and adds its length to the header's
/// body length (bytes 8..12 of a binary header). False if the body would pass 4 GiB.
pub(super) fn append_tail(wbuf: &mut Vec<u8>, start: usize, tail: &[&[u8]]) -> bool {
    let extra: usize = tail.iter().map(|p| p.len()).sum();
    let Some(field) = wbuf.get(start + 8..start + 12) else {
        return false;
    };
    let body = u32::from_be_bytes([field[0], field[1], field[2], field[3]]) as usize;
    let Some(body) = body.checked_add(extra).and_then(|b| u32::try_from(b).ok()) else {
        return false;
    };
    wbuf[start + 8..start + 12].copy_from_slice(&body.to_be_bytes());
    wbuf.reserve(extra);
    for piece in tail {
        wbuf.extend_from_slice(piece);
    }
    true
}
