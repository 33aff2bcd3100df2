//! The embedded memory store: Riven's default L1.
//!
//! Memory comes from one arena preallocated at start (`-m`), cut into fixed-size chunks. An item is
//! a chain of chunks: the first holds a fixed header, then key and value run on through the chain.
//! Because every allocation is "some number of equal chunks", freed memory serves any later value
//! size: nothing gets stuck in the wrong slab class (the problem Rend's chunking solves for
//! memcached).
//!
//! Keys are spread over shards by hash; each shard has its own lock, hash table, LRU list and free
//! chunk list, so there is no global lock. Values are copied into chunks *before* the shard lock is
//! taken, and a lock is never held while another is taken, so shards cannot deadlock.
//!
//! This module speaks memcached semantics (storage modes, CAS, TTL rules, flush, arithmetic, the
//! meta protocol's stale/win flags); the protocol front ends only translate wire formats.

mod arena;
mod backend;
mod shard;
#[macro_use]
mod items;
mod commands;

use std::sync::Arc;

// The vocabulary the store speaks, for its submodules.
use crate::model::{
    item_size_ok, ArithOutcome, ArithReq, Clock, DeleteOutcome, Expiry, ItemView, Mode, ReadOpts, StoreOutcome,
    StoreReq, StoreStats, Value,
};

/// What a store is built with.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Arena size in bytes (memcached's `-m`, in bytes).
    pub memory_bytes: usize,
    /// Size of one chunk in bytes (header included in the first chunk).
    pub chunk_size: usize,
    /// Largest item accepted, in bytes (memcached's `-I`; see [`item_size_ok`]).
    pub item_size_max: usize,
    /// Number of shards (rounded up to a power of two).
    pub shards: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            memory_bytes: 64 << 20,
            chunk_size: 256,
            item_size_max: 1 << 20,
            shards: 64,
        }
    }
}

pub use items::Store;

/// A shared handle to a store.
pub type SharedStore = Arc<Store>;

#[cfg(test)]
mod tests;
