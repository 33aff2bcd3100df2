//! A connection's reply slots against a real memcached: a slot given up (a timeout, a dropped
//! call) is reused by later calls and never receives the late reply meant for its old occupant,
//! and a broken link fails every call waiting on a slot.
//!
//! As in `conn.rs`, stalls are made with SIGSTOP and every wait is bounded.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use riven_client::codec::binary::Status;
use riven_client::{Conn, ConnConfig, NodeError, Op, Resp, Store};
use tokio::task::JoinSet;

// Not every helper of the harness is used here.
#[allow(dead_code)]
mod common;

use common::{wait_until, Memcached, PATIENCE};

async fn call(conn: &Conn, op: Op<'_>) -> Resp {
    conn.call(&op).await.unwrap_or_else(|e| panic!("{op:?} failed: {e}"))
}

async fn status(conn: &Conn, op: Op<'_>) -> Status {
    call(conn, op).await.status
}

async fn get(conn: &Conn, key: &[u8]) -> Resp {
    call(conn, Op::Get { key }).await
}

fn conn(mc: &Memcached, config: ConnConfig) -> Arc<Conn> {
    Arc::new(Conn::new(mc.addr(), config))
}

#[tokio::test]
async fn a_timed_out_calls_late_reply_does_not_complete_the_next_call_on_its_slot() {
    let mc = Memcached::start();
    let config = ConnConfig {
        // Long enough for `b` to be answered once memcached is thawed, even on a busy machine.
        request_timeout: Duration::from_millis(500),
        ..ConnConfig::default()
    };
    let c = conn(&mc, config);
    assert_eq!(
        status(&c, Op::Set(Store::new(b"a", b"value of a"))).await,
        Status::SUCCESS
    );
    assert_eq!(
        status(&c, Op::Set(Store::new(b"b", b"value of b"))).await,
        Status::SUCCESS
    );
    assert_eq!(c.reply_slots(), (0, 1));

    // The get of `a` times out with its request unanswered; it gives its slot back.
    mc.pause();
    let err = c.call(&Op::Get { key: b"a" }).await.expect_err("frozen");
    assert!(matches!(err, NodeError::Timeout { .. }), "{err:?}");
    assert_eq!((c.in_flight(), c.reply_slots()), (1, (0, 1)));

    // The get of `b` takes the same slot while `a`'s request is still pending ahead of it.
    let b = {
        let c = c.clone();
        tokio::spawn(async move { c.call(&Op::Get { key: b"b" }).await })
    };
    wait_until("the get of b is queued behind a's", || c.in_flight() == 2).await;
    assert_eq!(c.reply_slots(), (1, 1), "b reuses a's slot");

    // `a`'s reply comes first and must be dropped, not handed to `b` through the slot.
    mc.resume();
    let got = tokio::time::timeout(PATIENCE, b)
        .await
        .expect("b answered")
        .expect("task");
    assert_eq!(&got.expect("get b").value[..], b"value of b");
    wait_until("both replies are in", || c.in_flight() == 0).await;
    assert_eq!(&get(&c, b"b").await.value[..], b"value of b");
    assert_eq!(c.reply_slots(), (0, 1));
}

#[tokio::test]
async fn dropped_waiting_calls_give_their_slots_to_new_calls() {
    let mc = Memcached::start();
    let config = ConnConfig {
        request_timeout: PATIENCE,
        ..ConnConfig::default()
    };
    let c = conn(&mc, config);
    const N: usize = 500;
    let key = |group: char, i: usize| format!("{group}:{i}");
    let value = |group: char, i: usize| format!("{group} value {i}");
    for group in ['a', 'b'] {
        for i in 0..N {
            let (k, v) = (key(group, i), value(group, i));
            assert_eq!(
                status(&c, Op::Set(Store::new(k.as_bytes(), v.as_bytes()))).await,
                Status::SUCCESS
            );
        }
    }

    // N gets of `a` wait on a frozen node; then every one of their futures is dropped.
    mc.pause();
    let mut abandoned = JoinSet::new();
    for i in 0..N {
        let c = c.clone();
        abandoned.spawn(async move {
            c.call(&Op::Get {
                key: key('a', i).as_bytes(),
            })
            .await
        });
    }
    wait_until("the gets of a are in flight", || c.in_flight() == N).await;
    abandoned.shutdown().await;
    assert_eq!(c.in_flight(), N, "the abandoned requests stay queued for their replies");
    assert_eq!(c.reply_slots().0, 0, "every dropped call gave its slot back");
    let allocated = c.reply_slots().1;
    assert!(allocated >= N, "{allocated} slots for {N} waiting calls");

    // N gets of `b` reuse those slots, queued behind the abandoned requests.
    let mut gets = JoinSet::new();
    for i in 0..N {
        let c = c.clone();
        gets.spawn(async move {
            (
                i,
                c.call(&Op::Get {
                    key: key('b', i).as_bytes(),
                })
                .await,
            )
        });
    }
    wait_until("the gets of b are in flight", || c.in_flight() == 2 * N).await;
    assert_eq!(c.reply_slots(), (N, allocated), "b's calls reuse a's slots");

    // Thawed: each of `a`'s late replies is dropped, and each get of `b` gets its own reply.
    mc.resume();
    while let Some(joined) = gets.join_next().await {
        let (i, r) = joined.expect("task");
        let r = r.unwrap_or_else(|e| panic!("get b:{i}: {e}"));
        assert_eq!(&r.value[..], value('b', i).as_bytes(), "get b:{i}");
    }
    assert_eq!((c.in_flight(), c.reply_slots()), (0, (0, allocated)));
    assert_eq!(
        &get(&c, key('a', 7).as_bytes()).await.value[..],
        value('a', 7).as_bytes()
    );
}

#[tokio::test]
async fn a_broken_link_fails_every_waiting_call_and_frees_its_slots() {
    let mut mc = Memcached::start();
    let addr = mc.addr();
    let config = ConnConfig {
        request_timeout: PATIENCE,
        ..ConnConfig::default()
    };
    let c = conn(&mc, config);
    assert_eq!(status(&c, Op::Set(Store::new(b"k", b"v"))).await, Status::SUCCESS);

    mc.pause();
    const N: usize = 300;
    let mut waiting = JoinSet::new();
    let mut handles = Vec::new();
    for _ in 0..N {
        let c = c.clone();
        handles.push(waiting.spawn(async move { c.call(&Op::Get { key: b"k" }).await }));
    }
    wait_until("every get is in flight", || c.in_flight() == N).await;
    // A third of the callers give up first: their requests stay pending without a slot.
    for handle in handles.iter().step_by(3) {
        handle.abort();
    }
    wait_until("the aborted calls gave their slots back", || {
        c.reply_slots().0 == N - N.div_ceil(3)
    })
    .await;

    mc.kill();
    let (mut failed, mut aborted) = (0, 0);
    while let Some(joined) = waiting.join_next().await {
        match joined {
            Ok(r) => {
                let err = r.expect_err("the node died");
                assert!(matches!(err, NodeError::Io { .. }), "{err:?}");
                assert_eq!(err.addr(), addr);
                failed += 1;
            }
            Err(e) if e.is_cancelled() => aborted += 1,
            Err(e) => panic!("task: {e}"),
        }
    }
    assert_eq!((failed, aborted), (N - N.div_ceil(3), N.div_ceil(3)));
    assert_eq!((c.in_flight(), c.reply_slots().0), (0, 0));
    // The next call finds the link broken and tries a new one, which nothing answers.
    let err = c.call(&Op::Get { key: b"k" }).await.expect_err("no node");
    assert!(matches!(err, NodeError::Unavailable { .. }), "{err:?}");
}

/// Callers on several threads give up at random points while replies land, so drops race with
/// deliveries into the same slots: every reply a caller does get is its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_drops_and_replies_never_cross_wires() {
    let mc = Memcached::start();
    let config = ConnConfig {
        request_timeout: PATIENCE,
        ..ConnConfig::default()
    };
    let c = conn(&mc, config);
    const TASKS: usize = 16;
    const CALLS: usize = 500;
    let key = |t: usize| format!("key:{t}");
    let value = |t: usize| format!("value of {t}");
    for t in 0..TASKS {
        let (k, v) = (key(t), value(t));
        assert_eq!(
            status(&c, Op::Set(Store::new(k.as_bytes(), v.as_bytes()))).await,
            Status::SUCCESS
        );
    }

    let mut tasks = JoinSet::new();
    for t in 0..TASKS {
        let c = c.clone();
        tasks.spawn(async move {
            let (k, v) = (key(t), value(t));
            let mut answered = 0;
            for i in 0..CALLS {
                let op = Op::Get { key: k.as_bytes() };
                let answer = if i % 3 == 0 {
                    // Queued, polled once and dropped at once: the reply always comes late.
                    c.call(&op).now_or_never()
                } else {
                    // Timers tick in milliseconds, so this gives up after a millisecond or so:
                    // mostly after the reply, now and then just before or as it lands.
                    let patience = Duration::from_micros(((i * 7919 + t * 104_729) % 256) as u64);
                    tokio::time::timeout(patience, c.call(&op)).await.ok()
                };
                if let Some(r) = answer {
                    let r = r.unwrap_or_else(|e| panic!("get {k}: {e}"));
                    assert_eq!(&r.value[..], v.as_bytes(), "get {k} got another call's reply");
                    answered += 1;
                }
            }
            answered
        });
    }
    let mut answered = 0;
    while let Some(joined) = tasks.join_next().await {
        answered += joined.expect("task");
    }
    println!("{answered} of {} calls answered in time", TASKS * CALLS);
    wait_until("the dropped calls' replies came", || c.in_flight() == 0).await;
    assert_eq!(c.reply_slots().0, 0, "every call gave its slot back");
    for t in 0..TASKS {
        assert_eq!(&get(&c, key(t).as_bytes()).await.value[..], value(t).as_bytes());
    }
}
