//! The connection engine every tool runs on: many connections, pipelined batches, a timeout on
//! every network call, closed or open loop, per-command HDR histograms, progress lines. What is
//! sent and how each reply is judged is the [`Workload`]'s business; the engine only moves bytes,
//! frames replies and keeps time.
//!
//! Each connection runs one loop: ask its workload for a batch of up to `pipeline` requests,
//! compose them into one buffer, send it with one write, then read until every reply of the batch
//! has been parsed, checked and timed. Buffers belong to the connection and are reused, so the
//! steady state allocates nothing in the engine: on a 2-core machine shared with the server under
//! test, every cycle the tool spends is one the server does not get.
//!
//! Latency is measured per request up to the read that completed its reply. In closed loop it
//! starts when its batch is written, so with a pipeline it includes the wait behind earlier
//! replies of the batch, as an application issuing the same batch would see it. In open loop it
//! starts at the request's intended send time (see [`schedule`](super::schedule)), which corrects
//! for coordinated omission.
//!
//! Any wrong value, unexpected reply, closed connection or call that outlives the timeout stops
//! the whole run and is listed in the report; [`RunReport::ok`] is then false and the tool exits 1.

mod conn;
mod report;
mod run;

pub use report::{summarize_failures, OpReport, RunReport};
pub use run::{resolve, run, runtime};

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use super::hist::LatencyHist;
use super::value::{KeySpace, Part};
use super::wire::{Args, MultiHit, Op, Protocol, Reply};

/// How the engine drives the connections.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// `host:port` of the server.
    pub addr: String,
    pub protocol: Protocol,
    pub connections: usize,
    /// Requests per batch on each connection (1 = no pipelining). In open loop, the most
    /// requests sent together when several have fallen due.
    pub pipeline: usize,
    /// The keys requests name by index.
    pub keys: KeySpace,
    /// How long the measured phase lasts (the batch in flight at the end still completes).
    pub duration: Duration,
    /// Bound on every connect, write and read.
    pub timeout: Duration,
    /// Open loop at this many requests per second over all connections; `None` is closed loop.
    pub rate: Option<f64>,
    /// Print a line per second to stderr.
    pub progress: bool,
    /// Server processes whose CPU time the run reads at the start and the end of the measured
    /// phase ([`RunReport::server_ticks`]).
    pub server_pids: Vec<u32>,
}

impl EngineConfig {
    pub fn new(addr: impl Into<String>, protocol: Protocol, keys: KeySpace) -> EngineConfig {
        EngineConfig {
            addr: addr.into(),
            protocol,
            connections: 50,
            pipeline: 1,
            keys,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            rate: None,
            progress: false,
            server_pids: Vec::new(),
        }
    }
}

/// Which part of a run a request belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Before the clock starts: checked, not measured.
    Warmup,
    Measure,
}

/// One request of a batch.
#[derive(Clone, Debug)]
pub struct Request {
    pub op: Op,
    /// Where its key indexes lie in [`Batch::keys`] (several for a multi-get).
    pub keys: Range<usize>,
    pub args: Args,
    /// The value of a store.
    pub value: Option<Part>,
    opaque: u32,
    /// Nanoseconds from the start of the measured phase (open loop).
    intended_ns: u64,
}

/// The requests a workload adds before they are sent together.
#[derive(Debug, Default)]
pub struct Batch {
    reqs: Vec<Request>,
    keys: Vec<u64>,
    barrier: bool,
    opaque: u32,
}

impl Batch {
    /// Adds a request on key index `key`.
    pub fn push(&mut self, op: Op, key: u64, args: Args, value: Option<Part>) {
        self.push_multi(op, [key], args, value);
    }

    /// Adds a request on several keys (a multi-get).
    pub fn push_multi(&mut self, op: Op, keys: impl IntoIterator<Item = u64>, args: Args, value: Option<Part>) {
        let start = self.keys.len();
        self.keys.extend(keys);
        self.opaque = self.opaque.wrapping_add(1);
        self.reqs.push(Request {
            op,
            keys: start..self.keys.len(),
            args,
            value,
            opaque: self.opaque,
            intended_ns: 0,
        });
    }

    /// Sends what is batched and waits for the replies before adding more: for a request that
    /// depends on an earlier reply (a `cas` needs the CAS unique a `gets` returns).
    pub fn barrier(&mut self) {
        self.barrier = true;
    }

    pub fn len(&self) -> usize {
        self.reqs.len()
    }

    /// Whether [`Batch::barrier`] was called since the batch was started.
    pub fn at_barrier(&self) -> bool {
        self.barrier
    }

    pub fn requests(&self) -> &[Request] {
        &self.reqs
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The key indexes of a request.
    pub fn keys_of(&self, req: &Request) -> &[u64] {
        &self.keys[req.keys.clone()]
    }

    fn clear(&mut self) {
        self.reqs.clear();
        self.keys.clear();
        self.barrier = false;
    }
}

/// What a tool sends and how it judges the replies. One per connection.
pub trait Workload: Send + 'static {
    /// Adds the next request to `batch`; false when there is none (the warm-up is over, or a
    /// finite workload is done). Adding several at once is allowed.
    fn next(&mut self, phase: Phase, batch: &mut Batch) -> bool;

    /// Judges the reply to `req`, on key indexes `keys`. A multi-get's hits are in `hits`, their
    /// data in `buf`. An error ends the run with that message.
    fn check(
        &mut self,
        req: &Request,
        keys: &[u64],
        reply: &Reply<'_>,
        hits: &[MultiHit],
        buf: &[u8],
    ) -> Result<(), String>;
}

/// Counts and latencies of one command.
#[derive(Clone, Debug, Default)]
struct OpStats {
    count: u64,
    hits: u64,
    misses: u64,
    hist: LatencyHist,
}

/// State the connections of one run share. Touched once per batch, never per request.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
}

#[cfg(test)]
mod tests;
