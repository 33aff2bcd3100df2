//! `riven-bench load` against a real memcached (started here, on a free port) over every
//! protocol, and against small fake servers that misbehave, which the tool must catch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use riven_bench::compare::{self, CompareConfig, ServerSettings};
use riven_bench::load::{self, LoadConfig, LoadReport};
use riven_bench::proc::{self, Server};
use riven_bench::value::{KeySpace, ValueSpec};
use riven_bench::wire::Protocol;

fn memcached_program() -> std::path::PathBuf {
    let bin = std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into());
    proc::which(&bin).expect("memcached must be installed (apt-get install memcached); scripts/test.sh does it")
}

fn small_memcached() -> compare::Target {
    let settings = ServerSettings {
        threads: 2,
        item_size_max_mb: 0,
        memory_mb: 64,
        max_connections: 1024,
    };
    compare::memcached(memcached_program(), settings)
}

fn start_memcached() -> Server {
    let t = small_memcached();
    Server::start(&t.name, &t.server, Duration::from_secs(10)).expect("memcached starts")
}

fn short_load(addr: &str, protocol: Protocol, pipeline: usize) -> LoadConfig {
    let mut c = LoadConfig::new(addr, protocol);
    c.connections = 4;
    c.pipeline = pipeline;
    c.keys = KeySpace::new("rb:", 0, 2000).unwrap();
    c.duration = Duration::from_millis(500);
    c.timeout = Duration::from_secs(2);
    c.fail_on_miss = true;
    c
}

fn run(cfg: &LoadConfig) -> LoadReport {
    load::runtime(1).unwrap().block_on(load::run(cfg))
}

#[test]
fn every_protocol_against_memcached() {
    let server = start_memcached();
    for protocol in Protocol::ALL {
        for pipeline in [1, 16] {
            let r = run(&short_load(&server.addr(), protocol, pipeline));
            assert!(r.ok, "{protocol} pipeline {pipeline}:\n{}", r.human());
            assert!(r.ops > 0 && r.ops_per_sec > 0.0, "{}", r.human());
            assert!(r.hits > 0 && r.sets > 0, "{}", r.human());
            assert_eq!(r.misses, 0, "{}", r.human());
            assert!(
                r.latency.p50_us > 0.0 && r.latency.max_us >= r.latency.p99_us,
                "{}",
                r.human()
            );
        }
    }
}

#[test]
fn values_of_many_sizes_with_two_threads() {
    let server = start_memcached();
    for protocol in Protocol::ALL {
        let mut cfg = short_load(&server.addr(), protocol, 8);
        cfg.values = "0..20k".parse::<ValueSpec>().unwrap();
        cfg.keys = KeySpace::new("sizes:", 0, 300).unwrap();
        let r = load::runtime(2).unwrap().block_on(load::run(&cfg));
        assert!(r.ok && r.hits > 0, "{protocol}:\n{}", r.human());
    }
}

#[test]
fn the_binary_exits_0_with_a_json_line_and_1_on_failure() {
    let server = start_memcached();
    let bench = env!("CARGO_BIN_EXE_riven-bench");
    let out = Command::new(bench)
        .args([
            "load",
            "-a",
            &server.addr(),
            "-c",
            "2",
            "-d",
            "4",
            "-k",
            "500",
            "-t",
            "300ms",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(json["ok"], true);
    assert!(json["ops"].as_u64().unwrap() > 0);
    assert!(json["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    // The tool's own CPU use over the measured phase.
    assert!(json["cpu"]["fraction"].as_f64().unwrap() > 0.0, "{json}");
    assert!(json["cpu"]["threads"].as_u64().unwrap() == 1, "{json}");
    assert!(json["cpu"]["saturated"].is_boolean(), "{json}");

    // Nothing listens on the port a stopped server had.
    let port = proc::free_port().unwrap();
    let out = Command::new(bench)
        .args(["load", "-a", &format!("127.0.0.1:{port}"), "-c", "2", "-t", "300ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("connect"));
}

/// How a fake text-protocol server misbehaves.
#[derive(Clone, Copy)]
enum Fault {
    /// Flips one byte of every value it returns.
    WrongByte,
    /// Values of 100 KiB, each with one byte flipped somewhere else.
    WrongByteLarge,
    /// Answers sets but never the 20th get.
    DropReply,
    /// Stops answering after 50 requests, keeping the connection open.
    Stall,
}

/// A text-protocol server that stores nothing: it answers every get with the value the key
/// stands for (as a correct server would after the warm-up), except for its fault.
fn fake_server(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve(conn, fault));
        }
    });
    addr
}

fn serve(conn: TcpStream, fault: Fault) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    let mut gets = 0;
    let mut requests = 0;
    let spec = ValueSpec::fixed(if matches!(fault, Fault::WrongByteLarge) {
        100 * 1024
    } else {
        100
    });
    while r.read_line(&mut line).unwrap_or(0) > 0 {
        requests += 1;
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut reply = Vec::new();
        match words.as_slice() {
            ["set", _, _, _, len] => {
                let mut data = vec![0; len.parse::<usize>().unwrap() + 2];
                if r.read_exact(&mut data).is_err() {
                    return;
                }
                reply.extend_from_slice(b"STORED\r\n");
            }
            ["get", key] => {
                gets += 1;
                let e = spec.expect(key.as_bytes());
                let mut v = Vec::new();
                e.write(&mut v);
                match fault {
                    Fault::WrongByte => v[37] ^= 1,
                    Fault::WrongByteLarge => {
                        let at = (gets * 7919 + 12_345) % v.len();
                        v[at] ^= 1 << (gets % 8);
                    }
                    _ => {}
                }
                if !(matches!(fault, Fault::DropReply) && gets == 20) {
                    reply.extend_from_slice(format!("VALUE {key} {} {}\r\n", e.flags, v.len()).as_bytes());
                    reply.extend_from_slice(&v);
                    reply.extend_from_slice(b"\r\nEND\r\n");
                }
            }
            _ => reply.extend_from_slice(b"ERROR\r\n"),
        }
        if matches!(fault, Fault::Stall) && requests > 50 {
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        if out.write_all(&reply).is_err() {
            return;
        }
        line.clear();
    }
}

#[test]
fn faults_are_caught_within_the_timeout() {
    // A dropped reply shows as the next reply answering the wrong request, or as a wait for
    // the missing one that times out, depending on where in a batch it falls.
    for (fault, expect) in [
        (Fault::WrongByte, &["wrong value: byte 37"][..]),
        // Large values are checked through their digest; the error still names the byte.
        (Fault::WrongByteLarge, &["wrong value: byte"][..]),
        (Fault::DropReply, &["timed out", "another key", "unexpected reply"][..]),
        (Fault::Stall, &["timed out"][..]),
    ] {
        let addr = fake_server(fault);
        let mut cfg = short_load(&addr, Protocol::Text, 4);
        cfg.keys = KeySpace::new("rb:", 0, 100).unwrap();
        if let Fault::WrongByteLarge = fault {
            cfg.values = ValueSpec::fixed(100 * 1024);
        }
        cfg.duration = Duration::from_secs(2);
        cfg.timeout = Duration::from_millis(300);
        let start = Instant::now();
        let r = run(&cfg);
        assert!(!r.ok, "{}", r.human());
        assert!(
            r.errors.iter().any(|e| expect.iter().any(|x| e.contains(x))),
            "expected one of {expect:?}:\n{}",
            r.human()
        );
        assert!(start.elapsed() < Duration::from_secs(4), "took {:?}", start.elapsed());
    }
}

#[test]
fn compare_runner_smoke_with_two_memcacheds() {
    // The runner is generic over targets: two memcacheds exercise it without a node binary.
    let mut b = small_memcached();
    b.name = "memcached-b".into();
    let mut cfg = CompareConfig::new(vec![small_memcached(), b], "test".into());
    cfg.rounds = 2;
    cfg.round_duration = Duration::from_millis(200);
    cfg.connections = 4;
    cfg.keys = 1000;
    cfg.value_sizes = vec![100];
    cfg.idle_connections = 200;
    let mut lines = Vec::new();
    let report = compare::run(&cfg, &mut |l| lines.push(l.to_string())).unwrap();
    assert!(
        report.ok,
        "{:?}\n{}",
        report.errors,
        compare::render_markdown(&report, None)
    );
    assert_eq!(report.settings.len(), 6);
    for s in &report.settings {
        assert_eq!(s.targets.len(), 2);
        for t in &s.targets {
            assert_eq!(t.runs.len(), 2);
            assert!(t.ops_ratio.unwrap() > 0.0);
            // Each memcached's own CPU time was read; neither runs on another server.
            assert!(t.server_us_per_op.is_some_and(|us| us >= 0.0), "{t:?}");
            assert_eq!(t.dep_us_per_op, None);
        }
    }
    assert_eq!(report.idle.len(), 2);
    for i in &report.idle {
        let r = i.report.as_ref().unwrap();
        assert_eq!((r.connections, r.still_open), (200, 200));
        assert!(r.rss_after_kib.is_some());
    }
    // The chart and BENCHMARKS.md of the run.
    let png = std::env::temp_dir().join(format!("riven-compare-smoke-{}.png", std::process::id()));
    riven_bench::chart::render(&report, &png).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    let _ = std::fs::remove_file(&png);
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000);
    let md = compare::render_markdown(&report, Some("chart.png"));
    assert!(
        md.contains("memcached-b") && md.contains("bytes per connection") && md.contains("(chart.png)"),
        "{md}"
    );
}
