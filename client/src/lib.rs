//! `riven-client`: the library application teams link to reach a Riven cluster.
//!
//! It depends on what a library needs and nothing more: tokio, bytes and the shared memcached
//! codec ([`riven_memcache`]), so linking it brings no CLI, plotting or benchmark crates. The
//! load and benchmark tools live in their own crate, `riven-bench` (`client/bench/`).
//!
//! The zone-aware, consistent-hashing client (rings per zone, failover and hedged reads, the
//! `AllZones` write policies) is built here by the client issue; the replicator and warm-up jobs
//! route keys with the same ring.

pub use riven_memcache as codec;
