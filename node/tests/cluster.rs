//! The smart client (`riven-client`) against a three-zone cluster of real `riven-node`
//! processes, zone `a` over real memcached: nodes killed under a read load, stalled, brought
//! back; zones down under each write policy; bad input.
//!
//! Each zone holds its own value for every key (written zone by zone), naming the zone, so a
//! read's value tells which zone answered it.

#[path = "cluster/harness.rs"]
mod harness;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{client_config, Cluster, ZONES};
use riven_client::{BreakerConfig, Client};
use riven_client::{ClientConfig, ClientError, Failure, NodeError, Rings, Stored, Topology, Ttl, Wait, WritePolicy};

fn key(i: usize) -> Vec<u8> {
    format!("cluster:key:{i}").into_bytes()
}

/// Zone `zone`'s value for `key`.
fn value(zone: &str, key: &[u8]) -> Vec<u8> {
    let mut v = format!("{zone}|").into_bytes();
    v.extend_from_slice(key);
    v
}

/// The zone a value read came from.
fn zone_of(v: &[u8]) -> &str {
    std::str::from_utf8(&v[..1]).expect("a zone-tagged value")
}

/// The node owning `key` in `zone`.
fn owner(topology: &Topology, zone: &str, key: &[u8]) -> String {
    Rings::new(topology)
        .get(zone)
        .and_then(|r| r.node_for(key))
        .expect("an owner")
        .to_string()
}

/// A client of one zone only, whose local writes land there.
fn zone_client(cluster: &Cluster, zone: &str) -> Client {
    let config = ClientConfig {
        zone_order: Some(vec![zone.to_string()]),
        ..client_config(Duration::from_secs(2))
    };
    Client::new(cluster.topology(zone), config).expect("a client")
}

/// Writes every zone's own value of each key into that zone.
async fn seed(cluster: &Cluster, keys: &[Vec<u8>]) {
    for zone in ZONES {
        let client = zone_client(cluster, zone);
        for batch in keys.chunks(100) {
            let sets = batch.iter().map(|k| {
                let v = value(zone, k);
                let client = &client;
                async move { client.set(k, &v, 7, Ttl::Never).await }
            });
            for result in futures_util::future::join_all(sets).await {
                assert_eq!(result.expect("seeding a healthy zone"), Stored::Stored);
            }
        }
    }
}

/// The zone that answers a read of `key`.
async fn answered_by(client: &Client, key: &[u8]) -> String {
    let (v, flags) = client.get(key).await.expect("a read").expect("a hit");
    assert_eq!(flags, 7);
    assert_eq!(&v[2..], key, "the value of another key");
    zone_of(&v).to_string()
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut micros: Vec<u32>) -> String {
    micros.sort_unstable();
    format!(
        "{} reads, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
        micros.len(),
        percentile(&micros, 0.5),
        percentile(&micros, 0.99),
        percentile(&micros, 0.999),
        micros.last().copied().unwrap_or(0)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_a_read_load_costs_no_read_errors() {
    let mut cluster = Cluster::start(2, &[]);
    let topology = cluster.topology("a");
    let keys: Vec<Vec<u8>> = (0..1000).map(key).collect();
    seed(&cluster, &keys).await;
    let victim = owner(&topology, "a", &keys[0]);
    let client = Arc::new(Client::new(topology.clone(), client_config(Duration::from_millis(250))).unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let rings = Rings::new(&topology);
    let victim_keys: Arc<Vec<bool>> = Arc::new(
        keys.iter()
            .map(|k| rings.get("a").and_then(|r| r.node_for(k)) == Some(&victim))
            .collect(),
    );
    let keys = Arc::new(keys);
    let readers: Vec<_> = (0..8)
        .map(|r| {
            let (client, stop, killed, keys) = (client.clone(), stop.clone(), killed.clone(), keys.clone());
            let victim_keys = victim_keys.clone();
            tokio::spawn(async move {
                let (mut before, mut after, mut errors, mut wrong, mut from_b) = (vec![], vec![], 0, 0, 0);
                let mut i = r * 125;
                while !stop.load(Ordering::Relaxed) {
                    i = (i + 1) % keys.len();
                    let was_killed = killed.load(Ordering::Relaxed);
                    let t = Instant::now();
                    let result = client.get(&keys[i]).await;
                    let micros = t.elapsed().as_micros() as u32;
                    match result {
                        Ok(Some((v, _))) => {
                            // Zone a answers its keys; zone b only those of the killed node,
                            // and only once it was killed.
                            match zone_of(&v) {
                                "a" => {}
                                "b" if victim_keys[i] && (was_killed || killed.load(Ordering::Relaxed)) => from_b += 1,
                                _ => wrong += 1,
                            }
                            if v[2..] != keys[i][..] {
                                wrong += 1;
                            }
                        }
                        Ok(None) | Err(_) => errors += 1,
                    }
                    if was_killed {
                        after.push((t, micros))
                    } else {
                        before.push(micros)
                    }
                }
                (before, after, errors, wrong, from_b)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Marked before the kill: a read may fail over before kill() has returned.
    let kill_time = Instant::now();
    killed.store(true, Ordering::Relaxed);
    cluster.node_at(0, &victim).kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut before, mut after, mut errors, mut wrong, mut from_b) = (vec![], vec![], 0, 0, 0);
    for reader in readers {
        let (b, a, e, w, f) = reader.await.unwrap();
        before.extend(b);
        after.extend(a);
        errors += e;
        wrong += w;
        from_b += f;
    }
    // The bump: reads that started in the first 250 ms after the kill, against the rest.
    let window = Duration::from_millis(250);
    let (bump, steady): (Vec<_>, Vec<_>) = after.iter().partition(|(t, _)| t.duration_since(kill_time) < window);
    let micros = |v: Vec<&(Instant, u32)>| v.into_iter().map(|&(_, m)| m).collect::<Vec<_>>();
    eprintln!("before the kill:          {}", summary(before));
    eprintln!("first 250 ms after it:    {}", summary(micros(bump)));
    eprintln!("the rest after it:        {}", summary(micros(steady)));
    eprintln!("{from_b} reads answered by zone b");
    assert_eq!(errors, 0, "reads that failed or missed");
    assert_eq!(wrong, 0, "reads answered by the wrong zone or with the wrong value");
    assert!(from_b > 0, "the killed node's keys were read from zone b");
    assert!(client.stats().failovers > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_fails_over_within_the_timeout_and_is_probed_back_once_it_thaws() {
    let mut cluster = Cluster::start(2, &[]);
    let topology = cluster.topology("a");
    let victim = owner(&topology, "a", &key(0));
    let keys: Vec<Vec<u8>> = (0..2000)
        .map(key)
        .filter(|k| owner(&topology, "a", k) == victim)
        .take(40)
        .collect();
    seed(&cluster, &keys).await;
    let timeout = Duration::from_millis(200);
    let mut config = client_config(timeout);
    // A long first backoff, so the reads after the breaker opens meet no probe.
    config.node.breaker = BreakerConfig {
        failure_threshold: 3,
        min_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(2),
    };
    let client = Client::new(topology, config).unwrap();
    for k in &keys[..5] {
        assert_eq!(answered_by(&client, k).await, "a");
    }

    cluster.node_at(0, &victim).pause();
    // Until the breaker opens, each read waits out the timeout, then zone b answers.
    let bound = timeout + Duration::from_millis(150);
    for k in &keys[..3] {
        let t = Instant::now();
        assert_eq!(answered_by(&client, k).await, "b");
        let took = t.elapsed();
        assert!(
            took >= timeout && took < bound,
            "a stalled read took {took:?}, bound {bound:?}"
        );
    }
    // Open: reads go to zone b at once.
    let t = Instant::now();
    for k in &keys[3..30] {
        assert_eq!(answered_by(&client, k).await, "b");
    }
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "27 reads past an open breaker took {took:?}"
    );

    cluster.node_at(0, &victim).resume();
    let back = Instant::now();
    let limit = Duration::from_secs(2) + timeout + Duration::from_secs(2);
    while answered_by(&client, &keys[30]).await != "a" {
        assert!(
            back.elapsed() < limit,
            "the thawed node was not probed back within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("thawed node back in rotation after {:?}", back.elapsed());
    for k in &keys[31..] {
        assert_eq!(answered_by(&client, k).await, "a");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_restarted_is_probed_back_into_rotation() {
    let mut cluster = Cluster::start(2, &[]);
    let topology = cluster.topology("a");
    let victim = owner(&topology, "a", &key(0));
    let keys: Vec<Vec<u8>> = (0..2000)
        .map(key)
        .filter(|k| owner(&topology, "a", k) == victim)
        .take(20)
        .collect();
    seed(&cluster, &keys).await;
    let client = Client::new(topology, client_config(Duration::from_millis(200))).unwrap();
    assert_eq!(answered_by(&client, &keys[0]).await, "a");

    cluster.node_at(0, &victim).kill();
    for k in &keys[..10] {
        assert_eq!(answered_by(&client, k).await, "b");
    }
    // Zone a's node runs over memcached, which kept its items while the node was down.
    cluster.node_at(0, &victim).restart();
    let back = Instant::now();
    // The breaker's longest backoff (500 ms here) plus a connect and a margin.
    let limit = Duration::from_secs(3);
    while answered_by(&client, &keys[10]).await != "a" {
        assert!(
            back.elapsed() < limit,
            "the restarted node was not probed back within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("restarted node back in rotation after {:?}", back.elapsed());
    for k in &keys[11..] {
        assert_eq!(answered_by(&client, k).await, "a");
    }
}

/// The zones named by a failed write, and each failure's node.
fn failed_zones(e: &ClientError) -> (Vec<String>, Vec<(String, String)>) {
    match e {
        ClientError::WriteFailed { succeeded, failed } => {
            let mut ok = succeeded.clone();
            ok.sort();
            let mut bad: Vec<_> = failed.iter().map(|a| (a.zone.clone(), a.node.clone())).collect();
            bad.sort();
            for a in failed {
                assert!(matches!(a.failure, Failure::Node(NodeError::Timeout { .. })), "{a}");
            }
            (ok, bad)
        }
        other => panic!("not a write failure: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_down_fails_exactly_the_write_policies_that_need_it() {
    let cluster = Cluster::start(1, &[]);
    let topology = cluster.topology("a");
    let client_with = |wait| {
        let config = ClientConfig {
            write_policy: WritePolicy::AllZones { wait },
            ..client_config(Duration::from_millis(200))
        };
        Client::new(topology.clone(), config).unwrap()
    };
    let (one, quorum, all) = (
        client_with(Wait::One),
        client_with(Wait::Quorum),
        client_with(Wait::All),
    );
    let addr = |z: usize| cluster.zones[z][0].addr();
    for client in [&one, &quorum, &all] {
        assert_eq!(client.set(b"w", b"1", 0, Ttl::Never).await.unwrap(), Stored::Stored);
    }

    cluster.zones[2][0].pause();
    assert_eq!(one.set(b"w", b"2", 0, Ttl::Never).await.unwrap(), Stored::Stored);
    assert_eq!(quorum.set(b"w", b"3", 0, Ttl::Never).await.unwrap(), Stored::Stored);
    let e = all.set(b"w", b"4", 0, Ttl::Never).await.unwrap_err();
    assert_eq!(
        failed_zones(&e),
        (vec!["a".into(), "b".into()], vec![("c".into(), addr(2))]),
        "{e}"
    );
    // The zones that answered hold the write, though the call failed.
    assert_eq!(
        zone_client(&cluster, "b").get(b"w").await.unwrap().unwrap().0,
        &b"4"[..]
    );

    cluster.zones[1][0].pause();
    assert_eq!(one.set(b"w", b"5", 0, Ttl::Never).await.unwrap(), Stored::Stored);
    let e = quorum.set(b"w", b"6", 0, Ttl::Never).await.unwrap_err();
    let down = vec![("b".into(), addr(1)), ("c".into(), addr(2))];
    assert_eq!(failed_zones(&e), (vec!["a".into()], down.clone()), "{e}");
    let e = all.delete(b"w").await.unwrap_err();
    assert_eq!(failed_zones(&e), (vec!["a".into()], down), "{e}");

    cluster.zones[1][0].resume();
    cluster.zones[2][0].resume();
    // The writes that timed out were still in the thawed nodes' socket buffers, and they now
    // apply them (a timed-out write may still land, as `NodeError::Timeout` says). Let them
    // land before the last write, so they cannot overtake it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Back: every policy is met again (the breakers probe the thawed nodes first).
    let deadline = Instant::now() + Duration::from_secs(5);
    while all.set(b"w", b"7", 0, Ttl::Never).await.is_err() {
        assert!(Instant::now() < deadline, "the thawed zones did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for zone in ZONES {
        assert_eq!(
            zone_client(&cluster, zone).get(b"w").await.unwrap().unwrap().0,
            &b"7"[..]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_and_the_client_goes_on() {
    let cluster = Cluster::start(1, &["-I", "1m"]);
    let client = Client::new(cluster.topology("a"), client_config(Duration::from_secs(2))).unwrap();
    let long = vec![b'k'; 251];
    for bad in [&b""[..], b"has space", b"ctl\x01", &long] {
        assert!(matches!(client.get(bad).await, Err(ClientError::BadKey)));
        assert!(matches!(
            client.set(bad, b"v", 0, Ttl::Never).await,
            Err(ClientError::BadKey)
        ));
        assert!(matches!(client.get_many(&[b"ok", bad]).await, Err(ClientError::BadKey)));
    }

    // Over the node's item limit: the node refuses it with memcached's status, named.
    let huge = vec![b'v'; 2 << 20];
    match client.set(b"big", &huge, 0, Ttl::Never).await {
        Err(ClientError::WriteFailed { failed, .. }) => {
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].zone, "a");
            let Failure::Status { status, message } = &failed[0].failure else {
                panic!("not a status failure: {}", failed[0]);
            };
            assert_eq!(*status, riven_client::codec::binary::Status::E2BIG, "{message}");
        }
        other => panic!("a 2 MiB value under -I 1m: {other:?}"),
    }
    // The same connection carries on, and a value at the limit's edge is whole.
    let edge = vec![b'e'; (1 << 20) - 512];
    assert_eq!(client.set(b"edge", &edge, 1, Ttl::Never).await.unwrap(), Stored::Stored);
    let (v, flags) = client.get(b"edge").await.unwrap().unwrap();
    assert_eq!((v.len(), flags), (edge.len(), 1));
    assert!(v.iter().all(|&b| b == b'e'));
    assert!(client.get(b"big").await.unwrap().is_none());
    let served = AtomicUsize::new(0);
    for i in 0..100 {
        let k = format!("after:{i}");
        client.set(k.as_bytes(), b"x", 0, Ttl::Never).await.unwrap();
        if client.get(k.as_bytes()).await.unwrap().is_some() {
            served.fetch_add(1, Ordering::Relaxed);
        }
    }
    assert_eq!(served.load(Ordering::Relaxed), 100);
}
