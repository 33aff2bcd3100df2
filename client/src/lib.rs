//! `riven-client`: the library application teams link to reach a Riven cluster.
//!
//! It depends on what a library needs and nothing more: tokio, bytes and the shared memcached
//! codec ([`riven_memcache`]), plus the small crates that read a topology and hash keys, so
//! linking it brings no CLI, plotting or benchmark crates. The load and benchmark tools live in
//! their own crate, `riven-bench` (`client/bench/`).
//!
//! - [`topology`]: the cluster's name, the local zone and each zone's node addresses, built in
//!   code or read from TOML, and validated either way.
//! - [`ring`]: the consistent-hashing ring of one zone ([`Ring`]) and the rings of all zones
//!   ([`Rings`]). The replicator and warm-up jobs route keys with this same ring, so its
//!   key-to-node mapping is fixed and pinned by golden tests.
//! - [`conn`]: one multiplexed, pipelined connection to a node over memcached's binary
//!   protocol ([`Conn`]), carrying [`Op`]s and returning [`Resp`]s.
//! - [`breaker`]: a node's circuit breaker, a clock-free state machine ([`Breaker`]).
//! - [`node`]: a handle on one node, a few connections behind its breaker ([`Node`]).
//! - [`error`]: why a call to a node failed ([`NodeError`]), naming the node.
//!
//! - [`client`]: the zone-aware [`Client`] application teams call: reads that fail over from
//!   zone to zone (optionally hedged, [`HedgeConfig`]), multi-key reads
//!   ([`Client::get_many`]), writes to the local zone or to all zones ([`WritePolicy`]), and a topology replaced at
//!   run time ([`Client::set_topology`]).
//!   With the `json` feature, typed helpers store values as JSON (`Client::set_json`,
//!   `Client::get_json`); without it the crate does not depend on serde_json.
//! - [`policy`]: the client's configuration ([`ClientConfig`]), hedged reads, write policies
//!   and item lifetimes ([`Ttl`]).

#![warn(missing_docs)]

pub mod breaker;
pub mod client;
pub mod conn;
pub mod error;
pub mod node;
pub mod op;
pub mod policy;
pub mod ring;
pub mod telemetry;
pub mod topology;

pub use breaker::{Breaker, BreakerConfig, BreakerState, Rejected, Ticket};
pub use client::{Attempt, Client, ClientError, ClientStats, ConfigError, Failure, Item, Stored};
pub use conn::{Conn, ConnConfig};
pub use error::{NodeError, Unavailable};
pub use node::{Node, NodeConfig};
pub use op::{Arith, Concat, Op, Resp, Store};
pub use policy::{ClientConfig, HedgeConfig, Ttl, Wait, WritePolicy};

pub use ring::{Ring, RingHasher, Rings, DEFAULT_VNODES};
pub use riven_memcache as codec;
pub use topology::{Topology, TopologyBuilder, TopologyError};
