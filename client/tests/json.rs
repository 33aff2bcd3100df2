//! The typed JSON helpers (feature `json`) against a real memcached.
#![cfg(feature = "json")]

use serde::{Deserialize, Serialize};

use riven_client::{Client, ClientConfig, ClientError, Stored, Topology, Ttl};

// Only the harness's memcached is used here, not its polling helper.
#[allow(dead_code)]
mod common;

use common::Memcached;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct User {
    name: String,
    visits: u32,
    tags: Vec<String>,
}

fn client(m: &Memcached) -> Client {
    let topology = Topology::builder("test", "a")
        .zone("a", [m.addr()])
        .build()
        .expect("valid topology");
    Client::new(topology, ClientConfig::default()).expect("client builds")
}

#[tokio::test]
async fn a_value_set_as_json_reads_back_as_the_same_value() {
    let m = Memcached::start();
    let client = client(&m);
    let user = User {
        name: "ada".to_string(),
        visits: 3,
        tags: vec!["admin".to_string()],
    };
    let stored = client
        .set_json(b"user:1", &user, 7, Ttl::Never)
        .await
        .expect("set_json");
    assert_eq!(stored, Stored::Stored);
    let back: Option<User> = client.get_json(b"user:1").await.expect("get_json");
    assert_eq!(back, Some(user));
    // What is stored is plain JSON, with the caller's flags.
    let (raw, flags) = client.get(b"user:1").await.expect("get").expect("a hit");
    assert_eq!(flags, 7);
    let raw: serde_json::Value = serde_json::from_slice(&raw).expect("JSON");
    assert_eq!(raw["name"], "ada");

    let missing: Option<User> = client.get_json(b"user:none").await.expect("get_json");
    assert_eq!(missing, None, "a miss is None");
}

#[tokio::test]
async fn a_value_that_is_not_json_of_the_type_is_a_json_error() {
    let m = Memcached::start();
    let client = client(&m);
    client.set(b"raw", b"not json", 0, Ttl::Never).await.expect("set");
    let err = client.get_json::<User>(b"raw").await.expect_err("not JSON");
    assert!(matches!(err, ClientError::Json(_)), "{err}");
    client.set_json(b"num", &5u32, 0, Ttl::Never).await.expect("set_json");
    let err = client.get_json::<User>(b"num").await.expect_err("JSON of another type");
    assert!(matches!(err, ClientError::Json(_)), "{err}");

    // A map with non-string keys has no JSON form: nothing is sent.
    let map = std::collections::HashMap::from([((1, 2), "x")]);
    let err = client
        .set_json(b"map", &map, 0, Ttl::Never)
        .await
        .expect_err("no JSON form");
    assert!(matches!(err, ClientError::Json(_)), "{err}");
    assert_eq!(client.get(b"map").await.expect("get"), None, "nothing was stored");
}
