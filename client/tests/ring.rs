//! The ring's fixed mapping, its balance, and how few keys move when a zone changes.

use riven_client::{Ring, RingHasher, Rings, Topology, DEFAULT_VNODES};

fn nodes(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("10.0.0.{i}:11211")).collect()
}

fn key(i: usize) -> String {
    format!("key:{i}")
}

fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

// Every value below is a promise to running fleets: the client, the replicator and warm-up of
// different releases must send a key to the same node. An upgrade must never change them; a
// change here reshuffles every cluster's keys. Fix the code, not the numbers.
mod golden {
    use super::*;

    #[test]
    fn the_hash_is_xxh3_64_with_seed_zero() {
        // The empty input's value is XXH3-64's published test vector.
        assert_eq!(RingHasher::hash_bytes(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(RingHasher::hash_bytes(b"key:0"), GOLDEN_HASH_KEY0);
        assert_eq!(RingHasher::hash_bytes(b"10.0.0.1:11211#0"), GOLDEN_HASH_VNODE);
    }

    #[test]
    fn the_default_vnode_count_is_fixed() {
        assert_eq!(DEFAULT_VNODES, 256);
    }

    #[test]
    fn key_to_node_mapping_is_fixed() {
        let ring = Ring::new(&nodes(10), DEFAULT_VNODES);
        let first: Vec<&str> = (0..FIRST.len())
            .map(|i| ring.node_for(key(i).as_bytes()).unwrap())
            .collect();
        assert_eq!(first, FIRST);

        let checksum = fnv1a64((0..10_000).map(|i| {
            let index = ring.index_for(key(i).as_bytes()).unwrap();
            u8::try_from(index).unwrap()
        }));
        assert_eq!(checksum, CHECKSUM, "checksum {checksum:#018x}");
    }

    // Also what `xxhsum -H3` prints for these bytes, so tools in other languages can check.
    const GOLDEN_HASH_KEY0: u64 = 0xb464_ee7b_6334_4e80;
    const GOLDEN_HASH_VNODE: u64 = 0x4832_c5cc_19b6_a43f;

    // The owners of `key:0` to `key:19` among `10.0.0.1:11211` to `10.0.0.10:11211`.
    const FIRST: [&str; 20] = [
        "10.0.0.8:11211",
        "10.0.0.3:11211",
        "10.0.0.5:11211",
        "10.0.0.1:11211",
        "10.0.0.4:11211",
        "10.0.0.8:11211",
        "10.0.0.6:11211",
        "10.0.0.8:11211",
        "10.0.0.6:11211",
        "10.0.0.7:11211",
        "10.0.0.10:11211",
        "10.0.0.7:11211",
        "10.0.0.2:11211",
        "10.0.0.10:11211",
        "10.0.0.10:11211",
        "10.0.0.8:11211",
        "10.0.0.2:11211",
        "10.0.0.10:11211",
        "10.0.0.10:11211",
        "10.0.0.1:11211",
    ];

    // FNV-1a 64 over the owner's index (one byte each) of `key:0` to `key:9999`.
    const CHECKSUM: u64 = 0x2a82_e49b_5471_43c3;
}

#[test]
fn keys_spread_evenly_over_nodes() {
    let ring = Ring::new(&nodes(10), DEFAULT_VNODES);
    let keys = 100_000;
    let mut counts = [0usize; 10];
    for i in 0..keys {
        counts[ring.index_for(key(i).as_bytes()).unwrap()] += 1;
    }
    let mean = keys as f64 / counts.len() as f64;
    let variance = counts.iter().map(|&count| (count as f64 - mean).powi(2)).sum::<f64>() / counts.len() as f64;
    let ratio = variance.sqrt() / mean;
    eprintln!("balance: counts {counts:?}, stddev/mean {ratio:.4}");
    assert!(ratio < 0.10, "stddev/mean {ratio}");
}

#[test]
fn adding_a_node_moves_keys_only_to_it() {
    let before = Ring::new(&nodes(10), DEFAULT_VNODES);
    let after = Ring::new(&nodes(11), DEFAULT_VNODES);
    let added = "10.0.0.11:11211";
    let keys = 100_000;
    let mut moved = 0u32;
    for i in 0..keys {
        let k = key(i);
        let (old, new) = (before.node_for(k.as_bytes()), after.node_for(k.as_bytes()));
        if old != new {
            assert_eq!(new, Some(added), "{k} moved from {old:?} to {new:?}");
            moved += 1;
        }
    }
    let fraction = f64::from(moved) / keys as f64;
    eprintln!("add: moved fraction {fraction:.4} (1/11 = {:.4})", 1.0 / 11.0);
    assert!(fraction <= 1.2 / 11.0, "moved {fraction}");
    assert!(fraction >= 0.8 / 11.0, "moved {fraction}");
}

#[test]
fn removing_a_node_moves_only_its_keys() {
    let all = nodes(10);
    let removed = all[3].clone();
    let rest: Vec<String> = all.iter().filter(|n| **n != removed).cloned().collect();
    let before = Ring::new(&all, DEFAULT_VNODES);
    let after = Ring::new(&rest, DEFAULT_VNODES);
    let keys = 100_000;
    let mut moved = 0u32;
    for i in 0..keys {
        let k = key(i);
        let (old, new) = (before.node_for(k.as_bytes()), after.node_for(k.as_bytes()));
        if old == Some(removed.as_str()) {
            assert_ne!(new, old);
            moved += 1;
        } else {
            assert_eq!(new, old, "{k} moved though its node stayed");
        }
    }
    let fraction = f64::from(moved) / keys as f64;
    eprintln!("remove: moved fraction {fraction:.4} (1/10 = 0.1000)");
}

#[test]
fn mapping_ignores_node_order_and_repeats() {
    let forward = nodes(10);
    let mut shuffled: Vec<String> = forward.iter().rev().cloned().collect();
    shuffled.push(forward[0].clone());
    let a = Ring::new(&forward, 64);
    let b = Ring::new(&shuffled, 64);
    assert_eq!(b.len(), 10);
    for i in 0..10_000 {
        let k = key(i);
        assert_eq!(a.node_for(k.as_bytes()), b.node_for(k.as_bytes()));
    }
}

#[test]
fn an_empty_ring_owns_nothing() {
    let empty = Ring::new(&[], DEFAULT_VNODES);
    assert!(empty.is_empty());
    assert_eq!(empty.node_for(b"k"), None);
    let no_points = Ring::new(&nodes(3), 0);
    assert!(no_points.is_empty());
    assert_eq!(no_points.len(), 0);
    assert_eq!(no_points.index_for(b"k"), None);
}

#[test]
fn a_single_node_owns_every_key() {
    let ring = Ring::new(&nodes(1), 4);
    assert_eq!(ring.len(), 1);
    assert_eq!(ring.vnodes(), 4);
    for i in 0..1_000 {
        assert_eq!(ring.node_for(key(i).as_bytes()), Some("10.0.0.1:11211"));
    }
}

#[test]
fn rings_hold_one_ring_per_zone() {
    let topology = Topology::builder("main", "b")
        .zone("c", ["10.0.3.1:11211"])
        .zone("a", ["10.0.1.1:11211", "10.0.1.2:11211"])
        .zone("b", ["10.0.2.1:11211", "10.0.2.2:11211", "10.0.2.3:11211"])
        .vnodes(32)
        .build()
        .unwrap();
    let rings = Rings::new(&topology);
    assert_eq!(rings.local_zone(), "b");
    assert_eq!(rings.local().len(), 3);
    assert_eq!(rings.get("a").map(Ring::len), Some(2));
    assert_eq!(rings.get("c").map(Ring::vnodes), Some(32));
    assert!(rings.get("d").is_none());
    let zones: Vec<&str> = rings.zones().map(|(zone, _)| zone).collect();
    assert_eq!(zones, ["a", "b", "c"]);

    // A zone's ring is the ring of its addresses: the same as one built directly.
    let direct = Ring::new(topology.nodes("b").unwrap(), 32);
    for i in 0..1_000 {
        let k = key(i);
        assert_eq!(rings.local().node_for(k.as_bytes()), direct.node_for(k.as_bytes()));
    }
}
