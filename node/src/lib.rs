//! Riven node: a memcached-compatible cache server.
//!
//! [`node::Node::start`] builds the storage stack ([`engine::build`]) and serves the text (classic
//! and meta) and binary protocols on one port; [`node::Node::shutdown`] stops it in order.
//! `main.rs` only parses the configuration, sets up logging and waits for a signal.
//!
//! The vocabulary every part shares (items, requests, outcomes, versions, the `Backend` trait)
//! is in [`model`], owned by no backend.

pub mod backend;
pub mod config;
pub mod conn;
pub mod counter;
pub mod engine;
pub mod l2;
pub mod malloc;
pub mod model;
pub mod node;
pub mod orchestrator;
pub mod out;
pub mod protocol;
pub mod reuse;
pub mod server;
pub mod state;
pub mod stats;
pub mod store;
pub mod workers;
