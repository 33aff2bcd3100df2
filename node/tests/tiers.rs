//! The node in l1-l2 mode with a real on-disk L2: data outlives a restart, expired data never
//! comes back, L1 evictions are served from L2, and the batch listener leaves L1 alone.

mod common;

use common::*;

fn get(addr: std::net::SocketAddr, key: &str) -> Vec<u8> {
    exchange(addr, &[send(format!("get {key}\r\n"))])
}

fn value_reply(key: &str, v: &str) -> Vec<u8> {
    format!("VALUE {key} 0 {}\r\n{v}\r\nEND\r\n", v.len()).into_bytes()
}

#[test]
fn restart_keeps_data_and_expired_data_never_returns() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(tiered_settings(dir.path()));
    let mut script = Vec::new();
    for i in 0..200 {
        script.push(send(format!(
            "set keep{i} 0 0 {}\r\nvalue-{i}\r\n",
            format!("value-{i}").len()
        )));
    }
    script.push(send("set brief 0 1 5\r\nshort\r\n"));
    let replies = exchange(node.addr, &script);
    assert_eq!(replies, b"STORED\r\n".repeat(201));
    node.stop();

    // A new process image on the same directory: L1 starts empty, L2 has everything.
    let node = start_node(tiered_settings(dir.path()));
    for i in (0..200).step_by(17) {
        assert_eq!(
            get(node.addr, &format!("keep{i}")),
            value_reply(&format!("keep{i}"), &format!("value-{i}"))
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(get(node.addr, "brief"), b"END\r\n");
    // Served from L2 the first time, from L1 (backfilled) afterwards.
    let mut stats = Vec::new();
    node.state
        .engine
        .for_each_tier_stat(&mut |k, v, _| stats.push((k.to_string(), v)));
    let stat = |name: &str| stats.iter().find(|(k, _)| k == name).map(|(_, v)| *v).unwrap();
    assert!(stat("l2_hits") >= 12, "{stats:?}");
    assert!(stat("l2_backfills") >= 12, "{stats:?}");
}

#[test]
fn l1_evictions_are_served_from_l2() {
    let dir = tempfile::tempdir().unwrap();
    // 2 MiB of L1 for 8 MiB of values.
    let node = start_node(common::with(tiered_settings(dir.path()), |c| {
        c.l1.memory.limit_mb = 2;
        c.limits.max_item_size = riven_node::config::Size(1 << 20);
    }));
    let value = "x".repeat(4000);
    let script: Vec<_> = (0..2000)
        .map(|i| send(format!("set big{i} 0 0 {}\r\n{value}\r\n", value.len())))
        .collect();
    assert_eq!(exchange(node.addr, &script), b"STORED\r\n".repeat(2000));
    assert!(node.state.engine.stats().evictions > 0);
    for i in (0..2000).step_by(97) {
        assert_eq!(
            get(node.addr, &format!("big{i}")),
            value_reply(&format!("big{i}"), &value)
        );
    }
}

#[test]
fn batch_listener_writes_l2_without_filling_l1() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(common::with(tiered_settings(dir.path()), |c| {
        c.server.batch_port = Some(0)
    }));
    let batch = node.batch_addr.expect("batch listener");
    assert_eq!(exchange(node.addr, &[send("set hot 0 0 3\r\nold\r\n")]), b"STORED\r\n");
    let load: Vec<_> = (0..100).map(|i| send(format!("set bulk{i} 0 0 1\r\nb\r\n"))).collect();
    assert_eq!(exchange(batch, &load), b"STORED\r\n".repeat(100));
    // A key already in L1 is refreshed there.
    assert_eq!(exchange(batch, &[send("set hot 0 0 3\r\nnew\r\n")]), b"STORED\r\n");
    // Only "hot" is in L1; the bulk keys went to L2 only.
    assert_eq!(node.state.engine.stats().curr_items, 1);
    assert_eq!(get(node.addr, "hot"), value_reply("hot", "new"));
    assert_eq!(get(node.addr, "bulk42"), value_reply("bulk42", "b"));
}
