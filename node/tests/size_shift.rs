//! Rend's motivating incident, against a real memcached: memory filled with small values, then a
//! new data set of larger values written at once. memcached direct keeps its pages in the old
//! size class and evicts most of the new set; a node over the same memcached moves the pages to
//! where its writes go (`backend::slabs`) and keeps it.

mod common;

use std::net::SocketAddr;

use common::{proxy_settings, start_node, Memcached, TextClient};
use riven_node::backend::chunked::ENV_LEN;

const MEMORY_MB: usize = 64;
const OLD_SIZE: usize = 2000;
const NEW_SIZE: usize = 50 * 1024;

/// Fills `addr` with twice its memory in 2 KB values, writes a new set of 50 KB values taking
/// 70 % of it, and returns the share of the new set that reads back.
fn shift(addr: SocketAddr) -> f64 {
    let mut c = TextClient::connect(addr);
    let old: Vec<String> = (0..2 * (MEMORY_MB << 20) / OLD_SIZE)
        .map(|i| format!("old:{i}"))
        .collect();
    c.set_all(&old, OLD_SIZE, 256);
    let new: Vec<String> = (0..(MEMORY_MB << 20) * 7 / 10 / NEW_SIZE)
        .map(|i| format!("new:{i}"))
        .collect();
    c.set_all(&new, NEW_SIZE, 16);
    c.hits(&new, NEW_SIZE) as f64 / new.len() as f64
}

#[test]
fn memcached_direct_loses_the_new_set() {
    let mc = Memcached::start(&["-m", &MEMORY_MB.to_string()]);
    let kept = shift(mc.addr);
    eprintln!("memcached direct kept {:.1} % of the new set", kept * 100.0);
    // memcached 1.6.18 keeps about 2 %: its pages stay with the 2 KB class.
    assert!(kept < 0.5, "memcached direct kept {:.1} % of the new set", kept * 100.0);
}

#[test]
fn a_node_over_memcached_keeps_the_new_set() {
    let mc = Memcached::start(&["-m", &MEMORY_MB.to_string()]);
    let node = start_node(proxy_settings(&mc));
    let kept = shift(node.addr);
    let moved = node.state.engine.slabs().map_or(0, |s| s.pages_moved());
    eprintln!("node kept {:.1} % of the new set; {moved} pages moved", kept * 100.0);
    if kept < 0.95 {
        for c in node.state.engine.slabs().map(|s| s.view()).unwrap_or_default() {
            eprintln!("{c:?}");
        }
    }
    assert!(kept >= 0.95, "the node kept only {:.1} % of the new set", kept * 100.0);
    assert!(moved > 0, "kept without moving pages: the scenario did not shift sizes");

    // An operator sees memcached's classes through the node: the class of the 50 KB values'
    // items (an envelope, then the value) now holds most of the pages.
    let stats = String::from_utf8(common::exchange(node.addr, &[common::send("stats slabs\r\n")])).unwrap();
    let stat = |name: &str| -> u64 {
        let line = stats.lines().find_map(|l| l.strip_prefix(&format!("STAT {name} ")));
        line.and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {stats}"))
    };
    let (class, _) = riven_memcache::meta::memcached_item_size("new:1000".len(), ENV_LEN + NEW_SIZE, 0);
    assert_eq!(class, 29, "the 50 KB values' class with memcached's defaults");
    assert!(stat("29:total_pages") >= 40, "{stats}");
    assert!(stat("15:total_pages") <= 24, "{stats}");
    assert_eq!(stat("slab_pages_moved"), moved);
    assert!(stats.ends_with("END\r\n"));
}
