//! Faults of the memcached L1: killed and restarted under load, the node answers errors while it
//! is gone, never crashes, and serves again on its own once it is back.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

#[derive(Default)]
struct Seen {
    ok: AtomicU64,
    server_errors: AtomicU64,
    other: AtomicU64,
}

/// One client doing set/get pairs as fast as the node answers, counting what comes back.
fn load(port: u16, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut i = 0u64;
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("k{}", i % 100);
        w.write_all(format!("set {key} 0 0 5\r\nvalue\r\nget {key}\r\n").as_bytes())
            .unwrap();
        for _ in 0..2 {
            line.clear();
            r.read_line(&mut line).expect("the node answers every request");
            if line == "STORED\r\n" {
                seen.ok.fetch_add(1, Ordering::Relaxed);
            } else if line.starts_with("VALUE ") {
                // data line and END
                line.clear();
                r.read_line(&mut line).unwrap();
                line.clear();
                r.read_line(&mut line).unwrap();
                seen.ok.fetch_add(1, Ordering::Relaxed);
            } else if line.starts_with("SERVER_ERROR ") {
                seen.server_errors.fetch_add(1, Ordering::Relaxed);
            } else if line == "END\r\n" {
                // a miss right after memcached came back empty
                seen.ok.fetch_add(1, Ordering::Relaxed);
            } else {
                seen.other.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn memcached_killed_and_restarted_under_load() {
    let mc_port = free_port();
    let mut l1 = Some(Memcached::start_on(mc_port, &[]));
    let port = free_port();
    let mut node = Command::new(env!("CARGO_BIN_EXE_riven-node"))
        .args(["-p", &port.to_string(), "-t", "2", "--l1-memcached"])
        .arg(format!("127.0.0.1:{mc_port}"))
        .args(["--l1-timeout-ms", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the node", || TcpStream::connect(("127.0.0.1", port)).is_ok());

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || load(port, stop, seen))
        })
        .collect();

    wait_for("traffic", || seen.ok.load(Ordering::Relaxed) > 1000);
    // memcached goes away under load.
    drop(l1.take());
    wait_for("errors while memcached is down", || {
        seen.server_errors.load(Ordering::Relaxed) > 100
    });
    assert!(node.try_wait().unwrap().is_none(), "the node must keep running");
    // It comes back on the same port; the node reconnects by itself.
    let ok_before = seen.ok.load(Ordering::Relaxed);
    l1 = Some(Memcached::start_on(mc_port, &[]));
    wait_for("service again", || seen.ok.load(Ordering::Relaxed) > ok_before + 1000);

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(
        seen.other.load(Ordering::Relaxed),
        0,
        "only memcached replies or SERVER_ERROR"
    );
    assert!(node.try_wait().unwrap().is_none(), "the node must keep running");
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    assert!(node.wait().unwrap().success());
    drop(l1);
}
