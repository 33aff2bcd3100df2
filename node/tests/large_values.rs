//! Large values over memcached, with memory bounded: 16 clients at once write and read back
//! 8 MiB values through a node (its own process, so its peak RSS is its own), every byte
//! checked, and the node's peak RSS stays under a stated bound.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, Memcached, TextClient};

const STREAMS: usize = 16;
const VALUE: usize = 8 << 20;
const ROUNDS: usize = 3;
/// What a node may hold at its peak: each stream's value twice (a set's value read from the
/// client, then queued to memcached; a get's chunk replies as they came, sent from where they
/// lie), plus 64 MiB for everything else. A node that gathered chunked values into a reply
/// buffer, or kept them, would pass it.
const RSS_BOUND: u64 = (STREAMS * 2 * VALUE + (64 << 20)) as u64;

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib << 10
}

#[test]
fn sixteen_streams_of_8_mib_values_in_bounded_memory() {
    let mc = Memcached::start(&["-m", "1024"]);
    let port = free_port();
    let mut node = Command::new(env!("CARGO_BIN_EXE_riven-node"))
        .args(["-p", &port.to_string(), "-t", "2", "-I", "16m"])
        .args(["--l1-memcached", &mc.addr.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let streams: Vec<_> = (0..STREAMS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = TextClient::connect(addr);
                for round in 0..ROUNDS {
                    let key = vec![format!("big:{t}:{round}")];
                    c.set_all(&key, VALUE, 1);
                    assert_eq!(c.hits(&key, VALUE), 1, "{} did not read back", key[0]);
                }
            })
        })
        .collect();
    for s in streams {
        s.join().expect("a stream failed");
    }
    let peak = peak_rss(node.id());
    let _ = node.kill();
    let _ = node.wait();
    eprintln!("node peak RSS {} MiB (bound {} MiB)", peak >> 20, RSS_BOUND >> 20);
    assert!(
        peak <= RSS_BOUND,
        "peak RSS {} MiB over the bound of {} MiB",
        peak >> 20,
        RSS_BOUND >> 20
    );
}
