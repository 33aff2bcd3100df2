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
    let node = start_node(common::with(test_settings(), |c| {
        c.l1.memcached.endpoint = Some(format!("unix:{}", sock.display()));
        c.l1.memcached.timeout_ms = 5000;
    }));
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
    // memcached sees the node's link, the slab balancer's admin connection (and this stats
    // connection), not one connection per client.
    let stats = String::from_utf8(exchange(l1.addr, &[send("stats\r\n")])).unwrap();
    let curr: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    // memcached counts its listening socket as a connection too.
    assert!(curr <= 4, "memcached has {curr} connections for 50 clients");
    drop(clients);
}

/// Pipelined sets and reads in one write are run together against memcached (one round trip
/// for the lot), yet each read sees exactly the writes sent before it, as on memcached itself.
/// Runs are long (past 30 requests, 64 at most per run), mix small values with chunked ones
/// (which end a run), and the replies must match memcached's byte for byte.
#[test]
fn pipelined_writes_and_reads_keep_their_order() {
    let direct = Memcached::start(&[]);
    let l1 = Memcached::start(&[]);
    let node = start_node(proxy_settings(&l1));
    let big = "B".repeat(40_000);
    let mut text = String::new();
    let mut meta = String::new();
    for i in 0..300 {
        let k = format!("k{}", i % 7);
        let v = if i % 37 == 0 {
            format!("{big}{i}")
        } else {
            format!("v{i}")
        };
        match i % 4 {
            0 | 1 => {
                text.push_str(&format!("set {k} {i} 0 {}\r\n{v}\r\n", v.len()));
                meta.push_str(&format!("ms {k} {} F{i} T0\r\n{v}\r\n", v.len()));
            }
            _ => {
                text.push_str(&format!("get {k}\r\n"));
                meta.push_str(&format!("mg {k} v f s k\r\n"));
            }
        }
        text.push_str(&format!("get {k} k{}\r\n", (i + 3) % 7));
        meta.push_str(&format!("mg k{} v f O{i}\r\n", (i + 3) % 7));
        if i % 23 == 0 {
            // A read the node cannot send ahead (a bad key), and repeated keys.
            text.push_str(&format!("get {} k1\r\nget k1 k2 k1\r\n", "x".repeat(300)));
            meta.push_str(&format!("mg {} v\r\nmg k1 v k\r\nmg k1 s v\r\n", "x".repeat(300)));
            // A base64 key ("azE=" is k1).
            meta.push_str("mg azE= b v f\r\n");
        }
        if i % 29 == 0 {
            // A stale value read twice in one run: the first read wins the recache (W), the
            // second sees it taken (Z); not an answer from the GET alone.
            let j = (i + 5) % 7;
            meta.push_str(&format!("md k{j} I\r\nmg k{j} v f\r\nmg k{j} v\r\n"));
        }
    }
    // Two links as well as one: a connection's requests keep to one link.
    let node2 = start_node(common::with(proxy_settings(&l1), |c| c.l1.memcached.connections = 2));
    for (script, node_addr) in [
        (text.clone(), node.addr),
        (meta.clone(), node.addr),
        (text, node2.addr),
        (meta, node2.addr),
    ] {
        let want = exchange(direct.addr, &[send(&script)]);
        let got = exchange(node_addr, &[send(&script)]);
        let (got, want) = (normalize_text(&got), normalize_text(&want));
        // Values are long: report the first line that differs, not both streams.
        let first = got.lines().zip(want.lines()).position(|(g, w)| g != w);
        if let Some(i) = first {
            let short = |s: &str| {
                s.lines()
                    .skip(i.saturating_sub(3))
                    .take(6)
                    .map(|l| &l[..l.len().min(80)])
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!("line {i} differs\nnode:\n{}\nmemcached:\n{}", short(&got), short(&want));
        }
        assert_eq!(got.lines().count(), want.lines().count());
        assert!(want.len() > 100_000, "the script exercised chunked values");
    }
}

/// The same over the binary protocol: SET/SETQ and GET/GETK in one write, values checked.
#[test]
fn pipelined_binary_sets_and_gets_keep_their_order() {
    use riven_memcache::binary::{self, Opcode, Request, Status, StoreExtras};
    let l1 = Memcached::start(&[]);
    let node = start_node(proxy_settings(&l1));
    let mut script = Vec::new();
    let mut expect = Vec::new();
    let mut current: std::collections::HashMap<String, String> = Default::default();
    let extras = StoreExtras { flags: 0, exptime: 0 }.to_bytes();
    for i in 0..200u32 {
        let k = format!("k{}", i % 5);
        if i % 3 == 0 {
            let v = format!("v{i}");
            let quiet = i % 2 == 0;
            let req = Request {
                key: k.as_bytes(),
                value: v.as_bytes(),
                extras: &extras,
                opaque: i,
                ..Request::new(if quiet { Opcode::SETQ } else { Opcode::SET })
            };
            binary::compose_request(&mut script, &req).unwrap();
            if !quiet {
                expect.push((i, Status::SUCCESS, String::new()));
            }
            current.insert(k, v);
        } else {
            let req = Request {
                key: k.as_bytes(),
                opaque: i,
                ..Request::new(Opcode::GETK)
            };
            binary::compose_request(&mut script, &req).unwrap();
            match current.get(&k) {
                Some(v) => expect.push((i, Status::SUCCESS, v.clone())),
                None => expect.push((i, Status::KEY_ENOENT, String::new())),
            }
        }
    }
    let got = exchange(node.addr, &[send(&script)]);
    let mut rest = &got[..];
    let mut seen = Vec::new();
    while !rest.is_empty() {
        let h = binary::parse_response_header(rest).expect("a whole reply");
        let frame = &rest[..h.frame_len()];
        let value_at = binary::HEADER_LEN + h.extras_len as usize + h.key_len as usize;
        let value = if h.opcode == Opcode::GETK && h.status == Status::SUCCESS {
            String::from_utf8_lossy(&frame[value_at..]).into_owned()
        } else {
            String::new()
        };
        seen.push((h.opaque, h.status, value));
        rest = &rest[h.frame_len()..];
    }
    assert_eq!(seen, expect);
}
