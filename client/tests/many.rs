//! Multi-key reads and hedged reads against real memcached: zone "a" (the local zone) with
//! three nodes and zone "b" with one. Nodes are stalled with SIGSTOP.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use riven_client::{Client, ClientConfig, ClientError, HedgeConfig, Rings, Stored, Topology, Ttl};

// Not every helper of the harness is used here.
#[allow(dead_code)]
mod common;

use common::Memcached;

/// Zone a's three memcached processes and zone b's one.
struct Cluster {
    a: [Memcached; 3],
    b: Memcached,
}

impl Cluster {
    fn start() -> Cluster {
        Cluster {
            a: [Memcached::start(), Memcached::start(), Memcached::start()],
            b: Memcached::start(),
        }
    }

    fn topology(&self, local: &str) -> Topology {
        Topology::builder("test", local)
            .zone("a", self.a.iter().map(Memcached::addr))
            .zone("b", [self.b.addr()])
            .build()
            .expect("valid topology")
    }

    fn client(&self, local: &str, config: ClientConfig) -> Client {
        Client::new(self.topology(local), config).expect("client builds")
    }

    /// The zone-a memcached that owns `key`.
    fn owner_in_a(&self, key: &[u8]) -> &Memcached {
        let rings = Rings::new(&self.topology("a"));
        let addr = rings.get("a").and_then(|r| r.node_for(key)).expect("an owner");
        self.a.iter().find(|m| m.addr() == addr).expect("a zone-a node")
    }
}

/// A request timeout of `timeout`; a breaker that does not open during a test.
fn config(timeout: Duration) -> ClientConfig {
    common::client_config(timeout)
}

fn fallback() -> ClientConfig {
    ClientConfig {
        fallback_on_miss: true,
        ..config(Duration::from_millis(200))
    }
}

fn keys(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{prefix}-{i}").into_bytes()).collect()
}

fn refs(keys: &[Vec<u8>]) -> Vec<&[u8]> {
    keys.iter().map(Vec::as_slice).collect()
}

async fn set(client: &Client, key: &[u8], value: &[u8]) {
    let stored = client.set(key, value, 7, Ttl::Never).await;
    assert_eq!(stored.unwrap_or_else(|e| panic!("set failed: {e}")), Stored::Stored);
}

/// The map's values as strings, for readable assertions.
fn values(map: &HashMap<Vec<u8>, (bytes::Bytes, u32)>) -> HashMap<String, String> {
    map.iter()
        .map(|(k, (v, flags))| {
            assert_eq!(*flags, 7);
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn get_many_reads_every_node_and_falls_back_on_a_miss_only_when_asked() {
    let cluster = Cluster::start();
    let a = cluster.client("a", config(Duration::from_millis(200)));
    let b = cluster.client("b", config(Duration::from_millis(200)));
    let in_a = keys("in-a", 30);
    let only_b = keys("only-b", 5);
    let owners: BTreeSet<u16> = in_a.iter().map(|k| cluster.owner_in_a(k).port).collect();
    assert_eq!(owners.len(), 3, "the keys spread over zone a's three nodes");
    for k in &in_a {
        set(&a, k, k).await;
    }
    for k in &only_b {
        set(&b, k, k).await;
    }
    let mut asked = refs(&in_a);
    asked.extend(refs(&only_b));
    asked.push(b"nowhere");
    asked.push(b"in-a-0"); // twice: read once

    let got = values(&a.get_many(&asked).await.expect("get_many"));
    let expect: HashMap<String, String> = in_a
        .iter()
        .map(|k| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(k).into_owned(),
            )
        })
        .collect();
    assert_eq!(got, expect, "without fallback a miss in zone a is the answer");
    assert_eq!(a.stats().reads, 36);
    assert_eq!(a.stats().failovers, 0);

    let f = cluster.client("a", fallback());
    let got = values(&f.get_many(&asked).await.expect("get_many"));
    assert_eq!(got.len(), 35, "every key but the one that is nowhere");
    for k in &only_b {
        let k = String::from_utf8_lossy(k);
        assert_eq!(got.get(&*k).map(String::as_str), Some(&*k), "found in zone b");
    }
    assert_eq!(f.stats().failovers, 6, "only zone a's misses went on to zone b");

    assert!(a.get_many(&[]).await.expect("no keys").is_empty());
}

#[tokio::test]
async fn get_many_checks_every_key_before_any_io() {
    // A port nothing listens on: any I/O would fail with a connect error, not BadKey.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{closed}");
    let topology = Topology::builder("test", "a")
        .zone("a", [addr.clone()])
        .zone("b", [addr])
        .build()
        .expect("topology");
    let client = Client::new(topology, config(Duration::from_millis(200))).expect("client");
    let e = client.get_many(&[b"good", b"bad key"]).await.expect_err("a bad key");
    assert!(matches!(e, ClientError::BadKey), "{e}");
    assert_eq!(client.stats().reads, 0, "nothing was read");
    let e = client.get_many(&[b"good"]).await.expect_err("nothing listens");
    let ClientError::Unavailable { tried } = &e else {
        panic!("{e}")
    };
    let zones: Vec<&str> = tried.iter().map(|t| t.zone.as_str()).collect();
    assert_eq!(zones, ["a", "b"], "{e}");
}

#[tokio::test]
async fn get_many_sends_only_a_stalled_nodes_keys_to_the_next_zone() {
    let cluster = Cluster::start();
    let a = cluster.client("a", fallback());
    let b = cluster.client("b", fallback());
    let all = keys("k", 30);
    // Different values per zone show which zone answered each key.
    for k in &all {
        let k = std::str::from_utf8(k).expect("utf-8");
        set(&a, k.as_bytes(), format!("a:{k}").as_bytes()).await;
        set(&b, k.as_bytes(), format!("b:{k}").as_bytes()).await;
    }
    let stalled = &cluster.a[1];
    let stalled_keys: BTreeSet<String> = all
        .iter()
        .filter(|k| cluster.owner_in_a(k).port == stalled.port)
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(!stalled_keys.is_empty() && stalled_keys.len() < all.len());

    stalled.pause();
    let got = values(&a.get_many(&refs(&all)).await.expect("zone b covers the stalled node"));
    assert_eq!(got.len(), all.len());
    for (k, v) in &got {
        let zone = if stalled_keys.contains(k) { "b" } else { "a" };
        assert_eq!(v, &format!("{zone}:{k}"));
    }
    let stats = a.stats();
    assert_eq!(stats.reads, 30);
    assert_eq!(
        stats.failovers,
        stalled_keys.len() as u64,
        "only its keys were asked in zone b"
    );

    // Zone b down too: the error names the nodes that failed the unanswered keys only.
    cluster.b.pause();
    let e = a.get_many(&refs(&all)).await.expect_err("no zone has the stalled keys");
    let ClientError::Unavailable { tried } = &e else {
        panic!("{e}")
    };
    let named: Vec<(&str, &str)> = tried.iter().map(|t| (t.zone.as_str(), t.node.as_str())).collect();
    assert_eq!(named, [("a", &*stalled.addr()), ("b", &*cluster.b.addr())], "{e}");
    cluster.b.resume();
    stalled.resume();
}

fn hedged(max_share: f64) -> ClientConfig {
    ClientConfig {
        hedge: Some(HedgeConfig {
            delay_ms: 20,
            percentile: None,
            max_share,
            ..HedgeConfig::default()
        }),
        ..config(Duration::from_secs(1))
    }
}

#[tokio::test]
async fn hedged_reads_answer_from_the_next_zone_within_the_budget() {
    let cluster = Cluster::start();
    let writer_a = cluster.client("a", config(Duration::from_secs(1)));
    let writer_b = cluster.client("b", config(Duration::from_secs(1)));
    set(&writer_a, b"k", b"from-a").await;
    set(&writer_b, b"k", b"from-b").await;

    // A healthy zone answers well within a long delay: no hedge.
    let mut patient = hedged(0.05);
    patient.hedge.as_mut().expect("hedge").delay_ms = 2000;
    let patient = cluster.client("a", patient);
    let (v, _) = patient.get(b"k").await.expect("get").expect("hit");
    assert_eq!(&v[..], b"from-a");
    assert_eq!(patient.stats().hedges, 0);

    let owner = cluster.owner_in_a(b"k");
    owner.pause();
    let hedging = cluster.client("a", hedged(0.05));
    let started = Instant::now();
    let item = hedging.gets(b"k").await.expect("gets").expect("hit");
    let took = started.elapsed();
    assert_eq!(&item.value[..], b"from-b");
    assert!(took < Duration::from_millis(500), "hedged read took {took:?}");
    let stats = hedging.stats();
    assert_eq!((stats.reads, stats.hedges, stats.failovers), (1, 1, 0));

    // Without a hedge, or with no budget for one, the read waits out the timeout first.
    for (what, config) in [
        ("hedge off", config(Duration::from_secs(1))),
        ("max_share 0", hedged(0.0)),
    ] {
        let client = cluster.client("a", config);
        let started = Instant::now();
        let (v, _) = client.get(b"k").await.expect("get").expect("hit");
        let took = started.elapsed();
        assert_eq!(&v[..], b"from-b", "{what}");
        assert!(took >= Duration::from_millis(900), "{what}: took {took:?}");
        let stats = client.stats();
        assert_eq!((stats.reads, stats.hedges, stats.failovers), (1, 0, 1), "{what}");
    }
    owner.resume();
}

#[tokio::test]
async fn hedges_spend_their_burst_and_a_failed_race_names_both_zones_in_order() {
    let mut cluster = Cluster::start();
    let writer_b = cluster.client("b", config(Duration::from_secs(1)));
    set(&writer_b, b"k", b"from-b").await;
    let port = cluster.owner_in_a(b"k").port;
    let owner = cluster.a.iter().position(|m| m.port == port).expect("owner");
    cluster.a[owner].pause();

    // A share that rounds down to nothing for a few reads, and a burst of one hedge.
    let mut one_hedge = hedged(0.01);
    one_hedge.hedge.as_mut().expect("hedge").burst = 1;
    let client = cluster.client("a", one_hedge);
    let started = Instant::now();
    assert!(client.get(b"k").await.expect("get").is_some());
    assert!(started.elapsed() < Duration::from_millis(500), "the burst's hedge");
    let started = Instant::now();
    assert!(client.get(b"k").await.expect("get").is_some());
    assert!(started.elapsed() >= Duration::from_millis(900), "the budget is spent");
    let stats = client.stats();
    assert_eq!((stats.reads, stats.hedges, stats.failovers), (2, 1, 1));

    // Without fallback on a miss, the hedge zone's miss is an answer and wins the race.
    let client = cluster.client("a", hedged(0.05));
    let missing = keys("missing", 100)
        .into_iter()
        .find(|k| cluster.owner_in_a(k).port == port)
        .expect("a key the stalled node owns");
    let started = Instant::now();
    assert_eq!(client.get(&missing).await.expect("get"), None);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(client.stats().hedges, 1);

    // The hedge zone refuses at once, zone a times out later: the error lists a, then b.
    let (a_addr, b_addr) = (cluster.a[owner].addr(), cluster.b.addr());
    cluster.b.kill();
    let e = client.get(b"k").await.expect_err("no zone answers");
    let ClientError::Unavailable { tried } = &e else {
        panic!("{e}")
    };
    let named: Vec<(&str, &str)> = tried.iter().map(|t| (t.zone.as_str(), t.node.as_str())).collect();
    assert_eq!(named, [("a", &*a_addr), ("b", &*b_addr)], "{e}");
    cluster.a[owner].resume();
}

#[tokio::test]
async fn an_adaptive_hedge_delay_learns_the_first_zones_latency() {
    let cluster = Cluster::start();
    let writer_a = cluster.client("a", config(Duration::from_secs(5)));
    let writer_b = cluster.client("b", config(Duration::from_secs(5)));
    set(&writer_a, b"k", b"from-a").await;
    set(&writer_b, b"k", b"from-b").await;

    // A fallback delay of 3 s, used only until 256 reads have been timed; then the 90th
    // percentile of a healthy local memcached, well under a millisecond on loopback.
    let adaptive = ClientConfig {
        hedge: Some(HedgeConfig {
            delay_ms: 3000,
            percentile: Some(0.9),
            max_share: 1.0,
            burst: 10,
        }),
        ..config(Duration::from_secs(5))
    };
    let client = cluster.client("a", adaptive);
    for _ in 0..600 {
        // About one healthy read in ten is slower than the 90th percentile and hedged, and
        // zone b may win that race: either answer is right here.
        let (v, _) = client.get(b"k").await.expect("get").expect("hit");
        assert!(&v[..] == b"from-a" || &v[..] == b"from-b", "{v:?}");
    }
    let hedges_before = client.stats().hedges;

    let owner = cluster.owner_in_a(b"k");
    owner.pause();
    let started = Instant::now();
    let (v, _) = client.get(b"k").await.expect("get").expect("hit");
    let took = started.elapsed();
    owner.resume();
    assert_eq!(&v[..], b"from-b");
    // Far below both the 3 s fallback delay and the 5 s timeout: the learned delay was used.
    assert!(took < Duration::from_millis(300), "hedged read took {took:?}");
    assert_eq!(client.stats().hedges, hedges_before + 1);
}
