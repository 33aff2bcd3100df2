//! Keeping memcached's memory where the node's values are: a slab balancer.
//!
//! memcached hands its memory out in 1 MiB pages, each page to one size class for good. Once
//! every page is handed out, a class can only evict its own items: when the sizes of the values
//! change (a batch job's output grows from 2 KB to 50 KB), the new values land in classes with
//! almost no pages and evict each other, while the old ones keep the memory (Rend's motivating
//! incident). memcached's own automover moves pages too slowly to follow such a shift.
//!
//! This module follows it. The node sees every item it writes into memcached, so it knows, per
//! class, how many items went in and when; with the class's capacity from `stats slabs` that
//! gives the age of the class's oldest item (its LRU tail) far more finely than memcached's
//! one-second `age`. Every [`TICK`] while the node writes, and at once when memcached answers a
//! write with "out of memory", the balancer task looks for a *starved* class (evicting or out of
//! memory, no free chunks left) whose tail is much younger than another class's (by
//! [`AGE_RATIO`]), and moves pages from that class to it with `slabs reassign`, one after the
//! other (memcached moves one in about a millisecond). Meanwhile writes into the starved class
//! that would find no free chunk wait for the pages (up to the configured bound), instead of
//! evicting the values written just before them. So memcached's memory stays with the values
//! being used, whatever their size, and the node's items keep memcached's own sizes (no padding).
//!
//! What it does not see: reads (memcached's LRU bumps items that are read) and other clients'
//! writes. The estimate takes the larger of its own age and memcached's `age` for each class.

mod admin;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use riven_memcache::slab::Classes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use self::admin::ClassStats;
use self::admin::{Admin, Reassign};
use super::links::Endpoint;

/// How often the balancer looks while the node writes.
pub const TICK: Duration = Duration::from_millis(10);
/// How often the balancer looks while memcached still has pages to hand out.
const LOOSE_TICK: Duration = Duration::from_millis(250);
/// The shortest time between two looks when no page is moving.
const MIN_GAP: Duration = Duration::from_millis(1);
/// A page moves to a starved class only from a class whose tail is this many times older.
pub const AGE_RATIO: f64 = 1.1;
/// ... and older by at least this much (differences below it are noise).
const AGE_MARGIN: Duration = Duration::from_millis(20);
/// A starved class stays so this long after the node last wrote into it or memcached last
/// evicted from it: a writer between two batches must not lose its place.
const STARVED_HOLD: Duration = Duration::from_millis(500);
/// memcached's bound on class ids.
const CLASSES: usize = 64;
/// Write-time samples kept per class.
const SAMPLES: usize = 1024;

/// How the balancer is set up.
#[derive(Clone, Debug)]
pub struct SlabsConfig {
    pub endpoint: Endpoint,
    /// The longest a write waits for pages to reach its class.
    pub max_wait: Duration,
    /// Bound on each admin request to memcached.
    pub timeout: Duration,
}

#[derive(Default)]
struct ClassState {
    /// Items the node wrote into the class.
    writes: AtomicU64,
    /// Free chunks left by the last look, less the writes since.
    credit: AtomicI64,
    /// The balancer is moving pages here: writes without credit wait.
    starved: AtomicBool,
    /// An out-of-memory answer since the last look.
    oom: AtomicBool,
    /// (writes so far, when), every `every` writes, oldest first.
    samples: Mutex<VecDeque<(u64, Instant)>>,
    every: AtomicU64,
}

/// One class as `stats slabs` shows it through the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassView {
    pub id: usize,
    pub stats: ClassStats,
    /// The estimated age of the class's oldest item.
    pub tail_age: Duration,
    /// Items the node wrote into it.
    pub writes: u64,
}

/// The balancer's shared state; see the module's documentation.
pub struct Slabs {
    cfg: SlabsConfig,
    classes: OnceLock<Classes>,
    per: Box<[ClassState]>,
    /// Woken after every look: waiting writers check again.
    looked: Notify,
    /// Woken by an out-of-memory answer or a class's free chunks used up: the balancer looks
    /// at once.
    poke: Notify,
    /// Every page of memcached's is handed out (as of the last look): only then can a class
    /// starve, and only then do writers poke.
    tight: AtomicBool,
    view: Mutex<Vec<ClassView>>,
    moved: AtomicU64,
    waited: AtomicU64,
    stop: CancellationToken,
}

impl Slabs {
    /// The balancer, its task started on `runtime`.
    pub fn start(cfg: SlabsConfig, runtime: &tokio::runtime::Handle) -> Arc<Slabs> {
        let slabs = Arc::new(Slabs::new(cfg));
        runtime.spawn(run(slabs.clone()));
        slabs
    }

    fn new(cfg: SlabsConfig) -> Slabs {
        Slabs {
            cfg,
            classes: OnceLock::new(),
            per: (0..=CLASSES).map(|_| ClassState::default()).collect(),
            looked: Notify::new(),
            poke: Notify::new(),
            tight: AtomicBool::new(false),
            view: Mutex::new(Vec::new()),
            moved: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    /// Stops the task.
    pub fn close(&self) {
        self.stop.cancel();
    }

    /// Notes a write of an item of `bytes` (see [`riven_memcache::slab::item_size`]); a wait when its class is
    /// starved and has no free chunk for it.
    pub fn admit(&self, bytes: usize) -> Option<impl Future<Output = ()> + Send + '_> {
        let id = self.classes.get()?.class_of(bytes)?;
        let st = &self.per[id];
        let n = st.writes.fetch_add(1, Ordering::Relaxed) + 1;
        let every = st.every.load(Ordering::Relaxed).max(1);
        if n.is_multiple_of(every) || n == 1 {
            let mut s = st.samples.lock();
            if s.len() == SAMPLES {
                s.pop_front();
            }
            s.push_back((n, Instant::now()));
        }
        let credit = st.credit.fetch_sub(1, Ordering::Relaxed) - 1;
        if credit == -1 && self.tight.load(Ordering::Relaxed) {
            // The class's free chunks are used up: the balancer should look now, not at its tick.
            self.poke.notify_one();
        }
        (credit < 0 && st.starved.load(Ordering::Relaxed)).then(|| self.wait(id))
    }

    /// memcached found no memory for an item of `bytes`: waits for pages to reach its class
    /// (false if none came within the bound, or there is no balancer for it).
    pub async fn out_of_memory(&self, bytes: usize) -> bool {
        let Some(id) = self.classes.get().and_then(|c| c.class_of(bytes)) else {
            return false;
        };
        let st = &self.per[id];
        st.oom.store(true, Ordering::Relaxed);
        st.starved.store(true, Ordering::Relaxed);
        st.credit.store(0, Ordering::Relaxed);
        self.poke.notify_one();
        self.wait(id).await;
        st.credit.load(Ordering::Relaxed) > 0
    }

    async fn wait(&self, id: usize) {
        self.waited.fetch_add(1, Ordering::Relaxed);
        self.poke.notify_one();
        let st = &self.per[id];
        let ready = || !st.starved.load(Ordering::Relaxed) || st.credit.load(Ordering::Relaxed) > 0;
        let _ = tokio::time::timeout(self.cfg.max_wait, async {
            loop {
                let looked = self.looked.notified();
                tokio::pin!(looked);
                looked.as_mut().enable();
                if ready() {
                    return;
                }
                looked.await;
            }
        })
        .await;
    }

    /// The classes with pages, as of the last look.
    pub fn view(&self) -> Vec<ClassView> {
        self.view.lock().clone()
    }

    /// Pages moved so far.
    pub fn pages_moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// Writes that waited for pages.
    pub fn writes_waited(&self) -> u64 {
        self.waited.load(Ordering::Relaxed)
    }

    /// The age of class `id`'s oldest item by the node's writes: when it wrote the item `capacity`
    /// writes back, or its first one if the class holds them all. `None` if it wrote none.
    fn tail_age(&self, id: usize, capacity: u64, now: Instant) -> Option<Duration> {
        let st = &self.per[id];
        let writes = st.writes.load(Ordering::Relaxed);
        if writes == 0 {
            return None;
        }
        let target = writes.saturating_sub(capacity).max(1);
        let s = st.samples.lock();
        // The first sample at or after that write: about when it was made. Past the samples
        // kept, the oldest one (a lower bound).
        let i = s.partition_point(|&(n, _)| n < target);
        let at = s.get(i).or(s.back()).map(|&(_, at)| at)?;
        Some(now.saturating_duration_since(at))
    }
}

/// Keeps the admin connection and looks every tick; reconnects when memcached goes away.
async fn run(slabs: Arc<Slabs>) {
    let mut backoff = Duration::from_millis(20);
    let mut warned = false;
    loop {
        let admin = tokio::select! {
            a = Admin::connect(&slabs.cfg.endpoint, slabs.cfg.timeout) => a,
            _ = slabs.stop.cancelled() => return,
        };
        let why = match admin {
            Ok(mut admin) => {
                backoff = Duration::from_millis(20);
                tokio::select! {
                    e = balance(&slabs, &mut admin, &mut warned) => e,
                    _ = slabs.stop.cancelled() => return,
                }
            }
            Err(e) => e,
        };
        tracing::debug!(error = %why, "slab balancer lost memcached");
        // Nobody waits for a balancer that is not there.
        for st in slabs.per.iter() {
            st.starved.store(false, Ordering::Relaxed);
        }
        slabs.looked.notify_waiters();
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = slabs.stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

async fn balance(slabs: &Slabs, admin: &mut Admin, warned: &mut bool) -> std::io::Error {
    let (settings, can_move) = match admin.settings().await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let table = slabs.classes.get_or_init(|| Classes::new(settings));
    for id in 1..=table.count().min(CLASSES) {
        let every = (table.per_page(id) as u64 / 8).max(1);
        slabs.per[id].every.store(every, Ordering::Relaxed);
    }
    if !can_move && !*warned {
        *warned = true;
        tracing::warn!("memcached runs without slab_reassign: the node cannot keep its memory balanced");
    }
    let mut last: HashMap<usize, ClassStats> = HashMap::new();
    let mut prev_writes = [0u64; CLASSES + 1];
    let mut demand = [None; CLASSES + 1];
    let mut hurry = false;
    loop {
        if !hurry {
            // At most one look per millisecond, however often writers poke: pokes meanwhile
            // wait for the next look. While memcached still has pages to hand out, no hurry.
            let tick = if slabs.tight.load(Ordering::Relaxed) {
                TICK
            } else {
                LOOSE_TICK
            };
            tokio::time::sleep(MIN_GAP).await;
            tokio::select! {
                _ = tokio::time::sleep(tick - MIN_GAP) => {}
                _ = slabs.poke.notified() => {}
            }
        }
        let (now_stats, malloced) = match admin.classes().await {
            Ok(c) => c,
            Err(e) => return e,
        };
        // Until every page is handed out memcached gives a class that needs one a new page: no
        // class is starved, and writes find memory without waiting.
        let all_handed_out = malloced + settings.page_size as u64 > settings.max_bytes;
        slabs.tight.store(all_handed_out, Ordering::Relaxed);
        let plan = look(
            slabs,
            table,
            &now_stats,
            &last,
            &mut prev_writes,
            &mut demand,
            all_handed_out,
        );
        last = now_stats;
        hurry = false;
        if let (Some((from, to)), true) = (plan, can_move) {
            match admin.reassign(from, to).await {
                Ok(Reassign::Ok) => {
                    slabs.moved.fetch_add(1, Ordering::Relaxed);
                    hurry = true;
                }
                Ok(Reassign::Busy) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    hurry = true;
                }
                Ok(Reassign::Refused(why)) => {
                    tracing::debug!(from, to, reply = %why, "memcached refused a page move");
                    slabs.per[to].starved.store(false, Ordering::Relaxed);
                }
                Err(e) => return e,
            }
        }
        slabs.looked.notify_waiters();
    }
}

/// One look: credits and the view refreshed from memcached's figures, the starved class
/// chosen, and the page move to make for it, if any: `(from, to)`.
///
/// A class is starved when memcached evicts from it or finds it no memory while it has (nearly)
/// no free chunk, and stays so while the node keeps writing into it. Of the starved classes the
/// one with the youngest tail is served, from the class with the oldest tail that has a page to
/// spare, when that tail is older by [`AGE_RATIO`] and [`AGE_MARGIN`]: the page then holds
/// items older than those the starved class would evict, as under one LRU for all sizes.
fn look(
    slabs: &Slabs,
    table: &Classes,
    now_stats: &HashMap<usize, ClassStats>,
    last: &HashMap<usize, ClassStats>,
    prev_writes: &mut [u64; CLASSES + 1],
    demand: &mut [Option<Instant>; CLASSES + 1],
    all_handed_out: bool,
) -> Option<(usize, usize)> {
    let now = Instant::now();
    let ids = 1..=table.count().min(CLASSES);
    let mut view = Vec::with_capacity(now_stats.len());
    let mut ages = [Duration::ZERO; CLASSES + 1];
    let mut starved: Option<(usize, Duration)> = None;
    let mut full_of = [false; CLASSES + 1];
    for id in ids.clone() {
        let st = &slabs.per[id];
        let s = now_stats.get(&id).copied().unwrap_or_default();
        let before = last.get(&id).copied().unwrap_or_default();
        let capacity = s.total_pages * table.per_page(id) as u64;
        let writes = st.writes.load(Ordering::Relaxed);
        // memcached's own (whole seconds) where the node has not written.
        let age = slabs
            .tail_age(id, capacity, now)
            .unwrap_or(Duration::from_secs(s.age_secs));
        ages[id] = age;
        // Credit used up since the last look: the writes since then evicted, or are about to.
        let overdrawn = st.credit.swap(s.free_chunks as i64, Ordering::Relaxed) < 0;
        if s.total_pages > 0 || writes > 0 {
            view.push(ClassView {
                id,
                stats: s,
                tail_age: age,
                writes,
            });
        }
        let pressed = overdrawn
            || s.evicted > before.evicted
            || s.outofmemory > before.outofmemory
            || st.oom.swap(false, Ordering::Relaxed);
        let full = s.free_chunks < (table.per_page(id) as u64 / 8).max(1);
        full_of[id] = full;
        if writes > prev_writes[id] || pressed {
            demand[id] = Some(now);
        }
        prev_writes[id] = writes;
        let recent = demand[id].is_some_and(|at| now - at < STARVED_HOLD);
        let wanting = all_handed_out && ((pressed && full) || (st.starved.load(Ordering::Relaxed) && recent));
        if wanting && starved.is_none_or(|(_, a)| age < a) {
            starved = Some((id, age));
        }
    }
    *slabs.view.lock() = view;
    let chosen = starved.and_then(|(to, young)| {
        let from = ids
            .clone()
            .filter(|&id| id != to && now_stats.get(&id).is_some_and(|s| s.total_pages > 1))
            .max_by_key(|&id| ages[id])?;
        let older = ages[from].as_secs_f64() > young.as_secs_f64() * AGE_RATIO && ages[from] > young + AGE_MARGIN;
        older.then_some((from, to))
    });
    for id in ids {
        let serve = chosen.is_some_and(|(_, to)| to == id);
        slabs.per[id].starved.store(serve, Ordering::Relaxed);
    }
    // Pages move only once the free chunks are (nearly) used: until then writes have credit.
    chosen.filter(|&(_, to)| full_of[to])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slabs() -> (Slabs, &'static Classes) {
        let s = Slabs::new(SlabsConfig {
            endpoint: Endpoint::Tcp("127.0.0.1:1".into()),
            max_wait: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        });
        let table = Box::leak(Box::new(Classes::new(riven_memcache::slab::SlabSettings::default())));
        let _ = s.classes.set(table.clone());
        for id in 1..=table.count() {
            s.per[id]
                .every
                .store((table.per_page(id) as u64 / 8).max(1), Ordering::Relaxed);
        }
        (s, table)
    }

    fn class(pages: u64, per_page: u64, free: u64, evicted: u64) -> ClassStats {
        ClassStats {
            chunks_per_page: per_page,
            total_pages: pages,
            used_chunks: pages * per_page - free,
            free_chunks: free,
            evicted,
            ..ClassStats::default()
        }
    }

    #[test]
    fn a_starved_young_class_takes_pages_from_an_old_one() {
        let (s, table) = slabs();
        let (small, large) = (15, 24);
        let small_item = table.chunk_size(small);
        let large_item = table.chunk_size(large);
        // The small class was filled long ago (its writes sampled then), the large one now.
        for _ in 0..2000 {
            let _ = s.admit(small_item);
        }
        std::thread::sleep(Duration::from_millis(60));
        for _ in 0..200 {
            let _ = s.admit(large_item);
        }
        let before: HashMap<usize, ClassStats> = [(small, class(63, 451, 0, 0)), (large, class(1, 60, 0, 0))].into();
        let after: HashMap<usize, ClassStats> = [(small, class(63, 451, 0, 0)), (large, class(1, 60, 0, 140))].into();
        let mut writes = [0; CLASSES + 1];
        let mut demand = [None; CLASSES + 1];
        // While memcached still has pages to hand out, nobody starves.
        assert_eq!(look(&s, table, &after, &before, &mut writes, &mut demand, false), None);
        assert_eq!(
            look(&s, table, &after, &before, &mut writes, &mut demand, true),
            Some((small, large))
        );
        assert!(
            s.per[large].starved.load(Ordering::Relaxed),
            "its writes wait for the page"
        );
        // The large class's writes past its free chunks wait; others do not.
        assert!(s.admit(large_item).is_some());
        assert!(s.admit(small_item).is_none());
    }

    #[test]
    fn classes_of_like_age_keep_their_pages() {
        let (s, table) = slabs();
        let (small, large) = (15, 24);
        // Both written at the same time: their tails are equally old.
        for _ in 0..2000 {
            let _ = s.admit(table.chunk_size(small));
            let _ = s.admit(table.chunk_size(large));
        }
        let before: HashMap<usize, ClassStats> = [(small, class(2, 451, 0, 0)), (large, class(2, 60, 0, 0))].into();
        let after: HashMap<usize, ClassStats> = [(small, class(2, 451, 0, 10)), (large, class(2, 60, 0, 10))].into();
        let mut writes = [0; CLASSES + 1];
        let mut demand = [None; CLASSES + 1];
        assert_eq!(look(&s, table, &after, &before, &mut writes, &mut demand, true), None);
        assert!(!s.per[large].starved.load(Ordering::Relaxed));
        assert!(s.admit(table.chunk_size(large)).is_none());
    }
}
