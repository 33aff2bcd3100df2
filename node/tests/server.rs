//! The server as operators see it: the real binary, signals, connection limits, the unix socket,
//! and garbage input that must not hurt other clients.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn connect_when_up(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            return s;
        }
        assert!(Instant::now() < deadline, "node did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_line(s: &mut impl Read) -> String {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line
}

#[test]
fn binary_serves_and_exits_zero_on_sigterm_after_answering() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_riven-node"))
        .args(["-p", &port.to_string(), "-t", "2", "-m", "16"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut s = connect_when_up(port);
    // A request split so that the node has read half of it when the signal arrives; the rest
    // follows, and the node must still answer before it exits.
    s.write_all(b"set k 0 0 5\r\nhel").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(100));
    let _ = s.write_all(b"lo\r\n");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    // The node finished the request it had started before closing.
    assert_eq!(String::from_utf8_lossy(&reply), "STORED\r\n");
    // And no longer listens.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn connection_limit_answers_like_memcached() {
    let node = start_node(common::with(test_settings(), |c| c.server.conn_limit = 2));
    let mut a = TcpStream::connect(node.addr).unwrap();
    let mut b = TcpStream::connect(node.addr).unwrap();
    for s in [&mut a, &mut b] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"version\r\n").unwrap();
        assert!(read_line(s).starts_with("VERSION "));
    }
    let mut c = TcpStream::connect(node.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "ERROR Too many open connections\r\n");
    drop(a);
    // A freed slot is usable again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = TcpStream::connect(node.addr).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        d.write_all(b"version\r\n").unwrap();
        if read_line(&mut d).starts_with("VERSION ") {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        node.state
            .stats
            .rejected_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[test]
fn unix_socket_serves_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("riven.sock");
    let node = start_node(common::with(test_settings(), |c| {
        c.server.unix_socket = Some(path.to_str().unwrap().into())
    }));
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    u.write_all(b"set via-unix 0 0 2\r\nok\r\n").unwrap();
    assert_eq!(read_line(&mut u), "STORED\r\n");
    let reply = exchange(node.addr, &[send("get via-unix\r\n")]);
    assert_eq!(reply, b"VALUE via-unix 0 2\r\nok\r\nEND\r\n");
}

#[test]
fn garbage_does_not_hurt_other_clients_or_keys() {
    garbage_against(test_settings());
}

#[test]
fn garbage_does_not_hurt_in_l1_l2_mode() {
    let dir = tempfile::tempdir().unwrap();
    garbage_against(tiered_settings(dir.path()));
}

#[test]
fn garbage_does_not_hurt_over_a_memcached_l1() {
    let l1 = Memcached::start(&[]);
    garbage_against(proxy_settings(&l1));
}

fn garbage_against(settings: riven_node::config::Config) {
    let node = start_node(settings);
    assert_eq!(
        exchange(node.addr, &[send("set safe 0 0 4\r\nsafe\r\n")]),
        b"STORED\r\n"
    );
    // Deterministic pseudo-random garbage, on the text port and on the binary port.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    for round in 0..50 {
        let mut junk = noise(1 + round * 97);
        if round % 2 == 0 {
            junk.insert(0, 0x80); // binary magic: the binary front end gets it
        }
        let _ = exchange(node.addr, &[send(&junk)]);
    }
    // Oversized declared lengths must not make the node buffer them.
    let _ = exchange(node.addr, &[send("set huge 0 0 2000000000\r\n"), send(noise(100_000))]);
    assert_eq!(
        exchange(node.addr, &[send("get safe\r\n")]),
        b"VALUE safe 0 4\r\nsafe\r\nEND\r\n"
    );
}
