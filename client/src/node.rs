//! A handle on one node: a few multiplexed connections behind a circuit breaker.
//!
//! One pipelined connection carries many callers, but it is one socket on one reader task: a
//! second one lets replies be read on two cores and keeps a node reachable while one reconnects.
//! A call goes to the least-loaded connection, starting the comparison at a rotating index so
//! equally loaded connections take turns.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::breaker::{Breaker, BreakerConfig, BreakerState, Ticket};
use crate::conn::{Conn, ConnConfig};
use crate::error::{NodeError, Unavailable};
use crate::op::{Op, Resp};

/// How a node handle behaves. Every field has a default ([`NodeConfig::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// Connections to the node. Default 2; 0 is taken as 1.
    pub connections: usize,
    /// How each connection behaves.
    pub conn: ConnConfig,
    /// When the node's breaker opens.
    pub breaker: BreakerConfig,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            connections: 2,
            conn: ConnConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// One node's connections and circuit breaker.
#[derive(Debug)]
pub struct Node {
    addr: Arc<str>,
    conns: Box<[Conn]>,
    next: AtomicUsize,
    /// A std mutex: the breaker is a few fields updated in a moment, never across an await.
    breaker: Mutex<Breaker>,
    /// The breaker's [`Breaker::is_clean`], kept up to date under its lock. While it holds, a
    /// call is admitted and its success recorded without the lock or the clock: the common
    /// case costs one atomic load on each side.
    clean: AtomicBool,
}

impl Node {
    /// A handle on the node at `addr` (`host:port`). Connections are made by the first calls.
    pub fn new(addr: impl Into<Arc<str>>, config: NodeConfig) -> Node {
        let addr = addr.into();
        let conns = (0..config.connections.max(1))
            .map(|_| Conn::new(addr.clone(), config.conn.clone()))
            .collect();
        Node {
            addr,
            conns,
            next: AtomicUsize::new(0),
            breaker: Mutex::new(Breaker::new(config.breaker)),
            clean: AtomicBool::new(true),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Where the node's breaker stands.
    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().state()
    }

    /// Requests in flight over all of the node's connections.
    pub fn in_flight(&self) -> usize {
        self.conns.iter().map(Conn::in_flight).sum()
    }

    /// Sends `op` to the node and waits for its reply.
    ///
    /// Fails at once with [`Unavailable::BreakerOpen`] while the breaker is open. Replies of
    /// every status count as successes for the breaker (a miss is an answer);
    /// [`NodeError::is_node_failure`] says which errors count against it, and the others are
    /// not counted at all.
    pub async fn call(&self, op: &Op<'_>) -> Result<Resp, NodeError> {
        let ticket = if self.clean.load(Ordering::Acquire) {
            Ticket::Normal
        } else {
            self.lock_breaker()
                .admit(Instant::now())
                .map_err(|_| NodeError::Unavailable {
                    addr: self.addr.clone(),
                    reason: Unavailable::BreakerOpen,
                })?
        };
        // Reports to the breaker even if this future is dropped mid-call, so a cancelled probe
        // cannot leave the breaker half-open for good.
        let mut report = Report {
            node: self,
            ticket: Some(ticket),
        };
        let result = self.pick().call(op).await;
        match &result {
            Ok(_) => report.finish(true),
            Err(e) if e.is_node_failure() => report.finish(false),
            // A full queue or a request that cannot be encoded says nothing about the node
            // either way: it must not close a breaker (a stalled node's queue fills with
            // timed-out requests) nor reset the failure count.
            Err(_) => {}
        }
        result
    }

    /// The connection with the fewest requests in flight, ties going round-robin.
    fn pick(&self) -> &Conn {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        (0..n)
            .map(|i| &self.conns[(start + i) % n])
            .min_by_key(|c| c.in_flight())
            .unwrap_or(&self.conns[0])
    }

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the breaker under its lock and republishes whether it is clean.
    fn update(&self, change: impl FnOnce(&mut Breaker)) {
        let mut breaker = self.lock_breaker();
        change(&mut breaker);
        self.clean.store(breaker.is_clean(), Ordering::Release);
    }
}

/// A breaker ticket that must be handed back.
struct Report<'a> {
    node: &'a Node,
    ticket: Option<Ticket>,
}

impl Report<'_> {
    fn finish(&mut self, success: bool) {
        let Some(ticket) = self.ticket.take() else { return };
        // A success through a clean breaker leaves it clean. A race with a failure being
        // recorded only reorders two outcomes that happened at once.
        if success && ticket == Ticket::Normal && self.node.clean.load(Ordering::Acquire) {
            return;
        }
        self.node.update(|b| b.record(ticket, success, Instant::now()));
    }
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        // Only a probe's abandonment changes the breaker.
        if let Some(Ticket::Probe) = self.ticket.take() {
            self.node.update(|b| b.abandon(Ticket::Probe, Instant::now()));
        }
    }
}
