//! Storage tiers other than the embedded store, behind [`crate::engine::Backend`].

pub mod pool;
