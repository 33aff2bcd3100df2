//! The interface every tier, wrapper and the whole stack offer, and the error they fail with.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use super::{ArithOutcome, ArithReq, DeleteOutcome, Expiry, ItemView, ReadOpts, StoreOutcome, StoreReq};

/// Why a request could not be served. The node keeps running; the client gets
/// `SERVER_ERROR <message>` (binary: status 0x86, temporary failure), where the message is this
/// error's display. The cause, when there is one, is kept for the log and [`source`].
///
/// [`source`]: std::error::Error::source
#[derive(Debug, Clone)]
pub enum BackendError {
    Unavailable,
    Timeout,
    /// The tier answered but could not do it: `reason` is what the client is told, `cause`
    /// the underlying error, if any.
    Failed {
        reason: &'static str,
        cause: Option<Cause>,
    },
}

/// The error underneath a [`BackendError::Failed`]; cheap to clone.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl BackendError {
    /// A failure with nothing underneath it.
    pub fn failed(reason: &'static str) -> BackendError {
        BackendError::Failed { reason, cause: None }
    }

    /// A failure caused by `cause`.
    pub fn failed_by(reason: &'static str, cause: impl std::error::Error + Send + Sync + 'static) -> BackendError {
        BackendError::Failed {
            reason,
            cause: Some(Cause(Arc::new(cause))),
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unavailable => f.write_str("backend unavailable"),
            BackendError::Timeout => f.write_str("backend timeout"),
            BackendError::Failed { reason, .. } => write!(f, "backend error: {reason}"),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackendError::Failed { cause: Some(c), .. } => Some(&*c.0),
            _ => None,
        }
    }
}

/// Errors are equal when they tell the client the same thing.
impl PartialEq for BackendError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BackendError::Unavailable, BackendError::Unavailable) | (BackendError::Timeout, BackendError::Timeout) => {
                true
            }
            (BackendError::Failed { reason: a, .. }, BackendError::Failed { reason: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for BackendError {}

pub type Result<T> = std::result::Result<T, BackendError>;

/// Storage with memcached's item semantics, as every tier and the whole engine offer it.
///
/// `read` hands the item to `f` (under the store's lock, or over the reply buffer of a remote
/// tier), so values are copied once, straight into the reply.
pub trait Backend: Send + Sync {
    fn read<R, F>(&self, key: &[u8], opts: &ReadOpts, f: F) -> impl Future<Output = Result<Option<R>>> + Send
    where
        R: Send,
        F: FnOnce(&ItemView<'_>) -> R + Send;
    /// `read`, answered at once if the backend can without waiting; `f` back if it cannot (then
    /// `read`). A burst of pipelined reads over memcached, whose GETs went out together, finds
    /// most replies already in: answering them here skips a chain of futures per read. By
    /// default no read is answered at once.
    fn read_now<R, F>(&self, _key: &[u8], _opts: &ReadOpts, f: F) -> std::result::Result<Result<Option<R>>, F>
    where
        F: FnOnce(&ItemView<'_>) -> R,
    {
        Err(f)
    }
    fn store(&self, req: &StoreReq<'_>) -> impl Future<Output = Result<StoreOutcome>> + Send;
    fn delete(&self, key: &[u8], cas: Option<u64>) -> impl Future<Output = Result<DeleteOutcome>> + Send;
    fn invalidate(
        &self,
        key: &[u8],
        cas: Option<u64>,
        expiry: Option<Expiry>,
    ) -> impl Future<Output = Result<DeleteOutcome>> + Send;
    fn touch(&self, key: &[u8], expiry: Expiry) -> impl Future<Output = Result<bool>> + Send;
    fn arith(&self, req: &ArithReq<'_>) -> impl Future<Output = Result<ArithOutcome>> + Send;
    fn flush_all(&self, delay: i64) -> impl Future<Output = Result<()>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_and_the_client_message_is_the_reason() {
        let io = std::io::Error::other("disk on fire");
        let e = BackendError::failed_by("l2 storage error", io);
        assert_eq!(e.to_string(), "backend error: l2 storage error");
        let source = std::error::Error::source(&e).expect("a cause");
        assert_eq!(source.to_string(), "disk on fire");
        assert_eq!(e, BackendError::failed("l2 storage error"));
        assert!(std::error::Error::source(&BackendError::Timeout).is_none());
    }
}
