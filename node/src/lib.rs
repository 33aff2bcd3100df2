//! Riven node: a memcached-compatible cache server.

pub mod protocol;
pub mod server;
pub mod stats;
pub mod store;
