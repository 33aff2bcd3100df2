use riven_memcache::binary::{Opcode, Status};

use super::*;
use crate::backend::testutil::{free_port, MemcachedProcess};
use riven_memcache::binary::StoreExtras;

fn set_req<'a>(key: &'a [u8], value: &'a [u8], extras: &'a [u8; 8]) -> binary::Request<'a> {
    binary::Request {
        key,
        value,
        extras,
        ..binary::Request::new(Opcode::SET)
    }
}

async fn up(links: &Links) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !links.is_up() {
        assert!(Instant::now() < deadline, "links never connected");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_get_their_own_replies() {
    let mc = MemcachedProcess::start(&[]);
    let links = Arc::new(Links::start(mc.links_config()));
    up(&links).await;
    let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let links = links.clone();
        tasks.push(tokio::spawn(async move {
            // Many requests in flight at once per task, so they are batched and pipelined.
            let keys: Vec<String> = (0..200).map(|i| format!("k{t}-{i}")).collect();
            let sets = keys
                .iter()
                .map(|k| links.call(set_req(k.as_bytes(), k.as_bytes(), &extras)));
            for r in join_all(sets).await {
                assert_eq!(r.unwrap().status, Status::SUCCESS);
            }
            let gets = keys.iter().map(|k| links.call(get_req(k.as_bytes())));
            for (k, r) in keys.iter().zip(join_all(gets).await) {
                assert_eq!(r.unwrap().value(), k.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn get_req(key: &[u8]) -> binary::Request<'_> {
    binary::Request {
        key,
        ..binary::Request::new(Opcode::GET)
    }
}

/// Links, up, over a fresh memcached holding `items` (key, value).
async fn links_holding(items: &[(&[u8], &[u8])]) -> (MemcachedProcess, Links) {
    let mc = MemcachedProcess::start(&[]);
    let links = Links::start(mc.links_config());
    up(&links).await;
    let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
    for (key, value) in items {
        let r = links.call(set_req(key, value, &extras)).await.unwrap();
        assert_eq!(r.status, Status::SUCCESS);
    }
    (mc, links)
}

#[tokio::test]
async fn prefetched_gets_wait_in_order_for_their_own_keys() {
    let (_mc, links) = links_holding(&[(b"a", b"a"), (b"b", b"b")]).await;
    let group = Group::for_burst();
    let keys: [&[u8]; 3] = [b"a", b"missing", b"b"];
    assert!(links.prefetch(&group, &keys, get_req));
    let replies = group
        .scope(async {
            // Closed, nothing is handed out; open for one, only the oldest key matches.
            group.open_stash(0);
            assert!(links.stashed(b"a").is_none(), "the stash is closed");
            group.open_stash(3);
            assert!(links.stashed(b"b").is_none(), "b waits behind a");
            let mut replies = Vec::new();
            for k in keys {
                replies.push(links.stashed(k).expect("stashed").await.unwrap());
            }
            assert!(links.stashed(b"a").is_none(), "each is taken once");
            replies
        })
        .await;
    assert_eq!(replies[0].value(), b"a");
    assert_eq!(replies[1].status, Status::KEY_ENOENT);
    assert_eq!(replies[2].value(), b"b");
    assert_eq!(group.state.lock().live, 0, "every slot was taken");
    Group::give_back(group);
}

/// A reply already in is handed over where it lies, and taken only when its user says so.
#[tokio::test]
async fn a_ready_reply_is_taken_only_when_used() {
    let (_mc, links) = links_holding(&[(b"a", b"va")]).await;
    let group = Group::for_burst();
    let keys: [&[u8]; 2] = [b"a", b"b"];
    assert!(links.prefetch(&group, &keys, get_req));
    group
        .scope(async {
            // Both replies in before they are asked for.
            tokio::time::sleep(Duration::from_millis(100)).await;
            group.open_stash(2);
            let value = |r: &Result<Reply, LinkError>| r.as_ref().ok().map(|r| r.value().to_vec());
            assert_eq!(links.use_ready_stashed(b"b", value), None, "b waits behind a");
            assert_eq!(links.use_ready_stashed(b"a", |_| None::<()>), None, "declined");
            assert_eq!(
                links.use_ready_stashed(b"a", value),
                Some(b"va".to_vec()),
                "left in place"
            );
            assert_eq!(links.use_ready_stashed(b"a", value), None, "taken once");
            let miss = |r: &Result<Reply, LinkError>| r.as_ref().ok().map(|r| r.status);
            assert_eq!(links.use_ready_stashed(b"b", miss), Some(Status::KEY_ENOENT));
        })
        .await;
    assert_eq!(group.state.lock().live, 0, "every slot was taken");
    Group::give_back(group);
}

#[tokio::test]
async fn prefetch_over_down_links_sends_nothing_and_gives_its_slots_up() {
    let mut cfg = LinksConfig::new(Endpoint::Tcp(format!("127.0.0.1:{}", free_port())));
    cfg.connections = 1;
    let links = Links::start(cfg);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let group = Group::for_burst();
    assert!(!links.prefetch(&group, &[b"a".as_slice(), b"b"], get_req));
    assert_eq!(group.state.lock().live, 0, "no slot left open");
    group.open_stash(2);
    assert!(
        group.scope(async { links.stashed(b"a").is_none() }).await,
        "nothing stashed"
    );
    Group::give_back(group);
}

/// Polls every future together (the links gets them all before its writer runs).
async fn join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<Option<F>> = futs.map(Some).collect();
    let n = futs.len();
    let mut slots: Vec<Option<F::Output>> = (0..n).map(|_| None).collect();
    crate::backend::raw::run_windowed(
        n,
        n,
        |i| futs[i].take().expect("each future once"),
        |i, r| {
            slots[i] = Some(r);
            std::ops::ControlFlow::Continue(())
        },
    )
    .await;
    slots.into_iter().map(|s| s.expect("every future ran")).collect()
}

#[tokio::test]
async fn value_in_pieces_arrives_whole() {
    let mc = MemcachedProcess::start(&[]);
    let links = Links::start(mc.links_config());
    up(&links).await;
    let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
    let r = links
        .call_parts(set_req(b"k", b"ab", &extras), &[b"cd", b"", b"efg"])
        .await
        .unwrap();
    assert_eq!(r.status, Status::SUCCESS);
    let get = binary::Request {
        key: b"k",
        ..binary::Request::new(Opcode::GET)
    };
    assert_eq!(links.call(get).await.unwrap().value(), b"abcdefg");
}

#[tokio::test]
async fn memcached_killed_fails_fast_then_recovers_by_itself() {
    let mut mc = MemcachedProcess::start(&[]);
    let mut cfg = mc.links_config();
    cfg.backoff_max = Duration::from_millis(200);
    let links = Links::start(cfg);
    up(&links).await;
    let noop = || binary::Request::new(Opcode::NOOP);
    assert_eq!(links.call(noop()).await.unwrap().status, Status::SUCCESS);

    mc.kill();
    // Every call fails, and fast: well under the 5 s request timeout.
    for _ in 0..20 {
        let started = Instant::now();
        let r = links.call(noop()).await;
        assert!(matches!(r, Err(LinkError::Down | LinkError::Lost)), "{r:?}");
        assert!(started.elapsed() < Duration::from_millis(500));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!links.is_up());

    mc.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(r) = links.call(noop()).await {
            assert_eq!(r.status, Status::SUCCESS);
            break;
        }
        assert!(Instant::now() < deadline, "links did not reconnect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn requests_in_flight_when_memcached_dies_fail_with_lost() {
    // A server that reads requests and closes without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let mut cfg = LinksConfig::new(Endpoint::Tcp(addr.to_string()));
    cfg.connections = 1;
    let links = Links::start(cfg);
    up(&links).await;
    let r = links.call(binary::Request::new(Opcode::NOOP)).await;
    assert_eq!(r.unwrap_err(), LinkError::Lost);
}

/// A one-connection links config for a server that accepts and then never reads nor answers.
async fn silent_memcached() -> LinksConfig {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut cfg = LinksConfig::new(Endpoint::Tcp(addr.to_string()));
    cfg.connections = 1;
    cfg
}

#[tokio::test]
async fn unanswered_request_times_out() {
    // memcached hung.
    let mut cfg = silent_memcached().await;
    cfg.timeout = Duration::from_millis(100);
    let links = Links::start(cfg);
    up(&links).await;
    let started = Instant::now();
    let r = links.call(binary::Request::new(Opcode::NOOP)).await;
    assert_eq!(r.unwrap_err(), LinkError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_memcached_that_does_not_read_fails_calls_instead_of_queueing_forever() {
    // Alive, but not keeping up.
    let mut cfg = silent_memcached().await;
    cfg.timeout = Duration::from_secs(30);
    cfg.max_buffered = 256 << 10;
    let links = Links::start(cfg);
    up(&links).await;
    let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
    let value = vec![b'v'; 16 << 10];
    let mut waits = Vec::new();
    let mut refused = None;
    // Socket buffers take some megabytes; past them the link's buffer fills to its bound.
    for i in 0..100_000 {
        let key = format!("k{i}");
        match links.send(set_req(key.as_bytes(), &value, &extras), &[]) {
            Ok(w) => waits.push(w),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(refused, Some(LinkError::Overloaded));
    let buffered = links.conns[0].state.lock().wbuf.len();
    assert!(buffered <= (256 << 10) + (17 << 10), "{buffered} bytes buffered");
}

#[tokio::test]
async fn a_light_load_keeps_to_one_link_and_a_heavy_one_spreads() {
    let mut cfg = silent_memcached().await;
    cfg.connections = 2;
    cfg.timeout = Duration::from_secs(30);
    let links = Links::start(cfg);
    for _ in 0..500 {
        if links.conns.iter().all(|l| l.state.lock().up) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let in_flight = |k: usize| links.conns[k].state.lock().pending.len();
    let mut waits = Vec::new();
    let mut send = |n: usize| {
        for _ in 0..n {
            waits.push(links.send(binary::Request::new(Opcode::NOOP), &[]).unwrap());
        }
    };
    // Up to SPILL_AT in flight, everything goes over the first link.
    send(SPILL_AT);
    assert_eq!((in_flight(0), in_flight(1)), (SPILL_AT, 0));
    // Then the second fills, and past that both take the load evenly.
    send(SPILL_AT);
    assert_eq!((in_flight(0), in_flight(1)), (SPILL_AT, SPILL_AT));
    send(2 * SPILL_AT);
    assert_eq!((in_flight(0), in_flight(1)), (2 * SPILL_AT, 2 * SPILL_AT));
}

#[tokio::test]
async fn nothing_listening_is_down() {
    let mut cfg = LinksConfig::new(Endpoint::Tcp(format!("127.0.0.1:{}", free_port())));
    cfg.connections = 1;
    let links = Links::start(cfg);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        links.call(binary::Request::new(Opcode::NOOP)).await.unwrap_err(),
        LinkError::Down
    );
}

#[test]
fn a_finished_group_is_reused_but_not_one_a_reply_is_still_due_to() {
    let g = Group::for_burst();
    let ptr = Arc::as_ptr(&g);
    g.open(1);
    Group::give_back(g);
    let again = Group::for_burst();
    assert_eq!(Arc::as_ptr(&again), ptr, "given back, taken again");
    assert!(again.state.lock().slots.is_empty(), "its slots start empty");
    let held = again.clone();
    Group::give_back(again);
    let other = Group::for_burst();
    assert_ne!(Arc::as_ptr(&other), Arc::as_ptr(&held), "still held, so not handed out");
    drop(held);
}

#[test]
fn endpoints() {
    assert_eq!(
        Endpoint::parse("unix:/tmp/mc.sock"),
        Endpoint::Unix("/tmp/mc.sock".into())
    );
    assert_eq!(
        Endpoint::parse("127.0.0.1:11211"),
        Endpoint::Tcp("127.0.0.1:11211".into())
    );
}

#[test]
fn local_endpoints() {
    for local in [
        "unix:/tmp/mc.sock",
        "127.0.0.1:11211",
        "127.1.2.3:1",
        "localhost:11211",
        "[::1]:11211",
    ] {
        assert!(Endpoint::parse(local).is_local(), "{local}");
    }
    for remote in ["10.0.0.5:11211", "cache-1.example:11211", "[2001:db8::1]:11211"] {
        assert!(!Endpoint::parse(remote).is_local(), "{remote}");
    }
}
