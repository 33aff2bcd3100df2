//! What a connection may do ahead of its requests when the engine answers from a remote
//! memcached: run a burst's requests in one scope (they share a link and one wake-up per pass of
//! replies), and send a run's GETs together, keeping their replies for the reads that follow.
//! The connection loop sees only this interface; links, groups and stashes stay in the backend.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::Either;

use super::{Engine, L1};
use crate::backend::links::{Group, Links};
use crate::backend::memcached::Memcached;

/// A burst's scope over memcached (see [`Engine::burst_scope`]); gives its group back for the
/// next burst when dropped.
pub struct BurstScope {
    group: Option<Arc<Group>>,
}

impl BurstScope {
    /// `fut` run in this scope.
    pub fn run<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> {
        match &self.group {
            Some(g) => Either::Left(g.scope(fut)),
            None => Either::Right(fut),
        }
    }
}

impl Drop for BurstScope {
    fn drop(&mut self) {
        if let Some(g) = self.group.take() {
            Group::give_back(g);
        }
    }
}

/// The GETs a run sends ahead, and the replies kept for its reads (see [`Engine::read_ahead`]).
pub struct ReadAhead<'e> {
    memcached: &'e Memcached,
    group: Arc<Group>,
}

impl ReadAhead<'_> {
    /// Sends a plain GET of each of `keys` now; the next read of each key in this burst takes
    /// its reply. False if they were not sent (memcached is down).
    pub fn send_gets(&self, keys: &[&[u8]]) -> bool {
        self.memcached.prefetch_gets(&self.group, keys)
    }

    /// Lets the next `n` lookups take kept replies (the request about to run sent that many);
    /// 0: none may, so a write's own lookup goes to memcached.
    pub fn open(&self, n: usize) {
        self.group.open_stash(n);
    }

    /// Drops the oldest kept replies until `keep` are left, then opens the next `n`: the step
    /// before each read of a run.
    pub fn keep_and_open(&self, keep: usize, n: usize) {
        self.group.trim_and_open_stash(keep, n);
    }

    /// Drops every kept reply: the run is over.
    pub fn close(&self) {
        self.group.clear_stash();
    }
}

impl Engine {
    /// The scope a burst of one connection's requests runs in: over memcached they share one
    /// link and one wake-up per pass of replies; elsewhere it changes nothing.
    pub fn burst_scope(&self) -> BurstScope {
        BurstScope {
            group: matches!(self.l1(), L1::Memcached(_)).then(Group::for_burst),
        }
    }

    /// The read-ahead of a run, inside a burst's scope over memcached; `None` elsewhere.
    pub fn read_ahead(&self) -> Option<ReadAhead<'_>> {
        let L1::Memcached(c) = self.l1() else { return None };
        Some(ReadAhead {
            memcached: c.raw(),
            group: Links::group()?,
        })
    }
}
