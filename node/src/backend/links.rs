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

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, MutexGuard};
use riven_memcache::binary::{self, Opcode, Status, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

/// Where memcached listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Tcp(String),
    Unix(PathBuf),
}

impl Endpoint {
    /// `unix:/path` or `host:port`.
    pub fn parse(s: &str) -> Endpoint {
        match s.strip_prefix("unix:") {
            Some(path) => Endpoint::Unix(path.into()),
            None => Endpoint::Tcp(s.to_string()),
        }
    }

    /// Whether memcached runs on this host: a unix socket, `localhost` or a loopback address.
    pub fn is_local(&self) -> bool {
        match self {
            Endpoint::Unix(_) => true,
            Endpoint::Tcp(addr) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

#[derive(Clone, Debug)]
pub struct LinksConfig {
    pub endpoint: Endpoint,
    /// Connections to open.
    pub connections: usize,
    /// How long a request may wait for its reply.
    pub timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Bytes a link may hold unsent. Past this memcached is not keeping up: calls fail at once
    /// (`SERVER_ERROR`) instead of queueing without bound.
    pub max_buffered: usize,
}

impl LinksConfig {
    pub fn new(endpoint: Endpoint) -> LinksConfig {
        LinksConfig {
            endpoint,
            connections: 2,
            timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
            max_buffered: 64 << 20,
        }
    }
}

/// Why a request to memcached failed. All of them leave the node running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("memcached unavailable")]
    Down,
    #[error("memcached timed out")]
    Timeout,
    #[error("connection to memcached lost")]
    Lost,
    #[error("bad reply from memcached")]
    Protocol,
    #[error("memcached is not keeping up")]
    Overloaded,
}

/// One reply: its frame as read (no copies), the header's fields decoded.
///
/// The parts are found by offset rather than kept as three `Bytes`: each of those is a
/// reference count to bump and drop again on every reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub opcode: Opcode,
    pub status: Status,
    pub cas: u64,
    frame: Bytes,
    extras_end: usize,
    key_end: usize,
}

impl Reply {
    pub fn extras(&self) -> &[u8] {
        &self.frame[HEADER_LEN..self.extras_end]
    }

    pub fn key(&self) -> &[u8] {
        &self.frame[self.extras_end..self.key_end]
    }

    pub fn value(&self) -> &[u8] {
        &self.frame[self.key_end..]
    }

    /// The value, sharing the frame's buffer.
    pub fn into_value(self) -> Bytes {
        let mut frame = self.frame;
        bytes::Buf::advance(&mut frame, self.key_end);
        frame
    }
}

/// Who waits for a reply.
enum Waiter {
    /// A call outside any group.
    One(oneshot::Sender<Result<Reply, LinkError>>),
    /// A slot of a group (its generation, then its index).
    Slot(Arc<Group>, u32, u32),
}

impl Waiter {
    /// Hands over the reply. A group call's waker is returned instead of woken, so the reader
    /// wakes a connection once per pass, not once per reply.
    fn deliver(self, r: Result<Reply, LinkError>) -> Option<Waker> {
        match self {
            Waiter::One(tx) => {
                let _ = tx.send(r);
                None
            }
            Waiter::Slot(group, generation, idx) => group.fill(generation, idx, r),
        }
    }
}

tokio::task_local! {
    static GROUP: Arc<Group>;
}

/// Most groups a thread keeps for reuse.
const SPARE_GROUPS: usize = 64;

/// Requests in flight on a link beyond which new bursts go to the next link (see `Links::pick`).
/// Above a pipeline-1 load of 50 connections, below what pipeline 16 keeps in flight.
const SPILL_AT: usize = 64;

thread_local! {
    /// Groups of finished bursts, with the room their slots and stash grew to.
    static SPARE: std::cell::RefCell<Vec<Arc<Group>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The requests of one client connection's burst (see the module's documentation).
pub struct Group {
    state: Mutex<GroupState>,
    /// Replies asked for ahead of their caller, by key (see [`Links::prefetch`]). Only the
    /// connection's own task uses it.
    stash: Mutex<Stash>,
}

#[derive(Default)]
struct Stash {
    /// How many stashed replies calls may still take (the current request's own).
    open: usize,
    /// The keys of `waits`, back to back.
    keys: Vec<u8>,
    /// (end of its key in `keys`, the wait), oldest first.
    waits: VecDeque<(usize, Pending)>,
    /// Where the oldest wait's key starts.
    taken: usize,
    /// What callers noted for the rest of the burst (see [`Links::burst_mark`]).
    marks: Vec<(u64, u64)>,
}

impl Stash {
    /// Removes the oldest wait, and its key.
    fn pop(&mut self) -> Option<Pending> {
        let (end, wait) = self.waits.pop_front()?;
        self.taken = end;
        if self.waits.is_empty() {
            self.keys.clear();
            self.taken = 0;
        }
        Some(wait)
    }
}

struct GroupState {
    /// Bumped whenever the slots are reused, so a late reply for a call that was dropped lands
    /// nowhere instead of in another call's slot.
    generation: u32,
    slots: Vec<Slot>,
    /// Slots not yet taken by their call.
    live: usize,
    /// The link this group's requests go over (an index into the links).
    link: Option<usize>,
}

enum Slot {
    /// With the waker of the call's last poll.
    Waiting(Option<Waker>),
    Ready(Result<Reply, LinkError>),
    Taken,
}

impl Group {
    pub fn new() -> Arc<Group> {
        Arc::new(Group {
            state: Mutex::new(GroupState {
                generation: 0,
                slots: Vec::new(),
                live: 0,
                link: None,
            }),
            stash: Mutex::new(Stash::default()),
        })
    }

    /// A group for one burst: one this thread used before if there is one, so a burst does not
    /// allocate its group, nor grow its slots and stash again (about 1.3 allocations per
    /// request at pipeline depth 16). Give it back with [`Group::give_back`].
    pub fn for_burst() -> Arc<Group> {
        SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(Group::new)
    }

    /// Keeps a finished burst's group for the next burst on this thread, unless something still
    /// holds it (a reply still due: the link's queue keeps a handle until it comes).
    pub fn give_back(mut group: Arc<Group>) {
        group.clear_stash();
        let Some(g) = Arc::get_mut(&mut group) else {
            return;
        };
        let st = g.state.get_mut();
        st.slots.clear();
        st.live = 0;
        st.generation = st.generation.wrapping_add(1);
        // The next burst picks its link afresh (this one may have moved off a broken one).
        st.link = None;
        let stash = g.stash.get_mut();
        stash.open = 0;
        stash.marks.clear();
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_GROUPS {
                s.push(group);
            }
        });
    }

    /// Lets calls take the next `n` stashed replies (the request about to run stashed that
    /// many); 0 closes the stash. A call made while it is closed (a write's own lookup, a
    /// read's second look after a backfill) goes to memcached even if a reply for its key is
    /// stashed.
    pub fn open_stash(&self, n: usize) {
        self.stash.lock().open = n;
    }

    /// Drops every stashed wait (their replies, when they come, land nowhere) and closes the
    /// stash.
    pub fn clear_stash(&self) {
        self.trim_and_open_stash(0, 0);
    }

    /// Drops the oldest stashed waits until `keep` are left, then lets calls take the next `n`
    /// (see [`Group::open_stash`]), under one lock: the step before each request of a run.
    pub fn trim_and_open_stash(&self, keep: usize, n: usize) {
        let mut st = self.stash.lock();
        while st.waits.len() > keep {
            st.pop();
        }
        st.open = n;
    }

    /// Stashes the waits of the slots from `first` on, one per key of `keys`.
    fn stash_slots(self: &Arc<Group>, keys: &[&[u8]], generation: u32, first: u32) {
        let mut st = self.stash.lock();
        for (idx, key) in (first..).zip(keys) {
            st.keys.extend_from_slice(key);
            let end = st.keys.len();
            let wait = SlotWait {
                group: self.clone(),
                generation,
                idx,
                done: false,
            };
            st.waits.push_back((end, Pending::Slot(wait)));
        }
    }

    /// The oldest stashed wait, if the stash is open and it was for `key`.
    fn take_stashed(&self, key: &[u8]) -> Option<Pending> {
        let mut st = self.stash.lock();
        let (end, _) = st.waits.front()?;
        if st.open == 0 || &st.keys[st.taken..*end] != key {
            return None;
        }
        st.open -= 1;
        st.pop()
    }

    /// Hands the reply of the oldest stashed wait to `use_` where it lies, if the stash is open,
    /// the wait was for `key` and its reply is in; the wait is taken only if `use_` returns
    /// `Some`. A read that finds its reply so is answered without waiting (see `Chunked`'s
    /// `read_now`), and one that needs more than the reply (a chunked value) leaves it for its
    /// ordinary GET. Both locks are held while `use_` runs: it must not call the links.
    fn use_ready_stashed<T>(&self, key: &[u8], use_: impl FnOnce(&Result<Reply, LinkError>) -> Option<T>) -> Option<T> {
        let mut stash = self.stash.lock();
        let (end, Pending::Slot(wait)) = stash.waits.front()? else {
            return None;
        };
        if stash.open == 0 || &stash.keys[stash.taken..*end] != key {
            return None;
        }
        let out = {
            let mut st = self.state.lock();
            if st.generation != wait.generation {
                return None;
            }
            let idx = wait.idx as usize;
            let Some(Slot::Ready(r)) = st.slots.get(idx) else {
                return None;
            };
            let out = use_(r)?;
            st.slots[idx] = Slot::Taken;
            st.settle();
            out
        };
        stash.open -= 1;
        if let Some(Pending::Slot(mut wait)) = stash.pop() {
            // Taken above.
            wait.done = true;
        }
        Some(out)
    }

    /// Runs `fut` with every call to the links it makes in this group. Not an `async fn`: that would
    /// hold `fut` and move it (several KiB) into the task-local scope on its first poll.
    pub fn scope<F: Future>(self: &Arc<Group>, fut: F) -> impl Future<Output = F::Output> {
        GROUP.scope(self.clone(), fut)
    }

    /// `count` new waiting slots: (generation, index of the first), and the link the group keeps
    /// to, if any yet.
    fn open(&self, count: u32) -> (u32, u32, Option<usize>) {
        let mut st = self.state.lock();
        let first = st.slots.len() as u32;
        st.slots.extend((0..count).map(|_| Slot::Waiting(None)));
        st.live += count as usize;
        (st.generation, first, st.link)
    }

    /// Puts the reply in its slot; returns the waker to wake.
    fn fill(&self, generation: u32, idx: u32, r: Result<Reply, LinkError>) -> Option<Waker> {
        let mut st = self.state.lock();
        if st.generation != generation {
            return None;
        }
        let slot = st.slots.get_mut(idx as usize)?;
        match std::mem::replace(slot, Slot::Ready(r)) {
            Slot::Waiting(waker) => waker,
            // Given up by its call: keep it given up.
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Takes the reply of slot `idx` if it is in, else leaves `waker` to be woken when it is;
    /// `None` for the waker gives the slot up.
    fn take(&self, generation: u32, idx: u32, waker: Option<&Waker>) -> Option<Result<Reply, LinkError>> {
        let mut st = self.state.lock();
        if st.generation != generation {
            return None;
        }
        let slot = &mut st.slots[idx as usize];
        let out = match std::mem::replace(slot, Slot::Taken) {
            Slot::Ready(r) => Some(r),
            Slot::Waiting(old) if waker.is_some() => {
                let waker = waker.expect("checked");
                let keep = match old {
                    Some(old) if old.will_wake(waker) => old,
                    _ => waker.clone(),
                };
                *slot = Slot::Waiting(Some(keep));
                return None;
            }
            _ => None,
        };
        st.settle();
        out
    }
}

impl GroupState {
    /// Counts a slot as taken by its call (or given up); when no slot is live, they are reused.
    fn settle(&mut self) {
        self.live -= 1;
        if self.live == 0 {
            self.slots.clear();
            self.generation = self.generation.wrapping_add(1);
        }
    }
}

/// A call waiting in a group's slot.
pub struct SlotWait {
    group: Arc<Group>,
    generation: u32,
    idx: u32,
    done: bool,
}

impl Future for SlotWait {
    type Output = Result<Reply, LinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.group.take(self.generation, self.idx, Some(cx.waker())) {
            Some(r) => {
                self.done = true;
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for SlotWait {
    fn drop(&mut self) {
        if !self.done {
            self.group.take(self.generation, self.idx, None);
        }
    }
}

/// Slots opened for requests not queued yet: dropping this gives up the `count` from `first`.
struct OpenSlots<'g> {
    group: &'g Group,
    generation: u32,
    first: u32,
    count: u32,
}

impl Drop for OpenSlots<'_> {
    fn drop(&mut self) {
        for idx in self.first..self.first + self.count {
            self.group.take(self.generation, idx, None);
        }
    }
}

struct LinkState {
    up: bool,
    wbuf: Vec<u8>,
    /// Requests sent or buffered, oldest first: opaque, who waits.
    pending: VecDeque<(u32, Waiter)>,
    next_opaque: u32,
}

struct Link {
    state: Mutex<LinkState>,
    wake_writer: Notify,
}

impl Link {
    /// Marks the link down and fails every request in flight.
    fn fail_all(&self, why: LinkError) {
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
    conns: Vec<Arc<Link>>,
    per_worker: usize,
    max_buffered: usize,
    stop: CancellationToken,
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
    fn home(&self) -> (usize, usize) {
        match crate::workers::current() {
            Some(s) if (s + 1) * self.per_worker <= self.conns.len() => (s * self.per_worker, self.per_worker),
            _ => (0, self.conns.len()),
        }
    }

    /// The link a new burst (or a call outside one) goes over: the first of this worker's links
    /// with fewer than [`SPILL_AT`] requests in flight, else the least loaded.
    ///
    /// Filling the first link before the next keeps a light load on one memcached thread: at
    /// pipeline depth 1 (50 connections, 2 cores), turns taken over two links woke two memcached
    /// threads for half a burst each, and memcached behind the node cost 6.1–7.7 µs of CPU per
    /// request; filling first, 4.0–4.4 µs. A heavy load (pipeline 16: hundreds in flight) still
    /// spreads over every link, which keeps two memcached threads busy there.
    fn pick(&self, base: usize, n: usize) -> usize {
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
    /// waiting. The group, the link and the stash are each locked once for all the keys: one
    /// request at a time cost about 400 instructions each (callgrind, pipeline depth 16). False,
    /// with nothing sent, if they could not be sent.
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
    fn candidates(&self, preferred: Option<usize>) -> impl Iterator<Item = usize> {
        let total = self.conns.len();
        let (base, n) = self.home();
        let i = preferred.unwrap_or_else(|| self.pick(base, n));
        std::iter::once(i)
            .chain((0..n).map(move |k| base + (i + k) % n))
            .chain((0..total).map(move |k| (base + n + k) % total))
    }

    /// [`Links::send`] within `group` (the task's, looked up once by the caller).
    fn send_in(
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
    fn lock_link(
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
fn unlock_and_wake(link: &Link, st: MutexGuard<'_, LinkState>, start: usize) {
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
fn append_tail(wbuf: &mut Vec<u8>, start: usize, tail: &[&[u8]]) -> bool {
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

/// Keeps one link connected: connect, serve until it breaks, back off, again.
async fn supervise(link: Arc<Link>, cfg: LinksConfig, stop: CancellationToken) {
    let mut backoff = cfg.backoff_min;
    loop {
        let mut why = LinkError::Lost;
        let connected = tokio::select! {
            c = connect(&cfg.endpoint) => c,
            _ = stop.cancelled() => return,
        };
        match connected {
            Ok(Stream::Tcp(s)) => {
                let _ = s.set_nodelay(true);
                backoff = cfg.backoff_min;
                let (r, w) = s.into_split();
                why = serve_link(&link, r, w, &cfg, &stop).await;
            }
            Ok(Stream::Unix(s)) => {
                backoff = cfg.backoff_min;
                let (r, w) = s.into_split();
                why = serve_link(&link, r, w, &cfg, &stop).await;
            }
            Err(e) => tracing::debug!(error = %e, endpoint = ?cfg.endpoint, "cannot reach memcached"),
        }
        link.fail_all(why);
        if stop.is_cancelled() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn connect(endpoint: &Endpoint) -> std::io::Result<Stream> {
    let fut = async {
        match endpoint {
            Endpoint::Tcp(addr) => tokio::net::TcpStream::connect(addr.as_str()).await.map(Stream::Tcp),
            Endpoint::Unix(path) => tokio::net::UnixStream::connect(path).await.map(Stream::Unix),
        }
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
}

/// Runs a connected link until it fails; returns why, for the requests it leaves unanswered.
async fn serve_link<R, W>(link: &Link, r: R, w: W, cfg: &LinksConfig, stop: &CancellationToken) -> LinkError
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    link.state.lock().up = true;
    tracing::info!(endpoint = ?cfg.endpoint, "connected to memcached");
    let failed = tokio::select! {
        e = write_loop(link, w) => e,
        e = read_loop(link, r, cfg.timeout) => e,
        _ = stop.cancelled() => return LinkError::Down,
    };
    let why = failed.err().unwrap_or(LinkError::Lost);
    tracing::warn!(error = %why, "memcached link failed");
    why
}

async fn write_loop<W: AsyncWrite + Unpin>(link: &Link, mut w: W) -> Result<(), LinkError> {
    let mut spare = Vec::with_capacity(16 * 1024);
    loop {
        link.wake_writer.notified().await;
        // Let the client tasks that are ready run first: their requests join this write instead
        // of each costing memcached (and us) a syscall of its own.
        tokio::task::yield_now().await;
        {
            let mut st = link.state.lock();
            std::mem::swap(&mut st.wbuf, &mut spare);
        }
        if !spare.is_empty() {
            w.write_all(&spare).await.map_err(|_| LinkError::Lost)?;
            spare.clear();
            if spare.capacity() > 1 << 20 {
                spare.shrink_to(16 * 1024);
            }
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(link: &Link, mut r: R, timeout: Duration) -> Result<(), LinkError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // Group calls that got a reply in this pass, woken once per task when it ends.
    let mut to_wake: Vec<Waker> = Vec::new();
    // The oldest request unanswered at a pass, and when a pass first saw it so. Requests carry
    // no time of their own (a clock read per request showed in profiles); a request that stays
    // the oldest for longer than the timeout is one memcached is not answering. Passes come at
    // least every quarter timeout, so it is caught within 1.5 timeouts of being sent.
    let mut watch: Option<(u32, Instant)> = None;
    loop {
        let parsed = deliver_replies(link, &mut buf, &mut to_wake);
        // Woken even when the stream broke: their replies are in.
        for waker in to_wake.drain(..) {
            waker.wake();
        }
        parsed?;
        // A request unanswered for longer than the timeout means memcached is hung (or too slow
        // to be useful): drop the link so every waiter fails now and it reconnects.
        let oldest = link.state.lock().pending.front().map(|p| p.0);
        watch = match (oldest, watch) {
            (None, _) => None,
            (Some(o), Some((w, since))) if o == w => {
                if since.elapsed() > timeout {
                    return Err(LinkError::Timeout);
                }
                Some((w, since))
            }
            (Some(o), _) => Some((o, Instant::now())),
        };
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(64 * 1024);
        }
        match tokio::time::timeout(timeout / 4, r.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return Err(LinkError::Lost),
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Err(LinkError::Lost),
            // Silence: fine while nothing is asked; checked above on the next turn otherwise.
            Err(_) => {}
        }
    }
}

/// Parses every whole reply in `buf` and hands each to its waiter; groups to wake are pushed on
/// `to_wake`.
fn deliver_replies(link: &Link, buf: &mut BytesMut, to_wake: &mut Vec<Waker>) -> Result<(), LinkError> {
    // One lock for the whole pass, not one per reply: the callers that append requests to a
    // link almost always run on the link's own worker thread, so holding it keeps no one
    // waiting. (Lock order, as in `send_in`: link, then group.)
    let mut st = link.state.lock();
    loop {
        let header = match binary::parse_response_header(buf) {
            Ok(h) => h,
            Err(binary::ParseError::Incomplete) => return Ok(()),
            Err(_) => return Err(LinkError::Protocol),
        };
        let frame_len = header.frame_len();
        if buf.len() < frame_len {
            buf.reserve(frame_len - buf.len());
            return Ok(());
        }
        let frame = buf.split_to(frame_len).freeze();
        let extras_end = HEADER_LEN + header.extras_len as usize;
        let key_end = extras_end + header.key_len as usize;
        if key_end > frame_len {
            return Err(LinkError::Protocol);
        }
        let reply = Reply {
            opcode: header.opcode,
            status: header.status,
            cas: header.cas,
            frame,
            extras_end,
            key_end,
        };
        let waiter = match st.pending.pop_front() {
            Some((opaque, w)) if opaque == header.opaque => w,
            // A reply nobody asked for: the stream is out of step; start over.
            _ => return Err(LinkError::Protocol),
        };
        if let Some(waker) = waiter.deliver(Ok(reply)) {
            // A burst's requests are sent, and so answered, together: comparing with the last
            // waker is enough to wake each connection about once per pass.
            if !to_wake.last().is_some_and(|w| w.will_wake(&waker)) {
                to_wake.push(waker);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::testutil::{free_port, MemcachedProcess};
    use riven_memcache::binary::StoreExtras;

    fn set_req<'a>(key: &'a [u8], value: &'a [u8], extras: &'a [u8; 8]) -> binary::Request<'a> {
        binary::Request {
            key,
            value,
            extras,
            ..binary::Request::new(Opcode::SET)
        }
    }

    async fn up(links: &Links) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !links.is_up() {
            assert!(Instant::now() < deadline, "links never connected");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_get_their_own_replies() {
        let mc = MemcachedProcess::start(&[]);
        let links = Arc::new(Links::start(mc.links_config()));
        up(&links).await;
        let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let links = links.clone();
            tasks.push(tokio::spawn(async move {
                // Many requests in flight at once per task, so they are batched and pipelined.
                let keys: Vec<String> = (0..200).map(|i| format!("k{t}-{i}")).collect();
                let sets = keys
                    .iter()
                    .map(|k| links.call(set_req(k.as_bytes(), k.as_bytes(), &extras)));
                for r in join_all(sets).await {
                    assert_eq!(r.unwrap().status, Status::SUCCESS);
                }
                let gets = keys.iter().map(|k| links.call(get_req(k.as_bytes())));
                for (k, r) in keys.iter().zip(join_all(gets).await) {
                    assert_eq!(r.unwrap().value(), k.as_bytes());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    fn get_req(key: &[u8]) -> binary::Request<'_> {
        binary::Request {
            key,
            ..binary::Request::new(Opcode::GET)
        }
    }

    /// Links, up, over a fresh memcached holding `items` (key, value).
    async fn links_holding(items: &[(&[u8], &[u8])]) -> (MemcachedProcess, Links) {
        let mc = MemcachedProcess::start(&[]);
        let links = Links::start(mc.links_config());
        up(&links).await;
        let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
        for (key, value) in items {
            let r = links.call(set_req(key, value, &extras)).await.unwrap();
            assert_eq!(r.status, Status::SUCCESS);
        }
        (mc, links)
    }

    #[tokio::test]
    async fn prefetched_gets_wait_in_order_for_their_own_keys() {
        let (_mc, links) = links_holding(&[(b"a", b"a"), (b"b", b"b")]).await;
        let group = Group::for_burst();
        let keys: [&[u8]; 3] = [b"a", b"missing", b"b"];
        assert!(links.prefetch(&group, &keys, get_req));
        let replies = group
            .scope(async {
                // Closed, nothing is handed out; open for one, only the oldest key matches.
                group.open_stash(0);
                assert!(links.stashed(b"a").is_none(), "the stash is closed");
                group.open_stash(3);
                assert!(links.stashed(b"b").is_none(), "b waits behind a");
                let mut replies = Vec::new();
                for k in keys {
                    replies.push(links.stashed(k).expect("stashed").await.unwrap());
                }
                assert!(links.stashed(b"a").is_none(), "each is taken once");
                replies
            })
            .await;
        assert_eq!(replies[0].value(), b"a");
        assert_eq!(replies[1].status, Status::KEY_ENOENT);
        assert_eq!(replies[2].value(), b"b");
        assert_eq!(group.state.lock().live, 0, "every slot was taken");
        Group::give_back(group);
    }

    /// A reply already in is handed over where it lies, and taken only when its user says so.
    #[tokio::test]
    async fn a_ready_reply_is_taken_only_when_used() {
        let (_mc, links) = links_holding(&[(b"a", b"va")]).await;
        let group = Group::for_burst();
        let keys: [&[u8]; 2] = [b"a", b"b"];
        assert!(links.prefetch(&group, &keys, get_req));
        group
            .scope(async {
                // Both replies in before they are asked for.
                tokio::time::sleep(Duration::from_millis(100)).await;
                group.open_stash(2);
                let value = |r: &Result<Reply, LinkError>| r.as_ref().ok().map(|r| r.value().to_vec());
                assert_eq!(links.use_ready_stashed(b"b", value), None, "b waits behind a");
                assert_eq!(links.use_ready_stashed(b"a", |_| None::<()>), None, "declined");
                assert_eq!(
                    links.use_ready_stashed(b"a", value),
                    Some(b"va".to_vec()),
                    "left in place"
                );
                assert_eq!(links.use_ready_stashed(b"a", value), None, "taken once");
                let miss = |r: &Result<Reply, LinkError>| r.as_ref().ok().map(|r| r.status);
                assert_eq!(links.use_ready_stashed(b"b", miss), Some(Status::KEY_ENOENT));
            })
            .await;
        assert_eq!(group.state.lock().live, 0, "every slot was taken");
        Group::give_back(group);
    }

    #[tokio::test]
    async fn prefetch_over_down_links_sends_nothing_and_gives_its_slots_up() {
        let mut cfg = LinksConfig::new(Endpoint::Tcp(format!("127.0.0.1:{}", free_port())));
        cfg.connections = 1;
        let links = Links::start(cfg);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let group = Group::for_burst();
        assert!(!links.prefetch(&group, &[b"a".as_slice(), b"b"], get_req));
        assert_eq!(group.state.lock().live, 0, "no slot left open");
        group.open_stash(2);
        assert!(
            group.scope(async { links.stashed(b"a").is_none() }).await,
            "nothing stashed"
        );
        Group::give_back(group);
    }

    /// Polls every future together (the links gets them all before its writer runs).
    async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut futs: Vec<Option<F>> = futs.map(Some).collect();
        let n = futs.len();
        let mut slots: Vec<Option<F::Output>> = (0..n).map(|_| None).collect();
        crate::backend::raw::run_windowed(
            n,
            n,
            |i| futs[i].take().expect("each future once"),
            |i, r| {
                slots[i] = Some(r);
                std::ops::ControlFlow::Continue(())
            },
        )
        .await;
        slots.into_iter().map(|s| s.expect("every future ran")).collect()
    }

    #[tokio::test]
    async fn value_in_pieces_arrives_whole() {
        let mc = MemcachedProcess::start(&[]);
        let links = Links::start(mc.links_config());
        up(&links).await;
        let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
        let r = links
            .call_parts(set_req(b"k", b"ab", &extras), &[b"cd", b"", b"efg"])
            .await
            .unwrap();
        assert_eq!(r.status, Status::SUCCESS);
        let get = binary::Request {
            key: b"k",
            ..binary::Request::new(Opcode::GET)
        };
        assert_eq!(links.call(get).await.unwrap().value(), b"abcdefg");
    }

    #[tokio::test]
    async fn memcached_killed_fails_fast_then_recovers_by_itself() {
        let mut mc = MemcachedProcess::start(&[]);
        let mut cfg = mc.links_config();
        cfg.backoff_max = Duration::from_millis(200);
        let links = Links::start(cfg);
        up(&links).await;
        let noop = || binary::Request::new(Opcode::NOOP);
        assert_eq!(links.call(noop()).await.unwrap().status, Status::SUCCESS);

        mc.kill();
        // Every call fails, and fast: well under the 5 s request timeout.
        for _ in 0..20 {
            let started = Instant::now();
            let r = links.call(noop()).await;
            assert!(matches!(r, Err(LinkError::Down | LinkError::Lost)), "{r:?}");
            assert!(started.elapsed() < Duration::from_millis(500));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!links.is_up());

        mc.restart();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(r) = links.call(noop()).await {
                assert_eq!(r.status, Status::SUCCESS);
                break;
            }
            assert!(Instant::now() < deadline, "links did not reconnect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn requests_in_flight_when_memcached_dies_fail_with_lost() {
        // A server that reads requests and closes without answering.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
                drop(s);
            }
        });
        let mut cfg = LinksConfig::new(Endpoint::Tcp(addr.to_string()));
        cfg.connections = 1;
        let links = Links::start(cfg);
        up(&links).await;
        let r = links.call(binary::Request::new(Opcode::NOOP)).await;
        assert_eq!(r.unwrap_err(), LinkError::Lost);
    }

    /// A one-connection links config for a server that accepts and then never reads nor answers.
    async fn silent_memcached() -> LinksConfig {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let mut cfg = LinksConfig::new(Endpoint::Tcp(addr.to_string()));
        cfg.connections = 1;
        cfg
    }

    #[tokio::test]
    async fn unanswered_request_times_out() {
        // memcached hung.
        let mut cfg = silent_memcached().await;
        cfg.timeout = Duration::from_millis(100);
        let links = Links::start(cfg);
        up(&links).await;
        let started = Instant::now();
        let r = links.call(binary::Request::new(Opcode::NOOP)).await;
        assert_eq!(r.unwrap_err(), LinkError::Timeout);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_memcached_that_does_not_read_fails_calls_instead_of_queueing_forever() {
        // Alive, but not keeping up.
        let mut cfg = silent_memcached().await;
        cfg.timeout = Duration::from_secs(30);
        cfg.max_buffered = 256 << 10;
        let links = Links::start(cfg);
        up(&links).await;
        let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
        let value = vec![b'v'; 16 << 10];
        let mut waits = Vec::new();
        let mut refused = None;
        // Socket buffers take some megabytes; past them the link's buffer fills to its bound.
        for i in 0..100_000 {
            let key = format!("k{i}");
            match links.send(set_req(key.as_bytes(), &value, &extras), &[]) {
                Ok(w) => waits.push(w),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
            if i % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(refused, Some(LinkError::Overloaded));
        let buffered = links.conns[0].state.lock().wbuf.len();
        assert!(buffered <= (256 << 10) + (17 << 10), "{buffered} bytes buffered");
    }

    #[tokio::test]
    async fn a_light_load_keeps_to_one_link_and_a_heavy_one_spreads() {
        let mut cfg = silent_memcached().await;
        cfg.connections = 2;
        cfg.timeout = Duration::from_secs(30);
        let links = Links::start(cfg);
        for _ in 0..500 {
            if links.conns.iter().all(|l| l.state.lock().up) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let in_flight = |k: usize| links.conns[k].state.lock().pending.len();
        let mut waits = Vec::new();
        let mut send = |n: usize| {
            for _ in 0..n {
                waits.push(links.send(binary::Request::new(Opcode::NOOP), &[]).unwrap());
            }
        };
        // Up to SPILL_AT in flight, everything goes over the first link.
        send(SPILL_AT);
        assert_eq!((in_flight(0), in_flight(1)), (SPILL_AT, 0));
        // Then the second fills, and past that both take the load evenly.
        send(SPILL_AT);
        assert_eq!((in_flight(0), in_flight(1)), (SPILL_AT, SPILL_AT));
        send(2 * SPILL_AT);
        assert_eq!((in_flight(0), in_flight(1)), (2 * SPILL_AT, 2 * SPILL_AT));
    }

    #[tokio::test]
    async fn nothing_listening_is_down() {
        let mut cfg = LinksConfig::new(Endpoint::Tcp(format!("127.0.0.1:{}", free_port())));
        cfg.connections = 1;
        let links = Links::start(cfg);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            links.call(binary::Request::new(Opcode::NOOP)).await.unwrap_err(),
            LinkError::Down
        );
    }

    #[test]
    fn a_finished_group_is_reused_but_not_one_a_reply_is_still_due_to() {
        let g = Group::for_burst();
        let ptr = Arc::as_ptr(&g);
        g.open(1);
        Group::give_back(g);
        let again = Group::for_burst();
        assert_eq!(Arc::as_ptr(&again), ptr, "given back, taken again");
        assert!(again.state.lock().slots.is_empty(), "its slots start empty");
        let held = again.clone();
        Group::give_back(again);
        let other = Group::for_burst();
        assert_ne!(Arc::as_ptr(&other), Arc::as_ptr(&held), "still held, so not handed out");
        drop(held);
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            Endpoint::parse("unix:/tmp/mc.sock"),
            Endpoint::Unix("/tmp/mc.sock".into())
        );
        assert_eq!(
            Endpoint::parse("127.0.0.1:11211"),
            Endpoint::Tcp("127.0.0.1:11211".into())
        );
    }

    #[test]
    fn local_endpoints() {
        for local in [
            "unix:/tmp/mc.sock",
            "127.0.0.1:11211",
            "127.1.2.3:1",
            "localhost:11211",
            "[::1]:11211",
        ] {
            assert!(Endpoint::parse(local).is_local(), "{local}");
        }
        for remote in ["10.0.0.5:11211", "cache-1.example:11211", "[2001:db8::1]:11211"] {
            assert!(!Endpoint::parse(remote).is_local(), "{remote}");
        }
    }
}
