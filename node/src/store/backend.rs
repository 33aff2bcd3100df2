//! The embedded store as a [`Backend`]: always ready, never failing.

use super::Store;
use crate::model::{
    ArithOutcome, ArithReq, Backend, DeleteOutcome, Expiry, ItemView, ReadOpts, Result, StoreOutcome, StoreReq,
};

/// The embedded store is a backend that is always ready.
impl Backend for Store {
    async fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> Result<Option<R>>
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send,
    {
        Ok(Store::read(self, key, opts, f))
    }
    #[inline]
    fn read_now<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        Ok(Ok(Store::read(self, key, opts, f)))
    }
    async fn store(&self, req: &StoreReq<'_>) -> Result<StoreOutcome> {
        Ok(Store::store(self, req))
    }
    async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteOutcome> {
        Ok(Store::delete(self, key, cas))
    }
    async fn invalidate(&self, key: &[u8], cas: Option<u64>, expiry: Option<Expiry>) -> Result<DeleteOutcome> {
        Ok(Store::invalidate(self, key, cas, expiry))
    }
    async fn touch(&self, key: &[u8], expiry: Expiry) -> Result<bool> {
        Ok(Store::touch(self, key, expiry))
    }
    async fn arith(&self, req: &ArithReq<'_>) -> Result<ArithOutcome> {
        Ok(Store::arith(self, req))
    }
    async fn flush_all(&self, delay: i64) -> Result<()> {
        Store::flush_all(self, delay);
        Ok(())
    }
}
