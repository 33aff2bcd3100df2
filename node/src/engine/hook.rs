//! The seam where layers that apply to every mode go in: a hook sees every successful mutation
//! the engine makes, whatever the tiers underneath.
//!
//! The replication publisher is such a hook (it publishes the resulting state of each mutation
//! made by a client), and the replica-apply path is a view of the engine whose mutations carry
//! [`Origin::Replica`], which the publisher skips, so applied events are never published again.
//! A hook is called after the mutation succeeded, on the request's path: it must not wait (a
//! publisher queues, bounded, and drops and counts past the bound).

use std::future::Future;
use std::pin::Pin;

use crate::model::{Expiry, Mode};

/// Who made a mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A client of the node's listeners.
    Client,
    /// A client of the batch listener (bulk loads, warm-up).
    Batch,
    /// The replica-apply path: a write that came from another zone.
    Replica,
}

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A storage command stored a value (`set`, `add`, `append`, `cas`, `ms`...) with this CAS.
    Stored { mode: Mode, cas: u64 },
    /// `delete`, `md`.
    Deleted,
    /// `md I`: marked stale, optionally with a new expiry.
    Invalidated,
    /// `touch`, `gat`, `mg T`: a new expiry.
    Touched { expiry: Expiry },
    /// `incr`/`decr`, `ma`: the new value.
    Counted { value: u64, cas: u64 },
    /// `flush_all`, with its delay.
    Flushed { delay: i64 },
}

/// One successful mutation. For a flush the key is empty.
#[derive(Clone, Copy, Debug)]
pub struct Mutation<'a> {
    pub origin: Origin,
    pub key: &'a [u8],
    pub change: Change,
}

/// A layer over every mode's stack.
pub trait Hook: Send + Sync {
    /// Called after each successful mutation, before the client is answered. Must not wait.
    fn mutated(&self, m: &Mutation<'_>);

    /// Called once at shutdown, after the last connection drained and before the tiers close:
    /// finish what was queued (a publisher flushes its producer here).
    fn flush(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}
