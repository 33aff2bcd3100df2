//! Riven node: a memcached-compatible cache server.
//!
//! `server::run` serves the text (classic and meta) and binary protocols on one port, over the
//! embedded chunked memory store in `store`. `main.rs` only parses the configuration and calls it.

pub mod backend;
pub mod config;
pub mod conn;
pub mod counter;
pub mod engine;
pub mod l2;
pub mod orchestrator;
pub mod protocol;
pub mod reuse;
pub mod server;
pub mod shard;
pub mod stats;
pub mod store;
