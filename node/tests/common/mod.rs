//! Test harness: a real memcached and an in-process riven node on loopback, and raw byte
//! exchanges with them, so the same request stream can be sent to both and the replies diffed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use riven_node::config::{Config, Size};
use riven_node::node::Node;

/// A memcached process (the Debian package) on a free loopback port, killed on drop.
pub struct Memcached {
    child: Child,
    pub addr: SocketAddr,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn memcached_bin() -> String {
    std::env::var("MEMCACHED").unwrap_or_else(|_| "memcached".into())
}

impl Memcached {
    /// Starts `memcached -l 127.0.0.1 -p <free> -U 0` plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Memcached {
        Memcached::start_on(free_port(), extra)
    }

    /// Starts memcached on a given port (to restart one where clients expect it).
    pub fn start_on(port: u16, extra: &[&str]) -> Memcached {
        let mut cmd = Command::new(memcached_bin());
        cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"])
            .args(extra);
        // memcached refuses to run as root unless told which user to be.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "root"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("memcached must be installed (apt-get install memcached); the README's test command does it");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "memcached did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Memcached { child, addr }
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node with test-friendly settings: port 0 on loopback, 2 threads.
pub fn test_settings() -> Config {
    with(Config::default(), |c| {
        c.server.port = 0;
        c.server.listen = "127.0.0.1".into();
        c.server.threads = 2;
    })
}

/// `config` changed by `f`.
pub fn with(mut config: Config, f: impl FnOnce(&mut Config)) -> Config {
    f(&mut config);
    config
}

/// Test settings for a node in l1-l2 mode with its L2 in `dir`.
pub fn tiered_settings(dir: &std::path::Path) -> Config {
    with_l2(test_settings(), dir)
}

/// `config` with its L2 in `dir`.
pub fn with_l2(config: Config, dir: &std::path::Path) -> Config {
    with(config, |c| {
        c.l2.path = Some(dir.to_path_buf());
        c.l2.max_bytes = Size(64 << 20);
    })
}

/// Test settings for a node whose L1 is the memcached at `l1` (values chunked).
pub fn proxy_settings(l1: &Memcached) -> Config {
    with(test_settings(), |c| {
        c.l1.memcached.endpoint = Some(l1.addr.to_string());
        c.l1.memcached.timeout_ms = 5000;
    })
}

/// Starts a node in-process.
pub fn start_node(settings: Config) -> Node {
    Node::start(settings).expect("start node")
}

/// One step of a scripted exchange.
#[derive(Clone, Debug)]
pub enum Step {
    Send(Vec<u8>),
    Sleep(Duration),
}

pub fn send(b: impl AsRef<[u8]>) -> Step {
    Step::Send(b.as_ref().to_vec())
}

pub fn sleep_ms(ms: u64) -> Step {
    Step::Sleep(Duration::from_millis(ms))
}

/// Runs a script on a new connection, then half-closes and reads every reply until the server
/// closes. Both memcached and the node answer everything they have read before they notice the
/// end of input, so the result is the complete reply stream.
pub fn exchange(addr: SocketAddr, script: &[Step]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut reader = s.try_clone().unwrap();
    // Read concurrently so a large reply cannot block the writes.
    let handle = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        buf
    });
    for step in script {
        match step {
            Step::Send(b) => {
                if s.write_all(b).is_err() {
                    break;
                }
            }
            Step::Sleep(d) => std::thread::sleep(*d),
        }
    }
    // Give the server time to answer what it has before it sees the end of input: some replies
    // (a swallowed data block) only complete once everything is read.
    std::thread::sleep(Duration::from_millis(50));
    let _ = s.shutdown(Shutdown::Write);
    out.extend(handle.join().unwrap());
    out
}

/// Masks what legitimately differs in text replies: CAS values (`gets`/`gats`), the version
/// string and stats values.
pub fn normalize_text(reply: &[u8]) -> String {
    let mut out = String::new();
    let mut rest = reply;
    while !rest.is_empty() {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], i + 2),
            None => (rest, rest.len()),
        };
        let text = String::from_utf8_lossy(line);
        if let Some(v) = text.strip_prefix("VALUE ") {
            let parts: Vec<&str> = v.split(' ').collect();
            let len: usize = parts.get(2).and_then(|l| l.parse().ok()).unwrap_or(0);
            if parts.len() == 4 {
                out.push_str(&format!("VALUE {} {} {} <cas>\n", parts[0], parts[1], parts[2]));
            } else {
                out.push_str(&format!("{text}\n"));
            }
            // The data block is opaque: copy it whole, even if it contains "\r\n".
            let data_end = (next + len + 2).min(rest.len());
            out.push_str(&format!(
                "<data {:?}>\n",
                String::from_utf8_lossy(&rest[next..data_end])
            ));
            rest = &rest[data_end..];
            continue;
        } else if text.starts_with("VERSION ") {
            out.push_str("VERSION <v>\n");
        } else if let Some(s) = text.strip_prefix("STAT ") {
            out.push_str(&format!("STAT {} <v>\n", s.split(' ').next().unwrap_or("")));
        } else {
            out.push_str(&format!("{text}\n"));
        }
        rest = &rest[next..];
    }
    out
}

/// The value a bulk load writes under `key`.
pub fn value(key: &str, len: usize) -> Vec<u8> {
    let seed = key.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect()
}

/// A plain text-protocol client for bulk loads: pipelined sets, multi-get reads checked whole.
pub struct TextClient {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl TextClient {
    pub fn connect(addr: SocketAddr) -> TextClient {
        let w = TcpStream::connect(addr).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        TextClient { w, r }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).unwrap();
        l
    }

    /// Sets every key, `batch` requests per write; panics on anything but STORED.
    pub fn set_all(&mut self, keys: &[String], len: usize, batch: usize) {
        for part in keys.chunks(batch) {
            let mut req = Vec::new();
            for k in part {
                req.extend_from_slice(format!("set {k} 0 0 {len}\r\n").as_bytes());
                req.extend_from_slice(&value(k, len));
                req.extend_from_slice(b"\r\n");
            }
            self.w.write_all(&req).unwrap();
            for _ in part {
                let l = self.line();
                assert_eq!(l, "STORED\r\n", "a set was refused");
            }
        }
    }

    /// How many of `keys` read back, each checked whole.
    pub fn hits(&mut self, keys: &[String], len: usize) -> usize {
        let mut hits = 0;
        for part in keys.chunks(batch_for(len)) {
            let mut req = String::from("get");
            for k in part {
                req.push(' ');
                req.push_str(k);
            }
            req.push_str("\r\n");
            self.w.write_all(req.as_bytes()).unwrap();
            loop {
                let l = self.line();
                if l == "END\r\n" {
                    break;
                }
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.first(), Some(&"VALUE"), "unexpected reply {l:?}");
                let n: usize = f[3].parse().unwrap();
                let mut data = vec![0u8; n + 2];
                self.r.read_exact(&mut data).unwrap();
                assert_eq!(n, len);
                assert_eq!(&data[..n], &value(f[1], len)[..], "{} read back wrong", f[1]);
                hits += 1;
            }
        }
        hits
    }
}

/// Keys per multi-get: about 1 MiB of replies at a time.
fn batch_for(len: usize) -> usize {
    ((1 << 20) / len.max(1)).clamp(1, 100)
}
