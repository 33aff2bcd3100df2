//! Why a call to a node failed.
//!
//! Every error names the node's address, because the zone-aware client above routes around a
//! failing node and its logs must say which one. Errors are [`Clone`]: when a connection breaks,
//! every request pending on it fails with the same error.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use riven_memcache::binary::ComposeError;

/// A failed call to a node. A reply from the node, even an error status such as `KEY_ENOENT`,
/// is not an error here: it is a [`Resp`](crate::Resp) whose status the caller reads.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No reply came within the request timeout. The request may still have been applied.
    #[error("{addr}: no reply within {after:?}")]
    Timeout {
        /// The node's address.
        addr: Arc<str>,
        /// The request timeout that elapsed.
        after: Duration,
    },
    /// The node was not tried: its breaker is open, or no connection could be made.
    #[error("{addr}: unavailable: {reason}")]
    Unavailable {
        /// The node's address.
        addr: Arc<str>,
        /// Why the node was not reached.
        reason: Unavailable,
    },
    /// The connection already has its limit of requests in flight; nothing was sent.
    #[error("{addr}: overloaded: {limit} requests already in flight on the connection")]
    Overloaded {
        /// The node's address.
        addr: Arc<str>,
        /// The connection's in-flight limit.
        limit: usize,
    },
    /// The node sent bytes that are not the reply expected; the connection was closed.
    #[error("{addr}: protocol error: {detail}")]
    Protocol {
        /// The node's address.
        addr: Arc<str>,
        /// What was wrong with the reply.
        detail: Arc<str>,
    },
    /// The connection broke (a read or write failed, or the node closed it) while the request
    /// was pending. The request may or may not have been applied.
    #[error("{addr}: connection lost: {source}")]
    Io {
        /// The node's address.
        addr: Arc<str>,
        /// The I/O error that broke the connection.
        source: Arc<io::Error>,
    },
    /// The request cannot be encoded (a key over 65535 bytes or a body over 4 GiB); nothing
    /// was sent and the node is not to blame.
    #[error("{addr}: request cannot be encoded: {source}")]
    Invalid {
        /// The node's address.
        addr: Arc<str>,
        /// What the encoder refused.
        source: ComposeError,
    },
}

impl NodeError {
    /// The address of the node the call was for.
    pub fn addr(&self) -> &str {
        match self {
            NodeError::Timeout { addr, .. }
            | NodeError::Unavailable { addr, .. }
            | NodeError::Overloaded { addr, .. }
            | NodeError::Protocol { addr, .. }
            | NodeError::Io { addr, .. }
            | NodeError::Invalid { addr, .. } => addr,
        }
    }

    /// Whether this error says something about the node's health, and so counts towards
    /// opening its breaker. An open breaker's own refusal does not (it would keep the breaker
    /// open by itself), nor does a full queue (back-pressure from this process, not a sick node)
    /// or a request that cannot be encoded (the caller's mistake).
    pub fn is_node_failure(&self) -> bool {
        match self {
            NodeError::Timeout { .. } | NodeError::Protocol { .. } | NodeError::Io { .. } => true,
            NodeError::Unavailable { reason, .. } => !matches!(reason, Unavailable::BreakerOpen),
            NodeError::Overloaded { .. } | NodeError::Invalid { .. } => false,
        }
    }
}

/// Why a node was not reached.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Unavailable {
    /// The node's circuit breaker is open (or half-open with its probe in flight).
    BreakerOpen,
    /// Connecting failed.
    ConnectFailed(Arc<io::Error>),
    /// Connecting took longer than the connect timeout.
    ConnectTimeout(Duration),
    /// The last connect attempt failed and the next is not due for this long yet.
    ReconnectBackoff(Duration),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::BreakerOpen => f.write_str("circuit breaker open"),
            Unavailable::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            Unavailable::ConnectTimeout(after) => write!(f, "connect timed out after {after:?}"),
            Unavailable::ReconnectBackoff(left) => {
                write!(f, "connect failed recently; next attempt in {left:?}")
            }
        }
    }
}
