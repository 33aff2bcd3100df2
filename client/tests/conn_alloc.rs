//! A call on a warmed-up connection allocates nothing: no channel, no boxed future, no buffer.
//!
//! What is counted: every allocation (and reallocation) made on the test's thread while the
//! measured calls run. The runtime is tokio's current-thread one, so that is also the thread the
//! connection's reader and writer tasks run on: the count covers the whole round trip, caller
//! and connection alike. Calls go to `Conn::call` directly, so the client's own handling of a
//! value (it copies a small hit out of the read buffer, which is "the value itself") is not in
//! it; a hit's `Resp::value` here shares the read buffer and costs nothing.
//!
//! What is allowed: the read buffer is replaced when a reply's value still shares it as it runs
//! low (a caller not yet woken holds its hit, or a miss's message): a new 64 KiB block and its
//! shared header, two allocations per 48 KiB or so of replies, that is per 1,300 to 1,500 small
//! GET replies (a SET's reply has no value and costs nothing); and buffers and queues grow
//! towards their working size. Each measure warms up first and then asserts fewer than one
//! allocation per hundred calls; a per-call allocation anywhere would be at least one per call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;

use futures_util::future::join4;
use riven_client::codec::binary::Status;
use riven_client::{Conn, ConnConfig, Op, Store};

// Only the harness's memcached and its polling helper are used here.
#[allow(dead_code)]
mod common;

use common::{wait_until, Memcached, PATIENCE};

// Counts this thread's allocations, so other test threads cannot disturb the count.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // `try_with`: a thread being torn down may allocate after its locals are gone.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `alloc`'s contract, which is `System`'s too.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Calls measured per kind of call.
const N: usize = 10_000;
/// Calls made before measuring, so buffers, queues and the slot slab reach their working size.
const WARM_UP: usize = 2_000;
/// Fewer allocations than this over `N` calls: one per hundred calls.
const ALLOWED: usize = N / 100;

const HIT: &[u8] = b"small-hit";
const VALUE: &[u8] = b"a small value";
const MISS: &[u8] = b"absent";

/// The allocations `f` makes on this thread.
async fn allocations<F: Future<Output = ()>>(f: F) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f.await;
    ALLOCATIONS.with(Cell::get) - before
}

async fn expect(conn: &Conn, op: &Op<'_>, want: Status) {
    let resp = conn.call(op).await.unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert_eq!(resp.status, want, "{op:?}");
    if op == &(Op::Get { key: HIT }) {
        assert_eq!(&resp.value[..], VALUE);
    }
}

/// `op` 64 times at once on `conn`, joined without spawning or boxing anything: the futures are
/// nested `join4`s, all inline in this one future.
async fn sixty_four(conn: &Conn, op: &Op<'_>, want: Status) {
    let four = || {
        join4(
            expect(conn, op, want),
            expect(conn, op, want),
            expect(conn, op, want),
            expect(conn, op, want),
        )
    };
    let sixteen = || join4(four(), four(), four(), four());
    join4(sixteen(), sixteen(), sixteen(), sixteen()).await;
}

/// The three kinds of call measured: a GET miss, a GET of a small value, a small SET.
fn ops() -> [(&'static str, Op<'static>, Status); 3] {
    [
        ("get miss", Op::Get { key: MISS }, Status::KEY_ENOENT),
        ("get hit", Op::Get { key: HIT }, Status::SUCCESS),
        ("set", Op::Set(Store::new(b"set-key", VALUE)), Status::SUCCESS),
    ]
}

async fn warmed_up(mc: &Memcached) -> Conn {
    let config = ConnConfig {
        request_timeout: PATIENCE,
        ..ConnConfig::default()
    };
    let conn = Conn::new(mc.addr(), config);
    expect(&conn, &Op::Set(Store::new(HIT, VALUE)), Status::SUCCESS).await;
    for (_, op, want) in ops() {
        for _ in 0..WARM_UP / 64 {
            sixty_four(&conn, &op, want).await;
        }
        for _ in 0..WARM_UP {
            expect(&conn, &op, want).await;
        }
    }
    conn
}

#[tokio::test(flavor = "current_thread")]
async fn sequential_calls_do_not_allocate() {
    let mc = Memcached::start();
    let conn = warmed_up(&mc).await;
    for (name, op, want) in ops() {
        let n = allocations(async {
            for _ in 0..N {
                expect(&conn, &op, want).await;
            }
        })
        .await;
        println!("{N} sequential {name} calls: {n} allocations");
        assert!(n < ALLOWED, "{N} sequential {name} calls made {n} allocations");
    }
    assert_eq!((conn.in_flight(), conn.reply_slots().0), (0, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_calls_do_not_allocate() {
    let mc = Memcached::start();
    let conn = warmed_up(&mc).await;
    for (name, op, want) in ops() {
        let n = allocations(async {
            for _ in 0..N / 64 {
                sixty_four(&conn, &op, want).await;
            }
        })
        .await;
        let calls = N / 64 * 64;
        println!("{calls} {name} calls, 64 at a time: {n} allocations");
        assert!(n < ALLOWED, "{calls} concurrent {name} calls made {n} allocations");
    }
    // 64 at a time never needed more slots than that.
    assert_eq!(conn.reply_slots(), (0, 64));
}

/// Calls dropped while they wait (a caller giving up) give their slots back for the next calls
/// to reuse, so abandoning calls allocates nothing either, and the slab does not grow.
#[tokio::test(flavor = "current_thread")]
async fn dropped_calls_do_not_allocate_or_leak_slots() {
    let mc = Memcached::start();
    let conn = warmed_up(&mc).await;
    let op = Op::Get { key: HIT };
    let abandon = || async {
        // Polled once: every call is queued and waiting on its slot, then all are dropped.
        let mut calls = pin!(sixty_four(&conn, &op, Status::SUCCESS));
        poll_fn(|cx| {
            assert!(calls.as_mut().poll(cx).is_pending(), "replies came back synchronously");
            Poll::Ready(())
        })
        .await;
    };
    let drained = || wait_until("the abandoned calls' replies came", || conn.in_flight() == 0);
    abandon().await;
    drained().await;

    let rounds = N / 64;
    let n = allocations(async {
        for _ in 0..rounds {
            abandon().await;
            assert_eq!(conn.reply_slots().0, 0, "a dropped call kept its slot");
            // Their late replies are dropped, and new calls get their own.
            sixty_four(&conn, &op, Status::SUCCESS).await;
            drained().await;
        }
    })
    .await;
    println!("{rounds} rounds of 64 dropped and 64 finished calls: {n} allocations");
    assert!(n < ALLOWED, "{rounds} rounds of dropped calls made {n} allocations");
    assert_eq!(conn.reply_slots(), (0, 64), "the slots were reused, not added to");
}
