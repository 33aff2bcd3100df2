//! Riven's client crate. For now it holds the pieces of the load and benchmark tool
//! `riven-bench` ([`bench`]); the smart client that hashes keys onto zones comes later and shares
//! the crate (and `riven-proto`'s codec).

pub mod bench;
