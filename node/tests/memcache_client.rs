//! An independent client from crates.io (`memcache`), over both the text and the binary protocol,
//! stores and reads values from 0 B to 1 MiB against the node.

mod common;

use common::*;

fn value(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

fn sizes() -> Vec<usize> {
    vec![
        0,
        1,
        2,
        100,
        255,
        256,
        1000,
        4096,
        16_384,
        65_536,
        100_000,
        500_000,
        1 << 20,
    ]
}

fn check(url: &str) {
    let client = memcache::Client::connect(url).expect("connect");
    for (i, len) in sizes().into_iter().enumerate() {
        let key = format!("size-{len}");
        let v = value(len, i as u8);
        client
            .set(&key, &v[..], 0)
            .unwrap_or_else(|e| panic!("set {len} B over {url}: {e}"));
        let back: Option<Vec<u8>> = client.get(&key).unwrap();
        assert_eq!(back.as_deref(), Some(&v[..]), "{len} B over {url}");
    }
    // A few other commands through the same client.
    client.set("counter", 10u64, 0).unwrap();
    assert_eq!(client.increment("counter", 5).unwrap(), 15);
    assert_eq!(client.decrement("counter", 20).unwrap(), 0);
    // (The crate's text client reports NOT_STORED as success, so check the value instead.)
    let _ = client.add("counter", 1u64, 0);
    // memcached pads a value that shrank in place ("15" - 20 = "0 "), so compare trimmed text.
    let counter: Option<String> = client.get("counter").unwrap();
    assert_eq!(counter.as_deref().map(str::trim), Some("0"));
    client.append("size-1", "zz").unwrap();
    assert!(client.delete("size-1").unwrap());
    let missing: Option<Vec<u8>> = client.get("size-1").unwrap();
    assert!(missing.is_none());
    client.flush().unwrap();
    let gone: Option<Vec<u8>> = client.get("size-100").unwrap();
    assert!(gone.is_none());
}

#[test]
fn memcache_crate_text_and_binary() {
    // -I 2m so that a value of exactly 1 MiB fits with its key and item overhead, as it would in
    // memcached started with the same flag.
    let node = start_node(common::with(test_settings(), |c| {
        c.limits.max_item_size = riven_node::config::Size(2 << 20);
        c.l1.memory.limit_mb = 64;
    }));
    // The same checks against a real memcached with the same -I keep them honest.
    let mc = Memcached::start(&["-I", "2m"]);
    for port in [mc.addr.port(), node.addr.port()] {
        check(&format!("memcache://127.0.0.1:{port}?protocol=ascii"));
        check(&format!("memcache://127.0.0.1:{port}"));
    }
}
