//! `riven-bench load` against a riven-node started in-process, over every protocol: zero
//! mismatches, zero misses on the pre-filled key space.

use std::time::Duration;

use riven_client::bench::load::{self, LoadConfig};
use riven_client::bench::value::{KeySpace, ValueSpec};
use riven_client::bench::wire::Protocol;
use riven_node::server::{RunningNode, Settings};

#[test]
fn every_protocol_against_the_node() {
    let node = RunningNode::start(Settings {
        port: 0,
        threads: 2,
        ..Settings::default()
    })
    .expect("node starts");
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
