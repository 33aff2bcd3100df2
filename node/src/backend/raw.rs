//! The raw key-value operations a chunking layer needs from a store, and helpers shared by the
//! implementations: memcached's exptime encoding and a windowed "run many requests at once".
//!
//! "Raw" means plain memcached items: no envelope, no chunks, the CAS is memcached's own. The
//! memcached client ([`super::memcached::Memcached`]) implements [`RawStore`], and so does the
//! scripted fake the chunking tests run on.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use riven_memcache::REALTIME_MAXDELTA;

use crate::model::Result;
use crate::model::{Clock, Expiry};

/// An item as memcached returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawItem {
    pub flags: u32,
    /// memcached's CAS of the item.
    pub cas: u64,
    pub value: Bytes,
}

/// An item where the reply that brought it lies (see [`RawStore::use_ready`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawItemRef<'a> {
    pub flags: u32,
    /// memcached's CAS of the item.
    pub cas: u64,
    pub value: &'a [u8],
    /// The buffer `value` lies in: a large value is handed on as a share of it
    /// ([`Bytes::slice_ref`]) rather than copied.
    pub buf: &'a Bytes,
}

/// memcached's plain storage commands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawMode {
    Set,
    Add,
    Replace,
}

/// One write. The value is the concatenation of `value`'s pieces (say an envelope and a slice of
/// the user's data), so callers never gather them into one buffer first; unused pieces are empty.
#[derive(Clone, Copy, Debug)]
pub struct RawWrite<'a> {
    pub mode: RawMode,
    pub key: &'a [u8],
    pub flags: u32,
    /// memcached wire exptime (see [`memcached_exptime`]).
    pub exptime: u32,
    /// 0: no CAS; otherwise store only if the item's CAS is this.
    pub cas: u64,
    pub value: [&'a [u8]; 3],
}

impl RawWrite<'_> {
    pub fn value_len(&self) -> usize {
        self.value.iter().map(|p| p.len()).sum()
    }
}

/// What memcached answered to a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawStored {
    Stored {
        cas: u64,
    },
    /// `add` of an existing key, `replace` of a missing one.
    NotStored,
    /// The CAS did not match.
    Exists,
    /// A CAS write to a missing key.
    NotFound,
    /// Larger than memcached's `-I`.
    TooLarge,
    /// memcached could not find memory.
    OutOfMemory,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawDeleted {
    Deleted,
    NotFound,
    /// The CAS did not match.
    Exists,
}

/// Plain memcached item operations. Errors are transport failures only; every answer memcached
/// can give is a value of the result.
pub trait RawStore: Send + Sync {
    /// GET, or with `touch` GAT (read and set the exptime in one request). `None` is a miss.
    fn get(&self, key: &[u8], touch: Option<u32>) -> impl Future<Output = Result<Option<RawItem>>> + Send;
    fn store(&self, w: RawWrite<'_>) -> impl Future<Output = Result<RawStored>> + Send;
    /// Hands the reply to a plain GET of `key` to `use_` where it lies, if one was sent ahead
    /// for the caller and has already come (see `Links::prefetch`): a hit, a miss (`Ok(None)`)
    /// or an error. It is taken if `use_` returns `Some`, and otherwise left for the next `get`
    /// of `key`. `None` if there is no such reply; by default nothing is sent ahead.
    fn use_ready<T>(&self, _key: &[u8], _use: impl FnOnce(Result<Option<RawItemRef<'_>>>) -> Option<T>) -> Option<T> {
        None
    }
    /// Notes `mark` for the later requests of the caller's burst of pipelined requests, whose
    /// reads may have been sent before the caller's writes (see `Links::burst_mark`). By default
    /// there are no such bursts.
    fn burst_mark(&self, _mark: (u64, u64)) {}
    /// Whether an earlier request of the caller's burst noted `mark`.
    fn burst_marked(&self, _mark: (u64, u64)) -> bool {
        false
    }
    /// DELETE; `cas` 0 means unconditional.
    fn delete(&self, key: &[u8], cas: u64) -> impl Future<Output = Result<RawDeleted>> + Send;
    /// TOUCH: false on a miss. Unlike a read, memcached sends no value back, so this is also the
    /// cheap way to ask whether an item is still there.
    fn touch(&self, key: &[u8], exptime: u32) -> impl Future<Output = Result<bool>> + Send;
    /// `flush_all` with memcached's delay argument (0 = now).
    fn flush_all(&self, delay: u32) -> impl Future<Output = Result<()>> + Send;
}

/// A shared raw store is a raw store (one memcached client for the chunking layer and others).
impl<T: RawStore> RawStore for std::sync::Arc<T> {
    fn get(&self, key: &[u8], touch: Option<u32>) -> impl Future<Output = Result<Option<RawItem>>> + Send {
        (**self).get(key, touch)
    }
    fn store(&self, w: RawWrite<'_>) -> impl Future<Output = Result<RawStored>> + Send {
        (**self).store(w)
    }
    fn use_ready<U>(&self, key: &[u8], use_: impl FnOnce(Result<Option<RawItemRef<'_>>>) -> Option<U>) -> Option<U> {
        (**self).use_ready(key, use_)
    }
    fn burst_mark(&self, mark: (u64, u64)) {
        (**self).burst_mark(mark)
    }
    fn burst_marked(&self, mark: (u64, u64)) -> bool {
        (**self).burst_marked(mark)
    }
    fn delete(&self, key: &[u8], cas: u64) -> impl Future<Output = Result<RawDeleted>> + Send {
        (**self).delete(key, cas)
    }
    fn touch(&self, key: &[u8], exptime: u32) -> impl Future<Output = Result<bool>> + Send {
        (**self).touch(key, exptime)
    }
    fn flush_all(&self, delay: u32) -> impl Future<Output = Result<()>> + Send {
        (**self).flush_all(delay)
    }
}

/// The exptime to send memcached for an expiry: 0 for never, else the absolute unix time, so the
/// value does not live longer however late the request reaches memcached. An expiry already past
/// becomes an absolute time memcached's clock also sees as past (just above its 30-day boundary,
/// i.e. January 1970), which makes memcached store the item already expired — the same effect
/// as its own negative exptimes, which the binary protocol (unsigned exptime) cannot carry.
pub fn memcached_exptime(clock: &Clock, e: Expiry) -> u32 {
    if e == Expiry::NEVER {
        return 0;
    }
    if clock.expired(e) {
        return REALTIME_MAXDELTA + 1;
    }
    unix_exptime(clock.to_unix(e.0))
}

/// An absolute unix expiry (0 = never) as a memcached exptime.
pub fn unix_exptime(unix: i64) -> u32 {
    match unix {
        0 => 0,
        u => riven_memcache::absolute_exptime(u.max(0) as u64),
    }
}

/// Runs `make(0..n)` with at most `window` futures in flight, handing each output to `on_done`
/// (in completion order, with its index) as soon as it is ready. Stops early, dropping the
/// futures still running, when `on_done` breaks (callers record why in what `on_done` captures).
///
/// Issuing many requests at once is what lets the links send them in one write; the window
/// keeps a huge value from queueing thousands of requests (and their replies) at the same time.
pub async fn run_windowed<T, Fut>(
    n: usize,
    window: usize,
    mut make: impl FnMut(usize) -> Fut,
    mut on_done: impl FnMut(usize, T) -> ControlFlow<()>,
) where
    Fut: Future<Output = T>,
{
    let window = window.max(1);
    let mut next = 0;
    let mut running: Vec<(usize, Pin<Box<Fut>>)> = Vec::with_capacity(window.min(n));
    std::future::poll_fn(|cx| loop {
        while running.len() < window && next < n {
            running.push((next, Box::pin(make(next))));
            next += 1;
        }
        let mut progressed = false;
        let mut broke = false;
        running.retain_mut(|(i, fut)| {
            if broke {
                return true;
            }
            match fut.as_mut().poll(cx) {
                Poll::Ready(out) => {
                    progressed = true;
                    broke = on_done(*i, out).is_break();
                    false
                }
                Poll::Pending => true,
            }
        });
        if broke {
            running.clear();
            return Poll::Ready(());
        }
        if running.is_empty() && next == n {
            return Poll::Ready(());
        }
        // Completed futures made room: start more and poll them before sleeping.
        if !progressed {
            return Poll::Pending;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptimes() {
        let c = Clock::manual();
        assert_eq!(memcached_exptime(&c, Expiry::NEVER), 0);
        assert_eq!(memcached_exptime(&c, c.expiry(-1)), REALTIME_MAXDELTA + 1);
        let e = c.expiry(100);
        assert_eq!(i64::from(memcached_exptime(&c, e)), c.unix_now() + 100);
        assert_eq!(unix_exptime(0), 0);
        assert_eq!(unix_exptime(5), REALTIME_MAXDELTA + 1);
        assert_eq!(unix_exptime(1 << 40), u32::MAX);
    }

    #[tokio::test]
    async fn windowed_runs_all_and_bounds_concurrency() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let live = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let mut seen = [false; 50];
        run_windowed(
            50,
            4,
            |i| {
                let (live, peak) = (&live, &peak);
                async move {
                    let now = live.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    live.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                }
            },
            |i, out| {
                assert_eq!(out, i * 2);
                seen[i] = true;
                ControlFlow::Continue(())
            },
        )
        .await;
        assert!(seen.iter().all(|&s| s));
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[tokio::test]
    async fn windowed_stops_early() {
        let mut done = 0;
        run_windowed(
            100,
            8,
            |i| async move { i },
            |i, _| {
                done += 1;
                if i == 10 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await;
        assert!((11..=11 + 8).contains(&done));
        run_windowed(0, 8, |i| async move { i }, |_, _| ControlFlow::Break(())).await;
    }
}
