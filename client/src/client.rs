//! The zone-aware client application teams call.
//!
//! A key is owned by one node in each zone (each zone's [`Ring`](crate::Ring)). Reads ask the
//! owner in the first zone of the client's zone order and move to the next zone when that one
//! cannot answer; writes go where the [`WritePolicy`] says. Keys are checked with memcached's
//! own rules before anything is sent, so a bad key fails the same way whatever the zones' health.
//!
//! Reads live in `client/read.rs`: [`Client::get`] and its kin (hedged when the config has a
//! [`HedgeConfig`]), [`Client::get_many`], and the counters of [`Client::stats`]. The routing
//! state (rings, node handles, zone order) lives in `client/state.rs`, behind one `Arc` that
//! [`Client::set_topology`] swaps.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use riven_memcache::binary::{ArithExtras, Status};
use tracing::Instrument;

use crate::error::NodeError;
use crate::node::{Node, NodeConfig};
use crate::op::{Arith, Concat, Op, Resp, Store};
use crate::policy::{ClientConfig, HedgeConfig, Ttl, WritePolicy};
use crate::telemetry::{Labels, Metrics};
use crate::topology::Topology;

#[cfg(feature = "json")]
mod json;
mod latency;
mod read;
mod state;

pub use read::ClientStats;
use read::Stats;
use state::State;

/// Why a zone's node did not give a usable answer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Failure {
    /// The call failed (timeout, open breaker, lost connection, ...).
    Node(NodeError),
    /// The node answered with an error status that is no outcome of the command (out of
    /// memory, value too large, a counter that is not a number, ...).
    Status {
        /// The reply's status.
        status: Status,
        /// memcached's message with it.
        message: String,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Node(e) => write!(f, "{e}"),
            Failure::Status { status, message } => write!(f, "status {status:?}: {message}"),
        }
    }
}

/// One zone's node that was asked and failed.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The zone.
    pub zone: String,
    /// The node's address.
    pub node: String,
    /// What went wrong.
    pub failure: Failure,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            // A node error starts with the node's address already.
            Failure::Node(e) => write!(f, "zone {}: {e}", self.zone),
            Failure::Status { .. } => write!(f, "zone {} node {}: {}", self.zone, self.node, self.failure),
        }
    }
}

fn list(attempts: &[Attempt]) -> String {
    attempts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a [`Client`] call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The key breaks memcached's rules (empty, over 250 bytes, or holding a space or control
    /// character). Nothing was sent.
    #[error("invalid key: empty, over 250 bytes, or holding a space or control character")]
    BadKey,
    /// No zone could answer the read.
    #[error("no zone could answer: {}", list(tried))]
    Unavailable {
        /// Every zone tried, in order, and why it failed.
        tried: Vec<Attempt>,
    },
    /// The write policy's wait was not met.
    #[error("write not stored in enough zones (stored in {succeeded:?}): {}", list(failed))]
    WriteFailed {
        /// The zones that answered.
        succeeded: Vec<String>,
        /// The zones that failed, with their nodes and errors.
        failed: Vec<Attempt>,
    },
    /// A value could not be turned into JSON ([`Client::set_json`], nothing was sent), or the
    /// value read is not JSON of the type asked for ([`Client::get_json`]). It holds
    /// serde_json's message.
    #[cfg(feature = "json")]
    #[error("JSON: {0}")]
    Json(String),
}

/// Why a [`Client`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `zone_order` names a zone the topology does not have.
    #[error("zone_order names unknown zone {0:?}")]
    UnknownZone(String),
    /// `zone_order` names a zone twice.
    #[error("zone_order names zone {0:?} twice")]
    DuplicateZone(String),
    /// `zone_order` is empty.
    #[error("zone_order is empty")]
    EmptyZoneOrder,
}

/// A value read by [`Client::gets`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The value. One of 8 KiB or more shares the connection's read buffer (see
    /// [`Resp::value`]); a smaller one is a copy of its own.
    pub value: Bytes,
    /// Its client flags.
    pub flags: u32,
    /// Its CAS in the zone that answered, for [`Client::cas`].
    pub cas: u64,
}

/// The outcome of a store command. Each is memcached's answer, not a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The value was stored.
    Stored,
    /// The command's condition did not hold: `add` of a present key, `replace`, `append` or
    /// `prepend` of a missing one.
    NotStored,
    /// `cas`: the item's CAS has changed since it was read.
    Exists,
    /// `cas`: the item is gone.
    NotFound,
}

/// The commands the client sends, each as an outcome decoder of the reply's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
}

/// What a zone answered to a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Stored(Stored),
    /// Delete and touch: whether the key was there.
    Found(bool),
    /// Incr and decr: the new value, or `None` for a missing counter.
    Counter(Option<u64>),
}

/// A write, owning its bytes so that an [`WritePolicy::AllZones`] write can finish in the zones
/// not waited for after the call has returned.
#[derive(Clone, Debug)]
/// A write command. It borrows the caller's key and value (`B` = `&[u8]`) while it goes to
/// one zone, so a local write copies nothing; a write sent to every zone is made owned
/// (`B` = [`Bytes`]) once, for the tasks that carry it on after the call returns.
struct Write<B> {
    kind: Kind,
    key: B,
    value: B,
    flags: u32,
    exptime: u32,
    /// CAS for [`Kind::Cas`]; delta for incr/decr.
    num: u64,
}

impl<'a> Write<&'a [u8]> {
    fn new(kind: Kind, key: &'a [u8]) -> Write<&'a [u8]> {
        Write {
            kind,
            key,
            value: &[],
            flags: 0,
            exptime: 0,
            num: 0,
        }
    }

    fn to_owned(&self) -> Write<Bytes> {
        Write {
            kind: self.kind,
            key: Bytes::copy_from_slice(self.key),
            value: Bytes::copy_from_slice(self.value),
            flags: self.flags,
            exptime: self.exptime,
            num: self.num,
        }
    }
}

impl<B: AsRef<[u8]>> Write<B> {
    fn op(&self) -> Op<'_> {
        let (key, value) = (self.key.as_ref(), self.value.as_ref());
        let store = Store::new(key, value).flags(self.flags).exptime(self.exptime);
        match self.kind {
            Kind::Set => Op::Set(store),
            Kind::Add => Op::Add(store),
            Kind::Replace => Op::Replace(store),
            Kind::Append => Op::Append(Concat::new(key, value)),
            Kind::Prepend => Op::Prepend(Concat::new(key, value)),
            Kind::Cas => Op::Set(store.cas(self.num)),
            Kind::Delete => Op::Delete { key, cas: 0 },
            Kind::Incr => Op::Incr(Arith::new(key, self.num)),
            Kind::Decr => Op::Decr(Arith::new(key, self.num)),
            Kind::Touch => Op::Touch {
                key,
                exptime: self.exptime,
            },
        }
    }

    /// The reply as the command's outcome, or `None` if it is an error status. The binary
    /// protocol answers ADD of a present key with `KEY_EEXISTS` and REPLACE of a missing one
    /// with `KEY_ENOENT`; they are reported as memcached's text protocol does, `NOT_STORED`.
    fn answer(&self, resp: &Resp) -> Option<Answer> {
        let s = resp.status;
        let ok = s == Status::SUCCESS;
        let answer = match self.kind {
            Kind::Set if ok => Answer::Stored(Stored::Stored),
            Kind::Add | Kind::Replace | Kind::Append | Kind::Prepend => match s {
                _ if ok => Answer::Stored(Stored::Stored),
                Status::KEY_EEXISTS | Status::KEY_ENOENT | Status::NOT_STORED => Answer::Stored(Stored::NotStored),
                _ => return None,
            },
            Kind::Cas => match s {
                _ if ok => Answer::Stored(Stored::Stored),
                Status::KEY_EEXISTS => Answer::Stored(Stored::Exists),
                Status::KEY_ENOENT => Answer::Stored(Stored::NotFound),
                _ => return None,
            },
            Kind::Delete | Kind::Touch if ok || s == Status::KEY_ENOENT => Answer::Found(ok),
            Kind::Incr | Kind::Decr if ok => Answer::Counter(Some(resp.counter()?)),
            Kind::Incr | Kind::Decr if s == Status::KEY_ENOENT => Answer::Counter(None),
            _ => return None,
        };
        Some(answer)
    }
}

/// The zone-aware client. Share it (it is cheap to call concurrently); one per process is
/// enough, as every node's connections are multiplexed.
#[derive(Debug)]
pub struct Client {
    /// The routing state, swapped whole by [`Client::set_topology`].
    state: RwLock<Arc<State>>,
    /// Serializes [`Client::set_topology`] calls.
    swap: Mutex<()>,
    /// The configured zone order, checked again against every new topology.
    zone_order: Option<Vec<String>>,
    /// How new nodes' handles behave.
    node: NodeConfig,
    fallback_on_miss: bool,
    write_policy: WritePolicy,
    /// Hedged reads, if on.
    hedge: Option<HedgeConfig>,
    /// Counters of reads, hedges and failovers; they also hold the hedge budget.
    stats: Stats,
    /// OpenTelemetry instruments, once [`Client::with_meter`] installs a meter. Shared with
    /// the tasks that carry an all-zones write on after the call returns.
    metrics: Arc<Metrics>,
    /// The first zone's recent read latency, for an adaptive hedge delay.
    latency: latency::Latency,
}

impl Client {
    /// A client of `topology`'s cluster. No connection is made until the first call.
    pub fn new(topology: Topology, config: ClientConfig) -> Result<Client, ConfigError> {
        let state = State::build(&topology, config.zone_order.as_deref(), &config.node, None)?;
        Ok(Client {
            state: RwLock::new(Arc::new(state)),
            swap: Mutex::new(()),
            zone_order: config.zone_order,
            node: config.node,
            fallback_on_miss: config.fallback_on_miss,
            write_policy: config.write_policy,
            hedge: config.hedge,
            stats: Stats::default(),
            metrics: Arc::default(),
            latency: latency::Latency::default(),
        })
    }

    /// Records OpenTelemetry metrics through `meter` from now on (see the `telemetry` module
    /// for the instruments), for example `opentelemetry::global::meter("riven-client")`.
    /// Without this call no metric is recorded and none costs anything.
    #[cfg(feature = "otel")]
    pub fn with_meter(mut self, meter: &opentelemetry::metrics::Meter) -> Client {
        let state = self.state();
        self.metrics = Arc::new(Metrics::new(meter, state.nodes()));
        self
    }

    /// The zones reads try, in order, in the topology now.
    pub fn zone_order(&self) -> impl Iterator<Item = String> {
        let state = self.state();
        let names: Vec<String> = state.order.iter().map(|&i| state.zones[i].name.clone()).collect();
        names.into_iter()
    }

    /// Stores `value` under `key` unconditionally.
    pub async fn set(&self, key: &[u8], value: &[u8], flags: u32, ttl: Ttl) -> Result<Stored, ClientError> {
        self.store(Kind::Set, key, value, flags, ttl, 0).await
    }

    /// Stores `value` under `key` only if the key is absent ([`Stored::NotStored`] otherwise).
    pub async fn add(&self, key: &[u8], value: &[u8], flags: u32, ttl: Ttl) -> Result<Stored, ClientError> {
        self.store(Kind::Add, key, value, flags, ttl, 0).await
    }

    /// Stores `value` under `key` only if the key is present ([`Stored::NotStored`] otherwise).
    pub async fn replace(&self, key: &[u8], value: &[u8], flags: u32, ttl: Ttl) -> Result<Stored, ClientError> {
        self.store(Kind::Replace, key, value, flags, ttl, 0).await
    }

    /// Appends `value` to the item under `key` ([`Stored::NotStored`] if there is none).
    pub async fn append(&self, key: &[u8], value: &[u8]) -> Result<Stored, ClientError> {
        self.store(Kind::Append, key, value, 0, Ttl::Never, 0).await
    }

    /// Prepends `value` to the item under `key` ([`Stored::NotStored`] if there is none).
    pub async fn prepend(&self, key: &[u8], value: &[u8]) -> Result<Stored, ClientError> {
        self.store(Kind::Prepend, key, value, 0, Ttl::Never, 0).await
    }

    /// Stores `value` under `key` only if its CAS is still `cas` (from [`Client::gets`]):
    /// [`Stored::Exists`] if it changed, [`Stored::NotFound`] if the key is gone.
    ///
    /// A CAS is one zone's: each zone's memcached numbers its items on its own. So this goes to
    /// the first zone of the order only, whatever the write policy.
    pub async fn cas(&self, key: &[u8], value: &[u8], flags: u32, ttl: Ttl, cas: u64) -> Result<Stored, ClientError> {
        self.store(Kind::Cas, key, value, flags, ttl, cas).await
    }

    /// Deletes `key`: `true` if it was there.
    pub async fn delete(&self, key: &[u8]) -> Result<bool, ClientError> {
        match self.write(Write::new(Kind::Delete, key)).await? {
            Answer::Found(found) => Ok(found),
            other => unreachable!("delete answered {other:?}"),
        }
    }

    /// Sets the lifetime of `key`: `true` if it was there.
    pub async fn touch(&self, key: &[u8], ttl: Ttl) -> Result<bool, ClientError> {
        let mut w = Write::new(Kind::Touch, key);
        w.exptime = ttl.exptime();
        match self.write(w).await? {
            Answer::Found(found) => Ok(found),
            other => unreachable!("touch answered {other:?}"),
        }
    }

    /// Adds `delta` to the decimal counter under `key`: its new value, or `None` if there is no
    /// such counter (none is created).
    pub async fn incr(&self, key: &[u8], delta: u64) -> Result<Option<u64>, ClientError> {
        self.arith(Kind::Incr, key, delta).await
    }

    /// Subtracts `delta` from the decimal counter under `key`, stopping at 0: its new value,
    /// or `None` if there is no such counter.
    pub async fn decr(&self, key: &[u8], delta: u64) -> Result<Option<u64>, ClientError> {
        self.arith(Kind::Decr, key, delta).await
    }

    async fn arith(&self, kind: Kind, key: &[u8], delta: u64) -> Result<Option<u64>, ClientError> {
        let mut w = Write::new(kind, key);
        w.num = delta;
        w.exptime = ArithExtras::NO_CREATE;
        match self.write(w).await? {
            Answer::Counter(n) => Ok(n),
            other => unreachable!("{kind:?} answered {other:?}"),
        }
    }

    async fn store(
        &self,
        kind: Kind,
        key: &[u8],
        value: &[u8],
        flags: u32,
        ttl: Ttl,
        num: u64,
    ) -> Result<Stored, ClientError> {
        // `write` checks the key, before anything is sent.
        let mut w = Write::new(kind, key);
        w.value = value;
        w.flags = flags;
        w.exptime = ttl.exptime();
        w.num = num;
        match self.write(w).await? {
            Answer::Stored(s) => Ok(s),
            other => unreachable!("{kind:?} answered {other:?}"),
        }
    }

    async fn write(&self, w: Write<&[u8]>) -> Result<Answer, ClientError> {
        let span = tracing::debug_span!("riven.write", op = ?w.kind, key_len = w.key.len());
        self.write_in_span(w).instrument(span).await
    }

    async fn write_in_span(&self, w: Write<&[u8]>) -> Result<Answer, ClientError> {
        check(w.key)?;
        // One snapshot for the whole write, so it lands on the zones of one topology.
        let state = self.state();
        match self.write_policy {
            WritePolicy::AllZones { wait } if w.kind != Kind::Cas => {
                let needed = wait.needed(state.zones.len());
                write_all(&self.metrics, &state, w.to_owned(), needed).await
            }
            _ => write_first(&self.metrics, &state, &w).await,
        }
    }
}

/// A write to the first zone of the order only.
async fn write_first(metrics: &Metrics, state: &State, w: &Write<&[u8]>) -> Result<Answer, ClientError> {
    let Some(owner) = state.order.first().and_then(|&z| state.owner(z, w.key)) else {
        return Err(ClientError::WriteFailed {
            succeeded: Vec::new(),
            failed: Vec::new(),
        });
    };
    call_write(metrics, owner.node, owner.labels, w)
        .await
        .map_err(|failure| ClientError::WriteFailed {
            succeeded: Vec::new(),
            failed: vec![Attempt {
                zone: owner.zone.to_string(),
                node: owner.node.addr().to_string(),
                failure,
            }],
        })
}

/// A write sent to every zone's owner at once, returning once `needed` zones answered.
///
/// Each zone's call runs in its own task, so the zones not waited for still get the write
/// after this returns (a dropped future would leave them without it). Only answers count
/// towards `needed`: a zone that failed never does. An answer such as `NotStored` counts,
/// because the zone did carry out the command; the outcome returned is that of the
/// earliest zone in the order among those that had answered when the wait was met.
async fn write_all(
    metrics: &Arc<Metrics>,
    state: &State,
    w: Write<Bytes>,
    needed: usize,
) -> Result<Answer, ClientError> {
    let w = Arc::new(w);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut failed = Vec::new();
    for (rank, z) in state.all_zones().enumerate() {
        let Some(owner) = state.owner(z, &w.key) else {
            continue;
        };
        let (zone, node, labels) = (owner.zone.to_string(), owner.node.clone(), owner.labels.clone());
        let (metrics, w, tx) = (metrics.clone(), w.clone(), tx.clone());
        tokio::spawn(async move {
            let result = call_write(&metrics, &node, &labels, &w).await;
            // The caller may have returned already; the write was done all the same.
            let _ = tx.send((rank, zone, node.addr().to_string(), result));
        });
    }
    drop(tx);
    let mut answers: BTreeMap<usize, (String, Answer)> = BTreeMap::new();
    // Once the wait can no longer be met the rest are still awaited (each within its
    // node's timeouts), so the error names every zone that failed, not just the first.
    while answers.len() < needed {
        let Some((rank, zone, node, result)) = rx.recv().await else {
            break;
        };
        match result {
            Ok(answer) => {
                answers.insert(rank, (zone, answer));
            }
            Err(failure) => failed.push(Attempt { zone, node, failure }),
        }
    }
    if answers.len() >= needed {
        if let Some((_, (_, answer))) = answers.first_key_value() {
            return Ok(*answer);
        }
    }
    Err(ClientError::WriteFailed {
        succeeded: answers.into_values().map(|(zone, _)| zone).collect(),
        failed,
    })
}

/// Rejects a key memcached would refuse, before anything is sent.
fn check(key: &[u8]) -> Result<(), ClientError> {
    if riven_memcache::key_is_valid(key) {
        Ok(())
    } else {
        Err(ClientError::BadKey)
    }
}

fn status_failure(resp: &Resp) -> Failure {
    Failure::Status {
        status: resp.status,
        message: String::from_utf8_lossy(&resp.value).into_owned(),
    }
}

async fn call_write<B: AsRef<[u8]>>(
    metrics: &Metrics,
    node: &Node,
    labels: &Labels,
    w: &Write<B>,
) -> Result<Answer, Failure> {
    let started = metrics.start();
    let result = node.call(&w.op()).await;
    metrics.call(labels, started, &result);
    let resp = result.map_err(Failure::Node)?;
    w.answer(&resp).ok_or_else(|| status_failure(&resp))
}
