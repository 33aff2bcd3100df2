//! The requests of one burst: one link, slots for their replies, and the stash of GETs sent
//! ahead (see the parent module).

use super::*;

tokio::task_local! {
    pub(super) static GROUP: Arc<Group>;
}

/// Most groups a thread keeps for reuse.
pub(super) const SPARE_GROUPS: usize = 64;

/// Requests in flight on a link beyond which new bursts go to the next link (see `Links::pick`).
/// Above a pipeline-1 load of 50 connections, below what pipeline 16 keeps in flight.
pub(super) const SPILL_AT: usize = 64;

thread_local! {
    /// Groups of finished bursts, with the room their slots and stash grew to.
    static SPARE: std::cell::RefCell<Vec<Arc<Group>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The requests of one client connection's burst (see the module's documentation).
pub struct Group {
    pub(super) state: Mutex<GroupState>,
    /// Replies asked for ahead of their caller, by key (see [`Links::prefetch`]). Only the
    /// connection's own task uses it.
    pub(super) stash: Mutex<Stash>,
}

#[derive(Default)]
pub(super) struct Stash {
    /// How many stashed replies calls may still take (the current request's own).
    pub(super) open: usize,
    /// The keys of `waits`, back to back.
    pub(super) keys: Vec<u8>,
    /// (end of its key in `keys`, the wait), oldest first.
    pub(super) waits: VecDeque<(usize, Pending)>,
    /// Where the oldest wait's key starts.
    pub(super) taken: usize,
    /// What callers noted for the rest of the burst (see [`Links::burst_mark`]).
    pub(super) marks: Vec<(u64, u64)>,
}

impl Stash {
    /// Removes the oldest wait, and its key.
    pub(super) fn pop(&mut self) -> Option<Pending> {
        let (end, wait) = self.waits.pop_front()?;
        self.taken = end;
        if self.waits.is_empty() {
            self.keys.clear();
            self.taken = 0;
        }
        Some(wait)
    }
}

pub(super) struct GroupState {
    /// Bumped whenever the slots are reused, so a late reply for a call that was dropped lands
    /// nowhere instead of in another call's slot.
    pub(super) generation: u32,
    pub(super) slots: Vec<Slot>,
    /// Slots not yet taken by their call.
    pub(super) live: usize,
    /// The link this group's requests go over (an index into the links).
    pub(super) link: Option<usize>,
}

pub(super) enum Slot {
    /// With the waker of the call's last poll.
    Waiting(Option<Waker>),
    Ready(Result<Reply, LinkError>),
    Taken,
}

impl Group {
    pub fn new() -> Arc<Group> {
        Arc::new(Group {
            state: Mutex::new(GroupState {
                generation: 0,
                slots: Vec::new(),
                live: 0,
                link: None,
            }),
            stash: Mutex::new(Stash::default()),
        })
    }

    /// A group for one burst: one this thread used before if there is one, so a burst does not
    /// allocate its group, nor grow its slots and stash again (about 1.3 allocations per
    /// request at pipeline depth 16). Give it back with [`Group::give_back`].
    pub fn for_burst() -> Arc<Group> {
        SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(Group::new)
    }

    /// Keeps a finished burst's group for the next burst on this thread, unless something still
    /// holds it (a reply still due: the link's queue keeps a handle until it comes).
    pub fn give_back(mut group: Arc<Group>) {
        group.clear_stash();
        let Some(g) = Arc::get_mut(&mut group) else {
            return;
        };
        let st = g.state.get_mut();
        st.slots.clear();
        st.live = 0;
        st.generation = st.generation.wrapping_add(1);
        // The next burst picks its link afresh (this one may have moved off a broken one).
        st.link = None;
        let stash = g.stash.get_mut();
        stash.open = 0;
        stash.marks.clear();
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_GROUPS {
                s.push(group);
            }
        });
    }

    /// Lets calls take the next `n` stashed replies (the request about to run stashed that
    /// many); 0 closes the stash. A call made while it is closed (a write's own lookup, a
    /// read's second look after a backfill) goes to memcached even if a reply for its key is
    /// stashed.
    pub fn open_stash(&self, n: usize) {
        self.stash.lock().open = n;
    }

    /// Drops every stashed wait (their replies, when they come, land nowhere) and closes the
    /// stash.
    pub fn clear_stash(&self) {
        self.trim_and_open_stash(0, 0);
    }

    /// Drops the oldest stashed waits until `keep` are left, then lets calls take the next `n`
    /// (see [`Group::open_stash`]), under one lock: the step before each request of a run.
    pub fn trim_and_open_stash(&self, keep: usize, n: usize) {
        let mut st = self.stash.lock();
        while st.waits.len() > keep {
            st.pop();
        }
        st.open = n;
    }

    /// Stashes the waits of the slots from `first` on, one per key of `keys`.
    pub(super) fn stash_slots(self: &Arc<Group>, keys: &[&[u8]], generation: u32, first: u32) {
        let mut st = self.stash.lock();
        for (idx, key) in (first..).zip(keys) {
            st.keys.extend_from_slice(key);
            let end = st.keys.len();
            let wait = SlotWait {
                group: self.clone(),
                generation,
                idx,
                done: false,
            };
            st.waits.push_back((end, Pending::Slot(wait)));
        }
    }

    /// The oldest stashed wait, if the stash is open and it was for `key`.
    pub(super) fn take_stashed(&self, key: &[u8]) -> Option<Pending> {
        let mut st = self.stash.lock();
        let (end, _) = st.waits.front()?;
        if st.open == 0 || &st.keys[st.taken..*end] != key {
            return None;
        }
        st.open -= 1;
        st.pop()
    }

    /// Hands the reply of the oldest stashed wait to `use_` where it lies, if the stash is open,
    /// the wait was for `key` and its reply is in; the wait is taken only if `use_` returns
    /// `Some`. A read that finds its reply so is answered without waiting (see `Chunked`'s
    /// `read_now`), and one that needs more than the reply (a chunked value) leaves it for its
    /// ordinary GET. Both locks are held while `use_` runs: it must not call the links.
    pub(super) fn use_ready_stashed<T>(
        &self,
        key: &[u8],
        use_: impl FnOnce(&Result<Reply, LinkError>) -> Option<T>,
    ) -> Option<T> {
        let mut stash = self.stash.lock();
        let (end, Pending::Slot(wait)) = stash.waits.front()? else {
            return None;
        };
        if stash.open == 0 || &stash.keys[stash.taken..*end] != key {
            return None;
        }
        let out = {
            let mut st = self.state.lock();
            if st.generation != wait.generation {
                return None;
            }
            let idx = wait.idx as usize;
            let Some(Slot::Ready(r)) = st.slots.get(idx) else {
                return None;
            };
            let out = use_(r)?;
            st.slots[idx] = Slot::Taken;
            st.settle();
            out
        };
        stash.open -= 1;
        if let Some(Pending::Slot(mut wait)) = stash.pop() {
            // Taken above.
            wait.done = true;
        }
        Some(out)
    }

    /// Runs `fut` with every call to the links it makes in this group. Not an `async fn`: that would
    /// hold `fut` and move it (several KiB) into the task-local scope on its first poll.
    pub fn scope<F: Future>(self: &Arc<Group>, fut: F) -> impl Future<Output = F::Output> {
        GROUP.scope(self.clone(), fut)
    }

    /// `count` new waiting slots: (generation, index of the first), and the link the group keeps
    /// to, if any yet.
    pub(super) fn open(&self, count: u32) -> (u32, u32, Option<usize>) {
        let mut st = self.state.lock();
        let first = st.slots.len() as u32;
        st.slots.extend((0..count).map(|_| Slot::Waiting(None)));
        st.live += count as usize;
        (st.generation, first, st.link)
    }

    /// Puts the reply in its slot; returns the waker to wake.
    pub(super) fn fill(&self, generation: u32, idx: u32, r: Result<Reply, LinkError>) -> Option<Waker> {
        let mut st = self.state.lock();
        if st.generation != generation {
            return None;
        }
        let slot = st.slots.get_mut(idx as usize)?;
        match std::mem::replace(slot, Slot::Ready(r)) {
            Slot::Waiting(waker) => waker,
            // Given up by its call: keep it given up.
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Takes the reply of slot `idx` if it is in, else leaves `waker` to be woken when it is;
    /// `None` for the waker gives the slot up.
    pub(super) fn take(&self, generation: u32, idx: u32, waker: Option<&Waker>) -> Option<Result<Reply, LinkError>> {
        let mut st = self.state.lock();
        if st.generation != generation {
            return None;
        }
        let slot = &mut st.slots[idx as usize];
        let out = match std::mem::replace(slot, Slot::Taken) {
            Slot::Ready(r) => Some(r),
            Slot::Waiting(old) if waker.is_some() => {
                let waker = waker.expect("checked");
                let keep = match old {
                    Some(old) if old.will_wake(waker) => old,
                    _ => waker.clone(),
                };
                *slot = Slot::Waiting(Some(keep));
                return None;
            }
            _ => None,
        };
        st.settle();
        out
    }
}

impl GroupState {
    /// Counts a slot as taken by its call (or given up); when no slot is live, they are reused.
    pub(super) fn settle(&mut self) {
        self.live -= 1;
        if self.live == 0 {
            self.slots.clear();
            self.generation = self.generation.wrapping_add(1);
        }
    }
}

/// A call waiting in a group's slot.
pub struct SlotWait {
    pub(super) group: Arc<Group>,
    pub(super) generation: u32,
    pub(super) idx: u32,
    pub(super) done: bool,
}

impl Future for SlotWait {
    type Output = Result<Reply, LinkError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.group.take(self.generation, self.idx, Some(cx.waker())) {
            Some(r) => {
                self.done = true;
                Poll::Ready(r)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for SlotWait {
    fn drop(&mut self) {
        if !self.done {
            self.group.take(self.generation, self.idx, None);
        }
    }
}

/// Slots opened for requests not queued yet: dropping this gives up the `count` from `first`.
pub(super) struct OpenSlots<'g> {
    pub(super) group: &'g Group,
    pub(super) generation: u32,
    pub(super) first: u32,
    pub(super) count: u32,
}

impl Drop for OpenSlots<'_> {
    fn drop(&mut self) {
        for idx in self.first..self.first + self.count {
            self.group.take(self.generation, idx, None);
        }
    }
}
