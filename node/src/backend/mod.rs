//! Storage tiers other than the embedded store, behind [`crate::model::Backend`].
//!
//! `links` keeps the connections to an external memcached, `memcached` speaks to it item by item
//! ([`raw::RawStore`]), and `chunked` gives memcached's full semantics on top, splitting large
//! values into chunks; `slabs` keeps memcached's pages where the node's writes go.

pub mod chunked;
pub mod links;
pub mod memcached;
pub mod raw;
pub mod slabs;

#[cfg(test)]
pub(crate) mod testutil;
