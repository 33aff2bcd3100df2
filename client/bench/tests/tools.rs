//! Every tool briefly against a real memcached (started here, on a free port) over every
//! protocol: zero mismatches. Plus open loop, eviction under a small memory bound, and the
//! binary's exit codes and JSON line.

use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use riven_bench::common::Common;
use riven_bench::compare::{self, ServerSettings};
use riven_bench::proc::{self, Server};
use riven_bench::sizes::SizesOpts;
use riven_bench::value::{KeySpace, ValueSpec};
use riven_bench::wire::{Op, Protocol};
use riven_bench::{blast, engine, fill, setget, setops, sizes};

fn memcached(memory_mb: usize) -> Server {
    let bin = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
    let program =
        proc::which(&bin).expect("memcached must be installed (apt-get install memcached); scripts/test.sh does it");
    let settings = ServerSettings {
        threads: 2,
        item_size_max_mb: 0,
        memory_mb,
        max_connections: 1024,
    };
    let t = compare::memcached(program, settings);
    Server::start(&t.name, &t.server, Duration::from_secs(10)).expect("memcached starts")
}

fn common(addr: &str, protocol: Protocol, prefix: &str, keys: u64) -> Common {
    let mut c = Common::new(addr, protocol, KeySpace::new(prefix, 0, keys).unwrap());
    c.engine.connections = 4;
    c.engine.pipeline = 8;
    c.engine.duration = Duration::from_millis(400);
    c.engine.timeout = Duration::from_secs(2);
    c.mget = 5;
    c
}

fn rt() -> tokio::runtime::Runtime {
    engine::runtime(1).unwrap()
}

#[test]
fn every_tool_over_every_protocol() {
    let server = memcached(64);
    let rt = rt();
    for p in Protocol::ALL {
        let mut c = common(&server.addr(), p, &format!("bl{p}:"), 200);
        c.values = "1..500".parse().unwrap();
        c.get_ratio = 0.4;
        let r = rt.block_on(blast::run(&c));
        assert!(r.ok(), "{}", r.human());
        // Every command of the mix was sent and timed.
        for op in Op::ALL {
            let s = r
                .run
                .command(op)
                .unwrap_or_else(|| panic!("{p}: no {op}:\n{}", r.human()));
            assert!(s.count > 0 && s.latency.max_us > 0.0, "{p} {op}");
        }

        let mut c = common(&server.addr(), p, &format!("sg{p}:"), 500);
        c.values = "5..20k".parse().unwrap();
        let r = rt.block_on(setget::run(&c));
        assert!(r.ok() && r.run.hits > 0 && r.run.misses == 0, "{}", r.human());

        let mut c = common(&server.addr(), p, &format!("so{p}:"), 40);
        c.engine.duration = Duration::from_secs(20);
        c.values = "1..300".parse().unwrap();
        let r = rt.block_on(setops::run(&c));
        assert!(r.ok() && r.keys_done == 40 && r.run.finished, "{}", r.human());

        let mut c = common(&server.addr(), p, &format!("sz{p}:"), 1);
        c.engine.duration = Duration::from_secs(20);
        let opts = SizesOpts {
            max: 40 * 1024,
            chunk: 4096,
            offset: 60,
            dense: 300,
        };
        let r = rt.block_on(sizes::run(&c, &opts));
        assert!(r.ok() && r.sizes_checked == r.sizes as u64, "{}", r.human());
        assert!(r.sizes > 300 + 3 * 9, "{}", r.sizes);
    }
}

#[test]
fn open_loop_holds_the_rate() {
    let server = memcached(64);
    let mut c = common(&server.addr(), Protocol::Binary, "ol:", 100);
    c.engine.rate = Some(2000.0);
    c.engine.duration = Duration::from_secs(1);
    c.engine.pipeline = 4;
    let r = rt().block_on(setget::run(&c));
    assert!(r.ok(), "{}", r.human());
    assert_eq!(r.run.mode, "open");
    // 2000 requests per second, sent in set+get pairs of 6 (5 sets and a multi-get).
    assert!((1700..=2300).contains(&r.run.ops), "{}", r.human());
    let lag = r.run.send_lag.expect("open loop reports its send lag");
    assert!(lag.count == r.run.ops, "{}", r.human());
}

#[test]
fn fill_sees_evictions_under_a_small_memory_bound() {
    let server = memcached(8);
    let mut c = common(&server.addr(), Protocol::Text, "fl:", 50_000);
    c.values = ValueSpec::fixed(1000);
    c.get_ratio = 0.1;
    c.engine.pipeline = 16;
    c.engine.duration = Duration::from_millis(1500);
    let r = rt().block_on(fill::run(&c, Duration::from_millis(250)));
    assert!(r.ok(), "{}", r.human());
    assert!(r.evictions > 0 && r.first_eviction_secs.is_some(), "{}", r.human());
    assert!(r.samples.len() >= 4, "{}", r.human());
    let last = r.samples.last().unwrap();
    assert_eq!(last.limit_maxbytes, 8 << 20);
    assert!(last.bytes <= last.limit_maxbytes);
    assert!(r.sets_per_sec > 0.0);
}

#[test]
fn the_binary_prints_json_and_exits_1_on_a_stalled_server() {
    let server = memcached(64);
    let bench = env!("CARGO_BIN_EXE_riven-bench");
    for tool in ["blast", "setget", "setops", "fill"] {
        // setops ends when every key went through its script: the duration only bounds it.
        let duration = if tool == "setops" { "20s" } else { "300ms" };
        let out = Command::new(bench)
            .args([
                tool,
                "-a",
                &server.addr(),
                "-c",
                "2",
                "-d",
                "4",
                "-k",
                "100",
                "-t",
                duration,
                "-P",
                "meta",
                "--json",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool}: {}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(json["ok"], true, "{tool}");
        assert_eq!(json["tool"], tool);
        assert!(
            json["commands"].as_array().is_some_and(|c| !c.is_empty()),
            "{tool}: {json}"
        );
        assert!(json["latency"]["p999_us"].as_f64().is_some(), "{tool}");
    }
    let out = Command::new(bench)
        .args([
            "sizes",
            "-a",
            &server.addr(),
            "-c",
            "2",
            "--max",
            "3000",
            "--chunk-size",
            "1k",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A server that accepts connections and never answers: every tool gives up within its
    // timeout and exits 1 saying so.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.set_read_timeout(Some(Duration::from_millis(10)));
            let _ = conn.read(&mut buf);
            held.push(conn);
        }
    });
    for tool in ["blast", "setops", "sizes", "setget"] {
        let start = Instant::now();
        let out = Command::new(bench)
            .args([
                tool,
                "-a",
                &addr,
                "-c",
                "2",
                "-k",
                "10",
                "-t",
                "5s",
                "--timeout",
                "300ms",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{tool}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("timed out after 300ms"), "{tool}: {text}");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{tool}: {:?}",
            start.elapsed()
        );
    }
}
