//! Node connections against a real memcached: every operation's semantics, pipelining, the
//! in-flight limit, timeouts, a dying node and its breaker.
//!
//! Each test starts its own memcached on a free loopback port. Stalls are made with SIGSTOP
//! rather than sleeps, and every wait is bounded and panics with what it was waiting for.

use std::net::TcpListener;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::{Duration, Instant};

use riven_client::codec::binary::{self, Status};
use riven_client::{
    Arith, BreakerConfig, BreakerState, Concat, Conn, ConnConfig, Node, NodeConfig, NodeError, Op, Resp, Store,
    Unavailable,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

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

/// An absolute unix time long past: memcached expires an item given it at once, which tests
/// TOUCH and GAT without waiting out a real expiry.
const LONG_AGO: u32 = 30 * 24 * 3600 + 1;

#[tokio::test]
async fn every_operation_round_trips_with_memcached_semantics() {
    let mc = Memcached::start();
    let c = conn(&mc, ConnConfig::default());

    // get / gets
    assert_eq!(status(&c, Op::Get { key: b"k" }).await, Status::KEY_ENOENT);
    let set = call(&c, Op::Set(Store::new(b"k", b"v1").flags(42))).await;
    assert_eq!(set.status, Status::SUCCESS);
    assert_ne!(set.cas, 0);
    let got = get(&c, b"k").await;
    assert_eq!((&got.value[..], got.flags, got.cas), (&b"v1"[..], 42, set.cas));

    // add / replace. Over the binary protocol memcached reports a refused ADD as KEY_EEXISTS
    // and a refused REPLACE as KEY_ENOENT (the text protocol says NOT_STORED to both).
    assert_eq!(status(&c, Op::Add(Store::new(b"k", b"x"))).await, Status::KEY_EEXISTS);
    assert_eq!(status(&c, Op::Add(Store::new(b"a", b"x"))).await, Status::SUCCESS);
    assert_eq!(
        status(&c, Op::Replace(Store::new(b"r", b"x"))).await,
        Status::KEY_ENOENT
    );
    assert_eq!(
        status(&c, Op::Replace(Store::new(b"k", b"v2").flags(7))).await,
        Status::SUCCESS
    );
    let got = get(&c, b"k").await;
    assert_eq!((&got.value[..], got.flags), (&b"v2"[..], 7));

    // append / prepend keep the flags
    assert_eq!(status(&c, Op::Append(Concat::new(b"k", b">"))).await, Status::SUCCESS);
    assert_eq!(status(&c, Op::Prepend(Concat::new(b"k", b"<"))).await, Status::SUCCESS);
    assert_eq!(
        status(&c, Op::Append(Concat::new(b"none", b">"))).await,
        Status::NOT_STORED
    );
    let got = get(&c, b"k").await;
    assert_eq!((&got.value[..], got.flags), (&b"<v2>"[..], 7));

    // cas
    let stale = got.cas;
    assert_eq!(status(&c, Op::Set(Store::new(b"k", b"v3"))).await, Status::SUCCESS);
    let fresh = get(&c, b"k").await.cas;
    assert_ne!(fresh, stale);
    assert_eq!(
        status(&c, Op::Set(Store::new(b"k", b"no").cas(stale))).await,
        Status::KEY_EEXISTS
    );
    assert_eq!(
        status(&c, Op::Set(Store::new(b"k", b"v4").cas(fresh))).await,
        Status::SUCCESS
    );
    assert_eq!(&get(&c, b"k").await.value[..], b"v4");
    assert_eq!(
        status(&c, Op::Set(Store::new(b"gone", b"x").cas(fresh))).await,
        Status::KEY_ENOENT
    );

    // delete
    let cas = get(&c, b"k").await.cas;
    assert_eq!(
        status(
            &c,
            Op::Delete {
                key: b"k",
                cas: cas + 1
            }
        )
        .await,
        Status::KEY_EEXISTS
    );
    assert_eq!(status(&c, Op::Delete { key: b"k", cas }).await, Status::SUCCESS);
    assert_eq!(status(&c, Op::Delete { key: b"k", cas: 0 }).await, Status::KEY_ENOENT);
    assert_eq!(status(&c, Op::Get { key: b"k" }).await, Status::KEY_ENOENT);

    // incr / decr
    let miss = call(&c, Op::Incr(Arith::new(b"n", 1))).await;
    assert_eq!((miss.status, miss.counter()), (Status::KEY_ENOENT, None));
    // A created counter starts at `initial`; the delta is not added.
    assert_eq!(
        call(&c, Op::Incr(Arith::new(b"n", 1).or_create(10, 0))).await.counter(),
        Some(10)
    );
    assert_eq!(call(&c, Op::Incr(Arith::new(b"n", 5))).await.counter(), Some(15));
    // memcached's decrement stops at zero.
    assert_eq!(call(&c, Op::Decr(Arith::new(b"n", 20))).await.counter(), Some(0));
    // A counter that got shorter is rewritten in place, padded with spaces, as memcached does.
    assert_eq!(&get(&c, b"n").await.value[..], b"0 ");
    assert_eq!(status(&c, Op::Set(Store::new(b"text", b"abc"))).await, Status::SUCCESS);
    assert_eq!(status(&c, Op::Incr(Arith::new(b"text", 1))).await, Status::DELTA_BADVAL);

    // touch / gat
    assert_eq!(
        status(
            &c,
            Op::Touch {
                key: b"none",
                exptime: 0
            }
        )
        .await,
        Status::KEY_ENOENT
    );
    assert_eq!(
        status(
            &c,
            Op::Gat {
                key: b"none",
                exptime: 0
            }
        )
        .await,
        Status::KEY_ENOENT
    );
    assert_eq!(
        status(&c, Op::Set(Store::new(b"t", b"tv").flags(3))).await,
        Status::SUCCESS
    );
    assert_eq!(
        status(
            &c,
            Op::Touch {
                key: b"t",
                exptime: 3600
            }
        )
        .await,
        Status::SUCCESS
    );
    assert_eq!(
        status(
            &c,
            Op::Touch {
                key: b"t",
                exptime: LONG_AGO
            }
        )
        .await,
        Status::SUCCESS
    );
    assert_eq!(
        status(&c, Op::Get { key: b"t" }).await,
        Status::KEY_ENOENT,
        "touched into the past"
    );
    assert_eq!(
        status(&c, Op::Set(Store::new(b"g", b"gv").flags(9))).await,
        Status::SUCCESS
    );
    let gat = call(
        &c,
        Op::Gat {
            key: b"g",
            exptime: LONG_AGO,
        },
    )
    .await;
    assert_eq!(
        (gat.status, &gat.value[..], gat.flags),
        (Status::SUCCESS, &b"gv"[..], 9)
    );
    assert_eq!(
        status(&c, Op::Get { key: b"g" }).await,
        Status::KEY_ENOENT,
        "gat into the past"
    );

    // A large value crosses many reads and comes back whole.
    let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(status(&c, Op::Set(Store::new(b"big", &big))).await, Status::SUCCESS);
    assert_eq!(&get(&c, b"big").await.value[..], &big[..]);
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn a_thousand_concurrent_requests_share_one_connection() {
    let mc = Memcached::start();
    let config = ConnConfig {
        request_timeout: PATIENCE,
        ..ConnConfig::default()
    };
    let c = conn(&mc, config);
    const N: usize = 1000;
    let key = |i: usize| format!("key:{i}");
    let value = |i: usize| format!("value of {i} ").repeat(i % 7 + 1);

    let mut sets = JoinSet::new();
    for i in 0..N {
        let c = c.clone();
        sets.spawn(async move {
            let r = c
                .call(&Op::Set(
                    Store::new(key(i).as_bytes(), value(i).as_bytes()).flags(i as u32),
                ))
                .await;
            r.expect("set").status
        });
    }
    while let Some(s) = sets.join_next().await {
        assert_eq!(s.expect("task"), Status::SUCCESS);
    }

    // With memcached frozen, all the gets are in flight on the one connection at once.
    mc.pause();
    let mut gets = JoinSet::new();
    for i in 0..N {
        let c = c.clone();
        gets.spawn(async move { (i, c.call(&Op::Get { key: key(i).as_bytes() }).await) });
    }
    wait_until("all gets are in flight", || c.in_flight() == N).await;
    mc.resume();
    let mut seen = 0;
    while let Some(joined) = gets.join_next().await {
        let (i, r) = joined.expect("task");
        let r = r.unwrap_or_else(|e| panic!("get {i}: {e}"));
        assert_eq!((&r.value[..], r.flags), (value(i).as_bytes(), i as u32), "get {i}");
        seen += 1;
    }
    assert_eq!(seen, N);
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn a_full_queue_fails_fast_and_drains() {
    let mc = Memcached::start();
    let config = ConnConfig {
        max_in_flight: 4,
        request_timeout: PATIENCE,
        ..ConnConfig::default()
    };
    let c = conn(&mc, config);
    assert_eq!(status(&c, Op::Set(Store::new(b"k", b"v"))).await, Status::SUCCESS);

    mc.pause();
    let mut pending = JoinSet::new();
    for _ in 0..4 {
        let c = c.clone();
        pending.spawn(async move { c.call(&Op::Get { key: b"k" }).await });
    }
    wait_until("four gets are in flight", || c.in_flight() == 4).await;
    let started = Instant::now();
    match c.call(&Op::Get { key: b"k" }).await {
        Err(NodeError::Overloaded { addr, limit }) => {
            assert_eq!((&*addr, limit), (mc.addr().as_str(), 4));
        }
        other => panic!("expected Overloaded, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "Overloaded took {:?}",
        started.elapsed()
    );

    mc.resume();
    while let Some(r) = pending.join_next().await {
        assert_eq!(&r.expect("task").expect("queued get").value[..], b"v");
    }
    assert_eq!(&get(&c, b"k").await.value[..], b"v");
}

#[tokio::test]
async fn a_timeout_fails_the_request_and_the_connection_recovers() {
    let mc = Memcached::start();
    let timeout = Duration::from_millis(300);
    let config = ConnConfig {
        request_timeout: timeout,
        ..ConnConfig::default()
    };
    let c = conn(&mc, config);
    assert_eq!(status(&c, Op::Set(Store::new(b"k", b"v"))).await, Status::SUCCESS);

    mc.pause();
    let started = Instant::now();
    let err = c
        .call(&Op::Get { key: b"k" })
        .await
        .expect_err("no reply from a frozen node");
    let took = started.elapsed();
    assert!(
        matches!(err, NodeError::Timeout { after, .. } if after == timeout),
        "{err:?}"
    );
    assert_eq!(err.addr(), mc.addr());
    assert!(took >= timeout && took < timeout * 3, "timed out after {took:?}");

    mc.resume();
    // The late reply to the timed-out get is dropped in order; this get gets its own.
    assert_eq!(status(&c, Op::Set(Store::new(b"k", b"v2"))).await, Status::SUCCESS);
    assert_eq!(&get(&c, b"k").await.value[..], b"v2");
    assert_eq!(c.in_flight(), 0);
}

#[tokio::test]
async fn a_dead_node_fails_pending_requests_opens_the_breaker_and_recovers() {
    let mut mc = Memcached::start();
    let addr = mc.addr();
    let config = NodeConfig {
        connections: 1,
        conn: ConnConfig {
            request_timeout: PATIENCE,
            reconnect_min_backoff: Duration::from_millis(5),
            reconnect_max_backoff: Duration::from_millis(20),
            ..ConnConfig::default()
        },
        breaker: BreakerConfig {
            failure_threshold: 3,
            min_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
        },
    };
    let node = Arc::new(Node::new(addr.clone(), config));
    let set = Op::Set(Store::new(b"k", b"v"));
    assert_eq!(node.call(&set).await.expect("set").status, Status::SUCCESS);

    // Three requests are pending when memcached dies.
    mc.pause();
    let mut pending = JoinSet::new();
    for _ in 0..3 {
        let node = node.clone();
        pending.spawn(async move { node.call(&Op::Get { key: b"k" }).await });
    }
    wait_until("three gets are in flight", || node.in_flight() == 3).await;
    mc.kill();
    while let Some(r) = pending.join_next().await {
        let err = r.expect("task").expect_err("the node died");
        assert!(matches!(err, NodeError::Io { .. }), "{err:?}");
        assert_eq!(err.addr(), addr);
    }

    // Three failures in a row open the breaker: calls now fail at once.
    assert_eq!(node.breaker_state(), BreakerState::Open);
    let started = Instant::now();
    let err = node.call(&set).await.expect_err("breaker open");
    assert!(
        matches!(
            err,
            NodeError::Unavailable {
                reason: Unavailable::BreakerOpen,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));

    // While the port is closed, probes fail and the breaker stays shut to calls.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match node.call(&set).await {
            Err(NodeError::Unavailable {
                reason: Unavailable::ConnectFailed(_),
                ..
            }) => break,
            Err(NodeError::Unavailable { .. }) => {}
            other => panic!("expected a failed probe, got {other:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no probe was let through within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(node.breaker_state(), BreakerState::Open);

    // A new memcached on the same port: the next probe succeeds and closes the breaker.
    let _mc = Memcached::start_on(mc.port);
    let deadline = Instant::now() + PATIENCE;
    let resp = loop {
        match node.call(&set).await {
            Ok(resp) => break resp,
            Err(NodeError::Unavailable { .. }) => {}
            Err(e) => panic!("unexpected error while recovering: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the node did not recover within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!(resp.status, Status::SUCCESS);
    assert_eq!(node.breaker_state(), BreakerState::Closed);
    assert_eq!(&node.call(&Op::Get { key: b"k" }).await.expect("get").value[..], b"v");
}

#[tokio::test]
async fn a_stalled_node_opens_the_breaker_and_a_full_queue_does_not_close_it() {
    let mc = Memcached::start();
    let config = NodeConfig {
        connections: 1,
        conn: ConnConfig {
            max_in_flight: 2,
            request_timeout: Duration::from_millis(100),
            ..ConnConfig::default()
        },
        breaker: BreakerConfig {
            failure_threshold: 2,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
        },
    };
    let node = Node::new(mc.addr(), config);
    let get = Op::Get { key: b"k" };
    assert_eq!(node.call(&get).await.expect("get").status, Status::KEY_ENOENT);

    // Two timeouts open the breaker, and their requests still fill the queue.
    mc.pause();
    for _ in 0..2 {
        let err = node.call(&get).await.expect_err("frozen");
        assert!(matches!(err, NodeError::Timeout { .. }), "{err:?}");
    }
    assert_eq!(node.breaker_state(), BreakerState::Open);
    assert_eq!(node.in_flight(), 2);

    // The probe finds the queue full: that says nothing about the node, so it stays open.
    let deadline = Instant::now() + PATIENCE;
    loop {
        match node.call(&get).await {
            Err(NodeError::Overloaded { .. }) => break,
            Err(NodeError::Unavailable {
                reason: Unavailable::BreakerOpen,
                ..
            }) => {}
            other => panic!("expected the probe to find the queue full, got {other:?}"),
        }
        assert!(Instant::now() < deadline, "no probe within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_ne!(node.breaker_state(), BreakerState::Closed);

    // Thawed, the late replies drain the queue and the next probe closes the breaker.
    mc.resume();
    wait_until("the late replies have drained", || node.in_flight() == 0).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        match node.call(&get).await {
            Ok(resp) => {
                assert_eq!(resp.status, Status::KEY_ENOENT);
                break;
            }
            Err(NodeError::Unavailable {
                reason: Unavailable::BreakerOpen,
                ..
            }) => {}
            Err(e) => panic!("unexpected error while recovering: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the breaker did not close within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(node.breaker_state(), BreakerState::Closed);
}

/// A fake node that answers every request SUCCESS with its opaque plus `opaque_skew`, and
/// counts the connections it accepts.
async fn fake_node(opaque_skew: u32) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counted = accepts.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut have = 0;
                loop {
                    match socket.read(&mut buf[have..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    while let Ok((req, used)) = binary::parse_request(&buf[..have]) {
                        let opaque = req.opaque.wrapping_add(opaque_skew);
                        let res = binary::Response::new(req.opcode, opaque, Status::SUCCESS);
                        let mut out = Vec::new();
                        binary::compose_response(&mut out, &res).expect("compose");
                        if socket.write_all(&out).await.is_err() {
                            return;
                        }
                        buf.copy_within(used..have, 0);
                        have -= used;
                    }
                }
            });
        }
    });
    (addr, accepts)
}

#[tokio::test]
async fn a_reply_out_of_step_is_a_protocol_error_and_the_next_call_reconnects() {
    let (addr, accepts) = fake_node(1).await;
    let c = Conn::new(addr.clone(), ConnConfig::default());
    for attempt in 1..=2 {
        let err = c.call(&Op::Get { key: b"k" }).await.expect_err("out of step");
        assert!(matches!(err, NodeError::Protocol { .. }), "{err:?}");
        assert_eq!(err.addr(), addr);
        assert!(err.to_string().contains("opaque"), "{err}");
        assert_eq!(accepts.load(SeqCst), attempt, "a new connection per attempt");
    }
}

#[tokio::test]
async fn a_node_spreads_calls_over_its_connections() {
    let (addr, accepts) = fake_node(0).await;
    let config = NodeConfig {
        connections: 3,
        ..NodeConfig::default()
    };
    let node = Node::new(addr, config);
    // Idle connections tie on load, so calls take them in turn and each gets connected.
    for _ in 0..6 {
        assert!(node.call(&Op::Get { key: b"k" }).await.expect("get").is_success());
    }
    assert_eq!(accepts.load(SeqCst), 3);
    assert_eq!(node.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_refused_connect_is_unavailable_then_backs_off() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let config = ConnConfig {
        reconnect_min_backoff: Duration::from_secs(60),
        ..ConnConfig::default()
    };
    let c = Conn::new(format!("127.0.0.1:{port}"), config);
    let err = c.call(&Op::Get { key: b"k" }).await.expect_err("nothing listens");
    assert!(
        matches!(
            err,
            NodeError::Unavailable {
                reason: Unavailable::ConnectFailed(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_node_failure());
    let err = c.call(&Op::Get { key: b"k" }).await.expect_err("backing off");
    assert!(
        matches!(
            err,
            NodeError::Unavailable {
                reason: Unavailable::ReconnectBackoff(_),
                ..
            }
        ),
        "{err:?}"
    );
}
