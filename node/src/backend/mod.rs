//! Storage tiers other than the embedded store, behind [`crate::model::Backend`].
//!
//! `links` keeps the connections to an external memcached, `memcached` speaks to it item by item
//! ([`raw::RawStore`]), and `chunked` gives memcached's full semantics on top, splitting large
//! values into chunks.

pub mod chunked;
pub mod links;
pub mod memcached;
pub mod raw;

#[cfg(test)]
pub(crate) mod testutil;
