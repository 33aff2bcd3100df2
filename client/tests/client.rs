//! The zone-aware client against real memcached processes: three zones "a", "b" and "c" with
//! one memcached each, the local zone "a". Zones are taken down with SIGSTOP (a node that stops
//! answering) or by killing memcached (a node that refuses connections).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use riven_client::{Client, ClientConfig, ClientError, ConfigError, Failure, Stored, Topology, Ttl, Wait, WritePolicy};

mod common;

use common::{wait_until, Memcached};

/// Three memcached processes, one per zone.
struct Cluster {
    zones: [Memcached; 3],
}

impl Cluster {
    fn start() -> Cluster {
        Cluster {
            zones: [Memcached::start(), Memcached::start(), Memcached::start()],
        }
    }

    fn topology(&self, local: &str) -> Topology {
        let [a, b, c] = &self.zones;
        topology(local, [a.addr(), b.addr(), c.addr()])
    }

    fn client(&self, local: &str, config: ClientConfig) -> Client {
        Client::new(self.topology(local), config).expect("client builds")
    }

    fn addr(&self, zone: usize) -> String {
        self.zones[zone].addr()
    }
}

fn topology(local: &str, [a, b, c]: [String; 3]) -> Topology {
    Topology::builder("test", local)
        .zone("a", [a])
        .zone("b", [b])
        .zone("c", [c])
        .build()
        .expect("valid topology")
}

/// Short timeouts, so a stalled node costs a test little; a breaker that does not open during
/// a test, so every call really reaches the node.
fn config() -> ClientConfig {
    common::client_config(Duration::from_millis(200))
}

fn all_zones(wait: Wait) -> ClientConfig {
    ClientConfig {
        write_policy: WritePolicy::AllZones { wait },
        ..config()
    }
}

async fn get(client: &Client, key: &[u8]) -> Option<Vec<u8>> {
    let got = client.get(key).await.unwrap_or_else(|e| panic!("get failed: {e}"));
    got.map(|(value, _)| value.to_vec())
}

async fn set(client: &Client, key: &[u8], value: &[u8]) {
    let stored = client.set(key, value, 0, Ttl::Never).await;
    assert_eq!(stored.unwrap_or_else(|e| panic!("set failed: {e}")), Stored::Stored);
}

/// The zones named in a failed read or write.
fn zones_named(e: &ClientError) -> Vec<(String, String)> {
    let attempts = match e {
        ClientError::Unavailable { tried } => tried,
        ClientError::WriteFailed { failed, .. } => failed,
        other => panic!("not a zone failure: {other}"),
    };
    let mut named: Vec<_> = attempts.iter().map(|a| (a.zone.clone(), a.node.clone())).collect();
    named.sort();
    named
}

#[tokio::test]
async fn reads_the_local_zone_and_falls_back_on_a_miss_only_when_asked() {
    let cluster = Cluster::start();
    let a = cluster.client("a", config());
    assert_eq!(a.zone_order().collect::<Vec<_>>(), ["a", "b", "c"]);
    set(&a, b"k1", b"v1").await;
    assert_eq!(get(&a, b"k1").await.as_deref(), Some(&b"v1"[..]));

    let b = cluster.client("b", config());
    assert_eq!(b.zone_order().collect::<Vec<_>>(), ["b", "a", "c"]);
    set(&b, b"only-b", b"vb").await;
    assert_eq!(get(&a, b"only-b").await, None, "a miss in zone a is the answer");
    let fallback = cluster.client(
        "a",
        ClientConfig {
            fallback_on_miss: true,
            ..config()
        },
    );
    assert_eq!(get(&fallback, b"only-b").await.as_deref(), Some(&b"vb"[..]));
    assert_eq!(get(&fallback, b"nowhere").await, None, "a miss everywhere is a miss");
}

#[tokio::test]
async fn reads_fail_over_and_fail_only_when_every_zone_is_down() {
    let mut cluster = Cluster::start();
    let b = cluster.client("b", config());
    set(&b, b"k", b"from-b").await;
    let a = cluster.client("a", config());
    assert_eq!(get(&a, b"k").await, None);

    cluster.zones[0].pause();
    assert_eq!(
        get(&a, b"k").await.as_deref(),
        Some(&b"from-b"[..]),
        "a stalled: b answers"
    );
    cluster.zones[0].resume();
    cluster.zones[0].kill();
    let item = a.gets(b"k").await.expect("a dead: b answers").expect("a hit");
    assert_eq!(&item.value[..], b"from-b");

    cluster.zones[1].kill();
    cluster.zones[2].pause();
    let e = a.get(b"k").await.expect_err("every zone down");
    let named = zones_named(&e);
    let expect: Vec<_> = ["a", "b", "c"]
        .iter()
        .zip(0..)
        .map(|(z, i)| (z.to_string(), cluster.addr(i)))
        .collect();
    assert_eq!(named, expect, "{e}");
    let ClientError::Unavailable { tried } = &e else {
        unreachable!()
    };
    assert_eq!(
        tried.iter().map(|t| t.zone.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "in order"
    );
    assert!(
        matches!(tried[2].failure, Failure::Node(riven_client::NodeError::Timeout { .. })),
        "{e}"
    );
    cluster.zones[2].resume();
}

#[tokio::test]
async fn all_zones_writes_wait_for_successes() {
    let mut cluster = Cluster::start();
    let all = cluster.client("a", all_zones(Wait::All));
    set(&all, b"everywhere", b"v").await;
    for local in ["a", "b", "c"] {
        let reader = cluster.client(local, config());
        assert_eq!(
            get(&reader, b"everywhere").await.as_deref(),
            Some(&b"v"[..]),
            "zone {local}"
        );
    }

    cluster.zones[1].kill();
    let e = all.set(b"k", b"v", 0, Ttl::Never).await.expect_err("zone b is down");
    assert_eq!(zones_named(&e), [("b".to_string(), cluster.addr(1))], "{e}");
    let ClientError::WriteFailed { succeeded, .. } = &e else {
        unreachable!()
    };
    let mut succeeded = succeeded.clone();
    succeeded.sort();
    assert_eq!(succeeded, ["a", "c"]);

    let quorum = cluster.client("a", all_zones(Wait::Quorum));
    set(&quorum, b"k", b"quorum").await;

    cluster.zones[0].pause();
    let one = cluster.client("a", all_zones(Wait::One));
    set(&one, b"k", b"one").await;
    let c = cluster.client("c", config());
    assert_eq!(get(&c, b"k").await.as_deref(), Some(&b"one"[..]));
    let e = quorum
        .set(b"k", b"v", 0, Ttl::Never)
        .await
        .expect_err("one of three is no quorum");
    assert_eq!(
        zones_named(&e),
        [("a".to_string(), cluster.addr(0)), ("b".to_string(), cluster.addr(1))],
        "{e}"
    );
    // A failed write is not undone where it did land.
    assert_eq!(get(&c, b"k").await.as_deref(), Some(&b"v"[..]));

    cluster.zones[2].kill();
    let e = one.set(b"k", b"v", 0, Ttl::Never).await.expect_err("every zone down");
    assert_eq!(zones_named(&e).len(), 3, "{e}");
    cluster.zones[0].resume();
}

#[tokio::test]
async fn all_zones_returns_once_the_wait_is_met_and_still_writes_the_slow_zone() {
    let cluster = Cluster::start();
    cluster.zones[2].pause();
    // A long timeout, so that having waited for zone c would show.
    let mut config = all_zones(Wait::Quorum);
    config.node.conn.request_timeout = Duration::from_secs(5);
    let quorum = cluster.client("a", config);
    let started = Instant::now();
    set(&quorum, b"slow", b"v").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "did not wait for the stalled zone"
    );
    cluster.zones[2].resume();
    // The write to zone c was sent before the call returned and lands when c thaws.
    let c = cluster.addr(2);
    wait_until("the write reaches zone c", || text_get(&c, "slow").is_some()).await;
}

/// Reads `key` from the memcached at `addr` over the text protocol, apart from the client.
fn text_get(addr: &str, key: &str) -> Option<Vec<u8>> {
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(common::PATIENCE)).expect("timeout");
    write!(s, "get {key}\r\n").expect("writes");
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    while !reply.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).expect("reads");
        assert!(n > 0, "memcached closed the connection");
        reply.extend_from_slice(&buf[..n]);
    }
    if !reply.starts_with(b"VALUE ") {
        return None;
    }
    let header_end = reply.windows(2).position(|w| w == b"\r\n")?;
    Some(reply[header_end + 2..reply.len() - b"\r\nEND\r\n".len()].to_vec())
}

#[tokio::test]
async fn bad_keys_fail_before_any_io() {
    // A port nothing listens on: any I/O would fail with a connect error, not BadKey.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{closed}");
    let client = Client::new(topology("a", [addr.clone(), addr.clone(), addr]), config()).expect("client");
    let long = vec![b'k'; 251];
    for key in [&b"has space"[..], &long, b"ctl\x01", b"tab\t", b"del\x7f", b""] {
        assert!(matches!(client.get(key).await, Err(ClientError::BadKey)), "{key:?}");
        assert!(matches!(
            client.set(key, b"v", 0, Ttl::Never).await,
            Err(ClientError::BadKey)
        ));
        assert!(matches!(client.delete(key).await, Err(ClientError::BadKey)));
        assert!(matches!(client.incr(key, 1).await, Err(ClientError::BadKey)));
    }
    let ok = vec![b'k'; 250];
    assert!(
        matches!(client.get(&ok).await, Err(ClientError::Unavailable { .. })),
        "a valid key is sent"
    );
}

#[tokio::test]
async fn outcomes_are_results_not_errors() {
    let cluster = Cluster::start();
    for policy in [WritePolicy::Local, WritePolicy::AllZones { wait: Wait::All }] {
        let c = cluster.client(
            "a",
            ClientConfig {
                write_policy: policy,
                ..config()
            },
        );
        let p = format!("{policy:?}");
        let key = |k: &str| format!("{p}-{k}").replace(' ', "").into_bytes();
        let never = Ttl::Never;
        assert_eq!(
            c.add(&key("k"), b"1", 7, never).await.expect("add"),
            Stored::Stored,
            "{p}"
        );
        assert_eq!(
            c.add(&key("k"), b"2", 0, never).await.expect("add"),
            Stored::NotStored,
            "{p}"
        );
        assert_eq!(
            c.replace(&key("none"), b"x", 0, never).await.expect("replace"),
            Stored::NotStored
        );
        assert_eq!(
            c.replace(&key("k"), b"3", 9, never).await.expect("replace"),
            Stored::Stored
        );
        assert_eq!(c.append(&key("k"), b">").await.expect("append"), Stored::Stored);
        assert_eq!(c.prepend(&key("k"), b"<").await.expect("prepend"), Stored::Stored);
        assert_eq!(c.append(&key("none"), b">").await.expect("append"), Stored::NotStored);
        let item = c.gets(&key("k")).await.expect("gets").expect("hit");
        assert_eq!((&item.value[..], item.flags), (&b"<3>"[..], 9));

        let cas = c.cas(&key("k"), b"4", 0, never, item.cas + 1).await.expect("cas");
        assert_eq!(cas, Stored::Exists);
        assert_eq!(
            c.cas(&key("k"), b"4", 0, never, item.cas).await.expect("cas"),
            Stored::Stored
        );
        assert_eq!(
            c.cas(&key("none"), b"4", 0, never, 1).await.expect("cas"),
            Stored::NotFound
        );

        set(&c, &key("n"), b"10").await;
        assert_eq!(c.incr(&key("n"), 5).await.expect("incr"), Some(15));
        assert_eq!(c.decr(&key("n"), 20).await.expect("decr"), Some(0));
        assert_eq!(c.incr(&key("none"), 1).await.expect("incr"), None);
        set(&c, &key("text"), b"abc").await;
        let e = c.incr(&key("text"), 1).await.expect_err("not a number");
        assert!(
            matches!(&e, ClientError::WriteFailed { failed, .. } if matches!(failed[0].failure, Failure::Status { .. })),
            "{e}"
        );

        assert!(c
            .touch(&key("n"), Ttl::After(Duration::from_secs(60)))
            .await
            .expect("touch"));
        assert!(!c.touch(&key("none"), never).await.expect("touch"));
        let gat = c
            .gat(&key("n"), Ttl::After(Duration::from_secs(60)))
            .await
            .expect("gat");
        // memcached decrements in place, so "10" went to "0 " (space-padded).
        assert_eq!(gat.map(|(v, _)| v.to_vec()), Some(b"0 ".to_vec()));
        assert!(c.delete(&key("n")).await.expect("delete"));
        assert!(!c.delete(&key("n")).await.expect("delete"));
        assert_eq!(get(&c, &key("n")).await, None);
    }
}

#[tokio::test]
async fn values_small_and_large_round_trip_with_their_flags() {
    let cluster = Cluster::start();
    let c = cluster.client("a", all_zones(Wait::All));
    for len in [0, 1, 8 * 1024 - 1, 8 * 1024, 300 * 1024] {
        let value: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let key = format!("len-{len}");
        let stored = c.set(key.as_bytes(), &value, len as u32, Ttl::Never).await;
        assert_eq!(stored.expect("set"), Stored::Stored);
        let (got, flags) = c.get(key.as_bytes()).await.expect("get").expect("hit");
        assert_eq!((got.len(), flags), (len, len as u32));
        assert!(got[..] == value[..], "value of {len} bytes");
    }
}

#[tokio::test]
async fn an_expired_ttl_hides_the_item() {
    let cluster = Cluster::start();
    let c = cluster.client("a", config());
    let past = std::time::SystemTime::now() - Duration::from_secs(10);
    assert_eq!(
        c.set(b"gone", b"v", 0, Ttl::At(past)).await.expect("set"),
        Stored::Stored
    );
    assert_eq!(get(&c, b"gone").await, None);
    let later = Ttl::After(Duration::from_secs(31 * 24 * 60 * 60));
    assert_eq!(c.set(b"kept", b"v", 0, later).await.expect("set"), Stored::Stored);
    assert_eq!(get(&c, b"kept").await.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn zone_order_is_checked() {
    let cluster = Cluster::start();
    let order = |zones: &[&str]| ClientConfig {
        zone_order: Some(zones.iter().map(|z| z.to_string()).collect()),
        ..config()
    };
    let c = cluster.client("a", order(&["c", "a"]));
    assert_eq!(c.zone_order().collect::<Vec<_>>(), ["c", "a"]);
    set(&c, b"in-c", b"v").await;
    let reader = cluster.client("c", config());
    assert_eq!(
        get(&reader, b"in-c").await.as_deref(),
        Some(&b"v"[..]),
        "Local writes go to the first zone"
    );

    let err = |zones: &[&str]| Client::new(cluster.topology("a"), order(zones)).expect_err("bad order");
    assert_eq!(err(&["a", "x"]), ConfigError::UnknownZone("x".into()));
    assert_eq!(err(&["a", "a"]), ConfigError::DuplicateZone("a".into()));
    assert_eq!(err(&[]), ConfigError::EmptyZoneOrder);
}

#[tokio::test]
async fn an_open_breaker_sends_reads_to_the_next_zone() {
    let mut cluster = Cluster::start();
    let mut config = config();
    config.node.breaker.failure_threshold = 1;
    config.node.breaker.min_backoff = Duration::from_secs(60);
    let a = cluster.client("a", config);
    let b = cluster.client("b", self::config());
    set(&b, b"k", b"from-b").await;
    cluster.zones[0].kill();
    assert_eq!(
        get(&a, b"k").await.as_deref(),
        Some(&b"from-b"[..]),
        "a refuses: b answers"
    );
    // Zone a's breaker is open now: it is skipped without a connect attempt.
    assert_eq!(get(&a, b"k").await.as_deref(), Some(&b"from-b"[..]));
    cluster.zones[1].kill();
    cluster.zones[2].kill();
    let e = a.get(b"k").await.expect_err("every zone down");
    let ClientError::Unavailable { tried } = &e else {
        panic!("{e}")
    };
    assert!(
        matches!(
            &tried[0].failure,
            Failure::Node(riven_client::NodeError::Unavailable {
                reason: riven_client::Unavailable::BreakerOpen,
                ..
            })
        ),
        "{e}"
    );
}

#[tokio::test]
async fn local_writes_do_not_fail_over() {
    let mut cluster = Cluster::start();
    let a = cluster.client("a", config());
    cluster.zones[0].kill();
    let e = a.set(b"k", b"v", 0, Ttl::Never).await.expect_err("zone a is down");
    assert_eq!(zones_named(&e), [("a".to_string(), cluster.addr(0))], "{e}");
    let b = cluster.client("b", config());
    assert_eq!(get(&b, b"k").await, None, "nothing was written elsewhere");
}
