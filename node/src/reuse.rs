//! Heap room for the futures a connection boxes on every burst, kept per thread for the next.
//!
//! A connection over memcached or an L2 boxes its burst's future (several KiB: it holds the
//! whole request path's state), so that an idle connection's task stays small. Allocations that
//! size miss glibc's per-thread cache, so malloc, free and their bin bookkeeping showed in the
//! node's profile. [`Reused`] boxes a future in a block this thread freed before, when one of the
//! same layout is kept.
//!
//! Soundness: a [`Reused`] owns its block exactly as a `Box` would. The future is written once,
//! never moved while the `Reused` lives (so pinning it is sound), and dropped in place before
//! its block is kept for reuse or freed. A block is only ever reused for a future of the same
//! size and alignment.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Most bytes of blocks of one layout a thread keeps. Every connection with a burst in flight
/// holds its blocks until its replies come, so a thread needs about three per busy connection
/// (50 connections at pipeline depth 16 keep about 150 blocks of 3–6 KiB in use). The bound is
/// per layout: with one bound for all, blocks of a kind that once had many in flight (a load's
/// warm-up) kept the room, and the kinds in use then missed the cache on most bursts.
const KEPT_PER_LAYOUT: usize = 1 << 20;

/// Most bytes of blocks a thread keeps in all.
const KEPT_BYTES: usize = 8 << 20;

/// The blocks a thread keeps, by layout, freed when the thread ends.
#[derive(Default)]
struct Kept {
    stacks: Vec<(Layout, Vec<NonNull<u8>>)>,
    bytes: usize,
}

impl Drop for Kept {
    fn drop(&mut self) {
        for (layout, blocks) in self.stacks.drain(..) {
            for block in blocks {
                // SAFETY: kept blocks were allocated with their layout and hold nothing live.
                unsafe { dealloc(block.as_ptr(), layout) };
            }
        }
    }
}

thread_local! {
    static FREE: RefCell<Kept> = RefCell::new(Kept::default());
}

/// A block of `layout`: one this thread kept, else a new one.
fn take(layout: Layout) -> NonNull<u8> {
    let kept = FREE
        .try_with(|f| {
            let mut f = f.borrow_mut();
            let block = f.stacks.iter_mut().find(|(l, _)| *l == layout)?.1.pop()?;
            f.bytes -= layout.size();
            Some(block)
        })
        .ok()
        .flatten();
    kept.unwrap_or_else(|| {
        // SAFETY: `layout` has a non-zero size (checked by the caller).
        let p = unsafe { alloc(layout) };
        NonNull::new(p).unwrap_or_else(|| handle_alloc_error(layout))
    })
}

/// Keeps `block` (of `layout`, its contents dropped) for reuse, or frees it.
fn give(layout: Layout, block: NonNull<u8>) {
    let kept = FREE
        .try_with(|f| {
            let mut f = f.borrow_mut();
            if f.bytes + layout.size() > KEPT_BYTES {
                return false;
            }
            let blocks = match f.stacks.iter().position(|(l, _)| *l == layout) {
                Some(i) => &mut f.stacks[i].1,
                None => {
                    f.stacks.push((layout, Vec::new()));
                    &mut f.stacks.last_mut().expect("just pushed").1
                }
            };
            if (blocks.len() + 1) * layout.size() > KEPT_PER_LAYOUT {
                return false;
            }
            blocks.push(block);
            f.bytes += layout.size();
            true
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: `block` was allocated with `layout` and is no longer used.
        unsafe { dealloc(block.as_ptr(), layout) };
    }
}

/// A boxed, pinned future whose block comes from (and returns to) this thread's kept blocks.
pub struct Reused<F: Future> {
    ptr: NonNull<F>,
}

// SAFETY: a `Reused<F>` owns its `F` like `Box<F>` does; the kept blocks are plain memory.
unsafe impl<F: Future + Send> Send for Reused<F> {}
// SAFETY: as for `Send`; `&Reused<F>` gives no access to the future.
unsafe impl<F: Future + Sync> Sync for Reused<F> {}

impl<F: Future> Reused<F> {
    /// Boxes the future `make` returns. Taking a maker rather than the future lets the compiler
    /// build the future straight in its block: a future passed by value is first built on the
    /// stack, then copied whole (several KiB per burst, most of it room for states the future
    /// has not reached yet), which showed in the node's profile as `memcpy`.
    #[inline(always)]
    pub fn new(make: impl FnOnce() -> F) -> Reused<F> {
        let layout = Layout::new::<F>();
        // A zero-sized future needs no block: any aligned pointer is valid for it.
        let ptr = match layout.size() {
            0 => NonNull::dangling(),
            _ => take(layout).cast::<F>(),
        };
        // SAFETY: the block is valid for writes of an `F` and holds nothing live. Should `make`
        // panic, the block is leaked, never read.
        unsafe { ptr.as_ptr().write(make()) };
        Reused { ptr }
    }
}

impl<F: Future> Future for Reused<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future lives at `ptr` until `drop` and is never moved (the `Reused` only
        // holds a pointer to it), so pinning it there is sound.
        unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) }.poll(cx)
    }
}

impl<F: Future> Drop for Reused<F> {
    fn drop(&mut self) {
        // SAFETY: the future at `ptr` is live and dropped exactly once, here. A zero-sized
        // future has no block.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        let layout = Layout::new::<F>();
        if layout.size() > 0 {
            give(layout, self.ptr.cast());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>, [u8; 512]);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_block_is_reused_and_each_future_dropped_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let make = |v: u8| {
            let c = Counted(drops.clone(), [v; 512]);
            async move {
                tokio::task::yield_now().await;
                c.1.iter().map(|&b| usize::from(b)).sum::<usize>()
            }
        };
        let first = Reused::new(|| make(1));
        let at = first.ptr.as_ptr() as usize;
        assert_eq!(first.await, 512);
        // The same layout gets the block back, with the new future's own state in it.
        let second = Reused::new(|| make(2));
        assert_eq!(second.ptr.as_ptr() as usize, at);
        assert_eq!(second.await, 1024);
        // Dropped before it ran: its state is still dropped.
        drop(Reused::new(|| make(3)));
        assert_eq!(drops.load(Ordering::SeqCst), 3);
    }
}
