//! Reusable completion slots: where the reader leaves a reply for the call waiting on it.
//!
//! A call needs somewhere to receive its reply. A fresh channel per call would cost an
//! allocation per request; instead each link keeps a slab of slots that calls borrow and give
//! back. The slab grows (rarely, by doubling) to the largest number of calls that were waiting
//! at once and is then reused for the link's life, so the steady state allocates nothing.
//!
//! Each slot carries a generation that changes every time the slot is given back. A call and
//! its pending entry both name the slot by index *and* generation ([`SlotId`]), so a call that
//! gave its slot up (it timed out, or its future was dropped) cannot be answered through the
//! slot's next occupant: its late reply finds another generation there and is dropped.
//!
//! The slab has no lock of its own. It lives in the link's shared state, under the same lock
//! as the pending queue, so a reply and the call it completes always agree on the slot's state.

use std::task::{Context, Poll, Waker};

use crate::error::NodeError;
use crate::op::Resp;

/// What a call receives: its reply, or why there is none.
pub(super) type Outcome = Result<Resp, NodeError>;

/// Marks the end of the free list.
const NONE: usize = usize::MAX;

/// One borrowing of one slot: which slot, and which of its occupants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SlotId {
    index: usize,
    /// A u64 never wraps: at a billion reuses a second a slot would take centuries.
    generation: u64,
}

/// A slab of completion slots with a free list through the unused ones.
#[derive(Debug)]
pub(super) struct Slots {
    slots: Vec<Slot>,
    /// The most recently freed slot (reused first, as its memory is the warmest), or [`NONE`].
    free: usize,
    /// Slots borrowed and not yet given back.
    in_use: usize,
}

#[derive(Debug)]
struct Slot {
    generation: u64,
    state: State,
    /// The waiting call's waker, set when it polls before its reply is in.
    waker: Option<Waker>,
}

#[derive(Debug)]
enum State {
    /// Not borrowed; `next` is the next free slot.
    Free { next: usize },
    /// Borrowed by a call whose reply has not come.
    Waiting,
    /// The reply (or failure) is in, for the call to take.
    Done(Outcome),
}

impl Slots {
    /// An empty slab with room for `capacity` slots before it first grows.
    pub(super) fn with_capacity(capacity: usize) -> Slots {
        Slots {
            slots: Vec::with_capacity(capacity),
            free: NONE,
            in_use: 0,
        }
    }

    /// Borrows a slot for a call about to be sent.
    pub(super) fn take(&mut self) -> SlotId {
        self.in_use += 1;
        let index = self.free;
        if let Some(slot) = self.slots.get_mut(index) {
            let State::Free { next } = slot.state else {
                unreachable!("slot {index} is on the free list but in use");
            };
            self.free = next;
            slot.state = State::Waiting;
            return SlotId {
                index,
                generation: slot.generation,
            };
        }
        // No free slot: a new one. `Vec` doubles as it fills, so this allocates only while the
        // slab grows towards the most calls ever waiting at once.
        let index = self.slots.len();
        self.slots.push(Slot {
            generation: 0,
            state: State::Waiting,
            waker: None,
        });
        SlotId { index, generation: 0 }
    }

    /// The slot `id` names, if it still holds that occupant.
    fn get(&mut self, id: SlotId) -> Option<&mut Slot> {
        self.slots.get_mut(id.index).filter(|s| s.generation == id.generation)
    }

    /// Leaves `outcome` for the call holding `id`, returning its waker to wake once the lock
    /// is released. A call that has given its slot up is gone: the outcome is dropped.
    pub(super) fn complete(&mut self, id: SlotId, outcome: Outcome) -> Option<Waker> {
        let slot = self.get(id)?;
        // Each request has one pending entry, taken off the queue once, so a slot still held by
        // its call is always waiting here.
        let waiting = matches!(slot.state, State::Waiting);
        debug_assert!(waiting, "slot {} completed twice", id.index);
        if !waiting {
            return None;
        }
        slot.state = State::Done(outcome);
        slot.waker.take()
    }

    /// The call's outcome if it is in, giving the slot back; otherwise registers the waker.
    pub(super) fn poll(&mut self, id: SlotId, cx: &mut Context<'_>) -> Poll<Outcome> {
        let Some(slot) = self.get(id) else {
            unreachable!("a call polled slot {} after giving it up", id.index);
        };
        match slot.state {
            State::Done(_) => {}
            State::Waiting => {
                // A waker that would wake the same task is kept: no clone on every poll.
                match &mut slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            State::Free { .. } => unreachable!("slot {} is free but borrowed", id.index),
        }
        match self.release(id) {
            Some(outcome) => Poll::Ready(outcome),
            None => unreachable!("slot {} was done", id.index),
        }
    }

    /// Gives slot `id` back, whatever its state, returning an outcome that was left in it (for
    /// the caller to drop outside the lock). Giving back a slot already given back is a no-op.
    pub(super) fn release(&mut self, id: SlotId) -> Option<Outcome> {
        let free = self.free;
        let slot = self.get(id)?;
        // From here on the old `id` matches nothing: a late reply to it is dropped.
        slot.generation += 1;
        slot.waker = None;
        let state = std::mem::replace(&mut slot.state, State::Free { next: free });
        self.free = id.index;
        self.in_use -= 1;
        match state {
            State::Done(outcome) => Some(outcome),
            State::Waiting => None,
            State::Free { .. } => unreachable!("slot {} was free with a live generation", id.index),
        }
    }

    /// Slots borrowed and not yet given back.
    pub(super) fn in_use(&self) -> usize {
        self.in_use
    }

    /// Slots allocated, borrowed or free.
    pub(super) fn allocated(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use bytes::Bytes;
    use riven_memcache::binary::Status;

    use super::*;

    struct Counter(std::sync::atomic::AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn resp(value: &'static [u8]) -> Outcome {
        Ok(Resp {
            status: Status::SUCCESS,
            cas: 1,
            flags: 0,
            value: Bytes::from_static(value),
        })
    }

    #[test]
    fn a_slot_given_up_is_reused_and_its_late_reply_dropped() {
        let counter = Arc::new(Counter(0.into()));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slots = Slots::with_capacity(1);

        let old = slots.take();
        assert!(slots.poll(old, &mut cx).is_pending());
        // The call times out: it gives the slot back with its request still unanswered.
        assert!(slots.release(old).is_none());
        let new = slots.take();
        assert_eq!((new.index, slots.allocated()), (old.index, 1), "the slot is reused");
        assert_ne!(new, old);

        // The old request's reply comes: it must not reach the new call.
        assert!(slots.complete(old, resp(b"old")).is_none());
        assert!(slots.poll(new, &mut cx).is_pending());
        assert!(slots.complete(new, resp(b"new")).is_some());
        match slots.poll(new, &mut cx) {
            Poll::Ready(Ok(r)) => assert_eq!(&r.value[..], b"new"),
            other => panic!("expected the new reply, got {other:?}"),
        }
        assert_eq!(slots.in_use(), 0);
        // A release after the slot was taken back (a dropped, finished call) changes nothing.
        assert!(slots.release(new).is_none());
        assert_eq!(slots.in_use(), 0);
    }

    #[test]
    fn slots_grow_to_the_most_in_use_and_no_further() {
        let mut slots = Slots::with_capacity(2);
        for _ in 0..100 {
            let ids: Vec<_> = (0..5).map(|_| slots.take()).collect();
            for id in ids {
                assert!(slots.release(id).is_none());
            }
        }
        assert_eq!((slots.allocated(), slots.in_use()), (5, 0));
    }
}
