//! The L1 a node runs on: the embedded memory store, or an external memcached with chunking.

use crate::backend::chunked::Chunked;
use crate::backend::memcached::Memcached;
use crate::model::{
    ArithOutcome, ArithReq, Backend, DeleteOutcome, Expiry, ItemView, ReadOpts, Result, StoreOutcome, StoreReq,
};
use crate::store::Store;

/// The first tier. The orchestrator above it is the same in every mode.
// Built once per node and kept in the orchestrator's `Arc`: boxing the larger variant would only
// add a pointer to follow on every request.
#[allow(clippy::large_enum_variant)]
pub enum L1 {
    /// The embedded memory store (the default).
    Memory(Store),
    /// An external memcached, values chunked.
    Memcached(Chunked<Memcached>),
}

macro_rules! dispatch {
    ($self:ident, $b:ident => $call:expr) => {
        match $self {
            L1::Memory($b) => $call,
            L1::Memcached($b) => $call,
        }
    };
}

impl Backend for L1 {
    async fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        dispatch!(self, b => Backend::read(b, key, opts, f).await)
    }
    #[inline]
    fn read_now<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        dispatch!(self, b => Backend::read_now(b, key, opts, f))
    }
    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        dispatch!(self, b => Backend::store(b, req).await)
    }
    async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        dispatch!(self, b => Backend::delete(b, key, cas).await)
    }
    async fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        dispatch!(self, b => Backend::invalidate(b, key, cas, expiry).await)
    }
    async fn touch(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        dispatch!(self, b => Backend::touch(b, key, expiry).await)
    }
    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        dispatch!(self, b => Backend::arith(b, req).await)
    }
    async fn flush_all(&self, delay: i64) -> Result<()> {
        dispatch!(self, b => Backend::flush_all(b, delay).await)
    }
}
