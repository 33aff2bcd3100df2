//! `riven-bench load` against a riven-node started in-process, over every protocol: zero
//! mismatches, zero misses on the pre-filled key space.

use std::time::Duration;

use riven_bench::load::{self, LoadConfig};
use riven_bench::value::{KeySpace, ValueSpec};
use riven_bench::wire::Protocol;
use riven_node::config::Config;
use riven_node::node::Node;

/// A node on a free port with two threads.
fn test_config() -> Config {
    let mut c = Config::default();
    c.server.port = 0;
    c.server.threads = 2;
    c
}

#[test]
fn every_protocol_against_the_node() {
    let node = Node::start(test_config()).expect("node starts");
    let rt = load::runtime(1).unwrap();
    for protocol in Protocol::ALL {
        for (pipeline, values) in [(1, "100"), (16, "100"), (8, "0..20k")] {
            let mut cfg = LoadConfig::new(node.addr.to_string(), protocol);
            cfg.connections = 4;
            cfg.pipeline = pipeline;
            cfg.keys = KeySpace::new("rb:", 0, 1000).unwrap();
            cfg.values = values.parse::<ValueSpec>().unwrap();
            cfg.duration = Duration::from_millis(400);
            cfg.timeout = Duration::from_secs(2);
            cfg.fail_on_miss = true;
            let r = rt.block_on(load::run(&cfg));
            assert!(r.ok, "{protocol} pipeline {pipeline} values {values}:\n{}", r.human());
            assert!(r.hits > 0 && r.sets > 0 && r.ops_per_sec > 0.0, "{}", r.human());
        }
    }
    node.stop();
}

#[test]
fn every_tool_against_the_node() {
    use riven_bench::common::Common;
    use riven_bench::sizes::SizesOpts;
    use riven_bench::{blast, setget, setops, sizes};

    let node = Node::start(test_config()).expect("node starts");
    let rt = load::runtime(1).unwrap();
    for p in Protocol::ALL {
        let mut c = Common::new(node.addr.to_string(), p, KeySpace::new("t:", 0, 200).unwrap());
        c.engine.connections = 4;
        c.engine.pipeline = 8;
        c.engine.duration = Duration::from_millis(400);
        c.engine.timeout = Duration::from_secs(2);
        c.mget = 5;
        c.values = "1..500".parse().unwrap();
        c.get_ratio = 0.4;
        let r = rt.block_on(blast::run(&c));
        assert!(r.ok(), "{}", r.human());

        c.values = "5..20k".parse().unwrap();
        let r = rt.block_on(setget::run(&c));
        assert!(r.ok() && r.run.misses == 0, "{}", r.human());

        let mut so = c.clone();
        so.engine.keys = KeySpace::new("so:", 0, 40).unwrap();
        so.engine.duration = Duration::from_secs(20);
        so.values = "1..300".parse().unwrap();
        let r = rt.block_on(setops::run(&so));
        assert!(r.ok() && r.keys_done == 40, "{}", r.human());

        let mut sz = c.clone();
        sz.engine.keys = KeySpace::new("sz:", 0, 1).unwrap();
        sz.engine.duration = Duration::from_secs(20);
        // The node's memory store: 256-byte chunks.
        let opts = SizesOpts {
            max: 20 * 1024,
            chunk: 256,
            offset: 0,
            dense: 600,
        };
        let r = rt.block_on(sizes::run(&sz, &opts));
        assert!(r.ok() && r.sizes_checked == r.sizes as u64, "{}", r.human());
    }
    node.stop();
}
