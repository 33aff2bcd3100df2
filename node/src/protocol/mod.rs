//! Protocol front ends: they turn parsed requests (from `riven-memcache`) into store operations and
//! write memcached's replies. A connection starts as text or binary, decided by its first byte, as
//! memcached does; text connections accept classic and meta commands mixed.

pub mod binary;
pub mod meta;
pub mod text;

use crate::engine::Engine;
use crate::state::ServerState;

/// What a front end did with the bytes it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A request was handled (reply, if any, appended to `out`); this many bytes were used.
    Done(usize),
    /// `consumed` bytes were used and the next `swallow` bytes the peer sends must be discarded
    /// unread (the data block of a rejected, oversized request).
    Swallow { consumed: usize, swallow: usize },
    /// No complete request yet: read more.
    Incomplete,
    /// Write what is in `out`, then close the connection (`quit`).
    Close,
    /// Close the connection without writing the pending replies, as memcached does on input it
    /// gives up on (a line that grows past the limit without a newline).
    Abort,
}

/// Per-connection state the front ends keep between requests.
#[derive(Debug, Default)]
pub struct ConnState {
    /// Binary protocol: quiet replies are held back until a non-quiet request; nothing to keep for
    /// now, but the slot is here so front ends can grow state without touching the server loop.
    pub binary_quiet_pending: bool,
}

/// Everything a front end needs to handle one request.
pub struct Ctx<'a> {
    pub state: &'a ServerState,
    /// The engine this connection's requests go to: the node's, or the batch view on the batch
    /// listener.
    pub engine: &'a Engine,
    pub conn: &'a mut ConnState,
}

/// Runs a front end's future to completion in a unit test. With the embedded store nothing ever
/// waits, so the first poll finishes it.
#[cfg(test)]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a memory-engine request waited"),
    }
}
