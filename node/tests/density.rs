//! What the node's layout costs in memory: bytes of values memcached holds per MiB of its
//! memory, for a node over it and for memcached direct, at 100 B, 2 KB, 50 KB and 1 MB values.
//! Each target gets a memcached of its own (`-m 16`), is written twice its memory in values of
//! one size, and every key is read back: what reads back is what memcached kept.

mod common;

use std::net::SocketAddr;

use common::{proxy_settings, start_node, Memcached, TextClient};

const MEMORY_MB: usize = 16;

/// Value bytes kept per MiB of memcached memory after writing twice its memory in `len`-byte
/// values.
fn kept_per_mib(addr: SocketAddr, len: usize) -> f64 {
    let mut c = TextClient::connect(addr);
    let n = (2 * (MEMORY_MB << 20) / len).max(4);
    let keys: Vec<String> = (0..n).map(|i| format!("d:{i}")).collect();
    let batch = ((1 << 20) / len).clamp(1, 256);
    c.set_all(&keys, len, batch);
    (c.hits(&keys, len) * len) as f64 / MEMORY_MB as f64
}

#[test]
fn the_node_keeps_about_what_memcached_keeps() {
    let memory = MEMORY_MB.to_string();
    let mut table =
        String::from("| value | memcached direct | node over memcached | node / direct |\n|---|---:|---:|---:|\n");
    for (label, len) in [("100 B", 100), ("2 KB", 2000), ("50 KB", 50 * 1024), ("1 MB", 1 << 20)] {
        let direct = {
            let mc = Memcached::start(&["-m", &memory, "-I", "2m"]);
            kept_per_mib(mc.addr, len)
        };
        let node = {
            let mc = Memcached::start(&["-m", &memory, "-I", "2m"]);
            let node = start_node(common::with(proxy_settings(&mc), |c| {
                c.limits.max_item_size = riven_node::config::Size(2 << 20);
            }));
            kept_per_mib(node.addr, len)
        };
        let ratio = node / direct;
        table.push_str(&format!(
            "| {label} | {:.0} KiB | {:.0} KiB | {ratio:.2} |\n",
            direct / 1024.0,
            node / 1024.0
        ));
        // The envelope (48 bytes) moves a 100-byte value up one slab class; larger values lose
        // little more than their last chunk's padding.
        let floor = if len < 1000 { 0.7 } else { 0.85 };
        assert!(
            ratio >= floor,
            "{label}: the node keeps {ratio:.2} of what memcached does\n{table}"
        );
    }
    eprintln!("{table}");
}
