//! Consistent hashing: which node of a zone owns a key.
//!
//! Every process that routes keys (the client, the replicator, warm-up) must agree on the owner
//! of every key, across machines, Rust releases and Riven upgrades. A change to any of the
//! following reshuffles a fleet's keys, so each is fixed and pinned by golden tests
//! (`client/tests/ring.rs`):
//!
//! - the hash: XXH3-64 with seed 0 over exact byte strings ([`RingHasher`]);
//! - a virtual node's label: the node's address, `#`, and the replica index in decimal
//!   (`10.0.0.1:11211#0`, `10.0.0.1:11211#1`, …), for indexes `0..vnodes`;
//! - a key's point: the hash of the key's bytes, nothing added;
//! - the owner of a point: the first virtual node at or after it, wrapping past the top.
//!
//! The ring sits on the `hashring` crate, which has no virtual nodes of its own and hashes
//! through Rust's [`Hash`] trait. The types here therefore implement [`Hash`] by hand with a
//! single [`Hasher::write`] of the intended bytes: the derived or standard impls for `str` and
//! `[u8]` add a length prefix or terminator that no other language would reproduce.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};

use hashring::HashRing;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::topology::Topology;

/// Virtual nodes per real node when a topology does not set its own count.
///
/// A node's share of the keys varies by roughly one over the square root of this count, so
/// this default keeps a node's load within a few percent of the mean, while a large zone's
/// ring stays small enough to rebuild off the request path in a moment.
///
/// Every process of a cluster must use the same count, and changing it reshuffles the keys.
pub const DEFAULT_VNODES: usize = 256;

/// The ring's [`BuildHasher`]: XXH3-64 (seed 0) of the bytes written.
///
/// XXH3's output for given bytes is fixed by its specification and has implementations in
/// most languages, unlike std's `DefaultHasher`, whose algorithm may change between Rust
/// releases. It also mixes short, similar inputs such as `key:1` and `key:2` far apart,
/// which FNV-1a does not do in its high bits, the bits a ring's order depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingHasher;

impl RingHasher {
    /// The point of `bytes` on the ring: what [`RingHasher`] gives for one write of `bytes`.
    pub fn hash_bytes(bytes: &[u8]) -> u64 {
        xxh3_64(bytes)
    }
}

impl BuildHasher for RingHasher {
    type Hasher = StableHasher;

    fn build_hasher(&self) -> StableHasher {
        StableHasher { hash: None }
    }
}

/// The [`Hasher`] of [`RingHasher`].
///
/// One [`write`](Hasher::write) of some bytes finishes as XXH3-64 of exactly those bytes.
/// The ring's own types write once. Should anything write again, the bytes are chained in
/// (hashed with the previous result as the seed) rather than dropped, so distinct inputs
/// still give distinct points. Integers written through the `write_u*` methods go through
/// their native-endian bytes, so only [`write`](Hasher::write) is portable between machines.
#[derive(Debug, Clone)]
pub struct StableHasher {
    hash: Option<u64>,
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.hash = Some(match self.hash {
            None => xxh3_64(bytes),
            Some(seed) => xxh3_64_with_seed(bytes, seed),
        });
    }

    fn finish(&self) -> u64 {
        self.hash.unwrap_or_else(|| xxh3_64(&[]))
    }
}

/// One virtual node: its label is what gets hashed, `node` is what a lookup returns.
#[derive(Debug, Clone)]
struct VNode {
    node: usize,
    label: Box<[u8]>,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.label);
    }
}

/// A key as the ring sees it: its bytes and nothing else, borrowed so a lookup allocates
/// nothing.
struct Key<'a>(&'a [u8]);

impl Hash for Key<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0);
    }
}

fn vnode_label(address: &str, replica: usize) -> Box<[u8]> {
    format!("{address}#{replica}").into_bytes().into_boxed_slice()
}

/// The consistent-hashing ring of one zone's nodes.
///
/// The owner of a key depends only on the set of addresses and the virtual-node count, not on
/// the order the addresses were given in, so every process that reads the same topology
/// routes the same way. Adding a node moves keys only to that node; removing one moves only
/// its keys.
#[derive(Debug, Clone)]
pub struct Ring {
    nodes: Vec<String>,
    vnodes: usize,
    ring: HashRing<VNode, RingHasher>,
}

impl Ring {
    /// Builds the ring of `nodes` (addresses, e.g. `host:port`) with `vnodes` virtual nodes
    /// each.
    ///
    /// An address given twice counts once, at its first position. With zero virtual nodes no
    /// node has a point on the ring, so the ring holds no nodes and owns no key.
    pub fn new(nodes: &[String], vnodes: usize) -> Ring {
        let mut seen = HashSet::with_capacity(nodes.len());
        let nodes: Vec<String> = if vnodes == 0 {
            Vec::new()
        } else {
            nodes
                .iter()
                .filter(|address| seen.insert(address.as_str()))
                .cloned()
                .collect()
        };
        let mut points = Vec::with_capacity(nodes.len().saturating_mul(vnodes));
        for (node, address) in nodes.iter().enumerate() {
            points.extend((0..vnodes).map(|replica| VNode {
                node,
                label: vnode_label(address, replica),
            }));
        }
        let mut ring = HashRing::with_hasher(RingHasher);
        // One sort for the whole ring: `add` would re-sort it once per virtual node.
        ring.batch_add(points);
        Ring { nodes, vnodes, ring }
    }

    /// The address of the node that owns `key`, or `None` if the ring is empty.
    pub fn node_for(&self, key: &[u8]) -> Option<&str> {
        self.index_for(key).map(|index| self.nodes[index].as_str())
    }

    /// The position in [`nodes`](Ring::nodes) of the node that owns `key`, or `None` if the
    /// ring is empty. Callers that keep per-node state (connection pools, breakers) in a
    /// parallel array index it with this.
    pub fn index_for(&self, key: &[u8]) -> Option<usize> {
        self.ring.get(&Key(key)).map(|vnode| vnode.node)
    }

    /// The ring's nodes, without repeats, in the order first given.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The number of real nodes on the ring.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the ring has no nodes, and so owns no key.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Virtual nodes per real node.
    pub fn vnodes(&self) -> usize {
        self.vnodes
    }
}

/// One [`Ring`] per zone of a [`Topology`], with the local zone marked.
#[derive(Debug, Clone)]
pub struct Rings {
    // Sorted by zone name, so lookups can binary-search and iteration order is stable.
    zones: Vec<(String, Ring)>,
    local: usize,
}

impl Rings {
    /// Builds every zone's ring with the topology's virtual-node count.
    pub fn new(topology: &Topology) -> Rings {
        let zones: Vec<(String, Ring)> = topology
            .zones()
            .iter()
            .map(|(zone, nodes)| (zone.clone(), Ring::new(nodes, topology.vnodes())))
            .collect();
        // A validated topology always lists its local zone; the fallback only keeps a
        // lookup from panicking.
        let local = zones
            .iter()
            .position(|(zone, _)| zone == topology.local_zone())
            .unwrap_or(0);
        Rings { zones, local }
    }

    /// The ring of `zone`, or `None` if the topology has no such zone.
    pub fn get(&self, zone: &str) -> Option<&Ring> {
        self.zones
            .binary_search_by(|(name, _)| name.as_str().cmp(zone))
            .ok()
            .map(|index| &self.zones[index].1)
    }

    /// The name of the local zone.
    pub fn local_zone(&self) -> &str {
        &self.zones[self.local].0
    }

    /// The ring of the local zone.
    pub fn local(&self) -> &Ring {
        &self.zones[self.local].1
    }

    /// Every zone and its ring, by zone name.
    pub fn zones(&self) -> impl ExactSizeIterator<Item = (&str, &Ring)> + '_ {
        self.zones.iter().map(|(zone, ring)| (zone.as_str(), ring))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The ring's contract is about bytes, so check that what reaches the hasher is exactly
    // the label or the key, with no prefix or terminator from the `Hash` impls.
    #[test]
    fn hashes_exactly_the_intended_bytes() {
        let vnode = VNode {
            node: 3,
            label: vnode_label("10.0.0.1:11211", 7),
        };
        assert_eq!(&*vnode.label, b"10.0.0.1:11211#7");
        assert_eq!(RingHasher.hash_one(&vnode), xxh3_64(b"10.0.0.1:11211#7"));
        assert_eq!(RingHasher.hash_one(Key(b"key:1")), xxh3_64(b"key:1"));
        assert_eq!(RingHasher.hash_one(Key(b"")), xxh3_64(b""));
        assert_eq!(RingHasher.build_hasher().finish(), xxh3_64(b""));
    }

    #[test]
    fn a_second_write_is_chained_not_dropped() {
        let mut one = RingHasher.build_hasher();
        one.write(b"ab");
        let mut two = RingHasher.build_hasher();
        two.write(b"ab");
        two.write(b"c");
        assert_ne!(one.finish(), two.finish());
    }

    #[test]
    fn owner_is_the_first_vnode_at_or_after_the_key() {
        let ring = Ring::new(&["a:1".to_owned(), "b:1".to_owned()], 4);
        let mut points: Vec<(u64, usize)> = (0..2)
            .flat_map(|node| {
                let address = &ring.nodes()[node];
                (0..4).map(move |replica| (xxh3_64(&vnode_label(address, replica)), node))
            })
            .collect();
        points.sort_unstable();
        for i in 0..1000 {
            let key = format!("k{i}");
            let point = xxh3_64(key.as_bytes());
            let expected = points.iter().find(|(p, _)| *p >= point).unwrap_or(&points[0]).1;
            assert_eq!(ring.index_for(key.as_bytes()), Some(expected), "{key}");
        }
    }
}
