//! Reads: single-key reads that fail over zone by zone (hedged when [`HedgeConfig`] says so),
//! and multi-key reads that split their keys by owner node and retry in the next zone only the
//! keys that were not answered.

use std::collections::{HashMap, HashSet};
use std::iter::Peekable;
use std::ops::ControlFlow;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::join_all;
use riven_memcache::binary::Status;
use tracing::Instrument;

use super::latency::Latency;
use super::state::{Owner, Owners};
use super::{check, status_failure, Attempt, Client, ClientError, Failure, Item};
use crate::error::NodeError;
use crate::op::{Op, Resp};
use crate::policy::{HedgeConfig, Ttl};

/// What a [`Client`] has read so far, from [`Client::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Keys read: one per [`Client::get`], [`Client::gets`] or [`Client::gat`] call and one per
    /// distinct key of a [`Client::get_many`], counted once the keys passed their check.
    pub reads: u64,
    /// Hedges sent ([`HedgeConfig`]).
    pub hedges: u64,
    /// Keys asked of a later zone because the zone before failed (or missed, with
    /// `fallback_on_miss`). A hedge is not counted here.
    pub failovers: u64,
}

/// The counters behind [`ClientStats`]. Plain relaxed atomics: they are statistics and the
/// hedge budget, and neither needs to be exact under races.
#[derive(Debug, Default)]
pub(super) struct Stats {
    reads: AtomicU64,
    hedges: AtomicU64,
    failovers: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What one zone answered for one key.
enum Outcome {
    Hit(Item),
    Miss,
    Failed(Failure),
}

fn judge(result: Result<Resp, NodeError>) -> Outcome {
    match result {
        Ok(resp) if resp.is_success() => Outcome::Hit(Item {
            value: detach(resp.value),
            flags: resp.flags,
            cas: resp.cas,
        }),
        Ok(resp) if resp.status == Status::KEY_ENOENT => Outcome::Miss,
        Ok(resp) => Outcome::Failed(status_failure(&resp)),
        Err(e) => Outcome::Failed(Failure::Node(e)),
    }
}

/// A single-key read's progress through the zones.
struct Walk {
    fallback_on_miss: bool,
    /// Some zone answered with a miss (only kept going with `fallback_on_miss`).
    missed: bool,
    /// The zones that failed, each with its rank in the read's zone order.
    tried: Vec<(usize, Attempt)>,
}

impl Walk {
    /// Takes the answer of the zone of rank `rank`: the read's result if it is final.
    fn take(&mut self, rank: usize, owner: Owner<'_>, outcome: Outcome) -> Option<Option<Item>> {
        match outcome {
            Outcome::Hit(item) => Some(Some(item)),
            // Without fallback a miss is the answer; with it, the next zone may have the key
            // (a write replication has not brought here yet).
            Outcome::Miss if !self.fallback_on_miss => Some(None),
            Outcome::Miss => {
                self.missed = true;
                None
            }
            Outcome::Failed(failure) => {
                let attempt = Attempt {
                    zone: owner.zone.to_string(),
                    node: owner.node.addr().to_string(),
                    failure,
                };
                self.tried.push((rank, attempt));
                None
            }
        }
    }

    /// The result once every zone was asked: a miss is an answer, so the read fails only when
    /// no zone gave one.
    fn finish(mut self) -> Result<Option<Item>, ClientError> {
        if self.missed {
            return Ok(None);
        }
        // A hedge can fail before the zone it hedged; the error lists zones in order.
        self.tried.sort_by_key(|(rank, _)| *rank);
        let tried = self.tried.into_iter().map(|(_, attempt)| attempt).collect();
        Err(ClientError::Unavailable { tried })
    }
}

impl Client {
    /// The value and flags under `key`, or `None` on a miss. Hedged when
    /// [`ClientConfig::hedge`](crate::ClientConfig::hedge) is set.
    pub async fn get(&self, key: &[u8]) -> Result<Option<(Bytes, u32)>, ClientError> {
        Ok(self.read(Op::Get { key }, true).await?.map(|i| (i.value, i.flags)))
    }

    /// The value, flags and CAS under `key`, or `None` on a miss. Hedged like [`Client::get`];
    /// the CAS is that of the zone whose answer won.
    pub async fn gets(&self, key: &[u8]) -> Result<Option<Item>, ClientError> {
        self.read(Op::Get { key }, true).await
    }

    /// The value and flags under `key`, setting its lifetime to `ttl`, or `None` on a miss.
    /// Only the zone that answers has its lifetime changed, which is why GAT is never hedged:
    /// a hedge would change it in two zones.
    pub async fn gat(&self, key: &[u8], ttl: Ttl) -> Result<Option<(Bytes, u32)>, ClientError> {
        let op = Op::Gat {
            key,
            exptime: ttl.exptime(),
        };
        Ok(self.read(op, false).await?.map(|i| (i.value, i.flags)))
    }

    /// The hits among `keys`, each key mapped to its value and flags; a key that missed is
    /// absent from the map (and a key given twice is read once).
    ///
    /// Every key is checked before anything is sent ([`ClientError::BadKey`]). The keys are
    /// then split by their owner in the first zone of the order, and every owner gets its
    /// share at once, its GETs pipelined on its connections. Only the keys that got no answer
    /// (an error, a timeout, an open breaker; and a miss, with
    /// [`fallback_on_miss`](crate::ClientConfig::fallback_on_miss)) are asked of the next zone,
    /// and so on through the order. So one slow node costs the call one request timeout and
    /// sends only its own keys elsewhere.
    ///
    /// Fails with [`ClientError::Unavailable`] only if some key was answered by no zone; it
    /// names the zones' nodes that failed for such keys (each with its first error). Many keys
    /// to one node can fill its connections' in-flight limit
    /// ([`ConnConfig::max_in_flight`](crate::ConnConfig::max_in_flight)); the keys refused
    /// then fail over like any other failure.
    pub async fn get_many(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, (Bytes, u32)>, ClientError> {
        let span = tracing::debug_span!("riven.get_many", keys = keys.len());
        self.get_many_in_span(keys).instrument(span).await
    }

    async fn get_many_in_span(&self, keys: &[&[u8]]) -> Result<HashMap<Vec<u8>, (Bytes, u32)>, ClientError> {
        for key in keys {
            check(key)?;
        }
        let mut seen = HashSet::with_capacity(keys.len());
        let mut pending: Vec<&[u8]> = keys.iter().copied().filter(|k| seen.insert(*k)).collect();
        Stats::add(&self.stats.reads, pending.len());
        // One snapshot for the whole call: every zone it asks is of one topology.
        let state = self.state();
        let mut found = HashMap::with_capacity(pending.len());
        let mut missed: HashSet<&[u8]> = HashSet::new();
        // The first failure of each (zone, node index) asked.
        let mut failed: Vec<(usize, usize, Attempt)> = Vec::new();
        for (rank, &z) in state.order.iter().enumerate() {
            if pending.is_empty() {
                break;
            }
            let zone = &state.zones[z];
            if rank > 0 {
                Stats::add(&self.stats.failovers, pending.len());
                if let Some(labels) = zone.labels.first() {
                    self.metrics.failover(labels, pending.len());
                }
                tracing::debug!(zone = %zone.name, keys = pending.len(), "get_many: keys fail over");
            }
            let mut shares: Vec<Vec<&[u8]>> = vec![Vec::new(); zone.nodes.len()];
            let mut next = Vec::new();
            for &key in &pending {
                match zone.ring.index_for(key).filter(|&i| i < shares.len()) {
                    Some(i) => shares[i].push(key),
                    // A zone without nodes answers nothing: the key goes on.
                    None => next.push(key),
                }
            }
            // Every node's share at once, and within a share every key at once: concurrent
            // calls on one node are pipelined on its connections.
            let asks = shares
                .iter()
                .enumerate()
                .filter(|(_, share)| !share.is_empty())
                .filter_map(|(i, share)| Some((i, zone.owner(i)?, share)))
                .map(|(i, owner, share)| async move {
                    let calls = share
                        .iter()
                        .map(|&key| async move { self.ask(owner, &Op::Get { key }).await });
                    (i, join_all(calls).await)
                });
            for (i, outcomes) in join_all(asks).await {
                for (&key, outcome) in shares[i].iter().zip(outcomes) {
                    match outcome {
                        Outcome::Hit(item) => {
                            found.insert(key.to_vec(), (item.value, item.flags));
                        }
                        Outcome::Miss if self.fallback_on_miss => {
                            missed.insert(key);
                            next.push(key);
                        }
                        Outcome::Miss => {}
                        Outcome::Failed(failure) => {
                            if !failed.iter().any(|&(fz, fi, _)| (fz, fi) == (z, i)) {
                                let node = zone.nodes[i].addr().to_string();
                                let attempt = Attempt {
                                    zone: zone.name.clone(),
                                    node,
                                    failure,
                                };
                                failed.push((z, i, attempt));
                            }
                            next.push(key);
                        }
                    }
                }
            }
            pending = next;
        }
        // A key that missed somewhere was answered, as a single read's would be.
        let unanswered: Vec<&[u8]> = pending.into_iter().filter(|k| !missed.contains(k)).collect();
        if unanswered.is_empty() {
            return Ok(found);
        }
        // Name the nodes that failed the unanswered keys, not those whose keys another zone
        // answered: they are not why the call failed.
        let owned_unanswered = |z: usize, i: usize| {
            let ring = &state.zones[z].ring;
            unanswered.iter().any(|k| ring.index_for(k) == Some(i))
        };
        let tried = failed
            .into_iter()
            .filter(|&(z, i, _)| owned_unanswered(z, i))
            .map(|(_, _, attempt)| attempt)
            .collect();
        Err(ClientError::Unavailable { tried })
    }

    /// What this client has read so far.
    pub fn stats(&self) -> ClientStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            reads: load(&self.stats.reads),
            hedges: load(&self.stats.hedges),
            failovers: load(&self.stats.failovers),
        }
    }

    /// Asks the key's owner zone by zone (see the module docs), hedging the first zone if
    /// `hedged` and the config has a [`HedgeConfig`].
    async fn read(&self, op: Op<'_>, hedged: bool) -> Result<Option<Item>, ClientError> {
        let (name, key) = match op {
            Op::Get { key } => ("get", key),
            Op::Gat { key, .. } => ("gat", key),
            _ => unreachable!("reads are GET and GAT"),
        };
        let span = tracing::debug_span!("riven.read", op = name, key_len = key.len());
        self.read_in_span(op, key, hedged).instrument(span).await
    }

    async fn read_in_span(&self, op: Op<'_>, key: &[u8], hedged: bool) -> Result<Option<Item>, ClientError> {
        check(key)?;
        Stats::add(&self.stats.reads, 1);
        // One snapshot for the whole read, hedge and failovers included, so a read under way
        // across a topology swap finishes on the ring it started on.
        let state = self.state();
        // The owner in each zone of the order, a zone without nodes left out. Each is looked
        // up only when that zone is asked (or about to be hedged to): most reads ask one.
        let mut owners = state.owners(key).peekable();
        let mut walk = Walk {
            fallback_on_miss: self.fallback_on_miss,
            missed: false,
            tried: Vec::new(),
        };
        let mut rank = 0;
        if let (true, Some(hedge)) = (hedged, &self.hedge) {
            if let Some(first) = owners.next() {
                match self.race(&op, hedge, first, &mut owners, &mut walk).await {
                    ControlFlow::Break(done) => return Ok(done),
                    ControlFlow::Continue(n) => rank = n,
                }
            }
        }
        for owner in owners {
            if rank > 0 {
                Stats::add(&self.stats.failovers, 1);
                self.metrics.failover(owner.labels, 1);
                tracing::debug!(zone = owner.zone, node = owner.node.addr(), "read fails over");
            }
            if let Some(done) = walk.take(rank, owner, self.ask(owner, &op).await) {
                return Ok(done);
            }
            rank += 1;
        }
        walk.finish()
    }

    /// Asks `first`, and the next of `rest` too if `first` has not answered within the hedge
    /// delay and the budget allows a hedge. Breaks with the read's result if either gave a
    /// final answer; otherwise continues with how many zones were asked (1 or 2), the zones
    /// asked taken off `rest`.
    ///
    /// The first final answer wins and the other call is dropped: its reply, if it comes, is
    /// discarded by the connection, and its node's breaker is not charged for it.
    async fn race<'s>(
        &self,
        op: &Op<'_>,
        hedge: &HedgeConfig,
        first: Owner<'s>,
        rest: &mut Peekable<Owners<'s>>,
        walk: &mut Walk,
    ) -> ControlFlow<Option<Item>, usize> {
        let final_or =
            |done: Option<Option<Item>>, asked| done.map_or(ControlFlow::Continue(asked), ControlFlow::Break);
        let delay = match hedge.percentile {
            Some(_) => self.latency.delay().unwrap_or_else(|| hedge.delay()),
            None => hedge.delay(),
        };
        let mut one = pin!(async {
            // Times the first zone for the adaptive delay, also when this call is abandoned
            // (the hedge won): then the time so far is a lower bound of its latency.
            let _timed = hedge.percentile.map(|p| Timed {
                latency: &self.latency,
                percentile: p,
                start: Instant::now(),
            });
            self.ask(first, op).await
        });
        if let Ok(outcome) = tokio::time::timeout(delay, one.as_mut()).await {
            return final_or(walk.take(0, first, outcome), 1);
        }
        let second = match rest.peek() {
            Some(&second) if self.take_hedge(hedge) => second,
            // No zone to hedge to, or no hedge left in the budget.
            _ => {
                let outcome = one.await;
                return final_or(walk.take(0, first, outcome), 1);
            }
        };
        rest.next();
        self.metrics.hedge(second.labels);
        tracing::debug!(zone = second.zone, node = second.node.addr(), "read hedged");
        let mut two = pin!(self.ask(second, op));
        let (mut one_done, mut two_done) = (false, false);
        // The guards keep a finished call from being polled again; the loop ends before both
        // are disabled, so `select!` always has a branch.
        while !(one_done && two_done) {
            let done = tokio::select! {
                outcome = one.as_mut(), if !one_done => {
                    one_done = true;
                    walk.take(0, first, outcome)
                }
                outcome = two.as_mut(), if !two_done => {
                    two_done = true;
                    walk.take(1, second, outcome)
                }
            };
            if let Some(done) = done {
                return ControlFlow::Break(done);
            }
        }
        ControlFlow::Continue(2)
    }

    /// Asks `owner` and judges its answer, recording the call in the metrics.
    async fn ask(&self, owner: Owner<'_>, op: &Op<'_>) -> Outcome {
        let started = self.metrics.start();
        let result = owner.node.call(op).await;
        self.metrics.call(owner.labels, started, &result);
        let outcome = judge(result);
        match &outcome {
            Outcome::Hit(_) => self.metrics.answer(owner.labels, true),
            Outcome::Miss => self.metrics.answer(owner.labels, false),
            Outcome::Failed(_) => {}
        }
        outcome
    }

    /// Takes a hedge from the budget, if it has one left.
    fn take_hedge(&self, hedge: &HedgeConfig) -> bool {
        let allowed = hedge.allowed(self.stats.reads.load(Ordering::Relaxed));
        self.stats
            .hedges
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| (h < allowed).then_some(h + 1))
            .is_ok()
    }
}

/// Records the time from its making to its drop in the first zone's latency.
struct Timed<'a> {
    latency: &'a Latency,
    percentile: f64,
    start: Instant,
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.latency.record(self.start.elapsed(), self.percentile);
    }
}

/// Values shorter than this are copied out of the connection's read buffer before they are
/// handed to the caller; longer ones keep sharing it. The buffer is read in 64 KiB blocks and a
/// value kept by the caller keeps its whole block alive, so a copied small value cannot pin a
/// block many times its size, while a large one (at most 8 times smaller than a block) is not
/// copied at all.
const COPY_BELOW: usize = 8 * 1024;

fn detach(value: Bytes) -> Bytes {
    if value.len() < COPY_BELOW {
        Bytes::copy_from_slice(&value)
    } else {
        value
    }
}
