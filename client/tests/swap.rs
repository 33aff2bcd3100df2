//! Replacing the client's topology at run time ([`Client::set_topology`]) against real
//! memcached: zone "a" moves from one memcached to another while zone "b" stays.

use std::sync::Arc;
use std::time::Duration;

use riven_client::{BreakerConfig, Client, ClientConfig, ConfigError, ConnConfig, NodeConfig, Stored, Topology, Ttl};

// Not every helper of the harness is used here.
#[allow(dead_code)]
mod common;

use common::Memcached;

fn topology(a: &Memcached, b: &Memcached) -> Topology {
    Topology::builder("test", "a")
        .zone("a", [a.addr()])
        .zone("b", [b.addr()])
        .build()
        .expect("valid topology")
}

/// A request timeout long enough for a read to wait out a paused memcached.
fn config() -> ClientConfig {
    ClientConfig {
        node: NodeConfig {
            connections: 1,
            conn: ConnConfig {
                request_timeout: Duration::from_secs(5),
                ..ConnConfig::default()
            },
            ..NodeConfig::default()
        },
        ..ClientConfig::default()
    }
}

async fn get(client: &Client, key: &[u8]) -> Option<Vec<u8>> {
    let got = client.get(key).await.unwrap_or_else(|e| panic!("get failed: {e}"));
    got.map(|(value, _)| value.to_vec())
}

#[tokio::test]
async fn a_new_topology_routes_new_calls_while_a_read_under_way_finishes_on_the_old_one() {
    let (m1, m2, mb) = (Memcached::start(), Memcached::start(), Memcached::start());
    let client = Arc::new(Client::new(topology(&m1, &mb), config()).expect("client builds"));
    let stored = client.set(b"k", b"from-m1", 0, Ttl::Never).await.expect("set");
    assert_eq!(stored, Stored::Stored);
    assert_eq!(get(&client, b"k").await.as_deref(), Some(&b"from-m1"[..]));

    // A read sent to M1 while it is frozen stays in flight across the swap.
    m1.pause();
    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { get(&client, b"k").await }
    });
    // Time for the read to take its snapshot and send its request.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!in_flight.is_finished(), "the read waits for the frozen M1");

    client.set_topology(topology(&m2, &mb)).expect("new topology");
    assert_eq!(client.zone_order().collect::<Vec<_>>(), ["a", "b"]);
    // New calls go to M2, which never had the key.
    assert_eq!(get(&client, b"k").await, None, "zone a is M2 now");
    client.set(b"k", b"from-m2", 0, Ttl::Never).await.expect("set on M2");
    assert_eq!(get(&client, b"k").await.as_deref(), Some(&b"from-m2"[..]));

    m1.resume();
    let old = tokio::time::timeout(common::PATIENCE, in_flight)
        .await
        .expect("the in-flight read finishes")
        .expect("the read task did not panic");
    assert_eq!(
        old.as_deref(),
        Some(&b"from-m1"[..]),
        "it finished on the ring it started on"
    );

    // M1 kept its value; the client no longer asks it.
    assert_eq!(get(&client, b"k").await.as_deref(), Some(&b"from-m2"[..]));
}

#[tokio::test]
async fn a_topology_lacking_a_zone_of_the_zone_order_is_refused_and_the_old_one_stays() {
    let (ma, mb) = (Memcached::start(), Memcached::start());
    let config = ClientConfig {
        zone_order: Some(vec!["a".to_string(), "b".to_string()]),
        ..config()
    };
    let client = Client::new(topology(&ma, &mb), config).expect("client builds");
    client.set(b"k", b"v", 0, Ttl::Never).await.expect("set");

    let only_b = Topology::builder("test", "b")
        .zone("b", [mb.addr()])
        .build()
        .expect("valid topology");
    assert_eq!(
        client.set_topology(only_b),
        Err(ConfigError::UnknownZone("a".to_string()))
    );
    assert_eq!(client.zone_order().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(
        get(&client, b"k").await.as_deref(),
        Some(&b"v"[..]),
        "still zone a's memcached"
    );
}

#[tokio::test]
async fn a_node_kept_across_a_swap_keeps_serving_and_a_zone_can_be_added() {
    let (ma, mb, mc) = (Memcached::start(), Memcached::start(), Memcached::start());
    let client = Client::new(topology(&ma, &mb), config()).expect("client builds");
    client.set(b"k", b"v", 0, Ttl::Never).await.expect("set");
    let three = Topology::builder("test", "a")
        .zone("a", [ma.addr()])
        .zone("b", [mb.addr()])
        .zone("c", [mc.addr()])
        .build()
        .expect("valid topology");
    client.set_topology(three).expect("new topology");
    assert_eq!(client.zone_order().collect::<Vec<_>>(), ["a", "b", "c"]);
    assert_eq!(get(&client, b"k").await.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn a_node_kept_across_a_swap_keeps_its_breaker() {
    let (mut ma, mb, mc) = (Memcached::start(), Memcached::start(), Memcached::start());
    // One failure opens the breaker, for far longer than the test.
    let mut config = config();
    config.node.breaker = BreakerConfig {
        failure_threshold: 1,
        min_backoff: Duration::from_secs(60),
        max_backoff: Duration::from_secs(60),
    };
    let client = Client::new(topology(&ma, &mb), config).expect("client builds");
    let port = ma.port;
    ma.kill();
    // Zone a refuses the connection, which opens its node's breaker; zone b answers.
    assert_eq!(get(&client, b"k").await, None);

    // Zone a's memcached is back on its port and holds the key; zone b is now another one.
    let ma = Memcached::start_on(port);
    let direct = Client::new(
        Topology::builder("test", "a")
            .zone("a", [ma.addr()])
            .build()
            .expect("valid topology"),
        ClientConfig::default(),
    )
    .expect("client builds");
    direct.set(b"k", b"in-a", 0, Ttl::Never).await.expect("set in a");
    client.set_topology(topology(&ma, &mc)).expect("new topology");

    // Zone a's handle is the old one, its breaker still open: the read goes to zone b's new
    // memcached, which misses. A new handle would have read zone a's value.
    assert_eq!(get(&client, b"k").await, None, "zone a's breaker is still open");
}
