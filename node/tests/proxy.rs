//! The node over a memcached L1 reached on a unix socket, and its effect on memcached: one link,
//! however many clients.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct UnixMemcached(std::process::Child);

impl Drop for UnixMemcached {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn memcached_l1_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("mc.sock");
    let mut cmd = Command::new("memcached");
    cmd.arg("-s").arg(&sock);
    if unsafe { libc::geteuid() } == 0 {
        cmd.args(["-u", "root"]);
    }
    let _mc = UnixMemcached(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "memcached did not start on {sock:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let node = start_node(riven_node::server::Settings {
        l1_memcached: Some(format!("unix:{}", sock.display())),
        l1_timeout: Duration::from_secs(5),
        ..test_settings()
    });
    let value = "v".repeat(50_000); // chunked
    let reply = exchange(
        node.addr,
        &[send(format!("set k 3 0 {}\r\n{value}\r\nget k\r\n", value.len()))],
    );
    assert_eq!(
        reply,
        format!("STORED\r\nVALUE k 3 {}\r\n{value}\r\nEND\r\n", value.len()).into_bytes()
    );
}

#[test]
fn many_clients_share_one_memcached_connection() {
    let l1 = Memcached::start(&[]);
    let node = start_node(proxy_settings(&l1));
    let clients: Vec<_> = (0..50)
        .map(|_| std::net::TcpStream::connect(node.addr).unwrap())
        .collect();
    for (i, _) in clients.iter().enumerate() {
        assert_eq!(
            exchange(node.addr, &[send(format!("set c{i} 0 0 1\r\nx\r\n"))]),
            b"STORED\r\n"
        );
    }
    // memcached sees the node's link (and this stats connection), not one connection per client.
    let stats = String::from_utf8(exchange(l1.addr, &[send("stats\r\n")])).unwrap();
    let curr: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    // memcached counts its listening socket as a connection too.
    assert!(curr <= 3, "memcached has {curr} connections for 50 clients");
    drop(clients);
}
